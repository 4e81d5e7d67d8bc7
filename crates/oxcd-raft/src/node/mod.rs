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
mod error;
mod leadership;
mod logger;
mod membership;
mod snapshot;
mod storage;
#[cfg(test)]
mod tests;
mod transport;
mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use raft::eraftpb::{ConfChangeV2, ConfState, Message};
use raft::SnapshotStatus;
use tokio::sync::{mpsc as tokio_mpsc, oneshot, watch};

pub use error::RaftError;
pub use leadership::{Leadership, Role};
pub use membership::conf_change;
pub use snapshot::{SnapshotSource, SnapshotUnavailable};
pub use transport::{NoopTransport, Transport};

use crate::wal::{Wal, WalOptions};

/// Configuration of a raft member.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// This member's raft id (non-zero).
    pub id: u64,
    /// All voter ids including this one; used only when the WAL has no
    /// recorded membership yet (a new cluster). Empty: this member joins an
    /// existing cluster and learns the membership from the leader (a
    /// snapshot), as etcd's `--initial-cluster-state existing`.
    pub peers: Vec<u64>,
    /// WAL directory, e.g. `<data-dir>/member/wal`.
    pub wal_dir: PathBuf,
    /// Tick interval (= etcd `--heartbeat-interval`, default 100ms).
    pub tick: Duration,
    /// Election timeout in ticks (etcd election-timeout / heartbeat, default 10).
    pub election_ticks: usize,
    /// Heartbeat interval in ticks (1).
    pub heartbeat_ticks: usize,
    /// Compact the in-memory log and release WAL segments every this many
    /// applied entries (0 disables compaction).
    pub snapshot_count: u64,
    /// Consistent index durable in the backend: committed entries above it
    /// are delivered again at start-up.
    pub applied: u64,
}

impl RaftConfig {
    /// A config with etcd-like defaults (100ms tick, 10/1 ticks,
    /// snapshot every 10 000 entries, nothing applied yet).
    pub fn new(id: u64, peers: Vec<u64>, wal_dir: impl Into<PathBuf>) -> Self {
        Self {
            id,
            peers,
            wal_dir: wal_dir.into(),
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 1,
            snapshot_count: 10_000,
            applied: 0,
        }
    }
}

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

/// Optional parts of a member, for [`RaftNode::start_with`].
pub struct StartOptions {
    /// WAL tunables.
    pub wal: WalOptions,
    /// Produces the data of snapshots sent to peers that fell behind the
    /// in-memory log. Without one, such a peer is never sent a snapshot (and
    /// cannot catch up); a single member never needs one.
    pub snapshot_source: Option<Box<dyn SnapshotSource>>,
    /// Entries the in-memory log keeps behind the index applied and durable
    /// in the backend (etcd's catch-up entries): a peer further behind gets a
    /// snapshot. Default [`StartOptions::DEFAULT_CATCH_UP_ENTRIES`].
    pub catch_up_entries: u64,
}

impl StartOptions {
    /// etcd's `SnapshotCatchUpEntries`.
    pub const DEFAULT_CATCH_UP_ENTRIES: u64 = 5_000;
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            wal: WalOptions::default(),
            snapshot_source: None,
            catch_up_entries: Self::DEFAULT_CATCH_UP_ENTRIES,
        }
    }
}

impl std::fmt::Debug for StartOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartOptions")
            .field("wal", &self.wal)
            .field("snapshot_source", &self.snapshot_source.is_some())
            .field("catch_up_entries", &self.catch_up_entries)
            .finish()
    }
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
        let inner = Inner {
            tx,
            shared,
            leadership,
            thread: Mutex::new(Some(thread)),
        };
        Ok((
            RaftHandle {
                inner: Arc::new(inner),
            },
            crx,
        ))
    }
}

