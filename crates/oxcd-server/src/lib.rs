//! oxcd-server: the `oxcd` binary's adapters around [`oxcd_core`]. Its one job is to put the
//! core on the network the way etcd is: flags and config file ([`config`]), client
//! listeners ([`net`]), the gRPC services ([`grpc`], one thin adapter per etcd service) and
//! the HTTP endpoints ([`http`]), and the composition root.
//!
//! [`run`] is the whole life of a server process: lock the data dir, bind the client
//! listeners, start the core, serve gRPC and HTTP on the same port, and shut down cleanly
//! on SIGINT/SIGTERM.

pub mod config;
pub mod gateway;
pub mod grpc;
pub mod http;
pub mod import;
pub mod metrics;
pub mod net;
pub mod tls;
pub mod tls_identity;

pub use oxcd_core::version;

use std::sync::Arc;

use oxcd_core::{ClusterSpec, Core, CoreConfig, DataDir, EtcdServer};
use oxcd_proto::etcdserverpb::watch_server::WatchServer;
use thiserror::Error;
use tonic::service::interceptor::InterceptedService;

use crate::config::{url_text, Config};

/// gRPC allows this much beyond `--max-request-bytes` for message framing, as etcd does; the
/// server itself then refuses requests above the limit with "request is too large".
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Why the server could not start or had to stop, phrased for the operator.
#[derive(Debug, Error)]
pub enum StartError {
    /// The core (data dir, backend, raft, applier) failed.
    #[error(transparent)]
    Core(#[from] oxcd_core::StartError),
    /// The metrics registry could not be built.
    #[error("cannot set up metrics: {0}")]
    Metrics(String),
    /// A TLS certificate, key, CA or CRL cannot be used.
    #[error("{0}")]
    Tls(String),
    /// A listener could not be bound.
    #[error("cannot listen on {url}: {source}; {hint}")]
    Listen {
        /// The URL.
        url: String,
        /// The OS error.
        source: std::io::Error,
        /// What to do about it.
        hint: String,
    },
}

/// Runs a server until SIGINT/SIGTERM.
pub async fn run(cfg: Config) -> Result<(), StartError> {
    run_until(cfg, shutdown_signal()).await
}

/// Runs a server until `shutdown` completes.
pub async fn run_until(
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let mut cfg = cfg;
    for warning in &cfg.warnings {
        tracing::warn!("{warning}");
    }
    let data_dir = DataDir::new(cfg.data_dir.clone(), Some(cfg.wal_dir.clone()));
    data_dir.create()?;
    let _lock = data_dir.lock()?;
    // Every certificate is loaded and checked before anything is bound or started.
    let tls = TlsSetup::new(&mut cfg).map_err(StartError::Tls)?;
    let cfg = Arc::new(cfg);
    // Bind before touching raft so "port in use" fails fast and changes nothing.
    let listeners =
        net::bind_listeners(&cfg.listen_client_urls, "--listen-client-urls", 2379).await?;
    let peer_listeners =
        net::bind_listeners(&cfg.listen_peer_urls, "--listen-peer-urls", 2380).await?;
    let metrics_listeners =
        net::bind_listeners(&cfg.listen_metrics_urls, "--listen-metrics-urls", 2381).await?;
    let mut core_cfg = core_config(&cfg);
    core_cfg.peer_tls = tls.peer_dial.clone();
    let mut core = Core::start(core_cfg, &data_dir).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut serving = Vec::new();
    // Peers are served at once: the cluster needs this member before it can serve clients.
    let peer_app = oxcd_peer::router(core.peer_handler());
    for (url, listener, secure) in peer_listeners {
        tracing::info!(address = %url, "serving peer traffic");
        serving.push(tokio::spawn(net::serve(
            listener,
            peer_app.clone(),
            stop_rx.clone(),
            net::Http2Limits::of(&cfg),
            tls.peer.clone().filter(|_| secure),
            net::Traffic::Other,
            None,
        )));
    }
    let level = if cfg.metrics_extensive {
        metrics::Level::Extensive
    } else {
        metrics::Level::Basic
    };
    let metrics = metrics::Metrics::new(core.server().clone(), level)
        .map_err(|e| StartError::Metrics(e.to_string()))?;
    metrics
        .register(Box::new(tls.failures.clone()))
        .map_err(|e| StartError::Metrics(e.to_string()))?;
    if let Some(stats) = core.peer_handler().peer_stats() {
        metrics
            .register_peers(stats)
            .map_err(|e| StartError::Metrics(e.to_string()))?;
    }
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    // Not serving until the member has a leader (the follower task below decides).
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    // A route of its own: a second tonic router could not be merged (both have fallbacks).
    let (app, unary) = router(core.server().clone(), &cfg, &metrics);
    let app = app.merge(
        axum::Router::new()
            .route_service("/grpc.health.v1.Health/{*method}", health_service)
            .layer(axum::middleware::from_fn_with_state(
                metrics.grpc.clone(),
                metrics::grpc::record,
            )),
    );
    // `/metrics` and `/health` on --listen-metrics-urls at once, as etcd serves them: a member
    // waiting for its peers says there which it cannot reach.
    let metrics_app = metrics_router(core.server().clone(), &metrics);
    for (url, listener, secure) in metrics_listeners {
        tracing::info!(address = %url, "serving /metrics and /health");
        serving.push(tokio::spawn(net::serve(
            listener,
            metrics_app.clone(),
            stop_rx.clone(),
            net::Http2Limits::of(&cfg),
            tls.metrics.clone().filter(|_| secure),
            net::Traffic::Other,
            None,
        )));
    }
    // Like etcd, clients are served once this member has joined the cluster's log.
    let mut shutdown = std::pin::pin!(shutdown);
    let ready = core.ready();
    let serve = tokio::select! {
        _ = ready => true,
        _ = &mut shutdown => false,
        _ = core.failure() => false,
    };
    if !serve {
        let _ = stop_tx.send(true);
        return Ok(core.shutdown().await?);
    }
    // A member whose data differs from its peers' must not serve it.
    if let Err(e) = core.initial_corrupt_check().await {
        let _ = stop_tx.send(true);
        let _ = core.shutdown().await;
        return Err(e.into());
    }

    tokio::spawn(metrics.clone().run_leader_sampler(stop_rx.clone()));
    tokio::spawn(grpc::health::follow_leader(
        health_reporter,
        core.server().clone(),
        stop_rx.clone(),
    ));
    for (url, listener, secure) in listeners {
        tracing::info!(address = %url, "ready to serve client requests");
        serving.push(tokio::spawn(net::serve(
            listener,
            app.clone(),
            stop_rx.clone(),
            net::Http2Limits::of(&cfg),
            tls.client.clone().filter(|_| secure),
            net::Traffic::Client,
            Some(unary.clone()),
        )));
    }
    // A WAL or backend failure stops raft or the applier; the process must not linger as a
    // server that can no longer write, so that ends it too.
    tokio::select! {
        _ = &mut shutdown => tracing::info!("shutting down"),
        _ = core.failure() => {}
    }
    let _ = stop_tx.send(true);
    for s in serving {
        // Connections that stay open (watch streams) must not hold shutdown forever.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), s).await;
    }
    core.shutdown().await?;
    tracing::info!("stopped");
    Ok(())
}

/// The TLS side of the listeners and the peer dialer, built (files loaded and checked) before
/// anything starts.
struct TlsSetup {
    /// For `https://` client URLs.
    client: Option<tls::TlsAcceptor>,
    /// For `https://` metrics URLs (the client certificate, counted apart).
    metrics: Option<tls::TlsAcceptor>,
    /// For `https://` peer URLs.
    peer: Option<tls::TlsAcceptor>,
    /// How `https://` peers are dialled.
    peer_dial: oxcd_peer::PeerTls,
    /// `oxcd_tls_handshake_failures_total`.
    failures: prometheus::IntCounterVec,
}

impl TlsSetup {
    /// Resolves auto TLS (files under the data dir) and loads every certificate.
    fn new(cfg: &mut Config) -> Result<TlsSetup, String> {
        let hosts = |urls: &[url::Url]| -> Vec<String> {
            urls.iter()
                .filter_map(|u| u.host_str().map(str::to_string))
                .collect()
        };
        let validity = cfg.tls_common.self_signed_cert_validity;
        let client_hosts = hosts(&cfg.listen_client_urls);
        tls::resolve_auto_tls(
            &mut cfg.client_tls,
            tls::Side::Client,
            &cfg.data_dir,
            &client_hosts,
            validity,
        )?;
        let peer_hosts = hosts(&cfg.listen_peer_urls);
        tls::resolve_auto_tls(
            &mut cfg.peer_tls,
            tls::Side::Peer,
            &cfg.data_dir,
            &peer_hosts,
            validity,
        )?;
        let failures = tls::handshake_failures().map_err(|e| e.to_string())?;
        let https = |urls: &[url::Url]| urls.iter().any(|u| u.scheme() == "https");
        let mut setup = TlsSetup {
            client: None,
            metrics: None,
            peer: None,
            peer_dial: oxcd_peer::PeerTls::Plain,
            failures,
        };
        // As etcd, certificates are used (and so checked) only where an https:// URL needs
        // them.
        if !cfg.client_tls.is_empty()
            && (https(&cfg.listen_client_urls) || https(&cfg.listen_metrics_urls))
        {
            let config = tls::server_config(&cfg.client_tls, &cfg.tls_common, tls::Side::Client)?;
            tls::check_client_pair(&cfg.client_tls, &cfg.tls_common)?;
            if https(&cfg.listen_client_urls) {
                tracing::info!(
                    cert_file = %cfg.client_tls.cert_file,
                    trusted_ca_file = %cfg.client_tls.trusted_ca_file,
                    client_cert_auth = cfg.client_tls.client_cert_auth,
                    crl_file = %cfg.client_tls.crl_file,
                    cipher_suites = ?cfg.tls_common.cipher_suites,
                    "starting with client TLS"
                );
            }
            let acceptor = |side| {
                tls::TlsAcceptor::new(config.clone(), side, &cfg.client_tls, &setup.failures)
            };
            setup.client = Some(acceptor(tls::Side::Client));
            setup.metrics = Some(acceptor(tls::Side::Metrics));
        }
        let peer_urls: Vec<url::Url> = cfg.initial_cluster.values().flatten().cloned().collect();
        if !cfg.peer_tls.is_empty() && (https(&cfg.listen_peer_urls) || https(&peer_urls)) {
            let config = tls::server_config(&cfg.peer_tls, &cfg.tls_common, tls::Side::Peer)?;
            tracing::info!(
                cert_file = %cfg.peer_tls.cert_file,
                trusted_ca_file = %cfg.peer_tls.trusted_ca_file,
                client_cert_auth = cfg.peer_tls.client_cert_auth,
                crl_file = %cfg.peer_tls.crl_file,
                "starting with peer TLS"
            );
            setup.peer = Some(tls::TlsAcceptor::new(
                config,
                tls::Side::Peer,
                &cfg.peer_tls,
                &setup.failures,
            ));
            setup.peer_dial =
                oxcd_peer::PeerTls::Tls(tls::peer_client_config(&cfg.peer_tls, &cfg.tls_common)?);
        }
        Ok(setup)
    }
}

/// The core's part of the configuration.
fn core_config(cfg: &Config) -> CoreConfig {
    let urls = |v: &[url::Url]| v.iter().map(url_text).collect::<Vec<_>>();
    CoreConfig {
        name: cfg.name.clone(),
        heartbeat_interval: cfg.heartbeat_interval,
        election_timeout: cfg.election_timeout,
        snapshot_count: cfg.snapshot_count,
        max_request_bytes: cfg.max_request_bytes,
        max_txn_ops: cfg.max_txn_ops,
        quota_backend_bytes: cfg.quota_backend_bytes,
        lease_checkpoint_interval: cfg.lease_checkpoint_interval,
        strict_reconfig_check: cfg.strict_reconfig_check,
        auto_compaction: cfg.auto_compaction,
        initial_corrupt_check: cfg.initial_corrupt_check,
        corrupt_check_time: cfg.corrupt_check_time,
        auth_token: cfg.auth_token.clone(),
        auth_token_ttl: cfg.auth_token_ttl,
        bcrypt_cost: cfg.bcrypt_cost,
        cluster: ClusterSpec {
            initial_cluster: cfg
                .initial_cluster
                .iter()
                .map(|(name, u)| (name.clone(), urls(u)))
                .collect(),
            initial_cluster_token: cfg.initial_cluster_token.clone(),
            initial_advertise_peer_urls: urls(&cfg.initial_advertise_peer_urls),
            advertise_client_urls: urls(&cfg.advertise_client_urls),
            join_existing: cfg.initial_cluster_state == config::ClusterState::Existing,
        },
        peer_tls: oxcd_peer::PeerTls::Plain,
    }
}

/// `/metrics` alone.
fn metrics_route(metrics: &Arc<metrics::Metrics>) -> axum::Router {
    let metrics = metrics.clone();
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }
        }),
    )
}

