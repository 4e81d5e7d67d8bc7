//! Leases over the wire: grant/revoke/keep-alive/TimeToLive/Leases with etcd's results and
//! errors, automatic expiry deleting attached keys, and leases across a kill -9.

use std::time::{Duration, Instant};

use oxcd_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest, PutRequest, RangeRequest,
};
use tonic::Code;

use crate::harness::Server;

async fn grant(s: &Server, ttl: i64, id: i64) -> (i64, i64) {
    let r = s
        .lease()
        .await
        .lease_grant(LeaseGrantRequest { ttl, id })
        .await
        .expect("grant")
        .into_inner();
    (r.id, r.ttl)
}

async fn put(s: &Server, key: &str, lease: i64) -> i64 {
    s.kv()
        .await
        .put(PutRequest {
            key: key.into(),
            value: b"v".to_vec(),
            lease,
            ..Default::default()
        })
        .await
        .expect("put")
        .into_inner()
        .header
        .expect("header")
        .revision
}

/// (revision, keys) under `prefix`.
async fn keys(s: &Server, prefix: &str) -> (i64, Vec<String>) {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().expect("prefix") += 1;
    let r = s
        .kv()
        .await
        .range(RangeRequest {
            key: prefix.into(),
            range_end: end,
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    (
        r.header.expect("header").revision,
        r.kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
            .collect(),
    )
}

async fn ttl_of(s: &Server, id: i64) -> (i64, i64, Vec<String>) {
    let r = s
        .lease()
        .await
        .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true })
        .await
        .expect("timetolive")
        .into_inner();
    (
        r.ttl,
        r.granted_ttl,
        r.keys
            .iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect(),
    )
}

/// Polls until `prefix` holds no key; returns how long that took.
async fn wait_gone(s: &Server, prefix: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if keys(s, prefix).await.1.is_empty() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "keys under {prefix} still there after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn lease_expiry_deletes_attached_keys_in_one_revision() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let granted_at = Instant::now();
    let (id, ttl) = grant(&s, 1, 0).await;
    assert!(id > 0, "server-chosen ids are positive");
    assert_eq!(ttl, 2, "raised to etcd's minimum TTL (1.5 s rounded up)");
    put(&s, "exp/a", id).await;
    put(&s, "exp/b", id).await;
    let rev = put(&s, "exp/c", id).await;
    put(&s, "other", 0).await;
    let (_, k) = keys(&s, "exp/").await;
    assert_eq!(k.len(), 3);
    wait_gone(&s, "exp/", Duration::from_secs(5)).await;
    let deadline = granted_at + Duration::from_secs(2);
    let late = Instant::now().saturating_duration_since(deadline);
    // The expiry loop ticks every 100 ms; allow for polling and a loaded machine.
    assert!(late < Duration::from_millis(900), "expired {late:?} late");
    let (rev_after, _) = keys(&s, "exp/").await;
    assert_eq!(
        rev_after,
        rev + 2,
        "the plain put, then one revision for all three"
    );
    assert_eq!(keys(&s, "other").await.1, vec!["other"]);
    let (t, _, _) = ttl_of(&s, id).await;
    assert_eq!(t, -1, "an expired lease is gone");
}

