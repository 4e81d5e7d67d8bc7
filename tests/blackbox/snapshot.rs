//! Maintenance.Snapshot and `snapshot restore` over the wire; the backend quota and the
//! NOSPACE alarm; `--max-txn-ops` and `--max-request-bytes` set to other values.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use oxcd_core::restore::{restore, RestoreConfig, RestoreError};
use oxcd_proto::etcdserverpb::{
    alarm_request::AlarmAction, AlarmRequest, AlarmType, CompactionRequest, DefragmentRequest,
    DeleteRangeRequest, PutRequest, RangeRequest, SnapshotRequest, StatusRequest,
};
use oxcd_proto::mvccpb::KeyValue;
use tonic::Code;

use crate::harness::{free_port, Server};

/// Every key at `revision` (0: now) and the revision read at.
async fn all_at(s: &Server, revision: i64) -> (i64, Vec<KeyValue>) {
    let r = s
        .kv()
        .await
        .range(RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (r.header.unwrap().revision, r.kvs)
}

async fn put(s: &Server, key: &str, value: &[u8]) -> Result<i64, tonic::Status> {
    s.kv()
        .await
        .put(PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.to_vec(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().header.unwrap().revision)
}

/// The snapshot stream's messages: every blob but the last, the last (the digest), and
/// checks of etcd's framing on the way.
async fn snapshot(s: &Server) -> (Vec<u8>, Vec<u8>) {
    let mut stream = s
        .maintenance()
        .await
        .snapshot(SnapshotRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut msgs = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        msgs.push(m);
    }
    let digest = msgs.pop().unwrap();
    assert_eq!(digest.remaining_bytes, 0);
    assert_eq!(digest.blob.len(), 32, "the last message is the sha256");
    let total: usize = msgs.iter().map(|m| m.blob.len()).sum();
    let mut sent = 0;
    let mut data = Vec::with_capacity(total);
    for m in &msgs {
        assert!(m.blob.len() <= 1 << 20, "chunks of at most 1 MiB");
        sent += m.blob.len();
        assert_eq!(m.remaining_bytes as usize, total - sent);
        data.extend_from_slice(&m.blob);
    }
    assert_eq!(
        (data.len() + 32) % 512,
        32,
        "etcdctl checks the size is 32 past a multiple of 512"
    );
    (data, digest.blob)
}

fn restore_cfg(snapshot: &Path, data_dir: &Path, peer_port: u16) -> RestoreConfig {
    let peer = format!("http://127.0.0.1:{peer_port}");
    RestoreConfig {
        snapshot: snapshot.to_path_buf(),
        name: "t1".into(),
        initial_cluster: format!("t1={peer}"),
        initial_cluster_token: "etcd-cluster".into(),
        initial_advertise_peer_urls: vec![peer],
        data_dir: Some(data_dir.to_path_buf()),
        wal_dir: None,
        skip_hash_check: false,
        bump_revision: 0,
        mark_compacted: false,
    }
}

/// What is in `dir` (to prove a refused restore left nothing).
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_under_concurrent_writes_restores_every_key_with_its_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("src"));
    // History: puts, overwrites, deletes.
    for i in 0..300 {
        put(&s, &format!("k/{i:04}"), format!("v{i}").as_bytes())
            .await
            .unwrap();
    }
    for i in (0..300).step_by(3) {
        put(&s, &format!("k/{i:04}"), b"again").await.unwrap();
    }
    s.kv()
        .await
        .delete_range(DeleteRangeRequest {
            key: b"k/0100".to_vec(),
            range_end: b"k/0150".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (before, _) = all_at(&s, 0).await;

    // Writers keep going while the snapshot is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut kv = s.kv().await;
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                kv.put(PutRequest {
                    key: format!("live/{}", n % 50).into_bytes(),
                    value: n.to_string().into_bytes(),
                    ..Default::default()
                })
                .await
                .unwrap();
                n += 1;
            }
            n
        })
    };
    // Let some writes land first.
    while all_at(&s, 0).await.0 < before + 20 {}
    let (data, digest) = snapshot(&s).await;
    let (after, _) = all_at(&s, 0).await;
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();
    assert!(written > 20);

    let file = dir.path().join("snap.db");
    let mut bytes = data.clone();
    bytes.extend_from_slice(&digest);
    std::fs::write(&file, &bytes).unwrap();
    let target = dir.path().join("restored");
    let peer_port = free_port();
    let restored = restore(&restore_cfg(&file, &target, peer_port)).unwrap();
    assert!(restored.revision > before && restored.revision <= after);
    assert_eq!(
        entries(dir.path()),
        vec![
            dir.path().join("restored"),
            file.clone(),
            dir.path().join("src")
        ],
        "no temporary dir left"
    );

    let r = Server::start_with(&target, free_port(), peer_port, &[]);
    let (rev, got) = all_at(&r, 0).await;
    assert_eq!(rev, restored.revision);
    let (_, want) = all_at(&s, rev).await;
    assert_eq!(
        got, want,
        "every key at the snapshot's revision, revisions included"
    );
    assert!(got.iter().any(|kv| kv.key.starts_with(b"live/")));
    // History came along too.
    assert_eq!(all_at(&r, before).await.1, all_at(&s, before).await.1);
    assert_eq!(all_at(&r, 305).await.1, all_at(&s, 305).await.1);
    // The restored member is a new cluster that takes writes at the next revision.
    assert_eq!(put(&r, "after", b"x").await.unwrap(), rev + 1);
}

