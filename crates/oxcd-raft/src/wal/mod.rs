//! Write-ahead log for raft entries and state.
//!
//! Layout: a directory of segment files `{seq:016x}-{first_index:016x}.wal`
//! (see `segment.rs`), each a sequence of crc-chained records (see
//! `record.rs`). A segment starts with a `CrcSeed` record carrying the
//! previous segment's last crc, followed by the current snapshot marker,
//! membership and hard state, so any suffix of segments is self-describing
//! and old segments can be deleted once a snapshot marker covers them.
//!
//! Durability: [`Wal::save`] writes all records of a batch with one
//! `write` and one `fdatasync` (group commit); creating or removing a
//! segment is followed by an fsync of the directory. After any failed write
//! or fsync the WAL is poisoned: retrying fsync after an error can report
//! success while the data is gone, so the only safe move is to restart and
//! recover from disk.
//!
//! Recovery rules are documented in `reader.rs`.

mod error;
mod reader;
mod record;
mod segment;
#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState};

pub use error::WalError;
pub use reader::WalContents;
use record::RecordType;
use segment::SegmentId;

/// Default segment size at which a new segment is started.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 * 1024 * 1024;

/// Data fdatasyncs after which a busy WAL starts preparing zero-written segments (a
/// member that writes rarely gains nothing from cheaper fsyncs, and each preparation
/// writes a whole segment).
const BUSY_AFTER_SYNCS: u64 = 256;
/// How much of a zero-written segment is read into the page cache ahead of the appends
/// at a time (see [`Wal::read_ahead`]).
const READ_AHEAD: u64 = 1024 * 1024;

/// Tunables for a [`Wal`].
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// Roll to a new segment once the current one reaches this many bytes.
    pub segment_size: u64,
    /// Once the WAL is busy, prepare the next segment written with zeros on a background
    /// thread and move onto it as soon as it is ready (see `segment::prepare_zeroed`): an
    /// fdatasync then writes the data alone. Never on a tmpfs.
    pub zeroed_segments: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_size: DEFAULT_SEGMENT_SIZE,
            zeroed_segments: true,
        }
    }
}

/// An open write-ahead log. Single writer; not `Sync`-shared.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    segments: Vec<SegmentId>,
    /// Open handle on the last segment (append position = `seg_len`).
    file: File,
    seg_len: u64,
    last_crc: u32,
    /// Logical last entry index (after overwrites).
    last_index: u64,
    /// What every new segment's header repeats: hard state, membership and
    /// snapshot marker (`entries` stays empty).
    state: WalContents,
    poisoned: bool,
    /// Written data not yet fdatasynced (a commit-only hard state).
    unsynced: bool,
    /// fdatasyncs of appended data so far (for tests of when the WAL syncs).
    data_syncs: u64,
    /// The next segment being written with zeros (`segment::PREPARED`), if any.
    preparing: Option<std::thread::JoinHandle<std::io::Result<File>>>,
    /// The next segment, written with zeros and synced, waiting for the next roll.
    prepared: Option<File>,
    /// Whether the current segment was written with zeros before use.
    zeroed: bool,
    /// How far into a zero-written segment the page cache was asked to read ahead (see
    /// [`Wal::read_ahead`]).
    read_ahead_to: u64,
}

impl Wal {
    /// Opens (or creates) the WAL in `dir` with default options and returns
    /// its recovered contents. See [`Wal::open_with`].
    pub fn open(dir: impl AsRef<Path>) -> Result<(Wal, WalContents), WalError> {
        Self::open_with(dir, WalOptions::default())
    }

