//! [`PeerError`]: what can go wrong between members, and its mapping to and from gRPC
//! statuses (a refusal's kind travels in a trailer so the sender can tell them apart).

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// The text etcd gives for a request from (or to) a member that has been removed.
pub const MEMBER_REMOVED: &str = "the member has been permanently removed from the cluster";

/// The text etcd gives for an unknown lease.
pub const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";

/// Trailer naming the kind of a refusal.
const REFUSAL_KEY: &str = "oxcd-peer-refusal";

/// Errors of the peer transport and of [`crate::PeerHandler`] calls.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The other side belongs to another cluster.
    #[error(
        "cluster id mismatch: member {remote_member:x} of cluster {remote_cluster:x} \
         is not a member of cluster {local_cluster:x} (check --initial-cluster-token and \
         the data dir)"
    )]
    ClusterIdMismatch {
        /// The receiver's cluster id.
        local_cluster: u64,
        /// The sender's cluster id.
        remote_cluster: u64,
        /// The sender's member id.
        remote_member: u64,
    },
    /// The sender has been removed from the cluster (etcd's `errMemberRemoved`).
    #[error("the member has been permanently removed from the cluster")]
    MemberRemoved,
    /// A lease forwarded to the leader does not exist there.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// The member asked is not (or no longer) the leader; ask the new one.
    #[error("etcdserver: not leader")]
    NotLeader,
    /// A forwarded MemberPromote names no member (etcd's `membership.ErrIDNotFound`).
    #[error("membership: ID not found")]
    MemberNotFound,
    /// A forwarded MemberPromote names a voter (etcd's `membership.ErrMemberNotLearner`).
    #[error("membership: can only promote a learner member")]
    MemberNotLearner,
    /// A forwarded MemberPromote names a learner that has not caught up with the leader
    /// (etcd's `ErrLearnerNotReady`).
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// The peer refused this member for belonging to another cluster (its message says
    /// which ids differ).
    #[error("refused by the peer: {0}")]
    Refused(String),
    /// The other side could not be reached or the connection broke.
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// Bad configuration (a peer URL, the dial override).
    #[error("peer configuration: {0}")]
    Config(String),
    /// A peer sent something this member cannot accept.
    #[error("invalid peer request: {0}")]
    InvalidRequest(String),
    /// This member cannot serve the request now (raft stopped, disk error, ...).
    #[error("{0}")]
    Internal(String),
}

impl PeerError {
    fn refusal_kind(&self) -> Option<&'static str> {
        match self {
            PeerError::ClusterIdMismatch { .. } => Some("cluster-id-mismatch"),
            PeerError::MemberRemoved => Some("member-removed"),
            PeerError::LeaseNotFound => Some("lease-not-found"),
            PeerError::NotLeader => Some("not-leader"),
            _ => None,
        }
    }

    /// Whether the error says this member may not talk to the cluster at all (so retrying
    /// is pointless).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            PeerError::ClusterIdMismatch { .. } | PeerError::MemberRemoved | PeerError::Refused(_)
        )
    }
}

impl From<PeerError> for Status {
    fn from(e: PeerError) -> Status {
        let code = match &e {
            PeerError::ClusterIdMismatch { .. }
            | PeerError::MemberRemoved
            | PeerError::Refused(_) => Code::FailedPrecondition,
            PeerError::LeaseNotFound | PeerError::MemberNotFound => Code::NotFound,
            PeerError::MemberNotLearner | PeerError::LearnerNotReady => Code::FailedPrecondition,
            PeerError::NotLeader | PeerError::Unreachable(_) | PeerError::Internal(_) => {
                Code::Unavailable
            }
            PeerError::Config(_) | PeerError::InvalidRequest(_) => Code::InvalidArgument,
        };
        let mut status = Status::new(code, e.to_string());
        if let Some(kind) = e.refusal_kind() {
            status
                .metadata_mut()
                .insert(REFUSAL_KEY, MetadataValue::from_static(kind));
        }
        status
    }
}

impl From<Status> for PeerError {
    fn from(s: Status) -> PeerError {
        let kind = s
            .metadata()
            .get(REFUSAL_KEY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        match kind {
            "member-removed" => PeerError::MemberRemoved,
            "lease-not-found" => PeerError::LeaseNotFound,
            "not-leader" => PeerError::NotLeader,
            // The ids are in the message.
            "cluster-id-mismatch" => PeerError::Refused(s.message().to_string()),
            _ if s.code() == Code::Unavailable || s.code() == Code::Unknown => {
                PeerError::Unreachable(s.message().to_string())
            }
            _ => PeerError::Internal(format!("{:?}: {}", s.code(), s.message())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_survive_the_trip_through_a_status() {
        for e in [
            PeerError::MemberRemoved,
            PeerError::LeaseNotFound,
            PeerError::NotLeader,
        ] {
            assert_eq!(PeerError::from(Status::from(e.clone())), e);
        }
        let mismatch = PeerError::ClusterIdMismatch {
            local_cluster: 0xa,
            remote_cluster: 0xb,
            remote_member: 0xc,
        };
        let status = Status::from(mismatch.clone());
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(
            PeerError::from(status.clone()),
            PeerError::Refused(mismatch.to_string())
        );
        assert!(status.message().contains("member c of cluster b"));
        assert!(status.message().contains("cluster a"));
        assert_eq!(MEMBER_REMOVED, PeerError::MemberRemoved.to_string());
        assert_eq!(LEASE_NOT_FOUND, PeerError::LeaseNotFound.to_string());
    }
}
