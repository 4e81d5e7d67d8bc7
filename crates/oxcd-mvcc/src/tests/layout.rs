//! The storage layout of revision rows (the `rows` module): large rows in chunks, small
//! ones inline, and backends written before chunking (inline rows only) read unchanged.

use std::collections::BTreeMap;
use std::path::Path;

use oxcd_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};
use oxcd_proto::mvccpb::{event::EventType, KeyValue};
use prost::Message;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};

use crate::backend::{
    is_chunk_table, kv_key_and_lease, CHUNK_BYTES, CHUNK_TIER_BYTES, INLINE_MAX, KV_CHUNK_TABLE,
    KV_CHUNK_TABLES, KV_TABLE, META_TABLE,
};
use crate::revision::{Revision, REV_BYTES_LEN};
use crate::rows::{chunk_counts, ChunkCounts};
use crate::{HistoryRequest, MvccError, Store};

fn put_req(s: &Store, key: &[u8], value: &[u8], lease: i64) -> i64 {
    let (r, _) = s
        .put(
            &PutRequest {
                key: key.to_vec(),
                value: value.to_vec(),
                lease,
                ..Default::default()
            },
            0,
            &|_| true,
        )
        .unwrap();
    s.commit(false).unwrap();
    r.header.unwrap().revision
}

fn put(s: &Store, key: &[u8], value: &[u8]) -> i64 {
    put_req(s, key, value, 0)
}

fn del(s: &Store, key: &[u8]) -> i64 {
    let (r, _) = s
        .delete_range(
            &DeleteRangeRequest {
                key: key.to_vec(),
                ..Default::default()
            },
            0,
        )
        .unwrap();
    s.commit(false).unwrap();
    r.header.unwrap().revision
}

fn get(s: &Store, key: &[u8], rev: i64) -> Option<KeyValue> {
    s.range(&RangeRequest {
        key: key.to_vec(),
        revision: rev,
        ..Default::default()
    })
    .unwrap()
    .kvs
    .into_iter()
    .next()
}

/// Every key at `rev` (0: now).
fn all(s: &Store, rev: i64) -> Vec<KeyValue> {
    s.range(&RangeRequest {
        key: vec![0],
        range_end: vec![0],
        revision: rev,
        ..Default::default()
    })
    .unwrap()
    .kvs
}

