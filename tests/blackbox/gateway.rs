//! The JSON gateway, the health probes and the lock and election services, over the wire.

use oxcd_proto::etcdserverpb::LeaseGrantRequest;
use oxcd_proto::v3electionpb::{election_client::ElectionClient, CampaignRequest, LeaderRequest};
use oxcd_proto::v3lockpb::{lock_client::LockClient, LockRequest, UnlockRequest};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::Server;

/// A minimal HTTP/1.1 request; returns the status code and the body.
pub(crate) async fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let (_, rest) = out.split_once("\r\n\r\n").unwrap();
    (status, rest.to_string())
}

/// The JSON of a body, with identity fields (which vary per run) removed.
fn json(body: &str) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    if let Some(h) = v.get_mut("header").and_then(|h| h.as_object_mut()) {
        h.remove("cluster_id");
        h.remove("member_id");
        h.remove("raft_term");
    }
    v
}

#[tokio::test]
async fn gateway_speaks_etcds_json() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let (code, body) = http(
        s.port,
        "POST",
        "/v3/kv/put",
        r#"{"key":"Zm9v","value":"YmFy"}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let rev = json(&body)["header"]["revision"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, body) = http(s.port, "POST", "/v3beta/kv/range", r#"{"key":"Zm9v"}"#).await;
    assert_eq!(code, 200);
    assert_eq!(
        json(&body),
        serde_json::json!({
            "header": {"revision": rev},
            "kvs": [{"key": "Zm9v", "create_revision": rev, "mod_revision": rev,
                     "version": "1", "value": "YmFy"}],
            "count": "1"
        })
    );
    let (code, body) = http(s.port, "POST", "/v3/kv/put", r#"{"key":""}"#).await;
    assert_eq!(code, 400);
    assert_eq!(
        body,
        r#"{"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3}"#
    );
    let (code, _) = http(s.port, "GET", "/v3/kv/range", "").await;
    assert_eq!(code, 405);
    let (code, body) = http(s.port, "POST", "/v3/lease/timetolive", r#"{"ID":"42"}"#).await;
    assert_eq!(code, 200);
    // An unknown lease has TTL -1 and no granted TTL: no "grantedTTL":"0" is written.
    assert_eq!(json(&body)["TTL"], "-1");
    assert!(!body.contains("grantedTTL"), "{body}");
}

#[tokio::test]
async fn health_probes_answer_as_etcd_35() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    assert_eq!(
        http(s.port, "GET", "/health?serializable=true", "").await,
        (200, r#"{"health":"true","reason":""}"#.to_string())
    );
    assert_eq!(
        http(s.port, "GET", "/livez", "").await,
        (200, "ok".to_string())
    );
    let (code, body) = http(s.port, "GET", "/readyz?verbose", "").await;
    assert_eq!(code, 200);
    assert_eq!(
        body,
        "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\nreadyz check passed\n"
    );
    assert_eq!(http(s.port, "POST", "/health", "").await.0, 405);

    let channel = tonic::transport::Channel::from_shared(s.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    // SERVING once the member has found its leader (its own, here).
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    loop {
        let status = watch.message().await.unwrap().unwrap().status;
        if status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
            break;
        }
    }
}

#[tokio::test]
async fn defrags_snapshots_and_hashes_are_timed_as_etcds_histograms() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let (_, body) = http(s.port, "GET", "/metrics", "").await;
    for line in [
        "etcd_disk_defrag_inflight 0",
        "etcd_disk_backend_defrag_duration_seconds_count 0",
        "etcd_disk_backend_snapshot_duration_seconds_count 0",
        // etcd's buckets: 100 ms and 10 ms doubling.
        r#"etcd_disk_backend_defrag_duration_seconds_bucket{le="409.6"} 0"#,
        r#"etcd_disk_backend_snapshot_duration_seconds_bucket{le="655.36"} 0"#,
        "etcd_mvcc_hash_duration_seconds_count 0",
        "etcd_mvcc_hash_rev_duration_seconds_count 0",
        r#"etcd_mvcc_hash_rev_duration_seconds_bucket{le="163.84"} 0"#,
    ] {
        assert!(body.contains(line), "{line} missing from\n{body}");
    }
    let mut m = s.maintenance().await;
    m.defragment(oxcd_proto::etcdserverpb::DefragmentRequest {})
        .await
        .unwrap();
    m.hash(oxcd_proto::etcdserverpb::HashRequest {})
        .await
        .unwrap();
    m.hash_kv(oxcd_proto::etcdserverpb::HashKvRequest { revision: 0 })
        .await
        .unwrap();
    let (_, body) = http(s.port, "GET", "/metrics", "").await;
    for line in [
        "etcd_mvcc_hash_duration_seconds_count 1",
        "etcd_mvcc_hash_rev_duration_seconds_count 1",
    ] {
        assert!(body.contains(line), "{line} missing from\n{body}");
    }
    let mut stream = m
        .snapshot(oxcd_proto::etcdserverpb::SnapshotRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut last_remaining = None;
    while let Some(chunk) = stream.message().await.unwrap() {
        last_remaining = Some(chunk.remaining_bytes);
    }
    assert_eq!(last_remaining, Some(0));
    // The snapshot is observed once its last message is handed over: scrape until then.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, body) = http(s.port, "GET", "/metrics", "").await;
        let defrags = sample(&body, "etcd_disk_backend_defrag_duration_seconds_count");
        let snapshots = sample(&body, "etcd_disk_backend_snapshot_duration_seconds_count");
        assert_eq!(defrags.as_deref(), Some("1"), "{body}");
        if snapshots.as_deref() == Some("1") {
            assert!(body.contains("etcd_disk_defrag_inflight 0"), "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "snapshot not observed:\n{body}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn metrics_carry_etcds_families() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let mut kv = s.kv().await;
    kv.put(oxcd_proto::etcdserverpb::PutRequest {
        key: b"k".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    let (code, body) = http(s.port, "GET", "/metrics", "").await;
    assert_eq!(code, 200);
    for line in [
        "etcd_server_has_leader 1",
        "etcd_server_leader_changes_seen_total 1",
        "# TYPE etcd_server_proposals_committed_total gauge",
        "# TYPE etcd_disk_wal_fsync_duration_seconds histogram",
        r#"grpc_server_handled_total{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"} 1"#,
        r#"grpc_server_started_total{grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"} 1"#,
        r#"grpc_server_msg_received_total{grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"} 1"#,
        r#"grpc_server_msg_sent_total{grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"} 1"#,
        r#"grpc_server_started_total{grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"} 0"#,
        // Present at zero from the start, as etcd's.
        "# TYPE etcd_server_slow_apply_total counter",
        "etcd_server_slow_apply_total 0",
        "# TYPE etcd_server_slow_read_indexes_total counter",
        "etcd_server_slow_read_indexes_total 0",
        "# TYPE etcd_server_read_indexes_failed_total counter",
        "etcd_server_read_indexes_failed_total 0",
        // A gauge in etcd despite its name.
        "# TYPE etcd_disk_wal_write_bytes_total gauge",
        // No read transaction outlives its read.
        "# TYPE etcd_mvcc_db_open_read_transactions gauge",
        "etcd_mvcc_db_open_read_transactions 0",
        // A sole member sends no heartbeats.
        "# TYPE etcd_server_heartbeat_send_failures_total counter",
        "etcd_server_heartbeat_send_failures_total 0",
        "# TYPE etcd_server_learner_promote_successes counter",
        "etcd_server_learner_promote_successes 0",
        "# TYPE etcd_server_snapshot_apply_in_progress_total gauge",
        "etcd_server_snapshot_apply_in_progress_total 0",
        // No snapshot received: etcd's histograms at zero, with etcd's buckets.
        "# TYPE etcd_snap_db_fsync_duration_seconds histogram",
        r#"etcd_snap_db_fsync_duration_seconds_bucket{le="0.001"} 0"#,
        "etcd_snap_db_fsync_duration_seconds_count 0",
        "# TYPE etcd_snap_db_save_total_duration_seconds histogram",
        r#"etcd_snap_db_save_total_duration_seconds_bucket{le="51.2"} 0"#,
        "etcd_snap_db_save_total_duration_seconds_count 0",
        // etcd 3.5's: the put, applied once.
        "# TYPE etcd_server_apply_duration_seconds histogram",
        r#"etcd_server_apply_duration_seconds_count{op="Put",success="true",version="v3"} 1"#,
        r#"etcd_server_apply_duration_seconds_bucket{op="Put",success="true",version="v3",le="+Inf"} 1"#,
        // The put, from a client without a version header.
        "# TYPE etcd_server_client_requests_total counter",
        r#"etcd_server_client_requests_total{client_api_version="unknown",type="unary"} 1"#,
    ] {
        assert!(body.contains(line), "{line} missing from\n{body}");
    }
    // etcd 3.5's apply buckets: 0.1 ms doubling, 20 of them.
    for le in ["0.0001", "0.0002", "52.4288"] {
        let bucket = format!(
            r#"etcd_server_apply_duration_seconds_bucket{{op="Put",success="true",version="v3",le="{le}"}}"#
        );
        assert!(sample(&body, &bucket).is_some(), "{bucket} missing");
    }
    assert!(!body.contains(r#"le="104.8576""#), "{body}");

    // Vectors without a series yet are not shown, as etcd's.
    for absent in [
        "etcd_server_learner_promote_failures",
        "etcd_network_server_stream_failures_total",
    ] {
        assert!(!body.contains(absent), "{absent} in\n{body}");
    }
    // The put's WAL records were written.
    let wal_bytes: f64 = sample(&body, "etcd_disk_wal_write_bytes_total")
        .unwrap()
        .parse()
        .unwrap();
    assert!(wal_bytes > 0.0, "{body}");
    // The put's WAL fsync was observed.
    let fsyncs = body
        .lines()
        .find_map(|l| l.strip_prefix("etcd_disk_wal_fsync_duration_seconds_count "))
        .unwrap();
    assert_ne!(fsyncs, "0", "{body}");
}

#[tokio::test]
async fn a_second_lock_waits_for_the_first_unlock() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let mut leases = s.lease().await;
    let grant = || LeaseGrantRequest { ttl: 30, id: 0 };
    let l1 = leases.lease_grant(grant()).await.unwrap().into_inner().id;
    let l2 = leases.lease_grant(grant()).await.unwrap().into_inner().id;
    let channel = tonic::transport::Channel::from_shared(s.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut locks = LockClient::new(channel.clone());
    let first = locks
        .lock(LockRequest {
            name: b"l".to_vec(),
            lease: l1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.key, format!("l/{l1:x}").into_bytes());
    let mut other = LockClient::new(channel.clone());
    let second = tokio::spawn(async move {
        other
            .lock(LockRequest {
                name: b"l".to_vec(),
                lease: l2,
            })
            .await
    });
    // The second caller is still waiting while the first holds the lock (nothing to await
    // for "has not happened": give it time to go wrong).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished());
    locks
        .unlock(UnlockRequest { key: first.key })
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .into_inner();
    assert_eq!(got.key, format!("l/{l2:x}").into_bytes());

    let mut election = ElectionClient::new(channel);
    let leader = election
        .campaign(CampaignRequest {
            name: b"e".to_vec(),
            lease: l1,
            value: b"v1".to_vec(),
        })
        .await
        .unwrap()
        .into_inner()
        .leader
        .unwrap();
    let now = election
        .leader(LeaderRequest {
            name: b"e".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.kv.unwrap().key, leader.key);
    let mut observe = election
        .observe(LeaderRequest {
            name: b"e".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    let seen = observe.message().await.unwrap().unwrap();
    assert_eq!(seen.kv.unwrap().value, b"v1");
}

/// One sample of `/metrics` (the line starting with `series`), if present.
pub(crate) fn sample(body: &str, series: &str) -> Option<String> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(str::to_string)
}

#[tokio::test]
async fn metrics_count_stream_messages_and_proposals() {
    use oxcd_proto::etcdserverpb::{watch_client::WatchClient, PutRequest};
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    assert_eq!(http(s.port, "GET", "/health", "").await.0, 200);
    let (_, body) = http(s.port, "GET", "/metrics", "").await;
    assert_eq!(
        sample(&body, "etcd_server_health_success").as_deref(),
        Some("1")
    );
    assert_eq!(
        sample(&body, "etcd_server_is_learner").as_deref(),
        Some("0")
    );
    let fds: u64 = sample(&body, "os_fd_used").unwrap().parse().unwrap();
    assert!(fds > 0, "{body}");
    // Present at zero from the start, as etcd's.
    assert_eq!(
        sample(&body, "etcd_server_proposals_pending").as_deref(),
        Some("0")
    );
    assert_eq!(
        sample(&body, "etcd_server_proposals_failed_total").as_deref(),
        Some("0")
    );

    // A watch stream: one request received; created + two events sent; the client goes
    // away, which go-grpc-prometheus (and etcd) count as Canceled.
    let channel = tonic::transport::Channel::from_shared(s.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (tx, rx) = watch_of(b"w").await;
    let mut stream = WatchClient::new(channel)
        .watch(rx)
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().unwrap().created);
    let mut kv = s.kv().await;
    for v in ["1", "2"] {
        kv.put(PutRequest {
            key: b"w".to_vec(),
            value: v.into(),
            ..Default::default()
        })
        .await
        .unwrap();
        assert_eq!(stream.message().await.unwrap().unwrap().events.len(), 1);
    }
    drop(stream);
    drop(tx);
    let labels =
        r#"{grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"}"#;
    let canceled = r#"grpc_server_handled_total{grpc_code="Canceled",grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"}"#;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (_, body) = http(s.port, "GET", "/metrics", "").await;
        if sample(&body, canceled).as_deref() == Some("1") {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ended watch stream was not counted as handled:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (family, want) in [
        ("grpc_server_started_total", "1"),
        ("grpc_server_msg_received_total", "1"),
        ("grpc_server_msg_sent_total", "3"),
    ] {
        assert_eq!(
            sample(&body, &format!("{family}{labels}")).as_deref(),
            Some(want),
            "{family}"
        );
    }
    // Unary calls: one message each way.
    let put = r#"{grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}"#;
    assert_eq!(
        sample(&body, &format!("grpc_server_msg_sent_total{put}")).as_deref(),
        Some("2")
    );
    assert_eq!(
        sample(&body, "etcd_server_proposals_pending").as_deref(),
        Some("0")
    );
}

#[tokio::test]
async fn gateway_serves_hash_hashkv_and_transfer_leadership() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    http(
        s.port,
        "POST",
        "/v3/kv/put",
        r#"{"key":"Zm9v","value":"YmFy"}"#,
    )
    .await;
    let (code, body) = http(s.port, "POST", "/v3/maintenance/hashkv", "{}").await;
    assert_eq!(code, 200, "{body}");
    let hashkv = json(&body);
    assert_eq!(hashkv["hash_revision"], "2");
    assert_eq!(hashkv["compact_revision"], "-1");
    // etcd 3.4/3.5 route /maintenance/hash to Hash: a header and the hash alone.
    let (code, body) = http(s.port, "POST", "/v3/maintenance/hash", "").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        json(&body),
        serde_json::json!({"header": {"revision": "2"}, "hash": hashkv["hash"]})
    );
    let (code, body) = http(
        s.port,
        "POST",
        "/v3/maintenance/hashkv",
        r#"{"revision":"9"}"#,
    )
    .await;
    assert_eq!(
        (code, json(&body)["code"].clone()),
        (400, 11.into()),
        "{body}"
    );

    // To a member that does not exist: FailedPrecondition, which grpc-gateway v1 (etcd
    // 3.4 and 3.5) answers with 412.
    let (code, body) = http(
        s.port,
        "POST",
        "/v3/maintenance/transfer-leadership",
        r#"{"targetID":"12345"}"#,
    )
    .await;
    assert_eq!(code, 412);
    assert_eq!(
        body,
        r#"{"error":"etcdserver: bad leader transferee","message":"etcdserver: bad leader transferee","code":9}"#
    );
    // To itself, the leader: done at once.
    let (_, members) = http(s.port, "POST", "/v3/cluster/member/list", "{}").await;
    let me = json(&members)["members"][0]["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, body) = http(
        s.port,
        "POST",
        "/v3/maintenance/transfer-leadership",
        &format!(r#"{{"targetID":"{me}"}}"#),
    )
    .await;
    assert_eq!((code, body.as_str()), (200, "{}"));
}

/// Opens a gateway stream on `path` with `body` (a watch's request stream is left open) and
/// reads until `want` appears (10 s at most).
async fn first_stream_line_contains(port: u16, path: &str, body: &str, want: &str) -> bool {
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    // A bidirectional stream's request stays open (chunked); a server stream's is whole.
    let req = if path.ends_with("/watch") {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n",
            body.len()
        )
    } else {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    c.write_all(req.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            let n = c.read(&mut buf).await.unwrap();
            if n == 0 {
                return false;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains(want) {
                return true;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or(false)
}

/// Every unary route of etcd 3.4/3.5's gateway (and the keep-alive stream) answers as its
/// gRPC method, in one pass over a fresh member: KV, leases and their `/v3/kv/lease/*`
/// aliases, cluster, maintenance, auth, lock and election, and the first line of the
/// Watch and Observe streams. (Snapshot, hashkv and transfer-leadership have tests of their
/// own.)
#[tokio::test]
async fn gateway_answers_every_etcd_route() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let port = s.port;
    // POSTs `body` to `/v3/<path>`: the status must be `want`; returns the JSON answer.
    let post = |path: &'static str, body: String, want: u16| async move {
        let (code, text) = http(port, "POST", &format!("/v3/{path}"), &body).await;
        assert_eq!(code, want, "POST /v3/{path} {body}: {text}");
        serde_json::from_str::<serde_json::Value>(&text).unwrap_or(serde_json::Value::Null)
    };
    let str_of = |v: &serde_json::Value, field: &str| -> String {
        v[field]
            .as_str()
            .unwrap_or_else(|| panic!("no {field} in {v}"))
            .to_string()
    };

    // KV (a = "YQ==", b = "Yg==").
    post("kv/put", r#"{"key":"YQ==","value":"Yg=="}"#.into(), 200).await;
    let r = post("kv/range", r#"{"key":"YQ=="}"#.into(), 200).await;
    assert_eq!(r["kvs"][0]["value"], "Yg==");
    let r = post(
        "kv/txn",
        r#"{"compare":[{"key":"YQ==","target":"VALUE","value":"Yg=="}],"success":[{"request_put":{"key":"Yg==","value":"YQ=="}}]}"#.into(),
        200,
    )
    .await;
    assert_eq!(r["succeeded"], true);
    let r = post("kv/deleterange", r#"{"key":"Yg=="}"#.into(), 200).await;
    assert_eq!(r["deleted"], "1");
    post("kv/compaction", r#"{"revision":"2"}"#.into(), 200).await;

    // Leases, and the /v3/kv/lease/* aliases.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = post("lease/grant", r#"{"TTL":"60"}"#.into(), 200).await;
        assert_eq!(r["TTL"], "60");
        ids.push(str_of(&r, "ID"));
    }
    for path in ["lease/timetolive", "kv/lease/timetolive"] {
        let r = post(path, format!(r#"{{"ID":"{}","keys":true}}"#, ids[0]), 200).await;
        assert_eq!(r["grantedTTL"], "60", "{path}");
    }
    for path in ["lease/leases", "kv/lease/leases"] {
        let r = post(path, "{}".into(), 200).await;
        assert_eq!(r["leases"].as_array().map(Vec::len), Some(2), "{path}: {r}");
    }
    let (code, text) = http(
        port,
        "POST",
        "/v3/lease/keepalive",
        &format!(r#"{{"ID":"{}"}}"#, ids[0]),
    )
    .await;
    assert_eq!(code, 200);
    assert!(
        text.contains(r#""result":{"#) && text.contains(r#""TTL":"60""#),
        "{text}"
    );

    // Lock and election on the first lease.
    let r = post(
        "lock/lock",
        format!(r#"{{"name":"bA==","lease":"{}"}}"#, ids[0]),
        200,
    )
    .await;
    let key = str_of(&r, "key");
    post("lock/unlock", format!(r#"{{"key":"{key}"}}"#), 200).await;
    let r = post(
        "election/campaign",
        format!(r#"{{"name":"ZQ==","lease":"{}","value":"djE="}}"#, ids[0]),
        200,
    )
    .await;
    let leader = r["leader"].to_string();
    post(
        "election/proclaim",
        format!(r#"{{"leader":{leader},"value":"djI="}}"#),
        200,
    )
    .await;
    let r = post("election/leader", r#"{"name":"ZQ=="}"#.into(), 200).await;
    assert_eq!(r["kv"]["value"], "djI=");
    // The streams: the first line of Observe (the current leader) and of Watch (created).
    for (path, body, want) in [
        (
            "/v3/election/observe",
            r#"{"name":"ZQ=="}"#,
            r#""value":"djI=""#,
        ),
        (
            "/v3/watch",
            r#"{"create_request":{"key":"YQ=="}}"#,
            r#""created":true"#,
        ),
    ] {
        assert!(
            first_stream_line_contains(port, path, body, want).await,
            "{path}"
        );
    }
    post("election/resign", format!(r#"{{"leader":{leader}}}"#), 200).await;
    // etcd answers ErrElectionNoLeader as a plain error: gRPC Unknown, HTTP 500.
    let r = post("election/leader", r#"{"name":"ZQ=="}"#.into(), 500).await;
    assert_eq!(r["error"], "election: no leader");
    post("lease/revoke", format!(r#"{{"ID":"{}"}}"#, ids[0]), 200).await;
    post("kv/lease/revoke", format!(r#"{{"ID":"{}"}}"#, ids[1]), 200).await;

    // Cluster: a learner that never starts is added, updated, refused promotion, removed.
    let r = post(
        "cluster/member/add",
        r#"{"peerURLs":["http://127.0.0.1:1"],"isLearner":true}"#.into(),
        200,
    )
    .await;
    let id = str_of(&r["member"], "ID");
    post(
        "cluster/member/update",
        format!(r#"{{"ID":"{id}","peerURLs":["http://127.0.0.1:2"]}}"#),
        200,
    )
    .await;
    let r = post("cluster/member/promote", format!(r#"{{"ID":"{id}"}}"#), 412).await;
    assert_eq!(r["code"], 9, "{r}");
    post("cluster/member/remove", format!(r#"{{"ID":"{id}"}}"#), 200).await;
    let r = post("cluster/member/list", "{}".into(), 200).await;
    assert_eq!(r["members"].as_array().map(Vec::len), Some(1));

    // Maintenance.
    post("maintenance/alarm", "{}".into(), 200).await;
    let r = post("maintenance/status", "{}".into(), 200).await;
    assert!(r["version"].is_string(), "{r}");
    post("maintenance/defragment", "{}".into(), 200).await;
    let r = post("maintenance/hash", "{}".into(), 200).await;
    assert!(r["hash"].is_number(), "{r}");
    let r = post("maintenance/downgrade", "{}".into(), 501).await;
    assert_eq!(r["code"], 12, "{r}");

    // Auth: users and roles, then enable, authenticate and disable with the token.
    post("auth/role/add", r#"{"name":"r"}"#.into(), 200).await;
    post(
        "auth/role/grant",
        r#"{"name":"r","perm":{"permType":"READWRITE","key":"YQ=="}}"#.into(),
        200,
    )
    .await;
    let r = post("auth/role/get", r#"{"role":"r"}"#.into(), 200).await;
    assert_eq!(r["perm"][0]["permType"], "READWRITE", "{r}");
    post("auth/role/list", "{}".into(), 200).await;
    post(
        "auth/user/add",
        r#"{"name":"u","password":"p"}"#.into(),
        200,
    )
    .await;
    post("auth/user/grant", r#"{"user":"u","role":"r"}"#.into(), 200).await;
    let r = post("auth/user/get", r#"{"name":"u"}"#.into(), 200).await;
    assert_eq!(r["roles"][0], "r", "{r}");
    post("auth/user/list", "{}".into(), 200).await;
    post(
        "auth/user/changepw",
        r#"{"name":"u","password":"q"}"#.into(),
        200,
    )
    .await;
    post("auth/user/revoke", r#"{"name":"u","role":"r"}"#.into(), 200).await;
    post(
        "auth/role/revoke",
        r#"{"role":"r","key":"YQ=="}"#.into(),
        200,
    )
    .await;
    post("auth/role/delete", r#"{"role":"r"}"#.into(), 200).await;
    post("auth/user/delete", r#"{"name":"u"}"#.into(), 200).await;
    post(
        "auth/user/add",
        r#"{"name":"root","password":"rp"}"#.into(),
        200,
    )
    .await;
    post(
        "auth/user/grant",
        r#"{"user":"root","role":"root"}"#.into(),
        200,
    )
    .await;
    post("auth/enable", "{}".into(), 200).await;
    let r = post("auth/status", "{}".into(), 200).await;
    assert_eq!(r["enabled"], true, "{r}");
    let r = post(
        "auth/authenticate",
        r#"{"name":"root","password":"rp"}"#.into(),
        200,
    )
    .await;
    let token = str_of(&r, "token");
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!(
        "POST /v3/auth/disable HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {token}\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    c.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let r = post("auth/status", "{}".into(), 200).await;
    assert_eq!(r.get("enabled"), None, "{r}");
}

#[tokio::test]
async fn mvcc_counters_move_as_etcds_after_a_put_a_range_a_delete_and_a_txn() {
    use oxcd_proto::etcdserverpb::{
        compare, request_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
        TxnRequest,
    };
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let families = [
        "etcd_mvcc_range_total",
        "etcd_mvcc_put_total",
        "etcd_mvcc_delete_total",
        "etcd_mvcc_txn_total",
    ];
    let counts = |body: &str| {
        families.map(|f| {
            sample(body, f)
                .unwrap_or_else(|| panic!("{f} missing from\n{body}"))
                .parse::<u64>()
                .unwrap()
        })
    };
    let (_, body) = http(s.port, "GET", "/metrics", "").await;
    for f in families {
        assert!(body.contains(&format!("# TYPE {f} counter")), "{f}");
    }
    let before = counts(&body);
    let mut kv = s.kv().await;
    let put = PutRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    kv.put(put.clone()).await.unwrap();
    kv.range(RangeRequest {
        key: b"k".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    kv.delete_range(DeleteRangeRequest {
        key: b"k".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    // etcd: the compare on a read transaction (one range), then the put and the range on
    // the write transaction (two ops: one txn).
    let txn = TxnRequest {
        compare: vec![Compare {
            key: b"k".to_vec(),
            target: compare::CompareTarget::Version as i32,
            result: compare::CompareResult::Equal as i32,
            ..Default::default()
        }],
        success: vec![
            RequestOp {
                request: Some(request_op::Request::RequestPut(put)),
            },
            RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    key: b"k".to_vec(),
                    ..Default::default()
                })),
            },
        ],
        failure: vec![],
    };
    assert!(kv.txn(txn).await.unwrap().into_inner().succeeded);
    let (_, body) = http(s.port, "GET", "/metrics", "").await;
    let after = counts(&body);
    let moved: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    assert_eq!(moved, [3, 2, 1, 1], "range, put, delete, txn");
}

/// A gRPC codec of raw message bytes: sends what no etcd message decodes from.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut out = vec![0; bytes::Buf::remaining(src)];
        bytes::Buf::copy_to_slice(src, &mut out);
        Ok(Some(out))
    }
}

/// `req` with Go clientv3's API version header.
fn with_version<T>(mut req: tonic::Request<T>, version: &str) -> tonic::Request<T> {
    req.metadata_mut()
        .insert("client-api-version", version.parse().unwrap());
    req
}

/// Scrapes `/metrics` until `series` reads `want`; returns that scrape.
async fn metrics_until(port: u16, series: &str, want: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http(port, "GET", "/metrics", "").await;
        if sample(&body, series).as_deref() == Some(want) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} never read {want}:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn metrics_count_client_requests_by_type_and_api_version() {
    use oxcd_proto::etcdserverpb::{
        kv_client::KvClient, watch_client::WatchClient, PutRequest, RangeRequest,
    };
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let series = |kind: &str, version: &str| {
        format!(
            r#"etcd_server_client_requests_total{{client_api_version="{version}",type="{kind}"}}"#
        )
    };
    let count = |body: &str, kind: &str, version: &str| {
        sample(body, &series(kind, version)).map_or(0, |v| v.parse::<u64>().unwrap())
    };
    let (_, before) = http(s.port, "GET", "/metrics", "").await;
    let channel = tonic::transport::Channel::from_shared(s.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut kv = KvClient::new(channel.clone());
    let put = || PutRequest {
        key: b"k".to_vec(),
        ..Default::default()
    };
    // Go's clientv3 sends its API version with every call.
    for v in ["3.5", "3.5", "3.4"] {
        kv.put(with_version(tonic::Request::new(put()), v))
            .await
            .unwrap();
    }
    // No header; a value no client sends.
    kv.range(RangeRequest {
        key: b"k".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    kv.range(with_version(
        tonic::Request::new(RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        }),
        "9.9",
    ))
    .await
    .unwrap();
    // A stream counts once, whatever it carries.
    let (_tx, rx) = watch_of(b"w").await;
    let mut watch = WatchClient::new(channel)
        .watch(with_version(tonic::Request::new(rx), "3.5"))
        .await
        .unwrap()
        .into_inner();
    assert!(watch.message().await.unwrap().unwrap().created);
    // The gateway calls its server as etcd's does over gRPC: no client version.
    let (code, _) = http(s.port, "POST", "/v3/kv/range", r#"{"key":"aw=="}"#).await;
    assert_eq!(code, 200);
    let (_, after) = http(s.port, "GET", "/metrics", "").await;
    for (kind, version, moved) in [
        ("unary", "3.5", 2),
        ("unary", "3.4", 1),
        ("unary", "unknown", 3),
        ("stream", "3.5", 1),
    ] {
        assert_eq!(
            count(&after, kind, version) - count(&before, kind, version),
            moved,
            "{kind} {version}:\n{after}"
        );
    }
    assert!(!after.contains(r#"client_api_version="9.9""#), "{after}");
    assert!(
        after.contains("# HELP etcd_server_client_requests_total The total number of client requests per client version."),
        "{after}"
    );
}

#[tokio::test]
async fn metrics_count_watch_and_keep_alive_requests_that_cannot_be_received() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let channel = tonic::transport::Channel::from_shared(s.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    // A message no etcd request decodes from (a truncated field tag), on each stream API;
    // the streams stay open on the client's side.
    let mut open = Vec::new();
    for (path, api) in [
        ("/etcdserverpb.Watch/Watch", "watch"),
        ("/etcdserverpb.Lease/LeaseKeepAlive", "lease-keepalive"),
    ] {
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
        tx.send(vec![0xff]).await.unwrap();
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let resp = grpc
            .streaming(
                tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
                tonic::codegen::http::uri::PathAndQuery::from_static(path),
                RawCodec,
            )
            .await;
        open.push((tx, resp));
        let series =
            format!(r#"etcd_network_server_stream_failures_total{{API="{api}",Type="receive"}}"#);
        let body = metrics_until(s.port, &series, "1").await;
        assert!(
            body.contains("# TYPE etcd_network_server_stream_failures_total counter"),
            "{body}"
        );
    }
    // A client that goes away is not a failure (etcd's client-context errors).
    drop(open);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(oxcd_proto::etcdserverpb::WatchRequest {
        request_union: Some(
            oxcd_proto::etcdserverpb::watch_request::RequestUnion::CreateRequest(
                oxcd_proto::etcdserverpb::WatchCreateRequest {
                    key: b"w".to_vec(),
                    ..Default::default()
                },
            ),
        ),
    })
    .await
    .unwrap();
    let mut watch = oxcd_proto::etcdserverpb::watch_client::WatchClient::new(channel)
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    assert!(watch.message().await.unwrap().unwrap().created);
    drop(watch);
    drop(tx);
    let canceled = r#"grpc_server_handled_total{grpc_code="Canceled",grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"}"#;
    let body = metrics_until(s.port, canceled, "1").await;
    for (api, kind) in [
        ("watch", "receive"),
        ("lease-keepalive", "receive"),
        ("watch", "send"),
        ("lease-keepalive", "send"),
    ] {
        let want = if kind == "receive" { Some("1") } else { None };
        assert_eq!(
            sample(
                &body,
                &format!(
                    r#"etcd_network_server_stream_failures_total{{API="{api}",Type="{kind}"}}"#
                )
            )
            .as_deref(),
            want,
            "{api} {kind}:\n{body}"
        );
    }
}

/// The request stream of a Watch call that starts by watching `key`, and its sender (kept
/// by the caller: dropping it ends the stream).
async fn watch_of(
    key: &[u8],
) -> (
    tokio::sync::mpsc::Sender<oxcd_proto::etcdserverpb::WatchRequest>,
    tokio_stream::wrappers::ReceiverStream<oxcd_proto::etcdserverpb::WatchRequest>,
) {
    use oxcd_proto::etcdserverpb::{watch_request::RequestUnion, WatchCreateRequest, WatchRequest};
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    (tx, tokio_stream::wrappers::ReceiverStream::new(rx))
}
