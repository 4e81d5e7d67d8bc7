//! Recovery: read every segment in order, verify the crc chain, rebuild the
//! logical log and repair a torn tail.
//!
//! Recovery rules:
//! * Each segment must start with a `CrcSeed` record whose value equals the
//!   previous segment's last crc (the oldest segment's seed is trusted: its
//!   predecessor was released).
//! * Any decode failure in a segment that is not the last one is corruption.
//! * In the last segment, a failing record at offset `o` is a **torn tail**
//!   (keep the dropped bytes in `<segment>.broken`, truncate to `o`, warn,
//!   continue) when its header is incomplete, when everything from `o` on is
//!   zero, or when no intact record follows it. Intact means: a record that
//!   verifies against the bad record's stored crc, or two consecutive records
//!   where the second verifies against the first (this does not trust the
//!   damaged record's own crc field). Anything intact *after* the bad record
//!   means acknowledged data would be thrown away, so that is corruption.
//! * An Entry record with index `i` must satisfy `i <= last + 1` (no gaps);
//!   it replaces every logically-later entry `>= i` (raft overwrote an
//!   uncommitted tail). A Truncate record drops the entries from its index
//!   on; a snapshot marker drops those up to its index.
//! * Membership records carry the index they took effect at (the initial
//!   one: 0; a marker's: its own); the most recent by index wins, so a
//!   compaction marker written after a later membership change does not
//!   bring back the older membership.
//! * Zeros from the last valid record to the end of the last segment are
//!   unused preallocated space (see `segment::preallocate`), not damage: the
//!   data ends there and nothing is truncated. Only the last segment has such
//!   space; a roll cuts the finished segment to its data.
//! * A last segment left with no valid record (crash right after creation)
//!   is deleted.

use std::fs::OpenOptions;
use std::path::Path;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState};

use super::error::WalError;
use super::record::{self, RecordType, HEADER_LEN};
use super::segment::{self, SegmentId};

/// Everything the WAL holds, as needed to rebuild raft storage at start-up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WalContents {
    /// Latest persisted hard state (default if none was ever written).
    pub hard_state: HardState,
    /// Latest snapshot marker: `(index, term, conf_state)`. The snapshot
    /// data itself lives in the state-machine backend.
    pub snapshot: Option<(u64, u64, ConfState)>,
    /// Latest membership (from a ConfState record or the snapshot marker).
    pub conf_state: Option<ConfState>,
    /// Index of the entry whose application produced `conf_state` (0: the
    /// initial membership; the snapshot index when it came from a marker).
    pub conf_state_index: u64,
    /// Application data of the latest snapshot marker, present when that
    /// snapshot was received from a leader (see [`super::Wal::install_snapshot`]);
    /// `None` for markers the member wrote itself when compacting.
    pub snapshot_data: Option<Vec<u8>>,
    /// Entries after the snapshot, contiguous, with overwrites applied.
    pub entries: Vec<Entry>,
}

impl WalContents {
    /// Takes `cs` as the membership if it is at least as recent (`index`) as
    /// the one held. Writer and reader both follow this rule, so a compaction
    /// marker (whose membership is as of its older index) never hides a later
    /// membership change.
    pub(crate) fn offer_conf_state(&mut self, index: u64, cs: &ConfState) {
        if self.conf_state.is_none() || index >= self.conf_state_index {
            self.conf_state = Some(cs.clone());
            self.conf_state_index = index;
        }
    }
}

/// Result of a recovery pass: the contents and what the writer needs.
pub(crate) struct Recovered {
    pub contents: WalContents,
    /// Surviving segments, oldest first.
    pub segments: Vec<SegmentId>,
    /// Byte length of the last segment after any truncation.
    pub tail_len: u64,
    /// crc of the last valid record (seed for the next one).
    pub last_crc: u32,
    /// Index of the logically last entry (or the snapshot index, or
    /// `first_index - 1` of the oldest segment).
    pub last_index: u64,
}

/// Logical log being rebuilt.
struct LogState {
    contents: WalContents,
    last: u64,
}

