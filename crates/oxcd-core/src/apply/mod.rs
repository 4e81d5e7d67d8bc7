//! The applier: one thread that applies committed raft entries, in log order, through the
//! applier chain ([`chain`]) to the MVCC store, tells the [`ApplyObserver`]s, then answers
//! the waiting handlers.
//!
//! Every entry's index is written into the store (the consistent index) in the same backend
//! transaction as its effects, so replaying the WAL above the durable consistent index after
//! a crash applies each entry exactly once. Backend commits are cheap (no fsync) after every
//! batch so reads see the writes at once; every [`DURABLE_INTERVAL`] a commit is made durable
//! and raft is told it may release WAL up to that index.

pub mod chain;

use std::sync::Arc;
use std::time::{Duration, Instant};

use oxcd_mvcc::Store;
use oxcd_proto::mvccpb::Event;
use oxcd_proto::oxcdinternal::{ConfChangeContext, RaftRequest};
use oxcd_raft::eraftpb::{ConfChangeType, ConfChangeV2};
use oxcd_raft::{CommittedEntry, EntryKind, RaftHandle};
use parking_lot::RwLock;
use prost::Message;
use tokio::sync::{mpsc, watch};

use crate::error::ServerError;
use crate::membership::{ChangeKind, Membership};
use crate::proposal::{ApplyResponse, ApplyResult, Waiters};
use chain::{ApplyLayer, EntryContext};

/// Sees what the applier applies, in log order, on the applier thread: the lessor (key
/// attachments) and the watch hub (events to watchers). Must not block.
pub trait ApplyObserver: Send + Sync {
    /// The events of one applied write (one revision), before the backend commit that
    /// makes them readable.
    fn on_applied(&self, events: &Arc<Vec<Event>>);
    /// Everything passed to [`ApplyObserver::on_applied`] so far is committed to the
    /// backend and readable.
    fn on_committed(&self) {}
    /// The membership changed (a member added, removed, promoted or updated).
    fn on_membership(&self, _membership: &Membership) {}
}

impl ApplyObserver for oxcd_lease::Lessor {
    fn on_applied(&self, events: &Arc<Vec<Event>>) {
        // Puts attach keys to leases, deletes detach them.
        self.on_events(events);
    }
}

impl ApplyObserver for oxcd_watch::Hub {
    fn on_applied(&self, events: &Arc<Vec<Event>>) {
        self.stage(events.clone());
    }

    fn on_committed(&self) {
        self.publish();
    }
}

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
    /// The applier chain, outermost layer first.
    pub chain: Box<dyn ApplyLayer>,
    /// Told of every applied write's events, in this order.
    pub observers: Vec<Arc<dyn ApplyObserver>>,
    /// The cluster's members (membership changes are applied here, not in the chain).
    pub membership: Arc<RwLock<Membership>>,
    /// What a snapshot from the leader replaces.
    pub snapshots: SnapshotInstall,
}

/// Where a received backend snapshot waits, and the state rebuilt from it.
pub struct SnapshotInstall {
    /// The received backend file (kept under this name by the peer handler).
    pub received: std::path::PathBuf,
    /// Rebuilt from the new backend.
    pub lessor: Arc<oxcd_lease::Lessor>,
    /// Rebuilt from the new backend.
    pub alarms: Arc<crate::alarm::AlarmSet>,
    /// Rebuilt from the new backend.
    pub auth: Arc<oxcd_auth::AuthStore>,
    /// Its watchers catch up from the new backend's history.
    pub hub: Arc<oxcd_watch::Hub>,
}

