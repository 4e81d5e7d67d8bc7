//! The snapshot stream format: the backend's rows written out one after another under one
//! read transaction, and a new backend file built back from them.
//!
//! Maintenance.Snapshot streams this rather than a copy of the backend file. A copy must
//! be written to disk in full before its first byte can be sent (redb writes its header
//! last), which doubled the disk space a snapshot needs on the server and took as long
//! as the transfer itself; the rows can be sent as they are read, from the page cache,
//! while the store keeps serving. `snapshot restore` builds the new member's backend from
//! them ([`restore_dump`]), and `snapshot status` reads them ([`scan_dump`]).
//!
//! The revision table's rows are dumped as their logical bytes (encoded `KeyValue`s, as
//! etcd stores them), whatever the backend's storage layout (see the `rows` module): a large
//! row's chunks are joined, the chunk tables are not dumped, and a restore stores the rows in
//! its own layout.
//!
//! Layout (integers big-endian):
//!
//! ```text
//! header   "oxcdsnap" | version u32 (1) | 0 u32                        16 bytes
//! table    'T' | name length u32 | name                                per table, name order
//! row      'R' | key length u32 | value length u32 | key | value       per entry, key order
//! footer   'Z' | tables u32 | rows u64
//! padding  zero bytes up to a multiple of 512
//! ```
//!
//! The padding keeps etcd's rule for snapshot files: a file whose size is 32 past a
//! multiple of 512 ends with the SHA-256 of the rest, which the sender appends and
//! `etcdctl snapshot save` checks. The footer's counts tell a complete dump from a
//! truncated one even without that digest.

use std::io::{Read, Write};
use std::path::Path;

use redb::{Durability, ReadableTable, TableDefinition, TableHandle};

use crate::backend::{is_chunk_table, KV_TABLE, META_CURRENT_REV, META_TABLE};
use crate::restore_file::RestoreFile;
use crate::revision::Revision;
use crate::rows::{logical_len, logical_row, put_rows, Chunks};
use crate::store::{ReadSnap, Store};
use crate::{EntryVisitor, FileScan, MvccError};

/// The first bytes of every dump.
const DUMP_MAGIC: &[u8; 8] = b"oxcdsnap";
/// The format version this code writes and reads.
const DUMP_VERSION: u32 = 1;
const HEADER_LEN: u64 = 16;
const TABLE_TAG: u8 = b'T';
const ROW_TAG: u8 = b'R';
const FOOTER_TAG: u8 = b'Z';
const FOOTER_LEN: u64 = 1 + 4 + 8;
/// Dumps are padded to a multiple of this (etcd's snapshot size rule; see the module doc).
const PAD_TO: u64 = 512;
/// The largest key or value a dump may hold: far above any request etcd or oxcd accepts,
/// low enough that a corrupt length cannot make the reader allocate without bound.
const MAX_FIELD: u32 = 1 << 30;
/// Bytes of rows inserted per (non-durable) commit while restoring. A commit computes the
/// checksums of every page its transaction wrote, so a transaction's pages must still be
/// in redb's cache ([`crate::DEFAULT_CACHE_BYTES`]) when it commits: with 256 MiB per
/// commit a 1 GiB restore read every page back from the file and wrote it twice (2.26 GB
/// written, 1.13 GB read); with 16 MiB it reads 8 pages back and writes 1.13 GB. (4 and 8
/// MiB were no faster, and 32 or 64 MiB with a cache of 128 or 256 MiB slower.)
#[cfg(not(test))]
const RESTORE_BYTES_PER_COMMIT: u64 = 16 << 20;
/// Small in unit tests, so their restores commit in the middle too.
#[cfg(test)]
const RESTORE_BYTES_PER_COMMIT: u64 = 64 << 10;
/// Full batches of rows the parsing thread may be ahead of the inserting one.
const RESTORE_BATCHES_AHEAD: usize = 2;
/// Bytes of rows a restore gathers before inserting them.
#[cfg(not(test))]
const RESTORE_BATCH_BYTES: usize = 8 << 20;
#[cfg(test)]
const RESTORE_BATCH_BYTES: usize = 16 << 10;

/// Whether `head` (the first bytes of a file) starts like a dump.
pub fn is_dump(head: &[u8]) -> bool {
    head.starts_with(DUMP_MAGIC)
}

