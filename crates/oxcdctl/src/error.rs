//! Errors and exit codes, as etcdctl reports them.
//!
//! etcdctl prints `Error: <text>` on stderr and exits with one of a few fixed codes; the text of
//! a server error is the etcd error's description when it is one of etcd's known errors (as
//! clientv3 turns them into typed errors), else Go's gRPC status text.

use std::fmt;

/// etcdctl's exit codes (`ctlv3/command/error.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitCode {
    /// Any failed command.
    Error = 1,
    /// A connection or stream could not be used.
    BadConnection = 2,
    /// Malformed input of `txn` and `watch`.
    InvalidInput = 3,
    /// A valid flag with an unsupported value (e.g. an output format a command lacks).
    BadFeature = 4,
    /// A watch or keep-alive ended by the server, or an interrupted snapshot.
    Interrupted = 5,
    /// An I/O error.
    Io = 6,
    /// Bad arguments.
    BadArgs = 128,
}

/// A failure of a command: what to print after `Error: ` (if anything) and the exit code.
#[derive(Debug)]
pub(crate) struct CtlError {
    /// Exit code of the process.
    pub code: ExitCode,
    /// The text printed as `Error: <message>`; `None` when the command already said what
    /// went wrong (etcdctl's bare `os.Exit`).
    pub message: Option<String>,
}

impl CtlError {
    /// An error printed as `Error: <message>` with the given exit code.
    pub(crate) fn new(code: ExitCode, message: impl fmt::Display) -> Self {
        CtlError {
            code,
            message: Some(message.to_string()),
        }
    }

    /// An exit with `code` and nothing more printed.
    pub(crate) fn silent(code: ExitCode) -> Self {
        CtlError {
            code,
            message: None,
        }
    }

    /// Bad arguments (exit code 128).
    pub(crate) fn bad_args(message: impl fmt::Display) -> Self {
        Self::new(ExitCode::BadArgs, message)
    }
}

/// Why a call to the server failed.
#[derive(Debug, Clone)]
pub(crate) enum RpcError {
    /// No endpoint could be connected to.
    Unreachable {
        /// The endpoint tried last, as the user gave it.
        endpoint: String,
        /// The cause, such as `connection refused`.
        cause: String,
    },
    /// The command timeout passed (Go's `context deadline exceeded`).
    DeadlineExceeded,
    /// The server answered with a gRPC status.
    Status {
        /// The gRPC code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
    /// The TLS handshake with an endpoint failed (wrong CA, missing or refused client
    /// certificate, ...).
    TlsHandshake {
        /// The endpoint.
        endpoint: String,
        /// rustls' reason.
        cause: String,
    },
    /// Authentication with `--user` failed (etcdctl cannot create its client then).
    Auth(Box<RpcError>),
}

impl RpcError {
    /// The error of a gRPC status.
    pub(crate) fn from_status(status: &tonic::Status) -> Self {
        RpcError::Status {
            code: status.code(),
            message: status.message().to_string(),
        }
    }

    /// Go's text of the raw gRPC error (`rpc error: code = NotFound desc = ...`), as clientv3's
    /// retry interceptor logs it.
    pub(crate) fn grpc_text(&self) -> String {
        match self {
            RpcError::Status { code, message } => {
                format!(
                    "rpc error: code = {} desc = {}",
                    go_code_name(*code),
                    message
                )
            }
            RpcError::Auth(inner) => inner.grpc_text(),
            other => other.to_string(),
        }
    }

    /// Whether this is etcd's `permission denied`.
    pub(crate) fn is_permission_denied(&self) -> bool {
        matches!(self, RpcError::Status { message, .. } if message == "etcdserver: permission denied")
    }

    /// The exit code of a command that fails with this error, given the command's own code
    /// for a failed call: an authentication failure is etcdctl's failure to create a client.
    pub(crate) fn exit_code(&self, command_code: ExitCode) -> ExitCode {
        match self {
            RpcError::Auth(_) => ExitCode::BadConnection,
            _ => command_code,
        }
    }

