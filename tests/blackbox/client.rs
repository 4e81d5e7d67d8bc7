//! oxcd-client against real oxcd processes: KV, txn, lease keep-alive and watch, across
//! server restarts (watch resumes without gaps or duplicates, keep-alive continues).

use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use futures::StreamExt;
use oxcd_client::{
    Client, Compare, CompareOp, DeleteOptions, Discovery, Election, ErrorKind, GetOptions,
    KeeperState, KeyLayout, Mutex, PutOptions, RegistrationState, ServiceChange, ServiceInstance,
    Session, SortBy, SortOrderBy, Txn, TxnOp, WatchOptions, WatchStream,
};

use crate::harness::Server;

/// This module's servers listen on ports 24200-24299 (client port, then peer port).
static NEXT_PORT: AtomicU16 = AtomicU16::new(24200);

/// A (client, peer) port pair no other test of this module uses.
fn ports() -> (u16, u16) {
    let port = NEXT_PORT.fetch_add(2, Ordering::SeqCst);
    assert!(port < 24300, "out of ports in 24200-24299");
    (port, port + 1)
}

fn start(dir: &Path, (port, peer): (u16, u16)) -> Server {
    Server::start_with(dir, port, peer, &[])
}

async fn connect(server: &Server) -> Client {
    Client::connect([server.endpoint()]).await.expect("connect")
}

/// The next `n` events of `watch` as (key, revision), failing after `limit`.
async fn next_events(watch: &mut WatchStream, n: usize) -> Vec<(String, i64)> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let response = tokio::time::timeout(Duration::from_secs(30), watch.next())
            .await
            .unwrap_or_else(|_| panic!("no event after {seen:?}"))
            .expect("watch ended")
            .expect("watch error");
        for event in response.events {
            let kv = event.kv.expect("kv");
            seen.push((String::from_utf8(kv.key).unwrap(), kv.mod_revision));
        }
    }
    seen
}

#[tokio::test]
async fn kv_and_txn_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), ports());
    let kv = connect(&server).await.kv();

    let first = kv.put("a/1", "x", PutOptions::new()).await.unwrap();
    kv.put("a/2", "y", PutOptions::new()).await.unwrap();
    let replaced = kv
        .put("a/1", "z", PutOptions::new().with_prev_kv())
        .await
        .unwrap();
    assert_eq!(replaced.prev_kv.unwrap().value, b"x");

    let all = kv.get("a/", GetOptions::new().with_prefix()).await.unwrap();
    assert_eq!(all.kvs.len(), 2);
    let count = kv
        .get("a/", GetOptions::new().with_prefix().with_count_only())
        .await
        .unwrap();
    assert_eq!((count.count, count.kvs.len()), (2, 0));
    let old = kv
        .get(
            "a/1",
            GetOptions::new().with_revision(first.header.unwrap().revision),
        )
        .await
        .unwrap();
    assert_eq!(old.kvs[0].value, b"x");

    let txn = Txn::new()
        .when([Compare::value("a/1", CompareOp::Equal, "z")])
        .and_then([TxnOp::put("a/3", "w", PutOptions::new())])
        .or_else([TxnOp::get("a/1", GetOptions::new())]);
    assert!(kv.txn(txn).await.unwrap().succeeded);

    let deleted = kv
        .delete("a/", DeleteOptions::new().with_prefix().with_prev_kv())
        .await
        .unwrap();
    assert_eq!(deleted.deleted, 3);

    let future = kv
        .get("a/1", GetOptions::new().with_revision(1_000_000))
        .await
        .unwrap_err();
    assert_eq!(future.kind(), ErrorKind::FutureRevision);
}

#[tokio::test]
async fn unreachable_endpoints_fail_over_to_a_live_one() {
    let dir = tempfile::tempdir().unwrap();
    let (dead, _) = ports();
    let server = start(dir.path(), ports());
    let client = Client::connect([format!("127.0.0.1:{dead}"), server.endpoint()])
        .await
        .expect("connect skips the dead endpoint");
    client.kv().put("k", "v", PutOptions::new()).await.unwrap();
    assert_eq!(client.endpoints().len(), 2);

    let member = client.pinned_to(&server.endpoint()).unwrap();
    assert_eq!(member.endpoints(), vec![server.endpoint()]);
    member
        .maintenance()
        .status()
        .await
        .expect("status of that member");
    let dead_member = client.pinned_to(&format!("127.0.0.1:{dead}")).unwrap();
    let error = dead_member
        .with_timeout(Duration::from_millis(300))
        .maintenance()
        .status()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
}

