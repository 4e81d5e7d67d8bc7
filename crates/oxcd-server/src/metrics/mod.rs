//! Prometheus metrics with etcd's names, types, help texts, labels and buckets, for the
//! series etcd's Grafana dashboard and alert rules read: served on every client URL's
//! `/metrics` and on `--listen-metrics-urls`.
//!
//! * server state (`etcd_server_*`, `etcd_mvcc_db_*`): read from the server when scraped;
//!   leader changes are counted by a sampler that follows the raft leader; the core's and
//!   raft's process-wide counts (slow applies, late heartbeats, learner promotions, snapshot
//!   installs) are added when scraped;
//! * durations: observers set once in oxcd-raft (WAL fsync) and oxcd-core (backend
//!   commits, defragmentations, snapshots, hashes; applied requests for etcd 3.5's
//!   `etcd_server_apply_duration_seconds`, whose series are resolved on first use);
//! * gRPC (`grpc_server_*`, go-grpc-prometheus's families): [`grpc`], recorded per call
//!   through counters resolved once per method (no lock, no allocation when recording),
//!   with etcd's `etcd_server_client_requests_total` (by the `client-api-version` header)
//!   and `etcd_network_server_stream_failures_total` counted in process-wide atomics;
//! * network (`etcd_network_*`): [`network`], client gRPC bytes counted as bodies pass
//!   and peer traffic from oxcd-peer's per-peer atomics;
//! * `process_*`: the prometheus crate's process collector (Linux).
//!
//! `--metrics=extensive` adds `grpc_server_handling_seconds`, as etcd does.

