//! Membership (raft `ConfState`) as the node thread tracks it.
//!
//! A committed `ConfChange` entry takes effect when the application applies
//! it ([`crate::RaftHandle::apply_conf_change`]), on the node thread, which
//! then records the new membership in the WAL with the entry's index.
//! Snapshots and compaction markers need the membership *as of* an older
//! index (the applied-and-durable one), so the node keeps the few changes
//! between that index and now.

use std::collections::VecDeque;

use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState};

/// Builds a membership change of `changes` (kind, member id) carrying
/// `context` (oxcd puts the member's attributes there, as etcd does). One
/// change is applied directly; several go through a joint configuration that
/// raft leaves automatically.
pub fn conf_change(changes: &[(ConfChangeType, u64)], context: Vec<u8>) -> ConfChangeV2 {
    let mut cc = ConfChangeV2::default();
    for &(kind, node_id) in changes {
        let mut single = ConfChangeSingle::default();
        single.set_change_type(kind);
        single.node_id = node_id;
        cc.changes.push(single);
    }
    cc.context = context.into();
    cc
}

/// The current membership and the recent ones before it.
#[derive(Debug, Clone)]
pub(crate) struct ConfHistory {
    /// Earlier memberships, oldest first, each with the index it took effect at.
    older: VecDeque<(u64, ConfState)>,
    latest: (u64, ConfState),
}

impl ConfHistory {
    /// Starts with `cs`, in effect since `index`.
    pub(crate) fn new(index: u64, cs: ConfState) -> Self {
        Self {
            older: VecDeque::new(),
            latest: (index, cs),
        }
    }

    /// The current membership and the index it took effect at.
    pub(crate) fn latest(&self) -> (u64, &ConfState) {
        (self.latest.0, &self.latest.1)
    }

    /// Records that applying the entry at `index` produced `cs`.
    pub(crate) fn record(&mut self, index: u64, cs: ConfState) {
        let previous = std::mem::replace(&mut self.latest, (index, cs));
        self.older.push_back(previous);
    }

    /// The membership in effect after applying `index`; `None` if the
    /// history does not reach back that far.
    pub(crate) fn as_of(&self, index: u64) -> Option<&ConfState> {
        std::iter::once(&self.latest)
            .chain(self.older.iter().rev())
            .find(|(i, _)| *i <= index)
            .map(|(_, cs)| cs)
    }

    /// Drops what no index `>= index` will ask for.
    pub(crate) fn forget_before(&mut self, index: u64) {
        loop {
            let next = self.older.get(1).unwrap_or(&self.latest).0;
            if self.older.is_empty() || next > index {
                break;
            }
            self.older.pop_front();
        }
    }

    /// Replaces everything with `cs` as of `index` (a snapshot was installed).
    pub(crate) fn reset(&mut self, index: u64, cs: ConfState) {
        self.older.clear();
        self.latest = (index, cs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_finds_the_membership_in_effect_at_an_index() {
        let one = ConfState::from((vec![1], vec![]));
        let two = ConfState::from((vec![1], vec![2]));
        let three = ConfState::from((vec![1, 3], vec![2]));
        let mut h = ConfHistory::new(5, one.clone());
        h.record(10, two.clone());
        h.record(20, three.clone());
        assert_eq!(h.as_of(4), None);
        assert_eq!(h.as_of(5), Some(&one));
        assert_eq!(h.as_of(19), Some(&two));
        assert_eq!(h.as_of(25), Some(&three));
        assert_eq!(h.latest(), (20, &three));
        h.forget_before(15);
        assert_eq!(h.as_of(15), Some(&two));
        assert_eq!(h.as_of(9), None);
        h.reset(30, one.clone());
        assert_eq!((h.as_of(29), h.latest()), (None, (30, &one)));
    }

    #[test]
    fn conf_change_builds_one_single_change_per_member() {
        let cc = conf_change(
            &[
                (ConfChangeType::AddLearnerNode, 2),
                (ConfChangeType::AddNode, 3),
            ],
            b"ctx".to_vec(),
        );
        let got: Vec<_> = cc
            .changes
            .iter()
            .map(|c| (c.get_change_type(), c.node_id))
            .collect();
        assert_eq!(
            got,
            [
                (ConfChangeType::AddLearnerNode, 2),
                (ConfChangeType::AddNode, 3)
            ]
        );
        assert_eq!(&cc.context[..], b"ctx");
    }
}
