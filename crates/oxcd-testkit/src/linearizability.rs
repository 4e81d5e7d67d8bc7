//! A linearizability checker for etcd's KV model.
//!
//! Every etcd response carries the global revision, so an acknowledged operation's place in
//! the one total order is fixed: a write at its revision, a read just after the write of its
//! revision. The checker takes the client history plus the cluster's claimed [`Log`] (all
//! events from revision 1, e.g. from a watch) and checks that:
//!
//! 1. the log is a possible etcd log (contiguous revisions, versions, deletes of live keys);
//! 2. every acknowledged write is in the log at its revision with exactly its effects, and no
//!    two claim one revision (a lost acknowledged write fails here);
//! 3. every read (range, txn read, delete/txn that changed nothing) returned the state at its
//!    revision (a stale read fails here);
//! 4. every other revision is explained by exactly one operation whose answer was lost (at
//!    most once, after its invocation) or by a lease expiring (deleting exactly its keys);
//!    anything else is a phantom write;
//! 5. revisions respect real time: an operation invoked after another returned is not
//!    ordered before it (writes strictly after).

use std::collections::BTreeMap;

use crate::history::{
    EventKind, Log, Operation, Outcome, Request, Response, Rev, TxnOp, TxnOpResult,
};
use crate::model::{deletion, same_changes, show, LogError, Scratch, Store};

/// Why a history is not linearizable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// The log itself is impossible.
    #[error("log invalid at revision {}: {}", .0.revision, .0.reason)]
    BadLog(LogError),
    /// An acknowledged operation's answer does not fit the log at its revision.
    #[error("operation {op} (client {client}) at revision {revision}: {detail}")]
    WrongAnswer {
        /// Index in the history.
        op: usize,
        /// Its client.
        client: usize,
        /// Its header revision.
        revision: Rev,
        /// What does not fit (lost write, stale read, wrong txn branch, ...).
        detail: String,
    },
    /// Two acknowledged writes claim the same revision.
    #[error("operations {first} and {second} both claim revision {revision}")]
    DuplicateRevision {
        /// The revision.
        revision: Rev,
        /// One claimant.
        first: usize,
        /// The other.
        second: usize,
    },
    /// A revision no operation (and no lease expiry) explains.
    #[error("phantom write at revision {revision}: {detail}")]
    Phantom {
        /// The revision.
        revision: Rev,
        /// Its events.
        detail: String,
    },
    /// An operation is ordered before one that returned before it was invoked.
    #[error("operation {later} (revision {later_rev}) was invoked after operation {earlier} (revision {earlier_rev}) returned, but is ordered before it")]
    RealTime {
        /// The operation that returned first.
        earlier: usize,
        /// Its revision.
        earlier_rev: Rev,
        /// The operation invoked after that.
        later: usize,
        /// Its revision.
        later_rev: Rev,
    },
}

/// Figures of a history that passed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Operations in the history.
    pub operations: usize,
    /// Answered operations.
    pub acknowledged: usize,
    /// Operations refused before taking effect.
    pub failed: usize,
    /// Operations with a lost answer that the log shows happened.
    pub indeterminate_applied: usize,
    /// Operations with a lost answer that did not happen.
    pub indeterminate_not_applied: usize,
    /// Revisions explained by a lease expiring.
    pub lease_expiries: usize,
    /// Last revision of the log.
    pub last_revision: Rev,
}

/// Where an operation sits in the total order.
#[derive(Clone, Copy, Debug)]
struct Position {
    rev: Rev,
    write: bool,
}

