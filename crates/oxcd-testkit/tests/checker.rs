//! The checkers accept valid histories (including lost answers and lease expiries) and
//! reject each kind of anomaly: stale read, lost acknowledged write, reordered revisions,
//! phantom write, duplicated / missing / reordered watch events.

// A test binary: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use oxcd_testkit::history::{
    Compare, CompareOp, CompareTarget, Event, EventKind, KeyRange, Kv, Log, Operation, Outcome,
    Request, Response, Rev, TxnOp, TxnOpResult,
};
use oxcd_testkit::linearizability::{check, Violation};
use oxcd_testkit::model::{Scratch, Store};
use oxcd_testkit::watch_check::{check_watches, WatchRecord, WatchViolation};
use proptest::prelude::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn op(client: usize, call: u64, ret: u64, request: Request, outcome: Outcome) -> Operation {
    Operation {
        client,
        call: ms(call),
        ret: ms(ret),
        request,
        outcome,
    }
}

fn put_req(k: &str, v: &str) -> Request {
    Request::Put {
        key: k.into(),
        value: v.into(),
        lease: 0,
    }
}

fn put(client: usize, call: u64, ret: u64, k: &str, v: &str, rev: Rev) -> Operation {
    op(
        client,
        call,
        ret,
        put_req(k, v),
        Outcome::Ok(Response::Put { revision: rev }),
    )
}

fn get(client: usize, call: u64, ret: u64, k: &str, rev: Rev, kvs: Vec<Kv>) -> Operation {
    op(
        client,
        call,
        ret,
        Request::Range(KeyRange::single(k)),
        Outcome::Ok(Response::Range { revision: rev, kvs }),
    )
}

fn kv(k: &str, v: &str, create: Rev, modr: Rev, version: i64) -> Kv {
    Kv {
        key: k.into(),
        value: v.into(),
        create_revision: create,
        mod_revision: modr,
        version,
        lease: 0,
    }
}

fn put_ev(kv: Kv) -> Event {
    Event {
        kind: EventKind::Put,
        kv,
    }
}

fn del_ev(k: &str, rev: Rev) -> Event {
    oxcd_testkit::model::deletion(k.as_bytes(), rev)
}

/// a=1 @2, b=1 @3, a=2 @4.
fn three_puts_log() -> Log {
    Log::from_events([
        put_ev(kv("a", "1", 2, 2, 1)),
        put_ev(kv("b", "1", 3, 3, 1)),
        put_ev(kv("a", "2", 2, 4, 2)),
    ])
}

fn three_puts() -> Vec<Operation> {
    vec![
        put(0, 0, 10, "a", "1", 2),
        put(1, 5, 20, "b", "1", 3),
        put(0, 30, 40, "a", "2", 4),
    ]
}

#[test]
fn accepts_a_valid_concurrent_history() {
    let mut h = three_puts();
    h.push(get(1, 25, 35, "a", 3, vec![kv("a", "1", 2, 2, 1)]));
    h.push(get(2, 45, 50, "a", 4, vec![kv("a", "2", 2, 4, 2)]));
    let report = check(&h, &three_puts_log()).unwrap();
    assert_eq!(report.acknowledged, 5);
    assert_eq!(report.last_revision, 4);
}

#[test]
fn accepts_lost_answers_that_did_and_did_not_happen() {
    let mut h = three_puts();
    h[1].outcome = Outcome::Unknown("timeout".into());
    h.push(op(
        2,
        41,
        60,
        put_req("c", "never"),
        Outcome::Unknown("conn reset".into()),
    ));
    let report = check(&h, &three_puts_log()).unwrap();
    assert_eq!(report.indeterminate_applied, 1);
    assert_eq!(report.indeterminate_not_applied, 1);
}

#[test]
fn rejects_a_stale_read() {
    let mut h = three_puts();
    // Invoked after a=2 (@4) returned, yet answers revision 3.
    h.push(get(2, 45, 50, "a", 3, vec![kv("a", "1", 2, 2, 1)]));
    let v = check(&h, &three_puts_log()).unwrap_err();
    assert!(
        matches!(
            v[..],
            [Violation::RealTime {
                later: 3,
                earlier: 2,
                ..
            }]
        ),
        "{v:?}"
    );
    // Claims the newest revision but returns the old value.
    let mut h = three_puts();
    h.push(get(2, 45, 50, "a", 4, vec![kv("a", "1", 2, 2, 1)]));
    let v = check(&h, &three_puts_log()).unwrap_err();
    assert!(
        matches!(v[..], [Violation::WrongAnswer { op: 3, .. }]),
        "{v:?}"
    );
}

