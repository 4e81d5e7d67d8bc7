//! Defragmentation (etcd's `backend.defrag`): rewrite the backend into a fresh file that
//! holds only live pages, then swap it in.
//!
//! Like etcd, this copies every table into a temporary file next to the database, makes it
//! durable, and renames it over the database. Unlike etcd, neither readers nor the writer
//! are stopped for the copy:
//!
//! 1. the bulk copy reads one point in time (a read transaction taken after a commit) while
//!    the applier goes on writing to the old file;
//! 2. then, with the writer paused, a short catch-up copies what changed since: the revision
//!    table (and the chunk tables of its large rows) only grows above the copied revision
//!    (puts, deletes and lease revokes all write new revisions), so their rows above it are
//!    copied, and the small tables (meta,
//!    leases, membership, alarms) are rewritten whole; the new file is made durable,
//!    renamed over the database, and the store swaps its handle;
//! 3. writes go on in the new file while the directory is fsynced to make the rename
//!    durable; a durable commit waits for that (until then a crash may bring back the old
//!    file, and the raft log, released only behind durable commits, still holds what was
//!    applied since).
//!
//! Compactions queued before finish deleting first, and none deletes during the copy (the
//! `compact` module's gate, which a snapshot install takes too, so the file cannot be
//! replaced under the copy either). A read
//! begun before the swap goes on in the old file (still open, though unlinked), reads
//! begun after it see the new file.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{
    BackendError, Database, Durability, Key, ReadTransaction, ReadableTable, ReadableTableMetadata,
    StorageBackend, TableDefinition, TableHandle, Value, WriteTransaction,
};

use crate::backend::{is_chunk_table, KV_CHUNK_TABLES, KV_TABLE, META_TABLE};
use crate::revision::Revision;
use crate::store::{poison, Store};
use crate::MvccError;

/// What redb's storage calls fail with (without its `experimental-api-5` feature).
type BackendIoError = std::io::Error;

/// What a [`Store::defrag`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefragStats {
    /// Size of the database file before.
    pub size_before: u64,
    /// Bytes in use before (allocated pages).
    pub in_use_before: u64,
    /// Size of the database file after.
    pub size_after: u64,
    /// Bytes in use after.
    pub in_use_after: u64,
    /// Rows copied, all tables together.
    pub rows: u64,
    /// How long the whole defragmentation took.
    pub took: Duration,
    /// How long the writer was paused (the catch-up, the rename and the swap).
    pub paused: Duration,
}

/// The temporary file a defragmentation writes: `<db>.defrag`, next to the database so the
/// rename stays within one file system.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".defrag");
    path.with_file_name(name)
}

/// Removes the temporary file of a defragmentation interrupted by a crash (the database
/// itself is intact: the rename is the last step).
pub(crate) fn remove_leftover(path: &Path) {
    let tmp = tmp_path(path);
    if tmp.exists() {
        tracing::warn!(path = %tmp.display(), "removing the leftover of an interrupted defragmentation");
        if let Err(e) = std::fs::remove_file(&tmp) {
            tracing::warn!(path = %tmp.display(), error = %e, "cannot remove it");
        }
    }
}

/// Copies one table in key order; returns its row count.
fn copy_table<K: Key + 'static, V: Value + 'static>(
    rtxn: &ReadTransaction,
    wtxn: &mut WriteTransaction,
    def: TableDefinition<K, V>,
) -> Result<u64, MvccError> {
    let from = rtxn.open_table(def)?;
    let mut to = wtxn.open_table(def)?;
    for entry in from.iter()? {
        let (k, v) = entry?;
        to.insert(k.value(), v.value())?;
    }
    Ok(from.len()?)
}

