//! The client's error type, and the one place where a gRPC status becomes an etcd error kind.
//!
//! etcd servers say what went wrong with a gRPC code and a fixed text (Go's
//! `rpctypes.ErrGRPC*`); [`ErrorKind::from_status`] maps both back to a kind, so callers can
//! match on `ErrorKind::Compacted` instead of comparing strings.

use std::time::Duration;

use tonic::{Code, Status};

/// What kind of failure an [`Error`] is: etcd's server-side error kinds plus the client's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// "etcdserver: key is not provided".
    EmptyKey,
    /// "etcdserver: key not found" (`ignore_value`/`ignore_lease` on a missing key).
    KeyNotFound,
    /// "etcdserver: value is provided".
    ValueProvided,
    /// "etcdserver: lease is provided".
    LeaseProvided,
    /// "etcdserver: too many operations in txn request".
    TooManyOps,
    /// "etcdserver: duplicate key given in txn request".
    DuplicateKey,
    /// The revision asked for was compacted (also a watch whose start revision was compacted).
    Compacted,
    /// The revision asked for is above the current revision.
    FutureRevision,
    /// "etcdserver: mvcc: database space exceeded".
    NoSpace,
    /// "etcdserver: requested lease not found" (also a kept-alive lease that expired).
    LeaseNotFound,
    /// "etcdserver: lease already exists".
    LeaseExists,
    /// "etcdserver: too large lease TTL".
    LeaseTtlTooLarge,
    /// "etcdserver: watch canceled".
    WatchCanceled,
    /// "etcdserver: member ID already exist".
    MemberExists,
    /// "etcdserver: Peer URLs already exists".
    PeerUrlExists,
    /// "etcdserver: re-configuration failed due to not enough started members".
    MemberNotEnoughStarted,
    /// "etcdserver: given member URLs are invalid".
    MemberBadUrls,
    /// "etcdserver: member not found".
    MemberNotFound,
    /// "etcdserver: can only promote a learner member".
    MemberNotLearner,
    /// "etcdserver: can only promote a learner member which is in sync with leader".
    LearnerNotReady,
    /// "etcdserver: too many learner members in cluster".
    TooManyLearners,
    /// "etcdserver: request is too large".
    RequestTooLarge,
    /// "etcdserver: too many requests".
    TooManyRequests,
    /// "etcdserver: root user does not exist".
    RootUserNotExist,
    /// "etcdserver: root user does not have root role".
    RootRoleNotExist,
    /// "etcdserver: user name already exists".
    UserAlreadyExists,
    /// "etcdserver: user name is empty".
    UserEmpty,
    /// "etcdserver: user name not found".
    UserNotFound,
    /// "etcdserver: role name already exists".
    RoleAlreadyExists,
    /// "etcdserver: role name not found".
    RoleNotFound,
    /// "etcdserver: role name is empty".
    RoleEmpty,
    /// "etcdserver: authentication failed, invalid user ID or password".
    AuthFailed,
    /// "etcdserver: permission denied".
    PermissionDenied,
    /// "etcdserver: role is not granted to the user".
    RoleNotGranted,
    /// "etcdserver: permission is not granted to the role".
    PermissionNotGranted,
    /// "etcdserver: authentication is not enabled".
    AuthNotEnabled,
    /// "etcdserver: invalid auth token" (the client re-authenticates by itself).
    InvalidAuthToken,
    /// "etcdserver: invalid auth management".
    InvalidAuthManagement,
    /// "etcdserver: revision of auth store is old" (the client re-authenticates by itself).
    AuthOldRevision,
    /// "etcdserver: no leader".
    NoLeader,
    /// "etcdserver: not leader".
    NotLeader,
    /// "etcdserver: leader changed".
    LeaderChanged,
    /// "etcdserver: not capable".
    NotCapable,
    /// "etcdserver: server stopped".
    Stopped,
    /// The server timed out the request ("etcdserver: request timed out", and its variants).
    ServerTimeout,
    /// "etcdserver: unhealthy cluster".
    Unhealthy,
    /// "etcdserver: corrupt cluster".
    Corrupt,
    /// "etcdserver: rpc not supported for learner".
    NotSupportedForLearner,
    /// "etcdserver: bad leader transferee".
    BadLeaderTransferee,
    /// The server does not implement this call.
    Unimplemented,
    /// No endpoint could be reached (connection refused, reset, DNS...).
    Unavailable,
    /// The call's deadline passed on the client.
    DeadlineExceeded,
    /// The call was canceled.
    Canceled,
    /// A kept-alive lease or a registration's lease is gone.
    LeaseLost,
    /// The client was given something unusable (a bad endpoint URL, an empty service name...).
    InvalidArgument,
    /// Anything else the server said.
    Other,
}

