//! The cluster harness and its faults, validated against a real 3-member etcd (Debian's 3.4
//! on PATH; the tests pass vacuously with a note when there is none). Each test takes its
//! own slice of the ports 24500-24699.

use std::time::Duration;

use oxcd_proto::etcdserverpb::{PutRequest, RangeRequest};
use oxcd_testkit::{Cluster, ClusterConfig, LinkMode, MemberState, PortSource};

fn etcd(size: usize, ports: (u16, u16)) -> Option<ClusterConfig> {
    let Some(mut cfg) = ClusterConfig::etcd_on_path(size) else {
        eprintln!("no etcd on PATH: skipping");
        return None;
    };
    cfg.ports = PortSource::range(ports.0, ports.1);
    Some(cfg)
}

async fn put(c: &Cluster, member: usize, key: &str) -> Result<i64, tonic::Status> {
    let mut req = tonic::Request::new(PutRequest {
        key: key.into(),
        value: key.into(),
        ..Default::default()
    });
    req.set_timeout(Duration::from_secs(3));
    let resp = c.kv(member).put(req).await?;
    Ok(resp.into_inner().header.map(|h| h.revision).unwrap_or(0))
}

/// Keys under `prefix` on `member`, served from its own data (serializable).
async fn local_keys(c: &Cluster, member: usize, prefix: &str) -> Vec<String> {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    let resp = c
        .kv(member)
        .range(RangeRequest {
            key: prefix.into(),
            range_end: end,
            serializable: true,
            keys_only: true,
            ..Default::default()
        })
        .await
        .unwrap();
    resp.into_inner()
        .kvs
        .into_iter()
        .map(|kv| String::from_utf8(kv.key).unwrap())
        .collect()
}

/// Waits until `member` has `n` keys under `prefix` locally.
async fn await_keys(c: &Cluster, member: usize, prefix: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if local_keys(c, member, prefix).await.len() == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "member {member} never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_leader_restart_and_pause() {
    let Some(cfg) = etcd(3, (24500, 24540)) else {
        return;
    };
    let mut c = Cluster::start(cfg).await.unwrap();
    let leader = c.wait_ready().await.unwrap();
    put(&c, leader, "a/1").await.unwrap();

    c.kill(leader);
    assert_eq!(c.members()[leader].state(), MemberState::Down);
    let new_leader = c.wait_ready().await.unwrap();
    assert_ne!(new_leader, leader);
    put(&c, new_leader, "a/2").await.unwrap();

    c.restart(leader).unwrap();
    c.wait_ready().await.unwrap();
    await_keys(&c, leader, "a/", 2).await;

    // A paused follower misses writes and catches up when resumed.
    let follower = (0..3).find(|&i| i != new_leader).unwrap();
    c.pause(follower);
    put(&c, new_leader, "a/3").await.unwrap();
    c.resume(follower);
    await_keys(&c, follower, "a/", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_leader_loses_leadership_and_catches_up_after_heal() {
    let Some(cfg) = etcd(3, (24540, 24580)) else {
        return;
    };
    let mut c = Cluster::start(cfg).await.unwrap();
    let leader = c.wait_ready().await.unwrap();
    let rest: Vec<usize> = (0..3).filter(|&i| i != leader).collect();

    c.net().unwrap().isolate(leader, LinkMode::Blackhole);
    let new_leader = c
        .wait_leader_among(&rest, Duration::from_secs(20))
        .await
        .unwrap();
    assert_ne!(new_leader, leader);
    put(&c, new_leader, "p/1").await.unwrap();
    // The cut-off member cannot commit a write.
    assert!(put(&c, leader, "p/lost").await.is_err());

    c.net().unwrap().heal();
    c.wait_ready().await.unwrap();
    await_keys(&c, leader, "p/", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_and_dropped_links_keep_the_cluster_serving() {
    let Some(cfg) = etcd(3, (24580, 24620)) else {
        return;
    };
    let mut c = Cluster::start(cfg).await.unwrap();
    let leader = c.wait_ready().await.unwrap();
    let follower = (leader + 1) % 3;
    let net = c.net().unwrap();
    net.set_pair(
        leader,
        follower,
        LinkMode::Delay {
            fixed: Duration::from_millis(100),
            jitter: Duration::from_millis(20),
        },
    );
    let start = std::time::Instant::now();
    put(&c, leader, "d/1").await.unwrap();
    // The third member still gives a quick quorum.
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    net.set_pair(leader, follower, LinkMode::Drop);
    put(&c, leader, "d/2").await.unwrap();
    net.heal();
    await_keys(&c, follower, "d/", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_member_and_full_disk() {
    let Some(mut cfg) = etcd(3, (24620, 24660)) else {
        return;
    };
    // etcd preallocates 64 MiB WAL segments, so its tmpfs must be larger than that.
    cfg.tmpfs_mb = vec![(2, 96)];
    let mut c = Cluster::start(cfg).await.unwrap();
    let leader = c.wait_ready().await.unwrap();
    put(&c, leader, "r/1").await.unwrap();

    let victim = (leader + 1) % 3;
    c.replace(victim).await.unwrap();
    c.wait_ready().await.unwrap();
    await_keys(&c, victim, "r/", 1).await;

    let filled = c.fill_disk(2).unwrap();
    assert!(filled > 0);
    // Two members with room are a quorum: writes go on (through a leader that is not the
    // full member; it may crash or lose leadership on the way).
    for i in 0..20 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let leader = c.wait_ready().await.unwrap();
            if leader != 2 && put(&c, leader, &format!("f/{i}")).await.is_ok() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no write with a full disk on m2"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    eprintln!(
        "member m2 with a full disk: {:?}\n{}",
        c.members()[2].state(),
        c.log_tail(2, 5)
    );
    c.free_disk(2).unwrap();
    if c.members()[2].state() == MemberState::Down {
        c.start_member(2).unwrap();
    }
    c.wait_ready().await.unwrap();
    await_keys(&c, 2, "f/", 20).await;
}
