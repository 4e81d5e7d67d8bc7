//! The file a restore builds its backend in: redb's pages written to the disk without the
//! page cache.
//!
//! Why: a restore writes a whole backend (a gigabyte or more) once. Through the page cache
//! every page is copied into a fresh page-cache page and written back later; on this kind
//! of VM touching a gigabyte of fresh memory costs 1 to 4 s of system CPU (the host faults
//! every page in), and that copy and its writeback were half of a restore's CPU time
//! (perf of a 1 GiB restore: `pwrite` 1.7 s of 5.9 s CPU, its `fdatasync` 0.3 s). Here
//! the pages redb writes are gathered in an arena, and a full arena is written with
//! `O_DIRECT`, sorted into runs of consecutive pages, by a thread of its own while redb
//! goes on into the other arena (two, allocated and touched once, then reused): the
//! inserting thread neither copies into the page cache nor waits for the disk. A sync,
//! a shorter length or closing writes everything first. Pages in neither arena are read
//! back from the disk (aligned, also direct); redb keeps the pages it works on in its own
//! cache, so that is rare (a 1 GiB restore read 8 pages back).
//!
//! Where `O_DIRECT` is refused (at open, or by the first write: tmpfs on some kernels,
//! other systems) the file is an ordinary one and every write goes straight to it, as
//! redb's own file backend does. The file's content is the same either way, and durable
//! after [`redb::StorageBackend::sync_data`] either way.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use oxcd_fs::{AlignedBuf, DIRECT_ALIGN};
use parking_lot::Mutex;

/// The unit pages are gathered in: redb's pages are multiples of it at aligned offsets.
const PAGE: usize = DIRECT_ALIGN;
/// Bytes of pages gathered before they are written: large enough that each write-out is a
/// few long writes, small enough to cost little memory (two arenas, touched once, then
/// reused).
#[cfg(not(test))]
const ARENA_BYTES: usize = 64 << 20;
/// Small in unit tests, so they fill and write the arenas many times.
#[cfg(test)]
const ARENA_BYTES: usize = 16 * PAGE;
/// Largest single read from the disk of pages in neither arena.
const BOUNCE_BYTES: usize = 1 << 20;
/// Largest single write: a run of consecutive pages is written in steps of this.
#[cfg(not(test))]
const STAGING_BYTES: usize = 4 << 20;
#[cfg(test)]
const STAGING_BYTES: usize = 4 * PAGE;
/// Longest gap, in pages, one write spans between gathered pages (see [`write_out`]).
const MAX_GAP: u64 = 64;

/// What a restore's file did, for the restore's log line.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RestoreFileStats {
    /// Whether the pages went to the disk directly (to the end).
    pub(crate) direct: bool,
    /// Times an arena was written out.
    pub(crate) flushes: u64,
    /// Bytes written, and the writes they took.
    pub(crate) written: u64,
    pub(crate) writes: u64,
    /// Reads of pages that were in neither arena, and their bytes.
    pub(crate) disk_reads: u64,
    pub(crate) disk_read_bytes: u64,
}

/// A redb storage backend for a new file, written with `O_DIRECT` (see the module doc).
/// Clones share the file: redb takes its backend by value, and the restore keeps a clone
/// to read the statistics.
#[derive(Clone)]
pub(crate) struct RestoreFile {
    state: Arc<Mutex<State>>,
}

/// Pages gathered to be written, in slots of [`PAGE`] bytes.
struct Gathered {
    arena: AlignedBuf,
    /// Page number (offset / PAGE) -> slot.
    slot_of: HashMap<u64, usize>,
    /// Slot -> page number.
    page_of: Vec<u64>,
}

impl Gathered {
    fn new() -> Gathered {
        let pages = ARENA_BYTES / PAGE;
        Gathered {
            arena: AlignedBuf::new(pages * PAGE),
            slot_of: HashMap::with_capacity(pages),
            page_of: Vec::with_capacity(pages),
        }
    }

    fn is_full(&self) -> bool {
        self.page_of.len() * PAGE == self.arena.len()
    }

    fn page(&self, page: u64) -> Option<&[u8]> {
        let slot = *self.slot_of.get(&page)?;
        Some(&self.arena[slot * PAGE..(slot + 1) * PAGE])
    }

