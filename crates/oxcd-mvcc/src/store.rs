//! The revisioned key space: [`Store`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use oxcd_proto::etcdserverpb::{
    CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use oxcd_proto::mvccpb::{event::EventType, Event, KeyValue};
use parking_lot::{Mutex, RwLock};
use prost::Message;
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    WriteTransaction,
};

use crate::backend::{
    kv_key_and_lease, meta_get_i64, meta_get_u64, meta_put_u64, KV_TABLE, META_CONSISTENT_INDEX,
    META_CURRENT_REV, META_FINISHED_COMPACT, META_SCHEDULED_COMPACT, META_TABLE, META_TERM,
};
use crate::key_index::{RestoredRev, TreeIndex};
use crate::kv_ops::{
    check_put_flags, check_txn_flags, collect_revs, range_request, resolve_rev, Change, KvRead,
    RangeOpts, RangeResult, WriteCtx,
};
use crate::op_counts::{OpCounters, OpCounts};
use crate::revision::Revision;
use crate::rows::{get_kv, put_row, Chunks};
use crate::MvccError;

/// State shared with readers.
pub(crate) struct State {
    /// Index of every key; may contain revisions not yet committed (readers never
    /// look past `committed_rev`).
    pub(crate) index: TreeIndex,
    /// Newest revision committed to redb: readers' current revision.
    pub(crate) committed_rev: i64,
    /// Etcd's `compactMainRev`: -1 until the first compaction.
    pub(crate) compact_rev: i64,
}

/// State of the single writer (the apply thread).
pub(crate) struct Writer {
    /// Open write transaction holding the changes since the last commit.
    pub(crate) txn: Option<Batch>,
    /// Applied (possibly uncommitted) revision.
    pub(crate) rev: i64,
    /// Applied (possibly uncommitted) consistent index.
    pub(crate) index: u64,
    /// A non-durable commit happened since the last durable one.
    pub(crate) nondurable: bool,
    /// Set after a backend failure: the writer refuses further work.
    pub(crate) failed: Option<String>,
}

/// The key table of an open write transaction, while it is kept open.
type KvSlot<'txn> = Option<redb::Table<'txn, &'static [u8], &'static [u8]>>;

self_cell::self_cell!(
    /// An open write transaction, and its key table once a write request has opened it.
    ///
    /// The table stays open for the rest of the batch: opening a redb table (a lookup in
    /// the table tree, and writing its root back on close) cost about as much as the put
    /// itself, once per request. Anything else that uses the transaction gets it through
    /// [`Store::open_txn`], which closes the table first, so no one finds it open twice.
    pub(crate) struct Batch {
        owner: WriteTransaction,
        #[covariant]
        dependent: KvSlot,
    }
);

impl Writer {
    pub(crate) fn check(&self) -> Result<(), MvccError> {
        match &self.failed {
            Some(e) => Err(MvccError::Backend(format!("store failed earlier: {e}"))),
            None => Ok(()),
        }
    }
}

/// Bytes of redb's page cache (read cache plus write buffer). redb's default is 1 GiB,
/// which a large store fills at start-up (the index rebuild reads every page) and keeps
/// resident. The key index lives in memory anyway; values are read one page at a time
/// and the kernel's page cache still holds the file, so a bounded cache costs a system
/// call per missed page, not a disk read.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// How long [`Store::db_size_in_use`] serves a figure before counting again.
pub const IN_USE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(10);

/// A key and the lease it is attached to.
pub type LeaseAttachment = (Vec<u8>, i64);

/// A read snapshot of the backend. It keeps the database it was taken from open: after a
/// [`Store::defrag`] swapped in a new file, reads begun before go on in the old one,
/// which is closed when the last of them ends.
pub(crate) struct ReadSnap {
    // Field order matters: the transaction ends before the database may close.
    txn: ReadTransaction,
    _db: Arc<Database>,
    _open: OpenRead,
}

/// Counts one open read transaction in the store's gauge for as long as it lives (etcd's
/// `etcd_mvcc_db_open_read_transactions`).
struct OpenRead(Arc<AtomicI64>);

impl OpenRead {
    fn new(count: &Arc<AtomicI64>) -> OpenRead {
        count.fetch_add(1, Ordering::Relaxed);
        OpenRead(count.clone())
    }
}

