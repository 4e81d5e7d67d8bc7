use std::time::Duration;

use oxcd_mvcc::Store;
use oxcd_proto::etcdserverpb::{
    LeaseCheckpoint, LeaseCheckpointRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest,
    RangeRequest,
};
use oxcd_proto::mvccpb::event::EventType;

use super::*;

const INTERVAL: Duration = Duration::from_secs(300);

fn put(store: &Store, lessor: &Lessor, key: &str, lease: i64, index: u64) {
    let (_, events) = store
        .put(
            &PutRequest {
                key: key.into(),
                value: b"v".to_vec(),
                lease,
                ..Default::default()
            },
            index,
            &|l| lessor.exists(l),
        )
        .unwrap();
    lessor.on_events(&events);
}

fn grant(store: &Store, lessor: &Lessor, id: i64, ttl: i64, index: u64) -> i64 {
    apply_grant(store, lessor, &LeaseGrantRequest { ttl, id }, index)
        .unwrap()
        .ttl
}

#[test]
fn min_ttl_follows_etcd() {
    // Defaults: 100 ms heartbeat, 10 election ticks -> 15 ticks = 1.5 s -> 2 s.
    assert_eq!(Lessor::min_ttl_for(Duration::from_millis(100), 10), 2);
    assert_eq!(Lessor::min_ttl_for(Duration::from_millis(100), 30), 5);
    assert_eq!(Lessor::min_ttl_for(Duration::from_millis(500), 11), 8);
}

#[test]
fn grant_rules_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let lessor = Lessor::new(2, INTERVAL);
    assert_eq!(
        grant(&store, &lessor, 1, 1, 1),
        2,
        "raised to the minimum TTL"
    );
    assert_eq!(grant(&store, &lessor, 2, 60, 2), 60);
    let dup = apply_grant(&store, &lessor, &(LeaseGrantRequest { ttl: 5, id: 2 }), 3);
    assert_eq!(dup.unwrap_err(), LeaseError::Exists);
    let big = apply_grant(
        &store,
        &lessor,
        &(LeaseGrantRequest {
            ttl: MAX_LEASE_TTL + 1,
            id: 3,
        }),
        4,
    );
    assert_eq!(big.unwrap_err(), LeaseError::TtlTooLarge);
    let missing = apply_revoke(&store, &lessor, &(LeaseRevokeRequest { id: 99 }), 5);
    assert_eq!(missing.unwrap_err(), LeaseError::NotFound);
}

#[test]
fn revoke_deletes_attached_keys_in_one_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let lessor = Lessor::new(2, INTERVAL);
    grant(&store, &lessor, 7, 60, 1);
    grant(&store, &lessor, 8, 60, 2);
    put(&store, &lessor, "a", 7, 3);
    put(&store, &lessor, "b", 7, 4);
    put(&store, &lessor, "c", 8, 5);
    // Re-attaching "b" to lease 8 detaches it from 7; a plain put detaches "c".
    put(&store, &lessor, "b", 8, 6);
    put(&store, &lessor, "c", 0, 7);
    assert_eq!(lessor.keys(7).unwrap(), vec![b"a".to_vec()]);
    assert_eq!(lessor.keys(8).unwrap(), vec![b"b".to_vec()]);
    put(&store, &lessor, "d", 7, 8);
    let before = store.current_revision();
    let (_, events) = apply_revoke(&store, &lessor, &(LeaseRevokeRequest { id: 7 }), 9).unwrap();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.r#type == EventType::Delete as i32));
    assert!(events
        .iter()
        .all(|e| e.kv.as_ref().unwrap().mod_revision == before + 1));
    assert_eq!(store.current_revision(), before + 1, "one revision");
    assert!(!lessor.exists(7));
    store.commit(false).unwrap();
    let left = store
        .range(&RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .unwrap();
    let keys: Vec<_> = left.kvs.iter().map(|k| k.key.clone()).collect();
    assert_eq!(keys, vec![b"b".to_vec(), b"c".to_vec()]);
}

