//! Client listeners: binding `--listen-client-urls` (before anything touches the data, so a
//! port in use fails fast), and serving each: HTTP/1.1 and HTTP/2 (gRPC) on the same port,
//! with the HTTP/2 flow-control windows chosen for gRPC streams of small messages.
//!
//! # Why not `axum::serve`
//!
//! `axum::serve` builds hyper's connection builder itself, with hyper's default HTTP/2
//! windows (1 MiB per stream, 1 MiB per connection). Since 0.4.16, h2 closes a connection
//! with `GOAWAY ENHANCE_YOUR_CALM` ("too_many_data_frames") once the DATA frames it has
//! received but the application has not read yet cost more than a *budget* of half the
//! connection window: a frame with a payload of `L < 256` bytes is charged `256 - L` bytes
//! while it waits. A `LeaseKeepAliveRequest` is a 15-byte gRPC message in a 15-byte DATA
//! frame, so about 2,200 unread keep-alives exhaust 512 KiB, while a 1 MiB stream window lets
//! a client have some 70,000 of them in flight. A client renewing many leases back to back
//! on one stream (Go `clientv3` with 10,000 leases) therefore lost its connection as soon as
//! the server fell a few milliseconds behind. etcd (grpc-go) has no such limit; its flow
//! control starts at 64 KiB per stream.
//!
//! hyper does not expose h2's budget, but the budget follows the connection window. So we
//! serve with a 64 KiB stream window (etcd's, the HTTP/2 default) and an 8 MiB connection
//! window: a single stream can then hold at most 65,535 / 5 unread frames (5 bytes is the
//! smallest gRPC message) — 3.3 MB of charge against a 4 MiB budget — so no single stream,
//! however fast its client, can trip the guard; flow control stops the client first. Only
//! many streams flooding tiny frames at once (what the guard is for) still can.
//!
//! # TLS
//!
//! An `https://` listener is served with a [`TlsAcceptor`](crate::tls::TlsAcceptor): each
//! accepted connection does its handshake in its own task (a slow or failing client holds
//! up no one), and the verified client certificate's common name is put in the extensions
//! of every request on that connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::url_text;
use crate::grpc::direct::{UnaryCallFuture, UnaryServices};
use crate::metrics;
use crate::metrics::network::Counted;
use crate::tls::TlsAcceptor;
use crate::tls_identity::ClientCertCommonName;

use crate::StartError;

/// HTTP/2 stream flow-control window: the protocol's default, and grpc-go's (etcd's) initial
/// window. Large requests (up to `--max-request-bytes`) still flow; the client waits for a
/// WINDOW_UPDATE every 32 KiB, which costs nothing measurable on a LAN.
pub const STREAM_WINDOW: u32 = 65_535;

/// HTTP/2 connection flow-control window. h2 allows half of it as the budget for unread small
/// DATA frames, which must exceed what one stream's window admits (see the module docs).
pub const CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;

/// The HTTP/2 settings etcd takes as flags (`--grpc-keepalive-interval`,
/// `--grpc-keepalive-timeout`, `--max-concurrent-streams`).
#[derive(Debug, Clone, Copy)]
pub struct Http2Limits {
    /// Ping an idle connection this often (`None`: never).
    pub keepalive_interval: Option<Duration>,
    /// Close the connection when a ping goes unanswered this long.
    pub keepalive_timeout: Duration,
    /// Streams one connection may have open at once.
    pub max_concurrent_streams: u32,
}

impl Http2Limits {
    /// The limits the configuration asks for.
    pub fn of(cfg: &crate::config::Config) -> Http2Limits {
        Http2Limits {
            keepalive_interval: cfg.grpc_keepalive_interval,
            keepalive_timeout: cfg.grpc_keepalive_timeout,
            max_concurrent_streams: cfg.max_concurrent_streams,
        }
    }
}

