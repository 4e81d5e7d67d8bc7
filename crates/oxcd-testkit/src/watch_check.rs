//! The watch checker: every watch saw every event of its range exactly once, in revision
//! order, equal to the cluster's [`Log`], from its start revision up to the revision it is
//! known to have reached.

use crate::history::{Event, KeyRange, Log, Rev};
use crate::model::{same_change, show};

/// What one logical watch (across client-side reconnects) delivered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchRecord {
    /// Keys watched.
    pub range: Option<KeyRange>,
    /// The revision it started at (events before it are not expected).
    pub start_revision: Rev,
    /// The revision up to which it must have seen everything (e.g. a sentinel write it saw).
    pub reached: Rev,
    /// Events in delivery order.
    pub events: Vec<Event>,
}

/// Why a watch's events are wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WatchViolation {
    /// An event of the log never arrived.
    #[error("watch {watch}: missing event {detail}")]
    Missing {
        /// Index of the watch.
        watch: usize,
        /// The event.
        detail: String,
    },
    /// An event arrived twice.
    #[error("watch {watch}: duplicated event {detail}")]
    Duplicate {
        /// Index of the watch.
        watch: usize,
        /// The event.
        detail: String,
    },
    /// An event arrived before one of a lower revision.
    #[error("watch {watch}: event {detail} arrived after revision {after}")]
    OutOfOrder {
        /// Index of the watch.
        watch: usize,
        /// The event.
        detail: String,
        /// The revision delivered before it.
        after: Rev,
    },
    /// An event that is not in the log (or differs from it).
    #[error("watch {watch}: event {detail} is not in the log")]
    Unknown {
        /// Index of the watch.
        watch: usize,
        /// The event.
        detail: String,
    },
}

/// Checks every watch against the log.
pub fn check_watches(watches: &[WatchRecord], log: &Log) -> Result<(), Vec<WatchViolation>> {
    let violations: Vec<_> = watches
        .iter()
        .enumerate()
        .flat_map(|(i, w)| check_watch(i, w, log))
        .collect();
    if violations.is_empty() {
        Ok(())
    } else {
        Err(violations)
    }
}

/// Violations of one watch (the first of each kind per event).
fn check_watch(index: usize, w: &WatchRecord, log: &Log) -> Vec<WatchViolation> {
    let in_range = |e: &Event| w.range.as_ref().is_none_or(|r| r.contains(&e.kv.key));
    let expected: Vec<&Event> = log
        .revisions
        .range(w.start_revision..=w.reached)
        .flat_map(|(_, es)| es)
        .filter(|e| in_range(e))
        .collect();
    let mut out = Vec::new();
    let mut last_rev = 0;
    let mut seen: Vec<&Event> = Vec::new();
    let mut delivered = Vec::new();
    for e in &w.events {
        if e.revision() < last_rev {
            out.push(WatchViolation::OutOfOrder {
                watch: index,
                detail: describe(e),
                after: last_rev,
            });
        }
        last_rev = last_rev.max(e.revision());
        if seen.iter().any(|s| same_change(s, e)) {
            out.push(WatchViolation::Duplicate {
                watch: index,
                detail: describe(e),
            });
            continue;
        }
        seen.push(e);
        let logged = log
            .revisions
            .get(&e.revision())
            .is_some_and(|es| es.iter().any(|l| same_change(l, e)));
        if !logged || !in_range(e) || e.revision() < w.start_revision {
            out.push(WatchViolation::Unknown {
                watch: index,
                detail: describe(e),
            });
        } else if e.revision() <= w.reached {
            delivered.push(e);
        }
    }
    for e in expected {
        if !delivered.iter().any(|d| same_change(d, e)) {
            out.push(WatchViolation::Missing {
                watch: index,
                detail: describe(e),
            });
        }
    }
    out
}

fn describe(e: &Event) -> String {
    format!(
        "{:?} {} at revision {}",
        e.kind,
        show(&e.kv.key),
        e.revision()
    )
}