#[test]
fn expiry_only_on_primary_and_renew_extends() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let lessor = Lessor::new(1, INTERVAL);
    grant(&store, &lessor, 1, 1, 1);
    assert_eq!(lessor.renew(1), Err(RenewError::NotPrimary));
    std::thread::sleep(Duration::from_millis(1100));
    assert!(
        lessor.take_expired(10).is_empty(),
        "not primary: never expires"
    );
    lessor.promote(Duration::ZERO);
    assert_eq!(lessor.renew(1), Ok(1));
    assert_eq!(lessor.renew(2), Err(RenewError::NotFound));
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(lessor.renew(1), Ok(1));
    std::thread::sleep(Duration::from_millis(600));
    assert!(lessor.take_expired(10).is_empty(), "renewed in time");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(lessor.take_expired(10), vec![1]);
    assert!(lessor.take_expired(10).is_empty(), "retried only later");
    assert_eq!(lessor.renew(1), Err(RenewError::NotFound), "expired");
    assert_eq!(lessor.time_to_live(1, false).unwrap().remaining, 0);
    lessor.demote();
    assert!(!lessor.is_primary());
}

#[test]
fn renewals_keep_one_queued_expiry_per_lease() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let lessor = Lessor::new(1, INTERVAL);
    lessor.promote(Duration::ZERO);
    grant(&store, &lessor, 1, 1, 1);
    grant(&store, &lessor, 2, 1, 2);
    for _ in 0..100_000 {
        assert_eq!(lessor.renew(1), Ok(1));
    }
    assert_eq!(lessor.queued_expiries(), 2, "renewals queue nothing");
    // Lease 1's entry surfaces at its first expiry and moves to the renewed one.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(lessor.renew(1), Ok(1));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lessor.take_expired(10), vec![2], "lease 1 was renewed");
    assert!(lessor.queued_expiries() <= 2);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(lessor.take_expired(10), vec![1]);
    assert_eq!(lessor.renew(1), Err(RenewError::NotFound));
}

#[test]
fn revoke_rate_limit_per_call() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let lessor = Lessor::new(1, INTERVAL);
    lessor.promote(Duration::ZERO);
    for id in 1..=250 {
        grant(&store, &lessor, id, 1, id as u64);
    }
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(lessor.take_expired(100).len(), 100);
    assert_eq!(lessor.take_expired(100).len(), 100);
    assert_eq!(lessor.take_expired(100).len(), 50);
}

#[test]
fn promote_spreads_a_pile_of_expiries() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let lessor = Lessor::new(1, INTERVAL);
    for id in 1..=3000 {
        grant(&store, &lessor, id, 1, id as u64);
    }
    lessor.promote(Duration::ZERO);
    std::thread::sleep(Duration::from_millis(1100));
    // At most 750 of them may expire in the first second.
    let first = lessor.take_expired(10_000).len();
    assert!((700..=800).contains(&first), "{first}");
}