/// Copies every table of `rtxn` into the empty `dst` in one durable transaction, rows as
/// they are stored (the chunk tables of large rows with the others). Tables are copied in
/// key order, so redb fills each page before starting the next. The caller
/// holds the read transaction (so it can read the meta table of the same point in time).
pub(crate) fn copy_tables_from(rtxn: &ReadTransaction, dst: &Database) -> Result<u64, MvccError> {
    if rtxn.list_multimap_tables()?.next().is_some() {
        return Err(MvccError::backend(
            "cannot defragment: the database holds a multimap table this version does not know",
        ));
    }
    let mut wtxn = dst.begin_write()?;
    let mut rows = 0u64;
    for handle in rtxn.list_tables()? {
        let name = handle.name().to_string();
        rows += if name == META_TABLE.name() {
            copy_table(rtxn, &mut wtxn, META_TABLE)?
        } else {
            // The revision table and the auxiliary tables are all bytes -> bytes; anything
            // else fails to open (type mismatch) and the defragmentation with it.
            copy_table(rtxn, &mut wtxn, TableDefinition::<&[u8], &[u8]>::new(&name))?
        };
    }
    wtxn.set_durability(Durability::Immediate)?;
    wtxn.commit()?;
    Ok(rows)
}

/// Copies into `dst` (a copy of the database as of revision `copied_rev`) what changed in
/// `rtxn` since: the rows of the revision table and of its chunk tables above `copied_rev`
/// (a chunk's key starts with its row's revision), and every other table whole. Returns
/// the rows written.
pub(crate) fn catch_up(
    rtxn: &ReadTransaction,
    dst: &Database,
    copied_rev: i64,
) -> Result<u64, MvccError> {
    let mut wtxn = dst.begin_write()?;
    let mut rows = 0u64;
    let start = Revision::new(copied_rev + 1, 0).to_bytes(false);
    let names: Vec<String> = rtxn.list_tables()?.map(|h| h.name().to_string()).collect();
    for def in std::iter::once(KV_TABLE).chain(KV_CHUNK_TABLES) {
        if !names.iter().any(|n| n == def.name()) {
            continue;
        }
        let from = rtxn.open_table(def)?;
        let mut to = wtxn.open_table(def)?;
        for entry in from.range(start.as_slice()..)? {
            let (k, v) = entry?;
            to.insert(k.value(), v.value())?;
            rows += 1;
        }
    }
    for name in names {
        if name == KV_TABLE.name() || is_chunk_table(&name) {
            continue;
        }
        rows += if name == META_TABLE.name() {
            wtxn.delete_table(META_TABLE)?;
            copy_table(rtxn, &mut wtxn, META_TABLE)?
        } else {
            let def = TableDefinition::<&[u8], &[u8]>::new(&name);
            wtxn.delete_table(def)?;
            copy_table(rtxn, &mut wtxn, def)?
        };
    }
    wtxn.set_durability(Durability::Immediate)?;
    wtxn.commit()?;
    Ok(rows)
}

/// Bytes the bulk copy writes between two [`oxcd_fs::write_back`]s, the step every
/// written-behind file uses: a few ms of this machine's disk, the most a WAL fsync then
/// waits behind the copy.
const WRITE_BACK_EVERY: u64 = oxcd_fs::WRITE_BEHIND_STEP;

/// The new file of a defragmentation or a peer snapshot's export: redb's file backend, whose writes are written back to
/// the disk every [`WRITE_BACK_EVERY`] bytes while pacing is on. Left to the final fsync,
/// gigabytes of dirty pages reach the disk at once and the WAL's fsyncs wait behind them
/// for hundreds of milliseconds, which stalls every write although the writer lock is
/// free. Paced, the copy runs at the disk's speed with a short queue.
#[derive(Debug)]
pub(crate) struct PacedFile {
    inner: redb::backends::FileBackend,
    /// The same file, for `write_back`.
    file: std::fs::File,
    pacing: Arc<AtomicBool>,
    written: AtomicU64,
}