#[test]
fn rejects_a_lost_acknowledged_write() {
    let mut h = three_puts();
    h.push(put(2, 41, 50, "c", "1", 5));
    let v = check(&h, &three_puts_log()).unwrap_err();
    assert!(
        matches!(
            v[..],
            [Violation::WrongAnswer {
                op: 3,
                revision: 5,
                ..
            }]
        ),
        "{v:?}"
    );
    // Or its revision holds someone else's write.
    let mut h = three_puts();
    h.push(put(2, 41, 50, "c", "1", 4));
    let v = check(&h, &three_puts_log()).unwrap_err();
    assert!(
        v.iter()
            .any(|x| matches!(x, Violation::WrongAnswer { op: 3, .. })),
        "{v:?}"
    );
}

#[test]
fn rejects_reordered_revisions() {
    // b=1 was invoked after a=1 returned but got the lower revision.
    let log = Log::from_events([put_ev(kv("b", "1", 2, 2, 1)), put_ev(kv("a", "1", 3, 3, 1))]);
    let h = vec![put(0, 0, 10, "a", "1", 3), put(1, 11, 20, "b", "1", 2)];
    let v = check(&h, &log).unwrap_err();
    assert!(
        matches!(
            v[..],
            [Violation::RealTime {
                earlier: 0,
                later: 1,
                ..
            }]
        ),
        "{v:?}"
    );
}

#[test]
fn rejects_a_phantom_write_and_a_write_applied_twice() {
    let mut log = three_puts_log();
    log.revisions.insert(5, vec![put_ev(kv("z", "?", 5, 5, 1))]);
    let v = check(&three_puts(), &log).unwrap_err();
    assert!(
        matches!(v[..], [Violation::Phantom { revision: 5, .. }]),
        "{v:?}"
    );

    // A lost put applied at 5 and again at 6.
    let mut log = three_puts_log();
    log.revisions.insert(5, vec![put_ev(kv("c", "x", 5, 5, 1))]);
    log.revisions.insert(6, vec![put_ev(kv("c", "x", 5, 6, 2))]);
    let mut h = three_puts();
    h.push(op(
        2,
        41,
        60,
        put_req("c", "x"),
        Outcome::Unknown("timeout".into()),
    ));
    let v = check(&h, &log).unwrap_err();
    assert!(
        matches!(v[..], [Violation::Phantom { revision: 6, .. }]),
        "{v:?}"
    );

    // A write whose answer was lost cannot land before it was invoked.
    let log = Log::from_events([put_ev(kv("a", "1", 2, 2, 1)), put_ev(kv("b", "1", 3, 3, 1))]);
    let h = vec![
        op(
            0,
            20,
            30,
            put_req("a", "1"),
            Outcome::Unknown("timeout".into()),
        ),
        put(1, 0, 10, "b", "1", 3),
    ];
    assert!(check(&h, &log).is_err());
}

#[test]
fn rejects_an_impossible_log() {
    let log = Log::from_events([put_ev(kv("a", "1", 2, 2, 1)), put_ev(kv("a", "2", 2, 4, 2))]);
    let v = check(&[], &log).unwrap_err();
    assert!(matches!(v[..], [Violation::BadLog(_)]), "{v:?}");
}

#[test]
fn txn_compare_and_swap_is_checked() {
    let cas = |expect: Rev, v: &str| Request::Txn {
        compare: vec![Compare {
            key: "a".into(),
            op: CompareOp::Equal,
            target: CompareTarget::ModRevision(expect),
        }],
        success: vec![TxnOp::Put {
            key: "a".into(),
            value: v.into(),
            lease: 0,
        }],
        failure: vec![TxnOp::Get(KeyRange::single("a"))],
    };
    let log = Log::from_events([put_ev(kv("a", "1", 2, 2, 1)), put_ev(kv("a", "2", 2, 3, 2))]);
    let ok = vec![
        put(0, 0, 10, "a", "1", 2),
        op(
            0,
            20,
            30,
            cas(2, "2"),
            Outcome::Ok(Response::Txn {
                revision: 3,
                succeeded: true,
                results: vec![TxnOpResult::Put],
            }),
        ),
        op(
            1,
            40,
            50,
            cas(2, "3"),
            Outcome::Ok(Response::Txn {
                revision: 3,
                succeeded: false,
                results: vec![TxnOpResult::Get(vec![kv("a", "2", 2, 3, 2)])],
            }),
        ),
    ];
    check(&ok, &log).unwrap();
    // The failed CAS claims success without a write of its own.
    let mut bad = ok.clone();
    bad[2].outcome = Outcome::Ok(Response::Txn {
        revision: 3,
        succeeded: true,
        results: vec![TxnOpResult::Put],
    });
    assert!(check(&bad, &log).is_err());
}