#[tokio::test]
async fn member_list_sync_replaces_the_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), ports());
    // Connected through "localhost"; the member advertises 127.0.0.1.
    let client = Client::connect([format!("localhost:{}", server.port)])
        .await
        .unwrap();
    let synced = client.sync_endpoints().await.unwrap();
    assert_eq!(synced, vec![server.endpoint()]);
    assert_eq!(client.endpoints(), vec![server.endpoint()]);
    let members = client.cluster().member_list(false).await.unwrap();
    assert_eq!(members.members.len(), 1);
    client
        .with_require_leader(true)
        .kv()
        .put("k", "v", PutOptions::new())
        .await
        .expect("a single member is its own leader");
}

#[tokio::test]
async fn watch_resumes_after_a_restart_without_gaps_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let ports = ports();
    let server = start(dir.path(), ports);
    let client = connect(&server).await;
    let mut watch = client
        .watch()
        .watch("w/", WatchOptions::new().with_prefix())
        .await
        .unwrap();
    for i in 0..5 {
        client
            .kv()
            .put(format!("w/{i}"), "v", PutOptions::new())
            .await
            .unwrap();
    }
    let mut seen = next_events(&mut watch, 5).await;

    server.kill9();
    let server = start(dir.path(), ports);
    // Written by another client right after the restart, likely before the watch is back.
    let writer = connect(&server).await;
    for i in 5..10 {
        writer
            .kv()
            .put(format!("w/{i}"), "v", PutOptions::new())
            .await
            .unwrap();
    }
    seen.extend(next_events(&mut watch, 5).await);

    let keys: Vec<String> = seen.iter().map(|(k, _)| k.clone()).collect();
    let expected: Vec<String> = (0..10).map(|i| format!("w/{i}")).collect();
    assert_eq!(keys, expected, "every put exactly once, in order");
    assert!(
        seen.windows(2).all(|w| w[0].1 < w[1].1),
        "revisions increase: {seen:?}"
    );
}

#[tokio::test]
async fn watch_says_so_when_its_resume_revision_was_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let ports = ports();
    let server = start(dir.path(), ports);
    let client = connect(&server).await;
    let kv = client.kv();
    kv.put("c", "1", PutOptions::new()).await.unwrap();
    let last = kv.put("c", "2", PutOptions::new()).await.unwrap();
    let revision = last.header.unwrap().revision;
    kv.compact(revision, true).await.unwrap();

    // A watch from a compacted revision is created, then canceled with the compaction.
    let mut refused = client
        .watch()
        .watch("c", WatchOptions::new().with_start_revision(1))
        .await
        .unwrap();
    let error = refused.next().await.expect("an answer").unwrap_err();
    assert!(
        matches!(error, oxcd_client::Error::WatchCompacted { compact_revision } if compact_revision == revision),
        "{error:?}"
    );
    assert!(refused.next().await.is_none(), "the watch ends");

    // A running watch whose resume point is compacted while it is cut off says so.
    let mut watch = client
        .watch()
        .watch("c", WatchOptions::new())
        .await
        .unwrap();
    kv.put("c", "3", PutOptions::new()).await.unwrap();
    next_events(&mut watch, 1).await;
    server.kill9();
    // Meanwhile the server runs on other ports, out of the watch's reach: more writes, and a
    // compaction past the revision the watch would resume from.
    let elsewhere = start(dir.path(), self::ports());
    let other = connect(&elsewhere).await.kv();
    other.put("c", "4", PutOptions::new()).await.unwrap();
    let newest = other.put("c", "5", PutOptions::new()).await.unwrap();
    let compacted_to = newest.header.unwrap().revision;
    other.compact(compacted_to, true).await.unwrap();
    elsewhere.kill9();
    let _back = start(dir.path(), ports);
    let error = tokio::time::timeout(Duration::from_secs(30), watch.next())
        .await
        .expect("an answer after the restart")
        .expect("an error, not the end")
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Compacted);
    assert!(
        matches!(error, oxcd_client::Error::WatchCompacted { compact_revision } if compact_revision == compacted_to),
        "{error:?}"
    );
    assert!(watch.next().await.is_none(), "the resumed watch ends too");
}

