//! The node thread's membership and snapshot work: proposing and applying
//! membership changes, holding raft's applied index below an unapplied
//! change, installing a received snapshot, and moving the snapshot point.

use std::sync::atomic::Ordering;

use raft::eraftpb::{ConfChangeV2, ConfState, Snapshot};

use super::Worker;
use crate::node::snapshot::SnapshotPoint;
use crate::node::{CommittedEntry, EntryKind, RaftError, Transport};

impl<T: Transport> Worker<T> {
    /// Checks here what raft-rs would otherwise answer by silently turning
    /// the change into an empty entry. A follower forwards the change to the leader (as
    /// etcd's do); one the leader then turns into an empty entry (another change was
    /// pending there) is never applied, and its proposer times out.
    pub(super) fn propose_conf_change(&mut self, cc: ConfChangeV2) -> Result<(), RaftError> {
        if self.raw.raft.leader_id == 0 {
            return Err(RaftError::NoLeader);
        }
        if !self.unapplied_conf_changes.is_empty() || self.raw.raft.has_pending_conf() {
            return Err(RaftError::ConfChangePending);
        }
        let joint = !self.conf.latest().1.voters_outgoing.is_empty();
        match (joint, cc.changes.is_empty()) {
            (true, false) => {
                return Err(RaftError::ConfChangeRefused(
                    "the joint configuration must be left first",
                ))
            }
            (false, true) => {
                return Err(RaftError::ConfChangeRefused(
                    "an empty change only leaves a joint configuration",
                ))
            }
            _ => {}
        }
        match self.raw.propose_conf_change(Vec::new(), cc) {
            Ok(()) => Ok(()),
            Err(raft::Error::ProposalDropped) => Err(RaftError::ProposalDropped),
            Err(e) => Err(e.into()),
        }
    }

    /// Applies (or, `cc` `None`, skips) the delivered membership change at
    /// `index`; see [`crate::RaftHandle::apply_conf_change`].
    pub(super) fn apply_conf_change(
        &mut self,
        index: u64,
        cc: Option<ConfChangeV2>,
    ) -> Result<ConfState, RaftError> {
        // The applier applies in log order: everything up to `index` is done.
        while self
            .unapplied_conf_changes
            .front()
            .is_some_and(|&i| i <= index)
        {
            self.unapplied_conf_changes.pop_front();
        }
        let recorded = self.conf.latest().0;
        let result = match cc {
            Some(cc) if index > recorded => match self.raw.apply_conf_change(&cc) {
                Ok(cs) => {
                    self.wal.save_conf_state_at(index, &cs)?;
                    self.raw.mut_store().wl().set_conf_state(cs.clone());
                    self.conf.record(index, cs.clone());
                    *self.shared.conf_state.lock() = cs.clone();
                    tracing::info!(index, conf_state = ?cs, "applied a membership change");
                    Ok(cs)
                }
                Err(e) => {
                    tracing::warn!(index, error = %e, "membership change not applicable");
                    Err(e.into())
                }
            },
            // Replayed, covered by a snapshot, or rejected by the applier.
            _ => Ok(self.conf.latest().1.clone()),
        };
        self.advance_applied();
        result
    }

    /// Tells raft what is applied: everything delivered, except from the
    /// first membership change the applier has not applied yet on (raft must
    /// not consider it in effect before it is, see the module docs).
    pub(super) fn advance_applied(&mut self) {
        let upto = match self.unapplied_conf_changes.front() {
            Some(&cc_index) => self.delivered_to.min(cc_index - 1),
            None => self.delivered_to,
        };
        if upto > self.raw.raft.raft_log.applied {
            self.raw.advance_apply_to(upto);
        }
    }

    /// A snapshot from the leader: it replaces the log (WAL and memory) and
    /// goes to the applier before any entry after it.
    pub(super) fn install_snapshot(&mut self, snap: Snapshot) -> Result<(), RaftError> {
        let m = snap.get_metadata();
        let (index, term) = (m.index, m.term);
        let cs = m.get_conf_state().clone();
        tracing::info!(
            index,
            term,
            data_bytes = snap.data.len(),
            "installing a snapshot from the leader"
        );
        self.wal.install_snapshot(index, term, &cs, &snap.data)?;
        let data = snap.data.to_vec();
        self.raw.mut_store().wl().apply_snapshot(snap)?;
        self.conf.reset(index, cs.clone());
        *self.shared.conf_state.lock() = cs;
        self.unapplied_conf_changes.clear();
        self.last_compact = index;
        self.mem_first = index;
        self.deliver_snapshot(index, term, data)
    }

    pub(super) fn deliver_snapshot(
        &mut self,
        index: u64,
        term: u64,
        data: Vec<u8>,
    ) -> Result<(), RaftError> {
        let entry = CommittedEntry {
            index,
            term,
            data,
            kind: EntryKind::Snapshot,
        };
        self.delivered_to = self.delivered_to.max(index);
        self.committed
            .send(vec![entry])
            .map_err(|_| RaftError::Stopped)
    }

    /// Moves the point snapshots for peers are taken at to what both the
    /// applier and raft have applied, once its term and membership are known.
    pub(super) fn move_snapshot_point(&mut self) {
        let applied = self
            .shared
            .applied
            .load(Ordering::Acquire)
            .min(self.raw.raft.raft_log.applied);
        if self.raw.store().point().is_some_and(|p| p.index >= applied) {
            return;
        }
        let Ok(term) = self.raw.raft.raft_log.term(applied) else {
            return;
        };
        let Some(conf_state) = self.conf.as_of(applied).cloned() else {
            return;
        };
        self.raw.mut_store().set_point(SnapshotPoint {
            index: applied,
            term,
            conf_state,
        });
    }
}
