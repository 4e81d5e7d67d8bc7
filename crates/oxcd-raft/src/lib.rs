//! oxcd-raft: consensus for oxcd.
//!
//! * [`wal`]: our own crc-chained, segmented write-ahead log.
//! * [`RaftNode`] / [`RaftHandle`]: a raft-rs `RawNode` driven by a
//!   dedicated thread, persisting through the WAL with group commit and
//!   handing committed entries to the application in log order, only after
//!   they are fdatasync'ed.
//!
//! Payloads are opaque bytes: this crate knows nothing about keys or values.

mod node;
pub mod sched;
pub mod wal;

pub use node::{
    CommittedEntry, EntryKind, NoopTransport, RaftConfig, RaftError, RaftHandle, RaftNode,
    RaftStatus, Transport,
};
pub use wal::{Wal, WalContents, WalError, WalOptions};

/// raft-rs protocol types (e.g. `eraftpb::Message` for [`Transport`]).
pub use raft::eraftpb;
