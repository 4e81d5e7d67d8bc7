//! Raft nodes talking through [`crate::PeerTransport`]s: election and replication, a
//! snapshot sent as a file, a cut link.

use oxcd_raft::eraftpb::ConfChangeType::AddLearnerNode;
use oxcd_raft::{conf_change, EntryKind, Leadership, RaftHandle};

use super::harness::{wait_until, Member, MemberSpec, Proxy, WAIT};

const CLUSTER: u64 = 0xc1;

async fn leader_of(members: &[&Member]) -> u64 {
    let mut watch = members[0].raft.leadership();
    let l = tokio::time::timeout(WAIT, watch.wait_for(Leadership::has_leader))
        .await
        .expect("no leader elected")
        .expect("node stopped");
    l.leader_id
}

async fn propose_n(h: &RaftHandle, tag: &str, n: usize) {
    for i in 0..n {
        h.propose(format!("{tag}{i}").into_bytes()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_members_elect_a_leader_and_replicate() {
    let tmp = tempfile::tempdir().unwrap();
    let ports = [24400, 24401, 24402];
    let mut members = Vec::new();
    for id in 1..=3u64 {
        let peers = (1..=3u64)
            .filter(|p| *p != id)
            .map(|p| (p, ports[p as usize - 1]))
            .collect();
        members.push(
            Member::start(MemberSpec {
                voters: vec![1, 2, 3],
                peers,
                snapshot_count: 0,
                ..MemberSpec::new(tmp.path(), CLUSTER, id, ports[id as usize - 1])
            })
            .await,
        );
    }
    let refs: Vec<&Member> = members.iter().collect();
    let leader = leader_of(&refs).await;
    let l = &members[leader as usize - 1];
    propose_n(&l.raft, "x", 50).await;
    wait_until("every member applies 50 entries", || {
        members.iter().all(|m| m.payloads() == 50)
    })
    .await;
    assert_eq!(members[0].state().payloads, members[1].state().payloads);
    assert_eq!(members[0].state().payloads, members[2].state().payloads);
    let stats = l.transport.stats();
    assert!(stats.sent > 0);
    // No snapshot was needed.
    assert_eq!(stats.snapshots_sent, 0);
    for m in &members {
        assert!(m
            .delivered
            .lock()
            .iter()
            .all(|(k, _)| *k != EntryKind::Snapshot));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_behind_the_compacted_log_receives_the_snapshot_as_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (p1, p2) = (24410, 24411);
    let m1 = Member::start(MemberSpec {
        voters: vec![1],
        peers: vec![],
        snapshot_count: 20,
        ..MemberSpec::new(tmp.path(), CLUSTER, 1, p1)
    })
    .await;
    propose_n(&m1.raft, "a", 100).await;
    wait_until("member 1 compacts its log", || {
        m1.raft.status().log_first_index > 1 && m1.payloads() == 100
    })
    .await;

    m1.raft
        .propose_conf_change(conf_change(&[(AddLearnerNode, 2)], b"m2".to_vec()))
        .await
        .unwrap();
    let m2 = Member::start(MemberSpec {
        voters: vec![],
        peers: vec![(1, p1)],
        snapshot_count: 0,
        ..MemberSpec::new(tmp.path(), CLUSTER, 2, p2)
    })
    .await;
    // First a URL nobody serves: unreachable; then the right one, replacing it.
    m1.transport
        .set_peer_urls(2, vec![super::harness::url(24498)]);
    wait_until("member 2 is reported unreachable", || {
        m1.transport.stats().unreachable > 0
    })
    .await;
    m1.transport.set_peer_urls(2, vec![super::harness::url(p2)]);

    wait_until("member 2 installs the snapshot", || m2.payloads() == 100).await;
    propose_n(&m1.raft, "b", 30).await;
    wait_until("member 2 catches up", || m2.payloads() == 130).await;
    assert_eq!(m2.state().payloads, m1.state().payloads);

    let delivered = m2.delivered.lock().clone();
    assert_eq!(delivered[0].0, EntryKind::Snapshot, "{delivered:?}");
    // The file arrived whole (a few chunks: padded to 3 MiB), in the snapshot directory.
    let files = m2.handler.received_files.lock().clone();
    assert_eq!(files.len(), 1);
    assert!(files[0].1 > 3 << 20, "{files:?}");
    wait_until("the sender reports the snapshot", || {
        m1.transport.stats().snapshots_sent == 1
    })
    .await;
    assert_eq!(m1.transport.stats().snapshots_failed, 0);
    // The receiver timed the file's fsync and its whole save once (etcd's
    // etcd_snap_db_fsync_duration_seconds and _save_total_duration_seconds).
    let stats = &m2.handler.stats;
    assert_eq!(stats.snap_db_fsync_seconds.snapshot().count, 1);
    let save = stats.snap_db_save_seconds.snapshot();
    assert_eq!(save.count, 1);
    assert!(save.sum >= stats.snap_db_fsync_seconds.snapshot().sum);
    assert_eq!(m1.handler.stats.snap_db_save_seconds.snapshot().count, 0);
    // Neither side leaves a temporary file behind.
    for dir in [&m1.handler.snap_dir, &m2.handler.snap_dir] {
        let left: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
        assert!(left.is_empty(), "{left:?} in {}", dir.display());
    }
}

/// Port of the proxy on the directed link `from -> to`.
fn proxy_port(from: u64, to: u64) -> u16 {
    24430 + ((from - 1) * 3 + (to - 1)) as u16
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_link_is_reported_unreachable_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let ports = [24420, 24421, 24422];
    let mut proxies = std::collections::HashMap::new();
    for from in 1..=3u64 {
        for to in (1..=3u64).filter(|t| *t != from) {
            let p = Proxy::start(proxy_port(from, to), ports[to as usize - 1]).await;
            proxies.insert((from, to), p);
        }
    }
    let mut members = Vec::new();
    for id in 1..=3u64 {
        let peers = (1..=3u64)
            .filter(|p| *p != id)
            .map(|p| (p, proxy_port(id, p)))
            .collect();
        members.push(
            Member::start(MemberSpec {
                voters: vec![1, 2, 3],
                peers,
                snapshot_count: 0,
                ..MemberSpec::new(tmp.path(), CLUSTER, id, ports[id as usize - 1])
            })
            .await,
        );
    }
    let refs: Vec<&Member> = members.iter().collect();
    let leader = leader_of(&refs).await;
    let l = &members[leader as usize - 1];
    propose_n(&l.raft, "x", 10).await;
    wait_until("all apply", || members.iter().all(|m| m.payloads() == 10)).await;

    // Cut the follower `f` off from the leader, both ways.
    let f = if leader == 1 { 2 } else { 1 };
    let before = l.transport.stats().unreachable;
    proxies[&(leader, f)].cut();
    proxies[&(f, leader)].cut();
    wait_until("the leader reports the follower unreachable", || {
        l.transport.stats().unreachable > before
    })
    .await;
    // The other two still commit.
    propose_n(&l.raft, "y", 20).await;
    let third = members
        .iter()
        .find(|m| m.id != leader && m.id != f)
        .unwrap();
    wait_until("the third member applies", || third.payloads() == 30).await;
    assert!(members[f as usize - 1].payloads() < 30);

    // Restored, the link carries the follower up to date (the leader may have changed
    // meanwhile if the follower's election attempts got through: pre-vote keeps it).
    proxies[&(leader, f)].restore();
    proxies[&(f, leader)].restore();
    wait_until("the follower catches up", || {
        members[f as usize - 1].payloads() == 30
    })
    .await;
    assert_eq!(members[f as usize - 1].state().payloads, l.state().payloads);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_snapshot_does_not_hold_up_heartbeats_or_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let ports = [24412, 24413, 24414];
    // Exports take half a second and hold 128 MiB, sent in 64 KiB chunks: the transfer
    // lasts longer than an election timeout (0.5-1 s) in a debug build.
    let big = |id: u64| MemberSpec {
        voters: vec![1, 2],
        snapshot_count: 20,
        snapshot_padding: 128 << 20,
        export_delay: std::time::Duration::from_millis(500),
        snapshot_chunk_bytes: 64 << 10,
        peers: vec![(3 - id, ports[(2 - id) as usize])],
        ..MemberSpec::new(tmp.path(), CLUSTER, id, ports[id as usize - 1])
    };
    let voters = [Member::start(big(1)).await, Member::start(big(2)).await];
    let leader = leader_of(&[&voters[0], &voters[1]]).await;
    let (l, f) = if leader == 1 {
        (&voters[0], &voters[1])
    } else {
        (&voters[1], &voters[0])
    };
    propose_n(&l.raft, "a", 100).await;
    wait_until("the leader compacts its log", || {
        l.raft.status().log_first_index > 1 && f.payloads() == 100
    })
    .await;
    let term = l.raft.status().term;

    l.raft
        .propose_conf_change(conf_change(&[(AddLearnerNode, 3)], b"m3".to_vec()))
        .await
        .unwrap();
    let m3 = Member::start(MemberSpec {
        peers: vec![(1, ports[0]), (2, ports[1])],
        ..MemberSpec::new(tmp.path(), CLUSTER, 3, ports[2])
    })
    .await;
    for v in &voters {
        v.transport
            .set_peer_urls(3, vec![super::harness::url(ports[2])]);
    }
    wait_until("the leader starts sending the snapshot", || {
        std::fs::read_dir(&l.handler.snap_dir).is_ok_and(|mut d| d.next().is_some())
    })
    .await;

    // While it is exported and sent, entries commit with the follower.
    let started = std::time::Instant::now();
    let proposals = (0..20).map(|i| l.raft.propose(format!("b{i}").into_bytes()));
    for r in futures::future::join_all(proposals).await {
        r.unwrap();
    }
    wait_until("the follower applies during the transfer", || {
        f.payloads() == 120
    })
    .await;
    assert!(
        m3.handler.received_files.lock().is_empty(),
        "the snapshot arrived before the entries committed"
    );
    wait_until("the learner installs the snapshot", || m3.payloads() >= 100).await;
    let took = started.elapsed();
    wait_until("the learner catches up", || m3.payloads() == 120).await;
    let size = m3.handler.received_files.lock()[0].1;
    eprintln!(
        "snapshot of {} MiB exported (0.5 s) and sent in {took:?} (from the proposals)",
        size >> 20
    );
    assert!(size > 128 << 20);
    // Nobody missed heartbeats: no election happened.
    for m in [&voters[0], &voters[1], &m3] {
        let s = m.raft.status();
        assert_eq!((s.term, s.leader_id), (term, leader), "member {}", m.id);
    }
}

/// Replication throughput through the transport (three members, 64 concurrent
/// proposers, WAL fsyncs included): `cargo test --release -p oxcd-peer -- --ignored
/// --nocapture throughput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement, not a check"]
async fn throughput() {
    let tmp = tempfile::tempdir().unwrap();
    let ports = [24403, 24404, 24405];
    let mut members = Vec::new();
    for id in 1..=3u64 {
        let peers = (1..=3u64)
            .filter(|p| *p != id)
            .map(|p| (p, ports[p as usize - 1]))
            .collect();
        members.push(
            Member::start(MemberSpec {
                voters: vec![1, 2, 3],
                peers,
                ..MemberSpec::new(tmp.path(), CLUSTER, id, ports[id as usize - 1])
            })
            .await,
        );
    }
    let refs: Vec<&Member> = members.iter().collect();
    let leader = leader_of(&refs).await;
    let raft = members[leader as usize - 1].raft.clone();
    let (proposers, each) = (64, 500);
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..proposers)
        .map(|p| {
            let raft = raft.clone();
            tokio::spawn(async move {
                for i in 0..each {
                    raft.propose(format!("p{p}-{i}").into_bytes())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let total = proposers * each;
    wait_until("all apply", || {
        members.iter().all(|m| m.payloads() == total)
    })
    .await;
    let took = started.elapsed();
    let stats = members[leader as usize - 1].transport.stats();
    eprintln!(
        "{total} proposals replicated to 3 members in {took:?}: {:.0}/s; leader sent {} \
         messages, dropped {}",
        total as f64 / took.as_secs_f64(),
        stats.sent,
        stats.dropped
    );
}
