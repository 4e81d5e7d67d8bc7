//! The rows of the revision table, and where their bytes live: every read or write of a
//! revision row goes through this module.
//!
//! A revision's *logical row* is an encoded `mvccpb.KeyValue` (etcd's encoding; hashes,
//! snapshots' status and imports all see these bytes). It is stored in one of two layouts,
//! told apart by the first byte of the [`KV_TABLE`] value:
//!
//! - **inline**: the value *is* the logical row (the only layout before chunking, and
//!   etcd's). Rows of at most [`INLINE_MAX`] bytes are always stored so.
//! - **chunked**: the logical row is split into a *head* (its first bytes, at least up to
//!   the end of the `key` field) kept in the [`KV_TABLE`] value behind a small header, and
//!   runs of chunks of the sizes in [`CHUNK_TIER_BYTES`] (65,503, then 16,351, then
//!   [`CHUNK_BYTES`] bytes: as many of the largest as fit, then of the next), each size in
//!   its table of [`KV_CHUNK_TABLES`], keyed by the row's 17-byte revision followed by the
//!   chunk's index in its run (u32, big-endian), so a row's chunks are adjacent and follow
//!   its revision order. The logical row is the head, then the largest chunks, then the
//!   middle ones, then the smallest. The [`KV_TABLE`] value is, when the row has small
//!   chunks only (the layout older versions wrote and read):
//!
//!   ```text
//!   0x00 0x01 varint(logical length) varint(chunk count) varint(lease as u64)
//!   varint(key offset in head) varint(key length) head…
//!   ```
//!
//!   and otherwise, with one count per size, smallest first:
//!
//!   ```text
//!   0x00 0x02 varint(logical length) varint(small) varint(16 KiB-leaf) varint(64 KiB-leaf)
//!   varint(lease as u64) varint(key offset in head) varint(key length) head…
//!   ```
//!
//!   The key and lease are thus readable from the [`KV_TABLE`] row alone (rebuilding the
//!   index at start-up never reads a chunk).
//!
//! **Why the marker cannot be mistaken for an inline row.** An inline row is a protobuf
//! encoding: empty (an all-default `KeyValue`), or starting with a field key, the varint
//! `field_number << 3 | wire_type`. A first byte of `0x00` would be field number 0, which
//! protobuf forbids (prost, like Go's protobuf, rejects it: "invalid tag value: 0"), so no
//! encoding of a `KeyValue` — ours, or etcd's imported as is — starts with it. The second
//! byte numbers the chunked layout's version. A store written before chunking holds inline
//! rows only and is read unchanged; an older binary given a chunked row fails to decode it
//! (a corrupt-data error) rather than misreading it.
//!
//! **Why chunks of [`CHUNK_BYTES`].** redb stores a B-tree leaf in a power-of-two number of
//! 4 KiB pages: a 4-byte header, 8 bytes per entry (key and value end offsets) and the
//! entries' bytes. A 64 KiB value alone in a leaf takes a 128 KiB page; a 2–4 KiB one a
//! whole 4 KiB page. redb 4 packs the rightmost leaf full when keys arrive in ascending order
//! (ours do: revisions), so a table of equal entries sized to divide a page evenly wastes
//! nothing but the per-entry overhead and its branch pages. Four chunks of 994 bytes with
//! their 21-byte keys fill a page exactly (4 + 4 × (8 + 21 + 994) = 4096). Bytes in use
//! (stored + fragmented + metadata) over logical bytes, 64 MiB of rows written in ascending
//! order a few per commit: with small chunks only (`tests::layout::redb_page_use`) rows of
//! 2.1 KB used 1.065×, 4.1 KB 1.056×, 64 KiB and 1 MiB 1.055×; rows of 300 B stay inline at
//! 1.16×. With the larger chunks below, 64 KiB and 1 MiB rows use 1.002×.
//! A scratch variant of that test (rows and chunks written with redb directly) gave, inline,
//! 1.99×, 2.00×, 2.00× for the first three; with half-page chunks (2,017 bytes) 1.06×,
//! 1.05×, 1.04×, but rows of 1–2 KB stay inline (1 KB rows: 1.39×, which quarter-page
//! chunks bring to 1.10×); whole-page chunks (4,063 bytes) leave every row under 4 KB
//! inline (2.1 KB: 2×).
//!
//! **Why larger chunks too.** Every chunk is one B-tree insert: a 64 KiB value cut in
//! 994-byte chunks is 66 of them, and a restore of 1 GiB of such values spent 2.5 s of its
//! 3.1 s inserting 1.1 million chunks. A chunk that fills a larger leaf alone, 16,351 bytes
//! for a 16 KiB leaf (4 + 8 + 21 + 16,351 = 16,384) or 65,503 for a 64 KiB one, is one
//! insert, and spends 33 bytes of key, offsets and header per leaf where four small chunks
//! spend 120 per 3,976 bytes; small chunks only carry a row's last bytes. Each size has
//! its own table, so every leaf holds chunks of one size and stays full. Rows with small
//! chunks only keep the first header, which versions before the larger sizes read; a row
//! with larger chunks given to such a version is an unknown layout there (a corrupt-data
//! error), never misread.
//!
//! A row and its chunks are written in the same write transaction, and removed together.

