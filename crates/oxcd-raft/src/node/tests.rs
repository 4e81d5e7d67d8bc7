//! Single-member node tests: ordering, exactly-once delivery, replay,
//! read index, shutdown and compaction.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;

use super::*;

fn cfg(dir: &Path, applied: u64) -> RaftConfig {
    RaftConfig {
        tick: Duration::from_millis(10),
        snapshot_count: 0,
        applied,
        ..RaftConfig::new(1, vec![1], dir.join("member/wal"))
    }
}

/// Receives committed entries until `done` says so (or panics after 10s).
async fn recv_until(
    rx: &mut UnboundedReceiver<Vec<CommittedEntry>>,
    mut done: impl FnMut(&[CommittedEntry]) -> bool,
) -> Vec<CommittedEntry> {
    let mut all = Vec::new();
    while !done(&all) {
        let batch = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("timed out waiting for committed entries")
            .expect("committed channel closed");
        all.extend(batch);
    }
    all
}

fn payloads(es: &[CommittedEntry]) -> Vec<Vec<u8>> {
    es.iter()
        .filter(|e| !e.data.is_empty())
        .map(|e| e.data.clone())
        .collect()
}

fn assert_contiguous(es: &[CommittedEntry]) {
    for w in es.windows(2) {
        assert_eq!(w[1].index, w[0].index + 1, "committed entries out of order");
    }
}

