//! Process-wide observers of backend operations' durations, for the server's histograms
//! (`etcd_disk_backend_commit_duration_seconds`, `_defrag_duration_seconds`,
//! `_snapshot_duration_seconds`), each set once; unset, observing costs one atomic load.

use std::sync::OnceLock;
use std::time::Duration;

use oxcd_raft::DurationObserver;

/// A backend operation whose duration is observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendOp {
    /// A durable commit of the applied batch.
    Commit,
    /// A defragmentation, from its start to the swap of the new file.
    Defrag,
    /// A snapshot sent to a client (Maintenance.Snapshot), from the export to the last chunk.
    Snapshot,
}

static OBSERVERS: [OnceLock<DurationObserver>; 3] =
    [OnceLock::new(), OnceLock::new(), OnceLock::new()];

fn slot(op: BackendOp) -> &'static OnceLock<DurationObserver> {
    &OBSERVERS[match op {
        BackendOp::Commit => 0,
        BackendOp::Defrag => 1,
        BackendOp::Snapshot => 2,
    }]
}

/// Sets the observer of `op`'s durations; false if one was set already.
pub fn set_backend_observer(op: BackendOp, observer: DurationObserver) -> bool {
    slot(op).set(observer).is_ok()
}

/// Reports one `op`'s duration to its observer, if any.
pub(crate) fn observe(op: BackendOp, took: Duration) {
    if let Some(observer) = slot(op).get() {
        observer(took);
    }
}