use std::borrow::Cow;
use std::cell::RefCell;
use std::ops::Range;

use oxcd_proto::mvccpb::KeyValue;
use redb::{ReadOnlyTable, ReadTransaction, ReadableTable, Table, TableError, WriteTransaction};

use crate::backend::{decode_kv, KV_CHUNK_TABLES, KV_TABLE};
use crate::revision::{Revision, REV_BYTES_LEN};
use crate::MvccError;

/// Bytes of a small chunk: four of them, with their keys, fill a 4 KiB redb leaf exactly.
pub const CHUNK_BYTES: usize = 994;

/// The number of chunk sizes: one table each.
const TIERS: usize = KV_CHUNK_TABLES.len();

/// Bytes of the chunks of each size, smallest first, in the order of
/// [`KV_CHUNK_TABLES`]: each fills a redb leaf of 4 KiB (four of them), 16 KiB or 64 KiB
/// (one) exactly, with its 21-byte key and redb's 4-byte leaf header and 8 bytes per entry.
pub const CHUNK_TIER_BYTES: [usize; TIERS] = [CHUNK_BYTES, 16_351, 65_503];

/// A chunked row's number of chunks of each size, smallest first.
pub(crate) type ChunkCounts = [u32; TIERS];

/// Logical rows of at most this many bytes are stored inline.
pub const INLINE_MAX: usize = CHUNK_BYTES;

/// First byte of a chunked row's [`KV_TABLE`] value (never the first byte of a protobuf
/// encoding: see the module doc).
const MARKER: u8 = 0x00;
/// Second byte: the chunked layout's version. Small chunks only (one count).
const CHUNKED_V1: u8 = 0x01;
/// Chunks of every size (one count per size).
const CHUNKED_V2: u8 = 0x02;

/// Length of a chunk's key: the row's revision and the chunk's index.
const CHUNK_KEY_LEN: usize = REV_BYTES_LEN + 4;

type Bytes = &'static [u8];

/// "revision m.s" for messages (the raw bytes if they are not a revision).
fn describe(row_key: &[u8]) -> String {
    match Revision::from_bytes(row_key) {
        Ok((r, _)) => format!("revision {}.{}", r.main, r.sub),
        Err(_) => format!("row {row_key:?}"),
    }
}