/// A value of `n` bytes that differs with `seed`.
fn value(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

/// The number of chunks of each revision row, of all sizes (0: inline), by revision.
fn layout(s: &Store) -> BTreeMap<Revision, u32> {
    tier_layout(s)
        .into_iter()
        .map(|(rev, n)| (rev, n.iter().sum()))
        .collect()
}

/// The number of chunks of each size of each revision row, by revision.
fn tier_layout(s: &Store) -> BTreeMap<Revision, ChunkCounts> {
    let rtxn = s.db().begin_read().unwrap();
    let t = rtxn.open_table(KV_TABLE).unwrap();
    t.iter()
        .unwrap()
        .map(|e| {
            let (k, v) = e.unwrap();
            (
                Revision::from_bytes(k.value()).unwrap().0,
                chunk_counts(v.value()).unwrap(),
            )
        })
        .collect()
}

/// Chunks in the chunk tables (0 if there is none).
fn chunk_rows(s: &Store) -> u64 {
    let rtxn = s.db().begin_read().unwrap();
    KV_CHUNK_TABLES
        .iter()
        .map(|&def| match rtxn.open_table(def) {
            Ok(t) => t.len().unwrap(),
            Err(redb::TableError::TableDoesNotExist(_)) => 0,
            Err(e) => panic!("{e}"),
        })
        .sum()
}

/// The chunk tables hold exactly the chunks of the chunked rows of the revision table,
/// each of its table's size.
pub(crate) fn check_chunks(s: &Store) {
    let want = tier_layout(s);
    let rtxn = s.db().begin_read().unwrap();
    let mut got: BTreeMap<Revision, ChunkCounts> = BTreeMap::new();
    for (tier, def) in KV_CHUNK_TABLES.iter().enumerate() {
        let Ok(t) = rtxn.open_table(*def) else {
            continue;
        };
        for e in t.iter().unwrap() {
            let (k, v) = e.unwrap();
            let k = k.value();
            assert_eq!(k.len(), REV_BYTES_LEN + 4);
            assert_eq!(v.value().len(), CHUNK_TIER_BYTES[tier]);
            let rev = Revision::from_bytes(&k[..REV_BYTES_LEN]).unwrap().0;
            let i = u32::from_be_bytes(k[REV_BYTES_LEN..].try_into().unwrap());
            let n = &mut got.entry(rev).or_default()[tier];
            assert_eq!(*n, i, "chunk {i} of size {tier} of {rev:?} out of sequence");
            *n += 1;
        }
    }
    let want: BTreeMap<Revision, ChunkCounts> = want
        .into_iter()
        .filter(|(_, n)| n.iter().any(|&n| n > 0))
        .collect();
    assert_eq!(got, want, "chunks by revision");
}

/// The chunks of each size a row of `len` bytes whose key field ends at `key_end` is
/// stored in: as many of the largest size as fit, then of the next (the module doc's
/// rule, restated independently of `rows::plan`).
fn expected_chunks(len: usize, key_end: usize) -> ChunkCounts {
    let mut out = ChunkCounts::default();
    if len <= INLINE_MAX {
        return out;
    }
    let mut rest = len - key_end;
    for tier in (0..CHUNK_TIER_BYTES.len()).rev() {
        out[tier] = (rest / CHUNK_TIER_BYTES[tier]) as u32;
        rest %= CHUNK_TIER_BYTES[tier];
    }
    out
}

/// The length of the row a first put of `key` with a value of `n` bytes writes at `rev`.
fn row_len(key: &[u8], n: usize, rev: i64) -> usize {
    KeyValue {
        key: key.to_vec(),
        create_revision: rev,
        mod_revision: rev,
        version: 1,
        value: vec![0; n],
        lease: 0,
    }
    .encoded_len()
}

/// The value length that makes such a row exactly `len` bytes.
fn value_len_for(key: &[u8], len: usize, rev: i64) -> usize {
    (0..len)
        .rev()
        .find(|&n| row_len(key, n, rev) == len)
        .unwrap_or_else(|| panic!("no value makes a {len}-byte row"))
}

/// The byte offset after the key field of a row for `key`.
fn key_end(key: &[u8]) -> usize {
    KeyValue {
        key: key.to_vec(),
        ..Default::default()
    }
    .encoded_len()
}

#[test]
fn rows_of_every_size_read_back_and_only_large_ones_are_chunked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let s = Store::open(&path).unwrap();
    let key = b"some/key".to_vec();
    // The key field's end in the rows below (keys one byte longer than `key`).
    let ke = key_end(&[key.clone(), vec![b'0']].concat());
    // (row length or value length, expected chunks)
    let mut want = Vec::new();
    for (i, target) in [
        INLINE_MAX - 1,
        INLINE_MAX,
        INLINE_MAX + 1,
        ke + CHUNK_BYTES - 1,
        ke + CHUNK_BYTES,
        ke + 2 * CHUNK_BYTES - 1,
        ke + 2 * CHUNK_BYTES,
        // At and around each larger size, and all three sizes in one row.
        ke + CHUNK_TIER_BYTES[1] - 1,
        ke + CHUNK_TIER_BYTES[1],
        ke + CHUNK_TIER_BYTES[1] + CHUNK_BYTES,
        ke + CHUNK_TIER_BYTES[2] - 1,
        ke + CHUNK_TIER_BYTES[2],
        ke + 2 * CHUNK_TIER_BYTES[2] + CHUNK_TIER_BYTES[1] + CHUNK_BYTES + 5,
    ]
    .into_iter()
    .enumerate()
    {
        let k = [key.clone(), vec![b'0' + i as u8]].concat();
        let rev = s.current_revision() + 1;
        let n = value_len_for(&k, target, rev);
        assert_eq!(put(&s, &k, &value(n, i as u8)), rev);
        let chunks = expected_chunks(target, key_end(&k));
        want.push((k, n, rev, chunks, i as u8));
    }
    // The rule as the sizes above were chosen to probe it (small, middle, large).
    let probes: Vec<ChunkCounts> = want.iter().map(|w| w.3).collect();
    assert_eq!(
        probes,
        vec![
            [0, 0, 0],
            [0, 0, 0],
            [0, 0, 0],
            [0, 0, 0],
            [1, 0, 0],
            [1, 0, 0],
            [2, 0, 0],
            [16, 0, 0],
            [0, 1, 0],
            [1, 1, 0],
            [0, 4, 0],
            [0, 0, 1],
            [1, 1, 2],
        ]
    );
    for (i, n) in [0, 1, 64 << 10, (1 << 20) + 3].into_iter().enumerate() {
        let k = [key.clone(), vec![b'a' + i as u8]].concat();
        let rev = s.current_revision() + 1;
        // A lease on the largest: read back from the row's head at open.
        let lease = if i == 3 { -7 } else { 0 };
        assert_eq!(put_req(&s, &k, &value(n, i as u8), lease), rev);
        let len = row_len(&k, n, rev) + if lease != 0 { 11 } else { 0 };
        let chunks = expected_chunks(len, key_end(&k));
        want.push((k, n, rev, chunks, i as u8));
    }
    let check = |s: &Store| {
        let layout = tier_layout(s);
        for (k, n, rev, chunks, seed) in &want {
            let kv = get(s, k, 0).unwrap();
            assert_eq!(kv.value, value(*n, *seed), "{k:?}");
            assert_eq!(kv.mod_revision, *rev);
            assert_eq!(layout[&Revision::new(*rev, 0)], *chunks, "{k:?}: {n} bytes");
        }
        check_chunks(s);
    };
    check(&s);
    let chunked = |n: &ChunkCounts| n.iter().any(|&n| n > 0);
    assert_eq!(
        tier_layout(&s).values().filter(|n| chunked(n)).count(),
        want.iter().filter(|w| chunked(&w.3)).count()
    );
    assert_eq!(want.iter().filter(|w| chunked(&w.3)).count(), 11);
    // Reopened: the index (key, lease) is rebuilt from the rows without their chunks.
    drop(s);
    let s = Store::open(&path).unwrap();
    check(&s);
    let leases = s.take_lease_attachments().unwrap();
    assert_eq!(leases, vec![([key.clone(), vec![b'd']].concat(), -7)]);
    // Range over all of them at once.
    assert_eq!(all(&s, 0).len(), want.len());
}