    fn clear(&mut self) {
        self.slot_of.clear();
        self.page_of.clear();
    }
}

/// What a write-out thread gives back.
struct WriteOut {
    staging: AlignedBuf,
    /// Whether the file still takes direct writes.
    direct: bool,
    written: u64,
    writes: u64,
}

/// An arena being written out, readable meanwhile.
struct InFlight {
    pages: Arc<Gathered>,
    thread: JoinHandle<io::Result<WriteOut>>,
}

struct State {
    file: File,
    /// Whether the file is open with `O_DIRECT` (then writes are gathered).
    direct: bool,
    /// The file's length as redb sees it.
    len: u64,
    /// The arena redb's writes go into.
    current: Gathered,
    /// The other arena, once it has been written out.
    spare: Option<Gathered>,
    /// The other arena while it is being written out.
    in_flight: Option<InFlight>,
    /// The write-out's staging buffer, while no write-out holds it.
    staging: Option<AlignedBuf>,
    /// Aligned buffer for direct reads of pages in neither arena.
    bounce: AlignedBuf,
    /// Pages some finished write-out put on the disk (the others hold nothing redb needs).
    on_disk: Arc<PageSet>,
    stats: RestoreFileStats,
}

/// A set of page numbers, as one bit each.
#[derive(Default, Clone)]
struct PageSet(Vec<u64>);

impl PageSet {
    fn insert(&mut self, page: u64) {
        let (word, bit) = ((page / 64) as usize, page % 64);
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << bit;
    }

    fn contains(&self, page: u64) -> bool {
        let (word, bit) = ((page / 64) as usize, page % 64);
        self.0.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }
}

impl std::fmt::Debug for RestoreFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.lock();
        f.debug_struct("RestoreFile")
            .field("direct", &st.direct)
            .field("len", &st.len)
            .field("gathered_pages", &st.current.page_of.len())
            .finish()
    }
}

impl RestoreFile {
    /// Creates the file at `path`, which must not exist.
    pub(crate) fn create(path: &Path) -> io::Result<RestoreFile> {
        let (file, direct) = oxcd_fs::create_direct(path)?;
        Ok(Self::with_file(file, direct))
    }

    /// Creates the file at `path` as an ordinary file (no `O_DIRECT`): the fallback's path,
    /// for tests.
    #[cfg(test)]
    pub(crate) fn create_buffered(path: &Path) -> io::Result<RestoreFile> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(Self::with_file(file, false))
    }

    fn with_file(file: File, direct: bool) -> RestoreFile {
        let (current, staging, bounce) = if direct {
            (
                Gathered::new(),
                Some(AlignedBuf::new(STAGING_BYTES)),
                AlignedBuf::new(BOUNCE_BYTES),
            )
        } else {
            let none = Gathered {
                arena: AlignedBuf::new(0),
                slot_of: HashMap::new(),
                page_of: Vec::new(),
            };
            (none, None, AlignedBuf::new(0))
        };
        RestoreFile {
            state: Arc::new(Mutex::new(State {
                file,
                direct,
                len: 0,
                current,
                spare: None,
                in_flight: None,
                staging,
                bounce,
                on_disk: Arc::default(),
                stats: RestoreFileStats {
                    direct,
                    ..RestoreFileStats::default()
                },
            })),
        }
    }

    /// What the file did so far.
    pub(crate) fn stats(&self) -> RestoreFileStats {
        self.state.lock().stats
    }
}

impl State {
    /// Waits for the write-out in flight, if any, and takes its arena back as the spare.
    fn wait(&mut self) -> io::Result<()> {
        let Some(f) = self.in_flight.take() else {
            return Ok(());
        };
        let done = f
            .thread
            .join()
            .map_err(|_| io::Error::other("the restore's write-out thread panicked"))??;
        self.staging = Some(done.staging);
        self.direct = self.direct && done.direct;
        self.stats.direct = self.direct;
        self.stats.written += done.written;
        self.stats.writes += done.writes;
        self.stats.flushes += 1;
        let mut pages = Arc::try_unwrap(f.pages)
            .map_err(|_| io::Error::other("the restore's written arena is still shared"))?;
        let on_disk = Arc::make_mut(&mut self.on_disk);
        for &page in &pages.page_of {
            on_disk.insert(page);
        }
        pages.clear();
        self.spare = Some(pages);
        // A last page that ran past the length redb set wrote past the end: cut it back.
        if self.file.metadata()?.len() > self.len {
            self.file.set_len(self.len)?;
        }
        Ok(())
    }