fn read_varint(b: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            *b = &b[i + 1..];
            return Some(v);
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The fields of a logical row other than its value, read without decoding (nor
/// copying) the value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct RowFields {
    /// Where the `key` field's bytes are in the row.
    pub key: Range<usize>,
    /// The `create_revision` field (0 if absent, as protobuf decodes it).
    pub create_revision: i64,
    /// The `version` field.
    pub version: i64,
    /// The `lease` field.
    pub lease: i64,
}

/// Scans the fields of a logical row (an encoded `KeyValue`, fields in any order, as
/// protobuf allows) without decoding the value.
pub(crate) fn encoded_fields(row: &[u8]) -> Result<RowFields, MvccError> {
    let bad = || MvccError::corrupt("undecodable KeyValue");
    let mut b = row;
    let mut f = RowFields::default();
    while !b.is_empty() {
        let tag = read_varint(&mut b).ok_or_else(bad)?;
        match tag & 7 {
            0 => {
                let v = read_varint(&mut b).ok_or_else(bad)? as i64;
                match tag >> 3 {
                    2 => f.create_revision = v,
                    4 => f.version = v,
                    6 => f.lease = v,
                    _ => {}
                }
            }
            1 => b = b.get(8..).ok_or_else(bad)?,
            2 => {
                let len =
                    usize::try_from(read_varint(&mut b).ok_or_else(bad)?).map_err(|_| bad())?;
                if len > b.len() {
                    return Err(bad());
                }
                if tag >> 3 == 1 {
                    let start = row.len() - b.len();
                    f.key = start..start + len;
                }
                b = &b[len..];
            }
            5 => b = b.get(4..).ok_or_else(bad)?,
            _ => return Err(bad()),
        }
    }
    Ok(f)
}

/// Where the `key` field's bytes are in a logical row, and its `lease`, read without
/// decoding (nor copying) the rest.
pub(crate) fn encoded_key_and_lease(row: &[u8]) -> Result<(Range<usize>, i64), MvccError> {
    let f = encoded_fields(row)?;
    Ok((f.key, f.lease))
}

/// The header of a chunked row's [`KV_TABLE`] value.
struct Chunked<'a> {
    /// Length of the logical row.
    len: usize,
    /// Chunks of each size (at least one in all).
    chunks: ChunkCounts,
    lease: i64,
    key: &'a [u8],
    /// The logical row's first bytes.
    head: &'a [u8],
}

/// The header of `stored` if it is a chunked row; `None` for an inline row.
fn parse_chunked(stored: &[u8]) -> Result<Option<Chunked<'_>>, MvccError> {
    let [MARKER, rest @ ..] = stored else {
        return Ok(None);
    };
    let bad = |what: &str| MvccError::corrupt(format!("chunked revision row: {what}"));
    let (counted, mut b): (usize, &[u8]) = match rest {
        [CHUNKED_V1, b @ ..] => (1, b),
        [CHUNKED_V2, b @ ..] => (TIERS, b),
        _ => {
            return Err(bad(&format!(
                "unknown layout {:?} (written by a newer version?)",
                rest.first()
            )))
        }
    };
    let mut field = |what: &str| read_varint(&mut b).ok_or_else(|| bad(what));
    let len = field("bad length")?;
    let mut chunks = ChunkCounts::default();
    for n in chunks.iter_mut().take(counted) {
        *n = u32::try_from(field("bad chunk count")?).map_err(|_| bad("bad chunk count"))?;
    }
    if chunks.iter().all(|&n| n == 0) {
        return Err(bad("bad chunk count"));
    }
    let lease = field("bad lease")? as i64;
    let key_off = field("bad key offset")?;
    let key_len = field("bad key length")?;
    let len = usize::try_from(len).map_err(|_| bad("bad length"))?;
    let head = b;
    let key = usize::try_from(key_off)
        .ok()
        .zip(usize::try_from(key_len).ok())
        .and_then(|(off, n)| head.get(off..off.checked_add(n)?))
        .ok_or_else(|| bad("key outside the head"))?;
    if head.len() > len {
        return Err(bad("head longer than the row"));
    }
    Ok(Some(Chunked {
        len,
        chunks,
        lease,
        key,
        head,
    }))
}

/// The number of chunks of each size of a stored row (all 0 if inline).
pub(crate) fn chunk_counts(stored: &[u8]) -> Result<ChunkCounts, MvccError> {
    Ok(parse_chunked(stored)?.map_or(ChunkCounts::default(), |c| c.chunks))
}

/// The `key` and `lease` of the row stored as `stored` (either layout), without reading
/// any chunk nor decoding the value.
pub(crate) fn stored_key_and_lease(stored: &[u8]) -> Result<(&[u8], i64), MvccError> {
    match parse_chunked(stored)? {
        Some(c) => Ok((c.key, c.lease)),
        None => {
            let (key, lease) = encoded_key_and_lease(stored)?;
            Ok((&stored[key], lease))
        }
    }
}