impl Drop for OpenRead {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::ops::Deref for ReadSnap {
    type Target = ReadTransaction;

    fn deref(&self) -> &ReadTransaction {
        &self.txn
    }
}

/// Revisioned, persisted key space with etcd v3 semantics.
///
/// One writer (the apply thread) calls the mutating methods; any number of threads
/// may call [`Store::range`] concurrently. Writes accumulate in an open redb write
/// transaction and become visible to readers at [`Store::commit`].
pub struct Store {
    /// The open database; replaced (under the writer lock) by [`Store::defrag`].
    db: RwLock<Arc<Database>>,
    pub(crate) path: PathBuf,
    pub(crate) cache_bytes: usize,
    /// Size of the database file as of the last commit or swap. Read on every write
    /// request (the quota check), where a `stat` of the path cost a path walk each time;
    /// the file changes size only in a commit, a defragmentation's or a snapshot's swap,
    /// and each of those refreshes it.
    file_size: AtomicU64,
    /// Lease attachments found while opening, until taken or a key is written.
    pub(crate) open_leases: Mutex<Option<Vec<LeaseAttachment>>>,
    /// The last figure [`Store::db_size_in_use`] counted, and when.
    in_use: AtomicU64,
    in_use_at: Mutex<Option<std::time::Instant>>,
    /// Ranges, puts, deletes and txns run (etcd's `etcd_mvcc_*_total`).
    pub(crate) ops: OpCounters,
    /// Read transactions open now (every [`ReadSnap`] alive).
    open_reads: Arc<AtomicI64>,
    pub(crate) state: RwLock<State>,
    pub(crate) writer: Mutex<Writer>,
    /// Compactions still deleting rows, and the gate their batches hold.
    pub(crate) compactions: Arc<crate::compact::Compactions>,
    pub(crate) applied_rev: AtomicI64,
    pub(crate) applied_index: AtomicU64,
    pub(crate) committed_index: AtomicU64,
    /// Held by [`Store::defrag`] while it makes the rename of its new file durable, after
    /// it let writes go on in that file; holds the error if that failed. A durable commit
    /// waits for it: until the rename is durable a crash may bring back the old file, and
    /// the raft log must still hold what was applied since (it is released only behind a
    /// durable commit).
    pub(crate) rename_sync: Mutex<Option<MvccError>>,
}

/// What opening a database file finds in it: the key index and the positions the store
/// starts from ([`Store::open_with_cache`], and [`Store::replace_with`] for a new file).
pub(crate) struct Loaded {
    pub(crate) index: TreeIndex,
    pub(crate) open_leases: Vec<LeaseAttachment>,
    pub(crate) compact_rev: i64,
    /// Current revision.
    pub(crate) current: i64,
    pub(crate) consistent_index: u64,
    /// A compaction scheduled but not finished, to resume.
    pub(crate) scheduled: Option<i64>,
}

impl Loaded {
    /// Rebuilds the key index from the revision table of `db` and reads its meta table.
    pub(crate) fn read(db: &Database) -> Result<Loaded, MvccError> {
        let rtxn = db.begin_read()?;
        let meta = rtxn.open_table(META_TABLE)?;
        let consistent_index = meta_get_u64(&meta, META_CONSISTENT_INDEX)?.unwrap_or(0);
        let finished = meta_get_i64(&meta, META_FINISHED_COMPACT)?;
        let scheduled = meta_get_i64(&meta, META_SCHEDULED_COMPACT)?;
        let stored_rev = meta_get_i64(&meta, META_CURRENT_REV)?.unwrap_or(1);

        // One pass over the revision table: each row's revision and key (and the lease of
        // puts), without decoding values; the index is then built from the sorted rows.
        let kv = rtxn.open_table(KV_TABLE)?;
        let mut rows = Vec::with_capacity(kv.len()? as usize);
        let mut leased_puts = Vec::new();
        for entry in kv.iter()? {
            let (k, v) = entry?;
            let (rev, tombstone) = Revision::from_bytes(k.value())?;
            let (key, lease) = kv_key_and_lease(v.value())?;
            if lease != 0 && !tombstone {
                leased_puts.push((key.to_vec(), rev, lease));
            }
            rows.push(RestoredRev {
                key: key.into(),
                rev,
                tombstone,
            });
        }
        drop(kv);
        drop(meta);
        drop(rtxn);
        let max_rev = rows.last().map_or(1, |r| r.rev.main).max(1);
        let index = TreeIndex::rebuild(rows);
        // A put's lease holds if that put is still the key's current revision.
        let open_leases = leased_puts
            .into_iter()
            .filter(|(key, rev, _)| index.get(key, i64::MAX) == Some(*rev))
            .map(|(key, _, lease)| (key, lease))
            .collect();

        let compact_rev = finished.unwrap_or(-1);
        let current = max_rev.max(stored_rev).max(compact_rev);
        tracing::debug!(
            current,
            compact_rev,
            keys = index.len(),
            "mvcc store opened"
        );
        Ok(Loaded {
            index,
            open_leases,
            compact_rev,
            current,
            consistent_index,
            scheduled,
        })
    }
}

/// Outcome of a poisoning-aware backend call.
pub(crate) fn poison<T>(w: &mut Writer, r: Result<T, MvccError>) -> Result<T, MvccError> {
    if let Err(e @ (MvccError::Backend(_) | MvccError::Corrupt { .. })) = &r {
        w.failed = Some(e.to_string());
        w.txn = None; // abort: the batch is lost; reopen recovers the committed state
    }
    r
}

impl Store {
    /// Opens (creating if missing) the store at `path` with the default cache size
    /// ([`DEFAULT_CACHE_BYTES`]); see [`Store::open_with_cache`].
    pub fn open(path: &Path) -> Result<Store, MvccError> {
        Store::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Opens (creating if missing) the store at `path` with a redb page cache of
    /// `cache_bytes`, rebuilds the key index from the revision table and finishes an
    /// interrupted compaction (its rows are deleted by the compactor thread, or by the next
    /// [`Store::compact`], [`Store::finish_compactions`] or [`Store::defrag`]). A leftover
    /// of an interrupted [`Store::defrag`] is removed.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Store, MvccError> {
        crate::defrag::remove_leftover(path);
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(path)?;
        {
            let txn = db.begin_write()?;
            txn.open_table(KV_TABLE)?;
            txn.open_table(META_TABLE)?;
            txn.commit()?;
        }
        let loaded = Loaded::read(&db)?;
        let Loaded {
            index,
            open_leases,
            compact_rev,
            current,
            consistent_index,
            scheduled,
        } = loaded;
        let store = Store {
            db: RwLock::new(Arc::new(db)),
            path: path.to_path_buf(),
            cache_bytes,
            open_leases: Mutex::new(Some(open_leases)),
            in_use: AtomicU64::new(0),
            in_use_at: Mutex::new(None),
            ops: OpCounters::default(),
            open_reads: Arc::default(),
            state: RwLock::new(State {
                index,
                committed_rev: current,
                compact_rev,
            }),
            writer: Mutex::new(Writer {
                txn: None,
                rev: current,
                index: consistent_index,
                nondurable: false,
                failed: None,
            }),
            compactions: Default::default(),
            applied_rev: AtomicI64::new(current),
            applied_index: AtomicU64::new(consistent_index),
            committed_index: AtomicU64::new(consistent_index),
            rename_sync: Mutex::new(None),
            file_size: AtomicU64::new(0),
        };
        store.refresh_file_size();
        if let Some(s) = scheduled {
            if s > compact_rev {
                tracing::info!(rev = s, "resuming interrupted compaction");
                store.resume_compaction(s);
            }
        }
        Ok(store)
    }

