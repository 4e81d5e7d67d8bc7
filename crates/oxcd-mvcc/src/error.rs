//! Error type of the MVCC store.

/// Errors returned by [`crate::Store`].
///
/// The `Display` texts are the mvcc/etcdserver-level texts of etcd; the server maps
/// each variant to etcd's gRPC code and message in one place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MvccError {
    /// The requested revision is older than the compaction revision.
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    /// The requested revision is newer than the current revision.
    #[error("mvcc: required revision is a future revision")]
    FutureRev,
    /// `ignore_value` / `ignore_lease` on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// A put names a lease that the lessor does not know.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// `ignore_value` with a non-empty value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// `ignore_lease` with a non-zero lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// The storage engine failed (I/O, redb internal error). After such an error the
    /// store refuses further writes: reopen it to recover the last committed state.
    #[error("mvcc: backend error: {0}")]
    Backend(String),
    /// The on-disk data is not what this crate wrote.
    #[error("mvcc: corrupt data: {what}")]
    Corrupt {
        /// What was found to be wrong.
        what: String,
    },
}

impl MvccError {
    pub(crate) fn backend(e: impl std::fmt::Display) -> Self {
        MvccError::Backend(e.to_string())
    }

    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        MvccError::Corrupt { what: what.into() }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for MvccError {
            fn from(e: $t) -> Self {
                MvccError::backend(e)
            }
        }
    )*};
}

from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);
