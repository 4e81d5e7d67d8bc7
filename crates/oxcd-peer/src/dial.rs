//! Connecting to a peer URL: [`DialOptions`], the test-only address override and TLS for
//! `https://` peer URLs ([`PeerTls`]).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

use crate::PeerError;

/// Environment variable mapping peer URLs to the address actually dialled, **for tests
/// only**: `<peer-url>=<host:port>,...` (e.g.
/// `http://127.0.0.1:2380=127.0.0.1:9001,http://127.0.0.1:2381=127.0.0.1:9002`). A fault
/// harness gives each member process its own map, routing every directed link through a
/// proxy it controls. A warning is logged when it is set.
pub const DIAL_OVERRIDE_ENV: &str = "OXCD_PEER_DIAL_OVERRIDE";

/// How `https://` peer URLs are dialled (`http://` ones are always plain, as in etcd).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum PeerTls {
    /// No peer TLS configured: `https://` peer URLs cannot be dialled.
    #[default]
    Plain,
    /// TLS with this configuration (the server's `--peer-*` flags: CA, client certificate).
    Tls(Arc<rustls::ClientConfig>),
}

/// Where a peer URL is actually dialled.
pub(crate) struct Target {
    /// `http://host:port`, the override applied (TLS, if any, is done by the connector).
    pub uri: String,
    /// `host:port` to connect to.
    pub authority: String,
    /// TLS configuration and the name the peer's certificate must carry.
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

/// How to reach peers.
#[derive(Debug, Clone)]
pub struct DialOptions {
    /// Gives up connecting after this long (etcd's peer dial timeout is 1 s).
    pub connect_timeout: Duration,
    /// Ping interval of raft streams and HTTP/2 connections, idle or busy: a peer cut off
    /// without a reset (a black hole) is noticed after this plus
    /// [`DialOptions::keepalive_timeout`].
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered.
    pub keepalive_timeout: Duration,
    /// Deadline of a single request (a forwarded lease call).
    pub request_timeout: Duration,
    /// Connection security.
    pub tls: PeerTls,
    /// Peer URL -> address dialled instead (see [`DIAL_OVERRIDE_ENV`]).
    pub dial_override: HashMap<String, String>,
}

impl Default for DialOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            keepalive_interval: Duration::from_secs(1),
            keepalive_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            tls: PeerTls::Plain,
            dial_override: HashMap::new(),
        }
    }
}

impl DialOptions {
    /// The defaults, with the override map read from [`DIAL_OVERRIDE_ENV`] if set.
    pub fn from_env() -> Result<Self, PeerError> {
        let mut opts = Self::default();
        if let Ok(spec) = std::env::var(DIAL_OVERRIDE_ENV) {
            opts.dial_override = parse_override(&spec)?;
            tracing::warn!(
                variable = DIAL_OVERRIDE_ENV,
                links = opts.dial_override.len(),
                "peer addresses are overridden: for tests only, never in production"
            );
        }
        Ok(opts)
    }

    /// Where peer URL `url` is dialled (the override applied) and how.
    pub(crate) fn target(&self, url: &str) -> Result<Target, PeerError> {
        let key = url.trim_end_matches('/');
        let (secure, rest) = if let Some(rest) = key.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = key.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(PeerError::Config(format!(
                "peer URL {url} must start with http:// or https://"
            )));
        };
        let host_port = rest.split('/').next().unwrap_or(rest);
        let authority = match self.dial_override.get(key) {
            Some(addr) => addr.clone(),
            None => host_port.to_string(),
        };
        let tls = if secure {
            let PeerTls::Tls(config) = &self.tls else {
                return Err(PeerError::Config(format!(
                    "peer URL {url} is https:// but this member has no peer TLS; pass --peer-cert-file, --peer-key-file and --peer-trusted-ca-file, or --peer-auto-tls"
                )));
            };
            let host = match host_port.rsplit_once(':') {
                Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
                _ => host_port,
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let name = ServerName::try_from(host.to_string())
                .map_err(|e| PeerError::Config(format!("peer URL {url}: {e}")))?;
            Some((config.clone(), name))
        } else {
            None
        };
        Ok(Target {
            uri: format!("http://{authority}"),
            authority,
            tls,
        })
    }

    /// An endpoint for `url`, with the override applied.
    pub(crate) fn endpoint(&self, url: &str) -> Result<(Endpoint, Target), PeerError> {
        let target = self.target(url)?;
        let ep = Endpoint::from_shared(target.uri.clone())
            .map_err(|e| PeerError::Config(format!("peer URL {url}: {e}")))?;
        Ok((
            ep.connect_timeout(self.connect_timeout)
                .http2_keep_alive_interval(self.keepalive_interval)
                .keep_alive_timeout(self.keepalive_timeout)
                .keep_alive_while_idle(true)
                .tcp_nodelay(true),
            target,
        ))
    }

    /// Connects to the first of `urls` that answers.
    pub(crate) async fn connect(&self, urls: &[String]) -> Result<Channel, PeerError> {
        let mut last = PeerError::Unreachable("no peer URL known".into());
        for url in urls {
            let (endpoint, target) = self.endpoint(url)?;
            let connected = match target.tls {
                None => endpoint.connect().await,
                Some((config, name)) => {
                    endpoint
                        .connect_with_connector(TlsConnector { config, name })
                        .await
                }
            };
            match connected {
                Ok(ch) => return Ok(ch),
                Err(e) => {
                    last = PeerError::Unreachable(format!("{url}: {}", error_chain(&e)));
                }
            }
        }
        Err(last)
    }
}

/// A connection to a peer for HTTP/1.1 (a request, or a raft stream's upgrade): plain TCP
/// or TLS, with `TCP_NODELAY` (a raft stream's small frames must leave at once).
pub(crate) enum Io {
    /// `http://` peer URLs.
    Plain(TokioIo<TcpStream>),
    /// `https://` peer URLs.
    Tls(Box<TlsIo>),
}

