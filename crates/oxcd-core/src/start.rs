//! Assembling a member: backend, membership, lessor, raft, applier thread, watch hub and
//! the lessor loop, in the order that lets each find what it needs; and stopping it.

use std::path::PathBuf;
use std::sync::Arc;

use oxcd_lease::Lessor;
use oxcd_mvcc::Store;
use oxcd_raft::{RaftConfig, RaftNode};
use oxcd_watch::Hub;
use parking_lot::RwLock;
use thiserror::Error;
use tokio::sync::watch;

use crate::alarm::AlarmSet;
use crate::apply::chain::{AlarmGate, BackendApplier};
use crate::apply::{Applier, ApplyObserver, FatalApplyError};
use crate::config::CoreConfig;
use crate::data_dir::DataDir;
use crate::membership::Membership;
use crate::proposal::{IdGenerator, Waiters};
use crate::server::EtcdServer;
use crate::version::OXCD_VERSION;

/// Why a member could not start or had to stop, phrased for the operator.
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
    /// The backend failed to open or to take the membership.
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
    /// The applier hit a fatal error.
    #[error("{0}")]
    Apply(String),
}

type AppliedJoin = Result<std::thread::Result<Result<(), FatalApplyError>>, tokio::task::JoinError>;

/// A running member. Dropping it without [`Core::shutdown`] leaves the threads to stop
/// when the process ends.
pub struct Core {
    server: Arc<EtcdServer>,
    stop_tx: watch::Sender<bool>,
    lessor_loop: tokio::task::JoinHandle<()>,
    applier_done: Option<tokio::task::JoinHandle<std::thread::Result<Result<(), FatalApplyError>>>>,
    failed: Option<AppliedJoin>,
    /// Turns true once this member's attributes are published through raft.
    published: watch::Receiver<bool>,
}

