//! Backend snapshots for peers: [`Store::export_snapshot`] copies the committed backend
//! into a new file (the leader sends it to a member too far behind), and
//! [`Store::replace_with`] swaps a received file in (the member's applier installs it).
//!
//! Both reuse the defragmentation's machinery: the export is its table copy, made under one
//! read transaction so it is a point-in-time copy while the store keeps serving; the
//! replacement is its swap (the file is renamed over the database and the directory
//! fsynced, reads begun before go on in the old file).
//!
//! A client's Maintenance.Snapshot streams a dump of the rows instead (the `dump`
//! module); [`scan_file`] reads a backend file for `snapshot status`, and
//! [`Store::reset_for_restore`] turns a restored backend into that of a new cluster
//! (`snapshot restore`).

use std::path::Path;
use std::sync::atomic::Ordering;

use redb::ReadableDatabase;

use crate::backend::{
    meta_get_i64, meta_get_u64, META_CONSISTENT_INDEX, META_CURRENT_REV, META_TABLE,
};
use crate::defrag::copy_tables_from;
use crate::store::{poison, Loaded, ReadSnap, Store};
use crate::MvccError;

/// What a [`Store::export_snapshot`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportInfo {
    /// Raft index the copy holds (its consistent index).
    pub consistent_index: u64,
    /// The revision the copy holds (the newest committed one when it was taken).
    pub revision: i64,
    /// Size of the file written, in bytes.
    pub size: u64,
}

/// The first bytes of every backend (redb) file.
const REDB_MAGIC: &[u8] = b"redb";

/// Whether `head` (the first bytes of a file) starts like a backend file of ours (redb's
/// magic number), rather than, say, an etcd (bbolt) snapshot.
pub fn is_backend_file(head: &[u8]) -> bool {
    head.starts_with(REDB_MAGIC)
}

/// What [`scan_file`] found in a backend file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileScan {
    /// The revision the file holds: its newest (as a store opened on it would start).
    pub revision: i64,
    /// Entries in all its tables (etcd's "total keys" counts every bucket's entries).
    pub total_keys: u64,
}

/// The first `len` bytes of a file, read-only: a backend followed by something else (a
/// snapshot's SHA-256 trailer) is opened without copying it.
#[derive(Debug)]
struct FilePrefix {
    file: std::fs::File,
    len: u64,
}

impl redb::StorageBackend for FilePrefix {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(self.len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        use std::os::unix::fs::FileExt;
        if offset.saturating_add(out.len() as u64) > self.len {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
        self.file.read_exact_at(out, offset)
    }

    fn set_len(&self, _len: u64) -> Result<(), std::io::Error> {
        Err(std::io::Error::from(std::io::ErrorKind::ReadOnlyFilesystem))
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        Ok(())
    }

    fn write(&self, _offset: u64, _data: &[u8]) -> Result<(), std::io::Error> {
        Err(std::io::Error::from(std::io::ErrorKind::ReadOnlyFilesystem))
    }
}

/// What [`scan_file`] calls for each entry: `(table, key, value)`.
pub type EntryVisitor<'a> = dyn FnMut(&str, &[u8], &[u8]) + 'a;

/// Reads the backend held by the first `len` bytes of the file at `path` (all of it, or
/// all but a snapshot's trailer) without changing it, calling `each(table, key, value)`
/// for every entry of every table: tables in name order, entries in key order (the meta
/// table's keys as their UTF-8 bytes). Fails if those bytes are not a complete, cleanly
/// closed backend (a truncated copy, another format).
pub fn scan_file(
    path: &Path,
    len: u64,
    each: &mut EntryVisitor<'_>,
) -> Result<FileScan, MvccError> {
    let file = std::fs::File::open(path)
        .map_err(|e| MvccError::backend(format!("cannot open {}: {e}", path.display())))?;
    let db = redb::Builder::new().open_read_only_with_backend(FilePrefix { file, len })?;
    let txn = db.begin_read()?;
    let mut scan = crate::dump::RowScan::default();
    crate::dump::visit_backend_rows(&txn, each, &mut scan)?;
    Ok(scan.finish())
}

impl Store {
    /// Makes this store (just opened on a snapshot's copy) the backend of a new cluster, as
    /// etcd's `snapshot restore` does: the consistent index goes back to 0 (the new
    /// cluster's raft log starts empty); `bump_revision` is added to the current revision
    /// (etcd's `--bump-revision`, so watchers of the old cluster never see a revision
    /// twice), and with `mark_compacted` everything below the new current revision is
    /// compacted (etcd's `--mark-compacted`). Committed durably. Returns the current
    /// revision.
    pub fn reset_for_restore(
        &self,
        bump_revision: u64,
        mark_compacted: bool,
    ) -> Result<i64, MvccError> {
        let rev = {
            let mut w = self.writer.lock();
            w.check()?;
            let r = (|| {
                self.open_txn(&mut w)?;
                w.index = 0;
                self.applied_index.store(0, Ordering::Release);
                let bump = i64::try_from(bump_revision)
                    .ok()
                    .and_then(|b| w.rev.checked_add(b))
                    .ok_or_else(|| {
                        MvccError::backend(format!(
                            "cannot bump revision {} by {bump_revision}",
                            w.rev
                        ))
                    })?;
                w.rev = bump;
                self.applied_rev.store(bump, Ordering::Release);
                self.commit_locked(&mut w, true)?;
                Ok(bump)
            })();
            poison(&mut w, r)?
        };
        if mark_compacted && rev > self.compact_revision() {
            self.compact(rev, 0)?;
        }
        self.commit(true)?;
        Ok(rev)
    }

