//! What the core needs to know of the server's configuration (the flags live in
//! `oxcd-server`, which fills this in).

use std::collections::BTreeMap;
use std::time::Duration;

/// The core's settings, each named after the etcd flag it comes from.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// `--name`.
    pub name: String,
    /// `--heartbeat-interval`.
    pub heartbeat_interval: Duration,
    /// `--election-timeout`.
    pub election_timeout: Duration,
    /// `--snapshot-count`.
    pub snapshot_count: u64,
    /// `--max-request-bytes`.
    pub max_request_bytes: u64,
    /// `--max-txn-ops`.
    pub max_txn_ops: u64,
    /// `--quota-backend-bytes`, the effective value: never 0 (etcd's default is filled
    /// in); negative disables the quota, as in etcd.
    pub quota_backend_bytes: i64,
    /// `--experimental-lease-checkpoint-interval`.
    pub lease_checkpoint_interval: Duration,
    /// `--strict-reconfig-check`.
    pub strict_reconfig_check: bool,
    /// `--experimental-initial-corrupt-check`: compare hashes with the peers before serving.
    pub initial_corrupt_check: bool,
    /// `--experimental-corrupt-check-time`: how often the leader compares the members'
    /// hashes (zero: never).
    pub corrupt_check_time: Duration,
    /// The cluster this member bootstraps or belongs to.
    pub cluster: ClusterSpec,
    /// How `https://` peer URLs are dialled (`--peer-cert-file`, `--peer-trusted-ca-file`,
    /// `--peer-auto-tls`, ...).
    pub peer_tls: oxcd_peer::PeerTls,
    /// `--auto-compaction-mode` and `--auto-compaction-retention` (`None`: off).
    pub auto_compaction: Option<crate::compactor::AutoCompaction>,
    /// `--auth-token`: `simple`, or `jwt,pub-key=...,priv-key=...,sign-method=...,ttl=...`.
    pub auth_token: String,
    /// `--auth-token-ttl`: how long a simple token lives after its last use.
    pub auth_token_ttl: Duration,
    /// `--bcrypt-cost`.
    pub bcrypt_cost: u32,
}

impl CoreConfig {
    /// Election timeout in heartbeat ticks (etcd: election-timeout / heartbeat-interval).
    pub fn election_ticks(&self) -> usize {
        let ticks = self.election_timeout.as_millis() / self.heartbeat_interval.as_millis().max(1);
        (ticks as usize).max(2)
    }

    /// etcd's request timeout: 5 s plus two election timeouts.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(5) + 2 * self.election_timeout
    }
}

/// How this member's cluster is described at bootstrap (`--initial-*` flags) and which
/// URLs it advertises. URLs are in etcd's text form (`http://host:port`).
#[derive(Debug, Clone, Default)]
pub struct ClusterSpec {
    /// `--initial-cluster`: member name -> peer URLs.
    pub initial_cluster: BTreeMap<String, Vec<String>>,
    /// `--initial-cluster-token`.
    pub initial_cluster_token: String,
    /// `--initial-advertise-peer-urls`.
    pub initial_advertise_peer_urls: Vec<String>,
    /// `--advertise-client-urls`.
    pub advertise_client_urls: Vec<String>,
    /// `--initial-cluster-state existing`: a new data dir joins a running cluster (learning
    /// the membership from its peers) instead of bootstrapping a new one.
    pub join_existing: bool,
}