    /// Hands the current arena to a write-out thread (after the previous one is done) and
    /// goes on in the other.
    fn start_flush(&mut self) -> io::Result<()> {
        if self.current.page_of.is_empty() {
            return Ok(());
        }
        self.wait()?;
        let next = self.spare.take().unwrap_or_else(Gathered::new);
        let pages = Arc::new(std::mem::replace(&mut self.current, next));
        let staging = self
            .staging
            .take()
            .ok_or_else(|| io::Error::other("the restore's staging buffer is lost"))?;
        let file = self.file.try_clone()?;
        let (theirs, direct) = (Arc::clone(&pages), self.direct);
        let on_disk = Arc::clone(&self.on_disk);
        let thread = std::thread::Builder::new()
            .name("oxcd-restore-write".into())
            .spawn(move || write_out(&file, &theirs, &on_disk, staging, direct))?;
        self.in_flight = Some(InFlight { pages, thread });
        Ok(())
    }

    /// Writes everything gathered and waits for it.
    fn flush(&mut self) -> io::Result<()> {
        self.start_flush()?;
        self.wait()
    }

    /// The bytes of page `page` if an arena holds them (the current one is newer).
    fn gathered(&self, page: u64) -> Option<&[u8]> {
        self.current
            .page(page)
            .or_else(|| self.in_flight.as_ref().and_then(|f| f.pages.page(page)))
    }

    /// Reads the whole pages from `first` on into `out` (a multiple of PAGE) from the file
    /// (direct, so through the aligned bounce buffer); bytes past its end read as zeros.
    fn read_pages(&mut self, first: u64, out: &mut [u8]) -> io::Result<()> {
        let mut done = 0;
        while done < out.len() {
            let n = (out.len() - done).min(self.bounce.len());
            let offset = first * PAGE as u64 + done as u64;
            let buf = &mut self.bounce[..n];
            let got = read_full_at(&self.file, buf, offset)?;
            buf[got..].fill(0);
            out[done..done + n].copy_from_slice(buf);
            self.stats.disk_reads += 1;
            self.stats.disk_read_bytes += n as u64;
            done += n;
        }
        Ok(())
    }

    /// The slot of the current arena for page `page`, taking a new one (filled with the
    /// page's bytes so far when the write will not cover it whole) if it has none.
    fn slot_for(&mut self, page: u64, whole: bool) -> io::Result<usize> {
        if let Some(&slot) = self.current.slot_of.get(&page) {
            return Ok(slot);
        }
        if self.current.is_full() {
            self.start_flush()?;
        }
        let mut old = [0u8; PAGE];
        if !whole {
            match self.gathered(page) {
                Some(bytes) => old.copy_from_slice(bytes),
                None => self.read_pages(page, &mut old)?,
            }
        }
        let slot = self.current.page_of.len();
        if !whole {
            self.current.arena[slot * PAGE..(slot + 1) * PAGE].copy_from_slice(&old);
        }
        self.current.slot_of.insert(page, slot);
        self.current.page_of.push(page);
        Ok(slot)
    }
}