impl PacedFile {
    /// Creates the file at `path` (replacing any) and the switch that turns pacing off.
    pub(crate) fn create(path: &Path) -> Result<(PacedFile, Arc<AtomicBool>), MvccError> {
        let io = |e: std::io::Error| {
            MvccError::backend(format!("cannot create {}: {e}", path.display()))
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(io)?;
        let pacing = Arc::new(AtomicBool::new(true));
        let paced = PacedFile {
            inner: redb::backends::FileBackend::new(file.try_clone().map_err(io)?)?,
            file,
            pacing: pacing.clone(),
            written: AtomicU64::new(0),
        };
        Ok((paced, pacing))
    }
}

impl StorageBackend for PacedFile {
    fn len(&self) -> Result<u64, BackendIoError> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendIoError> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), BackendIoError> {
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), BackendIoError> {
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendIoError> {
        self.inner.write(offset, data)?;
        let before = self.written.fetch_add(data.len() as u64, Ordering::Relaxed);
        let crossed = (before + data.len() as u64) / WRITE_BACK_EVERY > before / WRITE_BACK_EVERY;
        if crossed && self.pacing.load(Ordering::Relaxed) {
            if let Err(e) = oxcd_fs::write_back(&self.file) {
                // Pacing is only a courtesy to the WAL: a kernel or sandbox without
                // sync_file_range still gets its copy.
                tracing::warn!(error = %e, "cannot write the copy back as it goes; it is written back at its end");
                self.pacing.store(false, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn close(&self) -> Result<(), BackendIoError> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

impl Store {
    /// Defragments the backend (etcd's `Defragment`): commits the pending write batch,
    /// copies every table into `<db>.defrag`, makes it durable, renames it over
    /// the database and continues on the new file. The file shrinks to the pages its data
    /// needs (after a compaction, the space of the deleted revisions is returned to the
    /// file system).
    ///
    /// Writes go on during the bulk copy and wait only for the catch-up and the swap (see
    /// the module doc); reads never wait. If the copy fails, nothing changes and the store
    /// goes on with the old file. If the rename cannot be made durable, the store refuses
    /// further writes (like any backend failure), and the durable commits that waited for
    /// it fail: the file a crash would leave is not the one written to.
    pub fn defrag(&self) -> Result<DefragStats, MvccError> {
        let started = Instant::now();
        // Compactions queued so far delete their rows first, so the new file is as small
        // as it can be (an operator compacts, then defragments); while the gate is held no
        // row vanishes under the copy. A compaction scheduled meanwhile only changes the
        // index and the meta table (copied whole by the catch-up) and deletes its rows
        // from the new file afterwards.
        let gate = self.compactions.gate.lock();
        self.finish_compactions_locked(&gate)?;
        let (snap, base_rev, size_before) = {
            let mut w = self.writer.lock();
            w.check()?;
            // Everything applied so far goes into the copy.
            let r = self.commit_locked(&mut w, false);
            poison(&mut w, r)?;
            (self.begin_read()?, w.rev, self.db_size())
        };
        // Counted from the read snapshot, off the writer lock.
        let in_use_before = self.count_in_use();
        tracing::info!(
            path = %self.path.display(),
            current_db_size_bytes = size_before,
            current_db_size_in_use_bytes = in_use_before,
            "defragmenting"
        );
        let tmp = tmp_path(&self.path);
        let _ = std::fs::remove_file(&tmp);
        let bulk = (|| {
            let (backend, pacing) = PacedFile::create(&tmp)?;
            let new_db = redb::Builder::new()
                .set_cache_size(self.cache_bytes)
                .create_with_backend(backend)?;
            let rows = copy_tables_from(&snap, &new_db)?;
            // The store's own commits on this file, from the swap on, are not paced.
            pacing.store(false, Ordering::Relaxed);
            // redb doubles a file as it grows (up to 4 GiB) and trims it only when more than
            // half is free, or when it is closed: close the copy and open it again, so the
            // new file is the size of its data (1.1 GiB of rows left it at 2.2 GiB).
            drop(new_db);
            let new_db = redb::Builder::new()
                .set_cache_size(self.cache_bytes)
                .open(&tmp)?;
            Ok::<_, MvccError>((new_db, rows))
        })();
        drop(snap);
        let (bulk_db, bulk_rows) = match bulk {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                tracing::warn!(error = %e, "defragmentation failed; the database is unchanged");
                return Err(e);
            }
        };

        let mut w = self.writer.lock();
        let paused = Instant::now();
        w.check()?;
        // The catch-up reads everything applied, so the open batch is committed (the new
        // file is made durable as a whole below).
        let r = self.commit_locked(&mut w, false);
        if let Err(e) = poison(&mut w, r) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let committed_ms = paused.elapsed().as_millis() as u64;
        let copied = (|| {
            // The file copied from is still the current one: a snapshot install, the only
            // other swap, takes the gate this defragmentation holds.
            let rows = bulk_rows + catch_up(&*self.begin_read()?, &bulk_db, base_rev)?;
            let new_db = bulk_db;
            let caught_up_ms = paused.elapsed().as_millis() as u64;
            std::fs::rename(&tmp, &self.path).map_err(|e| {
                MvccError::backend(format!(
                    "cannot rename {} to {}: {e}",
                    tmp.display(),
                    self.path.display()
                ))
            })?;
            Ok::<_, MvccError>((new_db, rows, caught_up_ms))
        })();
        let (new_db, rows, caught_up_ms) = match copied {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                tracing::warn!(error = %e, "defragmentation failed; the database is unchanged");
                return Err(e);
            }
        };
        let renamed_ms = paused.elapsed().as_millis() as u64;
        // From here on the path names the new file: the store must use it.
        let old = self.swap_db(new_db);
        // Writes go on in the new file while the rename is made durable (an fsync of the
        // directory: hundreds of milliseconds while the disk is busy); only durable
        // commits wait for it (see `rename_sync`).
        let mut rename = self.rename_sync.lock();
        drop(w);
        let paused = paused.elapsed();
        let sync_started = Instant::now();
        if let Err(e) = oxcd_fs::sync_parent(&self.path) {
            let e = MvccError::backend(format!(
                "cannot sync the directory of {} after defragmenting: {e}",
                self.path.display()
            ));
            *rename = Some(e.clone());
            drop(rename);
            // Fails every later write, so nothing more is acknowledged on this file.
            let mut w = self.writer.lock();
            return poison(&mut w, Err(e));
        }
        drop(rename);
        let rename_synced_ms = sync_started.elapsed().as_millis() as u64;
        drop(gate);
        let size_after = self.db_size();
        let in_use_after = self.count_in_use();
        let took = started.elapsed();
        // Reads still running in the old file keep it open; the last one closes it.
        let closed_now = Arc::try_unwrap(old).map(drop).is_ok();
        tracing::info!(
            path = %self.path.display(),
            current_db_size_bytes_diff = size_after as i64 - size_before as i64,
            current_db_size_bytes = size_after,
            current_db_size_in_use_bytes = in_use_after,
            rows,
            took_ms = took.as_millis() as u64,
            writes_paused_ms = paused.as_millis() as u64,
            committed_ms,
            caught_up_ms,
            renamed_ms,
            rename_synced_ms,
            old_file_closed = closed_now,
            "defragmented"
        );
        Ok(DefragStats {
            size_before,
            in_use_before,
            size_after,
            in_use_after,
            rows,
            took,
            paused,
        })
    }
}

#[cfg(test)]
mod tests {
    use oxcd_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};

    use super::*;

    fn put(s: &Store, key: &[u8], value: &[u8], idx: u64) {
        let req = PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            ..Default::default()
        };
        s.put(&req, idx, &|_| true).unwrap();
    }

    fn all(s: &Store) -> Vec<(Vec<u8>, Vec<u8>, i64)> {
        let r = s
            .range(&RangeRequest {
                key: vec![0],
                range_end: vec![0],
                ..Default::default()
            })
            .unwrap();
        r.kvs
            .into_iter()
            .map(|kv| (kv.key, kv.value, kv.mod_revision))
            .collect()
    }

    fn key(i: u32) -> Vec<u8> {
        format!("key/{i:06}").into_bytes()
    }

    #[test]
    fn durable_commits_wait_for_the_rename_and_fail_if_it_could_not_be_synced() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(Store::open(&dir.path().join("db")).unwrap());
        put(&s, b"a", b"1", 1);
        s.defrag().unwrap();
        // As a defragmentation holds it while it fsyncs the directory.
        let mut syncing = s.rename_sync.lock();
        put(&s, b"b", b"2", 2);
        s.commit(false).unwrap();
        assert_eq!(all(&s).len(), 2, "non-durable commits go on");
        assert!(
            !s.try_commit_durable().unwrap(),
            "the periodic durable commit does not wait"
        );
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let committer = {
            let s = s.clone();
            std::thread::spawn(move || done_tx.send(s.commit(true)).unwrap())
        };
        assert!(
            done_rx
                .recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "a durable commit waits for the rename to be durable"
        );

        *syncing = Some(MvccError::backend("cannot sync the directory"));
        drop(syncing);
        let r = done_rx.recv().unwrap();
        committer.join().unwrap();
        assert!(r
            .unwrap_err()
            .to_string()
            .contains("cannot sync the directory"));
        assert!(
            s.commit(false).is_err(),
            "the store refuses writes from then on"
        );
    }

    #[test]
    fn defrag_after_compaction_shrinks_the_file_and_keeps_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let s = Store::open(&path).unwrap();
        let value = vec![b'v'; 200];
        let mut idx = 0;
        // Two versions of 5000 keys, then half of them deleted.
        for round in 0..2 {
            for i in 0..5000 {
                idx += 1;
                let mut v = value.clone();
                v[0] = round;
                put(&s, &key(i), &v, idx);
                if idx % 500 == 0 {
                    s.commit(false).unwrap();
                }
            }
        }
        idx += 1;
        s.delete_range(
            &DeleteRangeRequest {
                key: key(0),
                range_end: key(2500),
                ..Default::default()
            },
            idx,
        )
        .unwrap();
        s.commit(true).unwrap();
        idx += 1;
        s.compact(s.current_revision(), idx).unwrap();
        // A write not yet committed when the defragmentation starts is kept, durably.
        idx += 1;
        put(&s, b"pending", b"p", idx);

        let rev = s.current_revision();
        let before_size = s.db_size();
        let stats = s.defrag().unwrap();
        assert_eq!(stats.size_before, before_size);
        assert!(
            stats.size_after < before_size / 2,
            "{} -> {}",
            before_size,
            stats.size_after
        );
        assert_eq!(stats.size_after, s.db_size());
        assert!(stats.in_use_after <= stats.size_after);
        assert!(!tmp_path(&path).exists());

        let want = all(&s);
        assert_eq!(want.len(), 2501);
        assert_eq!(want[0].0, key(2500));
        assert_eq!(want[0].1[0], 1);
        assert_eq!(want.last().unwrap().0, b"pending".to_vec());
        assert_eq!(s.committed_revision(), rev);
        assert_eq!(s.consistent_index(), idx);

        // Writes go on in the new file.
        idx += 1;
        put(&s, b"after", b"a", idx);
        s.commit(true).unwrap();
        drop(s);

        let s = Store::open(&path).unwrap();
        assert_eq!(s.consistent_index(), idx);
        assert_eq!(s.current_revision(), rev + 1);
        let mut got = all(&s);
        assert_eq!(got.len(), 2502);
        assert_eq!(got[0].0, b"after".to_vec());
        got.remove(0);
        assert!(got == want, "data changed across defrag and reopen");
        assert_eq!(s.compact_revision(), rev - 1);
    }