/// etcd's server errors: kind, gRPC code and exact text (Go's `rpctypes`).
const ETCD_ERRORS: &[(ErrorKind, Code, &str)] = &[
    (
        ErrorKind::EmptyKey,
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    ),
    (
        ErrorKind::KeyNotFound,
        Code::InvalidArgument,
        "etcdserver: key not found",
    ),
    (
        ErrorKind::ValueProvided,
        Code::InvalidArgument,
        "etcdserver: value is provided",
    ),
    (
        ErrorKind::LeaseProvided,
        Code::InvalidArgument,
        "etcdserver: lease is provided",
    ),
    (
        ErrorKind::TooManyOps,
        Code::InvalidArgument,
        "etcdserver: too many operations in txn request",
    ),
    (
        ErrorKind::DuplicateKey,
        Code::InvalidArgument,
        "etcdserver: duplicate key given in txn request",
    ),
    (
        ErrorKind::Compacted,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    ),
    (
        ErrorKind::FutureRevision,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    ),
    (
        ErrorKind::NoSpace,
        Code::ResourceExhausted,
        "etcdserver: mvcc: database space exceeded",
    ),
    (
        ErrorKind::LeaseNotFound,
        Code::NotFound,
        "etcdserver: requested lease not found",
    ),
    (
        ErrorKind::LeaseExists,
        Code::FailedPrecondition,
        "etcdserver: lease already exists",
    ),
    (
        ErrorKind::LeaseTtlTooLarge,
        Code::OutOfRange,
        "etcdserver: too large lease TTL",
    ),
    (
        ErrorKind::WatchCanceled,
        Code::Cancelled,
        "etcdserver: watch canceled",
    ),
    (
        ErrorKind::MemberExists,
        Code::FailedPrecondition,
        "etcdserver: member ID already exist",
    ),
    (
        ErrorKind::PeerUrlExists,
        Code::FailedPrecondition,
        "etcdserver: Peer URLs already exists",
    ),
    (
        ErrorKind::MemberNotEnoughStarted,
        Code::FailedPrecondition,
        "etcdserver: re-configuration failed due to not enough started members",
    ),
    (
        ErrorKind::MemberBadUrls,
        Code::InvalidArgument,
        "etcdserver: given member URLs are invalid",
    ),
    (
        ErrorKind::MemberNotFound,
        Code::NotFound,
        "etcdserver: member not found",
    ),
    (
        ErrorKind::MemberNotLearner,
        Code::FailedPrecondition,
        "etcdserver: can only promote a learner member",
    ),
    (
        ErrorKind::LearnerNotReady,
        Code::FailedPrecondition,
        "etcdserver: can only promote a learner member which is in sync with leader",
    ),
    (
        ErrorKind::TooManyLearners,
        Code::FailedPrecondition,
        "etcdserver: too many learner members in cluster",
    ),
    (
        ErrorKind::RequestTooLarge,
        Code::InvalidArgument,
        "etcdserver: request is too large",
    ),
    (
        ErrorKind::TooManyRequests,
        Code::ResourceExhausted,
        "etcdserver: too many requests",
    ),
    (
        ErrorKind::RootUserNotExist,
        Code::FailedPrecondition,
        "etcdserver: root user does not exist",
    ),
    (
        ErrorKind::RootRoleNotExist,
        Code::FailedPrecondition,
        "etcdserver: root user does not have root role",
    ),
    (
        ErrorKind::UserAlreadyExists,
        Code::FailedPrecondition,
        "etcdserver: user name already exists",
    ),
    (
        ErrorKind::UserEmpty,
        Code::InvalidArgument,
        "etcdserver: user name is empty",
    ),
    (
        ErrorKind::UserNotFound,
        Code::FailedPrecondition,
        "etcdserver: user name not found",
    ),
    (
        ErrorKind::RoleAlreadyExists,
        Code::FailedPrecondition,
        "etcdserver: role name already exists",
    ),
    (
        ErrorKind::RoleNotFound,
        Code::FailedPrecondition,
        "etcdserver: role name not found",
    ),
    (
        ErrorKind::RoleEmpty,
        Code::InvalidArgument,
        "etcdserver: role name is empty",
    ),
    (
        ErrorKind::AuthFailed,
        Code::InvalidArgument,
        "etcdserver: authentication failed, invalid user ID or password",
    ),
    (
        ErrorKind::PermissionDenied,
        Code::PermissionDenied,
        "etcdserver: permission denied",
    ),
    (
        ErrorKind::RoleNotGranted,
        Code::FailedPrecondition,
        "etcdserver: role is not granted to the user",
    ),
    (
        ErrorKind::PermissionNotGranted,
        Code::FailedPrecondition,
        "etcdserver: permission is not granted to the role",
    ),
    (
        ErrorKind::AuthNotEnabled,
        Code::FailedPrecondition,
        "etcdserver: authentication is not enabled",
    ),
    (
        ErrorKind::InvalidAuthToken,
        Code::Unauthenticated,
        "etcdserver: invalid auth token",
    ),
    (
        ErrorKind::InvalidAuthManagement,
        Code::InvalidArgument,
        "etcdserver: invalid auth management",
    ),
    (
        ErrorKind::AuthOldRevision,
        Code::InvalidArgument,
        "etcdserver: revision of auth store is old",
    ),
    (
        ErrorKind::NoLeader,
        Code::Unavailable,
        "etcdserver: no leader",
    ),
    (
        ErrorKind::NotLeader,
        Code::FailedPrecondition,
        "etcdserver: not leader",
    ),
    (
        ErrorKind::LeaderChanged,
        Code::Unavailable,
        "etcdserver: leader changed",
    ),
    (
        ErrorKind::NotCapable,
        Code::Unavailable,
        "etcdserver: not capable",
    ),
    (
        ErrorKind::Stopped,
        Code::Unavailable,
        "etcdserver: server stopped",
    ),
    (
        ErrorKind::ServerTimeout,
        Code::Unavailable,
        "etcdserver: request timed out",
    ),
    (
        ErrorKind::ServerTimeout,
        Code::Unavailable,
        "etcdserver: request timed out, possibly due to previous leader failure",
    ),
    (
        ErrorKind::ServerTimeout,
        Code::Unavailable,
        "etcdserver: request timed out, possibly due to connection lost",
    ),
    (
        ErrorKind::ServerTimeout,
        Code::Unavailable,
        "etcdserver: request timed out, waiting for the applied index took too long",
    ),
    (
        ErrorKind::Unhealthy,
        Code::Unavailable,
        "etcdserver: unhealthy cluster",
    ),
    (
        ErrorKind::Corrupt,
        Code::DataLoss,
        "etcdserver: corrupt cluster",
    ),
    (
        ErrorKind::NotSupportedForLearner,
        Code::Unavailable,
        "etcdserver: rpc not supported for learner",
    ),
    (
        ErrorKind::BadLeaderTransferee,
        Code::FailedPrecondition,
        "etcdserver: bad leader transferee",
    ),
];

