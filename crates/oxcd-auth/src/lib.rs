//! oxcd-auth: etcd's auth store. Users (bcrypt-hashed passwords, roles), roles (key
//! permissions), whether auth is enabled and the auth revision, all kept in the backend's
//! auxiliary tables `auth`, `authUsers` and `authRoles` (etcd's bucket names) and written in
//! the same transaction as the raft entry that changed them; each user's permissions merged
//! into key intervals ([`perms`]); and the tokens ([`token`]).
//!
//! Every change goes through raft and is applied here by each member in log order
//! (`oxcd-core`'s applier chain); checks ([`AuthStore::is_op_permitted`],
//! [`AuthStore::is_admin_permitted`]) read the in-memory copy.

mod error;
pub mod perms;
mod store;
pub mod token;

pub use error::AuthError;
pub use oxcd_proto::authpb::permission::Type as PermType;
pub use store::{AuthStore, DEFAULT_BCRYPT_COST};
pub use token::{simple_token_index, TokenProvider};

/// Who a request comes from, and the auth revision its token was issued at.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthInfo {
    /// The user name.
    pub username: String,
    /// The auth revision the request's permissions are checked against.
    pub revision: u64,
}
