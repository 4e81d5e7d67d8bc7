//! Assembling a member: backend, membership, lessor, raft, applier thread, watch hub and
//! the lessor loop, in the order that lets each find what it needs; and stopping it.

use std::path::PathBuf;
use std::sync::Arc;

use oxcd_lease::Lessor;
use oxcd_mvcc::Store;
use oxcd_peer::{DialOptions, PeerTransport, TransportOptions};
use oxcd_raft::{RaftConfig, RaftNode, StartOptions};
use oxcd_watch::Hub;
use parking_lot::RwLock;
use thiserror::Error;
use tokio::sync::watch;

use crate::alarm::AlarmSet;
use crate::apply::chain::{AlarmGate, AuthGate, BackendApplier};
use crate::apply::{Applier, ApplyObserver, FatalApplyError, SnapshotInstall};
use crate::config::CoreConfig;
use crate::data_dir::DataDir;
use crate::membership::Membership;
use crate::peer::{BackendSnapshots, PeerGlue, PeerObserver, RECEIVED_SNAPSHOT};
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
    /// The flags or the data dir do not match the cluster the peers run (another token,
    /// a data dir of another cluster); the text says which and what to change.
    #[error("{0}")]
    Cluster(String),
    /// The applier hit a fatal error.
    #[error("{0}")]
    Apply(String),
    /// The auth store or the `--auth-token` settings are unusable.
    #[error("{0}")]
    Auth(String),
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
    transport: PeerTransport,
    glue: Arc<PeerGlue>,
}

