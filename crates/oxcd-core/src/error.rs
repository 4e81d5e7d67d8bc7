//! The one place where oxcd's errors become etcd's gRPC status codes and texts.
//!
//! Clients match errors on code *and* message (`rpctypes.ErrGRPC*` in Go clientv3, string
//! compares in Python and Node), so every variant here carries exactly etcd's wording.

use oxcd_auth::AuthError;
use oxcd_lease::LeaseError;
use oxcd_mvcc::MvccError;
use oxcd_raft::RaftError;
use thiserror::Error;
use tonic::{Code, Status};

/// An error a client request can end in.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ServerError {
    /// Empty key in a request.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// `ignore_value`/`ignore_lease` on a key that does not exist; an empty RequestOp.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// `ignore_value` with a value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// `ignore_lease` with a lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// More ops in a txn than `--max-txn-ops`.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// Overlapping writes in one txn.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// Read or compaction below the compacted revision.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// Read or compaction above the current revision.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    /// Backend over quota.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// Unknown lease.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// LeaseGrant with an id that is already granted.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// LeaseGrant with a TTL above 9,000,000,000 s.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// Request larger than `--max-request-bytes`.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// No raft leader.
    #[error("etcdserver: no leader")]
    NoLeader,
    /// This member is not the leader (for leader-only operations).
    #[error("etcdserver: not leader")]
    NotLeader,
    /// Leadership changed while a request was in flight.
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    /// The server is shutting down.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// The request was not applied in time.
    #[error("etcdserver: request timed out")]
    Timeout,
    /// The applier did not catch up with the commit index in time (lease reads).
    #[error("etcdserver: request timed out, waiting for the applied index took too long")]
    TimeoutWaitAppliedIndex,
    /// MemberAdd of an id that exists.
    #[error("etcdserver: member ID already exist")]
    MemberExist,
    /// A peer URL another member has.
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExist,
    /// `--strict-reconfig-check`: the change would leave fewer started members than a quorum.
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    MemberNotEnoughStarted,
    /// Peer URLs that do not parse.
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    /// No such member (or it was removed).
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// MemberPromote of a voter.
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    /// MemberPromote of a learner that has not caught up.
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// MemberAdd of a second learner.
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    /// MoveLeader to a member that is not a voter.
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    /// MoveLeader did not complete within the request timeout.
    #[error("etcdserver: request timed out, leader transfer took too long")]
    TimeoutLeaderTransfer,
    /// A learner serves only Status and serializable Range (etcd 3.4).
    #[error("etcdserver: rpc not supported for learner")]
    NotSupportedForLearner,
    /// Corrupt data detected.
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    /// Election Leader/Observe: nobody campaigns (v3election; gRPC code Unknown).
    #[error("election: no leader")]
    ElectionNoLeader,
    /// Election Proclaim with a key that no longer leads (v3election).
    #[error("election: not leader")]
    ElectionNotLeader,
    /// Election Proclaim/Resign without a leader key (v3election).
    #[error("\"leader\" field must be provided")]
    MissingLeaderKey,
    /// AuthEnable without a `root` user.
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    /// AuthEnable while user `root` lacks role `root`.
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    /// UserAdd of an existing user.
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    /// An empty user name; a request without credentials while auth is enabled.
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    /// No such user.
    #[error("etcdserver: user name not found")]
    UserNotFound,
    /// RoleAdd of an existing role.
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    /// No such role.
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    /// An empty role name.
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    /// Wrong password or unknown user.
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// The user lacks the permission (or root, for admin operations).
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    /// UserRevokeRole of a role the user does not have.
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    /// RoleRevokePermission of a permission the role does not have.
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    /// Authenticate while auth is disabled.
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    /// A token that is unknown, expired or forged.
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    /// Deleting `root`, or revoking role `root` from `root`, while auth is enabled.
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    /// The request's auth revision is older than the store's: authenticate again.
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// A password given for a user added without one (etcd passes its auth text through,
    /// gRPC code Unknown).
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    /// A JWT provider holding only the public key was asked to sign (code Unknown).
    #[error("auth: token signing attempted with verify-only key")]
    VerifyOnly,
    /// An unexpected internal failure (disk, encoding); the text says which.
    #[error("etcdserver: {0}")]
    Internal(String),
}

