//! `--auto-compaction-mode` / `--auto-compaction-retention` on a real process (the
//! compactor's timing is unit-tested with a fake clock in oxcd-core's `compactor`). Revision
//! mode looks every 5 minutes: its test runs the real clock 300 times faster through the
//! `OXCD_TEST_COMPACTOR_SPEEDUP` test knob.

use std::time::{Duration, Instant};

use oxcd_proto::etcdserverpb::{PutRequest, RangeRequest};

use crate::harness::{free_port, run_to_exit, Server};

use oxcd_proto::etcdserverpb::kv_client::KvClient;
use tonic::transport::Channel;

/// Waits for a log line containing `needle`; returns it.
fn wait_log(s: &Server, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match s.log.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(_) => panic!("no log line with {needle:?}; log:\n{}", seen.join("\n")),
        }
    }
}

/// The `revision=N` field of a log line.
fn revision_field(line: &str) -> i64 {
    let at = line.find("revision=").expect("revision field") + "revision=".len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|d| d.parse().ok())
        .expect("revision value")
}

#[tokio::test]
async fn periodic_retention_of_one_second_compacts_the_history_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        dir.path(),
        free_port(),
        free_port(),
        &[
            "--auto-compaction-mode=periodic",
            "--auto-compaction-retention=1s",
        ],
    );
    let mut kv = s.kv().await;
    let mut last = 0;
    for i in 0..20 {
        let r = kv
            .put(PutRequest {
                key: format!("k{i}").into_bytes(),
                value: b"v".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        last = r.header.unwrap().revision;
    }
    // The compactor records a revision every 100 ms and compacts to the one seen a second
    // earlier: within a few seconds it reaches the revision of the last put.
    let compacted = loop {
        let line = wait_log(
            &s,
            "completed auto periodic compaction",
            Duration::from_secs(10),
        );
        let rev = revision_field(&line);
        if rev >= last {
            break rev;
        }
    };
    let e = kv
        .range(RangeRequest {
            key: b"k0".to_vec(),
            revision: compacted - 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.message(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    let now = kv
        .range(RangeRequest {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.kvs.len(), 20, "compaction keeps the current keys");
}

#[test]
fn retention_syntax_is_etcds() {
    // etcd 3.4/3.5 take an integer (hours) or a Go duration; "0.5" is neither.
    let (code, out) = run_to_exit(&["--auto-compaction-retention=0.5"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("--auto-compaction-retention"), "{out}");
    let (code, out) = run_to_exit(&["--auto-compaction-mode=hourly"]);
    assert_ne!(code, 0, "{out}");
}

/// Puts `n` keys `k0..` and returns the revision of the last.
async fn put_keys(kv: &mut KvClient<Channel>, n: usize, value: &str) -> i64 {
    let mut last = 0;
    for i in 0..n {
        let r = kv
            .put(PutRequest {
                key: format!("k{i}").into_bytes(),
                value: value.as_bytes().to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        last = r.header.unwrap().revision;
    }
    last
}

/// Waits for "completed auto revision compaction" lines until one reaches `rev`; returns its
/// revision. Every compaction seen on the way keeps exactly `retention` revisions of what
/// was current then, so none goes past `rev`.
fn wait_revision_compaction(s: &Server, rev: i64) -> i64 {
    loop {
        let line = wait_log(
            s,
            "completed auto revision compaction",
            Duration::from_secs(20),
        );
        assert!(line.contains("revision_compaction_retention=10"), "{line}");
        let got = revision_field(&line);
        assert!(got <= rev, "compacted past {rev}: {line}");
        if got == rev {
            return got;
        }
    }
}

#[tokio::test]
async fn revision_retention_keeps_the_last_n_revisions_on_a_real_clock() {
    let dir = tempfile::tempdir().unwrap();
    // 300 times faster: etcd's 5-minute look is a second.
    let s = Server::start_env(
        dir.path(),
        &[
            "--auto-compaction-mode=revision",
            "--auto-compaction-retention=10",
        ],
        &[("OXCD_TEST_COMPACTOR_SPEEDUP", "300")],
    );
    let mut kv = s.kv().await;
    let last = put_keys(&mut kv, 30, "a").await;
    let compacted = wait_revision_compaction(&s, last - 10);
    let read_at = |rev: i64| RangeRequest {
        key: b"k0".to_vec(),
        revision: rev,
        ..Default::default()
    };
    let e = kv.range(read_at(compacted - 1)).await.unwrap_err();
    assert_eq!(
        e.message(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    let kept = kv.range(read_at(compacted)).await.unwrap().into_inner();
    assert_eq!(kept.kvs.len(), 1, "the retained history is readable");

    // Nothing new written: the next looks find the same revision and leave it (etcd's
    // `rev == prev` skip); three looks' worth of log has no new compaction.
    let quiet_until = Instant::now() + Duration::from_secs(3);
    while let Some(left) = quiet_until.checked_duration_since(Instant::now()) {
        match s.log.recv_timeout(left) {
            Ok(line) => assert!(!line.contains("auto revision compaction"), "{line}"),
            Err(_) => break,
        }
    }

    // More writes: the next look compacts to the new current revision minus 10.
    let last = put_keys(&mut kv, 15, "b").await;
    wait_revision_compaction(&s, last - 10);
    let now = kv
        .range(RangeRequest {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.kvs.len(), 30, "compaction keeps the current keys");
}