/// Checks `history` against `log` (see the module doc); all violations found are returned.
pub fn check(history: &[Operation], log: &Log) -> Result<Report, Vec<Violation>> {
    let store = Store::replay(log).map_err(|e| vec![Violation::BadLog(e)])?;
    let mut violations = Vec::new();
    let mut report = Report {
        operations: history.len(),
        last_revision: store.last_revision(),
        ..Report::default()
    };
    let mut positions: Vec<Option<Position>> = vec![None; history.len()];
    let mut explained: BTreeMap<Rev, usize> = BTreeMap::new();
    // A revoke's answer does not say whether it deleted the lease's keys or found them
    // already deleted at that revision, so revokes claim a revision only after every
    // unambiguous operation has.
    let revokes_last = history
        .iter()
        .enumerate()
        .filter(|(_, op)| !matches!(op.request, Request::LeaseRevoke { .. }))
        .chain(
            history
                .iter()
                .enumerate()
                .filter(|(_, op)| matches!(op.request, Request::LeaseRevoke { .. })),
        );
    for (i, op) in revokes_last {
        match &op.outcome {
            Outcome::Ok(resp) => {
                report.acknowledged += 1;
                let rev = resp.revision();
                match place_acknowledged(&store, log, &explained, &op.request, resp) {
                    Ok(write) => {
                        positions[i] = Some(Position { rev, write });
                        if write {
                            if let Some(first) = explained.insert(rev, i) {
                                violations.push(Violation::DuplicateRevision {
                                    revision: rev,
                                    first,
                                    second: i,
                                });
                            }
                        }
                    }
                    Err(detail) => violations.push(Violation::WrongAnswer {
                        op: i,
                        client: op.client,
                        revision: rev,
                        detail,
                    }),
                }
            }
            Outcome::Failed(_) => report.failed += 1,
            Outcome::Unknown(_) => {}
        }
    }
    let lower_bounds = lower_bounds(history, &positions);
    let mut used = vec![false; history.len()];
    for (&rev, events) in &log.revisions {
        if explained.contains_key(&rev) {
            continue;
        }
        let candidate = history.iter().enumerate().find(|(i, op)| {
            matches!(op.outcome, Outcome::Unknown(_))
                && !used[*i]
                && lower_bounds[*i] < rev
                && effects_at(&store, &op.request, rev).is_some_and(|e| same_changes(&e, events))
        });
        if let Some((i, _)) = candidate {
            used[i] = true;
            positions[i] = Some(Position { rev, write: true });
            report.indeterminate_applied += 1;
        } else if is_lease_expiry(&store, rev, events) {
            report.lease_expiries += 1;
        } else {
            violations.push(Violation::Phantom {
                revision: rev,
                detail: describe(events),
            });
        }
    }
    report.indeterminate_not_applied = history
        .iter()
        .enumerate()
        .filter(|(i, op)| matches!(op.outcome, Outcome::Unknown(_)) && !used[*i])
        .count();
    violations.extend(real_time_violations(history, &positions));
    if violations.is_empty() {
        Ok(report)
    } else {
        Err(violations)
    }
}