    #[test]
    fn reads_begun_before_the_swap_finish_in_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let s = Store::open(&path).unwrap();
        for i in 0..100 {
            put(&s, &key(i), b"value", u64::from(i) + 1);
        }
        s.commit(false).unwrap();
        s.aux_put("t", b"a", b"1").unwrap();
        s.commit(false).unwrap();
        let snap = s.begin_read().unwrap();
        s.defrag().unwrap();
        // The old snapshot still reads (its file is unlinked but open).
        let table = snap.open_table(KV_TABLE).unwrap();
        assert_eq!(table.len().unwrap(), 100);
        drop(table);
        drop(snap);
        // Auxiliary tables are copied too.
        assert_eq!(
            s.aux_scan("t").unwrap(),
            vec![(b"a".to_vec(), b"1".to_vec())]
        );
        assert_eq!(all(&s).len(), 100);
        // A second defragmentation of an already dense file works as well.
        s.defrag().unwrap();
        assert_eq!(all(&s).len(), 100);
    }

    #[test]
    fn writes_go_on_during_the_copy_and_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let s = std::sync::Arc::new(Store::open(&path).unwrap());
        let value = vec![b'v'; 500];
        for i in 0..20_000 {
            put(&s, &key(i), &value, u64::from(i) + 1);
            if i % 1000 == 0 {
                s.commit(false).unwrap();
            }
        }
        s.aux_put("lease", b"1", b"old").unwrap();
        s.commit(true).unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (s, done) = (s.clone(), done.clone());
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !done.load(std::sync::atomic::Ordering::Relaxed) || n < 10 {
                    put(
                        &s,
                        format!("during/{n:06}").as_bytes(),
                        b"d",
                        20_001 + u64::from(n),
                    );
                    if n == 5 {
                        s.aux_put("lease", b"1", b"new").unwrap();
                        s.aux_put("lease", b"2", b"added").unwrap();
                    }
                    s.commit(false).unwrap();
                    n += 1;
                }
                n
            })
        };
        let stats = s.defrag().unwrap();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let written = writer.join().unwrap();
        assert!(stats.paused <= stats.took);
        s.commit(true).unwrap();
        let check = |s: &Store| {
            let got = all(s);
            assert_eq!(got.len(), 20_000 + written as usize);
            assert_eq!(
                s.aux_scan("lease").unwrap(),
                vec![
                    (b"1".to_vec(), b"new".to_vec()),
                    (b"2".to_vec(), b"added".to_vec())
                ]
            );
            assert_eq!(s.consistent_index(), 20_000 + u64::from(written));
        };
        check(&s);
        drop(s);
        check(&Store::open(&path).unwrap());
    }

    #[test]
    fn a_compaction_during_the_copy_is_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let s = std::sync::Arc::new(Store::open(&path).unwrap());
        for round in 0..2u8 {
            for i in 0..10_000 {
                put(
                    &s,
                    &key(i),
                    &[round; 300],
                    u64::from(round) * 10_000 + u64::from(i) + 1,
                );
            }
            s.commit(false).unwrap();
        }
        let compactor = {
            let s = s.clone();
            std::thread::spawn(move || {
                let rev = s.current_revision();
                s.compact(rev, 20_001).unwrap();
            })
        };
        s.defrag().unwrap();
        compactor.join().unwrap();
        // Whether the compaction ran before, during or after the copy, old revisions are
        // gone from the file and the current ones are all there.
        assert_eq!(all(&s).len(), 10_000);
        s.commit(true).unwrap();
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(all(&s).len(), 10_000);
        let rtxn = s.begin_read().unwrap();
        assert_eq!(rtxn.open_table(KV_TABLE).unwrap().len().unwrap(), 10_000);
    }

    #[test]
    fn open_removes_a_leftover_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        drop(Store::open(&path).unwrap());
        std::fs::write(tmp_path(&path), b"half a copy").unwrap();
        drop(Store::open(&path).unwrap());
        assert!(!tmp_path(&path).exists());
    }
}