pub mod grpc;
pub mod network;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use oxcd_core::version::{ETCD_CLUSTER_VERSION, ETCD_SERVER_VERSION};
use oxcd_core::BackendOp;
use oxcd_core::EtcdServer;
use prometheus::{
    exponential_buckets, Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec,
    IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Which families are exported (`--metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// etcd's default set.
    Basic,
    /// Adds the gRPC handling-time histograms.
    Extensive,
}

/// Why the metrics could not be set up (a family registered twice: a bug).
pub type MetricsError = prometheus::Error;

/// The server-state families, refreshed when scraped.
struct ServerGauges {
    has_leader: Gauge,
    is_leader: Gauge,
    leader_changes: IntCounter,
    proposals_committed: Gauge,
    proposals_applied: Gauge,
    proposals_pending: Gauge,
    proposals_failed: IntCounter,
    is_learner: Gauge,
    health_success: IntCounter,
    health_failures: IntCounter,
    quota_backend_bytes: Gauge,
    db_total_size: Gauge,
    db_in_use_size: Gauge,
    /// Every WAL fdatasync (oxcd-raft's fsync observer).
    wal_fsync: Histogram,
    /// Every durable backend commit (oxcd-core's backend observer).
    backend_commit: Histogram,
    /// Every defragmentation and client snapshot (oxcd-core's backend observer).
    backend_defrag: Histogram,
    backend_snapshot: Histogram,
    defrag_inflight: Gauge,
    /// Every Hash, and every HashKV (etcd 3.5's families).
    hash: Histogram,
    hash_rev: Histogram,
    client_received_bytes: IntCounter,
    client_sent_bytes: IntCounter,
    /// `etcd_mvcc_{range,put,delete,txn}_total`, from the store's counts.
    mvcc_ops: [IntCounter; 4],
    /// A gauge in etcd, despite its name.
    wal_write_bytes: Gauge,
    slow_read_indexes: IntCounter,
    read_indexes_failed: IntCounter,
    slow_applies: IntCounter,
    open_read_txns: Gauge,
    heartbeat_send_failures: IntCounter,
    learner_promote_successes: IntCounter,
    /// By `Reason`.
    learner_promote_failures: IntCounterVec,
    snapshot_apply_in_progress: Gauge,
    /// By `type` and `client_api_version`.
    client_requests: IntCounterVec,
    /// By `Type` and `API`.
    stream_failures: IntCounterVec,
}

/// The registry and its families.
pub struct Metrics {
    registry: Registry,
    server: Arc<EtcdServer>,
    gauges: ServerGauges,
    /// The gRPC families, shared with the recording layer.
    pub grpc: Arc<grpc::GrpcMetrics>,
    last_leader: AtomicU64,
    /// The core's failed-proposal count already added to `proposals_failed`.
    failed_counted: AtomicU64,
    /// The `/health` successes and failures already added to their counters.
    health_counted: [AtomicU64; 2],
    /// The client bytes received and sent already added to their counters.
    client_bytes_counted: [AtomicU64; 2],
    /// The store's ranges, puts, deletes and txns already added to their counters.
    mvcc_ops_counted: [AtomicU64; 4],
    /// The slow and failed ReadIndex rounds already added to their counters.
    read_index_counted: [AtomicU64; 2],
    /// The slow applies already added to their counter.
    slow_applies_counted: AtomicU64,
    /// The late heartbeats already added to their counter.
    heartbeats_counted: AtomicU64,
    /// etcd's `os_fd_*` gauges (Linux).
    fds: Option<FdGauges>,
}

/// etcd's file descriptor gauges, read from /proc when scraped.
struct FdGauges {
    used: Gauge,
    limit: Gauge,
}

impl FdGauges {
    fn refresh(&self) {
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.used.set(dir.count() as f64);
        }
        // "Max open files            1024                 524288               files"
        let soft = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("Max open files"))
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|v| v.parse::<f64>().ok())
            });
        if let Some(soft) = soft {
            self.limit.set(soft);
        }
    }
}

/// Raises `counter` to `total` (a count that only grows), for a vector's child that mirrors
/// a process-wide count: no bookkeeping of what was added, the child holds it.
fn raise_to(counter: &IntCounter, total: u64) {
    let have = counter.get();
    if total > have {
        counter.inc_by(total - have);
    }
}

/// A counter family with labels, registered.
fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, MetricsError> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

/// etcd 3.5's `etcd_server_apply_duration_seconds{version,op,success}` (0.1 ms doubling,
/// 20 buckets), recorded through oxcd-core's apply observer: each operation's two series
/// are created the first time they are observed (as etcd's vector creates them), then
/// recording is one atomic load and the histogram's atomics.
fn observe_applies(registry: &Registry) -> Result<(), MetricsError> {
    let vec = HistogramVec::new(
        HistogramOpts::new(
            "etcd_server_apply_duration_seconds",
            "The latency distributions of v2 apply called by backend.",
        )
        .buckets(exponential_buckets(0.0001, 2.0, 20)?),
        &["version", "op", "success"],
    )?;
    registry.register(Box::new(vec.clone()))?;
    let series: Box<[[OnceLock<Histogram>; 2]; oxcd_core::APPLY_OPS]> =
        Box::new([const { [const { OnceLock::new() }; 2] }; oxcd_core::APPLY_OPS]);
    oxcd_core::set_apply_observer(Box::new(move |op, success, took| {
        let h = series[op as usize][usize::from(success)].get_or_init(|| {
            let outcome = if success { "true" } else { "false" };
            vec.with_label_values(&["v3", op.name(), outcome])
        });
        h.observe(took.as_secs_f64());
    }));
    Ok(())
}

/// Adds to `counter` what `total` (a count that only grows) grew by since `counted`.
fn add_growth(counter: &IntCounter, counted: &AtomicU64, total: u64) {
    let before = counted.swap(total, Ordering::Relaxed);
    if total > before {
        counter.inc_by(total - before);
    }
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<Gauge, MetricsError> {
    let g = Gauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter(registry: &Registry, name: &str, help: &str) -> Result<IntCounter, MetricsError> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

/// etcd's disk latency buckets: 1 ms doubling to about 8 s.
fn disk_histogram(registry: &Registry, name: &str, help: &str) -> Result<Histogram, MetricsError> {
    histogram(registry, name, help, 0.001, 14)
}

/// A histogram of `count` buckets from `start` seconds, doubling (etcd's
/// `ExponentialBuckets(start, 2, count)`).
fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    start: f64,
    count: usize,
) -> Result<Histogram, MetricsError> {
    let h = Histogram::with_opts(
        HistogramOpts::new(name, help).buckets(exponential_buckets(start, 2.0, count)?),
    )?;
    registry.register(Box::new(h.clone()))?;
    Ok(h)
}

/// etcd's `etcd_mvcc_range_total`, `_put_total`, `_delete_total` and `_txn_total`, in
/// that order.
fn mvcc_op_counters(registry: &Registry) -> Result<[IntCounter; 4], MetricsError> {
    let r = registry;
    Ok([
        counter(
            r,
            "etcd_mvcc_range_total",
            "Total number of ranges seen by this member.",
        )?,
        counter(
            r,
            "etcd_mvcc_put_total",
            "Total number of puts seen by this member.",
        )?,
        counter(
            r,
            "etcd_mvcc_delete_total",
            "Total number of deletes seen by this member.",
        )?,
        counter(
            r,
            "etcd_mvcc_txn_total",
            "Total number of txns seen by this member.",
        )?,
    ])
}

/// A gauge family with one series set to 1 (etcd's "info" gauges).
fn info(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
    value: &str,
) -> Result<(), MetricsError> {
    let g = GaugeVec::new(Opts::new(name, help), &[label])?;
    g.with_label_values(&[value]).set(1.0);
    registry.register(Box::new(g))
}

impl Metrics {
    /// The families for `server`, at `level`.
    pub fn new(server: Arc<EtcdServer>, level: Level) -> Result<Arc<Metrics>, MetricsError> {
        let registry = Registry::new();
        let r = &registry;
        let gauges = ServerGauges {
            has_leader: gauge(
                r,
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
            )?,
            is_leader: gauge(
                r,
                "etcd_server_is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            )?,
            leader_changes: counter(
                r,
                "etcd_server_leader_changes_seen_total",
                "The number of leader changes seen.",
            )?,
            proposals_committed: gauge(
                r,
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed.",
            )?,
            proposals_applied: gauge(
                r,
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied.",
            )?,
            proposals_pending: gauge(
                r,
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit.",
            )?,
            proposals_failed: counter(
                r,
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            )?,
            is_learner: gauge(
                r,
                "etcd_server_is_learner",
                "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            )?,
            health_success: counter(
                r,
                "etcd_server_health_success",
                "The total number of successful health checks",
            )?,
            health_failures: counter(
                r,
                "etcd_server_health_failures",
                "The total number of failed health checks",
            )?,
            quota_backend_bytes: gauge(
                r,
                "etcd_server_quota_backend_bytes",
                "Current backend storage quota size in bytes.",
            )?,
            db_total_size: gauge(
                r,
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
            )?,
            db_in_use_size: gauge(
                r,
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes.",
            )?,
            wal_fsync: disk_histogram(
                r,
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
            )?,
            backend_commit: disk_histogram(
                r,
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
            )?,
            // etcd: 100 ms doubling to about 410 s.
            backend_defrag: histogram(
                r,
                "etcd_disk_backend_defrag_duration_seconds",
                "The latency distribution of backend defragmentation.",
                0.1,
                13,
            )?,
            // etcd: 10 ms doubling to about 655 s.
            backend_snapshot: histogram(
                r,
                "etcd_disk_backend_snapshot_duration_seconds",
                "The latency distribution of backend snapshots.",
                0.01,
                17,
            )?,
            defrag_inflight: gauge(
                r,
                "etcd_disk_defrag_inflight",
                "Whether or not defrag is active on the member. 1 means active, 0 means not.",
            )?,
            // etcd 3.5: 10 ms doubling to about 164 s.
            hash: histogram(
                r,
                "etcd_mvcc_hash_duration_seconds",
                "The latency distribution of storage hash operation.",
                0.01,
                15,
            )?,
            hash_rev: histogram(
                r,
                "etcd_mvcc_hash_rev_duration_seconds",
                "The latency distribution of storage hash by revision operation.",
                0.01,
                15,
            )?,
            client_received_bytes: counter(
                r,
                "etcd_network_client_grpc_received_bytes_total",
                "The total number of bytes received from grpc clients.",
            )?,
            client_sent_bytes: counter(
                r,
                "etcd_network_client_grpc_sent_bytes_total",
                "The total number of bytes sent to grpc clients.",
            )?,
            mvcc_ops: mvcc_op_counters(r)?,
            wal_write_bytes: gauge(
                r,
                "etcd_disk_wal_write_bytes_total",
                "Total number of bytes written in WAL.",
            )?,
            slow_read_indexes: counter(
                r,
                "etcd_server_slow_read_indexes_total",
                "The total number of pending read indexes not in sync with leader's or timed out read index requests.",
            )?,
            read_indexes_failed: counter(
                r,
                "etcd_server_read_indexes_failed_total",
                "The total number of failed read indexes seen.",
            )?,
            slow_applies: counter(
                r,
                "etcd_server_slow_apply_total",
                "The total number of slow apply requests (likely overloaded from slow disk).",
            )?,
            open_read_txns: gauge(
                r,
                "etcd_mvcc_db_open_read_transactions",
                "The number of currently open read transactions",
            )?,
            heartbeat_send_failures: counter(
                r,
                "etcd_server_heartbeat_send_failures_total",
                "The total number of leader heartbeat send failures (likely overloaded from slow disk).",
            )?,
            learner_promote_successes: counter(
                r,
                "etcd_server_learner_promote_successes",
                "The total number of successful learner promotions while this member is leader.",
            )?,
            learner_promote_failures: counter_vec(
                r,
                "etcd_server_learner_promote_failures",
                "The total number of failed learner promotions (likely learner not ready) while this member is leader.",
                &["Reason"],
            )?,
            snapshot_apply_in_progress: gauge(
                r,
                "etcd_server_snapshot_apply_in_progress_total",
                "1 if the server is applying the incoming snapshot. 0 if none.",
            )?,
            client_requests: counter_vec(
                r,
                "etcd_server_client_requests_total",
                "The total number of client requests per client version.",
                &["type", "client_api_version"],
            )?,
            stream_failures: counter_vec(
                r,
                "etcd_network_server_stream_failures_total",
                "The total number of stream failures from the local server.",
                &["Type", "API"],
            )?,
        };
        observe_applies(r)?;
        let header = server.header(0);
        info(
            r,
            "etcd_server_id",
            "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
            "server_id",
            &format!("{:x}", header.member_id),
        )?;
        info(
            r,
            "etcd_server_version",
            "Which version is running. 1 for 'server_version' label with current version.",
            "server_version",
            ETCD_SERVER_VERSION,
        )?;
        info(
            r,
            "etcd_cluster_version",
            "Which version is running. 1 for 'cluster_version' label with current cluster version",
            "cluster_version",
            &major_minor(ETCD_CLUSTER_VERSION),
        )?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        #[cfg(target_os = "linux")]
        let fds = Some(FdGauges {
            used: gauge(r, "os_fd_used", "The number of used file descriptors.")?,
            limit: gauge(r, "os_fd_limit", "The file descriptor limit.")?,
        });
        #[cfg(not(target_os = "linux"))]
        let fds = None;
        let grpc = Arc::new(grpc::GrpcMetrics::new(r, level)?);
        let metrics = Arc::new(Metrics {
            registry,
            server,
            gauges,
            grpc,
            last_leader: AtomicU64::new(0),
            failed_counted: AtomicU64::new(0),
            health_counted: [AtomicU64::new(0), AtomicU64::new(0)],
            client_bytes_counted: [AtomicU64::new(0), AtomicU64::new(0)],
            mvcc_ops_counted: Default::default(),
            read_index_counted: Default::default(),
            slow_applies_counted: AtomicU64::new(0),
            heartbeats_counted: AtomicU64::new(0),
            fds,
        });
        metrics.sample_leader();
        // Process-wide hooks: the first server of the process records into them.
        let fsync = metrics.gauges.wal_fsync.clone();
        oxcd_core::set_wal_fsync_observer(Box::new(move |took| fsync.observe(took.as_secs_f64())));
        for (op, histogram) in [
            (BackendOp::Commit, &metrics.gauges.backend_commit),
            (BackendOp::Defrag, &metrics.gauges.backend_defrag),
            (BackendOp::Snapshot, &metrics.gauges.backend_snapshot),
            (BackendOp::Hash, &metrics.gauges.hash),
            (BackendOp::HashRev, &metrics.gauges.hash_rev),
        ] {
            let h = histogram.clone();
            oxcd_core::set_backend_observer(
                op,
                Box::new(move |took| h.observe(took.as_secs_f64())),
            );
        }
        Ok(metrics)
    }

    /// Counts a leader change if the leader differs from the last one seen (etcd counts
    /// every new non-empty leader, the first included).
    fn sample_leader(&self) {
        let leader = self.server.raft_status().leader_id;
        if leader != 0 && self.last_leader.swap(leader, Ordering::Relaxed) != leader {
            self.gauges.leader_changes.inc();
        }
    }

    /// Follows the raft leader until `stop` turns true.
    pub async fn run_leader_sampler(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = tick.tick() => self.sample_leader(),
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Exports one more family (the TLS listeners' handshake failures).
    pub fn register(
        &self,
        collector: Box<dyn prometheus::core::Collector>,
    ) -> Result<(), MetricsError> {
        self.registry.register(collector)
    }

    /// Exports the member's peer links (etcd's `etcd_network_peer_*`, `active_peers`,
    /// `disconnected_peers_total` and `snapshot_*` families).
    pub fn register_peers(&self, stats: Arc<oxcd_peer::PeerStats>) -> Result<(), MetricsError> {
        let local = self.server.header(0).member_id;
        self.register(Box::new(network::PeerCollector::new(stats, local)?))
    }

    /// The text exposition of every family (Prometheus format 0.0.4).
    pub fn render(&self) -> String {
        self.refresh();
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Reads the server state into the gauges.
    fn refresh(&self) {
        self.sample_leader();
        let status = self.server.status();
        let g = &self.gauges;
        let member = status.header.as_ref().map_or(0, |h| h.member_id);
        g.has_leader.set(if status.leader != 0 { 1.0 } else { 0.0 });
        g.is_leader
            .set(if status.leader != 0 && status.leader == member {
                1.0
            } else {
                0.0
            });
        g.proposals_committed.set(status.raft_index as f64);
        g.proposals_applied.set(status.raft_applied_index as f64);
        g.quota_backend_bytes.set(status.db_size_quota as f64);
        g.db_total_size.set(status.db_size as f64);
        g.db_in_use_size.set(status.db_size_in_use as f64);
        let proposals = self.server.proposal_stats();
        g.proposals_pending.set(proposals.pending() as f64);
        // The core's counts only grow; each scrape adds what they grew by since the last.
        add_growth(
            &g.proposals_failed,
            &self.failed_counted,
            proposals.failed(),
        );
        g.is_learner.set(if status.is_learner { 1.0 } else { 0.0 });
        add_growth(
            &g.health_success,
            &self.health_counted[0],
            crate::http::HEALTH_SUCCESS.load(Ordering::Relaxed),
        );
        add_growth(
            &g.health_failures,
            &self.health_counted[1],
            crate::http::HEALTH_FAILURES.load(Ordering::Relaxed),
        );
        add_growth(
            &g.client_received_bytes,
            &self.client_bytes_counted[0],
            network::CLIENT_RECEIVED_BYTES.load(Ordering::Relaxed),
        );
        add_growth(
            &g.client_sent_bytes,
            &self.client_bytes_counted[1],
            network::CLIENT_SENT_BYTES.load(Ordering::Relaxed),
        );
        let ops = self.server.mvcc_op_counts();
        for ((counter, counted), total) in g.mvcc_ops.iter().zip(&self.mvcc_ops_counted).zip([
            ops.ranges,
            ops.puts,
            ops.deletes,
            ops.txns,
        ]) {
            add_growth(counter, counted, total);
        }
        g.wal_write_bytes.set(oxcd_core::wal_write_bytes() as f64);
        g.defrag_inflight.set(if self.server.defragmenting() {
            1.0
        } else {
            0.0
        });
        let reads = self.server.read_index_stats();
        add_growth(
            &g.slow_read_indexes,
            &self.read_index_counted[0],
            reads.slow(),
        );
        add_growth(
            &g.read_indexes_failed,
            &self.read_index_counted[1],
            reads.failed(),
        );
        add_growth(
            &g.slow_applies,
            &self.slow_applies_counted,
            oxcd_core::slow_applies(),
        );
        g.open_read_txns
            .set(self.server.open_read_transactions() as f64);
        add_growth(
            &g.heartbeat_send_failures,
            &self.heartbeats_counted,
            oxcd_core::heartbeat_send_failures(),
        );
        let (promoted, failed) = oxcd_core::learner_promotes();
        raise_to(&g.learner_promote_successes, promoted);
        for (reason, n) in failed {
            raise_to(
                &g.learner_promote_failures
                    .with_label_values(&[reason.as_str()]),
                n,
            );
        }
        g.snapshot_apply_in_progress
            .set(oxcd_core::snapshot_applies_in_progress() as f64);
        // Vectors' series appear once they count something, as etcd's.
        for (kind, by_version) in grpc::REQUEST_TYPES.iter().zip(&grpc::CLIENT_REQUESTS) {
            for (version, n) in grpc::API_VERSIONS.iter().zip(by_version) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    raise_to(&g.client_requests.with_label_values(&[*kind, *version]), n);
                }
            }
        }
        for ((kind, api), n) in grpc::STREAM_FAILURE_LABELS
            .iter()
            .zip(&grpc::STREAM_FAILURES)
        {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                raise_to(&g.stream_failures.with_label_values(&[*kind, *api]), n);
            }
        }
        if let Some(fds) = &self.fds {
            fds.refresh();
        }
    }
}

/// etcd labels its cluster version `major.minor` (`3.5`).
fn major_minor(version: &str) -> String {
    version.splitn(3, '.').take(2).collect::<Vec<_>>().join(".")
}

#[cfg(test)]
mod tests;