/// An event's type, value, mod revision and previous value.
type Summary = (i32, Vec<u8>, i64, Option<Vec<u8>>);

#[test]
fn overwrites_deletes_and_history_of_large_values() {
    let (_dir, s) = super::semantics::open();
    let big = |seed| value(70_000, seed);
    let r1 = put(&s, b"a", &big(1));
    let r2 = put(&s, b"a", &big(2));
    let r3 = put(&s, b"a", b"small");
    let r4 = put(&s, b"a", &big(4));
    let r5 = del(&s, b"a");
    // A key longer than a chunk.
    let long_key = value(3000, 9);
    let r6 = put(&s, &long_key, &big(6));
    let r7 = del(&s, &long_key);
    // A tombstone's row is its key, which stays in the row: never chunked.
    assert_eq!(layout(&s)[&Revision::new(r7, 0)], 0);
    for (rev, want) in [
        (r1, Some(big(1))),
        (r2, Some(big(2))),
        (r3, Some(b"small".to_vec())),
        (r4, Some(big(4))),
        (r5, None),
    ] {
        assert_eq!(get(&s, b"a", rev).map(|kv| kv.value), want, "at {rev}");
    }
    assert_eq!(get(&s, &long_key, r6).unwrap().value, big(6));
    assert_eq!(get(&s, &long_key, r7), None);
    let h = s
        .history(&HistoryRequest {
            from: r1,
            to: r7,
            max_revs: 0,
            range: None,
            prev_kv: true,
        })
        .unwrap();
    let summary: Vec<Summary> = h
        .events
        .iter()
        .map(|e| {
            let kv = e.kv.clone().unwrap();
            (
                e.r#type,
                kv.value,
                kv.mod_revision,
                e.prev_kv.clone().map(|p| p.value),
            )
        })
        .collect();
    let (put_ty, del_ty) = (EventType::Put as i32, EventType::Delete as i32);
    assert_eq!(
        summary,
        vec![
            (put_ty, big(1), r1, None),
            (put_ty, big(2), r2, Some(big(1))),
            (put_ty, b"small".to_vec(), r3, Some(big(2))),
            (put_ty, big(4), r4, Some(b"small".to_vec())),
            (del_ty, vec![], r5, Some(big(4))),
            (put_ty, big(6), r6, None),
            (del_ty, vec![], r7, Some(big(6))),
        ]
    );
    assert_eq!(h.events[6].kv.as_ref().unwrap().key, long_key);
    check_chunks(&s);
}

