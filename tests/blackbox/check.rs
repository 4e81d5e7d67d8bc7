//! `oxcdctl check perf` and `check datascale` against a spawned oxcd: etcdctl 3.4's output
//! lines, exit codes, and the prefix deleted afterwards.
//!
//! `oxcdctl` is another crate's binary: the test builds it first (`cargo build -p oxcdctl`,
//! a no-op when fresh) into the same target dir as `oxcd`. `check perf` runs 3 s instead of
//! 60 s through the test knob `OXCDCTL_CHECK_PERF_DURATION`.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use oxcd_proto::etcdserverpb::{PutRequest, RangeRequest};

use crate::harness::Server;

/// The `oxcdctl` binary next to `oxcd`, built once per test run.
pub(crate) fn oxcdctl() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let oxcd = PathBuf::from(crate::harness::oxcd_bin());
            let mut cargo = Command::new(env!("CARGO"));
            cargo.args(["build", "--quiet", "-p", "oxcdctl", "--bin", "oxcdctl"]);
            if oxcd.parent().and_then(|d| d.file_name()) == Some("release".as_ref()) {
                cargo.arg("--release");
            }
            let status = cargo.status().expect("run cargo build -p oxcdctl");
            assert!(status.success(), "cargo build -p oxcdctl failed");
            oxcd.with_file_name("oxcdctl")
        })
        .clone()
}

fn run(server: &Server, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(oxcdctl())
        .arg(format!("--endpoints=127.0.0.1:{}", server.port))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run oxcdctl")
}

/// Lines of stdout, with the progress bar's carriage-return redraws taken apart.
fn lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .split(['\n', '\r'])
        .map(|l| l.trim_end().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

async fn keys_under(server: &Server, prefix: &str) -> i64 {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    server
        .kv()
        .await
        .range(RangeRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: end,
            count_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .count
}

/// `<number>` of `PASS: Throughput is <number> writes/s` and its FAIL form.
fn seconds_after<'a>(line: &'a str, head: &str) -> Option<f64> {
    let rest: &'a str = line.strip_prefix(head)?;
    let number = rest.strip_suffix('s')?;
    assert_eq!(number.split('.').nth(1).map(str::len), Some(6), "{line}");
    number.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_perf_prints_etcdctls_verdicts_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let out = run(
        &server,
        &["check", "perf", "--auto-compact", "--auto-defrag"],
        &[("OXCDCTL_CHECK_PERF_DURATION", "3")],
    );
    let lines = lines(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The bar: counters and percentage, ending with the elapsed time.
    assert!(lines[0].starts_with(" 0 / 3 "), "{lines:?}");
    let finished = lines
        .iter()
        .position(|l| l.starts_with(" 3 / 3  100.00% "))
        .unwrap_or_else(|| panic!("no finished bar in {lines:?}"));
    let rest = &lines[finished + 1..];
    assert_eq!(rest.len(), 8, "{rest:?} {stderr}");
    let compacted = rest[0].strip_prefix("Compacting with revision ").unwrap();
    assert_eq!(rest[1], format!("Compacted with revision {compacted}"));
    let ep = format!("\"127.0.0.1:{}\"", server.port);
    assert_eq!(rest[2], format!("Defragmenting {ep}"));
    assert_eq!(rest[3], format!("Defragmented {ep}"));
    let writes = rest[4]
        .strip_prefix("PASS: Throughput is ")
        .or_else(|| rest[4].strip_prefix("FAIL: Throughput too low: "))
        .and_then(|r| r.strip_suffix(" writes/s"))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{rest:?}"));
    assert!(writes > 1 && writes <= 152, "{writes}");
    assert!(
        seconds_after(&rest[5], "PASS: Slowest request took ")
            .or_else(|| seconds_after(&rest[5], "Slowest request took too long: "))
            .is_some(),
        "{rest:?}"
    );
    assert!(
        seconds_after(&rest[6], "PASS: Stddev is ")
            .or_else(|| seconds_after(&rest[6], "Stddev too high: "))
            .is_some(),
        "{rest:?}"
    );
    let passed = rest[4..7].iter().all(|l| l.starts_with("PASS: "));
    assert_eq!(rest[7], if passed { "PASS" } else { "FAIL" });
    assert_eq!(
        out.status.code(),
        Some(if passed { 0 } else { 1 }),
        "{stderr}"
    );
    assert_eq!(keys_under(&server, "/etcdctl-check-perf/").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_datascale_reports_memory_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let out = run(&server, &["check", "datascale"], &[]);
    let lines = lines(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{lines:?} {stderr}");
    assert_eq!(
        lines[0],
        "Start data scale check for work load [10000 key-value pairs, 1024 bytes per key-value, 50 concurrent clients]."
    );
    assert!(lines[1].starts_with(" 0 / 10000 "), "{lines:?}");
    let n = lines.len();
    assert!(
        lines[n - 2].starts_with(" 10000 / 10000  100.00% "),
        "{lines:?}"
    );
    let mb = lines[n - 1]
        .strip_prefix("PASS: Approximate system memory used : ")
        .and_then(|r| r.strip_suffix(" MB."))
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(mb.split('.').nth(1).map(str::len), Some(2), "{mb}");
    mb.parse::<f64>().unwrap();
    assert_eq!(keys_under(&server, "/etcdctl-check-datascale/").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_a_used_prefix_and_an_unknown_load() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    server
        .kv()
        .await
        .put(PutRequest {
            key: b"/mine/k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    for command in ["perf", "datascale"] {
        let out = run(&server, &["check", command, "--prefix", "/mine/"], &[]);
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "Error: prefix \"/mine/\" has keys. Delete with etcdctl del --prefix /mine/ first\n"
        );
        let out = run(&server, &["check", command, "--load", "huge"], &[]);
        assert_eq!(out.status.code(), Some(4));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "Error: unknown load option huge\n"
        );
    }
    assert_eq!(keys_under(&server, "/mine/").await, 1);
}
