//! The applier: one thread that applies committed raft entries, in log order, to the MVCC
//! store, then answers the waiting handlers.
//!
//! Every entry's index is written into the store (the consistent index) in the same backend
//! transaction as its effects, so replaying the WAL above the durable consistent index after
//! a crash applies each entry exactly once. Backend commits are cheap (no fsync) after every
//! batch so reads see the writes at once; every [`DURABLE_INTERVAL`] a commit is made durable
//! and raft is told it may release WAL up to that index.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oxcd_mvcc::Store;
use oxcd_proto::oxcdinternal::{raft_request::Op, RaftRequest};
use oxcd_raft::{CommittedEntry, EntryKind, RaftHandle};
use prost::Message;
use tokio::sync::{mpsc, watch};

use crate::error::ServerError;
use crate::lease::{apply_lease_op, Lessor};
use crate::server::{ApplyResponse, ApplyResult, EventSink, Waiters};

/// How often a backend commit is made durable.
pub const DURABLE_INTERVAL: Duration = Duration::from_millis(100);
/// How many applied entries force a durable commit regardless of time.
pub const DURABLE_ENTRIES: u64 = 10_000;

/// What the applier needs.
pub struct Applier {
    /// The store entries are applied to.
    pub store: Arc<Store>,
    /// Raft, told about applied and durable progress.
    pub raft: RaftHandle,
    /// Handlers waiting for results.
    pub waiters: Arc<Waiters>,
    /// Published applied index.
    pub applied_tx: watch::Sender<u64>,
    /// Receives the events of each applied write (watch hub).
    pub events: Option<EventSink>,
    /// Told after each backend commit, so the events given to `events` so far are
    /// readable from the backend (the watch hub publishes them only then).
    pub events_committed: Option<Box<dyn Fn() + Send + Sync>>,
    /// Leases: grants, revokes, checkpoints and key attachments are applied here.
    pub lessor: Arc<Lessor>,
}

/// The applier cannot continue: the backend failed. The server must stop.
#[derive(Debug, thiserror::Error)]
#[error("applying raft entries failed: {0}")]
pub struct FatalApplyError(pub String);

impl Applier {
    /// Applies batches until the raft node closes the channel, committing the backend
    /// durably at least every [`DURABLE_INTERVAL`] while there is something to commit.
    /// Whatever way it ends, every waiting handler is answered.
    pub async fn run(
        self,
        rx: mpsc::UnboundedReceiver<Vec<CommittedEntry>>,
    ) -> Result<(), FatalApplyError> {
        let result = self.apply_loop(rx).await;
        self.waiters.fail_all(ServerError::Stopped);
        if let Err(e) = &result {
            tracing::error!(error = %e, "applier stopped: the backend failed");
        }
        result
    }

    async fn apply_loop(
        &self,
        mut rx: mpsc::UnboundedReceiver<Vec<CommittedEntry>>,
    ) -> Result<(), FatalApplyError> {
        let mut last_durable = Instant::now();
        let mut undurable_entries = 0u64;
        let mut last_applied = self.store.consistent_index();
        loop {
            let batch = if undurable_entries > 0 {
                let wait = DURABLE_INTERVAL.saturating_sub(last_durable.elapsed());
                match tokio::time::timeout(wait, rx.recv()).await {
                    Ok(b) => b,
                    Err(_) => {
                        self.commit_durable(last_applied)?;
                        last_durable = Instant::now();
                        undurable_entries = 0;
                        continue;
                    }
                }
            } else {
                rx.recv().await
            };
            let Some(mut batch) = batch else { break };
            if undurable_entries == 0 {
                // The durable-commit clock starts with the first entry not yet durable, so
                // a write after an idle spell does not wait for a backend fsync.
                last_durable = Instant::now();
            }
            // Group whatever else is already committed into the same backend commit.
            while let Ok(more) = rx.try_recv() {
                batch.extend(more);
            }
            let mut results = Vec::new();
            for entry in &batch {
                if entry.index <= last_applied {
                    continue;
                }
                if let Some(r) = self.apply_entry(entry) {
                    results.push(r);
                }
                last_applied = entry.index;
                undurable_entries += 1;
            }
            // Make the batch visible to readers (no fsync: the WAL holds it durably), then
            // answer the waiters before any durable backend commit.
            self.store
                .commit(false)
                .map_err(|e| FatalApplyError(e.to_string()))?;
            self.raft.set_applied(last_applied);
            let _ = self.applied_tx.send(last_applied);
            if let Some(committed) = &self.events_committed {
                committed();
            }
            for (id, result) in results {
                self.waiters.trigger(id, result);
            }
            if last_durable.elapsed() >= DURABLE_INTERVAL || undurable_entries >= DURABLE_ENTRIES {
                self.commit_durable(last_applied)?;
                last_durable = Instant::now();
                undurable_entries = 0;
            }
        }
        // Shutting down: make everything applied durable so the next start replays nothing.
        self.commit_durable(last_applied)
    }