#[tokio::test]
async fn keep_alive_continues_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ports = ports();
    let server = start(dir.path(), ports);
    let client = connect(&server).await;
    let lease = client.lease();
    let id = lease.grant(2, 0).await.unwrap().id;
    let mut keeper = lease.keep_alive(id).await.unwrap();
    assert_eq!(keeper.state(), KeeperState::Alive { ttl: 2 });
    assert_eq!(keeper.next_renewal().await.unwrap(), 2);

    server.kill9();
    let server = start(dir.path(), ports);
    // Longer than the TTL: only renewals after the restart keep the lease.
    let outlived = tokio::time::timeout(Duration::from_secs(6), keeper.lost()).await;
    assert!(outlived.is_err(), "lease lost across the restart");
    let ttl = connect(&server)
        .await
        .lease()
        .time_to_live(id, false)
        .await
        .unwrap();
    assert!(ttl.ttl > 0, "lease {id:x} alive on the server: {ttl:?}");

    // Revoked behind its back, the keeper reports the loss.
    lease.revoke(id).await.unwrap();
    let lost = tokio::time::timeout(Duration::from_secs(10), keeper.lost())
        .await
        .expect("loss reported");
    assert_eq!(lost.kind(), ErrorKind::LeaseLost);
    assert_eq!(
        keeper.next_renewal().await.unwrap_err().kind(),
        ErrorKind::LeaseLost
    );

    let unknown = lease.keep_alive(id).await.unwrap_err();
    assert_eq!(unknown.kind(), ErrorKind::LeaseNotFound);
}

#[tokio::test]
async fn writes_wait_for_a_restarting_server_when_never_sent() {
    let dir = tempfile::tempdir().unwrap();
    let ports = ports();
    let server = start(dir.path(), ports);
    let client = connect(&server).await;
    client
        .kv()
        .put("before", "1", PutOptions::new())
        .await
        .unwrap();
    server.kill9();
    // A read notices the dead connection (retried until its timeout, then failing with the
    // cause: connection refused); after it the
    // client reconnects, the connection is refused, and a put surely never left: it is
    // retried until the server is back (the start takes well under the 10 s timeout).
    let read = client
        .with_timeout(Duration::from_millis(300))
        .kv()
        .get("before", GetOptions::new())
        .await
        .unwrap_err();
    assert_eq!(read.kind(), ErrorKind::Unavailable, "{read}");
    let put = tokio::spawn({
        let kv = client.kv();
        async move { kv.put("after", "2", PutOptions::new()).await }
    });
    let server = start(dir.path(), ports);
    put.await.unwrap().expect("put after restart");
    let got = connect(&server)
        .await
        .kv()
        .get("after", GetOptions::new())
        .await
        .unwrap();
    assert_eq!(got.kvs[0].value, b"2");
}

#[tokio::test]
async fn mutex_hands_the_lock_over_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), ports());
    let client = connect(&server).await;
    let first = Session::new(&client, 10).await.unwrap();
    let second = Session::new(&client, 10).await.unwrap();
    let mut held = Mutex::new(&first, "locks/job");
    held.lock().await.unwrap();

    let mut waiting = Mutex::new(&second, "locks/job");
    let (acquired_tx, mut acquired) = tokio::sync::oneshot::channel();
    let waiter = tokio::spawn(async move {
        waiting.lock().await.unwrap();
        let _ = acquired_tx.send(());
        waiting
    });
    // Once the waiter's candidate key exists, it still does not hold the lock.
    let mut candidates = client
        .watch()
        .watch(
            "locks/job/",
            WatchOptions::new().with_prefix().with_start_revision(1),
        )
        .await
        .unwrap();
    next_events(&mut candidates, 2).await;
    assert!(acquired.try_recv().is_err(), "lock taken while held");

    held.unlock().await.unwrap();
    let mut waiting = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("handed over")
        .unwrap();
    let owner = client
        .kv()
        .get(
            "locks/job/",
            GetOptions::new()
                .with_prefix()
                .with_sort(SortBy::CreateRevision, SortOrderBy::Ascend)
                .with_limit(1),
        )
        .await
        .unwrap();
    assert_eq!(owner.kvs[0].key, waiting.key());
    assert_eq!(
        waiting.key(),
        format!("locks/job/{:x}", second.lease_id()).as_bytes()
    );
    waiting.unlock().await.unwrap();
    second.close().await.unwrap();
    first.close().await.unwrap();
}