impl LogState {
    fn apply(
        &mut self,
        ty: RecordType,
        payload: &[u8],
        file: &Path,
        off: u64,
    ) -> Result<(), WalError> {
        let bad = |reason: &str| WalError::Decode {
            file: file.to_path_buf(),
            offset: off,
            reason: reason.to_string(),
        };
        let dec = |e: protobuf::ProtobufError| bad(&e.to_string());
        match ty {
            RecordType::CrcSeed => {
                return Err(WalError::corrupt(
                    file,
                    off,
                    "crc seed record in the middle of a segment",
                ))
            }
            RecordType::Entry => {
                let e = Entry::parse_from_bytes(payload).map_err(dec)?;
                if e.index == 0 || e.index > self.last + 1 {
                    return Err(WalError::corrupt(
                        file,
                        off,
                        format!(
                            "index gap: entry {} follows last index {}",
                            e.index, self.last
                        ),
                    ));
                }
                let ents = &mut self.contents.entries;
                match ents.first().map(|f| f.index) {
                    Some(first) if e.index >= first => ents.truncate((e.index - first) as usize),
                    _ => ents.clear(),
                }
                self.last = e.index;
                ents.push(e);
            }
            RecordType::HardState => {
                self.contents.hard_state = HardState::parse_from_bytes(payload).map_err(dec)?;
            }
            RecordType::ConfState => {
                let cs = ConfState::parse_from_bytes(payload).map_err(dec)?;
                self.contents.offer_conf_state(0, &cs);
            }
            RecordType::ConfStateAt => {
                let (index, rest) =
                    split_index(payload).ok_or_else(|| bad("short membership record"))?;
                let cs = ConfState::parse_from_bytes(rest).map_err(dec)?;
                self.contents.offer_conf_state(index, &cs);
            }
            RecordType::Snapshot => {
                let (index, term, cs) =
                    decode_snapshot(payload).ok_or_else(|| bad("bad snapshot marker"))?;
                self.contents.entries.retain(|e| e.index > index);
                self.last = self.last.max(index);
                self.contents.offer_conf_state(index, &cs);
                self.contents.snapshot = Some((index, term, cs));
                self.contents.snapshot_data = None;
            }
            RecordType::SnapshotData => {
                let (index, data) =
                    split_index(payload).ok_or_else(|| bad("short snapshot data record"))?;
                if self.contents.snapshot.as_ref().map(|s| s.0) != Some(index) {
                    return Err(bad("snapshot data without its snapshot marker"));
                }
                self.contents.snapshot_data = Some(data.to_vec());
            }
            RecordType::Truncate => {
                let (from, rest) =
                    split_index(payload).ok_or_else(|| bad("short truncate record"))?;
                if from == 0 || !rest.is_empty() {
                    return Err(bad("bad truncate record"));
                }
                self.contents.entries.retain(|e| e.index < from);
                self.last = self.last.min(from - 1);
            }
        }
        Ok(())
    }
}

/// Prefixes `rest` with `index` (the layout of the indexed record types).
pub(crate) fn encode_indexed(index: u64, rest: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(8 + rest.len());
    p.extend_from_slice(&index.to_le_bytes());
    p.extend_from_slice(rest);
    p
}

/// Splits an indexed record's payload into its index and the rest.
fn split_index(p: &[u8]) -> Option<(u64, &[u8])> {
    let index = u64::from_le_bytes(p.get(0..8)?.try_into().ok()?);
    Some((index, p.get(8..)?))
}

/// Encodes a snapshot marker payload.
pub(crate) fn encode_snapshot(
    index: u64,
    term: u64,
    cs: &ConfState,
) -> Result<Vec<u8>, protobuf::ProtobufError> {
    let mut p = Vec::with_capacity(16);
    p.extend_from_slice(&index.to_le_bytes());
    p.extend_from_slice(&term.to_le_bytes());
    p.extend_from_slice(&cs.write_to_bytes()?);
    Ok(p)
}

fn decode_snapshot(p: &[u8]) -> Option<(u64, u64, ConfState)> {
    let index = u64::from_le_bytes(p.get(0..8)?.try_into().ok()?);
    let term = u64::from_le_bytes(p.get(8..16)?.try_into().ok()?);
    let cs = ConfState::parse_from_bytes(p.get(16..)?).ok()?;
    Some((index, term, cs))
}

/// Whether the failure at the start of `rest` is a torn tail (see module docs).
///
/// Only an unfinished final write may be dropped. Any sign of intact records after the bad
/// one means the damage is corruption of synced data: a record verifying against the bad
/// record's stored crc, or — not trusting any field of the damaged record, whose crc field
/// itself may be the flipped bytes — two consecutive records where the second verifies
/// against the first's stored crc.
fn is_torn(rest: &[u8]) -> bool {
    // Not even a whole header: the write stopped inside it.
    if rest.len() < HEADER_LEN {
        return true;
    }
    if rest.iter().all(|&b| b == 0) {
        return true;
    }
    let stored_crc = u32::from_le_bytes([rest[5], rest[6], rest[7], rest[8]]);
    // A record can only start where its type byte is valid: checking that byte first skips
    // the (mostly zero) preallocated space of a 64 MiB segment without decoding at each of
    // its offsets.
    let valid_after = (1..rest.len()).any(|j| {
        let plausible = rest
            .get(j + 4)
            .is_some_and(|t| RecordType::from_u8(*t).is_some());
        plausible
            && (record::decode(&rest[j..], Some(stored_crc)).is_ok() || chained_pair_at(&rest[j..]))
    });
    !valid_after
}

/// Whether `buf` starts with a plausible record header whose successor verifies against
/// the crc stored in that header.
fn chained_pair_at(buf: &[u8]) -> bool {
    let Some(h) = buf.get(..HEADER_LEN) else {
        return false;
    };
    if RecordType::from_u8(h[4]).is_none() {
        return false;
    }
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let crc = u32::from_le_bytes([h[5], h[6], h[7], h[8]]);
    match buf.get(HEADER_LEN.saturating_add(len)..) {
        Some(next) if next.len() >= HEADER_LEN => record::decode(next, Some(crc)).is_ok(),
        _ => false,
    }
}

