//! Two in-process members exchanging raft messages through a test router
//! (every message encoded and decoded with [`crate::wire`]): a member that
//! joins behind the leader's compacted log gets a snapshot carrying the
//! application's data, then the later entries; it becomes a voter; a restart
//! before its backend held the snapshot hands the snapshot over again; and
//! leadership moves to it, both members seeing the change as it happens.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use parking_lot::Mutex;
use raft::eraftpb::ConfChangeType::{AddLearnerNode, AddNode};
use raft::eraftpb::{Message, MessageType};
use raft::SnapshotStatus;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;

use super::worker::READ_RETRY;
use super::*;
use crate::wire;

const WAIT: Duration = Duration::from_secs(20);

/// Delivers messages between members on its own thread, like a network.
struct Router {
    tx: mpsc::Sender<Message>,
    members: Arc<Mutex<HashMap<u64, RaftHandle>>>,
    reads: Arc<Mutex<ReadRounds>>,
    /// While `Some`, appends are parked here instead of delivered (see [`Router::hold_appends`]).
    held: Arc<Mutex<Option<Vec<Message>>>>,
}

/// What the router saw of ReadIndex rounds a follower sent to the leader.
#[derive(Default)]
struct ReadRounds {
    /// Rounds sent (and not dropped).
    sent: usize,
    /// Rounds sent and not answered yet, by sender.
    outstanding: HashMap<u64, usize>,
    /// Most rounds one sender had unanswered at once.
    most_outstanding: usize,
    /// Rounds still to drop, as a lost message.
    drop: usize,
    /// Contexts of the heartbeat rounds the leader ran for reads.
    leader_rounds: std::collections::HashSet<Vec<u8>>,
    /// Pairs of rounds from two different senders still to deliver together: the first
    /// of a pair waits in `unpaired` until the other sender's arrives, so that the two
    /// reach the receiver back to back, as two busy followers' rounds would by chance.
    pairs: usize,
    unpaired: Option<Message>,
}

/// The [`Transport`] each member sends through.
struct RouterTransport(mpsc::Sender<Message>);

impl Transport for RouterTransport {
    fn send(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            let _ = self.0.send(m);
        }
    }
}

impl Router {
    fn start() -> Router {
        let (tx, rx) = mpsc::channel::<Message>();
        let members: Arc<Mutex<HashMap<u64, RaftHandle>>> = Arc::default();
        let reads: Arc<Mutex<ReadRounds>> = Arc::default();
        let held: Arc<Mutex<Option<Vec<Message>>>> = Arc::default();
        let (table, rounds, parked) = (members.clone(), reads.clone(), held.clone());
        std::thread::spawn(move || {
            for m in rx {
                let (from, to, kind) = (m.from, m.to, m.get_msg_type());
                if kind == MessageType::MsgAppend {
                    if let Some(parked) = parked.lock().as_mut() {
                        parked.push(m);
                        continue;
                    }
                }
                let mut deliver = vec![m];
                {
                    let mut r = rounds.lock();
                    match kind {
                        MessageType::MsgReadIndex if r.drop > 0 => {
                            r.drop -= 1;
                            continue;
                        }
                        MessageType::MsgReadIndex => {
                            r.sent += 1;
                            let n = r.outstanding.entry(from).or_default();
                            *n += 1;
                            let n = *n;
                            r.most_outstanding = r.most_outstanding.max(n);
                            if r.pairs > 0 {
                                match r.unpaired.take() {
                                    None => {
                                        r.unpaired = deliver.pop();
                                        continue;
                                    }
                                    Some(first) if first.from != from => {
                                        r.pairs -= 1;
                                        deliver.insert(0, first);
                                    }
                                    // The same sender again (a retry): both go now.
                                    Some(first) => deliver.insert(0, first),
                                }
                            }
                        }
                        MessageType::MsgHeartbeat if !deliver[0].context.is_empty() => {
                            r.leader_rounds.insert(deliver[0].context.to_vec());
                        }
                        MessageType::MsgReadIndexResp => {
                            if let Some(n) = r.outstanding.get_mut(&to) {
                                *n = n.saturating_sub(1);
                            }
                        }
                        _ => {}
                    }
                }
                for m in deliver {
                    let (from, to, kind) = (m.from, m.to, m.get_msg_type());
                    let bytes = wire::encode_message(&m);
                    let decoded = wire::decode_message(bytes::Bytes::from(bytes)).unwrap();
                    assert_eq!(decoded, m, "the wire codec changed a message");
                    let (target, sender) = {
                        let t = table.lock();
                        (t.get(&to).cloned(), t.get(&from).cloned())
                    };
                    let delivered = target.is_some_and(|h| h.step(decoded).is_ok());
                    if kind == MessageType::MsgSnapshot {
                        let status = match delivered {
                            true => SnapshotStatus::Finish,
                            false => SnapshotStatus::Failure,
                        };
                        if let Some(s) = sender {
                            let _ = s.report_snapshot(to, status);
                        }
                    }
                }
            }
        });
        Router {
            tx,
            members,
            reads,
            held,
        }
    }