impl ServerError {
    /// etcd's gRPC code for this error.
    pub fn code(&self) -> Code {
        use ServerError::*;
        match self {
            EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey
            | RequestTooLarge | MemberBadUrls | UserEmpty | RoleEmpty | AuthFailed
            | InvalidAuthMgmt | AuthOldRevision => Code::InvalidArgument,
            PermissionDenied => Code::PermissionDenied,
            InvalidAuthToken => Code::Unauthenticated,
            RootUserNotExist | RootRoleNotExist | UserAlreadyExist | UserNotFound
            | RoleAlreadyExist | RoleNotFound | RoleNotGranted | PermissionNotGranted
            | AuthNotEnabled => Code::FailedPrecondition,
            NoPasswordUser | VerifyOnly => Code::Unknown,
            Compacted | FutureRev | LeaseTtlTooLarge => Code::OutOfRange,
            NoSpace => Code::ResourceExhausted,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            NotLeader
            | LeaseExists
            | MemberExist
            | PeerUrlExist
            | MemberNotEnoughStarted
            | MemberNotLearner
            | LearnerNotReady
            | TooManyLearners
            | BadLeaderTransferee => Code::FailedPrecondition,
            NoLeader
            | LeaderChanged
            | Stopped
            | Timeout
            | TimeoutWaitAppliedIndex
            | NotSupportedForLearner
            | TimeoutLeaderTransfer => Code::Unavailable,
            Corrupt => Code::DataLoss,
            ElectionNoLeader | ElectionNotLeader | MissingLeaderKey => Code::Unknown,
            Internal(_) => Code::Internal,
        }
    }
}