#[tokio::test]
async fn lease_revoke_and_etcd_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let (id, ttl) = grant(&s, 60, 0x1234).await;
    assert_eq!((id, ttl), (0x1234, 60), "client-chosen id");
    let err = s
        .lease()
        .await
        .lease_grant(LeaseGrantRequest {
            ttl: 60,
            id: 0x1234,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.message(), "etcdserver: lease already exists");
    let err = s
        .lease()
        .await
        .lease_grant(LeaseGrantRequest {
            ttl: 9_000_000_001,
            id: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange);
    assert_eq!(err.message(), "etcdserver: too large lease TTL");
    let err = s
        .kv()
        .await
        .put(PutRequest {
            key: b"x".to_vec(),
            lease: 999,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "etcdserver: requested lease not found");

    put(&s, "rv/a", id).await;
    let rev = put(&s, "rv/b", id).await;
    // ignore_lease keeps the key's lease.
    s.kv()
        .await
        .put(PutRequest {
            key: b"rv/b".to_vec(),
            value: b"w".to_vec(),
            ignore_lease: true,
            ..Default::default()
        })
        .await
        .expect("put ignore_lease");
    assert_eq!(ttl_of(&s, id).await.2, vec!["rv/a", "rv/b"]);
    let r = s
        .lease()
        .await
        .lease_revoke(LeaseRevokeRequest { id })
        .await
        .expect("revoke")
        .into_inner();
    assert_eq!(r.header.expect("header").revision, rev + 2);
    assert!(keys(&s, "rv/").await.1.is_empty());
    let err = s
        .lease()
        .await
        .lease_revoke(LeaseRevokeRequest { id })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "etcdserver: requested lease not found");
    let leases = s
        .lease()
        .await
        .lease_leases(LeaseLeasesRequest {})
        .await
        .expect("leases")
        .into_inner();
    assert!(leases.leases.is_empty());
}

#[tokio::test]
async fn lease_keep_alive_extends_ttl_and_answers_zero_for_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let (id, _) = grant(&s, 2, 0).await;
    put(&s, "ka/k", id).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut responses = s
        .lease()
        .await
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("keepalive")
        .into_inner();
    // 4 s of heart-beats every 500 ms: twice the TTL.
    for _ in 0..8 {
        tx.send(LeaseKeepAliveRequest { id }).await.unwrap();
        let r = responses.message().await.unwrap().expect("response");
        assert_eq!((r.id, r.ttl), (id, 2));
        assert!(r.header.expect("header").revision > 1);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(keys(&s, "ka/").await.1, vec!["ka/k"]);
    tx.send(LeaseKeepAliveRequest { id: 4242 }).await.unwrap();
    let r = responses.message().await.unwrap().expect("response");
    assert_eq!(
        (r.id, r.ttl),
        (4242, 0),
        "unknown lease: TTL 0, stream stays open"
    );
    // Heart-beats stop: the key goes.
    wait_gone(&s, "ka/", Duration::from_secs(4)).await;
    tx.send(LeaseKeepAliveRequest { id }).await.unwrap();
    let r = responses.message().await.unwrap().expect("response");
    assert_eq!(r.ttl, 0, "expired lease: TTL 0");
}

/// A client may pipeline keep-alives as fast as flow control lets it, one small DATA frame
/// each (Go `clientv3` keeping 10,000 leases alive does): every request is answered, in
/// order, and neither the stream nor the connection is closed. (Before the HTTP/2 windows
/// were set in `serve.rs`, h2's small-DATA-frame guard closed the connection with
/// `GOAWAY ENHANCE_YOUR_CALM` once ~2,200 requests were unread.)
#[tokio::test]
async fn lease_keep_alive_flood_on_one_stream_is_answered_in_order() {
    const LEASES: usize = 100;
    const REQUESTS: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let mut ids = Vec::with_capacity(LEASES);
    for _ in 0..LEASES {
        ids.push(grant(&s, 600, 0).await.0);
    }
    let mut client = s.lease().await;
    // One request per poll, then a yield: tonic's encoder flushes each message as its own
    // DATA frame instead of packing the ready ones into a few large frames.
    let sent = ids.clone();
    let requests = futures::stream::unfold(0usize, move |i| {
        let sent = sent.clone();
        async move {
            if i == REQUESTS {
                // Keep the request side open: the stream must stay usable afterwards.
                std::future::pending::<()>().await;
            }
            tokio::task::yield_now().await;
            Some((
                LeaseKeepAliveRequest {
                    id: sent[i % sent.len()],
                },
                i + 1,
            ))
        }
    });
    let started = Instant::now();
    let mut responses = client
        .lease_keep_alive(requests)
        .await
        .expect("keepalive")
        .into_inner();
    for i in 0..REQUESTS {
        let r = match responses.message().await {
            Ok(Some(r)) => r,
            Ok(None) => panic!("stream ended after {i} of {REQUESTS} responses"),
            Err(e) => panic!("stream failed after {i} of {REQUESTS} responses: {e}"),
        };
        assert_eq!((r.id, r.ttl), (ids[i % LEASES], 600), "response {i}");
    }
    eprintln!("{REQUESTS} keep-alives answered in {:?}", started.elapsed());
    // The connection is still open and serves other RPCs.
    let (ttl, granted, _) = {
        let r = client
            .lease_time_to_live(LeaseTimeToLiveRequest {
                id: ids[0],
                keys: false,
            })
            .await
            .expect("timetolive on the same connection")
            .into_inner();
        (r.ttl, r.granted_ttl, ())
    };
    assert_eq!(granted, 600);
    assert!(ttl > 590, "renewed: {ttl}");
}

#[tokio::test]
async fn lease_time_to_live_counts_down() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let (id, _) = grant(&s, 10, 0).await;
    put(&s, "ttl/b", id).await;
    put(&s, "ttl/a", id).await;
    let (t0, granted, k) = ttl_of(&s, id).await;
    assert_eq!(granted, 10);
    // Truncated seconds, as etcd: 9 unless this machine is very slow.
    assert!((8..=9).contains(&t0), "ttl {t0}");
    assert_eq!(k, vec!["ttl/a", "ttl/b"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (t1, _, _) = ttl_of(&s, id).await;
    assert!((t0 - 3..=t0 - 2).contains(&t1), "ttl {t1} after {t0}");
    let leases = s
        .lease()
        .await
        .lease_leases(LeaseLeasesRequest {})
        .await
        .expect("leases")
        .into_inner();
    assert_eq!(leases.leases.len(), 1);
    assert_eq!(leases.leases[0].id, id);
    assert_eq!(ttl_of(&s, 777).await.0, -1, "unknown lease: TTL -1");
}

#[tokio::test]
async fn lease_and_keys_survive_kill9_with_extended_ttls() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::harness::free_port();
    let peer = crate::harness::free_port();
    let s = Server::start_with(dir.path(), port, peer, &[]);
    let (long, _) = grant(&s, 30, 0).await;
    // 6 s, not the 2 s minimum: a restart on two loaded cores (the whole suite runs in
    // parallel) can take seconds, and this test is about the TTL rule, not start-up time.
    let (short, _) = grant(&s, 6, 0).await;
    put(&s, "kl/long", long).await;
    put(&s, "ks/short", short).await;
    s.kill9();
    let started = Instant::now();
    let s = Server::start_with(dir.path(), port, peer, &[]);
    let (t, granted, k) = ttl_of(&s, long).await;
    assert_eq!(granted, 30);
    assert_eq!(k, vec!["kl/long"]);
    // Never checkpointed: full TTL again, plus the election timeout (1 s).
    assert!((29..=31).contains(&t), "ttl {t}");
    assert_eq!(keys(&s, "ks/").await.1, vec!["ks/short"]);
    let gone_after = started.elapsed() + wait_gone(&s, "ks/", Duration::from_secs(14)).await;
    // Not expired at once: at least the full 6 s TTL after the restart (plus the 1 s
    // extension, unless the grant was replayed from the WAL after the promotion).
    assert!(gone_after >= Duration::from_secs(6), "{gone_after:?}");
    assert_eq!(keys(&s, "kl/").await.1, vec!["kl/long"]);
}

#[tokio::test]
async fn lease_checkpoint_keeps_remaining_ttl_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::harness::free_port();
    let peer = crate::harness::free_port();
    let flags = ["--experimental-lease-checkpoint-interval=1s"];
    let s = Server::start_with(dir.path(), port, peer, &flags);
    let (id, _) = grant(&s, 20, 0).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    s.kill9();
    let s = Server::start_with(dir.path(), port, peer, &flags);
    let (t, granted, _) = ttl_of(&s, id).await;
    assert_eq!(granted, 20);
    // Checkpointed at ~17-18 s remaining, plus 1 s extension: not back to 20 + 1.
    assert!((15..=19).contains(&t), "ttl {t}");
}