    /// Opens (or creates) the WAL in `dir`: creates a missing directory,
    /// reads and verifies all segments, repairs a torn tail, and positions
    /// the writer at the end of the last segment.
    pub fn open_with(
        dir: impl AsRef<Path>,
        opts: WalOptions,
    ) -> Result<(Wal, WalContents), WalError> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.exists() {
            std::fs::create_dir_all(&dir).map_err(|e| WalError::io(&dir, e))?;
            segment::sync_dir(&dir)?;
            if let Some(parent) = dir.parent() {
                segment::sync_dir(parent)?;
            }
        }
        let segments = segment::list(&dir)?;
        let rec = reader::recover(&dir, segments)?;
        let contents = rec.contents;
        let mut segments = rec.segments;
        let (file, seg_len, last_crc) = match segments.last() {
            Some(last) => {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&last.path)
                    .map_err(|e| WalError::io(&last.path, e))?;
                segment::preallocate(&f, &last.path, opts.segment_size)?;
                (f, rec.tail_len, rec.last_crc)
            }
            None => {
                // Fresh WAL (or its only segment was empty): start sequence 0.
                let (id, f, len, crc) = create_segment(
                    &dir,
                    opts.segment_size,
                    0,
                    rec.last_index + 1,
                    rec.last_crc,
                    &contents,
                )?;
                segments.push(id);
                (f, len, crc)
            }
        };
        let wal = Wal {
            dir,
            opts,
            segments,
            file,
            seg_len,
            last_crc,
            last_index: rec.last_index,
            state: WalContents {
                hard_state: contents.hard_state.clone(),
                snapshot: contents.snapshot.clone(),
                conf_state: contents.conf_state.clone(),
                conf_state_index: contents.conf_state_index,
                snapshot_data: contents.snapshot_data.clone(),
                entries: Vec::new(),
            },
            poisoned: false,
            unsynced: false,
            data_syncs: 0,
            preparing: None,
            prepared: None,
            zeroed: false,
            read_ahead_to: 0,
        };
        Ok((wal, contents))
    }

    /// Directory of this WAL.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Logical index of the last entry written (or the snapshot index).
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// Appends `entries` (each overriding any logically-later entry with an
    /// index `>=` its own) and optionally a hard state, then fdatasyncs once.
    /// Does nothing (no fsync) if there is nothing to write.
    ///
    /// A hard state that differs from the last one only in its commit index is
    /// written but not synced (raft's `MustSync`, as etcd's WAL does): losing it
    /// in a crash is harmless, since the commit index is re-learnt from the
    /// leader and raised from the backend's applied index at start-up, and
    /// syncing it would double the fsyncs of every replicated write. The next
    /// synced write, or [`Wal::sync`], makes it durable.
    pub fn save(&mut self, entries: &[Entry], hs: Option<&HardState>) -> Result<(), WalError> {
        self.check()?;
        if entries.is_empty() && hs.is_none() {
            return Ok(());
        }
        if !self.zeroed && self.take_ready_preparation() {
            // Onto the zero-written segment at once, rather than at the next roll.
            self.roll()?;
            self.unsynced = false;
        }
        let last = &self.state.hard_state;
        let must_sync =
            !entries.is_empty() || hs.is_some_and(|h| h.term != last.term || h.vote != last.vote);
        let mut buf = Vec::new();
        for e in entries {
            let payload = e.write_to_bytes().map_err(encode_err)?;
            self.push_record(&mut buf, RecordType::Entry, &payload)?;
            self.last_index = e.index;
            if self.seg_len + buf.len() as u64 >= self.opts.segment_size {
                self.write(&mut buf, true)?;
                self.roll()?;
            }
        }
        if let Some(hs) = hs {
            let payload = hs.write_to_bytes().map_err(encode_err)?;
            self.push_record(&mut buf, RecordType::HardState, &payload)?;
            self.state.hard_state = hs.clone();
        }
        self.write(&mut buf, must_sync)
    }

    /// How many fdatasyncs of appended data this handle has made.
    #[cfg(test)]
    pub(crate) fn data_syncs(&self) -> u64 {
        self.data_syncs
    }

    /// Makes everything written so far durable (a commit-only hard state that
    /// [`Wal::save`] left unsynced). Does nothing when nothing is unsynced.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.check()?;
        if !self.unsynced {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let synced = self.file.sync_data();
        crate::fsync_observer::observe(started.elapsed());
        self.data_syncs += 1;
        if let Err(e) = synced {
            self.poisoned = true;
            return Err(WalError::io(&self.current_path(), e));
        }
        self.unsynced = false;
        Ok(())
    }

    /// Records the initial membership durably (in effect from index 0 on).
    pub fn save_conf_state(&mut self, cs: &ConfState) -> Result<(), WalError> {
        self.check()?;
        let payload = cs.write_to_bytes().map_err(encode_err)?;
        let mut buf = Vec::new();
        self.push_record(&mut buf, RecordType::ConfState, &payload)?;
        self.write_and_sync(&mut buf)?;
        self.state.offer_conf_state(0, cs);
        Ok(())
    }

    /// Records durably that applying the entry at `index` changed the
    /// membership to `cs`.
    pub fn save_conf_state_at(&mut self, index: u64, cs: &ConfState) -> Result<(), WalError> {
        self.check()?;
        let payload = cs.write_to_bytes().map_err(encode_err)?;
        let mut buf = Vec::new();
        self.push_record(
            &mut buf,
            RecordType::ConfStateAt,
            &reader::encode_indexed(index, &payload),
        )?;
        self.write_and_sync(&mut buf)?;
        self.state.offer_conf_state(index, cs);
        Ok(())
    }

    /// Durably records that the state machine holds everything up to
    /// `index` (at `term`), so the log may begin after it. The snapshot
    /// data lives in the backend, not here.
    pub fn save_snapshot_marker(
        &mut self,
        index: u64,
        term: u64,
        cs: &ConfState,
    ) -> Result<(), WalError> {
        self.check()?;
        let payload = reader::encode_snapshot(index, term, cs).map_err(encode_err)?;
        let mut buf = Vec::new();
        self.push_record(&mut buf, RecordType::Snapshot, &payload)?;
        self.write_and_sync(&mut buf)?;
        self.last_index = self.last_index.max(index);
        self.set_snapshot(index, term, cs, None);
        Ok(())
    }

    /// Durably records a snapshot received from the leader, which replaces
    /// the whole log: entries after `index` are discarded too (raft keeps none
    /// of a log that did not match the snapshot), and `data` (the
    /// application's description of the snapshot) is kept with the marker
    /// until a later marker supersedes it, so a restart before the
    /// application took the snapshot in can hand it over again
    /// ([`WalContents::snapshot_data`]). One write, one fdatasync.
    pub fn install_snapshot(
        &mut self,
        index: u64,
        term: u64,
        cs: &ConfState,
        data: &[u8],
    ) -> Result<(), WalError> {
        self.check()?;
        let marker = reader::encode_snapshot(index, term, cs).map_err(encode_err)?;
        let mut buf = Vec::new();
        let from = index.saturating_add(1).to_le_bytes();
        self.push_record(&mut buf, RecordType::Truncate, &from)?;
        self.push_record(&mut buf, RecordType::Snapshot, &marker)?;
        self.push_record(
            &mut buf,
            RecordType::SnapshotData,
            &reader::encode_indexed(index, data),
        )?;
        self.write_and_sync(&mut buf)?;
        self.last_index = index;
        self.set_snapshot(index, term, cs, Some(data.to_vec()));
        Ok(())
    }

    fn set_snapshot(&mut self, index: u64, term: u64, cs: &ConfState, data: Option<Vec<u8>>) {
        self.state.offer_conf_state(index, cs);
        self.state.snapshot = Some((index, term, cs.clone()));
        self.state.snapshot_data = data;
    }

    /// Deletes whole segments whose entries are all `<= index`. Never
    /// releases past the latest snapshot marker (the log must still begin
    /// right after it on restart) and never deletes the current segment.
    /// Returns the number of segments removed.
    pub fn release_to(&mut self, index: u64) -> Result<usize, WalError> {
        self.check()?;
        let Some(snap_index) = self.state.snapshot.as_ref().map(|s| s.0) else {
            return Ok(0);
        };
        let limit = index.min(snap_index);
        // Entries of segment i are all < first_index(i + 1).
        let mut n = 0;
        while n + 1 < self.segments.len() && self.segments[n + 1].first_index <= limit + 1 {
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        // Oldest first, so a crash midway still leaves a gap-free sequence.
        for seg in self.segments.drain(..n) {
            std::fs::remove_file(&seg.path).map_err(|e| WalError::io(&seg.path, e))?;
        }
        segment::sync_dir(&self.dir)?;
        Ok(n)
    }

    /// Number of segment files currently in use.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn check(&self) -> Result<(), WalError> {
        if self.poisoned {
            Err(WalError::Poisoned)
        } else {
            Ok(())
        }
    }

    fn push_record(
        &mut self,
        buf: &mut Vec<u8>,
        ty: RecordType,
        payload: &[u8],
    ) -> Result<(), WalError> {
        if payload.len() > record::MAX_PAYLOAD as usize {
            return Err(WalError::RecordTooLarge(payload.len()));
        }
        self.last_crc = record::encode(buf, self.last_crc, ty, payload);
        Ok(())
    }

    fn current_path(&self) -> PathBuf {
        self.segments
            .last()
            .map(|s| s.path.clone())
            .unwrap_or_else(|| self.dir.clone())
    }

    /// Writes `buf` to the current segment and fdatasyncs it. Poisons the
    /// WAL on failure.
    fn write_and_sync(&mut self, buf: &mut Vec<u8>) -> Result<(), WalError> {
        self.write(buf, true)
    }

    /// Writes `buf` at the end of the current segment, then fdatasyncs if `sync`.
    fn write(&mut self, buf: &mut Vec<u8>, sync: bool) -> Result<(), WalError> {
        if buf.is_empty() {
            return Ok(());
        }
        self.read_ahead(self.seg_len + buf.len() as u64);
        // Positional writes: the file extends past the data into preallocated space.
        let res = self.file.write_all_at(buf, self.seg_len).and_then(|()| {
            if !sync {
                return Ok(());
            }
            let started = std::time::Instant::now();
            let synced = self.file.sync_data();
            crate::fsync_observer::observe(started.elapsed());
            self.data_syncs += 1;
            if self.data_syncs == BUSY_AFTER_SYNCS {
                self.start_preparing();
            }
            synced
        });
        if let Err(e) = res {
            self.poisoned = true;
            return Err(WalError::io(&self.current_path(), e));
        }
        crate::fsync_observer::wrote(buf.len());
        self.unsynced = !sync;
        self.seg_len += buf.len() as u64;
        buf.clear();
        Ok(())
    }

    /// Keeps the page cache ahead of the appends in a zero-written segment: asks the kernel
    /// (without waiting) to read the next [`READ_AHEAD`] bytes once the appends come within
    /// a quarter of that of what it was asked for last.
    ///
    /// Why: the zeros are written around the page cache (`segment::prepare_zeroed`), so
    /// an append that fills part of a page the cache does not hold makes the kernel read
    /// that page from the disk first, inside the `pwrite`, on the raft thread, between
    /// the proposal and its fsync. Measured here: the raft thread read about one page for
    /// every four it wrote; 3,000 appends of 3 KB with an fdatasync each took 0.44-0.49 s
    /// without this and 0.27-0.38 s with it. A fallocated-only segment reads nothing (its
    /// unwritten extents read as zeros without I/O), so it gets no hint.
    fn read_ahead(&mut self, end: u64) {
        if !self.zeroed || end + READ_AHEAD / 4 <= self.read_ahead_to {
            return;
        }
        let from = self.read_ahead_to.max(end - end % READ_AHEAD);
        oxcd_fs::will_need(&self.file, from, READ_AHEAD);
        self.read_ahead_to = from + READ_AHEAD;
    }

    /// Starts a new segment after the current one (already synced). The finished segment
    /// is cut to its data first, so only the last segment ever has unused preallocated
    /// space and recovery stays strict about every other segment.
    fn roll(&mut self) -> Result<(), WalError> {
        let cut = self
            .file
            .set_len(self.seg_len)
            .and_then(|()| self.file.sync_all());
        if let Err(e) = cut {
            self.poisoned = true;
            return Err(WalError::io(&self.current_path(), e));
        }
        let seq = self.segments.last().map_or(0, |s| s.seq + 1);
        let (first_index, seed) = (self.last_index + 1, self.last_crc);
        self.take_ready_preparation();
        let prepared = self.prepared.take();
        let zeroed = prepared.is_some();
        let res = match prepared {
            Some(file) => adopt_segment(&self.dir, file, seq, first_index, seed, &self.state),
            None => create_segment(
                &self.dir,
                self.opts.segment_size,
                seq,
                first_index,
                seed,
                &self.state,
            ),
        };
        let (id, file, len, crc) = match res {
            Ok(v) => v,
            Err(e) => {
                self.poisoned = true;
                return Err(e);
            }
        };
        self.segments.push(id);
        self.file = file;
        self.seg_len = len;
        self.last_crc = crc;
        self.zeroed = zeroed;
        self.read_ahead_to = 0;
        if self.data_syncs >= BUSY_AFTER_SYNCS {
            self.start_preparing();
        }
        Ok(())
    }

    /// Starts writing the next segment with zeros on a background thread, unless one is
    /// being written or waits already, the option is off, or the WAL is on a tmpfs.
    fn start_preparing(&mut self) {
        if !self.opts.zeroed_segments
            || self.preparing.is_some()
            || self.prepared.is_some()
            || oxcd_fs::is_tmpfs(&self.dir)
        {
            return;
        }
        let path = self.dir.join(segment::PREPARED);
        let len = self.opts.segment_size;
        let spawned = std::thread::Builder::new()
            .name("wal-prepare".into())
            .spawn(move || segment::prepare_zeroed(&path, len));
        match spawned {
            Ok(handle) => self.preparing = Some(handle),
            Err(e) => tracing::debug!(error = %e, "cannot start preparing a WAL segment"),
        }
    }

    /// Whether a zero-written segment is ready (taking it from its thread if it just
    /// finished). A preparation that failed (a full disk, say) is dropped: segments are
    /// then fallocated only, which is correct, just slower to sync.
    fn take_ready_preparation(&mut self) -> bool {
        if self.prepared.is_some() {
            return true;
        }
        if !self.preparing.as_ref().is_some_and(|h| h.is_finished()) {
            return false;
        }
        match self.preparing.take().map(|h| h.join()) {
            Some(Ok(Ok(file))) => self.prepared = Some(file),
            Some(Ok(Err(e))) => {
                tracing::debug!(error = %e, "WAL segment not prepared; segments stay fallocated only");
            }
            _ => tracing::debug!("the WAL segment preparation panicked"),
        }
        self.prepared.is_some()
    }
}

