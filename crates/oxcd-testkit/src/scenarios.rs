//! Cluster scenarios written once and run against etcd (to validate them) and oxcd: each
//! takes a [`ClusterConfig`] and panics with the cluster's logs when the cluster misbehaves
//! (they are meant to be called from tests).

use std::fmt::Debug;
use std::time::Duration;

use oxcd_proto::etcdserverpb::lease_client::LeaseClient;
use oxcd_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseTimeToLiveRequest, PutRequest, RangeRequest,
};

use crate::cluster::{Cluster, ClusterConfig, MemberState};
use crate::proxy::LinkMode;
use crate::robustness::{run, RobustnessConfig, RunReport};

/// `unwrap` for scenarios: panics with the error (the cluster's logs follow from its Drop).
trait OkOrPanic<T> {
    fn ok_or_panic(self) -> T;
}

impl<T, E: Debug> OkOrPanic<T> for Result<T, E> {
    #[track_caller]
    fn ok_or_panic(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => panic!("scenario step failed: {e:?}"),
        }
    }
}

impl<T> OkOrPanic<T> for Option<T> {
    #[track_caller]
    fn ok_or_panic(self) -> T {
        match self {
            Some(v) => v,
            None => panic!("scenario step found nothing"),
        }
    }
}

/// Puts `key`=`key` through `member` (3 s timeout); the header revision.
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
    *end.last_mut().ok_or_panic() += 1;
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
        .ok_or_panic();
    resp.into_inner()
        .kvs
        .into_iter()
        .map(|kv| String::from_utf8(kv.key).ok_or_panic())
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

/// Kills the leader (a new one is elected, writes go on), restarts it (it catches up),
/// pauses a follower across a write (it catches up after SIGCONT). Needs 3 members.
pub async fn kill_leader_restart_and_pause(cfg: ClusterConfig) {
    let mut c = Cluster::start(cfg).await.ok_or_panic();
    let leader = c.wait_ready().await.ok_or_panic();
    put(&c, leader, "a/1").await.ok_or_panic();

    c.kill(leader);
    assert_eq!(c.members()[leader].state(), MemberState::Down);
    let new_leader = c.wait_ready().await.ok_or_panic();
    assert_ne!(new_leader, leader);
    put(&c, new_leader, "a/2").await.ok_or_panic();

    c.restart(leader).ok_or_panic();
    c.wait_ready().await.ok_or_panic();
    await_keys(&c, leader, "a/", 2).await;

    // A paused follower misses writes and catches up when resumed.
    let follower = (0..3).find(|&i| i != new_leader).ok_or_panic();
    c.pause(follower);
    put(&c, new_leader, "a/3").await.ok_or_panic();
    c.resume(follower);
    await_keys(&c, follower, "a/", 3).await;
}

/// Renews each of `ids` once through `member` (one keep-alive stream); the smallest TTL
/// granted (0 if one of them is gone).
async fn renew(c: &Cluster, member: usize, ids: &[i64]) -> Result<i64, tonic::Status> {
    let mut client = LeaseClient::new(c.channel(member));
    let reqs: Vec<LeaseKeepAliveRequest> =
        ids.iter().map(|&id| LeaseKeepAliveRequest { id }).collect();
    let mut req = tonic::Request::new(futures::stream::iter(reqs));
    req.set_timeout(Duration::from_secs(5));
    let mut answers = client.lease_keep_alive(req).await?.into_inner();
    let mut min = i64::MAX;
    for _ in ids {
        match answers.message().await? {
            Some(r) => min = min.min(r.ttl),
            None => return Err(tonic::Status::unavailable("keep-alive stream ended")),
        }
    }
    Ok(min)
}