#[test]
fn compaction_removes_the_chunks_of_compacted_rows() {
    let (_dir, s) = super::semantics::open();
    // 90 rows of 15 chunks of two sizes: more chunks than a compaction batch removes.
    for i in 0..90u8 {
        put(&s, format!("k{}", i % 3).as_bytes(), &value(60 << 10, i));
    }
    s.commit(true).unwrap();
    assert_eq!(tier_layout(&s)[&Revision::new(2, 0)], [12, 3, 0]);
    let per_row = layout(&s)[&Revision::new(2, 0)];
    let before = chunk_rows(&s);
    assert_eq!(
        before,
        layout(&s).values().map(|&n| u64::from(n)).sum::<u64>()
    );
    let at = s.current_revision() - 1;
    s.schedule(at, 0).unwrap();
    // One batch stops early: its chunks count towards it.
    s.compaction_batches(1).unwrap();
    assert!(s.compaction_pending());
    let partial = chunk_rows(&s);
    assert!(
        partial < before && partial > 4 * u64::from(per_row),
        "{partial}"
    );
    check_chunks(&s);
    s.finish_compactions().unwrap();
    check_chunks(&s);
    // Left: k2's newest row below the compaction revision, k0's, k1's at the compaction
    // revision itself, and k2's above it.
    let layout = layout(&s);
    assert_eq!(
        layout.keys().map(|r| r.main).collect::<Vec<_>>(),
        vec![at - 2, at - 1, at, at + 1]
    );
    assert_eq!(chunk_rows(&s), 4 * u64::from(per_row));
    for i in 87..90u8 {
        assert_eq!(
            get(&s, format!("k{}", i % 3).as_bytes(), 0).unwrap().value,
            value(60 << 10, i)
        );
    }
    assert!(matches!(
        s.range(&RangeRequest {
            key: b"k0".to_vec(),
            revision: at - 5,
            ..Default::default()
        }),
        Err(MvccError::Compacted)
    ));
}

#[test]
fn defrag_keeps_the_chunks_and_catch_up_copies_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let s = Store::open(&path).unwrap();
    for i in 0..20u8 {
        put(
            &s,
            format!("k{}", i % 4).as_bytes(),
            &value(10_000 + usize::from(i), i),
        );
    }

    let at = s.current_revision();
    s.compact(at - 4, 0).unwrap();
    s.commit(true).unwrap();
    let want = all(&s, 0);
    let chunks = chunk_rows(&s);
    let stats = s.defrag().unwrap();
    assert!(stats.rows > chunks);

    assert_eq!(all(&s, 0), want);
    assert_eq!(chunk_rows(&s), chunks);
    check_chunks(&s);

    // The catch-up: rows (and chunks) written after the bulk copy's revision.
    let base = s.current_revision();
    let copy = dir.path().join("copy");
    {
        let rtxn = s.db().begin_read().unwrap();
        let dst = redb::Database::create(&copy).unwrap();
        crate::defrag::copy_tables_from(&rtxn, &dst).unwrap();
    }
    put(&s, b"k1", &value(50_000, 1));
    put(&s, b"new", &value(3_000, 2));
    put(&s, b"small", b"x");
    s.commit(true).unwrap();
    {
        let rtxn = s.db().begin_read().unwrap();
        let dst = redb::Database::open(&copy).unwrap();
        crate::defrag::catch_up(&rtxn, &dst, base).unwrap();
    }
    let copied = Store::open(&copy).unwrap();
    assert_eq!(all(&copied, 0), all(&s, 0));
    assert_eq!(copied.hash_kv(0).unwrap(), s.hash_kv(0).unwrap());
    check_chunks(&copied);
    drop(s);
    let s = Store::open(&path).unwrap();
    assert_eq!(all(&s, 0), all(&copied, 0));
}

