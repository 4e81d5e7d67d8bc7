//! Process-wide counts of rare member events, read by the server's metrics when scraped:
//!
//! * learner promotions run on this member as leader (etcd's
//!   `etcd_server_learner_promote_successes` and `_failures{Reason}`, the reason being the
//!   error's text, as etcd's `err.Error()`); a follower forwarding the request to the leader
//!   counts nothing, as etcd's;
//! * received raft snapshots being installed (etcd's
//!   `etcd_server_snapshot_apply_in_progress_total`).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::error::ServerError;

static PROMOTE_SUCCESSES: AtomicU64 = AtomicU64::new(0);
/// Failed promotions by reason; a handful of reasons at most (etcd's errors).
static PROMOTE_FAILURES: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());
static SNAPSHOT_APPLIES: AtomicI64 = AtomicI64::new(0);

/// Learner promotions this process ran as leader: the successes, and the failures by
/// reason (the error's text).
pub fn learner_promotes() -> (u64, Vec<(String, u64)>) {
    (
        PROMOTE_SUCCESSES.load(Ordering::Relaxed),
        PROMOTE_FAILURES.lock().clone(),
    )
}

/// Counts the outcome of a promotion run here (not one refused because this member is not
/// the leader: the request goes to the leader, which counts it).
pub(crate) fn count_promote<T>(result: &Result<T, ServerError>) {
    match result {
        Ok(_) => {
            PROMOTE_SUCCESSES.fetch_add(1, Ordering::Relaxed);
        }
        Err(ServerError::NotLeader) => {}
        Err(e) => {
            let reason = e.to_string();
            let mut failures = PROMOTE_FAILURES.lock();
            match failures.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, n)) => *n += 1,
                None => failures.push((reason, 1)),
            }
        }
    }
}

/// Received raft snapshots being installed now (0 or 1 per member).
pub fn snapshot_applies_in_progress() -> i64 {
    SNAPSHOT_APPLIES.load(Ordering::Relaxed).max(0)
}

/// Counts a snapshot installation for as long as it lives.
pub(crate) struct SnapshotApply(());

impl SnapshotApply {
    pub(crate) fn start() -> SnapshotApply {
        SNAPSHOT_APPLIES.fetch_add(1, Ordering::Relaxed);
        SnapshotApply(())
    }
}

impl Drop for SnapshotApply {
    fn drop(&mut self) {
        SNAPSHOT_APPLIES.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failures_for(reason: &str) -> u64 {
        learner_promotes()
            .1
            .iter()
            .find(|(r, _)| r == reason)
            .map_or(0, |(_, n)| *n)
    }

    #[test]
    fn promotions_are_counted_by_outcome_and_reason() {
        // Other tests of this process may promote too: the counts only grow.
        let (ok_before, _) = learner_promotes();
        let not_ready = ServerError::LearnerNotReady.to_string();
        let before = failures_for(&not_ready);
        count_promote(&Ok::<(), _>(()));
        count_promote::<()>(&Err(ServerError::LearnerNotReady));
        count_promote::<()>(&Err(ServerError::LearnerNotReady));
        count_promote::<()>(&Err(ServerError::NotLeader));
        assert!(learner_promotes().0 > ok_before);
        assert_eq!(failures_for(&not_ready), before + 2);
        assert_eq!(failures_for(&ServerError::NotLeader.to_string()), 0);
    }

    #[test]
    fn a_snapshot_apply_is_in_progress_while_its_guard_lives() {
        let guard = SnapshotApply::start();
        assert!(snapshot_applies_in_progress() >= 1);
        drop(guard);
    }
}