#[tokio::test]
async fn truncated_corrupted_or_unhashed_snapshots_are_refused_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("src"));
    for i in 0..100 {
        put(&s, &format!("k{i}"), &[b'x'; 100]).await.unwrap();
    }
    let (data, digest) = snapshot(&s).await;
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let target = work.join("restored");

    let mut whole = data.clone();
    whole.extend_from_slice(&digest);
    let truncated = work.join("truncated.db");
    std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    let e = restore(&restore_cfg(&truncated, &target, 1)).unwrap_err();
    assert!(matches!(e, RestoreError::MissingHash), "{e}");
    assert_eq!(
        e.to_string(),
        "snapshot missing hash but --skip-hash-check=false"
    );
    // Cut at a 512-byte boundary plus a fake trailer: the hash does not match.
    let mut cut = whole[..(whole.len() / 2) & !511].to_vec();
    cut.extend_from_slice(&digest);
    let cut_file = work.join("cut.db");
    std::fs::write(&cut_file, &cut).unwrap();
    let e = restore(&restore_cfg(&cut_file, &target, 1)).unwrap_err();
    assert!(e.to_string().starts_with("expected sha256 ["), "{e}");
    // The same cut with --skip-hash-check: not a complete backend.
    let mut cfg = restore_cfg(&cut_file, &target, 1);
    cfg.skip_hash_check = true;
    let e = restore(&cfg).unwrap_err();
    assert!(e.to_string().contains("was it truncated?"), "{e}");

    let mut flipped = whole.clone();
    flipped[data.len() / 2] ^= 0x40;
    let flipped_file = work.join("flipped.db");
    std::fs::write(&flipped_file, &flipped).unwrap();
    let e = restore(&restore_cfg(&flipped_file, &target, 1)).unwrap_err();
    assert!(matches!(e, RestoreError::HashMismatch { .. }), "{e}");

    let other = work.join("other.db");
    std::fs::write(&other, vec![0u8; 4096 + 32]).unwrap();
    let e = restore(&restore_cfg(&other, &target, 1)).unwrap_err();
    assert!(e.to_string().contains("is not an oxcd snapshot"), "{e}");

    let listed = |v: &[&str]| {
        let mut p: Vec<PathBuf> = v.iter().map(|n| work.join(n)).collect();
        p.sort();
        p
    };
    assert_eq!(
        entries(&work),
        listed(&["cut.db", "flipped.db", "other.db", "truncated.db"]),
        "a refused restore leaves nothing behind"
    );

    // A data dir's backend has no trailer: restored with --skip-hash-check.
    let good = work.join("good.db");
    std::fs::write(&good, &whole).unwrap();
    restore(&restore_cfg(&good, &target, 1)).unwrap();
    let e = restore(&restore_cfg(&good, &target, 1)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("data-dir {:?} exists", target.display().to_string())
    );
    let plain = work.join("plain.db");
    std::fs::write(&plain, &data).unwrap();
    let mut cfg = restore_cfg(&plain, &work.join("plain"), 1);
    assert!(matches!(restore(&cfg), Err(RestoreError::MissingHash)));
    cfg.skip_hash_check = true;
    let done = restore(&cfg).unwrap();
    assert_eq!(done.revision, 101);

    // A stopped member's backend file (what the stream is not: the stream is a dump of
    // its rows) restores too, with --skip-hash-check as etcd's own db file does.
    assert!(s.terminate().success());
    let backend = work.join("backend.db");
    std::fs::copy(dir.path().join("src/member/snap/db"), &backend).unwrap();
    let mut cfg = restore_cfg(&backend, &work.join("from-backend"), 1);
    cfg.skip_hash_check = true;
    let done = restore(&cfg).unwrap();
    assert_eq!(done.revision, 101);
}

