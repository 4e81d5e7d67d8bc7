//! Micro-benchmarks of the MVCC store's hot paths: puts driven the way the server's applier
//! drives them, ranges (one key, a prefix, an old revision), txns with compares, and the
//! in-memory key index.
//!
//! Run: `cargo bench -p oxcd-mvcc` (`-- <regex>` for a subset, `-- --test` runs each once).
//! Stores live in a temporary directory on the default temp dir's disk, so durable commits
//! pay a real fsync.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // a benchmark: a failure is a crashed run

use std::time::{Duration, Instant};

use divan::counter::ItemsCount;
use divan::{black_box, Bencher};
use oxcd_mvcc::key_index::TreeIndex;
use oxcd_mvcc::{Revision, Store};
use oxcd_proto::etcdserverpb::{
    compare, request_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use tempfile::TempDir;

fn main() {
    // Defaults that keep a whole `cargo bench -p oxcd-mvcc` short; `--max-time`,
    // `--sample-count` (or DIVAN_MAX_TIME, ...) override them.
    divan::Divan::default()
        .min_time(Duration::from_millis(500))
        .max_time(Duration::from_secs(1))
        .config_with_args()
        .main();
}

/// Bytes per value (keys are `key/%08d`, 12 bytes).
const VALUE_LEN: usize = 128;

/// The applier's durability policy (oxcd-server's `apply::DURABLE_INTERVAL` and
/// `DURABLE_ENTRIES`; this crate cannot depend on the server).
const DURABLE_INTERVAL: Duration = Duration::from_millis(100);
const DURABLE_ENTRIES: u64 = 10_000;

fn key(prefix: &str, i: usize) -> Vec<u8> {
    format!("{prefix}{i:08}").into_bytes()
}

fn put_req(key: Vec<u8>) -> PutRequest {
    PutRequest {
        key,
        value: vec![b'v'; VALUE_LEN],
        ..Default::default()
    }
}

fn no_lease(_: i64) -> bool {
    false
}

/// A store in a temporary directory, written to the way `oxcd-server/src/apply.rs` does:
/// every write gets the next raft index, each batch ends with a non-durable commit (so
/// readers see it) and a durable commit follows every 100 ms or 10,000 entries.
struct Fixture {
    _dir: TempDir,
    store: Store,
    index: u64,
    undurable: u64,
    last_durable: Instant,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("db")).expect("open store");
        Fixture {
            _dir: dir,
            store,
            index: 0,
            undurable: 0,
            last_durable: Instant::now(),
        }
    }

    /// A store holding `n` keys `key/00000000..` (one revision each), durably committed.
    fn with_keys(n: usize) -> (Fixture, Vec<PutRequest>) {
        let mut f = Fixture::new();
        let reqs: Vec<PutRequest> = (0..n).map(|i| put_req(key("key/", i))).collect();
        f.load(&reqs);
        (f, reqs)
    }

    /// Puts `reqs` in batches of 1,000 and commits durably.
    fn load(&mut self, reqs: &[PutRequest]) {
        for chunk in reqs.chunks(1000) {
            for r in chunk {
                self.put(r);
            }
            self.store.commit(false).expect("commit");
        }
        self.store.commit(true).expect("durable commit");
        self.undurable = 0;
    }

    fn next_index(&mut self) -> u64 {
        self.index += 1;
        self.undurable += 1;
        self.index
    }

    fn put(&mut self, r: &PutRequest) {
        let index = self.next_index();
        self.store.put(r, index, &no_lease).expect("put");
    }

    /// The end of an applier batch.
    fn end_batch(&mut self) {
        self.store.commit(false).expect("commit");
        if self.last_durable.elapsed() >= DURABLE_INTERVAL || self.undurable >= DURABLE_ENTRIES {
            self.store.commit(true).expect("durable commit");
            self.last_durable = Instant::now();
            self.undurable = 0;
        }
    }
}

/// Applier batches of `BATCH` puts overwriting existing keys (in turn) of a store holding
/// `existing` keys, each batch committed as the applier does (the periodic durable commit
/// included, amortized). Throughput is in puts.
#[divan::bench(consts = [1, 16, 128], args = [1_000, 100_000])]
fn put<const BATCH: usize>(bencher: Bencher, existing: usize) {
    let (mut f, reqs) = Fixture::with_keys(existing);
    let mut next = 0usize;
    bencher.counter(ItemsCount::new(BATCH)).bench_local(|| {
        for _ in 0..BATCH {
            f.put(&reqs[next]);
            next = (next + 1) % reqs.len();
        }
        f.end_batch();
    });
}

