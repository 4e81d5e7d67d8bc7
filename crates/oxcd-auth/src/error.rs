//! The auth store's errors, one per etcd `auth.Err*`; `oxcd-core/src/error.rs` maps each to
//! etcd's gRPC code and text.

use oxcd_mvcc::MvccError;
use thiserror::Error;

/// An auth operation's failure.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// AuthEnable without a `root` user.
    #[error("auth: root user does not exist")]
    RootUserNotExist,
    /// AuthEnable while `root` lacks role `root`.
    #[error("auth: root user does not have root role")]
    RootRoleNotExist,
    /// UserAdd of an existing name.
    #[error("auth: user already exists")]
    UserAlreadyExist,
    /// An empty user name, or a request without a user while auth is enabled.
    #[error("auth: user name is empty")]
    UserEmpty,
    /// No such user.
    #[error("auth: user not found")]
    UserNotFound,
    /// RoleAdd of an existing name.
    #[error("auth: role already exists")]
    RoleAlreadyExist,
    /// No such role.
    #[error("auth: role not found")]
    RoleNotFound,
    /// An empty role name.
    #[error("auth: role name is empty")]
    RoleEmpty,
    /// Wrong password or unknown user.
    #[error("auth: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// A password given for a user added with `no_password`.
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    /// The user lacks the permission.
    #[error("auth: permission denied")]
    PermissionDenied,
    /// UserRevokeRole of a role the user does not have.
    #[error("auth: role is not granted to the user")]
    RoleNotGranted,
    /// RoleRevokePermission of a permission the role does not have.
    #[error("auth: permission is not granted to the role")]
    PermissionNotGranted,
    /// Authenticate while auth is disabled.
    #[error("auth: authentication is not enabled")]
    AuthNotEnabled,
    /// The request was checked against an older auth revision than the store's.
    #[error("auth: revision in header is old")]
    AuthOldRevision,
    /// A token that is unknown, expired, forged or of another cluster.
    #[error("auth: invalid auth token")]
    InvalidAuthToken,
    /// Deleting `root`, or revoking role `root` from user `root`, while auth is enabled.
    #[error("auth: invalid auth management")]
    InvalidAuthMgmt,
    /// The token provider cannot sign (a JWT provider with only a public key).
    #[error("auth: token signing attempted with verify-only key")]
    VerifyOnly,
    /// Hashing a password failed.
    #[error("auth: cannot hash the password: {0}")]
    Hash(String),
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] MvccError),
}