/// A point-in-time dump of a store, ready to be written: it holds the read transaction
/// it reads from, so the store may go on changing.
pub struct SnapshotDump {
    snap: ReadSnap,
    /// The revision the dump holds (the newest committed when it was taken).
    pub revision: i64,
    /// The raft index the dump holds (its consistent index).
    pub consistent_index: u64,
    /// The dump's exact size in bytes, padding included.
    pub size: u64,
}

impl std::fmt::Debug for SnapshotDump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotDump")
            .field("revision", &self.revision)
            .field("consistent_index", &self.consistent_index)
            .field("size", &self.size)
            .finish()
    }
}

impl Store {
    /// Takes a dump of everything applied so far: the open write batch is committed first
    /// (not durably: a dump is a copy for elsewhere), then one read transaction is held
    /// until the dump is dropped. Its size is counted here, so the reader can be told the
    /// bytes still to come from the first chunk on.
    pub fn dump_snapshot(&self) -> Result<SnapshotDump, MvccError> {
        let (snap, consistent_index, revision) = self.point_in_time()?;
        let mut body = HEADER_LEN + FOOTER_LEN;
        visit_rows(&snap, true, &mut |row| {
            body += match row {
                Row::Table(name) => 1 + 4 + u64::from(field_len(name.len())?),
                Row::Entry(k, v) => {
                    1 + 4 + 4 + u64::from(field_len(k.len())?) + u64::from(field_len(v.len())?)
                }
                Row::Sized(k, len) => {
                    1 + 4 + 4 + u64::from(field_len(k.len())?) + u64::from(field_len(len)?)
                }
            };
            Ok(())
        })?;
        Ok(SnapshotDump {
            snap,
            revision,
            consistent_index,
            size: body.div_ceil(PAD_TO) * PAD_TO,
        })
    }
}

impl SnapshotDump {
    /// Writes the dump to `out` (exactly [`SnapshotDump::size`] bytes). Fails with the
    /// first error of `out` (a receiver gone) or of the backend.
    pub fn write_to(&self, out: &mut dyn Write) -> Result<(), MvccError> {
        let io = |e: std::io::Error| MvccError::backend(format!("cannot write the snapshot: {e}"));
        let mut header = [0u8; HEADER_LEN as usize];
        header[..8].copy_from_slice(DUMP_MAGIC);
        header[8..12].copy_from_slice(&DUMP_VERSION.to_be_bytes());
        out.write_all(&header).map_err(io)?;
        let (mut tables, mut rows, mut written) = (0u32, 0u64, HEADER_LEN);
        visit_rows(&self.snap, false, &mut |row| {
            match row {
                Row::Table(name) => {
                    tables += 1;
                    out.write_all(&[TABLE_TAG]).map_err(io)?;
                    out.write_all(&field_len(name.len())?.to_be_bytes())
                        .map_err(io)?;
                    out.write_all(name.as_bytes()).map_err(io)?;
                    written += 1 + 4 + name.len() as u64;
                }
                Row::Entry(k, v) => {
                    rows += 1;
                    let mut head = [0u8; 9];
                    head[0] = ROW_TAG;
                    head[1..5].copy_from_slice(&field_len(k.len())?.to_be_bytes());
                    head[5..9].copy_from_slice(&field_len(v.len())?.to_be_bytes());
                    out.write_all(&head).map_err(io)?;
                    out.write_all(k).map_err(io)?;
                    out.write_all(v).map_err(io)?;
                    written += 9 + k.len() as u64 + v.len() as u64;
                }
                Row::Sized(..) => return Err(unsized_row()),
            }
            Ok(())
        })?;
        let mut footer = [0u8; FOOTER_LEN as usize];
        footer[0] = FOOTER_TAG;
        footer[1..5].copy_from_slice(&tables.to_be_bytes());
        footer[5..13].copy_from_slice(&rows.to_be_bytes());
        out.write_all(&footer).map_err(io)?;
        written += FOOTER_LEN;
        // The read transaction is the one the size was counted in: nothing can differ.
        let padding = self
            .size
            .checked_sub(written)
            .filter(|&p| p < PAD_TO)
            .ok_or_else(|| {
                MvccError::backend(format!(
                    "the snapshot changed while it was written ({written} bytes, {} counted)",
                    self.size
                ))
            })?;
        let zeros = [0u8; PAD_TO as usize];
        out.write_all(&zeros[..padding as usize]).map_err(io)?;
        Ok(())
    }
}