/// Checks an acknowledged answer against the log; `Ok(true)` if it wrote at its revision.
fn place_acknowledged(
    store: &Store,
    log: &Log,
    explained: &BTreeMap<Rev, usize>,
    req: &Request,
    resp: &Response,
) -> Result<bool, String> {
    let rev = resp.revision();
    if rev > store.last_revision() {
        return Err(format!(
            "answered revision {rev} is past the log's last {}",
            store.last_revision()
        ));
    }
    let logged = log.revisions.get(&rev).map(Vec::as_slice).unwrap_or(&[]);
    match (req, resp) {
        (Request::Put { key, value, lease }, Response::Put { .. }) => {
            let put = [TxnOp::Put {
                key: key.clone(),
                value: value.clone(),
                lease: *lease,
            }];
            let (events, _) = Scratch::at(store, rev - 1).apply(&put);
            if same_changes(&events, logged) {
                Ok(true)
            } else {
                Err(format!(
                    "acknowledged put {}={} is not the write of its revision (the log has {})",
                    show(key),
                    show(value),
                    describe(logged)
                ))
            }
        }
        (Request::Range(range), Response::Range { kvs, .. }) => {
            let expected = store.range(range, rev);
            if &expected == kvs {
                Ok(false)
            } else {
                Err(format!(
                    "read {} returned {kvs:?}, the state at its revision is {expected:?}",
                    show(&range.key)
                ))
            }
        }
        (Request::Delete(range), Response::Delete { deleted, .. }) => {
            let del = [TxnOp::Delete(range.clone())];
            branch_fits(
                store,
                logged,
                rev,
                &del,
                &[TxnOpResult::Delete(*deleted)],
                *deleted > 0,
            )
        }
        (
            Request::Txn {
                compare,
                success,
                failure,
            },
            Response::Txn {
                succeeded, results, ..
            },
        ) => {
            let mut why = Vec::new();
            for write in [true, false] {
                let before = if write { rev - 1 } else { rev };
                let scratch = Scratch::at(store, before);
                let holds = scratch.compares_hold(compare);
                let branch = if holds { success } else { failure };
                if holds != *succeeded {
                    why.push(format!(
                        "at revision {before} the compares {}",
                        if holds { "hold" } else { "fail" }
                    ));
                    continue;
                }
                match branch_fits(store, logged, rev, branch, results, write) {
                    Ok(w) => return Ok(w),
                    Err(e) => why.push(e),
                }
            }
            Err(format!(
                "txn answer fits neither as a write nor as a read: {}",
                why.join("; ")
            ))
        }
        (Request::LeaseGrant { .. }, Response::LeaseGrant { .. }) => Ok(false),
        (Request::LeaseRevoke { id }, Response::LeaseRevoke { .. }) => {
            let attached = store.keys_with_lease(*id, rev - 1);
            let deletes: Vec<_> = attached.iter().map(|k| deletion(k, rev)).collect();
            if !attached.is_empty()
                && !explained.contains_key(&rev)
                && same_changes(&deletes, logged)
            {
                Ok(true)
            } else if store.keys_with_lease(*id, rev).is_empty() {
                Ok(false)
            } else {
                Err(format!("revoke of lease {id:x} left its keys in place"))
            }
        }
        _ => Err("response of another kind than the request".into()),
    }
}

/// Whether running `ops` at `rev` gives `results` and, if `write`, exactly the log's events
/// at `rev` (else no events at all, against the state at `rev`).
fn branch_fits(
    store: &Store,
    logged: &[crate::history::Event],
    rev: Rev,
    ops: &[TxnOp],
    results: &[TxnOpResult],
    write: bool,
) -> Result<bool, String> {
    let before = if write { rev - 1 } else { rev };
    let (events, expected) = Scratch::at(store, before).apply(ops);
    if write && events.is_empty() {
        return Err(format!(
            "it writes nothing, so it cannot own revision {rev}"
        ));
    }
    if write && !same_changes(&events, logged) {
        return Err(format!(
            "its writes {} are not the log's {} at revision {rev}",
            describe(&events),
            describe(logged)
        ));
    }
    if !write && !events.is_empty() {
        return Err(format!(
            "it would have written {} at revision {rev}",
            describe(&events)
        ));
    }
    if expected != results {
        return Err(format!(
            "answered {results:?}, the state at revision {before} gives {expected:?}"
        ));
    }
    Ok(write)
}

/// The events `req` would produce as the write of revision `rev`, if it writes anything.
fn effects_at(store: &Store, req: &Request, rev: Rev) -> Option<Vec<crate::history::Event>> {
    let mut scratch = Scratch::at(store, rev - 1);
    let events = match req {
        Request::Put { key, value, lease } => {
            scratch
                .apply(&[TxnOp::Put {
                    key: key.clone(),
                    value: value.clone(),
                    lease: *lease,
                }])
                .0
        }
        Request::Delete(range) => scratch.apply(&[TxnOp::Delete(range.clone())]).0,
        Request::Txn {
            compare,
            success,
            failure,
        } => {
            let branch = if scratch.compares_hold(compare) {
                success
            } else {
                failure
            };
            scratch.apply(branch).0
        }
        Request::LeaseRevoke { id } => store
            .keys_with_lease(*id, rev - 1)
            .iter()
            .map(|k| deletion(k, rev))
            .collect(),
        Request::Range(_) | Request::LeaseGrant { .. } => Vec::new(),
    };
    (!events.is_empty()).then_some(events)
}

