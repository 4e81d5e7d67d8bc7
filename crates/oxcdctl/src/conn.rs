//! The connection to the cluster: endpoints, dial and command timeouts, authentication and
//! the metadata every request carries.
//!
//! This is the one place that talks to tonic's transport, so that it can be replaced by the
//! `oxcd-client` crate later: commands only use [`Connection::unary`], [`Session::request`]
//! and the typed client constructors.

use std::future::Future;
use std::time::Duration;

use oxcd_proto::etcdserverpb::auth_client::AuthClient;
use oxcd_proto::etcdserverpb::AuthenticateRequest;
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::error::RpcError;
use crate::golog;

/// How to reach the cluster, from the global flags.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionConfig {
    /// Endpoints as given (`host:port` or URLs).
    pub endpoints: Vec<String>,
    /// Time allowed to establish a connection.
    pub dial_timeout: Duration,
    /// Time allowed to a short command (`--command-timeout`).
    pub command_timeout: Duration,
    /// User name and password, if `--user` was given.
    pub credentials: Option<(String, String)>,
    /// etcdctl's `cfg.TLS`, from `--cert`, `--key`, `--cacert`, `--insecure-transport` and
    /// `--insecure-skip-tls-verify` (see [`crate::tls`]); `None`: plain text, except for
    /// `https://` endpoints.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// A connected channel plus the auth token to send with each request.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The gRPC channel.
    pub channel: Channel,
    token: Option<String>,
}

impl Session {
    /// Wraps a message into a request that carries the auth token, if any.
    pub(crate) fn request<M>(&self, message: M) -> tonic::Request<M> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            if let Ok(value) = token.parse() {
                request.metadata_mut().insert("token", value);
            }
        }
        request
    }
}

/// A lazily dialed connection to the cluster.
#[derive(Debug)]
pub(crate) struct Connection {
    config: ConnectionConfig,
    session: OnceCell<Session>,
    client_uuid: String,
    passthrough: bool,
}

/// Largest message accepted from the server (etcd's client accepts any size).
const MAX_MESSAGE: usize = usize::MAX;

/// A typed tonic client on a session's channel with etcd's message size limits.
macro_rules! client_ctor {
    ($name:ident, $ty:ty, $doc:literal) => {
        #[doc = $doc]
        pub(crate) fn $name(session: &Session) -> $ty {
            <$ty>::new(session.channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE)
        }
    };
}

use oxcd_proto::etcdserverpb::cluster_client::ClusterClient;
use oxcd_proto::etcdserverpb::kv_client::KvClient;
use oxcd_proto::etcdserverpb::lease_client::LeaseClient;
use oxcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd_proto::etcdserverpb::watch_client::WatchClient;

client_ctor!(kv, KvClient<Channel>, "The KV service.");
client_ctor!(watch, WatchClient<Channel>, "The Watch service.");
client_ctor!(lease, LeaseClient<Channel>, "The Lease service.");
client_ctor!(cluster, ClusterClient<Channel>, "The Cluster service.");
client_ctor!(
    maintenance,
    MaintenanceClient<Channel>,
    "The Maintenance service."
);
client_ctor!(auth, AuthClient<Channel>, "The Auth service.");

impl Connection {
    /// A connection that dials on first use.
    pub(crate) fn new(config: ConnectionConfig) -> Self {
        Connection {
            config,
            session: OnceCell::new(),
            client_uuid: golog::random_uuid(),
            passthrough: false,
        }
    }

    /// The configuration.
    pub(crate) fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    /// The same configuration with other endpoints (for per-endpoint commands).
    pub(crate) fn with_endpoints(&self, endpoints: Vec<String>) -> Connection {
        Connection::new(ConnectionConfig {
            endpoints,
            ..self.config.clone()
        })
    }

    /// A connection to one endpoint for a maintenance call on it (clientv3's
    /// `Status(ctx, endpoint)` and the like, which dial that endpoint directly).
    pub(crate) fn for_endpoint(&self, endpoint: &str) -> Connection {
        Connection {
            passthrough: true,
            ..self.with_endpoints(vec![endpoint.to_string()])
        }
    }

    /// The session, dialing the endpoints in order on first use.
    pub(crate) async fn session(&self) -> Result<Session, RpcError> {
        self.session.get_or_try_init(|| self.dial()).await.cloned()
    }