async fn propose_all(h: &RaftHandle, n: usize) {
    let mut tasks = Vec::new();
    for i in 0..n {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            h.propose(format!("p{i}").into_bytes()).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_member_commits_concurrent_proposals_in_order_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (h, mut rx) = RaftNode::start(cfg(tmp.path(), 0)).unwrap();
    let st = h.status();
    assert!(
        st.is_leader,
        "sole voter must lead right after start: {st:?}"
    );
    assert_eq!((st.id, st.leader_id), (1, 1));

    propose_all(&h, 200).await;
    let all = recv_until(&mut rx, |es| payloads(es).len() >= 200).await;
    assert_contiguous(&all);
    assert_eq!(all[0].index, 1);
    let got = payloads(&all);
    let uniq: HashSet<_> = got.iter().collect();
    assert_eq!((got.len(), uniq.len()), (200, 200));
    assert!(all.iter().all(|e| e.kind == EntryKind::Normal));
    // Nothing more arrives (exactly once).
    assert!(tokio::time::timeout(Duration::from_millis(100), rx.recv())
        .await
        .is_err());
    h.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_replays_entries_above_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let (h, mut rx) = RaftNode::start(cfg(tmp.path(), 0)).unwrap();
    for i in 0..30 {
        h.propose(format!("p{i}").into_bytes()).await.unwrap();
    }
    let first = recv_until(&mut rx, |es| payloads(es).len() >= 30).await;
    let last = first.last().unwrap().index;
    h.shutdown();
    assert!(rx.recv().await.is_none(), "channel closes on shutdown");

    let k = first
        .iter()
        .filter(|e| !e.data.is_empty())
        .nth(9)
        .unwrap()
        .index;
    let (h, mut rx) = RaftNode::start(cfg(tmp.path(), k)).unwrap();
    let term = h.status().term;
    assert!(term >= 2);
    // Replay k+1..=last, then the new term's no-op.
    let again = recv_until(&mut rx, |es| es.iter().any(|e| e.term == term)).await;
    assert_contiguous(&again);
    assert_eq!(again[0].index, k + 1);
    let want: Vec<_> = first.iter().filter(|e| e.index > k).cloned().collect();
    assert_eq!(&again[..want.len()], &want[..]);
    assert_eq!(again.last().unwrap().index, last + 1);
    assert!(again.last().unwrap().data.is_empty());

    // New proposals continue after the replay.
    h.propose(b"after".to_vec()).await.unwrap();
    let more = recv_until(&mut rx, |es| !es.is_empty()).await;
    assert_eq!(more[0].index, last + 2);
    assert_eq!(more[0].data, b"after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_index_covers_acknowledged_proposals() {
    let tmp = tempfile::tempdir().unwrap();
    let (h, mut rx) = RaftNode::start(cfg(tmp.path(), 0)).unwrap();
    h.propose(b"x".to_vec()).await.unwrap();
    let es = recv_until(&mut rx, |es| !payloads(es).is_empty()).await;
    let idx = es.iter().find(|e| e.data == b"x").unwrap().index;
    let mut reads = Vec::new();
    for _ in 0..50 {
        let h = h.clone();
        reads.push(tokio::spawn(async move { h.read_index().await }));
    }
    for r in reads {
        assert!(r.await.unwrap().unwrap() >= idx);
    }
    assert!(h.status().commit_index >= idx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_reports_match_indexes() {
    let tmp = tempfile::tempdir().unwrap();
    let (h, mut rx) = RaftNode::start(cfg(tmp.path(), 0)).unwrap();
    h.propose(b"x".to_vec()).await.unwrap();
    let es = recv_until(&mut rx, |es| !payloads(es).is_empty()).await;
    let idx = es.iter().find(|e| e.data == b"x").unwrap().index;
    let matches = h
        .match_indexes()
        .await
        .unwrap()
        .expect("a sole member leads");
    assert_eq!(matches.len(), 1);
    assert!(matches[&h.status().id] >= idx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_node_refuses_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let (h, mut rx) = RaftNode::start(cfg(tmp.path(), 0)).unwrap();
    assert!(matches!(
        h.propose(Vec::new()).await,
        Err(RaftError::EmptyProposal)
    ));
    let h2 = h.clone();
    h.shutdown();
    h.shutdown(); // idempotent
    assert!(h2.is_stopped());
    assert!(matches!(
        h2.propose(b"x".to_vec()).await,
        Err(RaftError::Stopped)
    ));
    assert!(matches!(h2.read_index().await, Err(RaftError::Stopped)));
    assert!(!h2.status().is_leader);
    while rx.recv().await.is_some() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_last_handle_stops_the_node() {
    let tmp = tempfile::tempdir().unwrap();
    let (h, mut rx) = RaftNode::start(cfg(tmp.path(), 0)).unwrap();
    drop(h);
    while rx.recv().await.is_some() {}
    // The WAL is released: a new node can open it.
    let (h, _rx) = RaftNode::start(cfg(tmp.path(), 0)).unwrap();
    assert!(h.status().is_leader);
}

#[test]
fn invalid_configs_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = [
        RaftConfig {
            id: 0,
            ..cfg(tmp.path(), 0)
        },
        RaftConfig {
            peers: vec![2],
            ..cfg(tmp.path(), 0)
        },
        RaftConfig {
            election_ticks: 1,
            ..cfg(tmp.path(), 0)
        },
    ];
    for c in bad {
        assert!(matches!(
            RaftNode::start(c),
            Err(RaftError::InvalidConfig(_))
        ));
    }
    // Backend claims more than the WAL has.
    assert!(matches!(
        RaftNode::start(cfg(tmp.path(), 5)),
        Err(RaftError::Inconsistent(_))
    ));
}

fn wal_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("member/wal")).unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_bounds_the_wal_and_restart_works() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_size: 2048,
        ..WalOptions::default()
    };
    let c = RaftConfig {
        snapshot_count: 25,
        ..cfg(tmp.path(), 0)
    };
    let (h, mut rx) = RaftNode::start_with_options(c.clone(), NoopTransport, opts.clone()).unwrap();
    let mut last = 0;
    let mut max_files = 0;
    for round in 0..20 {
        for i in 0..25 {
            h.propose(format!("r{round}-{i}-{}", "x".repeat(40)).into_bytes())
                .await
                .unwrap();
        }
        let es = recv_until(&mut rx, |es| payloads(es).len() >= 25).await;
        last = es.last().unwrap().index;
        // The applier's backend committed everything it received.
        h.set_applied(last);
        h.set_durable_applied(last);
        tokio::time::sleep(Duration::from_millis(30)).await;
        max_files = max_files.max(wal_files(tmp.path()));
    }
    assert_eq!(h.status().applied_index, last);
    // ~500 entries * ~80 bytes would be ~20 segments without release.
    // Compaction runs on the node thread's next iteration: poll briefly.
    let mut files = wal_files(tmp.path());
    for _ in 0..200 {
        if files <= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        files = wal_files(tmp.path());
    }
    assert!(files <= 4, "WAL not bounded: {files} files");
    assert!(max_files <= 6, "WAL not bounded: peak {max_files} files");
    h.shutdown();

    // Restart from the compacted WAL with the backend at `last`.
    let (h, mut rx) = RaftNode::start_with_options(
        RaftConfig {
            applied: last,
            ..c.clone()
        },
        NoopTransport,
        opts.clone(),
    )
    .unwrap();
    let es = recv_until(&mut rx, |es| !es.is_empty()).await;
    assert_eq!(es[0].index, last + 1, "only the new term's no-op: {es:?}");
    assert!(es[0].data.is_empty());
    h.propose(b"after".to_vec()).await.unwrap();
    let es = recv_until(&mut rx, |es| !payloads(es).is_empty()).await;
    assert_eq!(payloads(&es), vec![b"after".to_vec()]);
    h.shutdown();
    drop(rx);

    // A backend that lost data below the snapshot is refused.
    let err = RaftNode::start_with_options(RaftConfig { applied: 1, ..c }, NoopTransport, opts)
        .unwrap_err();
    assert!(matches!(err, RaftError::Inconsistent(_)), "{err}");
}

#[test]
fn bootstrap_raises_a_lazily_persisted_commit_to_applied() {
    use raft::eraftpb::{Entry, HardState};
    use raft::Storage;
    let contents = crate::wal::WalContents {
        hard_state: HardState {
            term: 1,
            vote: 1,
            commit: 2,
            ..Default::default()
        },
        entries: (1..=5)
            .map(|index| Entry {
                index,
                term: 1,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let b = super::storage::bootstrap(&contents, &[1], 4).unwrap();
    assert_eq!(b.storage.initial_state().unwrap().hard_state.commit, 4);
    assert_eq!(b.storage.last_index().unwrap(), 5);
    assert!(super::storage::bootstrap(&contents, &[1], 6).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propose_or_else_reports_only_rejections() {
    let tmp = tempfile::tempdir().unwrap();
    let (h, mut rx) = RaftNode::start(cfg(tmp.path(), 0)).unwrap();
    let (tx, mut rejected) = tokio::sync::mpsc::unbounded_channel();

    // Accepted: the entry is committed and the callback is never called.
    let t = tx.clone();
    h.propose_or_else(b"ok".to_vec(), move |e| {
        let _ = t.send(("ok", e));
    })
    .unwrap();
    let got = recv_until(&mut rx, |es| payloads(es).contains(&b"ok".to_vec())).await;
    assert_eq!(payloads(&got), vec![b"ok".to_vec()]);

    // Rejected by the node thread: reported through the callback.
    let t = tx.clone();
    h.propose_or_else(Vec::new(), move |e| {
        let _ = t.send(("empty", e));
    })
    .unwrap();
    let (which, err) = tokio::time::timeout(Duration::from_secs(10), rejected.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(which, "empty", "the accepted proposal must not be reported");
    assert!(matches!(err, RaftError::EmptyProposal));

    // After shutdown: refused at once, the callback is dropped uncalled.
    h.shutdown();
    let t = tx.clone();
    assert!(matches!(
        h.propose_or_else(b"late".to_vec(), move |e| {
            let _ = t.send(("late", e));
        }),
        Err(RaftError::Stopped)
    ));
    drop(tx);
    assert!(rejected.recv().await.is_none(), "no further callbacks");
    while rx.recv().await.is_some() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_log_stays_bounded_between_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let c = RaftConfig {
        // No snapshot (and no WAL release) during the test: only the memory bound acts.
        snapshot_count: 1_000_000,
        ..cfg(tmp.path(), 0)
    };
    let (h, mut rx) = RaftNode::start(c).unwrap();
    let n = 3 * StartOptions::DEFAULT_CATCH_UP_ENTRIES as usize;
    propose_all(&h, n).await;
    let es = recv_until(&mut rx, |es| payloads(es).len() >= n).await;
    let last = es.last().unwrap().index;
    assert_eq!(
        h.status().log_first_index,
        1,
        "nothing dropped before it is applied"
    );
    h.set_applied(last);
    h.set_durable_applied(last);
    // The node thread compacts on its next iteration (at the latest on its next tick).
    let mut first = 0;
    for _ in 0..500 {
        first = h.status().log_first_index;
        if first > 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let keep = StartOptions::DEFAULT_CATCH_UP_ENTRIES;
    assert!(
        first >= last - 2 * keep && first <= last - keep,
        "first in-memory index {first}, last {last}: expected {keep}..{} entries kept",
        2 * keep
    );
    // Proposals still commit after the compaction.
    h.propose(b"after".to_vec()).await.unwrap();
    let es = recv_until(&mut rx, |es| payloads(es).contains(&b"after".to_vec())).await;
    assert_contiguous(&es);
    h.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_is_pushed_and_the_channel_closes_on_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let (h, mut rx) = RaftNode::start(cfg(tmp.path(), 0)).unwrap();
    let mut leadership = h.leadership();
    let now = *leadership.borrow();
    assert_eq!((now.role, now.leader_id), (Role::Leader, 1));
    assert!(now.is_leader() && now.term >= 1, "{now:?}");
    assert_eq!(now.term, h.status().term);

    h.shutdown();
    // The last value says nobody leads; then the channel is closed.
    leadership.changed().await.unwrap();
    let last = *leadership.borrow_and_update();
    assert_eq!((last.role, last.leader_id), (Role::Follower, 0));
    assert!(!last.has_leader());
    assert!(leadership.changed().await.is_err());
    while rx.recv().await.is_some() {}
}

/// Receives until the entry at `index` arrived; returns it.
async fn recv_index(rx: &mut UnboundedReceiver<Vec<CommittedEntry>>, index: u64) -> CommittedEntry {
    let es = recv_until(rx, |es| es.iter().any(|e| e.index == index)).await;
    es.into_iter().find(|e| e.index == index).unwrap()
}

/// Proposes `cc` and returns its committed entry.
async fn commit_conf_change(
    h: &RaftHandle,
    rx: &mut UnboundedReceiver<Vec<CommittedEntry>>,
    cc: raft::eraftpb::ConfChangeV2,
) -> CommittedEntry {
    h.propose_conf_change(cc).await.unwrap();
    let es = recv_until(rx, |es| es.iter().any(|e| e.kind == EntryKind::ConfChange)).await;
    es.into_iter()
        .find(|e| e.kind == EntryKind::ConfChange)
        .unwrap()
}

fn sorted(cs: &ConfState) -> (Vec<u64>, Vec<u64>) {
    let (mut v, mut l) = (cs.voters.clone(), cs.learners.clone());
    v.sort_unstable();
    l.sort_unstable();
    (v, l)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conf_changes_reach_the_applier_are_applied_once_and_survive_a_restart() {
    use raft::eraftpb::ConfChangeType::{AddLearnerNode, AddNode};
    let tmp = tempfile::tempdir().unwrap();
    let (h, mut rx) = RaftNode::start(cfg(tmp.path(), 0)).unwrap();

    // A learner: the entry comes back committed, with its context.
    let e = commit_conf_change(
        &h,
        &mut rx,
        conf_change(&[(AddLearnerNode, 2)], b"m2".to_vec()),
    )
    .await;
    let cc = crate::wire::decode_conf_change(&e.data).unwrap();
    assert_eq!(&cc.context[..], b"m2");
    // Until the applier applied it, a second change is refused, not silently dropped.
    assert!(matches!(
        h.propose_conf_change(conf_change(&[(AddNode, 3)], vec![]))
            .await,
        Err(RaftError::ConfChangePending)
    ));
    let cs = h.apply_conf_change(e.index, cc).await.unwrap();
    assert_eq!(sorted(&cs), (vec![1], vec![2]));
    assert_eq!(h.conf_state(), cs);

    // A change the applier refuses leaves the membership as it was.
    let e = commit_conf_change(&h, &mut rx, conf_change(&[(AddNode, 4)], vec![])).await;
    assert_eq!(h.reject_conf_change(e.index).await.unwrap(), cs);
    assert!(matches!(
        h.propose_conf_change(conf_change(&[], vec![])).await,
        Err(RaftError::ConfChangeRefused(_))
    ));

    // A voter (it never starts, so nothing commits after this one).
    let e = commit_conf_change(&h, &mut rx, conf_change(&[(AddNode, 3)], vec![])).await;
    let cc3 = crate::wire::decode_conf_change(&e.data).unwrap();
    let cs = h.apply_conf_change(e.index, cc3.clone()).await.unwrap();
    assert_eq!(sorted(&cs), (vec![1, 3], vec![2]));
    h.set_applied(e.index - 1);
    h.shutdown();
    while rx.recv().await.is_some() {}

    // Restart with the backend just before the change: the WAL restores the
    // membership at once, the entry is replayed, and applying it again does
    // not apply it twice.
    let (h, mut rx) = RaftNode::start(cfg(tmp.path(), e.index - 1)).unwrap();
    assert_eq!(sorted(&h.conf_state()), (vec![1, 3], vec![2]));
    assert!(
        !h.leadership().borrow().is_leader(),
        "1 of 2 voters cannot lead"
    );
    let again = recv_index(&mut rx, e.index).await;
    assert_eq!(again.kind, EntryKind::ConfChange);
    assert_eq!(h.apply_conf_change(e.index, cc3).await.unwrap(), cs);
    h.shutdown();
}