    /// A read transaction holding everything applied so far, with its consistent index
    /// and revision: the open write batch is committed first (not durably: what is read
    /// from it is a copy for elsewhere), so a raft snapshot at any index the applier has
    /// reported applied is covered.
    pub(crate) fn point_in_time(&self) -> Result<(ReadSnap, u64, i64), MvccError> {
        let snap = {
            let mut w = self.writer.lock();
            w.check()?;
            let r = self.commit_locked(&mut w, false);
            poison(&mut w, r)?;
            self.begin_read()?
        };
        let (consistent_index, revision) = {
            let meta = snap.open_table(META_TABLE)?;
            (
                meta_get_u64(&meta, META_CONSISTENT_INDEX)?.unwrap_or(0),
                meta_get_i64(&meta, META_CURRENT_REV)?.unwrap_or(1),
            )
        };
        Ok((snap, consistent_index, revision))
    }

    /// Copies the backend into a new database file at `dest` (replacing any file there),
    /// fsynced with its directory. The copy is of one point in time holding everything
    /// applied when it starts: the open write batch is committed first (not durably: the
    /// copy is), so a raft snapshot at any index the applier has reported applied is
    /// covered. The store keeps serving reads and writes while the tables are copied. On
    /// error `dest` is removed.
    pub fn export_snapshot(&self, dest: &Path) -> Result<ExportInfo, MvccError> {
        let (snap, consistent_index, revision) = self.point_in_time()?;
        let _ = std::fs::remove_file(dest);
        let written = (|| {
            let (backend, _pacing) = crate::defrag::PacedFile::create(dest)?;
            let db = redb::Builder::new()
                .set_cache_size(self.cache_bytes)
                .create_with_backend(backend)?;
            copy_tables_from(&snap, &db)?;
            drop(db);
            oxcd_fs::sync_parent(dest).map_err(|e| {
                MvccError::backend(format!(
                    "cannot sync the directory of {}: {e}",
                    dest.display()
                ))
            })?;
            std::fs::metadata(dest)
                .map(|m| m.len())
                .map_err(|e| MvccError::backend(format!("cannot stat {}: {e}", dest.display())))
        })();
        match written {
            Ok(size) => Ok(ExportInfo {
                consistent_index,
                revision,
                size,
            }),
            Err(e) => {
                let _ = std::fs::remove_file(dest);
                Err(e)
            }
        }
    }