fn encode_err(e: protobuf::ProtobufError) -> WalError {
    WalError::Encode(e.to_string())
}

/// Builds the header records of a new segment: crc seed, then snapshot
/// marker (with its data, if any), membership and hard state (when known).
/// Returns bytes and the final crc.
fn header_records(
    seed: u32,
    state: &WalContents,
) -> Result<(Vec<u8>, u32), protobuf::ProtobufError> {
    let mut buf = Vec::new();
    let mut crc = record::encode(&mut buf, seed, RecordType::CrcSeed, &seed.to_le_bytes());
    if let Some((i, t, scs)) = &state.snapshot {
        crc = record::encode(
            &mut buf,
            crc,
            RecordType::Snapshot,
            &reader::encode_snapshot(*i, *t, scs)?,
        );
        if let Some(data) = &state.snapshot_data {
            crc = record::encode(
                &mut buf,
                crc,
                RecordType::SnapshotData,
                &reader::encode_indexed(*i, data),
            );
        }
    }
    if let Some(cs) = &state.conf_state {
        let cs_bytes = cs.write_to_bytes()?;
        crc = match state.conf_state_index {
            // The initial membership keeps the record older versions read.
            0 => record::encode(&mut buf, crc, RecordType::ConfState, &cs_bytes),
            index => record::encode(
                &mut buf,
                crc,
                RecordType::ConfStateAt,
                &reader::encode_indexed(index, &cs_bytes),
            ),
        };
    }
    if state.hard_state != HardState::default() {
        let hs = state.hard_state.write_to_bytes()?;
        crc = record::encode(&mut buf, crc, RecordType::HardState, &hs);
    }
    Ok((buf, crc))
}