/// Writes the pages of `pages` to `file`, sorted by offset: redb hands pages over in the
/// order its cache evicts them, not in file order, so each run of consecutive pages is
/// copied into `staging` and written at once (up to [`STAGING_BYTES`]) instead of one
/// write per page, each a round trip to the disk.
///
/// A run also spans a gap of up to [`MAX_GAP`] pages that no finished write-out touched:
/// those pages hold nothing redb needs yet (any of them redb uses is written by a later
/// write-out, which starts after this one ends), so zeros go there and two writes become
/// one. redb's allocator scatters an arena's pages over the file (a 64 MiB arena was some
/// 400 runs); spanning the gaps cut a 1 GiB restore's writes from 6,467 to 3,793.
fn write_out(
    file: &File,
    pages: &Gathered,
    on_disk: &PageSet,
    mut staging: AlignedBuf,
    mut direct: bool,
) -> io::Result<WriteOut> {
    let mut order: Vec<(u64, usize)> = pages
        .page_of
        .iter()
        .enumerate()
        .map(|(slot, &page)| (page, slot))
        .collect();
    order.sort_unstable();
    let per_write = (staging.len() / PAGE) as u64;
    let (mut written, mut writes) = (0u64, 0u64);
    let mut i = 0;
    while i < order.len() {
        let first_page = order[i].0;
        // Pages the write spans so far; the gathered ones are copied, the gaps zeroed.
        let mut span = 0u64;
        while let Some(&(page, slot)) = order.get(i) {
            let gap = page - (first_page + span);
            let spans_gap = gap == 0
                || (gap <= MAX_GAP && !(first_page + span..page).any(|p| on_disk.contains(p)));
            if span > 0 && (!spans_gap || span + gap >= per_write) {
                break;
            }
            let at = ((page - first_page) * PAGE as u64) as usize;
            staging[(span * PAGE as u64) as usize..at].fill(0);
            staging[at..at + PAGE].copy_from_slice(&pages.arena[slot * PAGE..(slot + 1) * PAGE]);
            span = page - first_page + 1;
            i += 1;
        }
        let len = (span * PAGE as u64) as usize;
        write_at(file, &mut direct, &staging[..len], first_page * PAGE as u64)?;
        written += len as u64;
        writes += 1;
    }
    Ok(WriteOut {
        staging,
        direct,
        written,
        writes,
    })
}

/// Writes `bytes` at `offset`; if the file took `O_DIRECT` at open but refuses the write,
/// turns the flag off and writes through the page cache from then on.
fn write_at(file: &File, direct: &mut bool, bytes: &[u8], offset: u64) -> io::Result<()> {
    match file.write_all_at(bytes, offset) {
        Err(e) if *direct && oxcd_fs::is_einval(&e) => {
            oxcd_fs::clear_direct(file)?;
            *direct = false;
            file.write_all_at(bytes, offset)
        }
        other => other,
    }
}