/// A batch of `BATCH` puts followed by a durable commit (redb's fsync): what the applier's
/// periodic durable commit costs.
#[divan::bench(consts = [1, 128])]
fn put_commit_durable<const BATCH: usize>(bencher: Bencher) {
    let (mut f, reqs) = Fixture::with_keys(1_000);
    let mut next = 0usize;
    bencher.counter(ItemsCount::new(BATCH)).bench_local(|| {
        for _ in 0..BATCH {
            f.put(&reqs[next]);
            next = (next + 1) % reqs.len();
        }
        f.store.commit(true).expect("durable commit");
    });
}

/// A range of one existing key (keys taken in turn) in a store of `existing` keys.
#[divan::bench(args = [1_000, 100_000], sample_size = 100)]
fn range_key(bencher: Bencher, existing: usize) {
    let (f, _) = Fixture::with_keys(existing);
    let reqs: Vec<RangeRequest> = (0..existing)
        .map(|i| RangeRequest {
            key: key("key/", i),
            ..Default::default()
        })
        .collect();
    let mut next = 0usize;
    bencher.bench_local(|| {
        let resp = f.store.range(&reqs[next]).expect("range");
        debug_assert_eq!(resp.kvs.len(), 1);
        next = (next + 1) % reqs.len();
        resp
    });
}

/// A prefix range returning `n` keys (values included) from a store that also holds
/// 10,000 other keys.
#[divan::bench(args = [100, 1_000], sample_size = 10)]
fn range_prefix(bencher: Bencher, n: usize) {
    let (mut f, _) = Fixture::with_keys(10_000);
    let prefix = format!("p{n}/");
    let reqs: Vec<PutRequest> = (0..n).map(|i| put_req(key(&prefix, i))).collect();
    f.load(&reqs);
    let mut end = prefix.clone().into_bytes();
    *end.last_mut().expect("prefix") += 1;
    let req = RangeRequest {
        key: prefix.into_bytes(),
        range_end: end,
        ..Default::default()
    };
    bencher.counter(ItemsCount::new(n)).bench_local(|| {
        let resp = f.store.range(&req).expect("range");
        debug_assert_eq!(resp.kvs.len(), n);
        resp
    });
}

/// A range of `n` keys (one key, or a prefix) at an old revision: 1,000 keys, each
/// overwritten 10 times since; the range reads the revision of the initial load.
#[divan::bench(args = [1, 100], sample_size = 10)]
fn range_old_revision(bencher: Bencher, n: usize) {
    let (mut f, reqs) = Fixture::with_keys(1_000);
    let old = f.store.current_revision();
    for _ in 0..10 {
        f.load(&reqs);
    }
    let req = if n == 1 {
        RangeRequest {
            key: key("key/", 500),
            revision: old,
            ..Default::default()
        }
    } else {
        RangeRequest {
            key: key("key/", 0),
            range_end: key("key/", n),
            revision: old,
            ..Default::default()
        }
    };
    bencher.counter(ItemsCount::new(n)).bench_local(|| {
        let resp = f.store.range(&req).expect("range");
        debug_assert_eq!(resp.kvs.len(), n);
        resp
    });
}

fn compare_mod_revision(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Mod as i32,
        key: key.to_vec(),
        range_end: Vec::new(),
        target_union: Some(compare::TargetUnion::ModRevision(rev)),
    }
}

fn compare_value(key: &[u8], value: &[u8]) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Value as i32,
        key: key.to_vec(),
        range_end: Vec::new(),
        target_union: Some(compare::TargetUnion::Value(value.to_vec())),
    }
}

fn op_range(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

/// An etcd-style compare-and-swap, applied as one applier batch: `mod_revision(k) == r`
/// and `value(k) == v` then put `k`, else range `k`. Keys of a 1,000-key store in turn;
/// the compares always hold.
#[divan::bench]
fn txn_compare_and_put(bencher: Bencher) {
    let (mut f, reqs) = Fixture::with_keys(1_000);
    // Key i was put at revision i + 2 (a fresh store is at revision 1).
    let mut mod_revs: Vec<i64> = (0..reqs.len()).map(|i| i as i64 + 2).collect();
    let mut next = 0usize;
    bencher.bench_local(|| {
        let put = &reqs[next];
        let txn = TxnRequest {
            compare: vec![
                compare_mod_revision(&put.key, mod_revs[next]),
                compare_value(&put.key, &put.value),
            ],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(put.clone())),
            }],
            failure: vec![op_range(&put.key)],
        };
        let index = f.next_index();
        let (resp, _) = f.store.txn(&txn, index, &no_lease).expect("txn");
        debug_assert!(resp.succeeded);
        mod_revs[next] = resp.header.map_or(0, |h| h.revision);
        f.end_batch();
        next = (next + 1) % reqs.len();
    });
}