fn validate(cfg: &RaftConfig) -> Result<(), RaftError> {
    if cfg.id == 0 {
        return Err(RaftError::InvalidConfig("id must be non-zero".into()));
    }
    if !cfg.peers.is_empty() && !cfg.peers.contains(&cfg.id) {
        return Err(RaftError::InvalidConfig(format!(
            "peers {:?} do not include id {}",
            cfg.peers, cfg.id
        )));
    }
    if cfg.tick.is_zero() {
        return Err(RaftError::InvalidConfig("tick must be positive".into()));
    }
    if cfg.heartbeat_ticks == 0 || cfg.election_ticks <= cfg.heartbeat_ticks {
        return Err(RaftError::InvalidConfig(
            "election_ticks must be greater than heartbeat_ticks (> 0)".into(),
        ));
    }
    Ok(())
}

struct Inner {
    tx: mpsc::Sender<Request>,
    shared: Arc<Shared>,
    /// Never read; cloned for [`RaftHandle::leadership`].
    leadership: watch::Receiver<Leadership>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Inner {
    fn send(&self, req: Request) -> Result<(), RaftError> {
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err(RaftError::Stopped);
        }
        self.tx.send(req).map_err(|_| RaftError::Stopped)
    }

    fn stop(&self) {
        self.shared.stopped.store(true, Ordering::Release);
        // The thread may already be gone; then the send fails harmlessly.
        let _ = self.tx.send(Request::Shutdown);
        if let Some(t) = self.thread.lock().take() {
            if t.join().is_err() {
                tracing::error!("raft node thread panicked");
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Cloneable handle to a running raft node.
#[derive(Clone)]
pub struct RaftHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RaftHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftHandle")
            .field("status", &self.status())
            .finish()
    }
}

impl RaftHandle {
    /// Hands `data` to raft. Ok means appended to the leader's log (not
    /// committed): the result comes back through the committed stream.
    pub async fn propose(&self, data: Vec<u8>) -> Result<(), RaftError> {
        let (reply, rx) = oneshot::channel();
        self.inner.send(Request::Propose {
            data,
            reply: ProposeReply::Result(reply),
        })?;
        rx.await.map_err(|_| RaftError::Stopped)?
    }

    /// Hands `data` to raft without waiting: an error returned here means it
    /// was not queued; a rejection by the node thread (not leader, dropped,
    /// stopped) is reported later through `on_rejected`, which is not called
    /// at all when the entry is appended. Saves the proposer a wake-up per
    /// request when the outcome arrives through the committed stream anyway.
    pub fn propose_or_else(
        &self,
        data: Vec<u8>,
        on_rejected: impl FnOnce(RaftError) + Send + 'static,
    ) -> Result<(), RaftError> {
        if self.inner.shared.stopped.load(Ordering::Acquire) {
            return Err(RaftError::Stopped);
        }
        let reply = ProposeReply::OnRejected(RejectGuard(Some(Box::new(on_rejected))));
        // A failed send drops the request, and with it the guard, which reports
        // Stopped through the callback; the caller learns it from the callback.
        let _ = self.inner.tx.send(Request::Propose { data, reply });
        Ok(())
    }

    /// Linearizable read barrier (ReadIndex): returns the commit index the
    /// caller must wait to see applied before serving a read. Concurrent
    /// callers are batched into one ReadIndex round.
    pub async fn read_index(&self) -> Result<u64, RaftError> {
        let (reply, rx) = oneshot::channel();
        self.inner.send(Request::ReadIndex { reply })?;
        rx.await.map_err(|_| RaftError::Stopped)?
    }

    /// Feeds a raft message received from a peer into the node (decode
    /// peer bytes with [`crate::wire::decode_message`]).
    pub fn step(&self, msg: Message) -> Result<(), RaftError> {
        self.inner.send(Request::Step(Box::new(msg)))
    }

    /// Who leads, pushed by the node thread the moment role, leader or term
    /// change: `borrow()` for the current value, `changed().await` to wait
    /// for the next. The channel closes (`changed()` fails) when the node
    /// stops, after a last value with no leader.
    pub fn leadership(&self) -> watch::Receiver<Leadership> {
        let mut rx = self.inner.leadership.clone();
        rx.mark_unchanged();
        rx
    }

    /// Proposes a membership change (build it with [`crate::conf_change`]).
    /// Ok means appended to the leader's log; the change takes effect when
    /// the applier, receiving it committed, calls
    /// [`RaftHandle::apply_conf_change`]. Refused with
    /// [`RaftError::ConfChangePending`] while an earlier change is not
    /// applied yet, and with [`RaftError::ConfChangeRefused`] when it does
    /// not fit the joint-configuration state.
    pub async fn propose_conf_change(&self, cc: ConfChangeV2) -> Result<(), RaftError> {
        let (reply, rx) = oneshot::channel();
        self.inner.send(Request::ProposeConfChange { cc, reply })?;
        rx.await.map_err(|_| RaftError::Stopped)?
    }

    /// Applies the committed membership change `cc` found in the entry at
    /// `index` (run on the node thread), records the new membership durably
    /// in the WAL and returns it. A change at or below an index whose
    /// membership is already recorded (entries replayed at start-up, or
    /// covered by an installed snapshot) is not applied twice: the current
    /// membership is returned. An error from raft (a change that does not
    /// fit the membership) leaves the membership as it was.
    pub async fn apply_conf_change(
        &self,
        index: u64,
        cc: ConfChangeV2,
    ) -> Result<ConfState, RaftError> {
        self.finish_conf_change(index, Some(cc)).await
    }

    /// Tells raft that the applier refused the committed membership change
    /// at `index` (etcd refuses e.g. a member id that exists already): the
    /// membership stays as it is, which is returned, and a next change may
    /// be proposed.
    pub async fn reject_conf_change(&self, index: u64) -> Result<ConfState, RaftError> {
        self.finish_conf_change(index, None).await
    }

    async fn finish_conf_change(
        &self,
        index: u64,
        cc: Option<ConfChangeV2>,
    ) -> Result<ConfState, RaftError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .send(Request::ApplyConfChange { index, cc, reply })?;
        rx.await.map_err(|_| RaftError::Stopped)?
    }

    /// The current membership as raft has applied it.
    pub fn conf_state(&self) -> ConfState {
        self.inner.shared.conf_state.lock().clone()
    }

    /// The transport reports how sending a snapshot to `to` ended (after the
    /// data reached the peer, or failed): raft resumes replication to it.
    pub fn report_snapshot(&self, to: u64, status: SnapshotStatus) -> Result<(), RaftError> {
        self.inner.send(Request::ReportSnapshot { to, status })
    }

    /// The transport reports that member `to` could not be reached: raft
    /// stops pipelining to it until it answers again.
    pub fn report_unreachable(&self, to: u64) -> Result<(), RaftError> {
        self.inner.send(Request::ReportUnreachable(to))
    }

    /// The applier reports progress (drives log compaction and status).
    pub fn set_applied(&self, index: u64) {
        self.inner.shared.applied.fetch_max(index, Ordering::AcqRel);
    }

    /// The index durably committed (fsynced) in the backend. WAL segments
    /// are released only below `min(applied, durable_applied)`.
    pub fn set_durable_applied(&self, index: u64) {
        self.inner
            .shared
            .durable_applied
            .fetch_max(index, Ordering::AcqRel);
    }

    /// Current status; cheap (a short mutex, no round trip to the thread).
    pub fn status(&self) -> RaftStatus {
        let mut s = self.inner.shared.status.lock().clone();
        s.applied_index = self.inner.shared.applied.load(Ordering::Acquire);
        s
    }

    /// Whether the node has stopped.
    pub fn is_stopped(&self) -> bool {
        self.inner.shared.stopped.load(Ordering::Acquire)
    }

    /// Stops the node thread and waits for it to exit. Pending proposals
    /// and reads fail with [`RaftError::Stopped`]. Idempotent.
    pub fn shutdown(&self) {
        self.inner.stop();
    }
}
