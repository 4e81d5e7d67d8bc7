//! etcd's slow-apply warning: a request whose apply (or whose read-only Range / Txn, read
//! barrier included) takes longer than 100 ms (etcd's default
//! `--experimental-warning-apply-duration`) is logged and counted in the process-wide
//! `etcd_server_slow_apply_total`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// etcd's default warning apply duration.
pub(crate) const WARNING_APPLY_DURATION: Duration = Duration::from_millis(100);

static SLOW_APPLIES: AtomicU64 = AtomicU64::new(0);

/// Requests whose apply took longer than 100 ms, since the process started.
pub fn slow_applies() -> u64 {
    SLOW_APPLIES.load(Ordering::Relaxed)
}

/// Whether a request that took `took` is slow (etcd: strictly longer than the warning
/// duration).
fn is_slow(took: Duration) -> bool {
    took > WARNING_APPLY_DURATION
}

/// Counts and logs the request started at `started` if it took too long; `prefix` says
/// which kind (etcd's "" for applied entries, "read-only range " and "read-only txn ").
pub(crate) fn check(started: Instant, prefix: &'static str) {
    let took = started.elapsed();
    if is_slow(took) {
        SLOW_APPLIES.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            took = ?took,
            expected_duration = ?WARNING_APPLY_DURATION,
            prefix,
            "apply request took too long"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_requests_slower_than_100_ms_are_counted() {
        let Some(long_ago) = Instant::now().checked_sub(Duration::from_millis(150)) else {
            return; // the clock started less than 150 ms ago
        };
        // Other tests of this process may apply slowly too: the count only grows.
        let before = slow_applies();
        check(long_ago, "read-only range ");
        assert!(slow_applies() > before);
        assert!(is_slow(Duration::from_millis(101)));
        assert!(!is_slow(Duration::from_millis(100)));
    }
}