impl Io {
    /// Sends `req` on this connection with HTTP/1.1 and returns the answer's head and body
    /// stream (`url` names the peer in errors). The connection is driven until the answer
    /// is read or, when `req` asked for an upgrade that was granted, handed over.
    pub(crate) async fn send_http1(
        self,
        url: &str,
        req: hyper::Request<axum::body::Body>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, PeerError> {
        match self {
            Io::Plain(io) => send_http1(io, url, req).await,
            Io::Tls(io) => send_http1(*io, url, req).await,
        }
    }
}

async fn send_http1<I>(
    io: I,
    url: &str,
    req: hyper::Request<axum::body::Body>,
) -> Result<hyper::Response<hyper::body::Incoming>, PeerError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let unreachable = |e: &dyn std::fmt::Display| PeerError::Unreachable(format!("{url}: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    sender.send_request(req).await.map_err(|e| unreachable(&e))
}

impl DialOptions {
    /// Connects to peer URL `url` (the override applied, TLS for `https://`) within the
    /// connect timeout; also returns the `host:port` dialled, for the `Host` header.
    pub(crate) async fn connect_io(&self, url: &str) -> Result<(Io, String), PeerError> {
        let target = self.target(url)?;
        let authority = target.authority.clone();
        let connect = async {
            match target.tls {
                None => {
                    let tcp = TcpStream::connect(authority.as_str()).await?;
                    tcp.set_nodelay(true)?;
                    Ok::<_, std::io::Error>(Io::Plain(TokioIo::new(tcp)))
                }
                Some((config, name)) => Ok(Io::Tls(Box::new(
                    tls_connect(&authority, config, name).await?,
                ))),
            }
        };
        let unreachable = |e: &dyn std::fmt::Display| PeerError::Unreachable(format!("{url}: {e}"));
        let io = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|e| unreachable(&e))?
            .map_err(|e| unreachable(&e))?;
        Ok((io, authority))
    }
}

/// TCP, then a TLS handshake, for tonic's HTTP/2 connections to `https://` peers.
#[derive(Clone)]
struct TlsConnector {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

/// A TLS connection to a peer.
pub(crate) type TlsIo = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

/// Connects to `authority` and does the TLS handshake.
pub(crate) async fn tls_connect(
    authority: &str,
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
) -> std::io::Result<TlsIo> {
    let tcp = TcpStream::connect(authority).await?;
    tcp.set_nodelay(true)?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    Ok(TokioIo::new(stream))
}

impl tower::Service<hyper::Uri> for TlsConnector {
    type Response = TlsIo;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<TlsIo>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: hyper::Uri) -> Self::Future {
        let config = self.config.clone();
        let name = self.name.clone();
        Box::pin(async move {
            let authority = uri
                .authority()
                .map(|a| a.to_string())
                .ok_or_else(|| std::io::Error::other(format!("{uri} has no host")))?;
            tls_connect(&authority, config, name).await
        })
    }
}

/// An error with its sources, `a: b: c` (tonic's transport errors say little at the top).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Parses `<peer-url>=<host:port>,...`.
fn parse_override(spec: &str) -> Result<HashMap<String, String>, PeerError> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (url, addr) = pair.rsplit_once('=').ok_or_else(|| {
                PeerError::Config(format!(
                    "{DIAL_OVERRIDE_ENV}: {pair:?} is not <peer-url>=<host:port>"
                ))
            })?;
            if !url.starts_with("http") || addr.is_empty() || addr.contains('/') {
                return Err(PeerError::Config(format!(
                    "{DIAL_OVERRIDE_ENV}: {pair:?} is not <peer-url>=<host:port>"
                )));
            }
            Ok((url.trim_end_matches('/').to_string(), addr.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_override_is_read_from_the_environment() {
        // No other test reads this variable.
        std::env::set_var(DIAL_OVERRIDE_ENV, "http://10.0.0.1:2380=127.0.0.1:9009");
        let opts = DialOptions::from_env();
        std::env::set_var(DIAL_OVERRIDE_ENV, "nonsense");
        let bad = DialOptions::from_env();
        std::env::remove_var(DIAL_OVERRIDE_ENV);
        assert_eq!(
            opts.unwrap().dial_override["http://10.0.0.1:2380"],
            "127.0.0.1:9009"
        );
        assert!(matches!(bad, Err(PeerError::Config(_))));
        assert!(DialOptions::from_env().unwrap().dial_override.is_empty());
    }

    #[test]
    fn the_override_maps_peer_urls_to_proxy_addresses() {
        let map = parse_override(
            "http://127.0.0.1:2380/=127.0.0.1:9001, http://10.0.0.2:2380=127.0.0.1:9002",
        )
        .unwrap();
        assert_eq!(map["http://127.0.0.1:2380"], "127.0.0.1:9001");
        assert_eq!(map["http://10.0.0.2:2380"], "127.0.0.1:9002");
        let opts = DialOptions {
            dial_override: map,
            ..DialOptions::default()
        };
        assert_eq!(
            opts.endpoint("http://127.0.0.1:2380").unwrap().0.uri(),
            "http://127.0.0.1:9001/"
        );
        assert_eq!(
            opts.endpoint("http://127.0.0.1:2390").unwrap().0.uri(),
            "http://127.0.0.1:2390/"
        );
        assert!(parse_override("http://a:1").is_err());
        assert!(parse_override("http://a:1=h:1/x").is_err());
        assert!(parse_override("a=b").is_err());
        assert!(matches!(
            opts.endpoint("https://127.0.0.1:2380"),
            Err(PeerError::Config(_))
        ));
    }
}