impl From<ServerError> for Status {
    fn from(e: ServerError) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

impl From<MvccError> for ServerError {
    fn from(e: MvccError) -> ServerError {
        match e {
            MvccError::Compacted => ServerError::Compacted,
            MvccError::FutureRev => ServerError::FutureRev,
            MvccError::KeyNotFound => ServerError::KeyNotFound,
            MvccError::LeaseNotFound => ServerError::LeaseNotFound,
            MvccError::ValueProvided => ServerError::ValueProvided,
            MvccError::LeaseProvided => ServerError::LeaseProvided,
            other => ServerError::Internal(other.to_string()),
        }
    }
}

impl From<AuthError> for ServerError {
    fn from(e: AuthError) -> ServerError {
        match e {
            AuthError::RootUserNotExist => ServerError::RootUserNotExist,
            AuthError::RootRoleNotExist => ServerError::RootRoleNotExist,
            AuthError::UserAlreadyExist => ServerError::UserAlreadyExist,
            AuthError::UserEmpty => ServerError::UserEmpty,
            AuthError::UserNotFound => ServerError::UserNotFound,
            AuthError::RoleAlreadyExist => ServerError::RoleAlreadyExist,
            AuthError::RoleNotFound => ServerError::RoleNotFound,
            AuthError::RoleEmpty => ServerError::RoleEmpty,
            AuthError::AuthFailed => ServerError::AuthFailed,
            AuthError::NoPasswordUser => ServerError::NoPasswordUser,
            AuthError::PermissionDenied => ServerError::PermissionDenied,
            AuthError::RoleNotGranted => ServerError::RoleNotGranted,
            AuthError::PermissionNotGranted => ServerError::PermissionNotGranted,
            AuthError::AuthNotEnabled => ServerError::AuthNotEnabled,
            AuthError::AuthOldRevision => ServerError::AuthOldRevision,
            AuthError::InvalidAuthToken => ServerError::InvalidAuthToken,
            AuthError::InvalidAuthMgmt => ServerError::InvalidAuthMgmt,
            AuthError::VerifyOnly => ServerError::VerifyOnly,
            AuthError::Hash(e) => ServerError::Internal(e),
            AuthError::Backend(e) => e.into(),
        }
    }
}

impl From<LeaseError> for ServerError {
    fn from(e: LeaseError) -> ServerError {
        match e {
            LeaseError::NotFound => ServerError::LeaseNotFound,
            LeaseError::Exists => ServerError::LeaseExists,
            LeaseError::TtlTooLarge => ServerError::LeaseTtlTooLarge,
            LeaseError::Backend(e) => e.into(),
        }
    }
}

impl From<RaftError> for ServerError {
    fn from(e: RaftError) -> ServerError {
        match e {
            RaftError::NoLeader => ServerError::NoLeader,
            RaftError::NotLeader { .. } => ServerError::NotLeader,
            RaftError::Stopped => ServerError::Stopped,
            RaftError::ProposalDropped => ServerError::NoLeader,
            other => ServerError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_codes_and_texts() {
        let cases = [
            (
                ServerError::TimeoutWaitAppliedIndex,
                Code::Unavailable,
                "etcdserver: request timed out, waiting for the applied index took too long",
            ),
            (
                ServerError::EmptyKey,
                Code::InvalidArgument,
                "etcdserver: key is not provided",
            ),
            (
                ServerError::RequestTooLarge,
                Code::InvalidArgument,
                "etcdserver: request is too large",
            ),
            (
                ServerError::TooManyOps,
                Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
            (
                ServerError::DuplicateKey,
                Code::InvalidArgument,
                "etcdserver: duplicate key given in txn request",
            ),
            (
                ServerError::Compacted,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                ServerError::FutureRev,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            (
                ServerError::LeaseNotFound,
                Code::NotFound,
                "etcdserver: requested lease not found",
            ),
            (
                ServerError::LeaseExists,
                Code::FailedPrecondition,
                "etcdserver: lease already exists",
            ),
            (
                ServerError::LeaseTtlTooLarge,
                Code::OutOfRange,
                "etcdserver: too large lease TTL",
            ),
            (
                ServerError::NoLeader,
                Code::Unavailable,
                "etcdserver: no leader",
            ),
            (
                ServerError::MemberNotFound,
                Code::NotFound,
                "etcdserver: member not found",
            ),
            (
                ServerError::LearnerNotReady,
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member which is in sync with leader",
            ),
            (
                ServerError::NotSupportedForLearner,
                Code::Unavailable,
                "etcdserver: rpc not supported for learner",
            ),
            (
                ServerError::BadLeaderTransferee,
                Code::FailedPrecondition,
                "etcdserver: bad leader transferee",
            ),
            (
                ServerError::AuthFailed,
                Code::InvalidArgument,
                "etcdserver: authentication failed, invalid user ID or password",
            ),
            (
                ServerError::InvalidAuthToken,
                Code::Unauthenticated,
                "etcdserver: invalid auth token",
            ),
            (
                ServerError::PermissionDenied,
                Code::PermissionDenied,
                "etcdserver: permission denied",
            ),
            (
                ServerError::AuthOldRevision,
                Code::InvalidArgument,
                "etcdserver: revision of auth store is old",
            ),
            (
                ServerError::UserEmpty,
                Code::InvalidArgument,
                "etcdserver: user name is empty",
            ),
            (
                ServerError::RootUserNotExist,
                Code::FailedPrecondition,
                "etcdserver: root user does not exist",
            ),
            (
                ServerError::MemberBadUrls,
                Code::InvalidArgument,
                "etcdserver: given member URLs are invalid",
            ),
        ];
        for (e, code, text) in cases {
            let s: Status = e.into();
            assert_eq!(s.code(), code);
            assert_eq!(s.message(), text);
        }
    }

    #[test]
    fn mvcc_errors_map_to_etcd() {
        assert_eq!(
            ServerError::from(MvccError::Compacted),
            ServerError::Compacted
        );
        assert_eq!(
            ServerError::from(MvccError::FutureRev),
            ServerError::FutureRev
        );
        assert_eq!(
            ServerError::from(MvccError::LeaseNotFound),
            ServerError::LeaseNotFound
        );
    }
}
