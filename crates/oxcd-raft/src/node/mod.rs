//! The raft node: a raft-rs `RawNode` owned by one dedicated std thread.
//!
//! Threads and channels:
//! * [`RaftHandle`] (cheap to clone, usable from async code) sends requests
//!   (propose, read index, peer messages, shutdown) over a std `mpsc`
//!   channel to the node thread and awaits answers on tokio `oneshot`s.
//! * The node thread waits on that channel with a timeout until the next
//!   tick, drains everything queued (so concurrent proposals land in one
//!   `Ready` and share one fdatasync), ticks, then processes `Ready`s.
//! * Committed entries go, in log order and only after they are durable in
//!   the WAL, to a tokio unbounded channel read by the application's applier.
//! * Status and applied indexes are shared through atomics / a mutex, so
//!   [`RaftHandle::status`], [`RaftHandle::set_applied`] and
//!   [`RaftHandle::set_durable_applied`] never wait for the node thread.
//!   Leadership changes are pushed through a tokio `watch` channel
//!   ([`RaftHandle::leadership`]).
//! * Membership changes: proposed with [`RaftHandle::propose_conf_change`],
//!   delivered committed as [`EntryKind::ConfChange`] entries, and applied by
//!   the applier with [`RaftHandle::apply_conf_change`], which runs raft's
//!   `apply_conf_change` on the node thread and records the new membership in
//!   the WAL. Until the applier has done so, raft's own applied index stays
//!   below the entry, so no second change can be proposed meanwhile.
//! * Snapshots: see [`snapshot`].
//!
//! The node stops on [`RaftHandle::shutdown`], when the last handle is
//! dropped, when the committed-entries receiver is dropped, or on a fatal WAL
//! error; afterwards every call returns [`RaftError::Stopped`] and the
//! committed channel closes.

#[cfg(test)]
mod cluster_tests;
mod config;
mod error;
mod handle;
mod heartbeat;
mod leadership;
mod logger;
mod membership;
mod snapshot;
mod storage;
#[cfg(test)]
mod tests;
mod transport;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use parking_lot::Mutex;
use raft::eraftpb::{ConfChangeV2, ConfState, Message};
use raft::SnapshotStatus;
use tokio::sync::{mpsc as tokio_mpsc, oneshot, watch};

pub use config::{RaftConfig, StartOptions};
pub use error::RaftError;
pub use handle::RaftHandle;
pub use heartbeat::heartbeat_send_failures;
pub use leadership::{Leadership, Role};
pub use membership::conf_change;
pub use snapshot::{SnapshotSource, SnapshotUnavailable};
pub use transport::{NoopTransport, Transport};

use crate::wal::{Wal, WalOptions};
use config::validate;

/// Kind of a committed entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// An application payload (or raft's own no-op, with empty data).
    Normal,
    /// A membership change: `data` is an encoded `ConfChangeV2` (read it with
    /// [`crate::wire::decode_conf_change`]). The applier must pass every one
    /// to [`RaftHandle::apply_conf_change`] (or
    /// [`RaftHandle::reject_conf_change`]), also those at or below an index
    /// its state already holds: raft's membership lives on the node thread.
    ConfChange,
    /// A snapshot received from the leader: `data` is what the leader's
    /// [`SnapshotSource`] produced, `index`/`term` its raft position. The
    /// applier replaces its state with the snapshot's (which holds `index`
    /// or more) before applying the entries that follow, skipping those its
    /// new state already holds. Also delivered first at start-up when the
    /// member stopped after receiving a snapshot but before its backend
    /// durably held it.
    Snapshot,
}

/// An entry committed by raft, handed to the applier in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedEntry {
    /// Raft log index.
    pub index: u64,
    /// Raft term the entry was proposed in.
    pub term: u64,
    /// Opaque payload; empty for raft's own no-op entries (ignore those).
    pub data: Vec<u8>,
    /// Entry kind.
    pub kind: EntryKind,
}

/// A point-in-time view of the node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftStatus {
    /// This member's id.
    pub id: u64,
    /// Current leader (0 = none known).
    pub leader_id: u64,
    /// Current term.
    pub term: u64,
    /// Highest committed index.
    pub commit_index: u64,
    /// Highest index the applier reported via [`RaftHandle::set_applied`].
    pub applied_index: u64,
    /// Whether this member is the leader.
    pub is_leader: bool,
    /// First log index still held in memory (older entries live only in the WAL).
    pub log_first_index: u64,
}

/// Called with the reason a proposal was not appended to the log; dropped
/// unused when it was.
pub(crate) type OnRejected = Box<dyn FnOnce(RaftError) + Send>;

/// How the node thread answers a proposal.
pub(crate) enum ProposeReply {
    /// An awaited result either way.
    Result(oneshot::Sender<Result<(), RaftError>>),
    /// Only a rejection is reported; acceptance costs the proposer no wake-up.
    /// Dropped without an answer (the node stopped first), it reports
    /// [`RaftError::Stopped`].
    OnRejected(RejectGuard),
}

