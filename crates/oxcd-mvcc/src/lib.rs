//! oxcd-mvcc: the revisioned key space of oxcd, persisted in redb, with etcd v3
//! semantics (etcd's `mvcc` package plus the KV part of its applier).
//!
//! Layout: [`revision`] (revision and on-disk key encoding), [`key_index`] (the
//! in-memory index of key generations), [`backend`] (redb tables), `kv_ops`
//! (request semantics: range/put/delete/txn), `compact` (compaction, its deletions in the background), `history`
//! (watchers' reads of past events), `aux` (generic auxiliary tables written in the
//! same batch), `builder` (a new backend from rows imported from etcd), `defrag` (rewriting the backend file without its free pages), `snapshot` (exporting
//! the backend for a peer and replacing it with one received), `dump` (the snapshot
//! stream a client saves, and a backend rebuilt from one) and
//! [`Store`] (the public entry point).

#![warn(missing_docs)]

mod aux;
pub mod backend;
mod builder;
mod compact;
mod defrag;
mod dump;
mod error;
mod hash;
mod history;
pub mod key_index;
mod key_range;
mod kv_ops;
mod op_counts;
mod restore_file;
pub mod revision;
mod rows;
mod snapshot;
mod store;

pub use aux::AuxEntry;
pub use builder::{BackendBuilder, BuiltBackend};
pub use compact::spawn_compactor;
pub use defrag::DefragStats;
pub use dump::{is_dump, restore_dump, scan_dump, SnapshotDump};
pub use error::MvccError;
pub use hash::KvHash;
pub use history::{History, HistoryRequest};
pub use key_range::{key_bounds, KeyRange};
pub use op_counts::OpCounts;
pub use revision::Revision;
pub use snapshot::{is_backend_file, scan_file, EntryVisitor, ExportInfo, FileScan};
pub use store::{LeaseAttachment, Store, DEFAULT_CACHE_BYTES, IN_USE_MAX_AGE};

#[cfg(test)]
mod tests;