    /// The current database (the one a [`Store::defrag`] swapped in last).
    pub(crate) fn db(&self) -> Arc<Database> {
        self.db.read().clone()
    }

    /// Replaces the database (by [`Store::defrag`], holding the writer lock); returns the
    /// old one.
    pub(crate) fn swap_db(&self, db: Database) -> Arc<Database> {
        let old = std::mem::replace(&mut *self.db.write(), Arc::new(db));
        self.refresh_file_size();
        old
    }

    /// Reads the database file's size again (see `file_size`).
    fn refresh_file_size(&self) {
        let size = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        self.file_size.store(size, Ordering::Relaxed);
    }

    /// A read snapshot of the last commit.
    pub(crate) fn begin_read(&self) -> Result<ReadSnap, MvccError> {
        let db = self.db();
        Ok(ReadSnap {
            txn: db.begin_read()?,
            _db: db,
            _open: OpenRead::new(&self.open_reads),
        })
    }

    /// The `(key, lease)` of every live key attached to a lease, as found while opening
    /// the store (etcd's restore attaches keys to the lessor in the same pass over the
    /// backend), so the lessor need not read every value again. `None` if taken before or
    /// if a key was written since the store was opened.
    pub fn take_lease_attachments(&self) -> Option<Vec<LeaseAttachment>> {
        self.open_leases.lock().take()
    }

