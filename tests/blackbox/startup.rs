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