/// The leader holding leases is paused (SIGSTOP) past their TTL while a new leader keeps
/// them alive; after SIGCONT the old leader finds them expired by its own clock. It must not
/// revoke them: only once a quorum has confirmed it still leads (etcd's
/// `ensureLeadership`). Many leases, so that some of its revokes would be proposed after it
/// has stepped down, which raft forwards to the new leader, and commits. The keys under the
/// leases survive and the leases' TTLs are intact. Needs 3 members.
pub async fn paused_leader_does_not_revoke_leases(cfg: ClusterConfig) {
    const TTL: i64 = 3;
    const LEASES: usize = 60;
    let mut c = Cluster::start(cfg).await.ok_or_panic();
    let leader = c.wait_ready().await.ok_or_panic();
    let mut ids = Vec::new();
    let mut renewed = tokio::time::Instant::now();
    for i in 0..LEASES {
        let id = LeaseClient::new(c.channel(leader))
            .lease_grant(LeaseGrantRequest { ttl: TTL, id: 0 })
            .await
            .ok_or_panic()
            .into_inner()
            .id;
        let put = PutRequest {
            key: format!("lease/{i:03}").into_bytes(),
            value: b"v".to_vec(),
            lease: id,
            ..Default::default()
        };
        c.kv(leader).put(put).await.ok_or_panic();
        ids.push(id);
        // Granting takes a while on a loaded machine: keep the first leases alive.
        if renewed.elapsed() > Duration::from_secs(1) {
            assert!(
                renew(&c, leader, &ids).await.ok_or_panic() > 0,
                "lease lost"
            );
            renewed = tokio::time::Instant::now();
        }
    }
    assert!(
        renew(&c, leader, &ids).await.ok_or_panic() > 0,
        "lease lost"
    );
    c.pause(leader);
    let rest: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader = c
        .wait_leader_among(&rest, Duration::from_secs(20))
        .await
        .ok_or_panic();
    // Keep the leases alive through the new leader for twice their TTL: the paused leader's
    // clock runs on, so by its own reckoning they are long expired when it resumes.
    let renew_every = Duration::from_millis(500);
    let until = tokio::time::Instant::now() + Duration::from_secs(2 * TTL as u64);
    while tokio::time::Instant::now() < until {
        assert!(
            renew(&c, new_leader, &ids).await.ok_or_panic() > 0,
            "lease lost"
        );
        tokio::time::sleep(renew_every).await;
    }
    c.resume(leader);
    // While the old leader rejoins (and would revoke, if it did not check), keep renewing
    // until it follows the new leader and has caught up with a write made after it resumed.
    let after = PutRequest {
        key: b"lease/after-resume".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    c.kv(new_leader).put(after).await.ok_or_panic();
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            renew(&c, new_leader, &ids).await.ok_or_panic() > 0,
            "lease lost"
        );
        if local_keys(&c, leader, "lease/").await.len() == LEASES + 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the old leader never caught up"
        );
        tokio::time::sleep(renew_every).await;
    }
    // Revokes the old leader might have queued on resuming are proposed 16 at a time, each
    // waiting up to a request timeout (7 s by default): renew for longer than that, then
    // every lease and key must still be there on every member.
    let until = tokio::time::Instant::now() + Duration::from_secs(9);
    while tokio::time::Instant::now() < until {
        assert!(
            renew(&c, new_leader, &ids).await.ok_or_panic() > 0,
            "lease lost"
        );
        tokio::time::sleep(renew_every).await;
    }
    for &id in &ids {
        let ttl = LeaseClient::new(c.channel(new_leader))
            .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true })
            .await
            .ok_or_panic()
            .into_inner();
        assert!(ttl.ttl > 0, "lease revoked: {ttl:?}");
        assert_eq!(ttl.keys.len(), 1, "{ttl:?}");
    }
    for i in 0..3 {
        assert_eq!(
            local_keys(&c, i, "lease/").await.len(),
            LEASES + 1,
            "member {i}"
        );
    }
}

/// Blackholes the leader's links: the others elect a new leader and commit, the cut-off
/// member cannot; after healing it catches up. Needs 3 members with fault proxies.
pub async fn partitioned_leader_loses_leadership(cfg: ClusterConfig) {
    let mut c = Cluster::start(cfg).await.ok_or_panic();
    let leader = c.wait_ready().await.ok_or_panic();
    let rest: Vec<usize> = (0..3).filter(|&i| i != leader).collect();

    c.net().ok_or_panic().isolate(leader, LinkMode::Blackhole);
    let new_leader = c
        .wait_leader_among(&rest, Duration::from_secs(20))
        .await
        .ok_or_panic();
    assert_ne!(new_leader, leader);
    require_leader_fails_fast(&c, leader).await;
    put(&c, new_leader, "p/1").await.ok_or_panic();
    // The cut-off member cannot commit a write.
    assert!(put(&c, leader, "p/lost").await.is_err());

    c.net().ok_or_panic().heal();
    c.wait_ready().await.ok_or_panic();
    await_keys(&c, leader, "p/", 1).await;
}