    /// Replaces the store's state with the database file `src` (one written by
    /// [`Store::export_snapshot`], usually on another member): opens it and rebuilds the key
    /// index from it, renames it over the store's file durably, and continues on it. `src`
    /// must be on the file system of the store's file (e.g. in the same directory); it is
    /// gone afterwards.
    ///
    /// Writes applied but not committed are discarded: the snapshot holds a newer state.
    /// Reads begun before go on in the old file, which is closed when the last of them
    /// ends. If `src` cannot be opened or read, nothing changes. If the rename cannot be
    /// made durable, the store refuses further writes (like any backend failure).
    pub fn replace_with(&self, src: &Path) -> Result<(), MvccError> {
        // No compaction batch may run on the old file once its index is gone.
        let gate = self.compactions.gate.lock();
        let mut w = self.writer.lock();
        w.check()?;
        let new_db = redb::Builder::new()
            .set_cache_size(self.cache_bytes)
            .open(src)?;
        // Check that the file is a backend (and build its index) before it replaces ours.
        let loaded = Loaded::read(&new_db)?;
        // Drops (aborts) the open batch.
        w.txn = None;
        w.nondurable = false;
        std::fs::rename(src, &self.path).map_err(|e| {
            MvccError::backend(format!(
                "cannot rename {} to {}: {e}",
                src.display(),
                self.path.display()
            ))
        })?;
        // From here on the path names the new file: the store must use it.
        let old = self.swap_db(new_db);
        // The old file's compactions are moot; the new file's own is resumed below.
        self.compactions.clear();
        let Loaded {
            index,
            open_leases,
            compact_rev,
            current,
            consistent_index,
            scheduled,
        } = loaded;
        {
            let mut state = self.state.write();
            state.index = index;
            state.committed_rev = current;
            state.compact_rev = compact_rev;
        }
        w.rev = current;
        w.index = consistent_index;
        self.applied_rev.store(current, Ordering::Release);
        self.applied_index
            .store(consistent_index, Ordering::Release);
        self.committed_index
            .store(consistent_index, Ordering::Release);
        *self.open_leases.lock() = Some(open_leases);
        let synced = oxcd_fs::sync_parent(&self.path).map_err(|e| {
            MvccError::backend(format!(
                "cannot sync the directory of {} after replacing it: {e}",
                self.path.display()
            ))
        });
        poison(&mut w, synced)?;
        drop(w);
        tracing::info!(
            path = %self.path.display(),
            revision = current,
            consistent_index,
            old_file_closed = std::sync::Arc::try_unwrap(old).map(drop).is_ok(),
            "replaced the backend with a snapshot"
        );
        if let Some(s) = scheduled.filter(|&s| s > compact_rev) {
            tracing::info!(rev = s, "resuming the snapshot's interrupted compaction");
            self.resume_compaction(s);
            if !self.compactions.in_background() {
                self.finish_compactions_locked(&gate)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use oxcd_proto::etcdserverpb::{PutRequest, RangeRequest};
    use redb::ReadableTableMetadata;

    use super::*;
    use crate::backend::KV_TABLE;

    fn put(s: &Store, key: &str, value: &str, idx: u64) {
        let req = PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            lease: 0,
            ..Default::default()
        };
        s.put(&req, idx, &|_| true).unwrap();
    }

    fn all(s: &Store) -> Vec<(String, String, i64)> {
        let r = s
            .range(&RangeRequest {
                key: vec![0],
                range_end: vec![0],
                ..Default::default()
            })
            .unwrap();
        r.kvs
            .into_iter()
            .map(|kv| {
                (
                    String::from_utf8(kv.key).unwrap(),
                    String::from_utf8(kv.value).unwrap(),
                    kv.mod_revision,
                )
            })
            .collect()
    }

    /// A store with `n` keys written at indexes 1..=n, committed.
    fn filled(path: &Path, prefix: &str, n: u64) -> Store {
        let s = Store::open(path).unwrap();
        for i in 1..=n {
            put(&s, &format!("{prefix}{i:03}"), &format!("v{i}"), i);
        }
        s.commit(true).unwrap();
        s
    }

    #[test]
    fn export_copies_everything_applied() {
        let dir = tempfile::tempdir().unwrap();
        let s = filled(&dir.path().join("db"), "k", 20);
        s.aux_put("members", b"1", b"m1").unwrap();
        s.commit(false).unwrap();
        // Applied but not committed yet: in the export all the same.
        put(&s, "pending", "p", 21);

        let dest = dir.path().join("snap.db");
        let info = s.export_snapshot(&dest).unwrap();
        assert_eq!(info.consistent_index, 21);
        assert_eq!(info.revision, 22);
        assert_eq!(info.size, std::fs::metadata(&dest).unwrap().len());
        assert_eq!(s.committed_index(), 21);

        let copy = Store::open(&dest).unwrap();
        assert_eq!(copy.consistent_index(), 21);
        assert_eq!(copy.current_revision(), 22);
        assert_eq!(all(&copy), all(&s));
        assert_eq!(all(&copy).len(), 21);
        // Later writes are not in it.
        put(&s, "later", "l", 22);
        s.commit(false).unwrap();
        assert_eq!(all(&s).len(), 22);
        assert_eq!(all(&copy).len(), 21);
        assert_eq!(
            copy.aux_scan("members").unwrap(),
            vec![(b"1".to_vec(), b"m1".to_vec())]
        );
    }

    /// `(table, key, value)` rows.
    type Rows = Vec<(String, Vec<u8>, Vec<u8>)>;

    /// Every row of every table of the backend file at `path`, in scan order.
    fn rows_of_file(path: &Path) -> (Rows, FileScan) {
        let len = std::fs::metadata(path).unwrap().len();
        let mut rows = Vec::new();
        let scan = scan_file(path, len, &mut |t, k, v| {
            rows.push((t.to_string(), k.to_vec(), v.to_vec()))
        })
        .unwrap();
        (rows, scan)
    }

    fn dump_bytes(s: &Store) -> Vec<u8> {
        let dump = s.dump_snapshot().unwrap();
        let mut out = Vec::new();
        dump.write_to(&mut out).unwrap();
        assert_eq!(out.len() as u64, dump.size);
        out
    }

    #[test]
    fn a_dump_restores_the_same_backend_as_an_export() {
        let dir = tempfile::tempdir().unwrap();
        let s = filled(&dir.path().join("db"), "k", 40);
        s.aux_put("members", b"1", b"m1").unwrap();
        put(&s, "big", &"x".repeat(1 << 20), 41);
        s.commit(false).unwrap();
        // Applied but not committed yet: in the dump all the same.
        put(&s, "pending", "p", 42);

        let dump = s.dump_snapshot().unwrap();
        assert_eq!((dump.consistent_index, dump.revision), (42, 43));
        assert_eq!(dump.size % 512, 0);
        // Written later, the dump is still of the moment it was taken.
        put(&s, "later", "l", 43);
        s.commit(false).unwrap();
        let mut bytes = Vec::new();
        dump.write_to(&mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, dump.size);
        drop(dump);

        let restored = dir.path().join("restored.db");
        let scan =
            crate::restore_dump(&mut bytes.as_slice(), bytes.len() as u64, &restored).unwrap();
        let copy = Store::open(&restored).unwrap();
        assert_eq!(copy.consistent_index(), 42);
        assert_eq!(copy.current_revision(), 43);
        assert_eq!(all(&copy).len(), 42);
        assert!(all(&copy).iter().all(|(k, ..)| k != "later"));
        assert_eq!(
            copy.aux_scan("members").unwrap(),
            vec![(b"1".to_vec(), b"m1".to_vec())]
        );
        drop(copy);

        // Row for row what an export of the same moment holds, and what status reads.
        let (restored_rows, restored_scan) = rows_of_file(&restored);
        let mut dumped_rows = Vec::new();
        let dumped_scan =
            crate::scan_dump(&mut bytes.as_slice(), bytes.len() as u64, &mut |t, k, v| {
                dumped_rows.push((t.to_string(), k.to_vec(), v.to_vec()))
            })
            .unwrap();
        assert_eq!(dumped_rows, restored_rows);
        assert_eq!(dumped_scan, restored_scan);
        assert_eq!(scan, restored_scan);
        assert_eq!(scan.revision, 43);
    }

    #[test]
    fn a_truncated_or_damaged_dump_restores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = filled(&dir.path().join("db"), "k", 30);
        let bytes = dump_bytes(&s);
        let dest = dir.path().join("restored.db");
        // Cut in the header, in a row, just before the footer, and in the padding.
        let footer = bytes.iter().rposition(|&b| b == b'Z').unwrap();
        for cut in [10, bytes.len() / 2, footer, footer + 13] {
            let err = crate::restore_dump(&mut &bytes[..cut], cut as u64, &dest).unwrap_err();
            assert!(err.to_string().contains("snapshot"), "cut at {cut}: {err}");
            assert!(!dest.exists(), "cut at {cut}: a partial backend was left");
        }
        // A damaged tag or length.
        for at in [16, 17, footer + 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x55;
            let err =
                crate::restore_dump(&mut bad.as_slice(), bad.len() as u64, &dest).unwrap_err();
            assert!(err.to_string().contains("snapshot"), "byte {at}: {err}");
            assert!(!dest.exists());
        }
        // Something else entirely.
        let other = [b"redb".as_slice(), &[0; 28]].concat();
        let err = crate::scan_dump(&mut other.as_slice(), 32, &mut |_, _, _| {}).unwrap_err();
        assert!(err.to_string().contains("not an oxcd snapshot"), "{err}");
        // The whole dump still restores.
        crate::restore_dump(&mut bytes.as_slice(), bytes.len() as u64, &dest).unwrap();
        assert_eq!(all(&Store::open(&dest).unwrap()), all(&s));
    }

    /// Errors met by the inserting thread (a row it refuses) and by the file itself (no
    /// directory to create it in) fail the restore and leave no file, as the parser's do.
    #[test]
    fn a_restore_failing_while_inserting_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // A dump holding a chunk table (dumps hold logical rows only), after enough rows
        // of another table that the inserter has committed some of them.
        let mut d = b"oxcdsnap\0\0\0\x01\0\0\0\0".to_vec();
        let table = |d: &mut Vec<u8>, name: &str| {
            d.push(b'T');
            d.extend_from_slice(&(name.len() as u32).to_be_bytes());
            d.extend_from_slice(name.as_bytes());
        };
        let row = |d: &mut Vec<u8>, k: &[u8], v: &[u8]| {
            d.push(b'R');
            d.extend_from_slice(&(k.len() as u32).to_be_bytes());
            d.extend_from_slice(&(v.len() as u32).to_be_bytes());
            d.extend_from_slice(k);
            d.extend_from_slice(v);
        };
        table(&mut d, "aux_first");
        let rows = 200u64;
        for i in 0..rows {
            row(&mut d, &i.to_be_bytes(), &[7u8; 1500]);
        }
        table(
            &mut d,
            redb::TableHandle::name(&crate::backend::KV_CHUNK_TABLE),
        );
        row(&mut d, &[0u8; 21], &[1u8; 994]);
        d.push(b'Z');
        d.extend_from_slice(&2u32.to_be_bytes());
        d.extend_from_slice(&(rows + 1).to_be_bytes());
        d.resize(d.len().div_ceil(512) * 512, 0);
        let dest = dir.path().join("restored.db");
        let err = crate::restore_dump(&mut d.as_slice(), d.len() as u64, &dest).unwrap_err();
        assert!(err.to_string().contains("chunk table"), "{err}");
        assert!(!dest.exists(), "a partial backend was left");

        let s = filled(&dir.path().join("db"), "k", 30);
        let bytes = dump_bytes(&s);
        let nowhere = dir.path().join("no/such/dir/restored.db");
        let err =
            crate::restore_dump(&mut bytes.as_slice(), bytes.len() as u64, &nowhere).unwrap_err();
        assert!(err.to_string().contains("cannot create"), "{err}");
        assert!(!nowhere.exists());
    }