impl ErrorKind {
    /// The kind of a gRPC status an etcd (or oxcd) server answered with.
    ///
    /// The text decides, as in Go's `rpctypes.Error`; a status without one of etcd's texts
    /// falls back to its code.
    pub fn from_status(status: &Status) -> ErrorKind {
        if let Some((kind, _, _)) = ETCD_ERRORS
            .iter()
            .find(|(_, _, text)| *text == status.message())
        {
            return *kind;
        }
        match status.code() {
            Code::Unavailable => ErrorKind::Unavailable,
            Code::DeadlineExceeded => ErrorKind::DeadlineExceeded,
            Code::Cancelled => ErrorKind::Canceled,
            Code::PermissionDenied => ErrorKind::PermissionDenied,
            Code::Unimplemented => ErrorKind::Unimplemented,
            Code::Unauthenticated => ErrorKind::InvalidAuthToken,
            _ => ErrorKind::Other,
        }
    }

    /// etcd's exact text for this kind, if the server has one.
    pub fn etcd_text(self) -> Option<&'static str> {
        ETCD_ERRORS
            .iter()
            .find(|(kind, _, _)| *kind == self)
            .map(|(_, _, text)| *text)
    }
}

/// An error from an oxcd-client call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an error status.
    #[error("{message}")]
    Server {
        /// The etcd error kind, decoded from `code` and `message`.
        kind: ErrorKind,
        /// The gRPC status code.
        code: Code,
        /// The server's text (etcd's exact wording for etcd's errors).
        message: String,
    },
    /// No endpoint answered; `cause` says why the last one failed.
    #[error("cannot reach {endpoint}: {cause}")]
    Unreachable {
        /// The endpoint tried last.
        endpoint: String,
        /// The transport's reason (connection refused, reset...).
        cause: String,
    },
    /// The call did not finish within its timeout.
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    /// A watch's start revision was compacted: events from there on cannot be delivered.
    #[error("watch start revision was compacted (compact revision {compact_revision})")]
    WatchCompacted {
        /// The server's compacted revision; watching can restart from here.
        compact_revision: i64,
    },
    /// The server canceled a watch for another reason than compaction.
    #[error("watch canceled by the server: {reason}")]
    WatchCanceled {
        /// The server's cancel reason (may be empty).
        reason: String,
    },
    /// A kept-alive lease expired or was revoked.
    #[error("lease {lease_id:x} lost")]
    LeaseLost {
        /// The lost lease.
        lease_id: i64,
    },
    /// The client was given something unusable.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The client was shut down, or a background task it needs is gone.
    #[error("client closed")]
    Closed,
}