fn field_len(n: usize) -> Result<u32, MvccError> {
    u32::try_from(n)
        .ok()
        .filter(|&n| n <= MAX_FIELD)
        .ok_or_else(|| MvccError::backend(format!("an entry of {n} bytes is too large to dump")))
}

/// One step of a walk over a backend's rows.
enum Row<'a> {
    /// A table starts (tables come in name order).
    Table(&'a str),
    /// An entry of the current table (in key order; the meta table's keys as UTF-8).
    Entry(&'a [u8], &'a [u8]),
    /// An entry of the revision table and the length of its (logical) value, when only
    /// sizes were asked for.
    Sized(&'a [u8], usize),
}

fn unsized_row() -> MvccError {
    MvccError::backend("a row without its value in a walk that needs values")
}

/// Walks every table of `txn`, in name order, and every entry in key order. The meta
/// table is the only one keyed by strings; every other table is bytes -> bytes (as the
/// defragmentation's copy requires). The revision table's entries are its logical rows
/// (encoded `KeyValue`s, however the backend stores them: see the `rows` module) and the
/// chunk tables of its large rows are not visited, so the walk, a dump and a scan do not
/// depend on the storage layout. With `sizes_only`, the revision table's entries come as
/// [`Row::Sized`] (no chunk is read).
fn visit_rows(
    txn: &redb::ReadTransaction,
    sizes_only: bool,
    each: &mut dyn FnMut(Row<'_>) -> Result<(), MvccError>,
) -> Result<(), MvccError> {
    if txn.list_multimap_tables()?.next().is_some() {
        return Err(MvccError::backend(
            "the database holds a multimap table this version does not know",
        ));
    }
    let mut names: Vec<String> = txn.list_tables()?.map(|t| t.name().to_string()).collect();
    names.sort();
    for name in &names {
        if is_chunk_table(name) {
            continue;
        }
        each(Row::Table(name))?;
        if name == META_TABLE.name() {
            let t = txn.open_table(META_TABLE)?;
            for entry in t.iter()? {
                let (k, v) = entry?;
                each(Row::Entry(k.value().as_bytes(), v.value()))?;
            }
        } else if name == KV_TABLE.name() {
            let t = txn.open_table(KV_TABLE)?;
            let chunks = Chunks::new(txn);
            for entry in t.iter()? {
                let (k, v) = entry?;
                if sizes_only {
                    each(Row::Sized(k.value(), logical_len(v.value())?))?;
                } else {
                    each(Row::Entry(
                        k.value(),
                        &logical_row(&chunks, k.value(), v.value())?,
                    ))?;
                }
            }
        } else {
            let t = txn.open_table(TableDefinition::<&[u8], &[u8]>::new(name))?;
            for entry in t.iter()? {
                let (k, v) = entry?;
                each(Row::Entry(k.value(), v.value()))?;
            }
        }
    }
    Ok(())
}

/// Walks the rows of a backend file for [`crate::scan_file`].
pub(crate) fn visit_backend_rows(
    txn: &redb::ReadTransaction,
    each: &mut EntryVisitor<'_>,
    scan: &mut RowScan,
) -> Result<(), MvccError> {
    let mut table = String::new();
    visit_rows(txn, false, &mut |row| {
        match row {
            Row::Table(name) => table = name.to_string(),
            Row::Entry(k, v) => {
                scan.row(&table, k, v)?;
                each(&table, k, v);
            }
            Row::Sized(..) => return Err(unsized_row()),
        }
        Ok(())
    })
}

/// What a scan learns of a backend from its rows: its revision and entry count.
#[derive(Debug, Default)]
pub(crate) struct RowScan {
    newest_row: i64,
    stored_rev: i64,
    total_keys: u64,
}

impl RowScan {
    /// Takes in one entry of `table`.
    pub(crate) fn row(&mut self, table: &str, k: &[u8], v: &[u8]) -> Result<(), MvccError> {
        self.total_keys += 1;
        if table == crate::backend::KV_TABLE.name() {
            self.newest_row = self.newest_row.max(Revision::from_bytes(k)?.0.main);
        } else if table == META_TABLE.name() && k == META_CURRENT_REV.as_bytes() {
            let b: [u8; 8] = v
                .try_into()
                .map_err(|_| MvccError::corrupt(format!("meta {META_CURRENT_REV}: bad length")))?;
            self.stored_rev = i64::from_be_bytes(b);
        }
        Ok(())
    }

    /// The scan's result: the revision a store opened on the rows would start at (its
    /// newest, at least 1).
    pub(crate) fn finish(&self) -> FileScan {
        FileScan {
            revision: self.newest_row.max(self.stored_rev).max(1),
            total_keys: self.total_keys,
        }
    }
}

/// Reads a dump of `len` bytes from `r` (the padding included, any trailer excluded),
/// calling `each(table, key, value)` for every entry in the order written. Fails if the
/// bytes are not a complete dump of this version.
pub fn scan_dump(
    r: &mut dyn Read,
    len: u64,
    each: &mut EntryVisitor<'_>,
) -> Result<FileScan, MvccError> {
    let mut scan = RowScan::default();
    read_dump(r, len, &mut |table, k, v| {
        scan.row(table, k, v)?;
        each(table, k, v);
        Ok(())
    })?;
    Ok(scan.finish())
}

/// Builds a new backend file at `dest` (which must not exist) from a dump of `len` bytes
/// read from `r`, committed durably. On error the partial file is removed.
///
/// Two threads: this one parses the dump into batches of rows and a second inserts them,
/// so the inserting thread, the restore's bottleneck, does nothing but insert (parsing
/// copies every byte twice more). The file is written by [`RestoreFile`] (pages straight
/// to the disk, on a third thread), in non-durable commits of [`RESTORE_BYTES_PER_COMMIT`]
/// each and one durable commit at the end.
pub fn restore_dump(
    r: &mut (dyn Read + Send),
    len: u64,
    dest: &Path,
) -> Result<FileScan, MvccError> {
    if dest.exists() {
        return Err(MvccError::backend(format!(
            "{} exists already: a backend is never restored over one",
            dest.display()
        )));
    }
    let built = (|| {
        let file = RestoreFile::create(dest)
            .map_err(|e| MvccError::backend(format!("cannot create {}: {e}", dest.display())))?;
        let scan = restore_into(r, len, file.clone())?;
        let stats = file.stats();
        tracing::debug!(
            direct = stats.direct,
            flushes = stats.flushes,
            written = stats.written,
            writes = stats.writes,
            disk_reads = stats.disk_reads,
            disk_read_bytes = stats.disk_read_bytes,
            "restored backend written"
        );
        Ok(scan)
    })();
    if built.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    built
}

/// The restore's two threads (see [`restore_dump`]) writing a new database in `file`.
fn restore_into(
    r: &mut (dyn Read + Send),
    len: u64,
    file: RestoreFile,
) -> Result<FileScan, MvccError> {
    let db = redb::Builder::new()
        .set_cache_size(crate::DEFAULT_CACHE_BYTES)
        .create_with_backend(file)?;
    // Full batches go to the inserter; emptied ones come back to be filled again (their
    // memory is touched once).
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<RowBatch>(RESTORE_BATCHES_AHEAD);
    let (empty_tx, empty_rx) = std::sync::mpsc::channel::<RowBatch>();
    // Set when the dump turned out damaged: the inserter then stops without committing
    // the rows it has (the file is removed anyway).
    let parse_failed = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let inserter = std::thread::Builder::new()
            .name("oxcd-restore-insert".into())
            .spawn_scoped(scope, || -> Result<(), MvccError> {
                let full_rx = full_rx;
                let empty_tx = empty_tx;
                // redb has one writer at a time: a transaction is committed before the
                // next begins (beginning one while another is open waits for it forever).
                let mut txn = db.begin_write()?;
                let mut uncommitted = 0u64;
                for mut batch in full_rx.iter() {
                    uncommitted += batch.insert_into(&txn)?;
                    if uncommitted >= RESTORE_BYTES_PER_COMMIT {
                        commit(txn, Durability::None)?;
                        txn = db.begin_write()?;
                        uncommitted = 0;
                    }
                    // The parser may be done and gone: then the batch is just dropped.
                    let _ = empty_tx.send(batch);
                }
                if parse_failed.load(std::sync::atomic::Ordering::Acquire) {
                    return Ok(());
                }
                commit(txn, Durability::Immediate)
            })
            .map_err(|e| MvccError::backend(format!("cannot start the restore's inserter: {e}")))?;
        let mut scan = RowScan::default();
        let mut batch = RowBatch::default();
        // Set when the inserter stopped taking batches (it failed: its error is the one).
        let mut inserter_gone = false;
        let parsed = read_dump(r, len, &mut |table, k, v| {
            scan.row(table, k, v)?;
            if table != batch.table || batch.buf.len() >= RESTORE_BATCH_BYTES {
                let mut next = empty_rx.try_recv().unwrap_or_default();
                next.table.clear();
                next.table.push_str(table);
                let full = std::mem::replace(&mut batch, next);
                if full_tx.send(full).is_err() {
                    inserter_gone = true;
                    return Err(MvccError::backend("the restore's inserter stopped"));
                }
            }
            batch.push(k, v);
            Ok(())
        });
        if parsed.is_ok() && full_tx.send(batch).is_err() {
            inserter_gone = true;
        }
        if parsed.is_err() {
            parse_failed.store(true, std::sync::atomic::Ordering::Release);
        }
        // No more batches: the inserter commits (durably) and ends.
        drop(full_tx);
        let inserted = inserter
            .join()
            .unwrap_or_else(|_| Err(MvccError::backend("the restore's inserter panicked")));
        match (parsed, inserted) {
            // A damaged or truncated dump is reported as such, whatever the inserter did
            // with the rows before it.
            (Err(e), _) if !inserter_gone => Err(e),
            (_, Err(e)) => Err(e),
            (Err(e), Ok(())) => Err(e),
            (Ok(()), Ok(())) => Ok(scan.finish()),
        }
    })
}