/// The next value an election observation yields.
async fn next_value<S>(observed: &mut S) -> Vec<u8>
where
    S: futures::Stream<Item = oxcd_client::Result<oxcd_proto::mvccpb::KeyValue>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(10), observed.next())
        .await
        .expect("observed")
        .expect("stream open")
        .expect("no error")
        .value
}

#[tokio::test]
async fn election_leader_observe_and_resign() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), ports());
    let client = connect(&server).await;
    let a = Session::new(&client, 10).await.unwrap();
    let b = Session::new(&client, 10).await.unwrap();
    let mut leader = Election::new(&a, "elect/svc");
    leader.campaign("a1").await.unwrap();
    let observed = Election::new(&b, "elect/svc").observe();
    let mut observed = Box::pin(observed);
    assert_eq!(next_value(&mut observed).await, b"a1");
    leader.proclaim("a2").await.unwrap();
    assert_eq!(next_value(&mut observed).await, b"a2");

    let mut follower = Election::new(&b, "elect/svc");
    let campaign = tokio::spawn(async move {
        follower.campaign("b1").await.unwrap();
        follower
    });
    leader.resign().await.unwrap();
    assert_eq!(next_value(&mut observed).await, b"b1");
    let follower = campaign.await.unwrap();
    assert_eq!(follower.leader().await.unwrap().value, b"b1");
    let stale = leader.proclaim("a3").await.unwrap_err();
    assert_eq!(stale.kind(), ErrorKind::NotLeader);
}

#[tokio::test]
async fn a_namespace_hides_its_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), ports());
    let client = connect(&server).await;
    let ns = client.namespaced("tenant/");
    let mut watch = ns
        .watch("", WatchOptions::new().with_prefix())
        .await
        .unwrap();
    ns.put("a", "1", PutOptions::new()).await.unwrap();
    client
        .kv()
        .put("outside", "x", PutOptions::new())
        .await
        .unwrap();
    let txn = Txn::new()
        .when([Compare::value("a", CompareOp::Equal, "1")])
        .and_then([TxnOp::put("b", "2", PutOptions::new())]);
    assert!(ns.txn(txn).await.unwrap().succeeded);

    let all = ns.get("", GetOptions::new().with_prefix()).await.unwrap();
    let keys: Vec<&[u8]> = all.kvs.iter().map(|kv| kv.key.as_slice()).collect();
    assert_eq!(keys, vec![&b"a"[..], &b"b"[..]]);
    let raw = client
        .kv()
        .get("tenant/b", GetOptions::new())
        .await
        .unwrap();
    assert_eq!(raw.kvs[0].value, b"2");

    let mut keys = Vec::new();
    while keys.len() < 2 {
        let response = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("event")
            .expect("open")
            .unwrap();
        keys.extend(response.events.into_iter().map(|e| e.kv.unwrap().key));
    }
    assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec()]);
    let deleted = ns
        .delete("", DeleteOptions::new().with_prefix())
        .await
        .unwrap();
    assert_eq!(deleted.deleted, 2);
    assert_eq!(
        client
            .kv()
            .get("outside", GetOptions::new())
            .await
            .unwrap()
            .count,
        1
    );
}

/// The next change a discovery yields.
async fn next_change(discovery: &mut Discovery) -> ServiceChange {
    tokio::time::timeout(Duration::from_secs(20), discovery.next())
        .await
        .expect("a change")
        .expect("discovery open")
        .expect("no error")
}

