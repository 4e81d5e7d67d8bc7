//! What a member is started with: [`RaftConfig`] (required) and
//! [`StartOptions`] (optional parts).

use std::path::PathBuf;
use std::time::Duration;

use super::{RaftError, SnapshotSource};
use crate::wal::WalOptions;

/// Configuration of a raft member.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// This member's raft id (non-zero).
    pub id: u64,
    /// All voter ids including this one; used only when the WAL has no
    /// recorded membership yet (a new cluster). Empty: this member joins an
    /// existing cluster and learns the membership from the leader (a
    /// snapshot), as etcd's `--initial-cluster-state existing`.
    pub peers: Vec<u64>,
    /// WAL directory, e.g. `<data-dir>/member/wal`.
    pub wal_dir: PathBuf,
    /// Tick interval (= etcd `--heartbeat-interval`, default 100ms).
    pub tick: Duration,
    /// Election timeout in ticks (etcd election-timeout / heartbeat, default 10).
    pub election_ticks: usize,
    /// Heartbeat interval in ticks (1).
    pub heartbeat_ticks: usize,
    /// Compact the in-memory log and release WAL segments every this many
    /// applied entries (0 disables compaction).
    pub snapshot_count: u64,
    /// Consistent index durable in the backend: committed entries above it
    /// are delivered again at start-up.
    pub applied: u64,
}

impl RaftConfig {
    /// A config with etcd-like defaults (100ms tick, 10/1 ticks,
    /// snapshot every 10 000 entries, nothing applied yet).
    pub fn new(id: u64, peers: Vec<u64>, wal_dir: impl Into<PathBuf>) -> Self {
        Self {
            id,
            peers,
            wal_dir: wal_dir.into(),
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 1,
            snapshot_count: 10_000,
            applied: 0,
        }
    }
}

/// Optional parts of a member, for [`crate::RaftNode::start_with`].
pub struct StartOptions {
    /// WAL tunables.
    pub wal: WalOptions,
    /// Produces the data of snapshots sent to peers that fell behind the
    /// in-memory log. Without one, such a peer is never sent a snapshot (and
    /// cannot catch up); a single member never needs one.
    pub snapshot_source: Option<Box<dyn SnapshotSource>>,
    /// Entries the in-memory log keeps behind the index applied and durable
    /// in the backend (etcd's catch-up entries): a peer further behind gets a
    /// snapshot. Default [`StartOptions::DEFAULT_CATCH_UP_ENTRIES`].
    pub catch_up_entries: u64,
}

impl StartOptions {
    /// etcd's `SnapshotCatchUpEntries`.
    pub const DEFAULT_CATCH_UP_ENTRIES: u64 = 5_000;
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            wal: WalOptions::default(),
            snapshot_source: None,
            catch_up_entries: Self::DEFAULT_CATCH_UP_ENTRIES,
        }
    }
}

impl std::fmt::Debug for StartOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartOptions")
            .field("wal", &self.wal)
            .field("snapshot_source", &self.snapshot_source.is_some())
            .field("catch_up_entries", &self.catch_up_entries)
            .finish()
    }
}

pub(crate) fn validate(cfg: &RaftConfig) -> Result<(), RaftError> {
    if cfg.id == 0 {
        return Err(RaftError::InvalidConfig("id must be non-zero".into()));
    }
    if !cfg.peers.is_empty() && !cfg.peers.contains(&cfg.id) {
        return Err(RaftError::InvalidConfig(format!(
            "peers {:?} do not include id {}",
            cfg.peers, cfg.id
        )));
    }
    if cfg.tick.is_zero() {
        return Err(RaftError::InvalidConfig("tick must be positive".into()));
    }
    if cfg.heartbeat_ticks == 0 || cfg.election_ticks <= cfg.heartbeat_ticks {
        return Err(RaftError::InvalidConfig(
            "election_ticks must be greater than heartbeat_ticks (> 0)".into(),
        ));
    }
    Ok(())
}