/// Keeps the bytes a torn-tail repair drops in `<segment>.broken`, for inspection.
fn save_broken_tail(path: &Path, tail: &[u8]) -> Result<(), WalError> {
    let mut broken = path.as_os_str().to_owned();
    broken.push(".broken");
    let broken = std::path::PathBuf::from(broken);
    std::fs::write(&broken, tail).map_err(|e| WalError::io(&broken, e))
}

/// Reads all segments; truncates a torn tail and removes an empty last
/// segment (fsyncing the directory if it did).
pub(crate) fn recover(dir: &Path, mut segments: Vec<SegmentId>) -> Result<Recovered, WalError> {
    let first_index = segments.first().map_or(1, |s| s.first_index.max(1));
    let mut st = LogState {
        contents: WalContents::default(),
        last: first_index - 1,
    };
    let mut crc: Option<u32> = None;
    let mut tail_len = 0u64;
    let n = segments.len();
    for (i, seg) in segments.iter().enumerate() {
        let is_last = i + 1 == n;
        let data = std::fs::read(&seg.path).map_err(|e| WalError::io(&seg.path, e))?;
        let mut off = 0usize;
        while off < data.len() {
            let first_in_seg = off == 0;
            match record::decode(&data[off..], crc) {
                Ok(r) => {
                    if first_in_seg {
                        let seed = record::seed_value(r.ty, r.payload);
                        match (seed, crc) {
                            (None, _) => {
                                return Err(WalError::corrupt(&seg.path, 0, "segment does not start with a crc seed record"))
                            }
                            (Some(s), Some(c)) if s != c => {
                                return Err(WalError::corrupt(
                                    &seg.path,
                                    0,
                                    "crc seed does not match the previous segment (segment replaced or reordered)",
                                ))
                            }
                            _ => {}
                        }
                    } else {
                        st.apply(r.ty, r.payload, &seg.path, off as u64)?;
                    }
                    crc = Some(r.crc);
                    off += r.len;
                }
                Err(_) if is_last && data[off..].iter().all(|&b| b == 0) => {
                    // Unused preallocated space: the data ends here. Nothing to repair.
                    break;
                }
                Err(e) if is_last && is_torn(&data[off..]) => {
                    tracing::warn!(
                        file = %seg.path.display(),
                        offset = off,
                        dropped_bytes = data.len() - off,
                        reason = e.reason(),
                        "WAL torn tail: truncating the last segment to the last good record"
                    );
                    let tail = &data[off..];
                    let used = tail.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
                    save_broken_tail(&seg.path, &tail[..used])?;
                    truncate(&seg.path, off as u64)?;
                    break;
                }
                Err(e) => {
                    let reason = if is_last {
                        format!("{} with valid records after it", e.reason())
                    } else {
                        e.reason().to_string()
                    };
                    return Err(WalError::corrupt(&seg.path, off as u64, reason));
                }
            }
        }
        if off == 0 && !is_last {
            return Err(WalError::corrupt(
                &seg.path,
                0,
                "empty segment that is not the last one",
            ));
        }
        tail_len = off as u64;
    }
    if tail_len == 0 {
        if let Some(seg) = segments.pop() {
            tracing::warn!(file = %seg.path.display(), "WAL: removing empty last segment");
            std::fs::remove_file(&seg.path).map_err(|e| WalError::io(&seg.path, e))?;
            segment::sync_dir(dir)?;
            tail_len = match segments.last() {
                Some(prev) => std::fs::metadata(&prev.path)
                    .map_err(|e| WalError::io(&prev.path, e))?
                    .len(),
                None => 0,
            };
        }
    }
    check_start(&st, segments.first())?;
    Ok(Recovered {
        last_index: st.last,
        contents: st.contents,
        segments,
        tail_len,
        last_crc: crc.unwrap_or(0),
    })
}

/// The log must begin right after the snapshot (or at 1 without one);
/// otherwise older segments went missing.
fn check_start(st: &LogState, first: Option<&SegmentId>) -> Result<(), WalError> {
    let (Some(e), Some(seg)) = (st.contents.entries.first(), first) else {
        return Ok(());
    };
    let expected = st.contents.snapshot.as_ref().map_or(1, |s| s.0 + 1);
    if e.index != expected {
        return Err(WalError::corrupt(
            &seg.path,
            0,
            format!(
                "log starts at index {} but {} was expected (older segment missing?)",
                e.index, expected
            ),
        ));
    }
    Ok(())
}

fn truncate(path: &Path, len: u64) -> Result<(), WalError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| WalError::io(path, e))?;
    f.set_len(len).map_err(|e| WalError::io(path, e))?;
    f.sync_all().map_err(|e| WalError::io(path, e))
}
