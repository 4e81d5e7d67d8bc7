//! Snapshots that carry application data.
//!
//! Sending: when a follower needs entries the leader's in-memory log no
//! longer holds, raft asks [`NodeStorage`] for a snapshot. Its metadata is the
//! node thread's current *snapshot point* (an index the application has
//! applied, that index's term and the membership as of it); its data comes
//! from the application's [`SnapshotSource`]. The data is whatever the
//! application chooses to put in the raft message: the state itself when it is
//! small, or (oxcd's backend) a short descriptor of a file that the transport
//! streams beside the message in chunks, handing the message to the
//! receiving node only once the file is stored there durably (the receiver's
//! WAL refers to it from then on). The data is kept in the receiver's WAL
//! until its next snapshot marker, so keep it small when the state is large.
//!
//! Receiving: the node thread persists the snapshot in the WAL (marker plus
//! data, replacing the log) and hands it to the applier as an
//! [`crate::EntryKind::Snapshot`] entry, in log order: after every entry
//! before it, before every entry after it.

use std::cell::Cell;
use std::sync::RwLockWriteGuard;

use raft::eraftpb::{ConfState, Entry, Snapshot};
use raft::storage::{MemStorage, MemStorageCore};
use raft::{GetEntriesContext, RaftState, StorageError};

/// Produces the application data of a snapshot the leader sends to a peer.
///
/// Called on the raft node thread, so it must return quickly: take a
/// consistent view (a read transaction, a reference-counted file, ...), and
/// return [`SnapshotUnavailable`] to be asked again a little later when that
/// is not possible right now.
pub trait SnapshotSource: Send + 'static {
    /// Returns the data for a snapshot at raft index `index`, to be sent to
    /// member `to`. The data must describe the application's state at
    /// `index` **or later**: the application has applied `index` when asked,
    /// and its current state is fine. The receiving applier skips the entries
    /// after `index` that its new state already holds, exactly as it skips
    /// replayed entries at start-up.
    fn snapshot_data(&self, index: u64, to: u64) -> Result<Vec<u8>, SnapshotUnavailable>;
}

/// A snapshot cannot be produced right now; raft asks again later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("snapshot temporarily unavailable: {0}")]
pub struct SnapshotUnavailable(pub String);

/// The latest state a snapshot may be taken at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SnapshotPoint {
    /// Applied by the application (and by raft).
    pub index: u64,
    /// Term of the entry at `index`.
    pub term: u64,
    /// Membership as of `index`.
    pub conf_state: ConfState,
}

/// raft-rs storage: the in-memory log of `MemStorage`, plus snapshots made
/// from the current [`SnapshotPoint`] and the application's data.
pub(crate) struct NodeStorage {
    mem: MemStorage,
    point: Option<SnapshotPoint>,
    source: Option<Box<dyn SnapshotSource>>,
    /// Whether the missing source was reported already (it is asked every tick).
    warned_no_source: Cell<bool>,
}

impl NodeStorage {
    pub(crate) fn new(mem: MemStorage, source: Option<Box<dyn SnapshotSource>>) -> Self {
        Self {
            mem,
            point: None,
            source,
            warned_no_source: Cell::new(false),
        }
    }

    /// Write access to the in-memory log and raft state.
    pub(crate) fn wl(&self) -> RwLockWriteGuard<'_, MemStorageCore> {
        self.mem.wl()
    }

    /// The current snapshot point, if one is known.
    pub(crate) fn point(&self) -> Option<&SnapshotPoint> {
        self.point.as_ref()
    }

    /// Moves the snapshot point (the node thread does, as the application applies).
    pub(crate) fn set_point(&mut self, point: SnapshotPoint) {
        self.point = Some(point);
    }

    fn unavailable() -> raft::Error {
        raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable)
    }
}

/// Whether `id` is a member (voter or learner, incoming or outgoing) of `cs`.
pub(crate) fn is_member(cs: &ConfState, id: u64) -> bool {
    cs.voters
        .iter()
        .chain(&cs.learners)
        .chain(&cs.voters_outgoing)
        .chain(&cs.learners_next)
        .any(|&m| m == id)
}

impl raft::Storage for NodeStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    /// Only ever fails with `SnapshotTemporarilyUnavailable`: raft-rs panics on
    /// any other snapshot error.
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let Some(source) = &self.source else {
            if !self.warned_no_source.replace(true) {
                tracing::warn!(
                    peer = %format!("{to:x}"),
                    "a peer needs a snapshot but this member has no snapshot source"
                );
            }
            return Err(Self::unavailable());
        };
        let Some(point) = &self.point else {
            return Err(Self::unavailable());
        };
        // A peer ignores a snapshot whose membership does not include it; wait
        // until the application has applied the change that added it.
        if point.index == 0 || point.index < request_index || !is_member(&point.conf_state, to) {
            return Err(Self::unavailable());
        }
        let data = source.snapshot_data(point.index, to).map_err(|e| {
            tracing::debug!(peer = %format!("{to:x}"), error = %e, "snapshot not produced yet");
            Self::unavailable()
        })?;
        tracing::info!(
            peer = %format!("{to:x}"),
            index = point.index,
            term = point.term,
            data_bytes = data.len(),
            "sending a snapshot"
        );
        let mut snap = Snapshot {
            data: data.into(),
            ..Snapshot::default()
        };
        let meta = snap.mut_metadata();
        meta.index = point.index;
        meta.term = point.term;
        meta.set_conf_state(point.conf_state.clone());
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use raft::Storage;

    use super::*;

    /// Returns its data, or is not ready.
    struct Source(Option<&'static [u8]>);

    impl SnapshotSource for Source {
        fn snapshot_data(&self, _index: u64, _to: u64) -> Result<Vec<u8>, SnapshotUnavailable> {
            self.0
                .map(<[u8]>::to_vec)
                .ok_or_else(|| SnapshotUnavailable("busy".into()))
        }
    }

    fn storage(source: Option<Source>) -> NodeStorage {
        let source = source.map(|s| Box::new(s) as Box<dyn SnapshotSource>);
        let mut st = NodeStorage::new(MemStorage::new(), source);
        st.set_point(SnapshotPoint {
            index: 7,
            term: 2,
            conf_state: ConfState::from((vec![1], vec![2])),
        });
        st
    }

    fn unavailable(r: raft::Result<Snapshot>) -> bool {
        matches!(
            r,
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        )
    }

    #[test]
    fn snapshot_carries_the_point_and_the_application_data() {
        let st = storage(Some(Source(Some(b"db"))));
        let snap = st.snapshot(0, 2).unwrap();
        assert_eq!(&snap.data[..], b"db");
        let m = snap.get_metadata();
        assert_eq!((m.index, m.term), (7, 2));
        assert_eq!(m.get_conf_state().learners, vec![2]);
    }

    #[test]
    fn snapshot_is_only_ever_temporarily_unavailable() {
        // No source, the source not ready, a peer outside the membership, a
        // request beyond the point, no point yet.
        assert!(unavailable(storage(None).snapshot(0, 2)));
        assert!(unavailable(storage(Some(Source(None))).snapshot(0, 2)));
        assert!(unavailable(
            storage(Some(Source(Some(b"db")))).snapshot(0, 3)
        ));
        assert!(unavailable(
            storage(Some(Source(Some(b"db")))).snapshot(8, 2)
        ));
        let fresh = NodeStorage::new(MemStorage::new(), Some(Box::new(Source(Some(b"db")))));
        assert!(unavailable(fresh.snapshot(0, 2)));
    }
}
