//! A process-wide observer of durable backend commit durations (the server's
//! `etcd_disk_backend_commit_duration_seconds`), set once; unset, observing costs one atomic
//! load.

use std::sync::OnceLock;
use std::time::Duration;

use oxcd_raft::DurationObserver;

static OBSERVER: OnceLock<DurationObserver> = OnceLock::new();

/// Sets the observer of every durable backend commit's duration; false if one was set
/// already.
pub fn set_backend_commit_observer(observer: DurationObserver) -> bool {
    OBSERVER.set(observer).is_ok()
}

/// Reports one durable commit's duration to the observer, if any.
pub(crate) fn observe(took: Duration) {
    if let Some(observer) = OBSERVER.get() {
        observer(took);
    }
}