    #[test]
    fn replace_installs_the_other_state_and_writes_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let leader = filled(&dir.path().join("leader.db"), "a", 50);
        let path = dir.path().join("db");
        let follower = filled(&path, "b", 5);
        put(&follower, "uncommitted", "u", 6);

        let received = dir.path().join("received.db");
        leader.export_snapshot(&received).unwrap();
        follower.replace_with(&received).unwrap();
        assert!(
            !received.exists(),
            "the received file is renamed, not copied"
        );
        assert_eq!(all(&follower), all(&leader));
        assert_eq!(follower.consistent_index(), 50);
        assert_eq!(follower.committed_index(), 50);
        assert_eq!(follower.current_revision(), leader.current_revision());
        assert_eq!(follower.committed_revision(), leader.committed_revision());

        // The same entries applied on both keep them equal.
        put(&leader, "after", "x", 51);
        put(&follower, "after", "x", 51);
        leader.commit(true).unwrap();
        follower.commit(true).unwrap();
        assert_eq!(all(&follower), all(&leader));
        drop(follower);

        // Reopened after a restart, the store is the new file.
        let reopened = Store::open(&path).unwrap();
        assert_eq!(reopened.consistent_index(), 51);
        assert_eq!(all(&reopened), all(&leader));
    }

    #[test]
    fn reads_begun_before_the_replacement_finish_in_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let leader = filled(&dir.path().join("leader.db"), "a", 30);
        let follower = filled(&dir.path().join("db"), "b", 7);
        let received = dir.path().join("received.db");
        leader.export_snapshot(&received).unwrap();