fn commit(mut txn: redb::WriteTransaction, durability: Durability) -> Result<(), MvccError> {
    txn.set_durability(durability)?;
    txn.commit()?;
    Ok(())
}

/// Rows of one table gathered so they are inserted under one open table (opening a table
/// per row costs more than inserting it).
#[derive(Default)]
struct RowBatch {
    table: String,
    /// The keys and values, one after another.
    buf: Vec<u8>,
    /// Where each row's key ends and its value ends in `buf`.
    ends: Vec<(usize, usize)>,
}

impl RowBatch {
    fn push(&mut self, k: &[u8], v: &[u8]) {
        self.buf.extend_from_slice(k);
        let key_end = self.buf.len();
        self.buf.extend_from_slice(v);
        self.ends.push((key_end, self.buf.len()));
    }

    /// Inserts the rows into their table in `txn` and empties the batch; returns the bytes
    /// inserted.
    fn insert_into(&mut self, txn: &redb::WriteTransaction) -> Result<u64, MvccError> {
        let mut start = 0;
        if self.table == META_TABLE.name() {
            let mut t = txn.open_table(META_TABLE)?;
            for &(key_end, end) in &self.ends {
                let key = std::str::from_utf8(&self.buf[start..key_end])
                    .map_err(|_| MvccError::corrupt("a meta key of the snapshot is not UTF-8"))?;
                t.insert(key, &self.buf[key_end..end])?;
                start = end;
            }
        } else if self.table == KV_TABLE.name() {
            // Logical rows, stored in this version's layout (large ones in chunks).
            let mut t = txn.open_table(KV_TABLE)?;
            let chunks = Chunks::new(txn);
            let buf = &self.buf;
            let rows = self.ends.iter().scan(0, |start, &(key_end, end)| {
                let row = (&buf[*start..key_end], &buf[key_end..end]);
                *start = end;
                Some(row)
            });
            put_rows(&mut t, &chunks, rows)?;
        } else if is_chunk_table(&self.table) {
            return Err(MvccError::corrupt(
                "the snapshot holds a chunk table (dumps hold logical rows only)",
            ));
        } else if !self.ends.is_empty() {
            let mut t = txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&self.table))?;
            for &(key_end, end) in &self.ends {
                t.insert(&self.buf[start..key_end], &self.buf[key_end..end])?;
                start = end;
            }
        }
        let bytes = self.buf.len() as u64;
        self.buf.clear();
        self.ends.clear();
        Ok(bytes)
    }
}