    /// Parks every append from now on, as a slow link would (heartbeats still pass).
    fn hold_appends(&self) {
        self.held.lock().get_or_insert_with(Vec::new);
    }

    /// Delivers the parked appends and lets the next ones through.
    fn release_appends(&self) {
        for m in self.held.lock().take().unwrap_or_default() {
            let _ = self.tx.send(m);
        }
    }

    fn transport(&self) -> RouterTransport {
        RouterTransport(self.tx.clone())
    }

    fn add(&self, id: u64, h: &RaftHandle) {
        self.members.lock().insert(id, h.clone());
    }
}

/// The application: the payloads applied, in order, and the index applied.
#[derive(Debug, Default, Clone, PartialEq)]
struct AppState {
    applied: u64,
    payloads: Vec<Vec<u8>>,
}

impl AppState {
    fn encode(&self) -> Vec<u8> {
        let mut b = self.applied.to_le_bytes().to_vec();
        for p in &self.payloads {
            b.extend_from_slice(&(p.len() as u32).to_le_bytes());
            b.extend_from_slice(p);
        }
        b
    }

    fn decode(b: &[u8]) -> AppState {
        let applied = u64::from_le_bytes(b[..8].try_into().unwrap());
        let (mut payloads, mut rest) = (Vec::new(), &b[8..]);
        while !rest.is_empty() {
            let n = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            payloads.push(rest[4..4 + n].to_vec());
            rest = &rest[4 + n..];
        }
        AppState { applied, payloads }
    }
}

/// One member's application: state, what the applier was handed, and the
/// snapshot source reading the state.
#[derive(Clone, Default)]
struct App {
    state: Arc<Mutex<AppState>>,
    /// `(kind, index)` of everything delivered, in order.
    delivered: Arc<Mutex<Vec<(EntryKind, u64)>>>,
}

impl SnapshotSource for App {
    fn snapshot_data(&self, index: u64, _to: u64) -> Result<Vec<u8>, SnapshotUnavailable> {
        let state = self.state.lock();
        assert!(state.applied >= index, "asked for a state not applied yet");
        Ok(state.encode())
    }
}

