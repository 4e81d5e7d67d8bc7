//! Process-wide observers of backend operations' durations, for the server's histograms
//! (`etcd_disk_backend_commit_duration_seconds`, `_defrag_duration_seconds`,
//! `_snapshot_duration_seconds`, `etcd_mvcc_hash_duration_seconds`,
//! `_hash_rev_duration_seconds`), each set once; unset, observing costs one atomic load.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

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
    /// Maintenance.Hash: the hash of everything kept.
    Hash,
    /// A hash up to a revision (etcd's `HashByRev`): HashKV, and the corruption checks.
    HashRev,
}

/// One slot per [`BackendOp`], indexed by its discriminant.
const OPS: usize = 5;
const _: () = assert!(
    BackendOp::HashRev as usize + 1 == OPS,
    "one slot per BackendOp"
);
static OBSERVERS: [OnceLock<DurationObserver>; OPS] = [const { OnceLock::new() }; OPS];

fn slot(op: BackendOp) -> &'static OnceLock<DurationObserver> {
    &OBSERVERS[op as usize]
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

/// Runs `f` (one `op`) and reports how long it took.
pub(crate) fn timed<T>(op: BackendOp, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let r = f();
    observe(op, started.elapsed());
    r
}