/// What [`read_dump`] hands each entry to: `(table, key, value)`.
type RowSink<'a> = dyn FnMut(&str, &[u8], &[u8]) -> Result<(), MvccError> + 'a;

/// Parses a dump (see the module doc), handing each entry with its table's name to `each`.
fn read_dump(r: &mut dyn Read, len: u64, each: &mut RowSink<'_>) -> Result<(), MvccError> {
    let mut r = Counted {
        inner: r,
        read: 0,
        len,
    };
    let mut header = [0u8; HEADER_LEN as usize];
    r.fill(&mut header)?;
    if !is_dump(&header) {
        return Err(MvccError::corrupt(
            "not an oxcd snapshot (no oxcdsnap header)",
        ));
    }
    let version = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    if version != DUMP_VERSION {
        return Err(MvccError::corrupt(format!(
            "snapshot format version {version}; this oxcd reads version {DUMP_VERSION}"
        )));
    }
    let (mut table, mut key, mut value) = (String::new(), Vec::new(), Vec::new());
    let (mut tables, mut rows) = (0u32, 0u64);
    loop {
        let mut tag = [0u8; 1];
        r.fill(&mut tag)?;
        match tag[0] {
            TABLE_TAG => {
                let n = r.field_len()?;
                let mut name = vec![0u8; n];
                r.fill(&mut name)?;
                table = String::from_utf8(name)
                    .map_err(|_| MvccError::corrupt("a table name of the snapshot is not UTF-8"))?;
                tables += 1;
            }
            ROW_TAG => {
                if tables == 0 {
                    return Err(MvccError::corrupt(
                        "an entry of the snapshot precedes every table",
                    ));
                }
                let (kn, vn) = (r.field_len()?, r.field_len()?);
                key.resize(kn, 0);
                value.resize(vn, 0);
                r.fill(&mut key)?;
                r.fill(&mut value)?;
                each(&table, &key, &value)?;
                rows += 1;
            }
            FOOTER_TAG => {
                let mut f = [0u8; (FOOTER_LEN - 1) as usize];
                r.fill(&mut f)?;
                let want_tables = u32::from_be_bytes([f[0], f[1], f[2], f[3]]);
                let mut want_rows = [0u8; 8];
                want_rows.copy_from_slice(&f[4..12]);
                let want_rows = u64::from_be_bytes(want_rows);
                if (want_tables, want_rows) != (tables, rows) {
                    return Err(MvccError::corrupt(format!(
                        "the snapshot says {want_tables} tables and {want_rows} entries, \
                         but holds {tables} and {rows}"
                    )));
                }
                return r.padding();
            }
            other => {
                return Err(MvccError::corrupt(format!(
                    "unexpected byte {other:#04x} at offset {} of the snapshot",
                    r.read - 1
                )))
            }
        }
    }
}

