//! Segment file naming and directory helpers.
//!
//! A segment is named `{seq:016x}-{first_index:016x}.wal`: `seq` increases by
//! one per segment (a gap means a lost file), `first_index` is the raft index
//! the first entry written to the segment would have (last index + 1 at the
//! time the segment was created). Every entry in segment `n` therefore has an
//! index `< first_index(n + 1)`, which is what makes releasing whole old
//! segments safe.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::WalError;

/// Identity of one segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentId {
    pub seq: u64,
    pub first_index: u64,
    pub path: PathBuf,
}

/// File name of a segment.
pub(crate) fn file_name(seq: u64, first_index: u64) -> String {
    format!("{seq:016x}-{first_index:016x}.wal")
}

/// Parses a segment file name; `None` if it is not shaped like one.
pub(crate) fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".wal")?;
    let (seq, first) = stem.split_once('-')?;
    if seq.len() != 16 || first.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(seq, 16).ok()?,
        u64::from_str_radix(first, 16).ok()?,
    ))
}

/// Lists the segments in `dir` sorted by sequence number, rejecting
/// malformed `.wal` names and gaps in the sequence (a missing segment).
/// `first_index` may decrease between segments: a roll right after raft
/// overwrote an uncommitted tail names the new segment by the lower index.
/// Files without the `.wal` suffix are ignored.
pub(crate) fn list(dir: &Path) -> Result<Vec<SegmentId>, WalError> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| WalError::io(dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| WalError::io(dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.ends_with(".wal") {
            continue;
        }
        let path = ent.path();
        let Some((seq, first_index)) = parse_name(name) else {
            return Err(WalError::corrupt(&path, 0, "malformed segment file name"));
        };
        out.push(SegmentId {
            seq,
            first_index,
            path,
        });
    }
    out.sort_by_key(|s| s.seq);
    for w in out.windows(2) {
        if w[1].seq != w[0].seq + 1 {
            return Err(WalError::corrupt(
                &w[1].path,
                0,
                format!(
                    "segment sequence gap: segment {:016x} is missing before this file",
                    w[0].seq + 1
                ),
            ));
        }
    }
    Ok(out)
}

/// fsyncs a directory so that file creations/removals in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    oxcd_fs::sync_dir(dir).map_err(|e| WalError::io(dir, e))
}

/// Reserves disk blocks for `path` up to `len` bytes (best effort), so that appends inside
/// the reserved range do not change the file size and each fdatasync flushes data only —
/// about a third cheaper per sync on ext4. Filesystems without `fallocate` (tmpfs on some
/// kernels) or a full disk simply skip the reservation: appends then grow the file.
pub(crate) fn preallocate(file: &File, path: &Path, len: u64) -> Result<(), WalError> {
    let current = file.metadata().map_err(|e| WalError::io(path, e))?.len();
    if current >= len {
        return Ok(());
    }
    match reserve(file, len) {
        // Make the new size durable now, so later fdatasyncs have no metadata to flush.
        Ok(true) => file.sync_all().map_err(|e| WalError::io(path, e)),
        Ok(false) => Ok(()),
        Err(err) => {
            tracing::debug!(file = %path.display(), error = %err, "WAL segment not preallocated");
            Ok(())
        }
    }
}

/// Reserves disk blocks for the first `len` bytes of `file` (`fallocate`): `Ok(false)` where
/// this system has no such call, an error where the file system refuses (tmpfs on some
/// kernels, a full disk).
fn reserve(file: &File, len: u64) -> std::io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        let len = libc::off_t::try_from(len)
            .map_err(|_| std::io::Error::other("segment size out of range"))?;
        // SAFETY: fallocate on a file descriptor we own; no memory is passed.
        if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(true)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, len);
        Ok(false)
    }
}

/// Name of the next segment while it is being prepared: not a `.wal` file, so [`list`]
/// ignores it (and a leftover from before a crash is simply prepared again).
pub(crate) const PREPARED: &str = "next-segment.tmp";

/// Prepares the next segment at `path`: `len` bytes reserved and written with zeros, then
/// synced. Writes into a fallocated range turn "unwritten" extents into written ones, so
/// each fdatasync of such a segment also writes the file's metadata (on ext4 a second,
/// synchronous I/O: 330 against 170 µs per 4 KiB write and fdatasync here); once the
/// zeros are on disk, an fdatasync writes the data alone. etcd only fallocates.
///
/// The zeros bypass the page cache where the file system allows (`O_DIRECT`): 64 MiB of
/// them would otherwise fill fresh cache pages (on this kind of VM 1 to 4 s of CPU per
/// GiB) and queue as writeback in front of the WAL's own fsyncs. They come from one
/// aligned 1 MiB buffer, written again and again, so a member's memory grows by that much
/// while it prepares (a staging copy of 4 MiB showed in a small member's peak RSS). Where
/// the flag or a write is refused, the zeros go through the page cache with write-behind.
/// The file returned writes through the page cache, as the WAL's records need.
pub(crate) fn prepare_zeroed(path: &Path, len: u64) -> std::io::Result<File> {
    use std::io::{Seek, SeekFrom};
    use std::os::unix::fs::FileExt;
    const STEP: usize = 1 << 20;
    // A leftover from a crash is replaced, not reused: a new file gets the WAL's mode.
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let (mut file, direct) = oxcd_fs::create_direct(path)?;
    // Reserving first fails fast on a full disk instead of partway through the zeros.
    reserve(&file, len)?;
    let zeros = oxcd_fs::AlignedBuf::new(STEP);
    let mut written = 0u64;
    if direct {
        while written < len {
            let n = (len - written).min(STEP as u64) as usize;
            if !n.is_multiple_of(oxcd_fs::DIRECT_ALIGN) {
                break; // an unaligned tail goes through the page cache below
            }
            match file.write_all_at(&zeros[..n], written) {
                Ok(()) => written += n as u64,
                // The file system took the flag at open but refuses the writes.
                Err(e) if oxcd_fs::is_einval(&e) => break,
                Err(e) => return Err(e),
            }
        }
        oxcd_fs::clear_direct(&file)?;
    }
    // What is left (everything where O_DIRECT is refused) goes through the page cache,
    // written behind so it never queues in front of the WAL's fsyncs.
    file.seek(SeekFrom::Start(written))?;
    let mut out = oxcd_fs::WriteBehind::new(file);
    while written < len {
        let n = (len - written).min(STEP as u64) as usize;
        out.write_all(&zeros[..n])?;
        written += n as u64;
    }
    out.sync_all()?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prepared file holds exactly `len` zeros (an unaligned tail too), replaces a
    /// leftover, is private, and takes unaligned writes afterwards (no `O_DIRECT` left on).
    #[test]
    fn a_prepared_segment_is_zeros_and_writable_anywhere() {
        use std::os::unix::fs::{FileExt, PermissionsExt};
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(PREPARED);
        std::fs::write(&path, b"torn leftover").unwrap();
        let len = 3 * (1 << 20) + 100;
        let file = prepare_zeroed(&path, len).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, len);
        assert!(bytes.iter().all(|b| *b == 0));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        file.write_all_at(b"record", 7).unwrap();
        assert_eq!(&std::fs::read(&path).unwrap()[7..13], b"record");
    }

    #[test]
    fn names_round_trip() {
        let n = file_name(3, 0x1234);
        assert_eq!(n, "0000000000000003-0000000000001234.wal");
        assert_eq!(parse_name(&n), Some((3, 0x1234)));
        assert_eq!(parse_name("0003-0001.wal"), None);
        assert_eq!(parse_name("x.wal"), None);
    }
}