fn decode_conf_change(entry: &CommittedEntry) -> Result<ConfChangeV2, FatalApplyError> {
    oxcd_raft::wire::decode_conf_change(&entry.data).map_err(|e| {
        FatalApplyError(format!(
            "committed membership change {} does not decode ({e}); this member has diverged: \
             replace its data dir from a healthy member",
            entry.index
        ))
    })
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
            let mut removed_self = false;
            for entry in &batch {
                if entry.index <= last_applied {
                    // Already in the backend; raft's membership still needs every change.
                    if entry.kind == EntryKind::ConfChange {
                        let cc = decode_conf_change(entry)?;
                        self.raft
                            .apply_conf_change(entry.index, cc)
                            .await
                            .map_err(|e| FatalApplyError(e.to_string()))?;
                    }
                    continue;
                }
                let result = match entry.kind {
                    EntryKind::Normal => self.apply_entry(entry)?,
                    EntryKind::ConfChange => {
                        let (result, removed) = self.apply_conf_change(entry).await?;
                        removed_self |= removed;
                        result
                    }
                    EntryKind::Snapshot => {
                        self.install_snapshot(entry)?;
                        // Entries the new backend already holds are skipped like replays.
                        last_applied = self.store.consistent_index().max(entry.index);
                        undurable_entries += 1;
                        continue;
                    }
                };
                if let Some(r) = result {
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
            for o in &self.observers {
                o.on_committed();
            }
            for (id, result) in results {
                self.waiters.trigger(id, result);
            }
            if removed_self {
                self.commit_durable(last_applied)?;
                return Err(FatalApplyError(
                    "the member has been permanently removed from the cluster; \
                     its data dir is no longer usable: remove it before adding the host again"
                        .into(),
                ));
            }
            if (last_durable.elapsed() >= DURABLE_INTERVAL || undurable_entries >= DURABLE_ENTRIES)
                && self.try_commit_durable(last_applied)?
            {
                last_durable = Instant::now();
                undurable_entries = 0;
            }
        }
        // Shutting down: make everything applied durable so the next start replays nothing.
        self.commit_durable(last_applied)
    }

    /// The periodic durable commit: skipped (false) while a defragmentation makes its
    /// rename durable, and tried again after the next batch.
    fn try_commit_durable(&self, applied: u64) -> Result<bool, FatalApplyError> {
        let started = std::time::Instant::now();
        let done = self
            .store
            .try_commit_durable()
            .map_err(|e| FatalApplyError(e.to_string()))?;
        if done {
            crate::backend_observer::observe(crate::BackendOp::Commit, started.elapsed());
            self.raft.set_durable_applied(applied);
        }
        Ok(done)
    }

    fn commit_durable(&self, applied: u64) -> Result<(), FatalApplyError> {
        let started = std::time::Instant::now();
        self.store
            .commit(true)
            .map_err(|e| FatalApplyError(e.to_string()))?;
        crate::backend_observer::observe(crate::BackendOp::Commit, started.elapsed());
        self.raft.set_durable_applied(applied);
        Ok(())
    }

    /// Tells the observers the membership changed. Called without holding the membership
    /// lock: observers (the peer transport) read it themselves.
    fn notify_membership(&self, m: &Membership) {
        for o in &self.observers {
            o.on_membership(m);
        }
    }

    /// Swaps in the backend a leader sent (etcd's `applySnapshot`): the store, then what
    /// is derived from it (leases, alarms, membership), then the watchers, which read the
    /// revisions they missed from the new backend's history.
    fn install_snapshot(&self, entry: &CommittedEntry) -> Result<(), FatalApplyError> {
        let fatal = |what: &str, e: &dyn std::fmt::Display| {
            FatalApplyError(format!(
                "installing the leader's snapshot at index {} failed ({what}: {e}); restart \
                 the member to receive it again",
                entry.index
            ))
        };
        let _in_progress = crate::member_events::SnapshotApply::start();
        let started = Instant::now();
        let s = &self.snapshots;
        self.store
            .replace_with(&s.received)
            .map_err(|e| fatal("backend", &e))?;
        s.lessor
            .reload(&self.store)
            .map_err(|e| fatal("leases", &e))?;
        s.alarms
            .reload(&self.store)
            .map_err(|e| fatal("alarms", &e))?;
        s.auth.reload(&self.store).map_err(|e| fatal("auth", &e))?;
        let membership = Membership::load(&self.store)
            .map_err(|e| fatal("membership", &e))?
            .ok_or_else(|| fatal("membership", &"the snapshot has none"))?;
        let installed = {
            let mut m = self.membership.write();
            // The sender's record names the sender as local: this member keeps its own id.
            let local_id = m.local_id;
            *m = membership;
            m.local_id = local_id;
            m.save(&self.store).map_err(|e| fatal("membership", &e))?;
            m.clone()
        };
        self.notify_membership(&installed);
        self.store.commit(true).map_err(|e| fatal("commit", &e))?;
        s.hub.restore();
        tracing::info!(
            index = entry.index,
            consistent_index = self.store.consistent_index(),
            revision = self.store.current_revision(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "installed the backend snapshot from the leader"
        );
        Ok(())
    }

    /// Applies a membership change (etcd's `applyConfChange`): every member checks it the
    /// same way; an accepted one goes to raft and into the backend's membership (in this
    /// entry's transaction), a refused one is rejected in raft too. Returns the waiter's
    /// answer, and whether this member itself was removed.
    async fn apply_conf_change(
        &self,
        entry: &CommittedEntry,
    ) -> Result<(Option<(u64, ApplyResult)>, bool), FatalApplyError> {
        let fatal = |e: &dyn std::fmt::Display| FatalApplyError(e.to_string());
        let cc = decode_conf_change(entry)?;
        let ctx = ConfChangeContext::decode(cc.context.as_ref()).map_err(|e| {
            FatalApplyError(format!(
                "membership change at index {} has a context that does not decode: {e}",
                entry.index
            ))
        })?;
        let change = cc.changes.first().map(|c| (c.get_change_type(), c.node_id));
        let Some((change_type, node_id)) = change else {
            // raft leaving a joint configuration: no member changes.
            self.raft
                .apply_conf_change(entry.index, cc)
                .await
                .map_err(|e| fatal(&e))?;
            self.store.set_consistent_index(entry.index);
            return Ok((None, false));
        };
        let kind = match change_type {
            ConfChangeType::AddNode if ctx.is_promote => ChangeKind::Promote,
            ConfChangeType::AddNode => ChangeKind::Add,
            ConfChangeType::AddLearnerNode => ChangeKind::AddLearner,
            ConfChangeType::RemoveNode => ChangeKind::Remove,
        };
        let mut member = ctx.member.clone().unwrap_or_default();
        member.id = node_id;
        let checked = self.membership.read().check_change(kind, &member);
        let answer = |r: ApplyResult| Some((ctx.request_id, r));
        if let Err(e) = checked {
            tracing::warn!(index = entry.index, member = %format!("{node_id:x}"), ?kind, error = %e, "membership change refused");
            self.raft
                .reject_conf_change(entry.index)
                .await
                .map_err(|e| fatal(&e))?;
            self.store.set_consistent_index(entry.index);
            return Ok((answer(Err(e)), false));
        }
        self.raft
            .apply_conf_change(entry.index, cc)
            .await
            .map_err(|e| fatal(&e))?;
        let changed = {
            let mut m = self.membership.write();
            m.apply_change(kind, &member);
            m.save(&self.store).map_err(|e| fatal(&e))?;
            self.store.set_consistent_index(entry.index);
            m.clone()
        };
        // Observers run without the lock: the peer transport reads the membership too.
        self.notify_membership(&changed);
        let members = changed.to_proto();
        let removed_self = kind == ChangeKind::Remove && node_id == changed.local_id;
        tracing::info!(index = entry.index, member = %format!("{node_id:x}"), ?kind, "membership changed");
        Ok((answer(Ok(ApplyResponse::Members(members))), removed_self))
    }

    /// Applies one entry; returns the waiter id and result for entries carrying a request.
    /// An entry that cannot be decoded stops the member: another member applied it, so
    /// skipping it would make this member's data diverge.
    fn apply_entry(
        &self,
        entry: &CommittedEntry,
    ) -> Result<Option<(u64, ApplyResult)>, FatalApplyError> {
        if entry.data.is_empty() {
            // raft's own empty entry at the start of a term.
            self.store.set_consistent_index(entry.index);
            return Ok(None);
        }
        let req = RaftRequest::decode(entry.data.as_slice()).map_err(|e| {
            FatalApplyError(format!(
                "committed raft entry {} (term {}) cannot be decoded ({e}); this member has \
                 diverged or runs an older oxcd than the one that proposed it: stop it, and \
                 replace its data dir from a healthy member or upgrade it",
                entry.index, entry.term
            ))
        })?;
        let Some(op) = req.op else {
            self.store.set_consistent_index(entry.index);
            return Ok(Some((
                req.id,
                Err(ServerError::Internal("empty request".into())),
            )));
        };
        let header = req.header.unwrap_or_default();
        let ctx = EntryContext {
            index: entry.index,
            header: &header,
        };
        let observed = crate::apply_observer::ApplyOp::of(&op);
        let started = Instant::now();
        let applied = self.chain.apply(&ctx, op);
        if let Some(observed) = observed {
            // etcd: a compacted-revision error is a success.
            let success = matches!(applied, Ok(_) | Err(ServerError::Compacted));
            crate::apply_observer::observe(observed, success, started.elapsed());
        }
        crate::slow_apply::check(started, "");
        let result = match applied {
            Ok((response, events)) => {
                if let ApplyResponse::MemberUpdate(_) | ApplyResponse::MemberAttributes(_) =
                    response
                {
                    let m = self.membership.read().clone();
                    self.notify_membership(&m);
                }
                if !events.is_empty() {
                    let events = Arc::new(events);
                    for o in &self.observers {
                        o.on_applied(&events);
                    }
                }
                Ok(response)
            }
            Err(e) => {
                // A refused request changes no key; still record that the entry was applied.
                self.store.set_consistent_index(entry.index);
                Err(e)
            }
        };
        Ok(Some((req.id, result)))
    }
}