    /// Current (applied, possibly not yet committed) revision: 1 on a fresh store.
    pub fn current_revision(&self) -> i64 {
        self.applied_rev.load(Ordering::Acquire)
    }

    /// Revision readers currently see (the newest committed one).
    pub fn committed_revision(&self) -> i64 {
        self.state.read().committed_rev
    }

    /// Etcd's compact revision (`compactMainRev`): -1 if never compacted.
    pub fn compact_revision(&self) -> i64 {
        self.state.read().compact_rev
    }

    /// Raft index of the last applied entry (possibly not yet committed).
    pub fn consistent_index(&self) -> u64 {
        self.applied_index.load(Ordering::Acquire)
    }

    /// Raft index covered by the committed (reader-visible) state.
    pub fn committed_index(&self) -> u64 {
        self.committed_index.load(Ordering::Acquire)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the database file in bytes, as of the last commit (etcd's backend `Size`).
    pub fn db_size(&self) -> u64 {
        self.file_size.load(Ordering::Relaxed)
    }

    /// Bytes of the database file in use (etcd's `dbSizeInUse`, the file size less its
    /// free pages): the bytes of every table's pages, as of the last commit.
    ///
    /// Counting them walks every page of the file, so it never runs under the writer lock
    /// (a Status call or a metrics scrape must not stall writes for the length of a walk
    /// over a large database) and a figure is served for [`IN_USE_MAX_AGE`] before it is
    /// counted again; a caller arriving while another counts gets the last figure.
    pub fn db_size_in_use(&self) -> u64 {
        // A figure from before a defragmentation may exceed the new file's size.
        let last = || self.in_use.load(Ordering::Relaxed).min(self.db_size());
        let Some(mut counted_at) = self.in_use_at.try_lock() else {
            return last();
        };
        if counted_at.is_some_and(|t| t.elapsed() < IN_USE_MAX_AGE) {
            return last();
        }
        let in_use = self.count_in_use();
        *counted_at = Some(std::time::Instant::now());
        in_use
    }

    /// Counts the bytes in use now (see [`Store::db_size_in_use`]) and keeps the figure.
    /// Falls back to the file size if the file cannot be read.
    pub(crate) fn count_in_use(&self) -> u64 {
        let size = self.db_size();
        let counted = (|| {
            let rtxn = self.begin_read()?;
            let mut bytes = 0u64;
            for handle in rtxn.list_tables()? {
                let stats =
                    if redb::TableHandle::name(&handle) == redb::TableHandle::name(&META_TABLE) {
                        rtxn.open_table(META_TABLE)?.stats()?
                    } else {
                        let def = redb::TableDefinition::<&[u8], &[u8]>::new(
                            redb::TableHandle::name(&handle),
                        );
                        rtxn.open_table(def)?.stats()?
                    };
                bytes += stats.stored_bytes() + stats.metadata_bytes() + stats.fragmented_bytes();
            }
            Ok::<_, MvccError>(bytes)
        })();
        let in_use = match counted {
            Ok(bytes) => bytes.min(size),
            Err(_) => size,
        };
        self.in_use.store(in_use, Ordering::Relaxed);
        in_use
    }

    /// Etcd's Range on the committed state. Fills `header.revision` only.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        self.ops.range();
        range_request(&ReadView { store: self }, req)
    }

    /// [`Store::range`] for the server's own reads (rebuilding the lessor's key
    /// attachments), which etcd does not count in `etcd_mvcc_range_total`.
    pub fn range_uncounted(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        range_request(&ReadView { store: self }, req)
    }

    /// Applies a put as one revision. Checks, in etcd's order: `ignore_value` with a
    /// value, `ignore_lease` with a lease, lease existence via `lease_ok`, then key
    /// existence for `ignore_*`. On error nothing is applied (but `index` is still
    /// recorded as applied). Events carry `prev_kv` (the value before the request).
    pub fn put(
        &self,
        req: &PutRequest,
        index: u64,
        lease_ok: &dyn Fn(i64) -> bool,
    ) -> Result<(PutResponse, Vec<Event>), MvccError> {
        self.write(index, |ctx| {
            check_put_flags(req)?;
            if req.lease != 0 && !lease_ok(req.lease) {
                return Err(MvccError::LeaseNotFound);
            }
            ctx.put(req)
        })
    }

    /// Applies a delete-range; a delete matching no key changes nothing and does
    /// not bump the revision.
    pub fn delete_range(
        &self,
        req: &DeleteRangeRequest,
        index: u64,
    ) -> Result<(DeleteRangeResponse, Vec<Event>), MvccError> {
        self.write(index, |ctx| ctx.delete_range(req))
    }

    /// Applies a txn as one revision (sub revisions order its changes); a txn that
    /// changes nothing does not bump the revision. Nested responses carry etcd's
    /// headers (revision only; nested txns an empty header).
    pub fn txn(
        &self,
        req: &TxnRequest,
        index: u64,
        lease_ok: &dyn Fn(i64) -> bool,
    ) -> Result<(TxnResponse, Vec<Event>), MvccError> {
        self.write(index, |ctx| {
            check_txn_flags(req)?;
            ctx.txn(req, lease_ok)
        })
    }

    /// Evaluates a txn whose every branch only reads, against the committed state and
    /// outside the raft log, as etcd serves read-only txns. Holds the state lock for the
    /// evaluation so compares and ranges see one revision.
    pub fn txn_read_only(&self, req: &TxnRequest) -> Result<TxnResponse, MvccError> {
        let st = self.state.read();
        let rtxn = self.begin_read()?;
        let table = rtxn.open_table(KV_TABLE)?;
        let chunks = Chunks::new(&*rtxn);
        let mut ctx = WriteCtx::new(&st.index, &table, &chunks, st.committed_rev, st.compact_rev);
        let resp = ctx.txn(req, &|_| false);
        self.ops.add(&ctx.tally);
        let resp = resp?;
        if !ctx.into_changes().is_empty() {
            return Err(MvccError::backend("txn_read_only given a txn that writes"));
        }
        Ok(resp)
    }

    /// Records `index` as applied for an entry that changes no key.
    pub fn set_consistent_index(&self, index: u64) {
        let mut w = self.writer.lock();
        if w.check().is_err() {
            return;
        }
        let r = self.record_index(&mut w, index);
        let _ = poison(&mut w, r);
    }

    /// Raft term stored with the data (0 if never set).
    pub fn term(&self) -> Result<u64, MvccError> {
        Ok(self.get_meta_u64(META_TERM)?.unwrap_or(0))
    }

    /// Stores the raft term in the current write batch.
    pub fn set_term(&self, term: u64) -> Result<(), MvccError> {
        self.put_meta(META_TERM, &term.to_be_bytes())
    }

    /// Reads a meta value as of the last commit.
    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, MvccError> {
        let rtxn = self.begin_read()?;
        let t = rtxn.open_table(META_TABLE)?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    fn get_meta_u64(&self, key: &str) -> Result<Option<u64>, MvccError> {
        let rtxn = self.begin_read()?;
        let t = rtxn.open_table(META_TABLE)?;
        meta_get_u64(&t, key)
    }

    /// Writes a meta value in the current write batch (visible after commit).
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), MvccError> {
        let mut w = self.writer.lock();
        w.check()?;
        let r = (|| {
            let txn = self.open_txn(&mut w)?;
            let mut t = txn.open_table(META_TABLE)?;
            t.insert(key, value)?;
            Ok(())
        })();
        poison(&mut w, r)
    }

    /// Runs `f` on the open write transaction (beginning one if needed), poisoning the
    /// writer on a backend failure like every other write.
    pub(crate) fn with_write_txn(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<(), MvccError>,
    ) -> Result<(), MvccError> {
        let mut w = self.writer.lock();
        w.check()?;
        let r = (|| {
            let txn = self.open_txn(&mut w)?;
            f(txn)
        })();
        poison(&mut w, r)
    }

    /// Commits the current write batch, making it visible to readers. `durable`
    /// commits with `Durability::Immediate` (fsync), which also persists earlier
    /// non-durable commits; otherwise `Durability::None`.
    pub fn commit(&self, durable: bool) -> Result<(), MvccError> {
        let mut w = self.writer.lock();
        w.check()?;
        let r = self.commit_locked(&mut w, durable);
        poison(&mut w, r)
    }

    /// Commits durably like `commit(true)`, unless a defragmentation is still making the
    /// rename of its new file durable: then nothing is committed and `false` is returned
    /// at once, so a periodic durable commit never holds up writes behind that fsync (the
    /// raft log keeps what the commit would have let it release).
    pub fn try_commit_durable(&self) -> Result<bool, MvccError> {
        let mut w = self.writer.lock();
        w.check()?;
        // A defragmentation takes `rename_sync` only while holding the writer lock, so it
        // cannot take it between this check and the commit.
        if self.rename_sync.try_lock().is_none() {
            return Ok(false);
        }
        let r = self.commit_locked(&mut w, true);
        poison(&mut w, r).map(|()| true)
    }

    pub(crate) fn commit_locked(&self, w: &mut Writer, durable: bool) -> Result<(), MvccError> {
        if w.txn.is_none() && !(durable && w.nondurable) {
            return Ok(());
        }
        let mut txn = match w.txn.take() {
            Some(batch) => batch.into_owner(),
            None => self.db().begin_write()?,
        };
        // The revision and consistent index go into the same transaction as the data
        // they describe, once per commit rather than once per request.
        {
            let mut meta = txn.open_table(META_TABLE)?;
            meta_put_u64(&mut meta, META_CONSISTENT_INDEX, w.index)?;
            meta_put_u64(&mut meta, META_CURRENT_REV, w.rev as u64)?;
        }
        let rename = durable.then(|| self.rename_sync.lock());
        if let Some(Some(e)) = rename.as_deref() {
            return Err(e.clone());
        }
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })?;
        txn.commit()?;
        drop(rename);
        self.refresh_file_size();
        w.nondurable = !durable;
        self.state.write().committed_rev = w.rev;
        self.committed_index.store(w.index, Ordering::Release);
        Ok(())
    }

