//! Identity checks, lease forwarding and etcd's peer HTTP endpoints.

use std::sync::Arc;
use std::time::Duration;

use oxcd_raft::eraftpb::{Message, MessageType};
use oxcd_raft::Transport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::harness::{serve, url, wait_until, TestHandler};
use crate::{DialOptions, PeerClient, PeerError, PeerHandler, PeerTransport, TransportOptions};

fn heartbeat(from: u64, to: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgHeartbeat);
    m.from = from;
    m.to = to;
    m.term = 1;
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_another_cluster_is_refused_naming_both_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let receiver = TestHandler::new(0xaaa, 1, tmp.path());
    let _server = serve(receiver.clone(), 24440).await;
    let stranger = TestHandler::new(0xbbb, 2, tmp.path());

    let client = PeerClient::new(stranger.clone(), DialOptions::default());
    match client.lease_renew(&[url(24440)], 7).await {
        Err(PeerError::Refused(msg)) => {
            assert!(
                msg.contains("cluster aaa") && msg.contains("cluster bbb"),
                "{msg}"
            )
        }
        other => panic!("not refused: {other:?}"),
    }

    // Raft messages are refused too: nothing reaches the receiver, the sender reports the
    // peer unreachable (there is no raft node here: counted only).
    let mut transport = PeerTransport::new(stranger, TransportOptions::default()).unwrap();
    transport.set_peer_urls(1, vec![url(24440)]);
    transport.send(vec![heartbeat(2, 1)]);
    wait_until("the refusal is seen", || transport.stats().unreachable > 0).await;
    assert_eq!(
        receiver.stepped.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert!(!*transport.removed().borrow());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_is_refused_and_told_so() {
    let tmp = tempfile::tempdir().unwrap();
    let receiver = TestHandler::new(0xaaa, 1, tmp.path());
    receiver.removed.lock().insert(2);
    let _server = serve(receiver.clone(), 24442).await;
    let removed = TestHandler::new(0xaaa, 2, tmp.path());

    let client = PeerClient::new(removed.clone(), DialOptions::default());
    let err = client.lease_renew(&[url(24442)], 7).await.unwrap_err();
    assert_eq!(err, PeerError::MemberRemoved);
    assert_eq!(
        err.to_string(),
        "the member has been permanently removed from the cluster"
    );

    let mut transport = PeerTransport::new(removed, TransportOptions::default()).unwrap();
    let mut told = transport.removed();
    transport.set_peer_urls(1, vec![url(24442)]);
    transport.send(vec![heartbeat(2, 1)]);
    tokio::time::timeout(super::harness::WAIT, told.wait_for(|r| *r))
        .await
        .expect("never told it was removed")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_requests_are_forwarded_with_their_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let leader = TestHandler::new(0xaaa, 1, tmp.path());
    let _server = serve(leader, 24444).await;
    let follower = TestHandler::new(0xaaa, 2, tmp.path());
    let client = PeerClient::new(follower, DialOptions::default());
    // The first URL does not answer; the second does.
    let urls = [url(24499), url(24444)];
    assert_eq!(client.lease_renew(&urls, 7).await.unwrap(), 42);
    assert_eq!(
        client.lease_renew(&urls, 9).await.unwrap_err(),
        PeerError::LeaseNotFound
    );
    assert_eq!(
        client.lease_renew(&urls, 8).await.unwrap_err(),
        PeerError::NotLeader
    );
    let ttl = client.lease_time_to_live(&urls, 7, true).await.unwrap();
    assert_eq!((ttl.ttl, ttl.granted_ttl), (40, 60));
    assert_eq!(ttl.keys, vec![b"k".to_vec()]);
    assert_eq!(
        client
            .lease_time_to_live(&urls, 1, false)
            .await
            .unwrap_err()
            .to_string(),
        "etcdserver: requested lease not found"
    );
}

/// A plain HTTP/1.1 GET; returns the raw response.
async fn http_get(port: u16, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_and_version_answer_as_etcd() {
    let tmp = tempfile::tempdir().unwrap();
    let h: Arc<TestHandler> = TestHandler::new(0xcdd5f0b2c5a2e4b1, 1, tmp.path());
    let _server = serve(h, 24446).await;

    let members = http_get(24446, "/members").await;
    let lower = members.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200"), "{members}");
    assert!(
        lower.contains("x-etcd-cluster-id: cdd5f0b2c5a2e4b1"),
        "{members}"
    );
    assert!(
        lower.contains("content-type: application/json"),
        "{members}"
    );
    // etcd's membership.Member JSON: the id is a number, empty fields are left out,
    // sorted by id, a newline after.
    let body = members.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(
        body,
        "[{\"id\":2,\"peerURLs\":[\"http://127.0.0.1:22380\"],\"isLearner\":true},\
         {\"id\":10276657743932975437,\"peerURLs\":[\"http://127.0.0.1:2380\"],\
         \"name\":\"infra1\",\"clientURLs\":[\"http://127.0.0.1:2379\"]}]\n"
    );

    let version = http_get(24446, "/version").await;
    let body = version.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(body, "{\"etcdserver\":\"3.5.0\",\"etcdcluster\":\"3.5.0\"}");

    // A joining member reads them back (the first URL does not answer).
    let joining = TestHandler::new(0, 9, tmp.path());
    let client = PeerClient::new(joining.clone(), DialOptions::default());
    let cluster = client.members(&[url(24495), url(24446)]).await.unwrap();
    assert_eq!(cluster.cluster_id, 0xcdd5f0b2c5a2e4b1);
    let mut want = joining.members();
    want.sort_by_key(|m| m.id);
    assert_eq!(cluster.members, want);
    let v = client.versions(&url(24446)).await.unwrap();
    assert_eq!((v.server.as_str(), v.cluster.as_str()), ("3.5.0", "3.5.0"));
    assert!(matches!(
        client.members(&[url(24495)]).await,
        Err(PeerError::Unreachable(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_cannot_be_delivered_are_dropped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let h = TestHandler::new(0xaaa, 1, tmp.path());
    let opts = TransportOptions {
        queue_capacity: 4,
        ..TransportOptions::default()
    };
    let mut transport = PeerTransport::new(h, opts).unwrap();
    // Nobody listens there.
    transport.set_peer_urls(2, vec![url(24497)]);
    transport.set_peer_urls(1, vec![url(24496)]);
    assert_eq!(transport.peer_ids(), vec![2], "its own id is no peer");
    // Into a queue of 4 that is not drained while connecting: most are dropped at once.
    transport.send((0..100).map(|_| heartbeat(1, 2)).collect());
    assert!(transport.stats().dropped >= 96, "{:?}", transport.stats());
    // To an unknown member: dropped.
    transport.send(vec![heartbeat(1, 3)]);
    // The rest are dropped while the transport waits to reconnect.
    wait_until("every message is dropped", || {
        transport.stats().dropped == 101
    })
    .await;
    let stats = transport.stats();
    assert_eq!(stats.sent, 0);
    assert!(stats.unreachable > 0);
    // etcd's per-peer figures: every message dropped for peer 2 is a send failure (plus
    // each failed connection); nothing was sent, the link never came up; the unknown
    // member 3 has no link.
    let links = transport.peer_stats().links();
    assert_eq!(links.len(), 1);
    let (id, link) = &links[0];
    assert_eq!(*id, 2);
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    assert!(load(&link.sent_failures) >= 100, "{link:?}");
    assert_eq!(load(&link.sent_bytes), 0);
    assert!(!link.active.load(std::sync::atomic::Ordering::Relaxed));
    assert_eq!(load(&link.disconnects), 0);
    transport.remove_peer(2);
    assert!(transport.peer_ids().is_empty());

    // After shutdown no peer is added and everything is dropped.
    transport.set_peer_urls(4, vec![url(24497)]);
    transport.shutdown();
    transport.set_peer_urls(5, vec![url(24497)]);
    assert!(transport.peer_ids().is_empty());
    transport.send(vec![heartbeat(1, 5)]);
    assert_eq!(transport.stats().dropped, 102);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_for_another_member_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let receiver = TestHandler::new(0xaaa, 1, tmp.path());
    let _server = serve(receiver.clone(), 24448).await;
    let sender = TestHandler::new(0xaaa, 2, tmp.path());
    let mut transport = PeerTransport::new(sender, TransportOptions::default()).unwrap();
    // The URL of member 3 is served by member 1 (say, after a replacement).
    transport.set_peer_urls(3, vec![url(24448)]);
    transport.send(vec![heartbeat(2, 3)]);
    wait_until("the stream is refused", || {
        transport.stats().unreachable > 0
    })
    .await;
    assert_eq!(
        receiver.stepped.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_peer_urls_move_an_open_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let old = TestHandler::new(0xaaa, 1, tmp.path());
    let new = TestHandler::new(0xaaa, 1, tmp.path());
    let _old_server = serve(old.clone(), 24450).await;
    let _new_server = serve(new.clone(), 24451).await;
    let sender = TestHandler::new(0xaaa, 2, tmp.path());
    let mut transport = PeerTransport::new(sender, TransportOptions::default()).unwrap();
    let stepped = |h: &TestHandler| h.stepped.load(std::sync::atomic::Ordering::Relaxed);

    transport.set_peer_urls(1, vec![url(24450)]);
    let deadline = tokio::time::Instant::now() + super::harness::WAIT;
    while stepped(&old) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never delivered");
        transport.send(vec![heartbeat(2, 1)]);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    transport.set_peer_urls(1, vec![url(24451)]);
    while stepped(&new) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never delivered to the new URL"
        );
        transport.send(vec![heartbeat(2, 1)]);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Moving is no failure.
    assert_eq!(transport.stats().unreachable, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_link_is_noticed_by_keepalive_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let receiver = TestHandler::new(0xaaa, 1, tmp.path());
    let _server = serve(receiver.clone(), 24452).await;
    let proxy = super::harness::Proxy::start(24453, 24452).await;
    let sender = TestHandler::new(0xaaa, 2, tmp.path());
    let mut transport = PeerTransport::new(sender, TransportOptions::default()).unwrap();
    transport.set_peer_urls(1, vec![url(24453)]);
    let stepped = || receiver.stepped.load(std::sync::atomic::Ordering::Relaxed);

    // Heartbeats every 20 ms, as raft would send them.
    let deadline = tokio::time::Instant::now() + super::harness::WAIT;
    let tick = async |t: &mut PeerTransport| {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        t.send(vec![heartbeat(2, 1)]);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    while stepped() == 0 {
        tick(&mut transport).await;
    }
    proxy.blackhole(true);
    let started = std::time::Instant::now();
    while transport.stats().unreachable == 0 {
        tick(&mut transport).await;
    }
    let noticed = started.elapsed();
    // Keepalive: a ping every second, two seconds to answer.
    assert!(noticed < std::time::Duration::from_secs(5), "{noticed:?}");
    proxy.blackhole(false);
    let before = stepped();
    while stepped() == before {
        tick(&mut transport).await;
    }
    eprintln!("black hole noticed after {noticed:?}");
}

/// Bytes are counted on both sides of a link (the receiver through its handler's
/// `peer_stats`), the link turns active, and the prober measures a round-trip time on
/// etcd's `/raft/probing`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_count_bytes_both_ways_and_are_probed() {
    use std::sync::atomic::Ordering::Relaxed;

    struct Counting {
        inner: Arc<TestHandler>,
        stats: Arc<crate::PeerStats>,
    }
    impl PeerHandler for Counting {
        fn cluster_id(&self) -> u64 {
            self.inner.cluster_id()
        }
        fn member_id(&self) -> u64 {
            self.inner.member_id()
        }
        fn step(&self, msg: Message) -> Result<(), PeerError> {
            self.inner.step(msg)
        }
        fn is_removed(&self, id: u64) -> bool {
            self.inner.is_removed(id)
        }
        fn members(&self) -> Vec<crate::MemberInfo> {
            self.inner.members()
        }
        fn versions(&self) -> crate::Versions {
            self.inner.versions()
        }
        fn snapshot_dir(&self) -> std::path::PathBuf {
            self.inner.snapshot_dir()
        }
        fn export_snapshot(&self, dest: &std::path::Path) -> Result<u64, PeerError> {
            self.inner.export_snapshot(dest)
        }
        fn receive_snapshot(&self, msg: Message, file: &std::path::Path) -> Result<(), PeerError> {
            self.inner.receive_snapshot(msg, file)
        }
        fn lease_renew(&self, id: i64) -> futures::future::BoxFuture<'_, Result<i64, PeerError>> {
            self.inner.lease_renew(id)
        }
        fn lease_time_to_live(
            &self,
            id: i64,
            keys: bool,
        ) -> futures::future::BoxFuture<
            '_,
            Result<oxcd_proto::etcdserverpb::LeaseTimeToLiveResponse, PeerError>,
        > {
            self.inner.lease_time_to_live(id, keys)
        }
        fn peer_stats(&self) -> Option<Arc<crate::PeerStats>> {
            Some(self.stats.clone())
        }
    }

    let tmp = tempfile::tempdir().unwrap();
    let receiver_stats = crate::PeerStats::new();
    let receiver = TestHandler::new(0xaaa, 1, tmp.path());
    let _server = serve(
        Arc::new(Counting {
            inner: receiver.clone(),
            stats: receiver_stats.clone(),
        }),
        24454,
    )
    .await;
    let sender = TestHandler::new(0xaaa, 2, tmp.path());
    let opts = TransportOptions {
        probe_interval: Duration::from_millis(50),
        ..TransportOptions::default()
    };
    let mut transport = PeerTransport::new(sender, opts).unwrap();
    transport.set_peer_urls(1, vec![url(24454)]);
    transport.send((0..10).map(|_| heartbeat(2, 1)).collect());
    wait_until("the receiver steps the messages", || {
        receiver.stepped.load(Relaxed) == 10
    })
    .await;
    let sent = transport.peer_stats().link(1);
    let received = receiver_stats.link(2);
    wait_until("both sides count the same bytes", || {
        let n = sent.sent_bytes.load(Relaxed);
        n > 0 && n == received.received_bytes.load(Relaxed)
    })
    .await;
    wait_until("the link is active", || sent.active.load(Relaxed)).await;
    wait_until("a round trip is measured", || {
        sent.srtt_nanos.load(Relaxed) > 0
    })
    .await;
    assert_eq!(sent.sent_failures.load(Relaxed), 0);
    assert_eq!(received.received_failures.load(Relaxed), 0);
    transport.shutdown();
}
