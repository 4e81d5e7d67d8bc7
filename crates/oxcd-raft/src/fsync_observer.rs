//! A process-wide observer of WAL fsync durations (the server's
//! `etcd_disk_wal_fsync_duration_seconds`), set once; unset, observing costs one atomic load.

use std::sync::OnceLock;
use std::time::Duration;

/// Something that records a duration.
pub type DurationObserver = Box<dyn Fn(Duration) + Send + Sync>;

static OBSERVER: OnceLock<DurationObserver> = OnceLock::new();

/// Sets the observer of every WAL fdatasync's duration; false if one was set already.
pub fn set_fsync_observer(observer: DurationObserver) -> bool {
    OBSERVER.set(observer).is_ok()
}

/// Reports one fsync's duration to the observer, if any.
pub(crate) fn observe(took: Duration) {
    if let Some(observer) = OBSERVER.get() {
        observer(took);
    }
}