    async fn dial(&self) -> Result<Session, RpcError> {
        let mut last = RpcError::Unreachable {
            endpoint: String::new(),
            cause: "no endpoints".into(),
        };
        for endpoint in &self.config.endpoints {
            // clientv3's processCreds: http:// is plain, https:// is TLS (the system's roots
            // when no flag configured it), a bare host:port follows the flags.
            let (url, tls) = if let Some(rest) = endpoint.strip_prefix("https://") {
                let config = self
                    .config
                    .tls
                    .clone()
                    .unwrap_or_else(crate::tls::default_https_config);
                (format!("http://{rest}"), Some(config))
            } else if endpoint.contains("://") {
                (endpoint.clone(), None)
            } else {
                (endpoint_url(endpoint), self.config.tls.clone())
            };
            let built = match Endpoint::from_shared(url) {
                Ok(e) => e
                    .connect_timeout(self.config.dial_timeout)
                    .tcp_nodelay(true),
                Err(e) => {
                    last = RpcError::Unreachable {
                        endpoint: endpoint.clone(),
                        cause: e.to_string(),
                    };
                    continue;
                }
            };
            let connector = match &tls {
                None => None,
                Some(config) => {
                    let host = strip_scheme(endpoint).split('/').next().unwrap_or_default();
                    match crate::tls::server_name(host) {
                        Ok(name) => Some(crate::tls::TlsConnector {
                            config: config.clone(),
                            name,
                        }),
                        Err(cause) => {
                            last = RpcError::Unreachable {
                                endpoint: endpoint.clone(),
                                cause,
                            };
                            continue;
                        }
                    }
                }
            };
            let connect = async {
                match connector {
                    None => built.connect().await,
                    Some(connector) => built.connect_with_connector(connector).await,
                }
            };
            match tokio::time::timeout(self.config.dial_timeout, connect).await {
                Ok(Ok(channel)) => {
                    let token = self.authenticate(&channel).await?;
                    return Ok(Session { channel, token });
                }
                Ok(Err(e)) => {
                    last = unreachable(endpoint, &e);
                }
                Err(_) => {
                    last = RpcError::Unreachable {
                        endpoint: endpoint.clone(),
                        cause: format!("no answer within {:?}", self.config.dial_timeout),
                    };
                }
            }
        }
        Err(last)
    }

    async fn authenticate(&self, channel: &Channel) -> Result<Option<String>, RpcError> {
        let Some((name, password)) = &self.config.credentials else {
            return Ok(None);
        };
        let session = Session {
            channel: channel.clone(),
            token: None,
        };
        let request = AuthenticateRequest {
            name: name.clone(),
            password: password.clone(),
        };
        let answer = tokio::time::timeout(
            self.config.dial_timeout.max(self.config.command_timeout),
            auth(&session).authenticate(request),
        )
        .await;
        match answer {
            Err(_) => Err(RpcError::DeadlineExceeded),
            Ok(Err(status)) => {
                let error = RpcError::from_status(&status);
                self.log_failed_unary(&error);
                Err(RpcError::Auth(Box::new(error)))
            }
            Ok(Ok(response)) => Ok(Some(response.into_inner().token)),
        }
    }

    /// One unary call with the command timeout (`None`: no timeout, as etcdctl's
    /// `context.TODO()` calls); a failure the server reports is logged as clientv3's retry
    /// interceptor does.
    pub(crate) async fn unary<T, F, Fut>(
        &self,
        timeout: Option<Duration>,
        call: F,
    ) -> Result<T, RpcError>
    where
        F: FnOnce(Session) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = timeout.map(|t| Instant::now() + t);
        let work = async {
            let session = self.session().await?;
            match call(session).await {
                Ok(response) => Ok(response.into_inner()),
                Err(status) => {
                    let error = classify(&status, &self.config.endpoints, self.secure());
                    if matches!(error, RpcError::Status { .. }) {
                        self.log_failed_unary(&error);
                    }
                    Err(error)
                }
            }
        };
        match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, work)
                .await
                .unwrap_or(Err(RpcError::DeadlineExceeded)),
            None => work.await,
        }
    }

    /// Whether calls go over TLS (clientv3's choice for the first endpoint).
    fn secure(&self) -> bool {
        match self.config.endpoints.first() {
            Some(e) if e.starts_with("https://") => true,
            Some(e) if e.contains("://") => false,
            _ => self.config.tls.is_some(),
        }
    }

    /// The command timeout.
    pub(crate) fn command_timeout(&self) -> Option<Duration> {
        Some(self.config.command_timeout)
    }

    /// clientv3's warning after a failed unary call, on stderr.
    pub(crate) fn log_failed_unary(&self, error: &RpcError) {
        let first = self
            .config
            .endpoints
            .first()
            .map(String::as_str)
            .unwrap_or_default();
        let target = if self.passthrough {
            format!("passthrough:///{first}")
        } else {
            format!(
                "endpoint://client-{}/{}",
                self.client_uuid,
                strip_scheme(first)
            )
        };
        golog::warn_retrying_unary(&target, &error.grpc_text());
    }
}

