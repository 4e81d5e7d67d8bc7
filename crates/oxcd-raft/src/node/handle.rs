//! [`RaftHandle`]: what the application holds to talk to the node thread.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use parking_lot::Mutex;
use raft::eraftpb::{ConfChangeV2, ConfState, Message};
use raft::SnapshotStatus;
use tokio::sync::{oneshot, watch};

use super::{Leadership, ProposeReply, RaftError, RaftStatus, RejectGuard, Request, Shared};

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
    /// Wraps the channel to a started node thread.
    pub(crate) fn new(
        tx: mpsc::Sender<Request>,
        shared: Arc<Shared>,
        leadership: watch::Receiver<Leadership>,
        thread: JoinHandle<()>,
    ) -> Self {
        let inner = Inner {
            tx,
            shared,
            leadership,
            thread: Mutex::new(Some(thread)),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

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

    /// On the leader, how far each member's log matches the leader's (raft's
    /// `Progress.matched`, the leader's own included); `None` on any other member.
    /// etcd's learner promotion rule reads it.
    pub async fn match_indexes(
        &self,
    ) -> Result<Option<std::collections::HashMap<u64, u64>>, RaftError> {
        let (reply, rx) = oneshot::channel();
        self.inner.send(Request::MatchIndexes { reply })?;
        rx.await.map_err(|_| RaftError::Stopped)
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

    /// Asks the leader to hand leadership to voter `to` (etcd's MoveLeader;
    /// also before a graceful stop). The leader first brings `to` up to date,
    /// and refuses new proposals meanwhile ([`RaftError::ProposalDropped`]);
    /// the outcome shows in [`RaftHandle::leadership`]. Ignored by a member
    /// that does not lead.
    pub fn transfer_leadership(&self, to: u64) -> Result<(), RaftError> {
        self.inner.send(Request::TransferLeadership(to))
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