#[test]
fn lease_expiry_may_delete_exactly_the_lease_keys() {
    let leased = |k: &str, rev: Rev| Kv {
        lease: 7,
        ..kv(k, "v", rev, rev, 1)
    };
    let put_leased = |call: u64, k: &str, rev: Rev| {
        op(
            0,
            call,
            call + 5,
            Request::Put {
                key: k.into(),
                value: "v".into(),
                lease: 7,
            },
            Outcome::Ok(Response::Put { revision: rev }),
        )
    };
    let h = vec![
        put_leased(0, "x", 2),
        put_leased(10, "y", 3),
        put(0, 20, 25, "z", "1", 4),
    ];
    let expired = Log::from_events([
        put_ev(leased("x", 2)),
        put_ev(leased("y", 3)),
        put_ev(kv("z", "1", 4, 4, 1)),
        del_ev("x", 5),
        del_ev("y", 5),
    ]);
    assert_eq!(check(&h, &expired).unwrap().lease_expiries, 1);
    // Deleting only part of the lease's keys, or a key without the lease, is a phantom.
    let mut partial = expired.clone();
    partial.revisions.insert(5, vec![del_ev("x", 5)]);
    assert!(check(&h, &partial).is_err());
    let mut other = expired;
    other.revisions.insert(5, vec![del_ev("z", 5)]);
    assert!(check(&h, &other).is_err());
}

#[test]
fn a_revoke_answered_at_the_revision_of_a_delete_of_its_key_is_a_read() {
    let leased = Kv {
        lease: 7,
        ..kv("x", "v", 2, 2, 1)
    };
    let log = Log::from_events([put_ev(leased), del_ev("x", 3)]);
    let h = vec![
        op(
            0,
            0,
            5,
            Request::Put {
                key: "x".into(),
                value: "v".into(),
                lease: 7,
            },
            Outcome::Ok(Response::Put { revision: 2 }),
        ),
        // The revoke (listed first) found the key already deleted by the concurrent delete.
        op(
            1,
            10,
            20,
            Request::LeaseRevoke { id: 7 },
            Outcome::Ok(Response::LeaseRevoke { revision: 3 }),
        ),
        op(
            0,
            10,
            15,
            Request::Delete(KeyRange::single("x")),
            Outcome::Ok(Response::Delete {
                revision: 3,
                deleted: 1,
            }),
        ),
    ];
    check(&h, &log).unwrap();
}

fn watch_of(log: &Log, reached: Rev) -> WatchRecord {
    WatchRecord {
        range: None,
        start_revision: 1,
        reached,
        events: log.events().cloned().collect(),
    }
}

#[test]
fn watch_checker_accepts_complete_watches_and_rejects_anomalies() {
    let log = three_puts_log();
    let full = watch_of(&log, 4);
    check_watches(std::slice::from_ref(&full), &log).unwrap();
    let ranged = WatchRecord {
        range: Some(KeyRange::single("a")),
        start_revision: 3,
        reached: 4,
        events: vec![put_ev(kv("a", "2", 2, 4, 2))],
    };
    check_watches(&[ranged], &log).unwrap();

    let mut dup = full.clone();
    dup.events.insert(1, dup.events[0].clone());
    let v = check_watches(&[dup], &log).unwrap_err();
    assert!(
        v.iter()
            .any(|x| matches!(x, WatchViolation::Duplicate { .. })),
        "{v:?}"
    );

    let mut missing = full.clone();
    missing.events.remove(1);
    let v = check_watches(&[missing], &log).unwrap_err();
    assert!(matches!(v[..], [WatchViolation::Missing { .. }]), "{v:?}");

    let mut swapped = full.clone();
    swapped.events.swap(0, 2);
    let v = check_watches(&[swapped], &log).unwrap_err();
    assert!(
        v.iter()
            .any(|x| matches!(x, WatchViolation::OutOfOrder { .. })),
        "{v:?}"
    );

    let mut phantom = full;
    phantom.events.push(put_ev(kv("q", "1", 5, 5, 1)));
    let v = check_watches(&[phantom], &log).unwrap_err();
    assert!(matches!(v[..], [WatchViolation::Unknown { .. }]), "{v:?}");
}

/// A random request on keys `k0`..`k3`; put values are unique (`seq`).
fn request_strategy() -> impl Strategy<Value = (u8, u8, bool)> {
    (0u8..5, 0u8..4, any::<bool>())
}