/// Once cut-off `member` has stepped down (check-quorum), a call made `WithRequireLeader`
/// fails at once with etcd's "no leader", well before its 3 s deadline. Serializable, so it
/// is answered locally while the member still thinks it leads.
async fn require_leader_fails_fast(c: &Cluster, member: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let mut req = tonic::Request::new(RangeRequest {
            key: b"p/".to_vec(),
            serializable: true,
            ..Default::default()
        });
        req.metadata_mut().insert(
            "hasleader",
            tonic::metadata::MetadataValue::from_static("true"),
        );
        req.set_timeout(Duration::from_secs(3));
        let started = std::time::Instant::now();
        match c.kv(member).range(req).await {
            Err(status) if status.message() == "etcdserver: no leader" => {
                assert_eq!(status.code(), tonic::Code::Unavailable);
                assert!(
                    started.elapsed() < Duration::from_secs(1),
                    "{:?}",
                    started.elapsed()
                );
                return;
            }
            other => assert!(
                std::time::Instant::now() < deadline,
                "member {member} still answers without a leader: {other:?}"
            ),
        }
        // No event to await: the member's view of the leader is polled.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Delays, then drops, the links between the leader and one follower: writes still commit
/// quickly through the third member; after healing the follower catches up.
pub async fn delayed_and_dropped_links(cfg: ClusterConfig) {
    let mut c = Cluster::start(cfg).await.ok_or_panic();
    let leader = c.wait_ready().await.ok_or_panic();
    let follower = (leader + 1) % 3;
    let net = c.net().ok_or_panic();
    net.set_pair(
        leader,
        follower,
        LinkMode::Delay {
            fixed: Duration::from_millis(150),
            jitter: Duration::from_millis(20),
        },
    );
    let start = std::time::Instant::now();
    put(&c, leader, "d/1").await.ok_or_panic();
    // The third member still gives a quorum faster than one round trip (300 ms or more)
    // over the delayed link.
    assert!(
        start.elapsed() < Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
    net.set_pair(leader, follower, LinkMode::Drop);
    put(&c, leader, "d/2").await.ok_or_panic();
    net.heal();
    await_keys(&c, follower, "d/", 2).await;
}

/// Replaces a follower (data dir wiped, MemberRemove + MemberAdd, started with `existing`):
/// it catches up. Then fills member 2's disk (`cfg.tmpfs_mb` must put member 2 on a tmpfs):
/// the other two keep committing; after freeing (and restarting it if it died) member 2
/// catches up.
pub async fn replaced_member_and_full_disk(cfg: ClusterConfig) {
    assert!(
        cfg.tmpfs_mb.iter().any(|(m, _)| *m == 2),
        "member 2 needs a tmpfs data dir"
    );
    let mut c = Cluster::start(cfg).await.ok_or_panic();
    let leader = c.wait_ready().await.ok_or_panic();
    put(&c, leader, "r/1").await.ok_or_panic();

    let victim = (leader + 1) % 3;
    c.replace(victim).await.ok_or_panic();
    c.wait_ready().await.ok_or_panic();
    await_keys(&c, victim, "r/", 1).await;

    let filled = c.fill_disk(2).ok_or_panic();
    assert!(filled > 0);
    // Two members with room are a quorum: writes go on. The full member may crash or lose
    // leadership on the way; it may also stay leader for a while, as long as its
    // preallocated WAL segment and the free pages of its backend take the writes.
    for i in 0..20 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let leader = c.wait_ready().await.ok_or_panic();
            if put(&c, leader, &format!("f/{i}")).await.is_ok() {
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
    c.free_disk(2).ok_or_panic();
    if c.members()[2].state() == MemberState::Down {
        c.start_member(2).ok_or_panic();
    }
    c.wait_ready().await.ok_or_panic();
    await_keys(&c, 2, "f/", 20).await;
}

/// A robustness run on a cluster started from `cfg`; panics with the report if a check fails.
pub async fn robustness(cfg: ClusterConfig, run_cfg: &RobustnessConfig) -> RunReport {
    let mut cluster = Cluster::start(cfg).await.ok_or_panic();
    let report = run(&mut cluster, run_cfg).await;
    eprintln!("{report}");
    assert!(report.passed(), "robustness run failed:\n{report}");
    report
}