impl Error {
    /// The error's kind, for matching.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Server { kind, .. } => *kind,
            Error::Unreachable { .. } => ErrorKind::Unavailable,
            Error::Timeout(_) => ErrorKind::DeadlineExceeded,
            Error::WatchCompacted { .. } => ErrorKind::Compacted,
            Error::WatchCanceled { .. } => ErrorKind::WatchCanceled,
            Error::LeaseLost { .. } => ErrorKind::LeaseLost,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::Closed => ErrorKind::Canceled,
        }
    }

    /// etcd's error with this exact text, if it is one of etcd's (a watch's cancel reason
    /// carries such a text without a status).
    pub(crate) fn from_etcd_text(text: &str) -> Option<Error> {
        ETCD_ERRORS
            .iter()
            .find(|(_, _, known)| *known == text)
            .map(|(kind, code, text)| Error::Server {
                kind: *kind,
                code: *code,
                message: (*text).to_string(),
            })
    }

    /// An error from a status the server (or the transport) gave.
    pub(crate) fn from_status(status: Status, endpoint: &str) -> Error {
        if is_transport_failure(&status) {
            return Error::Unreachable {
                endpoint: endpoint.to_string(),
                cause: transport_cause(&status),
            };
        }
        Error::Server {
            kind: ErrorKind::from_status(&status),
            code: status.code(),
            message: status.message().to_string(),
        }
    }
}

/// Whether a status is the transport's (the connection failed or broke) rather than a
/// server's answer.
pub(crate) fn is_transport_failure(status: &Status) -> bool {
    let from_transport = std::error::Error::source(status)
        .is_some_and(|cause| cause.is::<tonic::transport::Error>());
    from_transport
        || (status.code() == Code::Unavailable && !status.message().starts_with("etcdserver:"))
}

/// Whether the request surely never reached a server (the connection was never made), so
/// even a write may be sent again.
pub(crate) fn never_sent(status: &Status) -> bool {
    is_transport_failure(status) && {
        let cause = transport_cause(status);
        ["tcp connect error", "dns error", "Connection refused"]
            .iter()
            .any(|sign| cause.contains(sign))
    }
}

/// The chain of causes of a transport failure, innermost last.
fn transport_cause(status: &Status) -> String {
    let mut text = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_etcd_text_maps_back_to_its_kind_and_code() {
        for (kind, code, text) in ETCD_ERRORS {
            let status = Status::new(*code, *text);
            assert_eq!(ErrorKind::from_status(&status), *kind, "{text}");
            let error = Error::from_status(status, "http://e");
            assert_eq!(error.kind(), *kind);
            assert_eq!(error.to_string(), *text);
        }
    }

    #[test]
    fn unknown_texts_fall_back_to_the_code() {
        let unavailable = Status::new(Code::Unavailable, "tcp connect error");
        assert_eq!(ErrorKind::from_status(&unavailable), ErrorKind::Unavailable);
        let error = Error::from_status(unavailable, "http://127.0.0.1:1");
        assert!(matches!(error, Error::Unreachable { .. }));
        assert_eq!(
            error.to_string(),
            "cannot reach http://127.0.0.1:1: tcp connect error"
        );
        let other = Status::new(Code::Internal, "boom");
        assert_eq!(ErrorKind::from_status(&other), ErrorKind::Other);
    }

    #[test]
    fn only_failures_to_connect_count_as_never_sent() {
        for cause in ["tcp connect error", "dns error: no such host"] {
            assert!(
                never_sent(&Status::new(Code::Unavailable, cause)),
                "{cause}"
            );
        }
        let broken = Status::new(Code::Unavailable, "connection reset by peer");
        assert!(is_transport_failure(&broken) && !never_sent(&broken));
    }

    #[test]
    fn server_unavailable_answers_are_not_transport_failures() {
        let no_leader = Status::new(Code::Unavailable, "etcdserver: no leader");
        assert!(!is_transport_failure(&no_leader));
        assert!(!never_sent(&no_leader));
        assert_eq!(
            Error::from_status(no_leader, "e").kind(),
            ErrorKind::NoLeader
        );
    }

    #[test]
    fn kinds_know_their_etcd_text() {
        assert_eq!(
            ErrorKind::Compacted.etcd_text(),
            Some("etcdserver: mvcc: required revision has been compacted")
        );
        assert_eq!(ErrorKind::Unavailable.etcd_text(), None);
    }
}