    /// The open write transaction, beginning one if needed, with no table open.
    pub(crate) fn open_txn<'w>(
        &self,
        w: &'w mut Writer,
    ) -> Result<&'w WriteTransaction, MvccError> {
        let batch = self.open_batch(w)?;
        batch.with_dependent_mut(|_, kv| *kv = None);
        Ok(batch.borrow_owner())
    }

    /// The open batch, beginning one (with its key table closed) if needed.
    fn open_batch<'w>(&self, w: &'w mut Writer) -> Result<&'w mut Batch, MvccError> {
        let batch = match w.txn.take() {
            Some(batch) => batch,
            None => Batch::new(self.db().begin_write()?, |_| None),
        };
        Ok(w.txn.insert(batch))
    }

    /// Runs `f` with the open write transaction and its key table, opening either if needed
    /// and leaving the table open for the next write of the batch.
    fn with_kv_table<R>(
        &self,
        w: &mut Writer,
        f: impl for<'t> FnOnce(
            &'t WriteTransaction,
            &mut redb::Table<'t, &'static [u8], &'static [u8]>,
        ) -> Result<R, MvccError>,
    ) -> Result<R, MvccError> {
        self.open_batch(w)?.with_dependent_mut(|txn, kv| {
            let table = match kv {
                Some(table) => table,
                None => kv.insert(txn.open_table(KV_TABLE)?),
            };
            f(txn, table)
        })
    }

    /// Records `index` as applied. It is written to the meta table at the next
    /// commit; the open transaction guarantees that commit happens.
    fn record_index(&self, w: &mut Writer, index: u64) -> Result<(), MvccError> {
        self.open_txn(w)?;
        w.index = index;
        self.applied_index.store(index, Ordering::Release);
        Ok(())
    }

    /// Runs one write request: `f` computes its changes against the applied state
    /// (plus its own earlier changes); if it succeeds they are written as revision
    /// `current + 1` together with `index`.
    fn write<R>(
        &self,
        index: u64,
        f: impl FnOnce(
            &mut WriteCtx<'_, redb::Table<'_, &'static [u8], &'static [u8]>>,
        ) -> Result<R, MvccError>,
    ) -> Result<(R, Vec<Event>), MvccError> {
        let mut w = self.writer.lock();
        w.check()?;
        let base_rev = w.rev;
        let r = self.write_inner(&mut w, base_rev, f);
        let r = poison(&mut w, r);
        let (resp, changes) = match r {
            Ok(v) => v,
            Err(e) => {
                if w.failed.is_none() {
                    // A rejected request is still an applied raft entry.
                    let r = self.record_index(&mut w, index);
                    poison(&mut w, r)?;
                }
                return Err(e);
            }
        };
        let r = self.finish_write(&mut w, base_rev, index, &changes);
        poison(&mut w, r)?;
        let new_rev = base_rev + 1;
        let events = changes
            .into_iter()
            .map(|c| Event {
                r#type: if c.tombstone {
                    EventType::Delete as i32
                } else {
                    EventType::Put as i32
                },
                kv: Some(c.kv),
                // Filled for the watchers that want it (`fill_prev_kvs`).
                prev_kv: None,
            })
            .collect::<Vec<_>>();
        debug_assert!(events.is_empty() || w.rev == new_rev);
        Ok((resp, events))
    }

    fn write_inner<R>(
        &self,
        w: &mut Writer,
        base_rev: i64,
        f: impl FnOnce(
            &mut WriteCtx<'_, redb::Table<'_, &'static [u8], &'static [u8]>>,
        ) -> Result<R, MvccError>,
    ) -> Result<(R, Vec<Change>), MvccError> {
        // Write the changes through the table the request read: opening a redb table costs
        // about as much as the insert itself (and the table stays open for the batch).
        self.with_kv_table(w, |txn, table| {
            // Opened only if a large row is read or written.
            let chunks = Chunks::new(txn);
            let (resp, changes) = {
                let st = self.state.read();
                let mut ctx = WriteCtx::new(&st.index, &*table, &chunks, base_rev, st.compact_rev);
                let resp = f(&mut ctx);
                self.ops.add(&ctx.tally);
                let resp = resp?;
                (resp, ctx.into_changes())
            };
            let new_rev = base_rev + 1;
            for (sub, c) in changes.iter().enumerate() {
                let rev = Revision::new(new_rev, sub as i64);
                let value = if c.tombstone {
                    KeyValue {
                        key: c.kv.key.clone(),
                        ..Default::default()
                    }
                    .encode_to_vec()
                } else {
                    c.kv.encode_to_vec()
                };
                put_row(
                    table,
                    &chunks,
                    rev.to_bytes(c.tombstone).as_slice(),
                    value.as_slice(),
                )?;
            }
            Ok((resp, changes))
        })
    }

    /// Indexes `changes` (already written by `write_inner`) at revision `base_rev + 1`
    /// and records `index` as applied.
    fn finish_write(
        &self,
        w: &mut Writer,
        base_rev: i64,
        index: u64,
        changes: &[Change],
    ) -> Result<(), MvccError> {
        let new_rev = base_rev + 1;
        if !changes.is_empty() {
            let mut st = self.state.write();
            for (sub, c) in changes.iter().enumerate() {
                let rev = Revision::new(new_rev, sub as i64);
                if c.tombstone {
                    st.index.tombstone(&c.kv.key, rev);
                } else {
                    st.index.put(&c.kv.key, rev);
                }
            }
            drop(st);
            w.rev = new_rev;
            self.applied_rev.store(new_rev, Ordering::Release);
            // The attachments found at open are stale from the first write on.
            *self.open_leases.lock() = None;
        }
        self.record_index(w, index)
    }
}

