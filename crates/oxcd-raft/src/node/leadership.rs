//! The leadership signal: this member's raft role, the leader it knows and
//! the term, pushed to watchers by the node thread whenever one of them
//! changes (see [`crate::RaftHandle::leadership`]).

use raft::StateRole;

/// This member's raft role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one: `leader_id` 0).
    Follower,
    /// Probing whether an election could be won (pre-vote), without raising the term.
    PreCandidate,
    /// Campaigning for leadership in a new term.
    Candidate,
    /// Leads the cluster.
    Leader,
}

impl From<StateRole> for Role {
    fn from(r: StateRole) -> Self {
        match r {
            StateRole::Follower => Role::Follower,
            StateRole::PreCandidate => Role::PreCandidate,
            StateRole::Candidate => Role::Candidate,
            StateRole::Leader => Role::Leader,
        }
    }
}

/// Who leads, as this member sees it. A new value is published the moment
/// any field changes; a stopped node publishes `Follower` with no leader,
/// then closes the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Leadership {
    /// This member's role.
    pub role: Role,
    /// The leader this member knows of (0: none).
    pub leader_id: u64,
    /// The current raft term.
    pub term: u64,
}

impl Leadership {
    /// Before the node has started: no leader, term 0.
    pub(crate) const NONE: Leadership = Leadership {
        role: Role::Follower,
        leader_id: 0,
        term: 0,
    };

    /// Whether this member is the leader.
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }

    /// Whether some member (this one or another) is known to lead.
    pub fn has_leader(&self) -> bool {
        self.leader_id != 0
    }
}