/// Runs requests one after another against the model, giving the history and the log.
fn sequential_run(reqs: &[(u8, u8, bool)]) -> (Vec<Operation>, Log) {
    let mut events: Vec<Event> = Vec::new();
    let mut history = Vec::new();
    for (seq, &(kind, key, lost)) in reqs.iter().enumerate() {
        let log = Log::from_events(events.clone());
        let store = Store::replay(&log).unwrap();
        let rev = store.last_revision();
        let k = format!("k{key}");
        let value = format!("v{seq}");
        let request = match kind {
            0 | 1 => put_req(&k, &value),
            2 => Request::Range(KeyRange::prefix("k")),
            3 => Request::Delete(KeyRange::single(k.clone())),
            _ => Request::Txn {
                compare: vec![Compare {
                    key: k.clone().into(),
                    op: CompareOp::Greater,
                    target: CompareTarget::Version(0),
                }],
                success: vec![TxnOp::Put {
                    key: k.clone().into(),
                    value: value.clone().into(),
                    lease: 0,
                }],
                failure: vec![TxnOp::Get(KeyRange::single(k.clone()))],
            },
        };
        let mut scratch = Scratch::at(&store, rev);
        let (new, response) = match &request {
            Request::Put { key, value, lease } => {
                let (e, _) = scratch.apply(&[TxnOp::Put {
                    key: key.clone(),
                    value: value.clone(),
                    lease: *lease,
                }]);
                (e, Response::Put { revision: rev + 1 })
            }
            Request::Range(r) => (
                Vec::new(),
                Response::Range {
                    revision: rev,
                    kvs: store.range(r, rev),
                },
            ),
            Request::Delete(r) => {
                let (e, _) = scratch.apply(&[TxnOp::Delete(r.clone())]);
                let deleted = e.len() as i64;
                let revision = if e.is_empty() { rev } else { rev + 1 };
                (e, Response::Delete { revision, deleted })
            }
            Request::Txn {
                compare,
                success,
                failure,
            } => {
                let succeeded = scratch.compares_hold(compare);
                let (e, results) = scratch.apply(if succeeded { success } else { failure });
                let revision = if e.is_empty() { rev } else { rev + 1 };
                (
                    e,
                    Response::Txn {
                        revision,
                        succeeded,
                        results,
                    },
                )
            }
            _ => unreachable!(),
        };
        events.extend(new);
        let t = seq as u64 * 10;
        let outcome = if lost && request.may_write() {
            Outcome::Unknown("lost".into())
        } else {
            Outcome::Ok(response)
        };
        history.push(op(seq % 3, t, t + 5, request, outcome));
    }
    (history, Log::from_events(events))
}

proptest! {
    #[test]
    fn accepts_every_sequential_run(reqs in prop::collection::vec(request_strategy(), 1..40)) {
        let (history, log) = sequential_run(&reqs);
        let report = check(&history, &log);
        prop_assert!(report.is_ok(), "{report:?}");
        let watches = [watch_of(&log, log.last_revision())];
        prop_assert!(check_watches(&watches, &log).is_ok());
    }

    #[test]
    fn rejects_a_run_with_one_acknowledged_write_removed_from_the_log(
        reqs in prop::collection::vec(request_strategy(), 1..40),
        pick in any::<prop::sample::Index>(),
    ) {
        let (history, log) = sequential_run(&reqs);
        let acked_writes: Vec<Rev> = history
            .iter()
            .filter_map(|o| match &o.outcome {
                Outcome::Ok(Response::Put { revision }) => Some(*revision),
                _ => None,
            })
            .collect();
        prop_assume!(!acked_writes.is_empty());
        let rev = acked_writes[pick.index(acked_writes.len())];
        // Rewrite the log as if that revision's write never happened: the later revisions
        // move down by one, which the acknowledged answers must expose.
        let mut events: Vec<Event> = Vec::new();
        for (r, es) in &log.revisions {
            if *r == rev {
                continue;
            }
            for e in es {
                let mut e = e.clone();
                if *r > rev {
                    e.kv.mod_revision -= 1;
                }
                events.push(e);
            }
        }
        prop_assert!(check(&history, &Log::from_events(events)).is_err());
    }

    #[test]
    fn rejects_a_run_with_one_read_answered_from_an_older_revision(
        reqs in prop::collection::vec(request_strategy(), 1..40),
        pick in any::<prop::sample::Index>(),
    ) {
        let (mut history, log) = sequential_run(&reqs);
        let reads: Vec<usize> = history
            .iter()
            .enumerate()
            .filter(|(_, o)| matches!(o.outcome, Outcome::Ok(Response::Range { revision, .. }) if revision > 1))
            .map(|(i, _)| i)
            .collect();
        prop_assume!(!reads.is_empty());
        let i = reads[pick.index(reads.len())];
        let store = Store::replay(&log).unwrap();
        let target = &mut history[i];
        if let (Request::Range(r), Outcome::Ok(Response::Range { revision, kvs })) =
            (&target.request, &mut target.outcome)
        {
            let old = store.range(r, *revision - 1);
            prop_assume!(&old != kvs);
            *kvs = old;
        }
        prop_assert!(check(&history, &log).is_err());
    }
}