/// Read view on the committed state for client ranges.
struct ReadView<'s> {
    store: &'s Store,
}

impl KvRead for ReadView<'_> {
    fn rev(&self) -> i64 {
        self.store.committed_revision()
    }

    fn range_keys(
        &self,
        key: &[u8],
        range_end: &[u8],
        ro: RangeOpts,
    ) -> Result<RangeResult, MvccError> {
        // Under the state lock: pick the revision, snapshot redb and collect the
        // revisions; then fetch values from the snapshot without the lock.
        let (rtxn, revs, count, cur) = {
            let st = self.store.state.read();
            let cur = st.committed_rev;
            let rev = resolve_rev(ro.rev, cur, st.compact_rev)?;
            let rtxn = self.store.begin_read()?;
            let limit = if ro.limit <= 0 {
                usize::MAX
            } else {
                ro.limit as usize
            };
            let (revs, count) = collect_revs(&st.index, key, range_end, rev, limit, ro.count);
            (rtxn, revs, count, cur)
        };
        let mut kvs = Vec::with_capacity(revs.len());
        if !revs.is_empty() {
            let table = rtxn.open_table(KV_TABLE)?;
            let chunks = Chunks::new(&*rtxn);
            for r in revs {
                kvs.push(get_kv(&table, &chunks, r)?);
            }
        }
        Ok(RangeResult {
            kvs,
            count,
            rev: cur,
        })
    }
}

