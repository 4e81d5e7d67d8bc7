//! Misconfiguration: one clear line, a non-zero exit, nothing changed.

use crate::harness::{free_port, run_to_exit, Server};

#[test]
fn unknown_flag() {
    let (code, text) = run_to_exit(&["--no-such-flag"]);
    assert_eq!(code, 2);
    assert!(text.contains("--no-such-flag"), "{text}");
}

#[test]
fn bad_url() {
    let (code, text) = run_to_exit(&["--listen-client-urls=127.0.0.1:2379"]);
    assert_ne!(code, 0);
    assert!(text.contains("--listen-client-urls"), "{text}");
}

#[test]
fn unwritable_data_dir() {
    let (code, text) = run_to_exit(&["--data-dir=/proc/oxcd-cannot-be-here"]);
    assert_ne!(code, 0);
    assert!(text.contains("--data-dir"), "{text}");
    assert_eq!(
        text.trim()
            .lines()
            .filter(|l| l.starts_with("oxcd:"))
            .count(),
        1,
        "{text}"
    );
}

#[test]
fn port_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::spawn(dir.path(), port, free_port(), &[]);
    let (status, log) = s.wait_exit();
    assert!(!status.success());
    assert!(log.contains("in use"), "{log}");
    // Nothing was created beyond the (empty) data dir skeleton: no WAL, no backend.
    assert!(!dir.path().join("member/wal").exists());
    assert!(!dir.path().join("member/snap/db").exists());
}

#[test]
fn data_dir_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Server::start(dir.path());
    let second = Server::spawn(dir.path(), free_port(), free_port(), &[]);
    let (status, log) = second.wait_exit();
    assert!(!status.success());
    assert!(log.contains("in use by another"), "{log}");
}

#[test]
fn version_flag() {
    let (code, text) = run_to_exit(&["--version"]);
    assert_eq!(code, 0);
    assert!(text.contains("oxcd Version"), "{text}");
}

#[test]
fn etcd_env_vars_configure_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let peer = free_port();
    let out = std::process::Command::new(crate::harness::oxcd_bin())
        .env("ETCD_NAME", "envnode")
        .env("ETCD_DATA_DIR", dir.path())
        .env(
            "ETCD_LISTEN_CLIENT_URLS",
            format!("http://127.0.0.1:{port}"),
        )
        .env(
            "ETCD_ADVERTISE_CLIENT_URLS",
            format!("http://127.0.0.1:{port}"),
        )
        .env("ETCD_LISTEN_PEER_URLS", format!("http://127.0.0.1:{peer}"))
        .env(
            "ETCD_INITIAL_ADVERTISE_PEER_URLS",
            format!("http://127.0.0.1:{peer}"),
        )
        .env("ETCD_HEARTBEAT_INTERVAL", "50")
        .env("ETCD_ELECTION_TIMEOUT", "100")
        .output()
        .unwrap();
    // 100 ms is less than 5 heartbeats of 50 ms: the env values were read and checked.
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("--election-timeout[100ms]"), "{text}");
    assert!(
        !dir.path().join("member").exists(),
        "nothing created on a config error"
    );
}

#[tokio::test]
async fn config_file_with_etcd_keys_starts_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let peer = free_port();
    let data = dir.path().join("data");
    let file = dir.path().join("etcd.conf.yml");
    std::fs::write(
        &file,
        format!(
            "name: 'filenode'\ndata-dir: {}\nlisten-client-urls: http://127.0.0.1:{port}\nadvertise-client-urls: http://127.0.0.1:{port}\nlisten-peer-urls: http://127.0.0.1:{peer}\ninitial-advertise-peer-urls: http://127.0.0.1:{peer}\ninitial-cluster: filenode=http://127.0.0.1:{peer}\ninitial-cluster-state: 'new'\nsnapshot-count: 10000\n",
            data.display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(crate::harness::oxcd_bin())
        .arg(format!("--config-file={}", file.display()))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let ready = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("ready to serve client requests"))
    });
    assert!(
        ready.join().unwrap(),
        "server from config file became ready"
    );
    let mut c = oxcd_proto::etcdserverpb::cluster_client::ClusterClient::connect(format!(
        "http://127.0.0.1:{port}"
    ))
    .await
    .unwrap();
    let members = c
        .member_list(oxcd_proto::etcdserverpb::MemberListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].name, "filenode");
    assert!(data.join("member/wal").exists());
    let _ = child.kill();
    let _ = child.wait();
}