#[test]
fn export_and_replace_with_round_trip_large_rows() {
    let (dir, a) = super::semantics::open();
    for i in 0..10u8 {
        put(
            &a,
            format!("k{i}").as_bytes(),
            &value(5_000 * usize::from(i), i),
        );
    }
    del(&a, b"k3");
    let snap = dir.path().join("snap");
    let info = a.export_snapshot(&snap).unwrap();
    assert_eq!(info.revision, a.current_revision());
    // scan_file counts logical rows (11) plus the meta entries, not the chunks.
    let mut rows = 0;
    let scan = crate::scan_file(&snap, info.size, &mut |t, _, v| {
        if t == KV_TABLE.name() {
            rows += 1;
            assert!(v.is_empty() || v[0] != 0, "a logical row");
        }
        assert!(!is_chunk_table(t), "{t}");
    })
    .unwrap();
    assert_eq!(rows, 11);
    let meta = a
        .db()
        .begin_read()
        .unwrap()
        .open_table(META_TABLE)
        .unwrap()
        .len()
        .unwrap();
    assert_eq!(scan.total_keys, 11 + meta);

    let (dir_b, b) = super::semantics::open();
    put(&b, b"other", &value(40_000, 7));
    let src = dir_b.path().join("incoming");
    std::fs::copy(&snap, &src).unwrap();
    b.replace_with(&src).unwrap();
    assert_eq!(all(&b, 0), all(&a, 0));
    assert_eq!(b.hash_kv(0).unwrap(), a.hash_kv(0).unwrap());
    check_chunks(&b);
}

/// Writes a copy of the backend at `src` in the layout of versions before chunking: every
/// revision row inline, its logical bytes as the value.
fn write_inline_copy(src: &Path, dst: &Path) {
    write_old_copy(src, dst, false)
}

/// Writes a copy of the backend at `src` in an older layout: every revision row inline
/// (versions before chunking), or with `small_chunks`, large rows in small chunks only
/// (versions before the larger chunk sizes).
fn write_old_copy(src: &Path, dst: &Path, small_chunks: bool) {
    let mut entries: Vec<(String, Vec<u8>, Vec<u8>)> = Vec::new();
    let len = std::fs::metadata(src).unwrap().len();
    crate::scan_file(src, len, &mut |t, k, v| {
        entries.push((t.to_string(), k.to_vec(), v.to_vec()))
    })
    .unwrap();
    let db = redb::Database::create(dst).unwrap();
    let txn = db.begin_write().unwrap();
    for (t, k, v) in &entries {
        if t == META_TABLE.name() {
            let mut m = txn.open_table(META_TABLE).unwrap();
            m.insert(std::str::from_utf8(k).unwrap(), v.as_slice())
                .unwrap();
        } else if small_chunks && t == KV_TABLE.name() {
            let mut tab = txn.open_table(KV_TABLE).unwrap();
            let chunks = crate::rows::Chunks::new(&txn);
            crate::rows::put_row_in_tiers(&mut tab, &chunks, k, v, 1).unwrap();
        } else {
            let mut tab = txn
                .open_table(TableDefinition::<&[u8], &[u8]>::new(t))
                .unwrap();
            tab.insert(k.as_slice(), v.as_slice()).unwrap();
        }
    }
    txn.commit().unwrap();
}

