//! Rust and Go services find each other: a registration made by oxcd-client is seen by etcd's
//! Go `naming/endpoints` Manager (a clientv3 prefix watch), and a Go service publishing in
//! go-zero's layout is discovered by oxcd-client. Rust and Go also share a lock.
//!
//! Needs etcd 3.4 (`etcd` on PATH, or `ETCD_BIN`; ports 24282-24283) and Go with etcd's
//! clientv3 sources in GOPATH `/usr/share/gocode` (Debian's golang-etcd-server-dev, or
//! `GOCODE`). Without them the test says so and passes. The lock test uses ports 24292-24293.

// A test binary: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use futures::StreamExt;
use oxcd_client::{Client, KeyLayout, Mutex, ServiceChange, ServiceInstance, Session};

use common::{etcd_binary, start_etcd};

const CLIENT_PORT: u16 = 24282;

/// The Go program, built once per test process; `None` without Go or clientv3.
fn build_go_program() -> Option<PathBuf> {
    static BUILT: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    BUILT.get_or_init(build).clone()
}

/// Builds tests/go_interop/main.go (GOPATH mode); `None` without Go or clientv3.
fn build() -> Option<PathBuf> {
    let gocode = std::env::var("GOCODE").unwrap_or_else(|_| "/usr/share/gocode".into());
    if !Path::new(&gocode)
        .join("src/go.etcd.io/etcd/clientv3")
        .is_dir()
    {
        return None;
    }
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("go_interop");
    std::fs::create_dir_all(&work).ok()?;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go_interop/main.go");
    std::fs::copy(&source, work.join("main.go")).ok()?;
    let binary = work.join("interop");
    let status = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg("main.go")
        .current_dir(&work)
        .env("GO111MODULE", "off")
        .env("GOPATH", &gocode)
        .env("GOFLAGS", "")
        .env("GOCACHE", work.join("gocache"))
        .status()
        .ok()?;
    assert!(status.success(), "go build of {} failed", source.display());
    Some(binary)
}

/// A running Go program and its output lines, killed on drop.
struct GoProgram {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl GoProgram {
    fn start(binary: &Path, args: &[&str]) -> GoProgram {
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the Go program");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        GoProgram { child, lines }
    }

    /// Closes the program's stdin (its signal to stop).
    fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }
}

impl Drop for GoProgram {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The next output line of `program`, waited for off the async runtime's other tasks.
async fn next_line(program: &mut GoProgram) -> String {
    tokio::task::block_in_place(|| program.lines.recv_timeout(Duration::from_secs(30)))
        .expect("a line from the Go program in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_and_go_services_find_each_other() {
    let Some(etcd_bin) = etcd_binary() else {
        eprintln!("skipped: no etcd binary (set ETCD_BIN or put etcd 3.4 on PATH)");
        return;
    };
    let Some(go) = build_go_program() else {
        eprintln!("skipped: no etcd clientv3 Go sources (set GOCODE)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etcd = start_etcd(&etcd_bin, dir.path(), CLIENT_PORT, &[]);
    let client = Client::connect([&etcd.endpoint]).await.unwrap();

    // Go's naming/endpoints Manager sees a Rust registration come and go.
    let mut resolver = GoProgram::start(&go, &["resolve", &etcd.endpoint, "greeter"]);
    assert_eq!(next_line(&mut resolver).await, "watching");
    let registration = client
        .register(ServiceInstance::new("greeter", "10.1.1.1:9000").with_metadata("zone", "z1"))
        .await
        .unwrap();
    assert_eq!(
        next_line(&mut resolver).await,
        r#"Add greeter/10.1.1.1:9000 10.1.1.1:9000 {"zone":"z1"}"#
    );
    registration.deregister().await.unwrap();
    assert_eq!(
        next_line(&mut resolver).await,
        "Delete greeter/10.1.1.1:9000"
    );

    // A Go service publishing as go-zero does is discovered, and leaves on revoke.
    let mut orders = client.discover("order.rpc").await.unwrap();
    let mut publisher = GoProgram::start(
        &go,
        &["publish", &etcd.endpoint, "order.rpc", "10.2.2.2:8080"],
    );
    let published = next_line(&mut publisher).await;
    let key = published
        .strip_prefix("published ")
        .unwrap_or_else(|| panic!("unexpected Go output {published:?}"))
        .to_string();
    let change = tokio::time::timeout(Duration::from_secs(10), orders.next())
        .await
        .expect("discovered in time")
        .expect("open")
        .unwrap();
    let ServiceChange::Up(instance) = change else {
        panic!("expected an instance, got {change:?}")
    };
    assert_eq!(instance.key, key);
    assert_eq!(instance.address, "10.2.2.2:8080");
    assert_eq!(instance.layout, KeyLayout::GoZero);

    publisher.close_stdin();
    assert_eq!(next_line(&mut publisher).await, "revoked");
    let change = tokio::time::timeout(Duration::from_secs(10), orders.next())
        .await
        .expect("departure in time")
        .expect("open")
        .unwrap();
    assert_eq!(change, ServiceChange::Down { key });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_waits_for_a_lock_held_by_go() {
    let Some(etcd_bin) = etcd_binary() else {
        eprintln!("skipped: no etcd binary (set ETCD_BIN or put etcd 3.4 on PATH)");
        return;
    };
    let Some(go) = build_go_program() else {
        eprintln!("skipped: no etcd clientv3 Go sources (set GOCODE)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etcd = start_etcd(&etcd_bin, dir.path(), CLIENT_PORT + 10, &[]);
    let client = Client::connect([&etcd.endpoint]).await.unwrap();

    let mut holder = GoProgram::start(&go, &["lock", &etcd.endpoint, "jobs/nightly"]);
    let locked = next_line(&mut holder).await;
    assert!(locked.starts_with("locked jobs/nightly/"), "{locked}");

    let session = Session::new(&client, 10).await.unwrap();
    let mut mutex = Mutex::new(&session, "jobs/nightly");
    let (acquired_tx, mut acquired) = tokio::sync::oneshot::channel();
    let waiter = tokio::spawn(async move {
        mutex.lock().await.unwrap();
        let _ = acquired_tx.send(());
        mutex
    });
    // Go holds it: the Rust candidate waits behind Go's key.
    let waiting = tokio::time::timeout(Duration::from_secs(2), &mut acquired).await;
    assert!(waiting.is_err(), "Rust took a lock Go holds");

    holder.close_stdin();
    assert_eq!(next_line(&mut holder).await, "unlocked");
    tokio::time::timeout(Duration::from_secs(10), acquired)
        .await
        .expect("Rust gets the lock once Go unlocks")
        .unwrap();
    let mut mutex = waiter.await.unwrap();
    assert_eq!(
        mutex.key(),
        format!("jobs/nightly/{:x}", session.lease_id()).as_bytes()
    );
    mutex.unlock().await.unwrap();
}