impl ProposeReply {
    pub(crate) fn send(self, result: Result<(), RaftError>) {
        match self {
            ProposeReply::Result(tx) => {
                let _ = tx.send(result);
            }
            ProposeReply::OnRejected(mut guard) => {
                let f = guard.0.take();
                if let (Err(e), Some(f)) = (result, f) {
                    f(e);
                }
            }
        }
    }
}

/// Calls its callback with [`RaftError::Stopped`] if dropped unanswered.
pub(crate) struct RejectGuard(Option<OnRejected>);

impl Drop for RejectGuard {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(RaftError::Stopped);
        }
    }
}

/// Requests from handles to the node thread.
pub(crate) enum Request {
    Propose {
        data: Vec<u8>,
        reply: ProposeReply,
    },
    ReadIndex {
        reply: oneshot::Sender<Result<u64, RaftError>>,
    },
    ProposeConfChange {
        cc: ConfChangeV2,
        reply: oneshot::Sender<Result<(), RaftError>>,
    },
    /// `cc` `None`: the applier rejected the change.
    ApplyConfChange {
        index: u64,
        cc: Option<ConfChangeV2>,
        reply: oneshot::Sender<Result<ConfState, RaftError>>,
    },
    ReportSnapshot {
        to: u64,
        status: SnapshotStatus,
    },
    ReportUnreachable(u64),
    TransferLeadership(u64),
    /// The leader's view of each member's replicated log (`None` on a non-leader).
    MatchIndexes {
        reply: oneshot::Sender<Option<std::collections::HashMap<u64, u64>>>,
    },
    Step(Box<Message>),
    Shutdown,
}

/// State shared between handles and the node thread without locking the
/// thread itself.
#[derive(Default)]
pub(crate) struct Shared {
    pub status: Mutex<RaftStatus>,
    /// Current membership (as raft applied it).
    pub conf_state: Mutex<ConfState>,
    pub applied: AtomicU64,
    pub durable_applied: AtomicU64,
    pub stopped: AtomicBool,
}

/// Entry point for starting a member. The returned [`RaftHandle`] owns the
/// node thread: shutting it down, or dropping the last clone, stops it.
#[derive(Debug)]
pub struct RaftNode;

impl RaftNode {
    /// Opens the WAL, rebuilds raft state, and starts the node thread with
    /// no peer networking ([`NoopTransport`]). Blocks for WAL recovery and
    /// the first fsyncs; a single voter is leader when this returns.
    pub fn start(
        cfg: RaftConfig,
    ) -> Result<
        (
            RaftHandle,
            tokio_mpsc::UnboundedReceiver<Vec<CommittedEntry>>,
        ),
        RaftError,
    > {
        Self::start_with_transport(cfg, NoopTransport)
    }

    /// Like [`RaftNode::start`], sending peer messages through `transport`.
    pub fn start_with_transport<T: Transport>(
        cfg: RaftConfig,
        transport: T,
    ) -> Result<
        (
            RaftHandle,
            tokio_mpsc::UnboundedReceiver<Vec<CommittedEntry>>,
        ),
        RaftError,
    > {
        Self::start_with_options(cfg, transport, WalOptions::default())
    }

    /// Like [`RaftNode::start_with_transport`] with explicit WAL options
    /// (e.g. a small segment size in tests).
    pub fn start_with_options<T: Transport>(
        cfg: RaftConfig,
        transport: T,
        wal_opts: WalOptions,
    ) -> Result<
        (
            RaftHandle,
            tokio_mpsc::UnboundedReceiver<Vec<CommittedEntry>>,
        ),
        RaftError,
    > {
        let opts = StartOptions {
            wal: wal_opts,
            ..StartOptions::default()
        };
        Self::start_with(cfg, transport, opts)
    }

    /// Like [`RaftNode::start_with_transport`] with the optional parts
    /// (snapshot source, WAL and in-memory log tunables).
    pub fn start_with<T: Transport>(
        cfg: RaftConfig,
        transport: T,
        opts: StartOptions,
    ) -> Result<
        (
            RaftHandle,
            tokio_mpsc::UnboundedReceiver<Vec<CommittedEntry>>,
        ),
        RaftError,
    > {
        validate(&cfg)?;
        let (wal, contents) = Wal::open_with(&cfg.wal_dir, opts.wal.clone())?;
        let shared = Arc::new(Shared::default());
        shared.applied.store(cfg.applied, Ordering::Relaxed);
        shared.durable_applied.store(cfg.applied, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        let (ctx, crx) = tokio_mpsc::unbounded_channel();
        let (leadership_tx, leadership) = watch::channel(Leadership::NONE);
        let parts = worker::Parts {
            transport,
            rx,
            committed: ctx,
            shared: shared.clone(),
            leadership: leadership_tx,
        };
        let mut w = worker::Worker::new(&cfg, wal, contents, parts, opts)?;
        w.bootstrap()?;
        let thread = std::thread::Builder::new()
            .name(format!("raft-{:x}", cfg.id))
            .spawn(move || {
                crate::sched::prefer_batching_for_current_thread();
                w.run()
            })
            .map_err(|e| RaftError::InvalidConfig(format!("spawning the raft thread: {e}")))?;
        Ok((RaftHandle::new(tx, shared, leadership, thread), crx))
    }
}