/// A txn whose compare fails (`value(k) == "nope"`) and whose failure branch reads `k`:
/// applied through the log like a write (no new revision), one per applier batch.
#[divan::bench]
fn txn_compare_fails_range(bencher: Bencher) {
    let (mut f, reqs) = Fixture::with_keys(1_000);
    let txns: Vec<TxnRequest> = reqs
        .iter()
        .map(|r| TxnRequest {
            compare: vec![compare_value(&r.key, b"nope")],
            success: vec![],
            failure: vec![op_range(&r.key)],
        })
        .collect();
    let mut next = 0usize;
    bencher.bench_local(|| {
        let index = f.next_index();
        let (resp, _) = f.store.txn(&txns[next], index, &no_lease).expect("txn");
        debug_assert!(!resp.succeeded);
        f.end_batch();
        next = (next + 1) % txns.len();
    });
}

/// A read-only txn (compare on a value, range in the success branch) served outside the
/// log, as the server serves them.
#[divan::bench(sample_size = 100)]
fn txn_read_only(bencher: Bencher) {
    let (f, reqs) = Fixture::with_keys(1_000);
    let txns: Vec<TxnRequest> = reqs
        .iter()
        .map(|r| TxnRequest {
            compare: vec![compare_value(&r.key, &r.value)],
            success: vec![op_range(&r.key)],
            failure: vec![],
        })
        .collect();
    let mut next = 0usize;
    bencher.bench_local(|| {
        let resp = f.store.txn_read_only(&txns[next]).expect("txn");
        debug_assert!(resp.succeeded);
        next = (next + 1) % txns.len();
        resp
    });
}

/// The in-memory key index (etcd's treeIndex) on its own.
mod key_index {
    use super::*;

    const KEYS: usize = 100_000;

    fn index() -> (TreeIndex, Vec<Vec<u8>>, i64) {
        let keys: Vec<Vec<u8>> = (0..KEYS).map(|i| key("key/", i)).collect();
        let mut ix = TreeIndex::default();
        for (i, k) in keys.iter().enumerate() {
            ix.put(k, Revision::new(i as i64 + 2, 0));
        }
        (ix, keys, KEYS as i64 + 1)
    }

    /// A put of an existing key (keys in turn) in an index of 100,000 keys.
    #[divan::bench(sample_size = 1000)]
    fn put_existing(bencher: Bencher) {
        let (mut ix, keys, mut rev) = index();
        let mut next = 0usize;
        bencher.bench_local(|| {
            rev += 1;
            ix.put(&keys[next], Revision::new(rev, 0));
            next = (next + 1) % keys.len();
        });
    }

    /// A put of a new key (the first put creates it) into an index of 100,000 keys.
    #[divan::bench(sample_size = 1000)]
    fn put_new(bencher: Bencher) {
        let (mut ix, _, mut rev) = index();
        let mut n = 0usize;
        bencher.bench_local(|| {
            rev += 1;
            n += 1;
            ix.put(&key("new/", n), Revision::new(rev, 0));
        });
    }

    /// A lookup of one key at the current revision in an index of 100,000 keys.
    #[divan::bench(sample_size = 1000)]
    fn get(bencher: Bencher) {
        let (ix, keys, rev) = index();
        let mut next = 0usize;
        bencher.bench_local(|| {
            let at = ix.get(black_box(&keys[next]), rev);
            next = (next + 1) % keys.len();
            at
        });
    }

    /// A visit of 100 consecutive keys (a prefix range) in an index of 100,000 keys.
    #[divan::bench(sample_size = 1000)]
    fn visit_100(bencher: Bencher) {
        let (ix, keys, rev) = index();
        let (start, end) = (&keys[50_000], &keys[50_100]);
        bencher.counter(ItemsCount::new(100usize)).bench_local(|| {
            let mut n = 0usize;
            ix.visit(black_box(start), end, rev, |_, _| n += 1);
            debug_assert_eq!(n, 100);
            n
        });
    }
}