#[tokio::test]
async fn registrations_in_both_layouts_are_discovered_and_leave_on_deregister_and_drop() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), ports());
    let client = connect(&server).await;
    let mut discovery = client.discover("svc").await.unwrap();
    assert_eq!(discovery.instances().count(), 0);

    let etcd_style = client
        .register(ServiceInstance::new("svc", "10.0.0.1:50051").with_metadata("zone", "a"))
        .await
        .unwrap();
    let ServiceChange::Up(first) = next_change(&mut discovery).await else {
        panic!("expected an instance")
    };
    assert_eq!(first.key, "svc/10.0.0.1:50051");
    assert_eq!(first.address, "10.0.0.1:50051");
    assert_eq!(first.metadata["zone"], "a");
    // Exactly Go's naming/endpoints JSON, under the registration's lease.
    let stored = client
        .kv()
        .get("svc/10.0.0.1:50051", GetOptions::new())
        .await
        .unwrap();
    assert_eq!(
        stored.kvs[0].value,
        br#"{"Op":0,"Addr":"10.0.0.1:50051","Metadata":{"zone":"a"}}"#
    );
    let RegistrationState::Registered { lease_id, .. } = etcd_style.state() else {
        panic!("registered")
    };
    assert_eq!(stored.kvs[0].lease, lease_id);

    let go_zero = client
        .register(ServiceInstance::new("svc", "10.0.0.2:8080").with_layout(KeyLayout::GoZero))
        .await
        .unwrap();
    let ServiceChange::Up(second) = next_change(&mut discovery).await else {
        panic!("expected an instance")
    };
    let RegistrationState::Registered { key, lease_id } = go_zero.state() else {
        panic!("registered")
    };
    assert_eq!(key, format!("svc/{lease_id}"));
    assert_eq!(second.key, key);
    assert_eq!(second.address, "10.0.0.2:8080");
    assert_eq!(discovery.instances().count(), 2);

    // A fresh discovery lists both at once.
    let listed = client.discover("svc").await.unwrap();
    let mut addresses: Vec<&str> = listed.instances().map(|i| i.address.as_str()).collect();
    addresses.sort();
    assert_eq!(addresses, vec!["10.0.0.1:50051", "10.0.0.2:8080"]);

    etcd_style.deregister().await.unwrap();
    assert_eq!(
        next_change(&mut discovery).await,
        ServiceChange::Down {
            key: "svc/10.0.0.1:50051".into()
        }
    );
    drop(go_zero);
    assert_eq!(
        next_change(&mut discovery).await,
        ServiceChange::Down { key }
    );
    assert_eq!(discovery.instances().count(), 0);
}

#[tokio::test]
async fn a_registration_comes_back_after_the_server_was_down_longer_than_its_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let ports = ports();
    let server = start(dir.path(), ports);
    let client = connect(&server).await;
    let mut registration = client
        .register(ServiceInstance::new("api", "10.0.0.9:80").with_ttl(2))
        .await
        .unwrap();

    server.kill9();
    tokio::time::sleep(Duration::from_secs(4)).await; // the outage outlasts the TTL
    let server = start(dir.path(), ports);
    let observer = connect(&server).await;
    let mut discovery = observer.discover("api").await.unwrap();
    // Listed after the restart, and still listed after more than a TTL: kept alive.
    assert_eq!(discovery.instances().count(), 1);
    let gone = tokio::time::timeout(Duration::from_secs(5), discovery.next()).await;
    assert!(
        gone.is_err(),
        "instance changed after the restart: {gone:?}"
    );

    // The lease is lost behind the registration's back: it registers again by itself.
    let RegistrationState::Registered { lease_id, .. } = registration.state() else {
        panic!("registered")
    };
    observer.lease().revoke(lease_id).await.unwrap();
    assert_eq!(
        next_change(&mut discovery).await,
        ServiceChange::Down {
            key: "api/10.0.0.9:80".into()
        }
    );
    let ServiceChange::Up(back) = next_change(&mut discovery).await else {
        panic!("expected the instance back")
    };
    assert_eq!(back.address, "10.0.0.9:80");
    let state = loop {
        match registration.changed().await {
            RegistrationState::Reregistering => continue,
            state => break state,
        }
    };
    let RegistrationState::Registered {
        lease_id: new_lease,
        ..
    } = state
    else {
        panic!("registered again, not {state:?}")
    };
    assert_ne!(new_lease, lease_id);
}

