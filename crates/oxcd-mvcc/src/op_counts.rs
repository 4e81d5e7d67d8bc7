//! etcd's `etcd_mvcc_{range,put,delete,txn}_total`, counted as etcd's `metricsTxnWrite`
//! counts them: every range, put and delete-range run on an mvcc transaction, and one txn
//! for every mvcc transaction that ran more than one of them. A compare of a Txn and the
//! previous-value read of a put or delete with `prev_kv` (or `ignore_*`) are ranges too.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// The store's running totals (atomics; recording takes no lock).
#[derive(Debug, Default)]
pub(crate) struct OpCounters {
    ranges: AtomicU64,
    puts: AtomicU64,
    deletes: AtomicU64,
    txns: AtomicU64,
}

/// A snapshot of the store's operation counts since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Ranges run (etcd's `etcd_mvcc_range_total`).
    pub ranges: u64,
    /// Puts run (`etcd_mvcc_put_total`).
    pub puts: u64,
    /// Delete-ranges run (`etcd_mvcc_delete_total`).
    pub deletes: u64,
    /// Mvcc transactions that ran more than one operation (`etcd_mvcc_txn_total`).
    pub txns: u64,
}

impl OpCounters {
    /// Counts one range run outside a tally (a plain Range, a compaction's read).
    pub(crate) fn range(&self) {
        self.ranges.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds what `tally` counted, closing its open transaction.
    pub(crate) fn add(&self, tally: &Tally) {
        tally.end();
        let add = |c: &AtomicU64, n: u64| {
            if n != 0 {
                c.fetch_add(n, Ordering::Relaxed);
            }
        };
        add(&self.ranges, tally.ranges.get());
        add(&self.puts, tally.puts.get());
        add(&self.deletes, tally.deletes.get());
        add(&self.txns, tally.txns.get());
    }

    pub(crate) fn get(&self) -> OpCounts {
        OpCounts {
            ranges: self.ranges.load(Ordering::Relaxed),
            puts: self.puts.load(Ordering::Relaxed),
            deletes: self.deletes.load(Ordering::Relaxed),
            txns: self.txns.load(Ordering::Relaxed),
        }
    }
}

/// The operations of one request, per mvcc transaction (etcd runs a write Txn's compares
/// on a read transaction and its ops on a write transaction).
#[derive(Debug, Default)]
pub(crate) struct Tally {
    ranges: Cell<u64>,
    puts: Cell<u64>,
    deletes: Cell<u64>,
    txns: Cell<u64>,
    /// Operations of the open mvcc transaction.
    open: Cell<u64>,
}

impl Tally {
    pub(crate) fn range(&self) {
        self.ranges.set(self.ranges.get() + 1);
        self.open.set(self.open.get() + 1);
    }

    pub(crate) fn put(&self) {
        self.puts.set(self.puts.get() + 1);
        self.open.set(self.open.get() + 1);
    }

    pub(crate) fn delete(&self) {
        self.deletes.set(self.deletes.get() + 1);
        self.open.set(self.open.get() + 1);
    }

    /// Ends the open mvcc transaction: a txn if it ran more than one operation.
    pub(crate) fn end(&self) {
        if self.open.replace(0) > 1 {
            self.txns.set(self.txns.get() + 1);
        }
    }
}