/// Reads into `buf` at `offset` until it is full or the file ends; returns the bytes read.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl redb::StorageBackend for RestoreFile {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.state.lock().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let mut st = self.state.lock();
        let end = offset
            .checked_add(out.len() as u64)
            .filter(|&end| end <= st.len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        if !st.direct && st.current.page_of.is_empty() && st.in_flight.is_none() {
            // Nothing is gathered once writes go through the page cache.
            return st.file.read_exact_at(out, offset);
        }
        let mut pos = offset;
        while pos < end {
            let page = pos / PAGE as u64;
            let in_page = (pos % PAGE as u64) as usize;
            let done = (pos - offset) as usize;
            if let Some(bytes) = st.gathered(page) {
                let n = (PAGE - in_page).min((end - pos) as usize);
                out[done..done + n].copy_from_slice(&bytes[in_page..in_page + n]);
                pos += n as u64;
                continue;
            }
            // A run of pages in neither arena: one read from the disk.
            let mut last = page;
            while (last + 1) * (PAGE as u64) < end && st.gathered(last + 1).is_none() {
                last += 1;
            }
            let run_end = ((last + 1) * PAGE as u64).min(end);
            let mut pages = vec![0u8; ((last - page + 1) as usize) * PAGE];
            st.read_pages(page, &mut pages)?;
            let n = (run_end - pos) as usize;
            out[done..done + n].copy_from_slice(&pages[in_page..in_page + n]);
            pos = run_end;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut st = self.state.lock();
        // Gathered pages past a shorter end must not be written back after the cut, and a
        // page the new end cuts must be cut on the disk too: write everything first. (A
        // longer end leaves every gathered page inside the file.)
        if len < st.len {
            st.flush()?;
        }
        st.file.set_len(len)?;
        st.len = len;
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        let mut st = self.state.lock();
        st.flush()?;
        st.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut st = self.state.lock();
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "write past 2^64"))?;
        if !st.direct {
            // Through the page cache: whatever is still gathered goes first (nothing once
            // it has been written out after the switch).
            st.flush()?;
            st.file.write_all_at(data, offset)?;
            st.stats.written += data.len() as u64;
            st.stats.writes += 1;
        } else {
            let mut pos = offset;
            while pos < end {
                let page = pos / PAGE as u64;
                let in_page = (pos % PAGE as u64) as usize;
                let n = (PAGE - in_page).min((end - pos) as usize);
                let slot = st.slot_for(page, n == PAGE)?;
                let from = (pos - offset) as usize;
                let at = slot * PAGE + in_page;
                st.current.arena[at..at + n].copy_from_slice(&data[from..from + n]);
                pos += n as u64;
            }
        }
        if end > st.len {
            st.len = end;
        }
        Ok(())
    }

    fn close(&self) -> Result<(), io::Error> {
        // redb wrote these pages; the file holds them from here on (durable only after a
        // sync_data, as with any file).
        self.state.lock().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableDatabase, ReadableTable, StorageBackend, TableDefinition};

    const T: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("t");

    /// A small deterministic generator (no dependency for a test's noise).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Random writes, reads, lengths and syncs, aligned or not, against a byte vector: the
    /// backend must read back what was written (from the arenas, the one in flight or the
    /// disk) and leave exactly the model's bytes in the file.
    fn against_model(file: RestoreFile, path: &Path) {
        let mut model: Vec<u8> = Vec::new();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let max = 64 * PAGE as u64;
        for step in 0..3_000u32 {
            match rng.below(10) {
                0 => {
                    let len = rng.below(max);
                    file.set_len(len).unwrap();
                    model.resize(len as usize, 0);
                }
                1 if step % 7 == 0 => file.sync_data().unwrap(),
                2..=4 if !model.is_empty() => {
                    let off = rng.below(model.len() as u64);
                    let n = rng.below((model.len() as u64 - off).min(5 * PAGE as u64)) + 1;
                    let n = n.min(model.len() as u64 - off) as usize;
                    let mut out = vec![0u8; n];
                    file.read(off, &mut out).unwrap();
                    assert_eq!(out, model[off as usize..off as usize + n], "step {step}");
                }
                _ => {
                    // Mostly whole pages at page offsets (redb's writes), sometimes not.
                    let (off, n) = if rng.below(4) == 0 {
                        (rng.below(max - 1), rng.below(3 * PAGE as u64) + 1)
                    } else {
                        (
                            rng.below(max / PAGE as u64 - 4) * PAGE as u64,
                            PAGE as u64 * (1 + rng.below(3)),
                        )
                    };
                    let (off, n) = (off as usize, n as usize);
                    let byte = (step % 251) as u8 + 1;
                    let data = vec![byte; n];
                    if off + n > model.len() {
                        file.set_len((off + n) as u64).unwrap();
                        model.resize(off + n, 0);
                    }
                    file.write(off as u64, &data).unwrap();
                    model[off..off + n].copy_from_slice(&data);
                }
            }
            assert_eq!(file.len().unwrap(), model.len() as u64);
        }
        // A read past the end is refused, not answered with zeros.
        let mut out = [0u8; 1];
        assert!(file.read(model.len() as u64, &mut out).is_err());
        file.sync_data().unwrap();
        file.close().unwrap();
        assert_eq!(std::fs::read(path).unwrap(), model);
    }

    #[test]
    /// A write spans a gap of pages no write-out touched yet (zeros, overwritten later),
    /// never one holding pages already written out.
    fn writes_span_only_gaps_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let file = RestoreFile::create(&path).unwrap();
        if !file.stats().direct {
            return; // nothing is gathered without O_DIRECT
        }
        let page = |b: u8| vec![b; PAGE];
        let at = |p: u64| p * PAGE as u64;
        file.set_len(at(8)).unwrap();
        file.write(at(1), &page(1)).unwrap();
        file.sync_data().unwrap();
        // Page 1 is on the disk: pages 0 and 2 go in two writes around it.
        file.write(at(0), &page(10)).unwrap();
        file.write(at(2), &page(12)).unwrap();
        let before = file.stats().writes;
        file.sync_data().unwrap();
        assert_eq!(file.stats().writes - before, 2);
        // Page 5 never was: pages 4 and 6 go in one write, page 5 zeroed until written.
        file.write(at(4), &page(14)).unwrap();
        file.write(at(6), &page(16)).unwrap();
        let before = file.stats().writes;
        file.sync_data().unwrap();
        assert_eq!(file.stats().writes - before, 1);
        let mut got = vec![0u8; PAGE];
        file.read(at(5), &mut got).unwrap();
        assert_eq!(got, page(0));
        file.write(at(5), &page(15)).unwrap();
        file.sync_data().unwrap();
        file.close().unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        for (p, want) in [
            (0, 10),
            (1, 1),
            (2, 12),
            (3, 0),
            (4, 14),
            (5, 15),
            (6, 16),
            (7, 0),
        ] {
            let bytes = &on_disk[p * PAGE..(p + 1) * PAGE];
            assert!(bytes.iter().all(|&b| b == want), "page {p}");
        }
    }

    #[test]
    fn direct_file_holds_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let file = RestoreFile::create(&path).unwrap();
        against_model(file.clone(), &path);
        let stats = file.stats();
        // Many write-outs (the arenas are 16 pages in tests), each in few writes.
        assert!(stats.flushes > 10, "{stats:?}");
        assert!(stats.written > 0, "{stats:?}");
    }

    #[test]
    fn buffered_fallback_holds_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let file = RestoreFile::create_buffered(&path).unwrap();
        against_model(file.clone(), &path);
        assert!(!file.stats().direct);
    }

    /// tmpfs refuses `O_DIRECT` on some kernels and takes it on others: either way the
    /// file must come out the same.
    #[test]
    fn on_tmpfs_direct_or_not() {
        let shm = Path::new("/dev/shm");
        if !shm.is_dir() {
            return;
        }
        let dir = tempfile::tempdir_in(shm).unwrap();
        let path = dir.path().join("db");
        let file = RestoreFile::create(&path).unwrap();
        against_model(file, &path);
    }

    #[test]
    fn create_refuses_an_existing_file_and_a_missing_dir() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        std::fs::write(&path, b"keep").unwrap();
        assert!(RestoreFile::create(&path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"keep");
        assert!(RestoreFile::create(&dir.path().join("no/such/db")).is_err());
    }

    /// A redb database built on the backend, over many write-outs, commits of both
    /// durabilities, reads back in the middle, is the same database when redb opens
    /// the file as its own.
    #[test]
    fn redb_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        for direct in [true, false] {
            let path = dir.path().join(format!("db-{direct}"));
            let file = if direct {
                RestoreFile::create(&path).unwrap()
            } else {
                RestoreFile::create_buffered(&path).unwrap()
            };
            let db = redb::Builder::new()
                .set_cache_size(64 << 10)
                .create_with_backend(file)
                .unwrap();
            let value = |i: u32| vec![(i % 256) as u8; 500 + (i as usize * 37) % 3000];
            for round in 0..20u32 {
                let mut txn = db.begin_write().unwrap();
                {
                    let mut t = txn.open_table(T).unwrap();
                    for i in round * 200..(round + 1) * 200 {
                        t.insert(i.to_be_bytes().as_slice(), value(i).as_slice())
                            .unwrap();
                    }
                    // Reads of earlier rounds' rows, some of them written out already.
                    let probe = (round * 97) % ((round + 1) * 200);
                    let got = t.get(probe.to_be_bytes().as_slice()).unwrap().unwrap();
                    assert_eq!(got.value(), value(probe).as_slice());
                }
                let durability = if round % 5 == 4 {
                    redb::Durability::Immediate
                } else {
                    redb::Durability::None
                };
                txn.set_durability(durability).unwrap();
                txn.commit().unwrap();
            }
            drop(db);
            let db = redb::Database::open(&path).unwrap();
            let txn = db.begin_read().unwrap();
            let t = txn.open_table(T).unwrap();
            let mut n = 0;
            for (i, entry) in t.iter().unwrap().enumerate() {
                n += 1;
                let (k, v) = entry.unwrap();
                assert_eq!(k.value(), (i as u32).to_be_bytes().as_slice());
                assert_eq!(v.value(), value(i as u32).as_slice());
            }
            assert_eq!(n, 4000);
        }
    }
}