/// Makes the prepared file (`segment::PREPARED`, zero-written and synced) segment `seq`:
/// writes and syncs its header records while it is still not a segment, then renames it
/// and syncs the directory, so a crash leaves either no new segment or a complete one.
fn adopt_segment(
    dir: &Path,
    file: File,
    seq: u64,
    first_index: u64,
    seed: u32,
    state: &WalContents,
) -> Result<(SegmentId, File, u64, u32), WalError> {
    let from = dir.join(segment::PREPARED);
    let (len, crc) = write_header(&file, &from, seed, state)?;
    let path = dir.join(segment::file_name(seq, first_index));
    std::fs::rename(&from, &path).map_err(|e| WalError::io(&path, e))?;
    segment::sync_dir(dir)?;
    let id = SegmentId {
        seq,
        first_index,
        path,
    };
    Ok((id, file, len, crc))
}

/// Writes a segment's header records (`seed`, then what `state` holds besides entries) at
/// the start of `file` and syncs them. Returns their length and the crc of the last one.
fn write_header(
    file: &File,
    path: &Path,
    seed: u32,
    state: &WalContents,
) -> Result<(u64, u32), WalError> {
    let (buf, crc) = header_records(seed, state).map_err(encode_err)?;
    file.write_all_at(&buf, 0)
        .and_then(|()| file.sync_data())
        .map_err(|e| WalError::io(path, e))?;
    crate::fsync_observer::wrote(buf.len());
    Ok((buf.len() as u64, crc))
}

/// Creates segment `seq`, writes and syncs its header records (`seed`, then
/// what `state` holds besides entries), then syncs the directory so the new
/// file is durable. Returns the segment, its open handle, its length and the
/// crc of its last header record.
fn create_segment(
    dir: &Path,
    preallocate: u64,
    seq: u64,
    first_index: u64,
    seed: u32,
    state: &WalContents,
) -> Result<(SegmentId, File, u64, u32), WalError> {
    let path = dir.join(segment::file_name(seq, first_index));
    let mut open = OpenOptions::new();
    open.create_new(true).write(true);
    // etcd's WAL files are private to the member (`PrivateFileMode`), as prepared ones are.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let f = open.open(&path).map_err(|e| WalError::io(&path, e))?;
    let (len, crc) = write_header(&f, &path, seed, state)?;
    segment::preallocate(&f, &path, preallocate)?;
    segment::sync_dir(dir)?;
    let id = SegmentId {
        seq,
        first_index,
        path,
    };
    Ok((id, f, len, crc))
}