impl App {
    /// Applies committed entries as an application must: a snapshot replaces
    /// the state, entries the state holds are skipped, every membership
    /// change goes to raft.
    fn spawn_applier(&self, h: RaftHandle, mut rx: UnboundedReceiver<Vec<CommittedEntry>>) {
        let app = self.clone();
        tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                for e in batch {
                    app.delivered.lock().push((e.kind, e.index));
                    match e.kind {
                        EntryKind::Snapshot => *app.state.lock() = AppState::decode(&e.data),
                        EntryKind::ConfChange => {
                            let cc = wire::decode_conf_change(&e.data).unwrap();
                            h.apply_conf_change(e.index, cc).await.unwrap();
                        }
                        EntryKind::Normal => {}
                    }
                    let mut s = app.state.lock();
                    if e.index > s.applied {
                        if e.kind == EntryKind::Normal && !e.data.is_empty() {
                            s.payloads.push(e.data.clone());
                        }
                        s.applied = e.index;
                    }
                }
                let applied = app.state.lock().applied;
                h.set_applied(applied);
                h.set_durable_applied(applied);
            }
        });
    }

    async fn wait_for(&self, what: &str, mut done: impl FnMut(&AppState) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(&self.state.lock()) {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Waits for a leadership value that satisfies `f`.
async fn until(
    rx: &mut watch::Receiver<Leadership>,
    f: impl FnMut(&Leadership) -> bool,
) -> Leadership {
    *tokio::time::timeout(WAIT, rx.wait_for(f))
        .await
        .expect("timed out waiting for a leadership change")
        .expect("the node stopped")
}

fn member(dir: &Path, id: u64, peers: Vec<u64>, snapshot_count: u64) -> RaftConfig {
    RaftConfig {
        tick: Duration::from_millis(10),
        snapshot_count,
        ..RaftConfig::new(id, peers, dir.join(format!("m{id}/wal")))
    }
}

/// In-memory log kept behind the applied index: after about 100 entries the
/// leader holds only about 50.. (so a new member needs a snapshot), and
/// compacts next at about 150, so the 40 entries after the snapshot stay in
/// memory for the joining member.
const CATCH_UP: u64 = 50;

fn options(app: &App) -> StartOptions {
    StartOptions {
        snapshot_source: Some(Box::new(app.clone())),
        catch_up_entries: CATCH_UP,
        ..StartOptions::default()
    }
}

/// Starts voters `ids` (every one of them a peer) on `router`, each with its applier;
/// `tune` adjusts each member's configuration.
fn start_voters(
    dir: &Path,
    router: &Router,
    ids: &[u64],
    tune: impl Fn(RaftConfig) -> RaftConfig,
) -> Vec<(RaftHandle, App)> {
    ids.iter()
        .map(|&id| {
            let app = App::default();
            let cfg = tune(member(dir, id, ids.to_vec(), 0));
            let (h, rx) = RaftNode::start_with(cfg, router.transport(), options(&app)).unwrap();
            router.add(id, &h);
            app.spawn_applier(h.clone(), rx);
            (h, app)
        })
        .collect()
}

async fn propose_n(h: &RaftHandle, tag: &str, n: usize) {
    for i in 0..n {
        h.propose(format!("{tag}{i}").into_bytes()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_behind_the_compacted_log_gets_a_snapshot_then_the_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let router = Router::start();

    // Member 1 alone: 100 entries, then its in-memory log is compacted.
    let app1 = App::default();
    let (h1, rx1) = RaftNode::start_with(
        member(tmp.path(), 1, vec![1], 20),
        router.transport(),
        options(&app1),
    )
    .unwrap();
    router.add(1, &h1);
    app1.spawn_applier(h1.clone(), rx1);
    propose_n(&h1, "a", 100).await;
    app1.wait_for("member 1 applies", |s| s.payloads.len() == 100)
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while h1.status().log_first_index <= 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "log never compacted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Member 2 joins as a learner with an empty log.
    h1.propose_conf_change(conf_change(&[(AddLearnerNode, 2)], b"m2".to_vec()))
        .await
        .unwrap();
    let app2 = App::default();
    let (h2, rx2) = RaftNode::start_with(
        member(tmp.path(), 2, vec![], 0),
        router.transport(),
        options(&app2),
    )
    .unwrap();
    router.add(2, &h2);
    app2.spawn_applier(h2.clone(), rx2);
    let seen = until(&mut h2.leadership(), |l| l.leader_id == 1).await;
    assert_eq!(seen.role, Role::Follower);

    app2.wait_for("member 2 takes the snapshot", |s| s.payloads.len() == 100)
        .await;

    // More entries reach it after the snapshot.
    propose_n(&h1, "b", 30).await;
    app2.wait_for("member 2 catches up", |s| s.payloads.len() == 130)
        .await;
    assert_eq!(app2.state.lock().payloads, app1.state.lock().payloads);
    let delivered = app2.delivered.lock().clone();
    let (kind, snap_index) = delivered[0];
    assert_eq!(kind, EntryKind::Snapshot, "first delivery: {delivered:?}");
    assert!(snap_index > 100, "snapshot at {snap_index}");
    assert!(
        delivered[1..].windows(2).all(|w| w[1].1 == w[0].1 + 1) && delivered[1].1 == snap_index + 1,
        "entries after the snapshot not contiguous: {delivered:?}"
    );
    assert!(delivered[1..]
        .iter()
        .all(|(k, _)| *k != EntryKind::Snapshot));
    assert_eq!(h2.conf_state().learners, vec![2]);

    // Promoted to voter: from now on nothing commits without member 2.
    h1.propose_conf_change(conf_change(&[(AddNode, 2)], vec![]))
        .await
        .unwrap();
    app2.wait_for("member 2 applies its promotion", |_| {
        h2.conf_state().voters.contains(&2)
    })
    .await;
    propose_n(&h1, "c", 10).await;
    app2.wait_for("member 2 applies as a voter", |s| s.payloads.len() == 140)
        .await;
    let mut voters = h1.conf_state().voters;
    voters.sort_unstable();
    assert_eq!(voters, vec![1, 2]);

    // Member 2 restarts as if its backend had never made the snapshot durable:
    // the snapshot comes first again, then the entries after it.
    h2.shutdown();
    let app2 = App::default();
    let (h2, rx2) = RaftNode::start_with(
        member(tmp.path(), 2, vec![], 0),
        router.transport(),
        options(&app2),
    )
    .unwrap();
    router.add(2, &h2);
    app2.spawn_applier(h2.clone(), rx2);
    app2.wait_for("member 2 replays", |s| s.payloads.len() == 140)
        .await;
    assert_eq!(app2.delivered.lock()[0], (EntryKind::Snapshot, snap_index));
    assert_eq!(app2.state.lock().payloads, app1.state.lock().payloads);

    // Leadership moves to the other member (member 1 may have lost it while
    // member 2 restarted: check-quorum): both are told as it happens, and the
    // new leader's proposals reach the old one.
    let (handles, apps) = ([&h1, &h2], [&app1, &app2]);
    let mut watches = [h1.leadership(), h2.leadership()];
    let leader = until(&mut watches[0], Leadership::has_leader)
        .await
        .leader_id;
    let (from, to) = if leader == 1 { (0, 1) } else { (1, 0) };
    let to_id = to as u64 + 1;
    until(&mut watches[from], Leadership::is_leader).await;
    handles[from].transfer_leadership(to_id).unwrap();
    let new = until(&mut watches[to], Leadership::is_leader).await;
    let old = until(&mut watches[from], |l| l.leader_id == to_id).await;
    assert_eq!((old.role, old.term), (Role::Follower, new.term));
    propose_n(handles[to], "d", 5).await;
    apps[from]
        .wait_for("the old leader applies the new leader's entries", |s| {
            s.payloads.len() == 145
        })
        .await;

    h2.shutdown();
    h1.shutdown();
}

/// A follower keeps one ReadIndex round in flight: readers arriving meanwhile share the
/// next round (every round costs the leader a heartbeat exchange with each follower).
/// A round whose message is lost is followed by another, so its readers are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_batches_reads_into_one_round_at_a_time_and_retries_a_lost_one() {
    let tmp = tempfile::tempdir().unwrap();
    let router = Router::start();
    let handles: Vec<RaftHandle> = start_voters(tmp.path(), &router, &[1, 2], |c| c)
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    let leader = until(&mut handles[0].leadership(), Leadership::has_leader)
        .await
        .leader_id;
    let (leader, follower) = if leader == 1 {
        (handles[0].clone(), handles[1].clone())
    } else {
        (handles[1].clone(), handles[0].clone())
    };
    until(&mut follower.leadership(), |l| l.leader_id != 0).await;
    propose_n(&leader, "w", 10).await;
    let committed = leader.status().commit_index;

    // 20 readers, each reading 15 times in a row: reads keep arriving while rounds fly.
    let readers: Vec<_> = (0..20)
        .map(|_| {
            let f = follower.clone();
            tokio::spawn(async move {
                let mut indexes = Vec::new();
                for _ in 0..15 {
                    indexes.push(f.read_index().await.unwrap());
                }
                indexes
            })
        })
        .collect();
    for r in readers {
        for index in r.await.unwrap() {
            assert!(index >= committed, "read index {index} below {committed}");
        }
    }
    {
        let r = router.reads.lock();
        assert_eq!(
            r.most_outstanding, 1,
            "a second round started before the first was answered"
        );
        assert!(
            r.sent >= 1 && r.sent < 300,
            "{} rounds for 300 readers",
            r.sent
        );
    }

    // The next round's request is lost: the reader is answered by the round after it.
    router.reads.lock().drop = 1;
    let started = std::time::Instant::now();
    let index = tokio::time::timeout(WAIT, follower.read_index())
        .await
        .expect("a lost round was never retried")
        .unwrap();
    assert!(index >= committed);
    assert!(
        started.elapsed() >= READ_RETRY,
        "answered before the retry: {:?}",
        started.elapsed()
    );

    follower.shutdown();
    leader.shutdown();
}

/// Raft's broadcast after every commit is off (`tell_commit` sends the commit index
/// instead): a follower must still learn each commit at once, not at the next heartbeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn followers_learn_each_commit_before_the_next_heartbeat() {
    let tmp = tempfile::tempdir().unwrap();
    let router = Router::start();
    // Heartbeats every 500 ms: a commit index only they carried would arrive that late.
    let heartbeat = Duration::from_millis(500);
    let members = start_voters(tmp.path(), &router, &[1, 2], |c| RaftConfig {
        tick: Duration::from_millis(50),
        heartbeat_ticks: 10,
        election_ticks: 20,
        ..c
    });
    let leader_id = until(&mut members[0].0.leadership(), Leadership::has_leader)
        .await
        .leader_id;
    let (leader, follower) = if leader_id == 1 {
        (&members[0], &members[1])
    } else {
        (&members[1], &members[0])
    };
    until(&mut follower.0.leadership(), |l| l.leader_id == leader_id).await;
    for i in 0..8 {
        let payload = format!("c{i}").into_bytes();
        leader.0.propose(payload.clone()).await.unwrap();
        let committed_at = std::time::Instant::now();
        let applied = loop {
            if follower.1.state.lock().payloads.contains(&payload) {
                break committed_at.elapsed();
            }
            assert!(
                committed_at.elapsed() < WAIT,
                "the follower never applied {i}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        assert!(
            applied < heartbeat / 2,
            "entry {i} reached the follower's applier {applied:?} after the proposal: \
             the commit index waited for a heartbeat"
        );
    }
    for (h, _) in &members {
        h.shutdown();
    }
}

/// The leader serves its followers' ReadIndex requests with its own rounds: requests from
/// two busy followers that reach it together share a round, and every answer is at least
/// the commit index the reader could have seen when it asked.
///
/// The router hands the leader the first few requests in pairs, one from each follower:
/// left to chance, two requests rarely meet, since each follower has one round in flight
/// and the leader starts the next round as soon as it answers the last (a loaded machine
/// once ran 45 rounds for 45 requests).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_answers_followers_reads_with_shared_rounds() {
    let tmp = tempfile::tempdir().unwrap();
    let router = Router::start();
    let handles: Vec<RaftHandle> = start_voters(tmp.path(), &router, &[1, 2, 3], |c| c)
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    let leader_id = until(&mut handles[0].leadership(), Leadership::has_leader)
        .await
        .leader_id;
    let leader = handles[leader_id as usize - 1].clone();
    let followers: Vec<RaftHandle> = handles
        .iter()
        .filter(|h| h.status().id != leader_id)
        .cloned()
        .collect();
    for f in &followers {
        until(&mut f.leadership(), |l| l.leader_id == leader_id).await;
    }
    propose_n(&leader, "w", 5).await;
    router.reads.lock().pairs = 5;

    // Readers on both followers while a writer keeps committing: each read's index is at
    // least the leader's commit index when the read began.
    let writer = {
        let leader = leader.clone();
        tokio::spawn(async move { propose_n(&leader, "x", 200).await })
    };
    let readers: Vec<_> = (0..40)
        .map(|i| {
            let (f, leader) = (followers[i % 2].clone(), leader.clone());
            tokio::spawn(async move {
                for _ in 0..15 {
                    let floor = leader.status().commit_index;
                    let index = f.read_index().await.unwrap();
                    assert!(index >= floor, "read index {index} below {floor}");
                }
            })
        })
        .collect();
    for r in readers {
        r.await.unwrap();
    }
    writer.await.unwrap();
    {
        let r = router.reads.lock();
        assert!(r.sent >= 2, "{} follower rounds", r.sent);
        assert!(
            r.leader_rounds.len() < r.sent,
            "the leader ran {} rounds for {} follower requests: none were shared",
            r.leader_rounds.len(),
            r.sent
        );
    }
    for h in &handles {
        h.shutdown();
    }
}

/// A follower's ReadIndex request that reaches a new leader before it has committed an
/// entry of its term waits there for that commit, rather than being dropped (raft-rs
/// drops it, and the follower's readers would wait out the [`READ_RETRY`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_leader_answers_a_follower_read_once_it_commits_in_its_term() {
    let tmp = tempfile::tempdir().unwrap();
    let router = Router::start();
    let members = start_voters(tmp.path(), &router, &[1, 2, 3], |c| c);
    let handles: Vec<RaftHandle> = members.iter().map(|(h, _)| h.clone()).collect();
    let old = until(&mut handles[0].leadership(), Leadership::has_leader)
        .await
        .leader_id;
    propose_n(&handles[old as usize - 1], "w", 3).await;
    let (new, other) = match old {
        1 => (2, 3),
        2 => (3, 1),
        _ => (1, 2),
    };
    let (new_h, other_h) = (&handles[new as usize - 1], &handles[other as usize - 1]);
    until(&mut new_h.leadership(), |l| l.leader_id == old).await;
    // Caught up, so the transfer needs no append to it.
    members[new as usize - 1]
        .1
        .wait_for("the next leader applies the entries", |s| {
            s.payloads.len() == 3
        })
        .await;
    let before = new_h.status().commit_index;

    // The new leader's first entry (and so its first commit in its term) is held back.
    router.hold_appends();
    handles[old as usize - 1].transfer_leadership(new).unwrap();
    until(&mut new_h.leadership(), |l| l.leader_id == new).await;
    until(&mut other_h.leadership(), |l| l.leader_id == new).await;
    assert_eq!(
        new_h.status().commit_index,
        before,
        "the new leader committed in its term although appends were held"
    );
    let started = std::time::Instant::now();
    let read = {
        let other_h = other_h.clone();
        tokio::spawn(async move { other_h.read_index().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    router.release_appends();
    let index = tokio::time::timeout(WAIT, read)
        .await
        .expect("the read was never answered")
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    assert!(
        index > before,
        "read index {index} not past the new leader's first entry"
    );
    assert!(
        took < READ_RETRY - Duration::from_millis(100),
        "the read took {took:?}: the leader dropped it and the follower retried"
    );
    for h in &handles {
        h.shutdown();
    }
}