        let old = follower.begin_read().unwrap();
        follower.replace_with(&received).unwrap();
        assert_eq!(old.open_table(KV_TABLE).unwrap().len().unwrap(), 7);
        drop(old);
        assert_eq!(all(&follower).len(), 30);
    }

    #[test]
    fn a_file_that_is_not_a_backend_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let s = filled(&path, "k", 3);
        let bad = dir.path().join("received.db");
        std::fs::write(&bad, vec![7u8; 8192]).unwrap();
        assert!(s.replace_with(&bad).is_err());
        assert_eq!(all(&s).len(), 3);
        put(&s, "k004", "v4", 4);
        s.commit(true).unwrap();
        drop(s);
        assert_eq!(all(&Store::open(&path).unwrap()).len(), 4);
    }

    #[test]
    fn scan_reads_every_table_and_the_revision() {
        let dir = tempfile::tempdir().unwrap();
        let s = filled(&dir.path().join("db"), "k", 10);
        s.aux_put("members", b"1", b"m1").unwrap();
        s.commit(true).unwrap();
        let dest = dir.path().join("snap.db");
        s.export_snapshot(&dest).unwrap();
        let mut seen = Vec::new();
        let size = std::fs::metadata(&dest).unwrap().len();
        let scan = scan_file(&dest, size, &mut |t, k, _| {
            seen.push((t.to_string(), k.to_vec()))
        })
        .unwrap();
        assert_eq!(scan.revision, 11);
        assert_eq!(scan.total_keys, seen.len() as u64);
        assert_eq!(seen.iter().filter(|(t, _)| t == "key").count(), 10);
        assert!(seen.iter().any(|(t, k)| t == "aux/members" && k == b"1"));
        assert!(seen.iter().any(|(t, k)| t == "meta" && k == b"current_rev"));
        let head = std::fs::read(&dest).unwrap();
        assert!(is_backend_file(&head));
        // A truncated copy is refused.
        let cut = dir.path().join("cut.db");
        std::fs::write(&cut, &head[..head.len() / 2]).unwrap();
        assert!(scan_file(&cut, size / 2, &mut |_, _, _| {}).is_err());
        // A trailer after the backend is left out.
        let trailed = dir.path().join("trailed.db");
        std::fs::write(&trailed, [head.clone(), vec![7; 32]].concat()).unwrap();
        assert_eq!(scan_file(&trailed, size, &mut |_, _, _| {}).unwrap(), scan);
    }

    #[test]
    fn reset_for_restore_zeroes_the_index_and_bumps_and_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let s = filled(&path, "k", 10);
        put(&s, "k001", "again", 11);
        s.commit(true).unwrap();
        assert_eq!(s.reset_for_restore(0, false).unwrap(), 12);
        assert_eq!(s.consistent_index(), 0);
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.consistent_index(), 0);
        assert_eq!(s.current_revision(), 12);
        assert_eq!(s.compact_revision(), -1);
        assert_eq!(s.reset_for_restore(100, true).unwrap(), 112);
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.current_revision(), 112);
        assert_eq!(s.compact_revision(), 112);
        assert_eq!(s.consistent_index(), 0);
        assert_eq!(all(&s).len(), 10);
        // The next write is revision 113.
        put(&s, "new", "n", 1);
        assert_eq!(s.current_revision(), 113);
    }
}