#[tokio::test]
async fn a_balanced_channel_spreads_calls_over_discovered_instances() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = start(dirs[0].path(), ports());
    let b = start(dirs[1].path(), ports());
    let registry = connect(&a).await;
    // Both oxcd servers register as instances of "kv"; calls through the balanced
    // channel are KV puts, so each server's keys show which one served them.
    let _ra = registry
        .register(ServiceInstance::new("kv", format!("127.0.0.1:{}", a.port)))
        .await
        .unwrap();
    let _rb = registry
        .register(ServiceInstance::new("kv", format!("127.0.0.1:{}", b.port)))
        .await
        .unwrap();
    let channel = registry.balanced_channel("kv").await.unwrap();
    let mut kv = oxcd_proto::etcdserverpb::kv_client::KvClient::new(channel);
    for i in 0..40 {
        kv.put(oxcd_proto::etcdserverpb::PutRequest {
            key: format!("spread/{i}").into_bytes(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .expect("put through the balanced channel");
    }
    let mut counts = Vec::new();
    for server in [&a, &b] {
        let count = connect(server)
            .await
            .kv()
            .get("spread/", GetOptions::new().with_prefix().with_count_only())
            .await
            .unwrap()
            .count;
        counts.push(count);
    }
    assert_eq!(counts.iter().sum::<i64>(), 40);
    assert!(
        counts.iter().all(|c| *c > 0),
        "one instance got every call: {counts:?}"
    );
}

#[tokio::test]
async fn maintenance_status_alarms_defragment_and_hash() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), ports());
    let maintenance = connect(&server).await.maintenance();
    let status = maintenance.status().await.unwrap();
    assert!(!status.version.is_empty());
    assert_ne!(status.leader, 0);
    assert!(maintenance.alarm_list().await.unwrap().alarms.is_empty());
    maintenance.defragment().await.unwrap();
    // What the server does not implement keeps gRPC's code.
    if let Err(e) = maintenance.hash_kv(0).await {
        assert_eq!(e.kind(), ErrorKind::Unimplemented, "{e}");
    }
}

#[tokio::test]
async fn responses_larger_than_tonics_4_mib_default_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), ports());
    let kv = connect(&server).await.kv();
    let value = vec![b'x'; 1024 * 1024];
    for i in 0..5 {
        kv.put(format!("big/{i}"), value.clone(), PutOptions::new())
            .await
            .unwrap();
    }
    let all = kv
        .get("big/", GetOptions::new().with_prefix())
        .await
        .expect("a 5 MiB range");
    assert_eq!(all.kvs.len(), 5);
    assert!(all.kvs.iter().all(|kv| kv.value.len() == value.len()));
}

/// A TCP relay from a port of ours to a server, which can cut every connection and refuse
/// new ones for a while: a network cut between client and server.
struct Relay {
    port: u16,
    target: u16,
    running: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    async fn start(port: u16, target: u16) -> Relay {
        let mut relay = Relay {
            port,
            target,
            running: None,
        };
        relay.restore().await;
        relay
    }

    /// Drops every relayed connection and stops listening.
    fn cut(&mut self) {
        if let Some(running) = self.running.take() {
            running.abort();
        }
    }

    /// Listens again.
    async fn restore(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("relay port");
        let target = self.target;
        self.running = Some(tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every relayed connection.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }
}

#[tokio::test]
async fn a_registration_comes_back_after_a_network_cut_longer_than_its_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), ports());
    let (relay_port, _) = ports();
    let mut relay = Relay::start(relay_port, server.port).await;
    let through_relay = Client::connect([format!("127.0.0.1:{relay_port}")])
        .await
        .unwrap();
    let mut registration = through_relay
        .register(ServiceInstance::new("cut", "10.0.0.5:80").with_ttl(2))
        .await
        .unwrap();
    let RegistrationState::Registered { lease_id, .. } = registration.state() else {
        panic!("registered")
    };
    let observer = connect(&server).await;
    let mut discovery = observer.discover("cut").await.unwrap();
    assert_eq!(discovery.instances().count(), 1);

    relay.cut();
    // The server expires the lease it no longer hears about.
    assert_eq!(
        next_change(&mut discovery).await,
        ServiceChange::Down {
            key: "cut/10.0.0.5:80".into()
        }
    );
    relay.restore().await;
    let ServiceChange::Up(back) = next_change(&mut discovery).await else {
        panic!("expected the instance back")
    };
    assert_eq!(back.address, "10.0.0.5:80");
    let state = loop {
        match registration.changed().await {
            RegistrationState::Reregistering => continue,
            state => break state,
        }
    };
    let RegistrationState::Registered {
        lease_id: new_lease,
        ..
    } = state
    else {
        panic!("registered again, not {state:?}")
    };
    assert_ne!(new_lease, lease_id);
}