/// Whether `events` delete exactly the keys of one lease (an expiry nobody asked for).
fn is_lease_expiry(store: &Store, rev: Rev, events: &[crate::history::Event]) -> bool {
    let Some(first) = events.first() else {
        return false;
    };
    let Some(lease) = store.get(&first.kv.key, rev - 1).map(|kv| kv.lease) else {
        return false;
    };
    if lease == 0 || events.iter().any(|e| e.kind != EventKind::Delete) {
        return false;
    }
    let deletes: Vec<_> = store
        .keys_with_lease(lease, rev - 1)
        .iter()
        .map(|k| deletion(k, rev))
        .collect();
    same_changes(&deletes, events)
}

/// For each operation, the highest revision of an acknowledged operation that returned
/// before it was invoked (a write of its must come after that).
fn lower_bounds(history: &[Operation], positions: &[Option<Position>]) -> Vec<Rev> {
    let mut by_ret: Vec<(std::time::Duration, Rev)> = history
        .iter()
        .zip(positions)
        .filter(|(op, _)| matches!(op.outcome, Outcome::Ok(_)))
        .filter_map(|(op, p)| p.map(|p| (op.ret, p.rev)))
        .collect();
    by_ret.sort();
    let mut prefix_max = Vec::with_capacity(by_ret.len());
    let mut max = 0;
    for (_, rev) in &by_ret {
        max = max.max(*rev);
        prefix_max.push(max);
    }
    history
        .iter()
        .map(|op| {
            let n = by_ret.partition_point(|(ret, _)| *ret < op.call);
            n.checked_sub(1).map(|i| prefix_max[i]).unwrap_or(0)
        })
        .collect()
}

/// Pairs ordered against real time (one per offending operation).
fn real_time_violations(history: &[Operation], positions: &[Option<Position>]) -> Vec<Violation> {
    let mut returned: Vec<(std::time::Duration, usize)> = history
        .iter()
        .enumerate()
        .filter(|(i, op)| matches!(op.outcome, Outcome::Ok(_)) && positions[*i].is_some())
        .map(|(i, op)| (op.ret, i))
        .collect();
    returned.sort();
    let mut by_call: Vec<usize> = (0..history.len())
        .filter(|&i| positions[i].is_some())
        .collect();
    by_call.sort_by_key(|&i| history[i].call);
    let mut next = 0;
    let mut max: Option<(Rev, usize)> = None;
    let mut out = Vec::new();
    for later in by_call {
        while next < returned.len() && returned[next].0 < history[later].call {
            let i = returned[next].1;
            let rev = positions[i].map(|p| p.rev).unwrap_or(0);
            if max.is_none_or(|(m, _)| rev > m) {
                max = Some((rev, i));
            }
            next += 1;
        }
        let (Some(p), Some((earlier_rev, earlier))) = (positions[later], max) else {
            continue;
        };
        let ok = if p.write {
            p.rev > earlier_rev
        } else {
            p.rev >= earlier_rev
        };
        if !ok {
            out.push(Violation::RealTime {
                earlier,
                earlier_rev,
                later,
                later_rev: p.rev,
            });
        }
    }
    out
}

fn describe(events: &[crate::history::Event]) -> String {
    if events.is_empty() {
        return "nothing".into();
    }
    events
        .iter()
        .map(|e| match e.kind {
            EventKind::Put => format!("put {}={}", show(&e.kv.key), show(&e.kv.value)),
            EventKind::Delete => format!("delete {}", show(&e.kv.key)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
