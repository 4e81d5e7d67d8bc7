//! Errors of the raft node.

use crate::wal::WalError;

/// Errors returned by [`crate::RaftNode`] and [`crate::RaftHandle`].
#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    /// This member is a follower; `leader_id` is the current leader.
    #[error("not the leader (leader is member {leader_id:x})")]
    NotLeader {
        /// Raft id of the current leader.
        leader_id: u64,
    },
    /// No leader is known right now (election in progress).
    #[error("no leader")]
    NoLeader,
    /// The node has stopped (shut down, or a fatal WAL error).
    #[error("raft node stopped")]
    Stopped,
    /// raft refused the proposal (e.g. leadership transfer in progress).
    #[error("proposal dropped by raft")]
    ProposalDropped,
    /// Empty payloads are reserved for raft's own no-op entries.
    #[error("empty proposals are not allowed")]
    EmptyProposal,
    /// A read barrier did not complete in time (leader unreachable?).
    #[error("read index timed out")]
    Timeout,
    /// An earlier membership change is not applied yet; propose again later.
    #[error("a membership change is still being applied")]
    ConfChangePending,
    /// The membership change does not fit the current configuration.
    #[error("membership change refused: {0}")]
    ConfChangeRefused(&'static str),
    /// The configuration is invalid.
    #[error("invalid raft config: {0}")]
    InvalidConfig(String),
    /// The WAL and the backend disagree in a way raft cannot recover from.
    #[error("inconsistent raft state: {0}")]
    Inconsistent(String),
    /// WAL failure (fatal for the node).
    #[error(transparent)]
    Wal(#[from] WalError),
    /// Error from raft-rs.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
}
