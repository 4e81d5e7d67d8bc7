//! oxcd started as an etcd 3.4 deployment starts etcd: flags oxcd cannot honour where
//! ignoring them would mislead stop it with one line; harmless ones are accepted with one
//! warning each; the rest work.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{free_port, oxcd_bin, Server};

/// The member flags every run needs, on fresh ports in `dir`.
fn member_flags(dir: &std::path::Path) -> Vec<String> {
    let client = format!("http://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    vec![
        "--name=m1".into(),
        format!("--data-dir={}", dir.display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=m1={peer}"),
    ]
}

#[test]
fn misleading_etcd_flags_stop_the_server_with_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (&["--experimental-compact-hash-check-enabled"], "hash check"),
        (&["--enable-v2"], "v3 API"),
        (&["--discovery-srv=example.com"], "--initial-cluster"),
    ];
    for (flags, cause) in cases {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(oxcd_bin())
            .args(member_flags(dir.path()))
            .args(*flags)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{flags:?}: {stderr}");
        let flag_name = flags[0].split('=').next().unwrap_or_default();
        assert!(
            lines[0].starts_with(&format!("oxcd: {flag_name}")),
            "{stderr}"
        );
        assert!(
            lines[0].contains(cause) && lines[0].contains("remove it"),
            "{stderr}"
        );
        assert!(
            !dir.path().join("member").exists(),
            "nothing created: {flags:?}"
        );
    }
}

/// Log lines up to the "ready" line.
fn log_until_ready(server: &Server) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match server.log.recv_timeout(left) {
            Ok(line) if line.contains("ready to serve client requests") => return lines,
            Ok(line) => lines.push(line),
            Err(_) => panic!("not ready; log:\n{}", lines.join("\n")),
        }
    }
}

#[tokio::test]
async fn etcd_34_deployment_command_line_serves_with_one_warning_per_ignored_flag() {
    let dir = tempfile::tempdir().unwrap();
    let extra = [
        "--logger",
        "zap",
        "--log-outputs",
        "stderr",
        "--max-concurrent-streams",
        "1000",
        "--grpc-keepalive-min-time=10s",
        "--grpc-keepalive-interval=30s",
        "--grpc-keepalive-timeout=10s",
        "--auto-compaction-mode=periodic",
        "--auto-compaction-retention=0",
        "--experimental-initial-corrupt-check=false",
        "--experimental-enable-lease-checkpoint=true",
        "--enable-v2=false",
        "--quota-backend-bytes=0",
        "--peer-auto-tls=false",
        "--client-cert-auth=false",
        "--snapshot-count=10000",
        "--initial-cluster-state=new",
        "--initial-cluster-token=tkn",
        "--pre-vote",
        "--enable-pprof",
        "--metrics=extensive",
    ];
    let server = Server::spawn(dir.path(), free_port(), free_port(), &extra);
    let log = log_until_ready(&server);
    let warned: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("has no effect in oxcd"))
        .collect();
    assert_eq!(warned.len(), 3, "{log:#?}");
    for flag in [
        "--logger=zap",
        "--grpc-keepalive-min-time=10s",
        "--enable-pprof",
    ] {
        assert!(warned.iter().any(|l| l.contains(flag)), "{flag}: {log:#?}");
    }
    let mut kv = server.kv().await;
    kv.put(oxcd_proto::etcdserverpb::PutRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
}

#[test]
fn etcd_env_vars_follow_etcd_rules() {
    let dir = tempfile::tempdir().unwrap();
    // A flag and its variable both set: refused, as etcd refuses it.
    let out = Command::new(oxcd_bin())
        .args(member_flags(dir.path()))
        .env("ETCD_NAME", "other")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("\"ETCD_NAME\" is shadowed"), "{stderr}");
    // A refused setting from the environment names the variable.
    let out = Command::new(oxcd_bin())
        .args(member_flags(dir.path()))
        .env("ETCD_DISCOVERY_SRV", "example.com")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("oxcd: ETCD_DISCOVERY_SRV=example.com: "),
        "{stderr}"
    );
}