#[test]
fn leases_and_attachments_recover_after_reopen_with_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = Store::open(&path).unwrap();
        let lessor = Lessor::new(2, INTERVAL);
        grant(&store, &lessor, 5, 1000, 1);
        grant(&store, &lessor, 6, 30, 2);
        grant(&store, &lessor, 7, 30, 3);
        put(&store, &lessor, "x", 5, 4);
        put(&store, &lessor, "y", 6, 5);
        apply_checkpoint(
            &store,
            &lessor,
            &(LeaseCheckpointRequest {
                checkpoints: vec![LeaseCheckpoint {
                    id: 5,
                    remaining_ttl: 400,
                }],
            }),
            6,
        )
        .unwrap();
        apply_revoke(&store, &lessor, &(LeaseRevokeRequest { id: 7 }), 7).unwrap();
        // Attachments that no longer hold: "z" was put again without its lease, "w" deleted.
        put(&store, &lessor, "z", 5, 8);
        put(&store, &lessor, "z", 0, 9);
        put(&store, &lessor, "w", 6, 10);
        let (_, events) = store
            .delete_range(
                &oxcd_proto::etcdserverpb::DeleteRangeRequest {
                    key: b"w".to_vec(),
                    ..Default::default()
                },
                11,
            )
            .unwrap();
        lessor.on_events(&events);
        store.commit(true).unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.consistent_index(), 11);
    let lessor = Lessor::recover(&store, 2, INTERVAL).unwrap();
    assert_eq!(lessor.len(), 2);
    assert_eq!(lessor.keys(5).unwrap(), vec![b"x".to_vec()]);
    assert_eq!(lessor.keys(6).unwrap(), vec![b"y".to_vec()]);
    // The attachments the store found while opening are taken once; a second recovery
    // reads the keys instead, with the same result.
    assert!(store.take_lease_attachments().is_none());
    let again = Lessor::recover(&store, 2, INTERVAL).unwrap();
    assert_eq!(again.keys(5).unwrap(), vec![b"x".to_vec()]);
    assert_eq!(again.keys(6).unwrap(), vec![b"y".to_vec()]);
    lessor.promote(Duration::from_secs(1));
    // Checkpointed: 400 + 1 s extension; not checkpointed: full 30 + 1.
    let t5 = lessor.time_to_live(5, true).unwrap();
    assert_eq!((t5.remaining, t5.granted), (400, 1000));
    assert_eq!(t5.keys, vec![b"x".to_vec()]);
    assert_eq!(lessor.time_to_live(6, false).unwrap().remaining, 30);
    assert!(lessor.needs_checkpoint_clear(5));
    assert!(!lessor.needs_checkpoint_clear(6));
}

#[test]
fn due_checkpoints_report_remaining_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let lessor = Lessor::new(1, Duration::from_secs(1));
    lessor.promote(Duration::ZERO);
    grant(&store, &lessor, 1, 100, 1);
    grant(&store, &lessor, 2, 1, 2); // shorter than the interval: never checkpointed
    assert!(lessor.take_due_checkpoints(10).is_empty());
    std::thread::sleep(Duration::from_millis(1100));
    let cps = lessor.take_due_checkpoints(10);
    assert_eq!(cps.len(), 1);
    assert_eq!(cps[0].id, 1);
    assert_eq!(cps[0].remaining_ttl, 99);
}

#[test]
fn at_most_one_pending_checkpoint_per_lease() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let lessor = Lessor::new(1, Duration::from_secs(1));
    lessor.promote(Duration::ZERO);
    grant(&store, &lessor, 1, 100, 1);
    // Renewals clearing a checkpoint apply `remaining_ttl: 0` checkpoints again and again.
    for i in 0..5 {
        apply_checkpoint(
            &store,
            &lessor,
            &(LeaseCheckpointRequest {
                checkpoints: vec![LeaseCheckpoint {
                    id: 1,
                    remaining_ttl: 0,
                }],
            }),
            2 + i,
        )
        .unwrap();
    }
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(lessor.take_due_checkpoints(10).len(), 1);
}

#[test]
fn promotion_and_demotion_are_pushed() {
    let lessor = Lessor::new(2, INTERVAL);
    let mut primary = lessor.subscribe_primary();
    assert!(!*primary.borrow_and_update());
    lessor.promote(Duration::ZERO);
    assert!(primary.has_changed().unwrap());
    assert!(*primary.borrow_and_update());
    lessor.demote();
    assert!(!*primary.borrow_and_update());
}

#[test]
fn reload_takes_the_leases_of_a_replaced_backend() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let lessor = Lessor::new(2, INTERVAL);
    grant(&store, &lessor, 7, 60, 1);
    put(&store, &lessor, "a", 7, 2);
    store.commit(false).unwrap();
    // A lessor that never saw those writes (another member's) catches up by reloading.
    let other = Lessor::new(2, INTERVAL);
    other.promote(Duration::ZERO);
    assert!(!other.exists(7));
    other.reload(&store).unwrap();
    assert!(other.exists(7));
    assert_eq!(other.keys(7).unwrap(), vec![b"a".to_vec()]);
    assert!(!other.is_primary(), "reloaded lessors start demoted");
}