    /// The command's failure `Error: <self>` with its exit code.
    pub(crate) fn fail(&self, command_code: ExitCode) -> CtlError {
        CtlError::new(self.exit_code(command_code), self)
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::Unreachable { endpoint, cause } => {
                write!(f, "cannot reach {endpoint}: {cause} — is oxcd running?")
            }
            RpcError::DeadlineExceeded => f.write_str("context deadline exceeded"),
            RpcError::Status { message, .. } if is_known_etcd_error(message) => {
                f.write_str(message)
            }
            RpcError::Status { .. } => f.write_str(&self.grpc_text()),
            RpcError::Auth(inner) => inner.fmt(f),
            RpcError::TlsHandshake { endpoint, cause } => write!(
                f,
                "TLS handshake with {endpoint} failed: {cause}; check --cacert, --cert and --key"
            ),
        }
    }
}

impl std::error::Error for RpcError {}

/// Go's name of a gRPC code (`codes.Code.String()`).
pub(crate) fn go_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

/// The error descriptions clientv3 knows as etcd errors (`rpctypes`): those print bare.
const KNOWN_ETCD_ERRORS: &[&str] = &[
    "etcdserver: key is not provided",
    "etcdserver: key not found",
    "etcdserver: value is provided",
    "etcdserver: lease is provided",
    "etcdserver: too many operations in txn request",
    "etcdserver: duplicate key given in txn request",
    "etcdserver: mvcc: required revision has been compacted",
    "etcdserver: mvcc: required revision is a future revision",
    "etcdserver: mvcc: database space exceeded",
    "etcdserver: requested lease not found",
    "etcdserver: lease already exists",
    "etcdserver: too large lease TTL",
    "etcdserver: watch canceled",
    "etcdserver: member ID already exist",
    "etcdserver: Peer URLs already exists",
    "etcdserver: re-configuration failed due to not enough started members",
    "etcdserver: given member URLs are invalid",
    "etcdserver: member not found",
    "etcdserver: can only promote a learner member",
    "etcdserver: can only promote a learner member which is in sync with leader",
    "etcdserver: too many learner members in cluster",
    "etcdserver: request is too large",
    "etcdserver: too many requests",
    "etcdserver: root user does not exist",
    "etcdserver: root user does not have root role",
    "etcdserver: user name already exists",
    "etcdserver: user name is empty",
    "etcdserver: user name not found",
    "etcdserver: role name already exists",
    "etcdserver: role name not found",
    "etcdserver: role name is empty",
    "etcdserver: authentication failed, invalid user ID or password",
    "etcdserver: permission denied",
    "etcdserver: role is not granted to the user",
    "etcdserver: permission is not granted to the role",
    "etcdserver: authentication is not enabled",
    "etcdserver: invalid auth token",
    "etcdserver: invalid auth management",
    "etcdserver: revision of auth store is old",
    "etcdserver: no leader",
    "etcdserver: not leader",
    "etcdserver: leader changed",
    "etcdserver: not capable",
    "etcdserver: server stopped",
    "etcdserver: request timed out",
    "etcdserver: request timed out, possibly due to previous leader failure",
    "etcdserver: request timed out, possibly due to connection lost",
    "etcdserver: request timed out, waiting for the applied index took too long",
    "etcdserver: unhealthy cluster",
    "etcdserver: corrupt cluster",
    "etcdserver: rpc not supported for learner",
    "etcdserver: bad leader transferee",
];

/// Whether clientv3 maps this description to a typed etcd error.
pub(crate) fn is_known_etcd_error(message: &str) -> bool {
    KNOWN_ETCD_ERRORS.contains(&message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_errors_print_bare_and_others_as_go_status() {
        let known = RpcError::Status {
            code: tonic::Code::NotFound,
            message: "etcdserver: requested lease not found".into(),
        };
        assert_eq!(known.to_string(), "etcdserver: requested lease not found");
        assert_eq!(
            known.grpc_text(),
            "rpc error: code = NotFound desc = etcdserver: requested lease not found"
        );
        let other = RpcError::Status {
            code: tonic::Code::Unimplemented,
            message: "nope".into(),
        };
        assert_eq!(
            other.to_string(),
            "rpc error: code = Unimplemented desc = nope"
        );
    }

    #[test]
    fn unreachable_names_the_endpoint_and_the_cause() {
        let e = RpcError::Unreachable {
            endpoint: "127.0.0.1:2379".into(),
            cause: "connection refused".into(),
        };
        assert_eq!(
            e.to_string(),
            "cannot reach 127.0.0.1:2379: connection refused — is oxcd running?"
        );
    }
}