/// The key of chunk `i` of the row keyed `row_key` (its revision, tombstone mark or not).
fn chunk_key(row_key: &[u8], i: u32) -> Result<[u8; CHUNK_KEY_LEN], MvccError> {
    let rev = row_key
        .get(..REV_BYTES_LEN)
        .ok_or_else(|| MvccError::corrupt(format!("bad revision key {row_key:?}")))?;
    let mut k = [0u8; CHUNK_KEY_LEN];
    k[..REV_BYTES_LEN].copy_from_slice(rev);
    k[REV_BYTES_LEN..].copy_from_slice(&i.to_be_bytes());
    Ok(k)
}

/// A transaction the chunk tables can be opened from.
pub(crate) trait OpenChunks {
    /// An open table.
    type Table: ReadableTable<Bytes, Bytes>;
    /// Opens the chunk table of size `tier` (an index in [`CHUNK_TIER_BYTES`]); `None` if
    /// a read-only transaction finds none (a backend written before chunking, or holding
    /// no chunk of that size yet).
    fn open_chunks(&self, tier: usize) -> Result<Option<Self::Table>, MvccError>;
}

impl OpenChunks for &ReadTransaction {
    type Table = ReadOnlyTable<Bytes, Bytes>;

    fn open_chunks(&self, tier: usize) -> Result<Option<Self::Table>, MvccError> {
        match self.open_table(KV_CHUNK_TABLES[tier]) {
            Ok(t) => Ok(Some(t)),
            Err(TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl<'t> OpenChunks for &'t WriteTransaction {
    type Table = Table<'t, Bytes, Bytes>;

    fn open_chunks(&self, tier: usize) -> Result<Option<Self::Table>, MvccError> {
        Ok(Some(self.open_table(KV_CHUNK_TABLES[tier])?))
    }
}

/// The chunk tables of a transaction, each opened on first use: most rows are inline, and
/// opening a redb table costs about as much as an insert.
pub(crate) struct Chunks<S: OpenChunks> {
    src: S,
    tables: [RefCell<Option<S::Table>>; TIERS],
}

impl<S: OpenChunks> Chunks<S> {
    pub(crate) fn new(src: S) -> Self {
        Chunks {
            src,
            tables: std::array::from_fn(|_| RefCell::new(None)),
        }
    }

    fn open(&self, tier: usize) -> Result<(), MvccError> {
        if self.tables[tier].borrow().is_none() {
            if let Some(t) = self.src.open_chunks(tier)? {
                *self.tables[tier].borrow_mut() = Some(t);
            }
        }
        Ok(())
    }
}

impl<'t> Chunks<&'t WriteTransaction> {
    fn with_table_mut<R>(
        &self,
        tier: usize,
        f: impl FnOnce(&mut Table<'t, Bytes, Bytes>) -> Result<R, MvccError>,
    ) -> Result<R, MvccError> {
        self.open(tier)?;
        let mut slot = self.tables[tier].borrow_mut();
        let t = slot
            .as_mut()
            .ok_or_else(|| MvccError::backend("a chunk table did not open"))?;
        f(t)
    }

    /// Removes chunks `from..to` of size `tier` of the row keyed `row_key`.
    fn remove(&self, row_key: &[u8], tier: usize, from: u32, to: u32) -> Result<(), MvccError> {
        if from >= to {
            return Ok(());
        }
        self.with_table_mut(tier, |t| {
            for i in from..to {
                t.remove(chunk_key(row_key, i)?.as_slice())?;
            }
            Ok(())
        })
    }
}

/// Reads the chunks of chunked rows (type-erased, so readers need not be generic over the
/// kind of transaction).
pub(crate) trait ReadChunks {
    /// Calls `f` with each of the `chunks` chunks of size `tier` of the row keyed
    /// `row_key`, in order.
    fn each_chunk(
        &self,
        row_key: &[u8],
        tier: usize,
        chunks: u32,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<(), MvccError>;
}

impl<S: OpenChunks> ReadChunks for Chunks<S> {
    fn each_chunk(
        &self,
        row_key: &[u8],
        tier: usize,
        chunks: u32,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<(), MvccError> {
        self.open(tier)?;
        let slot = self.tables[tier].borrow();
        let Some(t) = slot.as_ref() else {
            return Err(MvccError::corrupt(format!(
                "{} is stored in chunks, but the backend has no table of its {}-byte chunks",
                describe(row_key),
                CHUNK_TIER_BYTES[tier]
            )));
        };
        let lo = chunk_key(row_key, 0)?;
        let hi = chunk_key(row_key, chunks - 1)?;
        let mut next = 0u32;
        for entry in t.range(lo.as_slice()..=hi.as_slice())? {
            let (k, v) = entry?;
            if k.value().get(REV_BYTES_LEN..) != Some(next.to_be_bytes().as_slice()) {
                break;
            }
            f(v.value());
            next += 1;
        }
        if next != chunks {
            return Err(MvccError::corrupt(format!(
                "{}: chunk {next} of its {chunks} of {} bytes is missing",
                describe(row_key),
                CHUNK_TIER_BYTES[tier]
            )));
        }
        Ok(())
    }
}

/// Calls `f` with the pieces of the logical row stored as `stored` under `row_key`, in
/// order (their concatenation is the logical row).
pub(crate) fn each_piece(
    chunks: &dyn ReadChunks,
    row_key: &[u8],
    stored: &[u8],
    f: &mut dyn FnMut(&[u8]),
) -> Result<(), MvccError> {
    let Some(c) = parse_chunked(stored)? else {
        f(stored);
        return Ok(());
    };
    f(c.head);
    let mut total = c.head.len();
    // The largest chunks first (see the module doc).
    for tier in (0..TIERS).rev() {
        if c.chunks[tier] > 0 {
            chunks.each_chunk(row_key, tier, c.chunks[tier], &mut |p| {
                total += p.len();
                f(p);
            })?;
        }
    }
    if total != c.len {
        return Err(MvccError::corrupt(format!(
            "{}: {total} bytes in its head and chunks, {} expected",
            describe(row_key),
            c.len
        )));
    }
    Ok(())
}

/// The length of the logical row stored as `stored` (no chunk is read).
pub(crate) fn logical_len(stored: &[u8]) -> Result<usize, MvccError> {
    Ok(parse_chunked(stored)?.map_or(stored.len(), |c| c.len))
}

/// The logical row stored as `stored` under `row_key` (borrowed if inline).
pub(crate) fn logical_row<'v>(
    chunks: &dyn ReadChunks,
    row_key: &[u8],
    stored: &'v [u8],
) -> Result<Cow<'v, [u8]>, MvccError> {
    let Some(c) = parse_chunked(stored)? else {
        return Ok(Cow::Borrowed(stored));
    };
    let mut out = Vec::with_capacity(c.len);
    each_piece(chunks, row_key, stored, &mut |p| out.extend_from_slice(p))?;
    Ok(Cow::Owned(out))
}

/// Decodes the row stored as `stored` under `row_key`.
pub(crate) fn decode_row(
    chunks: &dyn ReadChunks,
    row_key: &[u8],
    stored: &[u8],
) -> Result<KeyValue, MvccError> {
    decode_kv(&logical_row(chunks, row_key, stored)?)
}

/// The `(create_revision, version)` of the live (non-tombstone) value at `rev`, without
/// decoding its value (nor reading its chunks, for an inline row): all a put needs of
/// the value it replaces.
pub(crate) fn get_create_and_version<T>(
    table: &T,
    chunks: &dyn ReadChunks,
    rev: Revision,
) -> Result<(i64, i64), MvccError>
where
    T: ReadableTable<Bytes, Bytes>,
{
    let k = rev.to_bytes(false);
    let Some(v) = table.get(k.as_slice())? else {
        return Err(missing(rev));
    };
    if parse_chunked(v.value())?.is_some() {
        // Large values only: the head may not hold these fields.
        let kv = decode_row(chunks, &k, v.value())?;
        return Ok((kv.create_revision, kv.version));
    }
    let f = encoded_fields(v.value())?;
    Ok((f.create_revision, f.version))
}

fn missing(rev: Revision) -> MvccError {
    MvccError::corrupt(format!(
        "revision {}.{} is indexed but missing from the backend",
        rev.main, rev.sub
    ))
}

/// Fetches and decodes the live (non-tombstone) value at `rev`.
pub(crate) fn get_kv<T>(
    table: &T,
    chunks: &dyn ReadChunks,
    rev: Revision,
) -> Result<KeyValue, MvccError>
where
    T: ReadableTable<Bytes, Bytes>,
{
    let k = rev.to_bytes(false);
    let Some(v) = table.get(k.as_slice())? else {
        return Err(missing(rev));
    };
    decode_row(chunks, &k, v.value())
}

/// How a logical row is split.
struct Plan {
    head: usize,
    chunks: ChunkCounts,
    key: Range<usize>,
    lease: i64,
}

/// How `logical` is stored, with chunks of the `tiers` smallest sizes only: `None`
/// inline, else its split.
fn plan(logical: &[u8], tiers: usize) -> Result<Option<Plan>, MvccError> {
    if logical.len() <= INLINE_MAX {
        return Ok(None);
    }
    let (key, lease) = encoded_key_and_lease(logical)?;
    // The head keeps the key field (readable without the chunks) and the remainder.
    let mut rest = logical.len() - key.end;
    let mut chunks = ChunkCounts::default();
    for tier in (0..tiers.min(TIERS)).rev() {
        let n = rest / CHUNK_TIER_BYTES[tier];
        rest -= n * CHUNK_TIER_BYTES[tier];
        chunks[tier] = u32::try_from(n)
            .map_err(|_| MvccError::backend(format!("a row of {} bytes", logical.len())))?;
    }
    if chunks.iter().all(|&n| n == 0) {
        return Ok(None);
    }
    Ok(Some(Plan {
        head: key.end + rest,
        chunks,
        key,
        lease,
    }))
}

/// Writes the logical row `logical` under `row_key` (replacing any row there, chunks
/// included), inline or chunked, in `table` (the open [`KV_TABLE`]) and `chunks` of the
/// same write transaction.
pub(crate) fn put_row(
    table: &mut Table<'_, Bytes, Bytes>,
    chunks: &Chunks<&WriteTransaction>,
    row_key: &[u8],
    logical: &[u8],
) -> Result<(), MvccError> {
    put_row_in_tiers(table, chunks, row_key, logical, TIERS)
}

/// [`put_row`] with chunks of the `tiers` smallest sizes only; with 1, the layout versions
/// before the larger chunks wrote, which this one must go on reading (tests write it).
pub(crate) fn put_row_in_tiers(
    table: &mut Table<'_, Bytes, Bytes>,
    chunks: &Chunks<&WriteTransaction>,
    row_key: &[u8],
    logical: &[u8],
    tiers: usize,
) -> Result<(), MvccError> {
    let p = put_chunks(chunks, row_key, logical, tiers)?;
    put_head(table, chunks, row_key, logical, p)
}

/// Writes the rows `(row_key, logical)` as [`put_row`] does, one after another, but all
/// their chunks first and then all their [`KV_TABLE`] values: the pages redb allocates
/// for the revision table's leaves are then adjacent in the file instead of one among
/// every ~66 chunk pages, so the index rebuild after a restore, which reads the
/// revision table alone, reads a few long runs instead of one scattered page per four
/// rows (4,188 random reads, about 1 s from the disk, for a 1 GiB restore written past
/// the page cache). The stored rows are the same as with [`put_row`], a repeated key
/// included (its last row wins, and the chunks of an earlier, longer one are removed).
pub(crate) fn put_rows<'r>(
    table: &mut Table<'_, Bytes, Bytes>,
    chunks: &Chunks<&WriteTransaction>,
    rows: impl Iterator<Item = (&'r [u8], &'r [u8])> + Clone,
) -> Result<(), MvccError> {
    let mut plans = Vec::new();
    for (row_key, logical) in rows.clone() {
        plans.push(put_chunks(chunks, row_key, logical, TIERS)?);
    }
    for ((row_key, logical), p) in rows.zip(plans) {
        put_head(table, chunks, row_key, logical, p)?;
    }
    Ok(())
}

/// The first half of [`put_row`]: checks `logical` and writes its chunks (of the `tiers`
/// smallest sizes), if it has any; returns its split.
fn put_chunks(
    chunks: &Chunks<&WriteTransaction>,
    row_key: &[u8],
    logical: &[u8],
    tiers: usize,
) -> Result<Option<Plan>, MvccError> {
    if logical.first() == Some(&MARKER) {
        return Err(MvccError::corrupt(format!(
            "{}: a stored (chunked) row given where a KeyValue encoding is expected",
            describe(row_key)
        )));
    }
    let plan = plan(logical, tiers)?;
    if let Some(p) = &plan {
        let mut rest = &logical[p.head..];
        for tier in (0..TIERS).rev() {
            let n = p.chunks[tier] as usize;
            if n == 0 {
                continue;
            }
            let (run, after) = rest.split_at(n * CHUNK_TIER_BYTES[tier]);
            chunks.with_table_mut(tier, |t| {
                for (i, chunk) in run.chunks_exact(CHUNK_TIER_BYTES[tier]).enumerate() {
                    t.insert(chunk_key(row_key, i as u32)?.as_slice(), chunk)?;
                }
                Ok(())
            })?;
            rest = after;
        }
    }
    Ok(plan)
}

/// The second half of [`put_row`]: writes the [`KV_TABLE`] value of `logical` split as
/// `plan`, and removes the chunks a replaced row had beyond the new one's.
fn put_head(
    table: &mut Table<'_, Bytes, Bytes>,
    chunks: &Chunks<&WriteTransaction>,
    row_key: &[u8],
    logical: &[u8],
    plan: Option<Plan>,
) -> Result<(), MvccError> {
    let (new, old) = match plan {
        None => {
            let old = table.insert(row_key, logical)?;
            (
                ChunkCounts::default(),
                old.map(|v| chunk_counts(v.value())).transpose()?,
            )
        }
        Some(p) => {
            let mut stored = Vec::with_capacity(p.head + 32);
            // Small chunks only: the layout older versions read too.
            let counted = if p.chunks[1..].iter().all(|&n| n == 0) {
                stored.extend_from_slice(&[MARKER, CHUNKED_V1]);
                1
            } else {
                stored.extend_from_slice(&[MARKER, CHUNKED_V2]);
                TIERS
            };
            put_varint(&mut stored, logical.len() as u64);
            for &n in &p.chunks[..counted] {
                put_varint(&mut stored, u64::from(n));
            }
            put_varint(&mut stored, p.lease as u64);
            put_varint(&mut stored, p.key.start as u64);
            put_varint(&mut stored, p.key.len() as u64);
            stored.extend_from_slice(&logical[..p.head]);
            let old = table.insert(row_key, stored.as_slice())?;
            (p.chunks, old.map(|v| chunk_counts(v.value())).transpose()?)
        }
    };
    // Rows are written once; a replaced row (a repair tool's) leaves no stale chunk.
    let old = old.unwrap_or_default();
    for tier in 0..TIERS {
        chunks.remove(row_key, tier, new[tier], old[tier])?;
    }
    Ok(())
}

/// Removes the row `row_key` and its chunks; returns whether it existed and how many
/// chunks it had.
pub(crate) fn remove_row(
    table: &mut Table<'_, Bytes, Bytes>,
    chunks: &Chunks<&WriteTransaction>,
    row_key: &[u8],
) -> Result<(bool, u32), MvccError> {
    let Some(counts) = table
        .remove(row_key)?
        .map(|v| chunk_counts(v.value()))
        .transpose()?
    else {
        return Ok((false, 0));
    };
    let mut all = 0u32;
    for (tier, &n) in counts.iter().enumerate() {
        chunks.remove(row_key, tier, 0, n)?;
        all = all.saturating_add(n);
    }
    Ok((true, all))
}

/// Reads the logical row at `row_key` in a write transaction (for tools repairing or
/// damaging a stopped member's backend); `None` if there is none.
pub fn read_row_in(txn: &WriteTransaction, row_key: &[u8]) -> Result<Option<Vec<u8>>, MvccError> {
    let table = txn.open_table(KV_TABLE)?;
    let Some(v) = table.get(row_key)? else {
        return Ok(None);
    };
    let chunks = Chunks::new(txn);
    Ok(Some(logical_row(&chunks, row_key, v.value())?.into_owned()))
}

/// Writes the logical row `logical` at `row_key` in a write transaction, in the layout this
/// version writes (for tools; see [`read_row_in`]).
pub fn write_row_in(
    txn: &WriteTransaction,
    row_key: &[u8],
    logical: &[u8],
) -> Result<(), MvccError> {
    let mut table = txn.open_table(KV_TABLE)?;
    put_row(&mut table, &Chunks::new(txn), row_key, logical)
}