/// A status from the transport (the server went away) becomes "unreachable" (or a TLS
/// failure); others keep the server's code and message.
fn classify(status: &tonic::Status, endpoints: &[String], secure: bool) -> RpcError {
    use std::error::Error as _;
    let endpoint = endpoints.first().cloned().unwrap_or_default();
    // With TLS 1.3 a server refuses a client certificate after the client's side of the
    // handshake is done: the refusal arrives with the first call, whatever its code.
    let mut source = status.source();
    while let Some(s) = source {
        let tls = match s.downcast_ref::<std::io::Error>() {
            Some(io) => tls_cause(io),
            None => s.downcast_ref::<rustls::Error>().map(ToString::to_string),
        };
        if let Some(cause) = tls {
            return RpcError::TlsHandshake { endpoint, cause };
        }
        source = s.source();
    }
    let text = status.source().map(chain_text).unwrap_or_default();
    // The connection broke (hyper's error, or tonic's "operation was canceled" when the
    // connection task went away), as opposed to a status the server sent.
    let transport = text.contains("hyper::Error")
        || (status.code() == tonic::Code::Cancelled
            && status.message() == "operation was canceled");
    // The server dropped the connection right after the handshake (an alert that arrived
    // as a reset or a close): with TLS, a refused client certificate.
    if secure
        && transport
        && matches!(
            status.code(),
            tonic::Code::Cancelled | tonic::Code::Unknown | tonic::Code::Internal
        )
    {
        return RpcError::TlsHandshake {
            endpoint,
            cause: "the server closed the connection (was the client certificate refused?)".into(),
        };
    }
    if !secure
        && transport
        && matches!(
            status.code(),
            tonic::Code::Cancelled | tonic::Code::Unknown | tonic::Code::Internal
        )
    {
        return RpcError::Unreachable {
            endpoint,
            cause: "the connection broke before an HTTP/2 answer (does the server use TLS? then use an https:// endpoint and --cacert)".into(),
        };
    }
    if status.code() == tonic::Code::Unavailable && status.source().is_some() {
        let mut cause = status.message().to_string();
        let mut source = status.source();
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                cause = describe_io(io);
            }
            source = s.source();
        }
        return RpcError::Unreachable { endpoint, cause };
    }
    RpcError::from_status(status)
}

/// The error of a failed dial: a TLS failure, or the innermost cause.
fn unreachable(endpoint: &str, error: &tonic::transport::Error) -> RpcError {
    use std::error::Error as _;
    let mut source = error.source();
    while let Some(s) = source {
        if let Some(tls) = s.downcast_ref::<std::io::Error>().and_then(tls_cause) {
            return RpcError::TlsHandshake {
                endpoint: endpoint.to_string(),
                cause: tls,
            };
        }
        source = s.source();
    }
    RpcError::Unreachable {
        endpoint: endpoint.to_string(),
        cause: cause_of(error),
    }
}

/// The TLS error inside an I/O error, in words (tokio-rustls reports TLS failures, alerts
/// received included, as `InvalidData`).
fn tls_cause(io: &std::io::Error) -> Option<String> {
    match io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(e) => Some(e.to_string()),
        None if io.kind() == std::io::ErrorKind::InvalidData => Some(io.to_string()),
        None => None,
    }
}

/// An error and its sources, `a: b: c`.
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = format!("{e:?}");
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s:?}"));
        source = s.source();
    }
    text
}

/// The innermost cause of a transport error, in words.
fn cause_of(error: &tonic::transport::Error) -> String {
    use std::error::Error as _;
    let mut cause = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        cause = match s.downcast_ref::<std::io::Error>() {
            Some(io) => describe_io(io),
            None => s.to_string(),
        };
        source = s.source();
    }
    cause
}

fn describe_io(io: &std::io::Error) -> String {
    match io.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::TimedOut => "connection timed out".into(),
        _ => {
            let text = io.to_string();
            match text.find(" (os error") {
                Some(i) => text[..i].to_lowercase(),
                None => text,
            }
        }
    }
}

/// `host:port` → `http://host:port`; URLs stay as they are.
pub(crate) fn endpoint_url(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

/// `http://host:port` → `host:port`, as clientv3 names an endpoint in its target.
pub(crate) fn strip_scheme(endpoint: &str) -> &str {
    endpoint
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_a_scheme_and_lose_it_for_display() {
        assert_eq!(endpoint_url("127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(endpoint_url("http://h:1"), "http://h:1");
        assert_eq!(strip_scheme("http://h:1"), "h:1");
        assert_eq!(strip_scheme("h:1"), "h:1");
    }

    #[tokio::test]
    async fn a_refused_connection_says_so() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let conn = Connection::new(ConnectionConfig {
            endpoints: vec![format!("127.0.0.1:{port}")],
            dial_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(5),
            credentials: None,
            tls: None,
        });
        let error = conn.session().await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("cannot reach 127.0.0.1:{port}: connection refused — is oxcd running?")
        );
    }
}
