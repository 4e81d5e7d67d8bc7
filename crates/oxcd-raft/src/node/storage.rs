//! Rebuilds raft-rs `MemStorage` from the WAL at start-up.
//!
//! The WAL is the durable copy; `MemStorage` is the in-memory view raft-rs
//! reads from. Start-up also reconciles the WAL with the backend's durable
//! applied index (`cfg.applied`):
//! * `applied < snapshot index`: the backend lost data the log no longer
//!   has → refuse to start.
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
    /// Index of the WAL snapshot marker (0 if none).
    pub snapshot_index: u64,
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
    if applied < snap_index {
        return Err(RaftError::Inconsistent(format!(
            "backend applied index {applied} is below the WAL snapshot index {snap_index}: backend data is missing"
        )));
    }
    if applied > last {
        return Err(RaftError::Inconsistent(format!(
            "backend applied index {applied} is beyond the last WAL index {last}: WAL data is missing"
        )));
    }
    let mut hs = contents.hard_state.clone();
    hs.commit = hs.commit.max(applied).max(snap_index);
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
        snapshot_index: snap_index,
    })
}