    fn commit_durable(&self, applied: u64) -> Result<(), FatalApplyError> {
        self.store
            .commit(true)
            .map_err(|e| FatalApplyError(e.to_string()))?;
        self.raft.set_durable_applied(applied);
        Ok(())
    }

    /// Applies one entry; returns the waiter id and result for entries carrying a request.
    fn apply_entry(&self, entry: &CommittedEntry) -> Option<(u64, ApplyResult)> {
        if entry.kind != EntryKind::Normal {
            // Membership changes are not produced yet (the cluster issue applies them); a
            // ConfChange payload must never be decoded as a request.
            tracing::warn!(index = entry.index, "ignoring a membership change entry");
            self.store.set_consistent_index(entry.index);
            return None;
        }
        if entry.data.is_empty() {
            // raft's own empty entry at the start of a term.
            self.store.set_consistent_index(entry.index);
            return None;
        }
        let req = match RaftRequest::decode(entry.data.as_slice()) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(index = entry.index, error = %e, "skipping undecodable raft entry");
                self.store.set_consistent_index(entry.index);
                return None;
            }
        };
        let Some(op) = req.op else {
            self.store.set_consistent_index(entry.index);
            return Some((req.id, Err(ServerError::Internal("empty request".into()))));
        };
        let result = self.apply_op(op, entry.index);
        if result.is_err() {
            // A failed request changes no key; still record that the entry was applied.
            self.store.set_consistent_index(entry.index);
        }
        Some((req.id, result))
    }

    fn apply_op(&self, op: Op, index: u64) -> ApplyResult {
        let lessor = &*self.lessor;
        let lease_ok = |lease: i64| lessor.exists(lease);
        let (response, events) = match op {
            Op::Put(r) => {
                let (resp, ev) = self.store.put(&r, index, &lease_ok)?;
                (ApplyResponse::Put(resp), ev)
            }
            Op::DeleteRange(r) => {
                let (resp, ev) = self.store.delete_range(&r, index)?;
                (ApplyResponse::DeleteRange(resp), ev)
            }
            Op::Txn(r) => {
                let (resp, ev) = self.store.txn(&r, index, &lease_ok)?;
                (ApplyResponse::Txn(resp), ev)
            }
            Op::Compaction(r) => {
                let resp = self.store.compact(r.revision, index)?;
                (ApplyResponse::Compaction(resp), Vec::new())
            }
            op @ (Op::LeaseGrant(_) | Op::LeaseRevoke(_) | Op::LeaseCheckpoint(_)) => {
                apply_lease_op(&self.store, lessor, op, index)?
            }
            Op::Alarm(_) => {
                return Err(ServerError::Internal(
                    "operation not supported by this oxcd build".into(),
                ))
            }
        };
        // Puts attach keys to leases, deletes detach them.
        lessor.on_events(&events);
        if let Some(sink) = &self.events {
            if !events.is_empty() {
                sink(events);
            }
        }
        Ok(response)
    }
}