#[test]
fn an_inline_backend_opens_reads_and_hashes_like_a_chunked_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let s = Store::open(&path).unwrap();
    for i in 0..12u8 {
        put_req(
            &s,
            format!("k{}", i % 5).as_bytes(),
            &value(if i % 2 == 0 { 20_000 } else { 10 }, i),
            i64::from(i % 3),
        );
    }
    del(&s, b"k2");
    s.compact(5, 0).unwrap();
    put(&s, b"k9", &value(2_000, 1));
    s.commit(true).unwrap();
    assert!(chunk_rows(&s) > 0);
    let snap = dir.path().join("snap");
    s.export_snapshot(&snap).unwrap();
    let old_path = dir.path().join("old");
    write_inline_copy(&snap, &old_path);
    // The copy is all inline: no chunk table, no marker.
    let old = Store::open(&old_path).unwrap();
    assert_eq!(chunk_rows(&old), 0);
    assert!(layout(&old).values().all(|&n| n == 0));
    assert_eq!(old.current_revision(), s.current_revision());
    assert_eq!(old.compact_revision(), 5);

    let same = |a: &Store, b: &Store| {
        for rev in a.compact_revision() + 1..=a.current_revision() {
            assert_eq!(all(a, rev), all(b, rev), "range at {rev}");
            assert_eq!(
                a.hash_kv(rev).unwrap(),
                b.hash_kv(rev).unwrap(),
                "hash at {rev}"
            );
        }
        let req = HistoryRequest {
            from: a.compact_revision(),
            to: a.current_revision(),
            max_revs: 0,
            range: None,
            prev_kv: true,
        };
        assert_eq!(
            a.history(&req).unwrap().events,
            b.history(&req).unwrap().events
        );
    };
    drop(s);
    let s = Store::open(&path).unwrap();
    same(&s, &old);
    let leases = |s: &Store| {
        let mut l = s.take_lease_attachments().unwrap();
        l.sort();
        l
    };
    assert_eq!(leases(&s), leases(&old));
    // The same snapshot status (scan_file sees logical rows in both).
    let status = |p: &Path| {
        let mut h = crc32fast::Hasher::new();
        let len = std::fs::metadata(p).unwrap().len();
        let scan = crate::scan_file(p, len, &mut |t, k, v| {
            h.update(t.as_bytes());
            h.update(k);
            h.update(v);
        })
        .unwrap();
        (h.finalize(), scan)
    };
    let old_snap = dir.path().join("old-snap");
    old.export_snapshot(&old_snap).unwrap();
    assert_eq!(status(&snap), status(&old_snap));
    // The same dump, byte for byte (dumps hold logical rows), which restores into a backend
    // in this version's layout holding the same data.
    let dump = |s: &Store| {
        let d = s.dump_snapshot().unwrap();
        let mut out = Vec::new();
        d.write_to(&mut out).unwrap();
        assert_eq!(out.len() as u64, d.size);
        out
    };
    let (d_new, d_old) = (dump(&s), dump(&old));
    assert!(d_new == d_old, "dumps differ");
    let restored_path = dir.path().join("restored");
    let scan =
        crate::restore_dump(&mut d_old.as_slice(), d_old.len() as u64, &restored_path).unwrap();
    assert_eq!(scan, status(&snap).1);
    let restored = Store::open(&restored_path).unwrap();
    assert!(chunk_rows(&restored) > 0);
    check_chunks(&restored);
    same(&s, &restored);
    drop(restored);
    assert_eq!(status(&restored_path), status(&snap));

    // New writes to the old backend: large ones chunked next to the old inline rows; the
    // two stores go on agreeing through compaction and defragmentation.
    for st in [&s, &old] {
        put(st, b"k1", &value(30_000, 3));
        put(st, b"k7", b"tiny");
        del(st, b"k0");
        st.compact(st.current_revision() - 2, 0).unwrap();
        st.commit(true).unwrap();
    }
    assert!(chunk_rows(&old) > 0);
    same(&s, &old);
    old.defrag().unwrap();
    same(&s, &old);
    check_chunks(&old);
    drop(old);
    let old = Store::open(&old_path).unwrap();
    same(&s, &old);
}

/// A backend whose large rows are in small chunks only (written before the larger chunk
/// sizes) reads, hashes and walks its history as the same data written now, and goes on
/// taking writes (new rows in the new layout) and compactions.
#[test]
fn a_backend_with_small_chunks_only_reads_like_one_written_now() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("db")).unwrap();
    let sizes = [70_000usize, 20_000, 3_000, 10];
    for i in 0..10u8 {
        let n = sizes[usize::from(i) % 4];
        put_req(
            &s,
            format!("k{}", i % 4).as_bytes(),
            &value(n, i),
            i64::from(i % 3),
        );
    }
    del(&s, b"k1");
    s.commit(true).unwrap();
    let snap = dir.path().join("snap");
    s.export_snapshot(&snap).unwrap();
    let old_path = dir.path().join("old");
    write_old_copy(&snap, &old_path, true);
    let old = Store::open(&old_path).unwrap();
    let tiers = tier_layout(&old);
    assert!(tiers.values().all(|n| n[1] == 0 && n[2] == 0), "{tiers:?}");
    assert!(tier_layout(&s).values().any(|n| n[2] > 0));
    assert!(chunk_rows(&old) > chunk_rows(&s));
    check_chunks(&old);
    for rev in 1..=s.current_revision() {
        assert_eq!(all(&old, rev), all(&s, rev), "range at {rev}");
        assert_eq!(
            old.hash_kv(rev).unwrap(),
            s.hash_kv(rev).unwrap(),
            "hash at {rev}"
        );
    }
    let req = HistoryRequest {
        from: 1,
        to: s.current_revision(),
        max_revs: 0,
        range: None,
        prev_kv: true,
    };
    assert_eq!(
        old.history(&req).unwrap().events,
        s.history(&req).unwrap().events
    );
    // Writes and compaction go on: the old rows go with all their chunks.
    let rev = put(&old, b"k0", &value(70_000, 99));
    assert_eq!(tier_layout(&old)[&Revision::new(rev, 0)], [4, 0, 1]);
    old.compact(rev - 1, 0).unwrap();
    old.finish_compactions().unwrap();
    old.commit(true).unwrap();
    check_chunks(&old);
    assert_eq!(get(&old, b"k0", 0).unwrap().value, value(70_000, 99));
    assert_eq!(get(&old, b"k2", 0).unwrap().value, value(3_000, 6));
}

