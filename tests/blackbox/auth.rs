//! Auth over the wire: enabling it, users and roles, permissions on every path, tokens
//! (simple with expiry, JWT with the auth revision), etcd's codes and texts.

use std::time::Duration;

use oxcd_proto::authpb::{permission::Type as PermType, Permission, UserAddOptions};
use oxcd_proto::etcdserverpb::auth_client::AuthClient;
use oxcd_proto::etcdserverpb::kv_client::KvClient;
use oxcd_proto::etcdserverpb::watch_client::WatchClient;
use oxcd_proto::etcdserverpb::{
    compare, watch_request, AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest,
    AuthRoleGetRequest, AuthRoleGrantPermissionRequest, AuthStatusRequest, AuthUserAddRequest,
    AuthUserDeleteRequest, AuthUserGetRequest, AuthUserGrantRoleRequest, AuthUserListRequest,
    AuthUserRevokeRoleRequest, AuthenticateRequest, CompactionRequest, Compare, PutRequest,
    RangeRequest, TxnRequest, WatchCreateRequest, WatchRequest,
};
use tonic::transport::Channel;
use tonic::{Code, Request};

use crate::harness::Server;

/// A request carrying `token` in etcd's `token` metadata.
fn with<T>(token: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("token", token.parse().unwrap());
    r
}

fn assert_status<T: std::fmt::Debug>(r: Result<T, tonic::Status>, code: Code, text: &str) {
    let e = r.expect_err("the call should fail");
    assert_eq!((e.code(), e.message()), (code, text), "{e:?}");
}

async fn auth_client(s: &Server) -> AuthClient<Channel> {
    AuthClient::connect(s.endpoint()).await.unwrap()
}

async fn add_user(a: &mut AuthClient<Channel>, token: Option<&str>, name: &str, pw: &str) {
    let msg = AuthUserAddRequest {
        name: name.into(),
        password: pw.into(),
        ..Default::default()
    };
    match token {
        Some(t) => a.user_add(with(t, msg)).await.unwrap(),
        None => a.user_add(msg).await.unwrap(),
    };
}

async fn login(a: &mut AuthClient<Channel>, name: &str, pw: &str) -> String {
    a.authenticate(AuthenticateRequest {
        name: name.into(),
        password: pw.into(),
    })
    .await
    .unwrap()
    .into_inner()
    .token
}

/// root (role root), role `app` with READWRITE on prefix `app/` and READ on key `conf`,
/// user `alice` with role `app`; auth enabled.
async fn set_up(s: &Server) -> AuthClient<Channel> {
    let mut a = auth_client(s).await;
    assert_status(
        a.auth_enable(AuthEnableRequest {}).await,
        Code::FailedPrecondition,
        "etcdserver: root user does not exist",
    );
    add_user(&mut a, None, "root", "rootpw").await;
    assert_status(
        a.auth_enable(AuthEnableRequest {}).await,
        Code::FailedPrecondition,
        "etcdserver: root user does not have root role",
    );
    a.user_grant_role(AuthUserGrantRoleRequest {
        user: "root".into(),
        role: "root".into(),
    })
    .await
    .unwrap();
    a.role_add(AuthRoleAddRequest { name: "app".into() })
        .await
        .unwrap();
    for (typ, key, end) in [
        (PermType::Readwrite, &b"app/"[..], &b"app0"[..]),
        (PermType::Read, b"conf", b""),
    ] {
        a.role_grant_permission(AuthRoleGrantPermissionRequest {
            name: "app".into(),
            perm: Some(Permission {
                perm_type: typ as i32,
                key: key.to_vec(),
                range_end: end.to_vec(),
            }),
        })
        .await
        .unwrap();
    }
    add_user(&mut a, None, "alice", "alicepw").await;
    a.user_grant_role(AuthUserGrantRoleRequest {
        user: "alice".into(),
        role: "app".into(),
    })
    .await
    .unwrap();
    a.auth_enable(AuthEnableRequest {}).await.unwrap();
    a
}

fn put(key: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: b"v".to_vec(),
        ..Default::default()
    }
}