impl Store {
    /// Compacts at `rev` (etcd's `Compact`): errors if `rev` is already compacted or
    /// is a future revision; persists `scheduledCompactRev` durably (with the pending
    /// batch) and compacts the index. The rows no longer needed are then deleted from the
    /// backend in batches by the compactor thread, if [`crate::spawn_compactor`] started
    /// one ([`Store::wait_compacted`] waits for them), and otherwise before this returns;
    /// `finishedCompactRev` is persisted at the end (see the `compact` module).
    pub fn compact(&self, rev: i64, index: u64) -> Result<CompactionResponse, MvccError> {
        let resp = self.schedule(rev, index)?;
        // etcd's applier reads the current revision with a range after compacting.
        self.ops.range();
        if !self.compactions.in_background() {
            self.finish_compactions()?;
        }
        Ok(resp)
    }

    /// The ranges, puts, deletes and txns run since the store was opened, as etcd's
    /// `etcd_mvcc_*_total` count them.
    pub fn op_counts(&self) -> OpCounts {
        self.ops.get()
    }

    /// The read transactions open on the backend now: ranges, txns' reads, hashes,
    /// history reads for watchers, snapshot exports and defragmentations in progress
    /// (etcd's `etcd_mvcc_db_open_read_transactions`).
    pub fn open_read_transactions(&self) -> u64 {
        self.open_reads.load(Ordering::Relaxed).max(0) as u64
    }

