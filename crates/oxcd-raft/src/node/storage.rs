//! Rebuilds raft-rs `MemStorage` from the WAL at start-up.
//!
//! The WAL is the durable copy; `MemStorage` is the in-memory view raft-rs
//! reads from. Start-up also reconciles the WAL with the backend's durable
//! applied index (`cfg.applied`):
//! * `applied < snapshot index`: if the snapshot was received from a leader
//!   (the WAL kept its data), the member stopped before its backend durably
//!   took it in: hand it to the applier again, first. Otherwise the backend
//!   lost data the log no longer has → refuse to start.
//! * `applied > last index`: the backend is ahead of the log (WAL lost) →
//!   refuse to start.
//! * `applied > hard_state.commit`: legal, because commit-only hard-state
//!   updates are written lazily (without their own fsync); anything the
//!   backend applied was committed, so commit is raised to `applied`.

use raft::eraftpb::{ConfState, Snapshot};
use raft::storage::MemStorage;

use super::error::RaftError;
use crate::wal::WalContents;

/// In-memory storage plus the facts the node needs about it.
pub(crate) struct Bootstrap {
    pub storage: MemStorage,
    pub conf_state: ConfState,
    /// Index of the entry whose application produced `conf_state`.
    pub conf_state_index: u64,
    /// Index of the WAL snapshot marker (0 if none).
    pub snapshot_index: u64,
    /// The applied index raft starts from: the backend's, or the snapshot's
    /// when the snapshot is to be handed over again.
    pub raft_applied: u64,
    /// A received snapshot the backend does not hold yet: `(index, term, data)`.
    pub pending_snapshot: Option<(u64, u64, Vec<u8>)>,
}

/// Builds `MemStorage` from `contents`; `peers` is the membership to use
/// when the WAL has none recorded (a brand-new member).
pub(crate) fn bootstrap(
    contents: &WalContents,
    peers: &[u64],
    applied: u64,
) -> Result<Bootstrap, RaftError> {
    let storage = MemStorage::new();
    let conf_state = contents
        .conf_state
        .clone()
        .unwrap_or_else(|| ConfState::from((peers.to_vec(), vec![])));
    let (snap_index, snap_term) = contents.snapshot.as_ref().map_or((0, 0), |s| (s.0, s.1));
    let last = contents.entries.last().map_or(snap_index, |e| e.index);
    let pending_snapshot = match &contents.snapshot_data {
        Some(data) if applied < snap_index => Some((snap_index, snap_term, data.clone())),
        _ if applied < snap_index => {
            return Err(RaftError::Inconsistent(format!(
                "backend applied index {applied} is below the WAL snapshot index {snap_index}: backend data is missing"
            )));
        }
        _ => None,
    };
    let raft_applied = applied.max(snap_index);
    if applied > last {
        return Err(RaftError::Inconsistent(format!(
            "backend applied index {applied} is beyond the last WAL index {last}: WAL data is missing"
        )));
    }
    let mut hs = contents.hard_state.clone();
    hs.commit = hs.commit.max(raft_applied);
    if hs.commit > last {
        return Err(RaftError::Inconsistent(format!(
            "WAL hard state commit {} is beyond the last WAL index {last}",
            hs.commit
        )));
    }
    {
        let mut core = storage.wl();
        if snap_index > 0 {
            let mut snap = Snapshot::default();
            let meta = snap.mut_metadata();
            meta.index = snap_index;
            meta.term = snap_term;
            meta.set_conf_state(conf_state.clone());
            core.apply_snapshot(snap)?;
        }
        core.set_conf_state(conf_state.clone());
        // The WAL reader guarantees entries are contiguous from
        // `snap_index + 1`, which is what `append` requires.
        core.append(&contents.entries)?;
        core.set_hardstate(hs);
    }
    Ok(Bootstrap {
        storage,
        conf_state,
        conf_state_index: contents.conf_state_index,
        snapshot_index: snap_index,
        raft_applied,
        pending_snapshot,
    })
}
