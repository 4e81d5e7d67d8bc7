//! The client's call policy against a scripted fake server (ports 24260-24266): which
//! failures are retried, what metadata goes out, when the client logs in again.

// A test binary: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxcd_client::{Client, ConnectOptions, ErrorKind, GetOptions, PutOptions};
use oxcd_proto::etcdserverpb::auth_server::{Auth, AuthServer};
use oxcd_proto::etcdserverpb::kv_server::{Kv, KvServer};
use oxcd_proto::etcdserverpb::{
    AuthenticateRequest, AuthenticateResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
};
use tonic::{Code, Request, Response, Status};

/// What the fake saw and what it answers next.
#[derive(Default)]
struct Script {
    /// Answers for the next calls (`None` = success); empty = success.
    failures: VecDeque<Option<Status>>,
    /// (method, `hasleader` metadata, `token` metadata) of every call.
    calls: Vec<(&'static str, Option<String>, Option<String>)>,
    /// Tokens handed out so far.
    logins: u32,
    /// Authenticate calls, answered or refused.
    login_attempts: u32,
    /// Tokens the KV service refuses as invalid.
    revoked_tokens: Vec<String>,
    /// Authenticate answers "authentication is not enabled".
    auth_disabled: bool,
    /// The KV service refuses calls without a token ("user name is empty").
    token_required: bool,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Script>>);

impl Fake {
    fn answer<T>(&self, method: &'static str, request: &Request<T>) -> Result<(), Status> {
        let metadata = |key: &str| {
            request
                .metadata()
                .get(key)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let mut script = self.0.lock().unwrap();
        let token = metadata("token");
        script
            .calls
            .push((method, metadata("hasleader"), token.clone()));
        if script.token_required && token.is_none() {
            return Err(Status::new(
                Code::InvalidArgument,
                "etcdserver: user name is empty",
            ));
        }
        if token.is_some_and(|t| script.revoked_tokens.contains(&t)) {
            return Err(Status::new(
                Code::Unauthenticated,
                "etcdserver: invalid auth token",
            ));
        }
        match script.failures.pop_front().flatten() {
            Some(status) => Err(status),
            None => Ok(()),
        }
    }

    fn calls(&self, method: &str) -> usize {
        let script = self.0.lock().unwrap();
        script.calls.iter().filter(|c| c.0 == method).count()
    }
}

#[tonic::async_trait]
impl Kv for Fake {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        self.answer("range", &request)?;
        Ok(Response::new(RangeResponse::default()))
    }
    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        self.answer("put", &request)?;
        Ok(Response::new(PutResponse::default()))
    }
}

#[tonic::async_trait]
impl Auth for Fake {
    async fn authenticate(
        &self,
        _request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let mut script = self.0.lock().unwrap();
        script.login_attempts += 1;
        if script.auth_disabled {
            return Err(Status::new(
                Code::FailedPrecondition,
                "etcdserver: authentication is not enabled",
            ));
        }
        script.logins += 1;
        Ok(Response::new(AuthenticateResponse {
            header: None,
            token: format!("token-{}", script.logins),
        }))
    }
}

/// Serves `fake` on `port` and returns a client URL.
async fn serve(fake: Fake, port: u16) -> String {
    let (endpoint, stop) = serve_until_stopped(fake, port).await;
    std::mem::forget(stop);
    endpoint
}

/// Serves `fake` on `port` until the returned sender is used or dropped.
async fn serve_until_stopped(fake: Fake, port: u16) -> (String, tokio::sync::oneshot::Sender<()>) {
    let address: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let listener = tokio::net::TcpListener::bind(address).await.expect("bind");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(KvServer::new(fake.clone()))
            .add_service(AuthServer::new(fake))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async move {
                    let _ = stopped.await;
                },
            ),
    );
    (format!("127.0.0.1:{port}"), stop)
}

fn unavailable(text: &str) -> Option<Status> {
    Some(Status::new(Code::Unavailable, text))
}

#[tokio::test]
async fn reads_are_retried_on_unavailable_writes_are_not() {
    let fake = Fake::default();
    let endpoint = serve(fake.clone(), 24260).await;
    let client = Client::connect([endpoint]).await.unwrap();

    fake.0.lock().unwrap().failures = [
        unavailable("etcdserver: leader changed"),
        unavailable("etcdserver: no leader"),
    ]
    .into();
    client
        .kv()
        .get("k", GetOptions::new())
        .await
        .expect("read retried");
    assert_eq!(fake.calls("range"), 3);

    // The server answered: the write may have been applied, so it is not sent again.
    fake.0.lock().unwrap().failures = [unavailable("etcdserver: leader changed")].into();
    let error = client
        .kv()
        .put("k", "v", PutOptions::new())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::LeaderChanged);
    assert_eq!(fake.calls("put"), 1);

    // Errors that are not about availability are not retried, even for reads.
    fake.0.lock().unwrap().failures = [Some(Status::new(
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    ))]
    .into();
    let error = client.kv().get("k", GetOptions::new()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Compacted);
    assert_eq!(fake.calls("range"), 4);
}