/// Whether a listener's gRPC message bytes are counted as client traffic
/// (`etcd_network_client_grpc_*_bytes_total`): the client listeners' are, the peer and
/// metrics listeners' are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// Client URLs: counted.
    Client,
    /// Peer or metrics URLs: not counted.
    Other,
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `stop` turns true, then
/// shuts the open connections down gracefully (HTTP/2 GOAWAY, in-flight requests finish)
/// and returns once they are closed. Accepted TCP connections get `TCP_NODELAY`: small gRPC
/// frames must leave at once (with Nagle's algorithm on, a client's delayed ACK holds each
/// response back ~40 ms). HTTP/1.1 upgrades are served: the peer port's raft streams are
/// upgraded connections (`oxcd_peer::router`); no client-port route accepts one.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    mut stop: watch::Receiver<bool>,
    limits: Http2Limits,
    tls: Option<TlsAcceptor>,
    traffic: Traffic,
    unary: Option<UnaryServices>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http2()
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.keepalive_interval)
        .keep_alive_timeout(limits.keepalive_timeout)
        // gRPC answers carry no `date` (grpc-go, hence etcd, sends none): hyper would read
        // the clock and encode the header on every response. HTTP/1.1 (the JSON gateway)
        // keeps it, as Go's net/http sends it.
        .auto_date_header(false);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (tcp, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: keep serving the open connections
                // and try again shortly instead of spinning.
                tracing::warn!(error = %e, "cannot accept a client connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY on a client connection");
        }
        let mut service = Connection {
            inner: app.clone(),
            addr: ClientAddr(remote),
            cn: None,
            count: traffic == Traffic::Client,
            unary: unary.clone(),
        };
        let Some(acceptor) = &tls else {
            let conn = builder
                .serve_connection_with_upgrades(
                    TokioIo::new(tcp),
                    TowerToHyperService::new(service),
                )
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "client connection ended with an error");
                }
            });
            continue;
        };
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        let builder = builder.clone();
        tokio::spawn(async move {
            let Some((stream, cn)) = acceptor.accept(tcp, remote).await else {
                return;
            };
            service.cn = cn;
            let conn = builder
                .serve_connection_with_upgrades(
                    TokioIo::new(stream),
                    TowerToHyperService::new(service),
                )
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "client connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The address of the client a request came from, in each request's extensions (failed
/// authentications are slowed down per address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// One connection's service: puts the connection's [`ClientAddr`] (and a TLS client
/// certificate's common name) into each request's extensions, and on client listeners
/// counts the gRPC message bytes of each request and response
/// ([`metrics::network::Counted`]: no allocation, an atomic add per data frame). Unary
/// gRPC calls go straight to their service when `unary` is set ([`crate::grpc::direct`]),
/// everything else through the router.
#[derive(Clone)]
struct Connection {
    inner: Router,
    addr: ClientAddr,
    cn: Option<ClientCertCommonName>,
    count: bool,
    unary: Option<UnaryServices>,
}

/// A response whose gRPC message bytes are counted (or not).
type CountedResponse = axum::http::Response<Counted<axum::body::Body>>;

/// Turns the router's answer into a [`CountedResponse`].
type MapResponse =
    fn(Result<axum::response::Response, Infallible>) -> Result<CountedResponse, Infallible>;

fn count_response(
    resp: Result<axum::response::Response, Infallible>,
) -> Result<CountedResponse, Infallible> {
    resp.map(|r| {
        let counter =
            metrics::network::is_grpc(r.headers()).then_some(&metrics::network::CLIENT_SENT_BYTES);
        r.map(|b| Counted::new(b, counter))
    })
}

fn pass_response(
    resp: Result<axum::response::Response, Infallible>,
) -> Result<CountedResponse, Infallible> {
    resp.map(|r| r.map(|b| Counted::new(b, None)))
}

/// Turns a direct-lane answer into a [`CountedResponse`].
type MapUnary = fn(axum::http::Response<tonic::body::Body>) -> Result<CountedResponse, Infallible>;

fn count_unary(
    resp: axum::http::Response<tonic::body::Body>,
) -> Result<CountedResponse, Infallible> {
    Ok(resp.map(|b| {
        Counted::new(
            axum::body::Body::new(b),
            Some(&metrics::network::CLIENT_SENT_BYTES),
        )
    }))
}

fn pass_unary(
    resp: axum::http::Response<tonic::body::Body>,
) -> Result<CountedResponse, Infallible> {
    Ok(resp.map(|b| Counted::new(axum::body::Body::new(b), None)))
}

impl<B> tower::Service<axum::http::Request<B>> for Connection
where
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + Unpin + 'static,
    B::Error: Into<axum::BoxError> + Send + 'static,
{
    type Response = CountedResponse;
    type Error = Infallible;
    type Future = futures::future::Either<
        futures::future::Map<UnaryCallFuture, MapUnary>,
        futures::future::Map<
            <Router as tower::Service<axum::http::Request<Counted<B>>>>::Future,
            MapResponse,
        >,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        <Router as tower::Service<axum::http::Request<Counted<B>>>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut req: axum::http::Request<B>) -> Self::Future {
        req.extensions_mut().insert(self.addr);
        if let Some(cn) = &self.cn {
            req.extensions_mut().insert(cn.clone());
        }
        let counted = self.count && metrics::network::is_grpc(req.headers());
        let counter = counted.then_some(&metrics::network::CLIENT_RECEIVED_BYTES);
        let req = req.map(|b| Counted::new(b, counter));
        if let Some(unary) = &mut self.unary {
            if let Some(taken) = unary.take(&req) {
                let map: MapUnary = if self.count { count_unary } else { pass_unary };
                let call = unary.call(taken, req);
                return futures::future::Either::Left(futures::FutureExt::map(call, map));
            }
        }
        let map: MapResponse = if self.count {
            count_response
        } else {
            pass_response
        };
        futures::future::Either::Right(futures::FutureExt::map(self.inner.call(req), map))
    }
}

/// Binds every address of `urls`, the value of `flag` (`--listen-client-urls` or
/// `--listen-peer-urls`); a host name may give several. Each comes with its description
/// and whether its URL is `https://`.
pub async fn bind_listeners(
    urls: &[url::Url],
    flag: &str,
    default_port: u16,
) -> Result<Vec<(String, TcpListener, bool)>, StartError> {
    let mut out = Vec::new();
    for url in urls {
        let text = url_text(url);
        let host = url.host_str().unwrap_or("localhost");
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = url.port().unwrap_or(default_port);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|source| StartError::Listen {
                url: text.clone(),
                source,
                hint: format!("use an IP address or a resolvable host name in {flag}"),
            })?
            .collect();
        let mut bound_any = false;
        let mut last_err = None;
        for addr in addrs {
            match TcpListener::bind(addr).await {
                Ok(l) => {
                    out.push((format!("{text} ({addr})"), l, url.scheme() == "https"));
                    bound_any = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    return Err(StartError::Listen {
                        url: text,
                        source: e,
                        hint: format!("another process (an etcd or oxcd?) uses this port; stop it or pass a free port in {flag}"),
                    });
                }
                // `localhost` may resolve to ::1 on hosts without IPv6: one address is enough.
                Err(e) => last_err = Some(e),
            }
        }
        if !bound_any {
            return Err(StartError::Listen {
                url: text,
                source: last_err.unwrap_or_else(|| std::io::Error::other("no address")),
                hint: "check that the address belongs to this machine".into(),
            });
        }
    }
    Ok(out)
}
