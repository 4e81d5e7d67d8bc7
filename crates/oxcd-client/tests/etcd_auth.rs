//! Auth against a real etcd 3.4 (`etcd` on PATH, or `ETCD_BIN`): log in, re-authenticate
//! when the token expires and when the auth store's revision moves, permission errors.
//!
//! Uses ports 24280-24281. Without an etcd binary the test says so and passes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use oxcd_client::{
    Client, ConnectOptions, ErrorKind, GetOptions, Permission, PutOptions, WatchOptions,
};

const CLIENT_PORT: u16 = 24280;
const PEER_PORT: u16 = 24281;

/// A running etcd, killed on drop.
struct Etcd(Child);

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn etcd_binary() -> Option<String> {
    if let Ok(bin) = std::env::var("ETCD_BIN") {
        return Some(bin);
    }
    let found = Command::new("etcd").arg("--version").output().ok()?;
    found.status.success().then(|| "etcd".to_string())
}

/// Starts etcd with JWT auth tokens that live 2 seconds (JWTs carry the auth store's
/// revision, so a changed store makes them "old") and waits for its "ready" log line.
fn start_etcd(bin: &str, dir: &std::path::Path) -> Etcd {
    let secret = dir.join("jwt-secret");
    std::fs::write(&secret, "a test secret for HS256").expect("write jwt secret");
    let client = format!("http://127.0.0.1:{CLIENT_PORT}");
    let peer = format!("http://127.0.0.1:{PEER_PORT}");
    let mut child = Command::new(bin)
        .arg("--name=auth")
        .arg(format!("--data-dir={}", dir.join("data").display()))
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=auth={peer}"))
        .arg(format!(
            "--auth-token=jwt,priv-key={},sign-method=HS256,ttl=2s",
            secret.display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn etcd");
    let stderr = child.stderr.take().expect("stderr");
    let etcd = Etcd(child);
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("etcd exited; log:\n{}", seen.join("\n")))
            .expect("read etcd log");
        if line.contains("ready to serve client requests") {
            break;
        }
        seen.push(line);
    }
    // Keep draining the log so etcd never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    etcd
}

#[tokio::test]
async fn re_authenticates_on_expired_tokens_and_old_auth_revisions() {
    let Some(bin) = etcd_binary() else {
        eprintln!("skipped: no etcd binary (set ETCD_BIN or put etcd 3.4 on PATH)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let _etcd = start_etcd(&bin, dir.path());
    let endpoint = format!("127.0.0.1:{CLIENT_PORT}");

    let admin = Client::connect([&endpoint]).await.unwrap();
    let auth = admin.auth();
    auth.user_add("root", Some("rootpw")).await.unwrap();
    auth.user_grant_role("root", "root").await.unwrap();
    auth.role_add("app").await.unwrap();
    auth.role_grant_permission("app", Permission::read_write("a/").with_prefix())
        .await
        .unwrap();
    auth.user_add("alice", Some("alicepw")).await.unwrap();
    auth.user_grant_role("alice", "app").await.unwrap();
    auth.enable().await.unwrap();

    // Without a token etcd refuses with "user name is empty".
    let anonymous = admin.kv().get("a/1", GetOptions::new()).await.unwrap_err();
    assert_eq!(anonymous.kind(), ErrorKind::UserEmpty, "{anonymous}");

    let wrong = Client::connect_with(
        [&endpoint],
        ConnectOptions::new().with_user("alice", "nope"),
    )
    .await
    .unwrap_err();
    assert_eq!(wrong.kind(), ErrorKind::AuthFailed, "{wrong}");

    let options = ConnectOptions::new().with_user("alice", "alicepw");
    let alice = Client::connect_with([&endpoint], options).await.unwrap();
    let root = Client::connect_with(
        [&endpoint],
        ConnectOptions::new().with_user("root", "rootpw"),
    )
    .await
    .unwrap();
    alice
        .kv()
        .put("a/1", "one", PutOptions::new())
        .await
        .unwrap();
    let denied = alice
        .kv()
        .put("b", "x", PutOptions::new())
        .await
        .unwrap_err();
    assert_eq!(denied.kind(), ErrorKind::PermissionDenied, "{denied}");

    // The auth store's revision moves: alice's token is old, the client logs in again.
    root.auth().user_add("bob", Some("bobpw")).await.unwrap();
    alice
        .kv()
        .put("a/2", "two", PutOptions::new())
        .await
        .unwrap();

    // Tokens live 2 s here; past that the server says "invalid auth token".
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let got = alice
        .kv()
        .get("a/", GetOptions::new().with_prefix())
        .await
        .unwrap();
    assert_eq!(got.kvs.len(), 2);

    // Streams carry the token too.
    let mut watch = alice
        .watch()
        .watch("a/", WatchOptions::new().with_prefix())
        .await
        .unwrap();
    alice
        .kv()
        .put("a/3", "three", PutOptions::new())
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("an event")
        .expect("open")
        .expect("no error");
    assert_eq!(event.events[0].kv.as_ref().unwrap().key, b"a/3");
}