#[tokio::test]
async fn a_read_gives_up_at_its_timeout() {
    let fake = Fake::default();
    let endpoint = serve(fake.clone(), 24261).await;
    let client = Client::connect([endpoint]).await.unwrap();
    fake.0.lock().unwrap().failures =
        std::iter::repeat_with(|| unavailable("etcdserver: no leader"))
            .take(1000)
            .collect();
    let started = std::time::Instant::now();
    let error = client
        .with_timeout(Duration::from_millis(500))
        .kv()
        .get("k", GetOptions::new())
        .await
        .unwrap_err();
    assert_eq!(
        error.kind(),
        ErrorKind::NoLeader,
        "the last cause, not a bare timeout"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(fake.calls("range") > 1);
}

#[tokio::test]
async fn require_leader_sends_etcds_hasleader_metadata() {
    let fake = Fake::default();
    let endpoint = serve(fake.clone(), 24262).await;
    let client = Client::connect([endpoint]).await.unwrap();
    client.kv().get("k", GetOptions::new()).await.unwrap();
    client
        .with_require_leader(true)
        .kv()
        .get("k", GetOptions::new())
        .await
        .unwrap();
    let (channel, request) = client
        .with_require_leader(true)
        .raw_request(RangeRequest::default())
        .await
        .unwrap();
    oxcd_proto::etcdserverpb::kv_client::KvClient::new(channel)
        .range(request)
        .await
        .unwrap();
    let calls = fake.0.lock().unwrap().calls.clone();
    assert_eq!(calls[0].1, None);
    assert_eq!(calls[1].1.as_deref(), Some("true"));
    assert_eq!(
        calls[2].1.as_deref(),
        Some("true"),
        "raw requests carry it too"
    );
}

#[tokio::test]
async fn an_invalid_token_means_logging_in_again_once() {
    let fake = Fake::default();
    let endpoint = serve(fake.clone(), 24263).await;
    let options = ConnectOptions::new().with_user("u", "p");
    let client = Client::connect_with([endpoint], options).await.unwrap();
    client.kv().put("k", "v", PutOptions::new()).await.unwrap();
    fake.0.lock().unwrap().revoked_tokens.push("token-1".into());
    // Even a write is sent again: the server refused it before doing anything.
    client.kv().put("k", "v", PutOptions::new()).await.unwrap();
    let script = fake.0.lock().unwrap();
    assert_eq!(script.logins, 2);
    let tokens: Vec<Option<&str>> = script.calls.iter().map(|c| c.2.as_deref()).collect();
    assert_eq!(
        tokens,
        vec![Some("token-1"), Some("token-1"), Some("token-2")]
    );
}

#[tokio::test]
async fn credentials_with_auth_off_ask_once_then_log_in_when_auth_is_turned_on() {
    let fake = Fake::default();
    fake.0.lock().unwrap().auth_disabled = true;
    let endpoint = serve(fake.clone(), 24266).await;
    let options = ConnectOptions::new().with_user("u", "p");
    let client = Client::connect_with([endpoint], options).await.unwrap();
    for _ in 0..3 {
        client.kv().get("k", GetOptions::new()).await.unwrap();
    }
    // Asked once at connect; calls since went without a token and without asking again.
    assert_eq!(fake.0.lock().unwrap().login_attempts, 1);
    assert!(fake.0.lock().unwrap().calls.iter().all(|c| c.2.is_none()));

    {
        let mut script = fake.0.lock().unwrap();
        script.auth_disabled = false;
        script.token_required = true;
    }
    client.kv().get("k", GetOptions::new()).await.unwrap();
    let script = fake.0.lock().unwrap();
    assert_eq!((script.login_attempts, script.logins), (2, 1));
    assert_eq!(script.calls.last().unwrap().2.as_deref(), Some("token-1"));
}

#[tokio::test]
async fn a_lost_endpoint_fails_over_to_the_next() {
    let first = Fake::default();
    let second = Fake::default();
    let (a, stop_a) = serve_until_stopped(first.clone(), 24264).await;
    let b = serve(second.clone(), 24265).await;
    let client = Client::connect([a, b]).await.unwrap();
    client.kv().get("k", GetOptions::new()).await.unwrap();
    assert_eq!((first.calls("range"), second.calls("range")), (1, 0));

    drop(stop_a);
    for _ in 0..3 {
        client
            .kv()
            .get("k", GetOptions::new())
            .await
            .expect("served by one of them");
    }
    // A call may still reach the first while it drains; after that the second serves.
    assert_eq!(first.calls("range") + second.calls("range"), 4);
    assert!(second.calls("range") >= 2, "no failover");

    let unreachable = Client::connect(["127.0.0.1:24264"]).await.unwrap_err();
    assert_eq!(unreachable.kind(), ErrorKind::Unavailable);
    assert!(
        unreachable
            .to_string()
            .starts_with("cannot reach http://127.0.0.1:24264"),
        "{unreachable}"
    );
}