#[tokio::test]
async fn users_roles_and_permissions_on_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        dir.path(),
        crate::harness::free_port(),
        crate::harness::free_port(),
        &["--bcrypt-cost=4"],
    );
    let mut a = set_up(&s).await;
    let mut kv: KvClient<Channel> = s.kv().await;

    assert_status(
        kv.put(put("app/x")).await,
        Code::InvalidArgument,
        "etcdserver: user name is empty",
    );
    assert_status(
        a.authenticate(AuthenticateRequest {
            name: "alice".into(),
            password: "wrong".into(),
        })
        .await,
        Code::InvalidArgument,
        "etcdserver: authentication failed, invalid user ID or password",
    );
    assert_status(
        a.authenticate(AuthenticateRequest {
            name: "nobody".into(),
            password: "x".into(),
        })
        .await,
        Code::InvalidArgument,
        "etcdserver: authentication failed, invalid user ID or password",
    );
    assert_status(
        kv.put(with("bogus.1", put("app/x"))).await,
        Code::Unauthenticated,
        "etcdserver: invalid auth token",
    );

    let alice = login(&mut a, "alice", "alicepw").await;
    let root = login(&mut a, "root", "rootpw").await;
    kv.put(with(&alice, put("app/x"))).await.unwrap();
    let denied = |r| assert_status(r, Code::PermissionDenied, "etcdserver: permission denied");
    denied(kv.put(with(&alice, put("other"))).await.map(|_| ()));
    denied(kv.put(with(&alice, put("conf"))).await.map(|_| ()));
    kv.put(with(&root, put("conf"))).await.unwrap();
    // Reads: the whole range must be covered.
    let range = |key: &str, end: &str| RangeRequest {
        key: key.into(),
        range_end: end.into(),
        ..Default::default()
    };
    let r = kv.range(with(&alice, range("app/", "app0"))).await.unwrap();
    assert_eq!(r.into_inner().kvs.len(), 1);
    kv.range(with(&alice, range("conf", ""))).await.unwrap();
    denied(kv.range(with(&alice, range("app/", "b"))).await.map(|_| ()));
    denied(kv.range(with(&alice, range("a", "\0"))).await.map(|_| ()));
    // A txn: each compare, read and write.
    let txn = |cmp_key: &str, put_key: &str| TxnRequest {
        compare: vec![Compare {
            key: cmp_key.into(),
            target: compare::CompareTarget::Version as i32,
            result: compare::CompareResult::Greater as i32,
            ..Default::default()
        }],
        success: vec![oxcd_proto::etcdserverpb::RequestOp {
            request: Some(oxcd_proto::etcdserverpb::request_op::Request::RequestPut(
                put(put_key),
            )),
        }],
        failure: vec![],
    };
    kv.txn(with(&alice, txn("conf", "app/y"))).await.unwrap();
    denied(
        kv.txn(with(&alice, txn("secret", "app/y")))
            .await
            .map(|_| ()),
    );
    denied(kv.txn(with(&alice, txn("app/x", "conf"))).await.map(|_| ()));
    // Admin operations need root.
    denied(
        kv.compact(with(
            &alice,
            CompactionRequest {
                revision: 1,
                physical: false,
            },
        ))
        .await
        .map(|_| ()),
    );
    denied(
        a.user_list(with(&alice, AuthUserListRequest {}))
            .await
            .map(|_| ()),
    );
    let users = a
        .user_list(with(&root, AuthUserListRequest {}))
        .await
        .unwrap();
    assert_eq!(users.into_inner().users, vec!["alice", "root"]);
    // A user reads itself and the roles it holds.
    let me = a
        .user_get(with(
            &alice,
            AuthUserGetRequest {
                name: "alice".into(),
            },
        ))
        .await
        .unwrap();
    assert_eq!(me.into_inner().roles, vec!["app"]);
    a.role_get(with(&alice, AuthRoleGetRequest { role: "app".into() }))
        .await
        .unwrap();
    denied(
        a.user_get(with(
            &alice,
            AuthUserGetRequest {
                name: "root".into(),
            },
        ))
        .await
        .map(|_| ()),
    );
    // Root stays root.
    assert_status(
        a.user_delete(with(
            &root,
            AuthUserDeleteRequest {
                name: "root".into(),
            },
        ))
        .await,
        Code::InvalidArgument,
        "etcdserver: invalid auth management",
    );
    assert_status(
        a.user_revoke_role(with(
            &root,
            AuthUserRevokeRoleRequest {
                name: "root".into(),
                role: "root".into(),
            },
        ))
        .await,
        Code::InvalidArgument,
        "etcdserver: invalid auth management",
    );
    // Watch: READ over the range at creation.
    let mut w = WatchClient::connect(s.endpoint()).await.unwrap();
    let create = |key: &str| WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: key.into(),
                ..Default::default()
            },
        )),
    };
    let reqs = futures::stream::iter(vec![create("secret"), create("app/x")]);
    let mut stream = w.watch(with(&alice, reqs)).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(first.canceled && first.created, "{first:?}");
    assert_eq!(
        first.cancel_reason,
        "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
    );
    let second = stream.message().await.unwrap().unwrap();
    assert!(second.created && !second.canceled, "{second:?}");

    // A user without a password cannot authenticate.
    a.user_add(with(
        &root,
        AuthUserAddRequest {
            name: "svc".into(),
            options: Some(UserAddOptions { no_password: true }),
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    let e = a
        .authenticate(AuthenticateRequest {
            name: "svc".into(),
            password: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unknown, "{e:?}");

    let st = a
        .auth_status(AuthStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(st.enabled);
    assert!(st.auth_revision > 1);
    // Non-root cannot disable; root can, and then anyone writes.
    denied(
        a.auth_disable(with(&alice, AuthDisableRequest {}))
            .await
            .map(|_| ()),
    );
    let root = login(&mut a, "root", "rootpw").await;
    a.auth_disable(with(&root, AuthDisableRequest {}))
        .await
        .unwrap();
    kv.put(put("other")).await.unwrap();
}

#[tokio::test]
async fn auth_state_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::harness::free_port();
    let peer = crate::harness::free_port();
    let s = Server::start_with(dir.path(), port, peer, &["--bcrypt-cost=4"]);
    let mut a = set_up(&s).await;
    let _ = login(&mut a, "alice", "alicepw").await;
    s.terminate();
    let s = Server::start_with(dir.path(), port, peer, &["--bcrypt-cost=4"]);
    let mut a = auth_client(&s).await;
    let alice = login(&mut a, "alice", "alicepw").await;
    let mut kv = s.kv().await;
    kv.put(with(&alice, put("app/after"))).await.unwrap();
    assert_status(
        kv.put(put("app/after")).await,
        Code::InvalidArgument,
        "etcdserver: user name is empty",
    );
}

#[tokio::test]
async fn simple_tokens_expire_unless_used() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        dir.path(),
        crate::harness::free_port(),
        crate::harness::free_port(),
        &["--bcrypt-cost=4", "--auth-token-ttl=2"],
    );
    let mut a = set_up(&s).await;
    let mut kv = s.kv().await;
    let used = login(&mut a, "alice", "alicepw").await;
    let idle = login(&mut a, "alice", "alicepw").await;
    // The TTL counts from the last use: a token used every 500 ms outlives it.
    for _ in 0..8 {
        kv.put(with(&used, put("app/k"))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    kv.put(with(&used, put("app/k"))).await.unwrap();
    assert_status(
        kv.put(with(&idle, put("app/k"))).await,
        Code::Unauthenticated,
        "etcdserver: invalid auth token",
    );
}

#[tokio::test]
async fn jwt_tokens_carry_the_auth_revision() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("jwt.key");
    std::fs::write(&key, b"a shared secret of the cluster").unwrap();
    let opt = format!(
        "--auth-token=jwt,priv-key={},sign-method=HS256,ttl=10m",
        key.display()
    );
    let data = dir.path().join("data");
    let s = Server::start_with(
        &data,
        crate::harness::free_port(),
        crate::harness::free_port(),
        &["--bcrypt-cost=4", &opt],
    );
    let mut a = set_up(&s).await;
    let mut kv = s.kv().await;
    let alice = login(&mut a, "alice", "alicepw").await;
    assert_eq!(alice.split('.').count(), 3, "a JWT: {alice}");
    kv.put(with(&alice, put("app/1"))).await.unwrap();
    // Any change of the auth store makes older tokens stale.
    let root = login(&mut a, "root", "rootpw").await;
    a.role_add(with(
        &root,
        AuthRoleAddRequest {
            name: "other".into(),
        },
    ))
    .await
    .unwrap();
    assert_status(
        kv.put(with(&alice, put("app/1"))).await,
        Code::InvalidArgument,
        "etcdserver: revision of auth store is old",
    );
    let fresh = login(&mut a, "alice", "alicepw").await;
    kv.put(with(&fresh, put("app/1"))).await.unwrap();
    // A token signed with another key is refused.
    let mut forged = fresh.clone();
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    assert_status(
        kv.put(with(&forged, put("app/1"))).await,
        Code::Unauthenticated,
        "etcdserver: invalid auth token",
    );
}

/// A minimal HTTP/1.1 POST with an optional `Authorization` header: status and body.
async fn post(port: u16, path: &str, token: Option<&str>, body: &str) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let auth = token
        .map(|t| format!("Authorization: {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let (_, rest) = out.split_once("\r\n\r\n").unwrap();
    (
        status,
        serde_json::from_str(rest).unwrap_or_else(|e| panic!("{e}: {rest}")),
    )
}

#[tokio::test]
async fn the_gateway_takes_the_token_from_authorization() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        dir.path(),
        crate::harness::free_port(),
        crate::harness::free_port(),
        &["--bcrypt-cost=4"],
    );
    set_up(&s).await;
    let (status, body) = post(
        s.port,
        "/v3/auth/authenticate",
        None,
        r#"{"name":"alice","password":"alicepw"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    // app/x and v, base64.
    let put = r#"{"key":"YXBwL3g=","value":"dg=="}"#;
    let (status, body) = post(s.port, "/v3/kv/put", Some(&token), put).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(s.port, "/v3/kv/put", None, put).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (400, Some("etcdserver: user name is empty"))
    );
    let other = r#"{"key":"b3RoZXI=","value":"dg=="}"#;
    let (status, body) = post(s.port, "/v3/kv/put", Some(&token), other).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (403, Some("etcdserver: permission denied"))
    );
    let (status, body) = post(s.port, "/v3/auth/user/list", Some(&token), "{}").await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = post(s.port, "/v3/auth/status", None, "{}").await;
    assert_eq!((status, body["enabled"].as_bool()), (200, Some(true)));
}
