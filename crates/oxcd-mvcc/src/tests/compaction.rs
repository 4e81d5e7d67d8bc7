//! Compaction with its deletions in the background (the `compact` module): writes and
//! reads go on while a compactor thread deletes, and everything ends as a synchronous
//! compaction would leave it.

use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTableMetadata};

use super::semantics::put;
use crate::backend::{KV_TABLE, META_FINISHED_COMPACT};
use crate::{spawn_compactor, Store};

/// The key's value and mod revision at `rev`.
fn get(s: &Store, k: &str, rev: i64) -> Option<(String, i64)> {
    super::semantics::get(s, k, rev)
        .map(|kv| (String::from_utf8(kv.value).unwrap(), kv.mod_revision))
}

fn rows(s: &Store) -> u64 {
    let rtxn = s.db().begin_read().unwrap();
    rtxn.open_table(KV_TABLE).unwrap().len().unwrap()
}

fn finished(s: &Store) -> Option<Vec<u8>> {
    s.get_meta(META_FINISHED_COMPACT).unwrap()
}

/// 7 keys written `n` times in turn: key `k{i % 7}` holds `v{i}` at revision `i + 2`.
fn history(s: &Store, n: usize) {
    for i in 0..n {
        put(s, &format!("k{}", i % 7), &format!("v{i}"));
    }
    s.commit(true).unwrap();
}

#[test]
fn background_compaction_deletes_while_writes_and_reads_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Store::open(&dir.path().join("db")).unwrap());
    let compactor = spawn_compactor(&s).unwrap();
    history(&s, 20_000);
    s.compact(19_000, 0).unwrap();
    // Writes and historical reads at or above the compaction go on beside the deletion.
    let mut last = 0;
    for i in 0..500 {
        last = put(&s, &format!("w{}", i % 3), &format!("x{i}"));
        let (v, rev) = get(&s, "k3", 19_000).unwrap();
        assert_eq!((v.as_str(), rev), ("v18994", 18_996));
    }
    s.wait_compacted(19_000).unwrap();
    assert!(!s.compaction_pending());
    // Left: the 7 keys' newest revisions at 19,000, the 1,000 revisions above it and the
    // 500 writes.
    assert_eq!(rows(&s), 7 + 1_001 + 500);
    assert_eq!(finished(&s), Some(19_000u64.to_be_bytes().to_vec()));
    assert_eq!(get(&s, "w2", 0).unwrap(), ("x497".to_string(), last - 2));
    assert_eq!(get(&s, "k0", 0).unwrap().0, "v19999");
    drop(s);
    // The thread ends once the store is gone.
    compactor.join().unwrap();
}

#[test]
fn compactions_queued_back_to_back_all_finish_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Store::open(&dir.path().join("db")).unwrap());
    let _compactor = spawn_compactor(&s).unwrap();
    history(&s, 10_000);
    for rev in [2_000, 5_000, 9_000] {
        s.compact(rev, 0).unwrap();
    }
    s.wait_compacted(9_000).unwrap();
    assert_eq!(rows(&s), 7 + 1_001);
    assert_eq!(finished(&s), Some(9_000u64.to_be_bytes().to_vec()));
    assert_eq!(s.compact_revision(), 9_000);
}

#[test]
fn defrag_finishes_queued_compactions_first() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("db")).unwrap();
    history(&s, 20_000);
    // Scheduled only (no compactor thread runs the queue): the rows are all still there.
    s.schedule(19_000, 0).unwrap();
    assert!(s.compaction_pending());
    assert_eq!(rows(&s), 20_000);
    let stats = s.defrag().unwrap();
    assert!(!s.compaction_pending());
    assert_eq!(rows(&s), 7 + 1_001);
    assert!(
        stats.size_after < stats.size_before,
        "{} -> {}",
        stats.size_before,
        stats.size_after
    );
    assert_eq!(finished(&s), Some(19_000u64.to_be_bytes().to_vec()));
}

#[test]
fn a_compaction_scheduled_before_a_crash_is_resumed_and_finished_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let s = Store::open(&path).unwrap();
    history(&s, 5_000);
    s.schedule(4_000, 0).unwrap();
    drop(s);
    let s = Arc::new(Store::open(&path).unwrap());
    assert_eq!(s.compact_revision(), 4_000);
    assert_eq!(finished(&s), None);
    let _compactor = spawn_compactor(&s).unwrap();
    s.wait_compacted(4_000).unwrap();
    assert_eq!(rows(&s), 7 + 1_001);
    assert_eq!(finished(&s), Some(4_000u64.to_be_bytes().to_vec()));
}

#[test]
fn bytes_in_use_are_counted_without_the_writer_lock() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("db")).unwrap();
    history(&s, 2_000);
    // The applier holds the writer lock (as it does while applying a batch): the count
    // must not wait for it (a scrape or a Status call stalled writes when it did).
    let writer = s.writer.lock();
    let in_use = std::thread::scope(|t| t.spawn(|| s.db_size_in_use()).join().unwrap());
    drop(writer);
    assert!(in_use > 0 && in_use <= s.db_size(), "{in_use}");
}
