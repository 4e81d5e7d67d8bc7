//! oxcd-raft: consensus for oxcd.
//!
//! * [`wal`]: our own crc-chained, segmented write-ahead log.
//! * [`RaftNode`] / [`RaftHandle`]: a raft-rs `RawNode` driven by a
//!   dedicated thread, persisting through the WAL with group commit and
//!   handing committed entries to the application in log order, only after
//!   they are fdatasync'ed; membership changes and snapshots with
//!   application data go through the same stream, and leadership changes are
//!   pushed to watchers ([`RaftHandle::leadership`]).
//! * [`wire`]: the peer encoding of raft messages (prost; raft-rs's own
//!   `protobuf` 2.28 codec never sees bytes from the network).
//!
//! Payloads are opaque bytes: this crate knows nothing about keys or values.

mod fsync_observer;
mod node;
pub mod sched;
pub mod wal;
pub mod wire;

pub use fsync_observer::{set_fsync_observer, wal_write_bytes, DurationObserver};
pub use node::{
    conf_change, heartbeat_send_failures, CommittedEntry, EntryKind, Leadership, NoopTransport,
    RaftConfig, RaftError, RaftHandle, RaftNode, RaftStatus, Role, SnapshotSource,
    SnapshotUnavailable, StartOptions, Transport,
};
pub use wal::{Wal, WalContents, WalError, WalOptions};

/// raft-rs protocol types (e.g. `eraftpb::Message` for [`Transport`]).
pub use raft::eraftpb;
/// How a snapshot send ended, for [`RaftHandle::report_snapshot`].
pub use raft::SnapshotStatus;