#[test]
fn a_missing_or_damaged_chunk_is_a_corruption_error() {
    let (_dir, s) = super::semantics::open();
    let rev = put(&s, b"k", &value(10_000, 1));
    put(&s, b"other", &value(10_000, 2));
    s.commit(true).unwrap();
    {
        let db = s.db();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(KV_CHUNK_TABLE).unwrap();
            let mut k = Revision::new(rev, 0).to_bytes(false);
            k.extend_from_slice(&3u32.to_be_bytes());
            t.remove(k.as_slice()).unwrap().unwrap();
        }
        txn.commit().unwrap();
    }
    let err = s
        .range(&RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        matches!(&err, MvccError::Corrupt { what }
            if what.contains("chunk 3 of its 10 of 994 bytes is missing")),
        "{err}"
    );
    assert!(matches!(s.hash_kv(0), Err(MvccError::Corrupt { .. })));
    // The key index does not need the chunks: the store still opens; other keys read.
    assert_eq!(get(&s, b"other", 0).unwrap().value, value(10_000, 2));

    // A damaged header.
    {
        let db = s.db();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(KV_TABLE).unwrap();
            t.insert(
                Revision::new(rev + 1, 0).to_bytes(false).as_slice(),
                &[0u8, 1, 0x80][..],
            )
            .unwrap();
        }
        txn.commit().unwrap();
    }
    assert!(matches!(
        s.range(&RangeRequest {
            key: b"other".to_vec(),
            ..Default::default()
        }),
        Err(MvccError::Corrupt { .. })
    ));
    assert!(matches!(
        kv_key_and_lease(&[0, 2]),
        Err(MvccError::Corrupt { .. })
    ));
}

#[test]
fn a_chunked_head_holds_the_key_and_lease() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("db")).unwrap();
    for (key, lease) in [(vec![b'k'], 0i64), (value(5_000, 1), 1 << 40), (vec![], -1)] {
        let kv = KeyValue {
            key: key.clone(),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            value: value(4_000, 5),
            lease,
        };
        let row = kv.encode_to_vec();
        let rk = Revision::new(2, 0).to_bytes(false);
        let db = s.db();
        let txn = db.begin_write().unwrap();
        crate::backend::write_row_in(&txn, &rk, &row).unwrap();
        {
            let t = txn.open_table(KV_TABLE).unwrap();
            let stored = t.get(rk.as_slice()).unwrap().unwrap();
            let stored = stored.value();
            assert_eq!(stored[0], 0, "chunked");
            assert!(stored.len() < row.len());
            assert_eq!(kv_key_and_lease(stored).unwrap(), (&key[..], lease));
        }
        assert_eq!(
            crate::backend::read_row_in(&txn, &rk).unwrap().unwrap(),
            row
        );
        // Replaced by a small row: the chunks go.
        crate::backend::write_row_in(&txn, &rk, b"\x0a\x01k").unwrap();
        for def in KV_CHUNK_TABLES {
            assert_eq!(txn.open_table(def).unwrap().len().unwrap(), 0);
        }
        txn.abort().unwrap();
    }
}

#[test]
fn imported_rows_are_chunked_like_applied_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut b = crate::BackendBuilder::create(&path).unwrap();
    let kv = KeyValue {
        key: b"big".to_vec(),
        create_revision: 2,
        mod_revision: 2,
        version: 1,
        value: value(100_000, 3),
        lease: 0,
    };
    b.put_revision(&Revision::new(2, 0).to_bytes(false), &kv.encode_to_vec())
        .unwrap();
    b.finish().unwrap();
    let s = Store::open(&path).unwrap();
    assert_eq!(get(&s, b"big", 0).unwrap(), kv);
    assert!(layout(&s)[&Revision::new(2, 0)] > 0);
    check_chunks(&s);
}