/// A reader that knows where the dump ends.
struct Counted<'a> {
    inner: &'a mut dyn Read,
    read: u64,
    len: u64,
}

impl Counted<'_> {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), MvccError> {
        if self.read + buf.len() as u64 > self.len {
            return Err(MvccError::corrupt(format!(
                "the snapshot ends after {} bytes, in the middle of an entry",
                self.len
            )));
        }
        self.inner.read_exact(buf).map_err(|e| {
            MvccError::backend(format!(
                "cannot read the snapshot at offset {}: {e}",
                self.read
            ))
        })?;
        self.read += buf.len() as u64;
        Ok(())
    }

    fn field_len(&mut self) -> Result<usize, MvccError> {
        let mut b = [0u8; 4];
        self.fill(&mut b)?;
        let n = u32::from_be_bytes(b);
        // Checked before anything is allocated for it: a damaged length must not cost
        // gigabytes of memory.
        if n > MAX_FIELD || u64::from(n) > self.len - self.read {
            return Err(MvccError::corrupt(format!(
                "a length of {n} bytes at offset {} of the snapshot",
                self.read - 4
            )));
        }
        Ok(n as usize)
    }

    /// The rest must be the zero padding, shorter than [`PAD_TO`].
    fn padding(&mut self) -> Result<(), MvccError> {
        let rest = self.len - self.read;
        if rest >= PAD_TO || !self.len.is_multiple_of(PAD_TO) {
            return Err(MvccError::corrupt(format!(
                "{rest} bytes follow the end of the snapshot"
            )));
        }
        let mut pad = vec![0u8; rest as usize];
        self.fill(&mut pad)?;
        if pad.iter().any(|&b| b != 0) {
            return Err(MvccError::corrupt("the snapshot's padding is not zero"));
        }
        Ok(())
    }
}
