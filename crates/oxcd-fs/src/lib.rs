//! oxcd-fs: the few file operations whose durability oxcd depends on, written once.
//!
//! A file's new name (or its removal) is durable only once its *directory* is fsynced,
//! and a file's content only once the file is. Every place that replaces or renames a
//! file that must survive a crash (the membership migration, defragmentation, WAL segment
//! rolls) goes through these functions so none of them forgets a step.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// Fsyncs directory `dir`, making the creation, rename or removal of its entries durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Fsyncs the directory holding `path` (nothing to do for a bare file name).
pub fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => Ok(()),
    }
}

/// Waits until the writeback this function started last time on `file` is done, then
/// starts writing back its dirty pages, without the metadata and journal work of an fsync
/// (Linux's `sync_file_range`; elsewhere nothing). A long copy that calls this every few
/// MiB keeps at most two such steps between it and the disk, so the fsyncs of other files
/// (the WAL's) do not wait behind gigabytes written back at once, while the copy goes on
/// during each step's writeback. It makes nothing durable.
pub fn write_back(file: &File) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE;
        // SAFETY: the descriptor belongs to `file`, which outlives the call; offset 0 and
        // length 0 name the whole file.
        if unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, flags) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
    Ok(())
}

/// Renames `from` to `to` and fsyncs the directory of `to` (and of `from`, if it differs),
/// so after a crash either the old or the new name exists, never neither.
pub fn rename_durably(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)?;
    sync_parent(to)?;
    if from.parent() != to.parent() {
        sync_parent(from)?;
    }
    Ok(())
}

/// Replaces `path` with `bytes` atomically: writes and fsyncs `<path>.tmp`, renames it over
/// `path` and fsyncs the directory. After a crash `path` holds the old or the new bytes.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    rename_durably(&tmp, path)
}

/// Removes `path` and fsyncs its directory; a missing file is not an error.
pub fn remove_durably(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_parent(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether `path` lies on a tmpfs (memory), where writing zeros to reserve space only
/// costs memory: its blocks are never "unwritten" as a disk filesystem's are.
pub fn is_tmpfs(path: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: statfs writes into the zeroed struct we own; the path is NUL-terminated.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statfs(c_path.as_ptr(), &mut st) } != 0 {
            return false;
        }
        // The field's and the constant's types differ between targets.
        #[allow(clippy::unnecessary_cast)]
        let tmpfs = st.f_type as i64 == libc::TMPFS_MAGIC as i64;
        tmpfs
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomically_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn write_back_leaves_the_content_as_written() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copy");
        let mut f = File::create(&path).unwrap();
        f.write_all(&vec![7u8; 1 << 20]).unwrap();
        write_back(&f).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), vec![7u8; 1 << 20]);
    }

    #[test]
    fn is_tmpfs_agrees_with_the_mount_table() {
        assert!(!is_tmpfs(Path::new("/no/such/path")));
        // The last mount on a directory is the one seen there.
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let mut seen = std::collections::HashMap::new();
        for line in mounts.lines() {
            let mut fields = line.split_whitespace();
            if let (Some(_), Some(dir), Some(kind)) = (fields.next(), fields.next(), fields.next())
            {
                seen.insert(dir.to_string(), kind.to_string());
            }
        }
        for dir in ["/", "/dev/shm"] {
            if let Some(kind) = seen.get(dir) {
                assert_eq!(is_tmpfs(Path::new(dir)), kind == "tmpfs", "{dir} is {kind}");
            }
        }
    }

    #[test]
    fn remove_durably_tolerates_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone");
        remove_durably(&path).unwrap();
        std::fs::write(&path, b"x").unwrap();
        remove_durably(&path).unwrap();
        assert!(!path.exists());
        assert!(rename_durably(&path, &dir.path().join("other")).is_err());
    }
}
