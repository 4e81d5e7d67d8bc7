//! A process-wide observer of WAL fsync durations (the server's
//! `etcd_disk_wal_fsync_duration_seconds`), set once; unset, observing costs one atomic load.
//! Also the process-wide count of bytes written to WAL segments
//! (`etcd_disk_wal_write_bytes_total`).

use std::sync::atomic::{AtomicU64, Ordering};
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

static WRITTEN: AtomicU64 = AtomicU64::new(0);

/// Bytes written to WAL segments by this process (records and segment headers).
pub fn wal_write_bytes() -> u64 {
    WRITTEN.load(Ordering::Relaxed)
}

/// Counts `n` more bytes written to a WAL segment.
pub(crate) fn wrote(n: usize) {
    WRITTEN.fetch_add(n as u64, Ordering::Relaxed);
}
