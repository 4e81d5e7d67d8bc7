//! The oxcd server: etcd's v3 API over a raft-replicated, MVCC key space.
//!
//! [`run`] is the whole life of a server process: lock the data dir, bind the client
//! listeners, open the store, start raft and the applier, serve gRPC and HTTP on the same
//! port, and shut down cleanly on SIGINT/SIGTERM.

pub mod apply;
pub mod cluster;
pub mod config;
pub mod error;
pub mod grpc;
pub mod http;
pub mod lease;
pub mod serve;
pub mod server;
pub mod version;
pub mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oxcd_mvcc::Store;
use oxcd_proto::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
    lease_server::LeaseServer, maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use oxcd_proto::v3electionpb::election_server::ElectionServer;
use oxcd_proto::v3lockpb::lock_server::LockServer;
use oxcd_raft::{RaftConfig, RaftNode};
use thiserror::Error;
use tokio::net::TcpListener;

use crate::apply::Applier;
use crate::cluster::Membership;
use crate::config::{url_text, Config};
use crate::server::{EtcdServer, Waiters};

/// gRPC allows this much beyond `--max-request-bytes` for message framing, as etcd does; the
/// server itself then refuses requests above the limit with "request is too large".
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Why the server could not start or had to stop, phrased for the operator.
#[derive(Debug, Error)]
pub enum StartError {
    /// The data dir cannot be created or written.
    #[error("cannot use data dir {path}: {source}; choose a writable --data-dir")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another process holds the data dir.
    #[error("data dir {0} is in use by another oxcd or etcd process; stop it or choose another --data-dir")]
    DataDirLocked(PathBuf),
    /// A listener could not be bound.
    #[error("cannot listen on {url}: {source}; {hint}")]
    Listen {
        /// The URL.
        url: String,
        /// The OS error.
        source: std::io::Error,
        /// What to do about it.
        hint: &'static str,
    },
    /// The MVCC store failed to open.
    #[error("cannot open the backend {path}: {reason}")]
    Store {
        /// The backend file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Raft (or its WAL) failed to start.
    #[error("cannot start raft: {0}")]
    Raft(String),
    /// The applier hit a fatal backend error.
    #[error("{0}")]
    Apply(String),
    /// Serving failed.
    #[error("server error: {0}")]
    Serve(String),
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
    let cfg = Arc::new(cfg);
    for warning in &cfg.warnings {
        tracing::warn!("{warning}");
    }
    let member_dir = cfg.data_dir.join("member");
    let snap_dir = member_dir.join("snap");
    for dir in [&cfg.data_dir, &member_dir, &snap_dir] {
        create_private_dir(dir)?;
    }
    let _lock = lock_data_dir(&member_dir)?;
    // Bind before touching raft so "port in use" fails fast and changes nothing.
    let listeners = bind_client_listeners(&cfg).await?;

    let membership =
        Membership::load_or_bootstrap(&cfg, &member_dir).map_err(|source| StartError::DataDir {
            path: member_dir.clone(),
            source,
        })?;
    tracing::info!(
        name = %cfg.name,
        member_id = %format!("{:x}", membership.local_id),
        cluster_id = %format!("{:x}", membership.cluster_id),
        data_dir = %cfg.data_dir.display(),
        version = version::OXCD_VERSION,
        "starting oxcd"
    );

    let db_path = snap_dir.join("db");
    let started = std::time::Instant::now();
    let store = Store::open(&db_path).map_err(|e| StartError::Store {
        path: db_path.clone(),
        reason: e.to_string(),
    })?;
    let store = Arc::new(store);
    tracing::info!(
        revision = store.current_revision(),
        consistent_index = store.consistent_index(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "opened backend"
    );

    let lessor = Arc::new(
        lease::Lessor::recover(
            &store,
            lease::Lessor::min_ttl_for(cfg.heartbeat_interval, cfg.election_ticks()),
            cfg.lease_checkpoint_interval,
        )
        .map_err(|e| StartError::Store {
            path: db_path.clone(),
            reason: e.to_string(),
        })?,
    );

    let (raft, committed) = RaftNode::start(RaftConfig {
        id: membership.local_id,
        peers: membership.voter_ids(),
        wal_dir: cfg.wal_dir.clone(),
        tick: cfg.heartbeat_interval,
        election_ticks: cfg.election_ticks(),
        heartbeat_ticks: 1,
        snapshot_count: cfg.snapshot_count,
        applied: store.consistent_index(),
    })
    .map_err(|e| StartError::Raft(e.to_string()))?;

    let waiters = Arc::new(Waiters::default());
    let hub = watch::Hub::new(store.clone());
    hub.spawn_sync();
    let (applied_tx, applied_rx) = tokio::sync::watch::channel(store.consistent_index());
    let applier = Applier {
        store: store.clone(),
        raft: raft.clone(),
        waiters: waiters.clone(),
        applied_tx,
        events: Some(Box::new({
            let hub = hub.clone();
            move |evs: Vec<oxcd_proto::mvccpb::Event>| hub.stage(evs)
        })),
        events_committed: Some(Box::new({
            let hub = hub.clone();
            move || hub.publish()
        })),
        lessor: lessor.clone(),
    };
    // The applier blocks on the backend, so it gets a thread of its own.
    let applier_thread = std::thread::Builder::new()
        .name("oxcd-apply".into())
        .spawn(move || {
            oxcd_raft::sched::prefer_batching_for_current_thread();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .map_err(|e| apply::FatalApplyError(e.to_string()))?;
            rt.block_on(applier.run(committed))
        })
        .map_err(|e| StartError::Apply(e.to_string()))?;

    let server = Arc::new(EtcdServer::new(
        cfg.clone(),
        membership,
        store,
        raft.clone(),
        waiters,
        applied_rx,
        lessor,
    ));
    let app = router(server.clone(), hub);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // A member that is leader already (a sole member is, once raft has started) promotes
    // its lessor before serving: a lease granted before the promotion would get the
    // election-timeout extension, as in etcd, and expire that much late. Later leadership
    // changes are the lessor loop's.
    if server.raft.status().is_leader {
        server.lessor.promote(cfg.election_timeout);
    }
    let lessor_loop = tokio::spawn(lease::run_lessor(server.clone(), stop_rx.clone()));
    let mut serving = Vec::new();
    for (url, listener) in listeners {
        tracing::info!(address = %url, "ready to serve client requests");
        serving.push(tokio::spawn(serve::serve(
            listener,
            app.clone(),
            stop_rx.clone(),
            serve::Http2Limits::of(&cfg),
        )));
    }
    let mut applier_done = tokio::task::spawn_blocking(move || applier_thread.join());
    // A WAL or backend failure stops raft or the applier; the process must not linger as a
    // server that can no longer write, so that ends it too.
    let died = tokio::select! {
        _ = shutdown => None,
        joined = &mut applier_done => Some(joined),
    };
    if died.is_none() {
        tracing::info!("shutting down");
    }
    let _ = stop_tx.send(true);
    for s in serving {
        // Connections that stay open (watch streams) must not hold shutdown forever.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), s).await;
    }
    let _ = lessor_loop.await;
    raft.shutdown();
    let unexpected = died.is_some();
    let joined = match died {
        Some(j) => j,
        None => applier_done.await,
    };
    match joined {
        Ok(Ok(Ok(()))) if unexpected => {
            return Err(StartError::Apply(
                "the raft node stopped (its error is logged above); restart oxcd to recover from the WAL".into(),
            ))
        }
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(StartError::Apply(e.to_string())),
        Ok(Err(_)) | Err(_) => return Err(StartError::Apply("applier thread panicked".into())),
    }
    tracing::info!("stopped");
    Ok(())
}

/// gRPC services and HTTP endpoints on one router, so both share each client port.
fn router(server: Arc<EtcdServer>, hub: Arc<watch::Hub>) -> axum::Router {
    let max = server.cfg.max_request_bytes as usize + GRPC_OVERHEAD_BYTES;
    let routes = tonic::service::Routes::new(
        KvServer::new(grpc::kv::KvService::new(server.clone())).max_decoding_message_size(max),
    )
    .add_service(ClusterServer::new(grpc::cluster::ClusterService::new(
        server.clone(),
    )))
    .add_service(MaintenanceServer::new(
        grpc::maintenance::MaintenanceService::new(server.clone()),
    ))
    .add_service(WatchServer::new(grpc::watch::WatchService::new(
        server.clone(),
        hub,
    )))
    .add_service(LeaseServer::new(grpc::lease::LeaseService::new(
        server.clone(),
    )))
    .add_service(AuthServer::new(grpc::Unimplemented))
    .add_service(ElectionServer::new(grpc::Unimplemented))
    .add_service(LockServer::new(grpc::Unimplemented));
    routes.into_axum_router().merge(http::router(server))
}

fn create_private_dir(dir: &Path) -> Result<(), StartError> {
    let err = |source| StartError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    // create_dir_all succeeds on an existing read-only dir: prove we can write.
    let probe = dir.join(".oxcd-write-probe");
    std::fs::write(&probe, b"").map_err(err)?;
    std::fs::remove_file(&probe).map_err(err)?;
    Ok(())
}

fn lock_data_dir(member_dir: &Path) -> Result<std::fs::File, StartError> {
    let path = member_dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StartError::DataDir {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(StartError::DataDirLocked(member_dir.to_path_buf()))
        }
        Err(std::fs::TryLockError::Error(source)) => Err(StartError::DataDir { path, source }),
    }
}

async fn bind_client_listeners(cfg: &Config) -> Result<Vec<(String, TcpListener)>, StartError> {
    let mut out = Vec::new();
    for url in &cfg.listen_client_urls {
        let text = url_text(url);
        let host = url.host_str().unwrap_or("localhost");
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = url.port().unwrap_or(2379);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|source| StartError::Listen {
                url: text.clone(),
                source,
                hint: "use an IP address or a resolvable host name in --listen-client-urls",
            })?
            .collect();
        let mut bound_any = false;
        let mut last_err = None;
        for addr in addrs {
            match TcpListener::bind(addr).await {
                Ok(l) => {
                    out.push((format!("{text} ({addr})"), l));
                    bound_any = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    return Err(StartError::Listen {
                        url: text,
                        source: e,
                        hint: "another process (an etcd or oxcd?) uses this port; stop it or pass a free port in --listen-client-urls",
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
                hint: "check that the address belongs to this machine",
            });
        }
    }
    Ok(out)
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