impl Core {
    /// Opens the backend in `dir` (which the caller has created and locked), takes or
    /// bootstraps the membership, and starts raft, the applier, the watch hub and the
    /// lessor loop. Must be called within a tokio runtime.
    pub async fn start(cfg: CoreConfig, dir: &DataDir) -> Result<Core, StartError> {
        let db_path = dir.backend();
        let store_err = |reason: String| StartError::Store {
            path: db_path.clone(),
            reason,
        };
        let started = std::time::Instant::now();
        // A new data dir learns (joining) or checks (bootstrapping) its cluster before the
        // backend is created, so a mistake in the flags leaves nothing behind.
        let fresh_dir = !db_path.exists() && !dir.legacy_membership().exists();
        let mut joined = None;
        if fresh_dir && cfg.cluster.join_existing {
            joined = Some(join_existing(&cfg).await?);
        } else if fresh_dir {
            let ours = Membership::bootstrap(&cfg.name, &cfg.cluster).cluster_id;
            check_peer_clusters(&cfg, ours, &[], None).await?;
        }
        let store = Arc::new(Store::open(&db_path).map_err(|e| store_err(e.to_string()))?);
        let new_data_dir = Membership::load(&store)
            .map_err(|e| store_err(e.to_string()))?
            .is_none()
            && !dir.legacy_membership().exists();
        if new_data_dir && cfg.cluster.join_existing && joined.is_none() {
            joined = Some(join_existing(&cfg).await?);
        }
        let membership = Membership::open(&store, dir, || {
            joined.unwrap_or_else(|| Membership::bootstrap(&cfg.name, &cfg.cluster))
        })
        .map_err(|e| store_err(e.to_string()))?;
        if !fresh_dir {
            let known: Vec<String> = membership
                .members
                .values()
                .filter(|m| m.id != membership.local_id)
                .flat_map(|m| m.peer_urls.clone())
                .collect();
            check_peer_clusters(&cfg, membership.cluster_id, &known, Some(dir.root())).await?;
        }
        if new_data_dir && cfg.cluster.join_existing {
            tracing::info!("joined an existing cluster: raft learns the log from its leader");
        }
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
        if cfg.quota_backend_bytes < 0 {
            tracing::info!(
                quota_size_bytes = cfg.quota_backend_bytes,
                "disabled backend quota"
            );
        } else {
            tracing::info!(
                quota_size_bytes = cfg.quota_backend_bytes,
                quota_size = %crate::snapshot::human_bytes(cfg.quota_backend_bytes as u64),
                "enabled backend quota"
            );
        }
        let lessor = Arc::new(
            Lessor::recover(
                &store,
                Lessor::min_ttl_for(cfg.heartbeat_interval, cfg.election_ticks()),
                cfg.lease_checkpoint_interval,
            )
            .map_err(|e| store_err(e.to_string()))?,
        );
        let alarms = Arc::new(AlarmSet::load(&store).map_err(|e| store_err(e.to_string()))?);
        let auth = Arc::new(crate::auth::open_auth_store(&store, &cfg).map_err(StartError::Auth)?);

        let local_id = membership.local_id;
        let membership = Arc::new(RwLock::new(membership));
        if let Err(e) = oxcd_peer::remove_partial_snapshots(&dir.snap()) {
            tracing::warn!(error = %e, "cannot remove partial snapshots");
        }
        let glue = Arc::new(PeerGlue {
            membership: membership.clone(),
            store: store.clone(),
            snap_dir: dir.snap(),
            raft: std::sync::OnceLock::new(),
            server: std::sync::OnceLock::new(),
            stats: oxcd_peer::PeerStats::new(),
        });
        let mut dial = DialOptions::from_env().map_err(|e| StartError::Raft(e.to_string()))?;
        dial.tls = cfg.peer_tls.clone();
        let transport = PeerTransport::new(
            glue.clone(),
            TransportOptions {
                dial,
                stats: glue.stats.clone(),
                ..Default::default()
            },
        )
        .map_err(|e| StartError::Raft(e.to_string()))?;
        let voters = if new_data_dir && cfg.cluster.join_existing {
            Vec::new() // learned from the leader
        } else {
            membership.read().voter_ids()
        };
        let (raft, committed) = RaftNode::start_with(
            RaftConfig {
                id: local_id,
                peers: voters,
                wal_dir: dir.wal().to_path_buf(),
                tick: cfg.heartbeat_interval,
                election_ticks: cfg.election_ticks(),
                heartbeat_ticks: 1,
                snapshot_count: cfg.snapshot_count,
                applied: store.consistent_index(),
            },
            transport.clone(),
            StartOptions {
                snapshot_source: Some(Box::new(BackendSnapshots)),
                ..Default::default()
            },
        )
        .map_err(|e| StartError::Raft(e.to_string()))?;
        transport.set_raft(raft.clone());
        let _ = glue.raft.set(raft.clone());
        let peers = Arc::new(PeerObserver::new(transport.clone(), local_id));
        let initial = membership.read().clone();
        peers.on_membership(&initial);

        let waiters = Arc::new(Waiters::default());
        let hub = Hub::new(store.clone());
        hub.spawn_sync();
        let (applied_tx, applied_rx) = watch::channel(store.consistent_index());
        let backend = BackendApplier {
            store: store.clone(),
            lessor: lessor.clone(),
            alarms: alarms.clone(),
            membership: membership.clone(),
            auth: auth.clone(),
        };
        let observers: Vec<Arc<dyn ApplyObserver>> = vec![lessor.clone(), hub.clone(), peers];
        let applier = Applier {
            store: store.clone(),
            raft: raft.clone(),
            waiters: waiters.clone(),
            applied_tx,
            chain: Box::new(AuthGate::new(
                auth.clone(),
                lessor.clone(),
                AlarmGate::new(alarms.clone(), backend),
            )),
            observers,
            membership: membership.clone(),
            snapshots: SnapshotInstall {
                received: dir.snap().join(RECEIVED_SNAPSHOT),
                lessor: lessor.clone(),
                alarms: alarms.clone(),
                auth: auth.clone(),
                hub: hub.clone(),
            },
        };
        // Compactions delete their old revisions in the background, a short batch at a
        // time, so the applier (and every write behind it) does not wait for them.
        oxcd_mvcc::spawn_compactor(&store).map_err(|e| StartError::Apply(e.to_string()))?;
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
            peer_client: transport.client(),
            transport: transport.clone(),
            proposal_stats: Default::default(),
            read_index_stats: Default::default(),
            defrags_running: Default::default(),
            auth,
            auth_failures: Default::default(),
        });
        let _ = glue.server.set(Arc::downgrade(&server));
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
        if let Some(policy) = server.cfg.auto_compaction {
            tokio::spawn(crate::compactor::run(
                policy,
                server.clone(),
                crate::compactor::clock_from_env(),
                stop_rx.clone(),
            ));
        }
        if !server.cfg.corrupt_check_time.is_zero() {
            tokio::spawn(crate::corrupt::monitor(
                server.clone(),
                server.cfg.corrupt_check_time,
                stop_rx.clone(),
            ));
        }
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
            transport,
            glue,
        })
    }

    /// `--experimental-initial-corrupt-check`, once the member has joined the cluster's log
    /// and before it serves clients: [`StartError::Cluster`] if its data differs from a
    /// peer's at the same revision (nothing to do without the flag).
    pub async fn initial_corrupt_check(&self) -> Result<(), StartError> {
        if !self.server.cfg.initial_corrupt_check {
            return Ok(());
        }
        self.server
            .initial_corrupt_check()
            .await
            .map_err(StartError::Cluster)
    }

    /// What the peer listeners serve (`oxcd_peer::router` over it: raft streams,
    /// snapshots, lease forwarding, `/members`, `/version`).
    pub fn peer_handler(&self) -> Arc<dyn oxcd_peer::PeerHandler> {
        self.glue.clone()
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
        let mut removed = self.transport.removed();
        let Some(done) = self.applier_done.as_mut() else {
            return std::future::pending().await;
        };
        tokio::select! {
            joined = done => {
                self.applier_done = None;
                self.failed = Some(joined);
            }
            Ok(_) = removed.wait_for(|r| *r) => {
                tracing::error!("the member has been permanently removed from the cluster; stopping");
            }
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
        self.transport.shutdown();
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

/// How long start-up waits for each peer's `GET /members` when checking the cluster ids
/// (peers that do not answer in time are not running yet, which is no error).
const PEER_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Asks the peers (those of `--initial-cluster` and `known`, this member's own URLs left
/// out) which cluster they belong to, and refuses to start when one that answers is in
/// another cluster than `ours`: a `--initial-cluster-token` or `--initial-cluster` that
/// does not match the running cluster (`data_dir: None`), or a data dir of another
/// cluster (`Some`). Peers that do not answer are skipped: a new cluster's members start
/// in any order.
async fn check_peer_clusters(
    cfg: &CoreConfig,
    ours: u64,
    known: &[String],
    data_dir: Option<&std::path::Path>,
) -> Result<(), StartError> {
    let mine = &cfg.cluster.initial_advertise_peer_urls;
    let mut urls: Vec<String> = cfg
        .cluster
        .initial_cluster
        .values()
        .flatten()
        .chain(known)
        .filter(|u| !mine.contains(u))
        .cloned()
        .collect();
    urls.sort();
    urls.dedup();
    if urls.is_empty() {
        return Ok(());
    }
    let dial = DialOptions::from_env().map_err(|e| StartError::Raft(e.to_string()))?;
    let client = oxcd_peer::PeerClient::new(Arc::new(crate::peer::Joining), dial);
    let asks = urls.iter().map(|url| {
        let client = client.clone();
        async move {
            let answer = tokio::time::timeout(
                PEER_CHECK_TIMEOUT,
                client.members(std::slice::from_ref(url)),
            )
            .await;
            match answer {
                Ok(Ok(remote)) => Some((url.clone(), remote.cluster_id)),
                _ => None,
            }
        }
    });
    for (url, theirs) in futures::future::join_all(asks).await.into_iter().flatten() {
        if theirs == 0 || theirs == ours {
            continue;
        }
        return Err(StartError::Cluster(match data_dir {
            None => format!(
                "peer {url} belongs to cluster {theirs:x}, but --initial-cluster and \
                 --initial-cluster-token {token:?} make this member's cluster {ours:x}: give the \
                 running cluster's --initial-cluster and --initial-cluster-token, or add this \
                 member (etcdctl member add) and start it with --initial-cluster-state existing",
                token = cfg.cluster.initial_cluster_token,
            ),
            Some(dir) => format!(
                "data dir {} belongs to cluster {ours:x}, but peer {url} belongs to cluster \
                 {theirs:x}: the data dir is from another cluster; remove it or choose another \
                 --data-dir, and add this member to the running cluster (etcdctl member add)",
                dir.display()
            ),
        }));
    }
    Ok(())
}

/// Learns the cluster this new member joins from the peers in `--initial-cluster` (etcd's
/// `GetClusterFromRemotePeers`), trying each until one answers.
async fn join_existing(cfg: &CoreConfig) -> Result<Membership, StartError> {
    let mine = &cfg.cluster.initial_advertise_peer_urls;
    let urls: Vec<String> = cfg
        .cluster
        .initial_cluster
        .values()
        .flatten()
        .filter(|u| !mine.contains(u))
        .cloned()
        .collect();
    if urls.is_empty() {
        return Err(StartError::Raft(
            "--initial-cluster-state existing needs the other members' peer URLs in \
             --initial-cluster"
                .into(),
        ));
    }
    let mut dial = DialOptions::from_env().map_err(|e| StartError::Raft(e.to_string()))?;
    dial.tls = cfg.peer_tls.clone();
    let probe = Arc::new(crate::peer::Joining);
    let client = oxcd_peer::PeerClient::new(probe, dial);
    let remote = client.members(&urls).await.map_err(|e| {
        StartError::Raft(format!(
            "cannot learn the cluster from its members {urls:?}: {e}; check that they run and \
             that --initial-cluster lists their peer URLs"
        ))
    })?;
    let members = remote
        .members
        .into_iter()
        .map(|m| crate::membership::Member {
            id: m.id,
            name: m.name,
            peer_urls: m.peer_urls,
            client_urls: m.client_urls,
            is_learner: m.is_learner,
        })
        .collect();
    Membership::joined(remote.cluster_id, members, &cfg.cluster).map_err(StartError::Raft)
}