    /// The applier's half of [`Store::compact`]: checks, persists and queues.
    pub(crate) fn schedule(&self, rev: i64, index: u64) -> Result<CompactionResponse, MvccError> {
        let mut w = self.writer.lock();
        w.check()?;
        let check = {
            let st = self.state.read();
            if rev <= st.compact_rev {
                Err(MvccError::Compacted)
            } else if rev > w.rev {
                Err(MvccError::FutureRev)
            } else {
                Ok(())
            }
        };
        if let Err(e) = check {
            let r = self.record_index(&mut w, index);
            poison(&mut w, r)?;
            return Err(e);
        }
        let r = self.schedule_compaction(&mut w, rev, index);
        poison(&mut w, r)?;
        Ok(CompactionResponse {
            header: Some(oxcd_proto::etcdserverpb::ResponseHeader {
                revision: w.rev,
                ..Default::default()
            }),
        })
    }

    fn schedule_compaction(&self, w: &mut Writer, rev: i64, index: u64) -> Result<(), MvccError> {
        let txn = self.open_txn(w)?;
        let mut meta = txn.open_table(META_TABLE)?;
        meta_put_u64(&mut meta, META_SCHEDULED_COMPACT, rev as u64)?;
        drop(meta);
        self.record_index(w, index)?;
        self.commit_locked(w, true)?;
        self.resume_compaction(rev);
        Ok(())
    }

    /// Compacts the index at `rev` (persisted as scheduled already) and queues the
    /// deletion of the rows it no longer needs.
    pub(crate) fn resume_compaction(&self, rev: i64) {
        let keep = {
            let mut st = self.state.write();
            st.compact_rev = rev;
            st.index.compact(rev)
        };
        self.compactions.push(rev, keep);
    }
}