impl Core {
    /// Opens the backend in `dir` (which the caller has created and locked), takes or
    /// bootstraps the membership, and starts raft, the applier, the watch hub and the
    /// lessor loop. Must be called within a tokio runtime.
    pub fn start(cfg: CoreConfig, dir: &DataDir) -> Result<Core, StartError> {
        let db_path = dir.backend();
        let store_err = |reason: String| StartError::Store {
            path: db_path.clone(),
            reason,
        };
        let started = std::time::Instant::now();
        let store = Arc::new(Store::open(&db_path).map_err(|e| store_err(e.to_string()))?);
        let membership = Membership::open(&store, dir, &cfg.name, &cfg.cluster)
            .map_err(|e| store_err(e.to_string()))?;
        tracing::info!(
            name = %cfg.name,
            member_id = %format!("{:x}", membership.local_id),
            cluster_id = %format!("{:x}", membership.cluster_id),
            data_dir = %dir.root().display(),
            version = OXCD_VERSION,
            revision = store.current_revision(),
            consistent_index = store.consistent_index(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "opened backend"
        );
        let lessor = Arc::new(
            Lessor::recover(
                &store,
                Lessor::min_ttl_for(cfg.heartbeat_interval, cfg.election_ticks()),
                cfg.lease_checkpoint_interval,
            )
            .map_err(|e| store_err(e.to_string()))?,
        );
        let alarms = Arc::new(AlarmSet::load(&store).map_err(|e| store_err(e.to_string()))?);

        let local_id = membership.local_id;
        let (raft, committed) = RaftNode::start(RaftConfig {
            id: local_id,
            peers: membership.voter_ids(),
            wal_dir: dir.wal().to_path_buf(),
            tick: cfg.heartbeat_interval,
            election_ticks: cfg.election_ticks(),
            heartbeat_ticks: 1,
            snapshot_count: cfg.snapshot_count,
            applied: store.consistent_index(),
        })
        .map_err(|e| StartError::Raft(e.to_string()))?;

        let waiters = Arc::new(Waiters::default());
        let hub = Hub::new(store.clone());
        hub.spawn_sync();
        let (applied_tx, applied_rx) = watch::channel(store.consistent_index());
        let membership = Arc::new(RwLock::new(membership));
        let backend = BackendApplier {
            store: store.clone(),
            lessor: lessor.clone(),
            alarms: alarms.clone(),
            membership: membership.clone(),
        };
        let observers: Vec<Arc<dyn ApplyObserver>> = vec![lessor.clone(), hub.clone()];
        let applier = Applier {
            store: store.clone(),
            raft: raft.clone(),
            waiters: waiters.clone(),
            applied_tx,
            chain: Box::new(AlarmGate::new(alarms.clone(), backend)),
            observers,
            membership: membership.clone(),
        };
        // The applier blocks on the backend, so it gets a thread of its own.
        let applier_thread = std::thread::Builder::new()
            .name("oxcd-apply".into())
            .spawn(move || {
                oxcd_raft::sched::prefer_batching_for_current_thread();
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .map_err(|e| FatalApplyError(e.to_string()))?;
                rt.block_on(applier.run(committed))
            })
            .map_err(|e| StartError::Apply(e.to_string()))?;
        let applier_done = tokio::task::spawn_blocking(move || applier_thread.join());

        let ids = IdGenerator::new(local_id);
        let server = Arc::new(EtcdServer {
            cfg,
            membership,
            store,
            raft,
            waiters,
            applied: applied_rx,
            lessor,
            hub,
            alarms,
            ids,
        });
        // A member that is leader already (a sole member is, once raft has started) promotes
        // its lessor before serving: a lease granted before the promotion would get the
        // election-timeout extension, as in etcd, and expire that much late. Later leadership
        // changes are the lessor loop's.
        if server.raft.status().is_leader {
            server.lessor.promote(server.cfg.election_timeout);
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let lessor_loop = tokio::spawn(crate::lessor_loop::run_lessor(
            server.clone(),
            stop_rx.clone(),
        ));
        let (published_tx, published) = watch::channel(false);
        tokio::spawn(crate::cluster::publish_loop(
            server.clone(),
            stop_rx,
            published_tx,
        ));
        Ok(Core {
            server,
            stop_tx,
            lessor_loop,
            applier_done: Some(applier_done),
            failed: None,
            published,
        })
    }

    /// Completes once this member has joined the cluster's log: its name and client URLs
    /// are published through raft (etcd's `ReadyNotify`; etcd serves clients only then).
    /// Never completes if the member cannot reach a quorum; it logs why meanwhile.
    pub fn ready(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut published = self.published.clone();
        let server = self.server.clone();
        async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            tick.tick().await;
            loop {
                tokio::select! {
                    ok = async { published.wait_for(|p| *p).await.is_ok() } => {
                    if !ok {
                        // The core stopped before publishing: never ready.
                        std::future::pending::<()>().await;
                    }
                    return;
                }
                _ = tick.tick() => {
                        let status = server.raft.status();
                        tracing::warn!(
                            leader = %format!("{:x}", status.leader_id),
                            term = status.term,
                            "not serving clients yet: waiting to publish this member to the cluster \
                             (a quorum of members must be reachable)"
                        );
                    }
                }
            }
        }
    }

    /// The server, for the adapters.
    pub fn server(&self) -> &Arc<EtcdServer> {
        &self.server
    }

    /// Completes only if the member fails on its own: raft or the applier stopped (a WAL
    /// or backend failure). A member that can no longer write must not linger.
    pub async fn failure(&mut self) {
        match self.applier_done.as_mut() {
            Some(done) => {
                let joined = done.await;
                self.applier_done = None;
                self.failed = Some(joined);
            }
            None => std::future::pending().await,
        }
    }

    /// Stops the lessor loop, raft and the applier (which makes everything applied
    /// durable). Returns why the member had failed, if it had.
    pub async fn shutdown(mut self) -> Result<(), StartError> {
        let unexpected = self.failed.is_some();
        if !unexpected {
            self.server.hand_over_leadership().await;
        }
        let _ = self.stop_tx.send(true);
        let _ = self.lessor_loop.await;
        self.server.raft.shutdown();
        let joined = match (self.failed.take(), self.applier_done.take()) {
            (Some(j), _) => j,
            (None, Some(done)) => done.await,
            (None, None) => return Ok(()),
        };
        match joined {
            Ok(Ok(Ok(()))) if unexpected => Err(StartError::Apply(
                "the raft node stopped (its error is logged above); restart oxcd to recover from the WAL".into(),
            )),
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(StartError::Apply(e.to_string())),
            Ok(Err(_)) | Err(_) => Err(StartError::Apply("applier thread panicked".into())),
        }
    }
}