#[tokio::test]
async fn bump_revision_and_mark_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("src"));
    for i in 0..10 {
        put(&s, &format!("k{i}"), b"v").await.unwrap();
    }
    let (data, digest) = snapshot(&s).await;
    let file = dir.path().join("snap.db");
    std::fs::write(&file, [data, digest].concat()).unwrap();
    let target = dir.path().join("restored");
    let peer_port = free_port();
    let mut cfg = restore_cfg(&file, &target, peer_port);
    cfg.bump_revision = 1000;
    assert!(restore(&cfg)
        .unwrap_err()
        .to_string()
        .contains("--mark-compacted required"));
    cfg.mark_compacted = true;
    assert_eq!(restore(&cfg).unwrap().revision, 1011);
    let r = Server::start_with(&target, free_port(), peer_port, &[]);
    let (rev, kvs) = all_at(&r, 0).await;
    assert_eq!((rev, kvs.len()), (1011, 10));
    let old = r
        .kv()
        .await
        .range(RangeRequest {
            key: b"k0".to_vec(),
            revision: 5,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        old.message(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    assert_eq!(put(&r, "k0", b"w").await.unwrap(), 1012);
}

/// A minimal HTTP/1.1 GET of `path`; the body.
async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn quota_raises_nospace_and_compaction_defrag_disarm_bring_writes_back() {
    const QUOTA: i64 = 8 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let quota = format!("--quota-backend-bytes={QUOTA}");
    let s = Server::start_with(dir.path(), free_port(), free_port(), &[&quota]);
    let metrics = http_get(s.port, "/metrics").await;
    assert!(
        metrics.contains(&format!("etcd_server_quota_backend_bytes {QUOTA}")),
        "the metric reports the quota"
    );
    let value = vec![b'q'; 64 * 1024];
    let mut refused = None;
    for i in 0..1000 {
        if let Err(e) = put(&s, &format!("big/{}", i % 20), &value).await {
            refused = Some(e);
            break;
        }
    }
    let e = refused.expect("the quota was never reached");
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert_eq!(e.message(), "etcdserver: mvcc: database space exceeded");

    let mut m = s.maintenance().await;
    let alarms = m
        .alarm(AlarmRequest {
            action: AlarmAction::Get as i32,
            member_id: 0,
            alarm: AlarmType::None as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .alarms;
    assert_eq!(alarms.len(), 1);
    assert_eq!(alarms[0].alarm, AlarmType::Nospace as i32);
    let status = m.status(StatusRequest {}).await.unwrap().into_inner();
    assert!(status.errors.iter().any(|e| e.contains("alarm:NOSPACE")));

    // Even a small put is refused now (the alarm, through raft); reads and deletes work.
    let small = put(&s, "small", b"x").await.unwrap_err();
    assert_eq!(small.message(), "etcdserver: mvcc: database space exceeded");
    let (rev, kvs) = all_at(&s, 0).await;
    assert!(!kvs.is_empty());
    s.kv()
        .await
        .delete_range(DeleteRangeRequest {
            key: b"big/".to_vec(),
            range_end: b"big0".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    s.kv()
        .await
        .compact(CompactionRequest {
            revision: rev + 1,
            physical: true,
        })
        .await
        .unwrap();
    m.defragment(DefragmentRequest {}).await.unwrap();
    let size = m
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .db_size;
    assert!(size < QUOTA / 2, "defragmented to {size}");
    // Still refused until disarmed.
    assert!(put(&s, "small", b"x").await.is_err());
    let disarmed = m
        .alarm(AlarmRequest {
            action: AlarmAction::Deactivate as i32,
            member_id: alarms[0].member_id,
            alarm: AlarmType::Nospace as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(disarmed.alarms.len(), 1);
    put(&s, "small", b"x").await.unwrap();
    put(&s, "big/again", &value).await.unwrap();
}

#[tokio::test]
async fn max_txn_ops_and_max_request_bytes_as_given() {
    use oxcd_proto::etcdserverpb::{request_op, RequestOp, TxnRequest};
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        dir.path(),
        free_port(),
        free_port(),
        &["--max-txn-ops=3", "--max-request-bytes=2048"],
    );
    let op = |i: usize| RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: format!("t{i}").into_bytes(),
            value: b"v".to_vec(),
            ..Default::default()
        })),
    };
    let txn = |n: usize| TxnRequest {
        success: (0..n).map(op).collect(),
        ..Default::default()
    };
    s.kv().await.txn(txn(3)).await.unwrap();
    let e = s.kv().await.txn(txn(4)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        e.message(),
        "etcdserver: too many operations in txn request"
    );
    put(&s, "fits", &[b'x'; 1500]).await.unwrap();
    let e = put(&s, "too-big", &[b'x'; 3000]).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "etcdserver: request is too large");
}

#[tokio::test]
async fn the_gateway_streams_the_snapshot_as_json_lines() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    // Over 1 MiB: two chunks and the digest.
    for i in 0..30 {
        put(&s, &format!("g{i}"), &[b'x'; 40_000]).await.unwrap();
    }
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
        .await
        .unwrap();
    c.write_all(
        b"POST /v3/maintenance/snapshot HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
    )
    .await
    .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out:.200}");
    let results: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("{\"result\":"))
        .collect();
    // etcd's 32 KiB per line (43,692 characters of base64), whatever the gRPC chunks.
    assert!(results.len() > 1_200_000 / 32_768, "{out:.300}");
    for r in &results {
        let blob = r.split("\"blob\":\"").nth(1).unwrap();
        assert!(blob.split('"').next().unwrap().len() <= 43_692, "{r:.200}");
    }
    assert!(results[0].contains("\"remaining_bytes\":\""));
    // The last message: no bytes remaining (left out, proto3's default) and the sha256
    // (32 bytes: 44 characters of base64).
    let last = results[results.len() - 1];
    assert!(!last.contains("remaining_bytes"), "{last}");
    let blob = last.split("\"blob\":\"").nth(1).unwrap();
    assert_eq!(blob.split('"').next().unwrap().len(), 44, "{last}");
}