/// How redb lays out rows: bytes in use (stored + fragmented + metadata, all tables) over
/// the logical bytes, for rows of several sizes written in ascending revision order as the
/// store writes them (a few rows per commit). Run with `--ignored --nocapture`; the figures
/// it printed are in the `rows` module's doc.
#[test]
#[ignore]
fn redb_page_use() {
    for len in [300usize, 1000, 2100, 4140, 65_600, 1_048_700] {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        let n = (64 << 20) / len;
        let mut logical = 0u64;
        for i in 0..n {
            let key = format!("key/{i:08}");
            let v = value(len - key.len() - 16, i as u8);
            put(&s, key.as_bytes(), &v);
            logical += row_len(key.as_bytes(), v.len(), s.current_revision()) as u64;
            if i % 16 == 0 {
                s.commit(i % 256 == 0).unwrap();
            }
        }
        s.commit(true).unwrap();
        let rtxn = s.db().begin_read().unwrap();
        let mut line = format!("row {len:>8} B x {n:>6}:");
        let mut in_use = 0;
        for def in std::iter::once(KV_TABLE).chain(KV_CHUNK_TABLES) {
            let Ok(t) = rtxn.open_table(def) else {
                continue;
            };
            let st = t.stats().unwrap();
            let bytes = st.stored_bytes() + st.fragmented_bytes() + st.metadata_bytes();
            in_use += bytes;
            line += &format!(
                " {}: {} leaves {} branches {:.1} MiB;",
                def.name(),
                st.leaf_pages(),
                st.branch_pages(),
                bytes as f64 / f64::from(1 << 20)
            );
        }
        println!(
            "{line} in use / logical = {:.3}, file / logical = {:.3}",
            in_use as f64 / logical as f64,
            s.db_size() as f64 / logical as f64
        );
    }
}

/// `put_rows` (the restore's: all chunks first, then the heads) stores exactly what
/// `put_row` one row at a time does, inline and chunked rows mixed, a repeated key with a
/// shorter row included.
#[test]
fn put_rows_stores_what_put_row_stores() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (i, n) in [10usize, 5_000, 994, 70_000, 1_200, 3]
        .into_iter()
        .enumerate()
    {
        let rev = Revision {
            main: i as i64 + 2,
            sub: 0,
        };
        let kv = KeyValue {
            key: format!("k{i}").into_bytes(),
            create_revision: rev.main,
            mod_revision: rev.main,
            version: 1,
            value: value(n, i as u8),
            lease: i as i64,
        };
        rows.push((rev.to_bytes(false), kv.encode_to_vec()));
    }
    // The key of the 70,000-byte row again, with a shorter (still chunked) row.
    let again = KeyValue {
        key: b"k3".to_vec(),
        value: value(3_000, 9),
        ..Default::default()
    };
    rows.push((rows[3].0.clone(), again.encode_to_vec()));
    let tables = |one_by_one: bool| {
        let db = redb::Database::create(dir.path().join(format!("db-{one_by_one}"))).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(KV_TABLE).unwrap();
            let chunks = crate::rows::Chunks::new(&txn);
            if one_by_one {
                for (k, v) in &rows {
                    crate::rows::put_row(&mut t, &chunks, k, v).unwrap();
                }
            } else {
                let it = rows.iter().map(|(k, v)| (k.as_slice(), v.as_slice()));
                crate::rows::put_rows(&mut t, &chunks, it).unwrap();
            }
        }
        txn.commit().unwrap();
        let txn = db.begin_read().unwrap();
        let mut out = Vec::new();
        for def in std::iter::once(KV_TABLE).chain(KV_CHUNK_TABLES) {
            let Ok(t) = txn.open_table(def) else {
                continue;
            };
            for e in t.iter().unwrap() {
                let (k, v) = e.unwrap();
                out.push((
                    def.name().to_string(),
                    k.value().to_vec(),
                    v.value().to_vec(),
                ));
            }
        }
        out
    };
    let want = tables(true);
    assert!(want.iter().any(|(t, _, _)| t == KV_CHUNK_TABLE.name()));
    assert_eq!(tables(false), want);
}
