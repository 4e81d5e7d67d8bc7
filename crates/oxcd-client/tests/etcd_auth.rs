//! Auth against a real etcd 3.4 (`etcd` on PATH, or `ETCD_BIN`): log in, re-authenticate
//! when the token expires and when the auth store's revision moves, permission errors.
//!
//! Uses ports 24280-24281. Without an etcd binary the test says so and passes.

// A test binary: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use futures::StreamExt;
use oxcd_client::{
    Client, ConnectOptions, ErrorKind, GetOptions, Permission, PutOptions, WatchOptions,
};

use common::{etcd_binary, start_etcd};

const CLIENT_PORT: u16 = 24280;

#[tokio::test]
async fn re_authenticates_on_expired_tokens_and_old_auth_revisions() {
    let Some(bin) = etcd_binary() else {
        eprintln!("skipped: no etcd binary (set ETCD_BIN or put etcd 3.4 on PATH)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // JWTs carry the auth store's revision, so a changed store makes them "old"; they live
    // 2 seconds here.
    let secret = dir.path().join("jwt-secret");
    std::fs::write(&secret, "a test secret for HS256").unwrap();
    let token = format!(
        "--auth-token=jwt,priv-key={},sign-method=HS256,ttl=2s",
        secret.display()
    );
    let etcd = start_etcd(&bin, dir.path(), CLIENT_PORT, &[token]);
    let endpoint = etcd.endpoint.clone();

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