/// What `--listen-metrics-urls` serve: `/metrics` and the health probes.
fn metrics_router(server: Arc<EtcdServer>, metrics: &Arc<metrics::Metrics>) -> axum::Router {
    metrics_route(metrics).merge(http::router(server))
}

/// gRPC services and HTTP endpoints on one router, so both share each client port; and the
/// same services' unary calls for the connections' direct lane ([`grpc::direct`]).
fn router(
    server: Arc<EtcdServer>,
    cfg: &Config,
    metrics: &Arc<metrics::Metrics>,
) -> (axum::Router, grpc::direct::UnaryServices) {
    let max = cfg.max_request_bytes as usize + GRPC_OVERHEAD_BYTES;
    let unary = grpc::direct::UnaryServices::new(server.clone(), metrics.grpc.clone(), max);
    let leader = || grpc::require_leader(server.clone());
    let routes = tonic::service::Routes::new(InterceptedService::new(unary.kv.clone(), leader()))
        .add_service(InterceptedService::new(unary.cluster.clone(), leader()))
        .add_service(InterceptedService::new(unary.maintenance.clone(), leader()))
        .add_service(InterceptedService::new(
            WatchServer::new(grpc::watch::WatchService::new(
                server.clone(),
                cfg.watch_progress_notify_interval,
                max,
            )),
            leader(),
        ))
        .add_service(InterceptedService::new(unary.lease.clone(), leader()))
        .add_service(InterceptedService::new(unary.auth.clone(), leader()))
        .add_service(unary.election.clone())
        .add_service(unary.lock.clone());
    let grpc = routes
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(
            metrics.grpc.clone(),
            metrics::grpc::record,
        ));
    let mut app = grpc.merge(metrics_router(server.clone(), metrics));
    if cfg.enable_grpc_gateway {
        let gateway = gateway::Gateway::new(
            server.clone(),
            grpc::watch::WatchService::new(server, cfg.watch_progress_notify_interval, max),
            max,
        );
        app = app.merge(gateway::router(gateway));
    }
    (app, unary)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
