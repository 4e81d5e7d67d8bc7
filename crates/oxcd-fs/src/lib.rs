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

/// Asks the kernel to read `len` bytes of `file` from `offset` into the page cache in the
/// background (`posix_fadvise(WILLNEED)`; elsewhere nothing). A hint: a refusal is ignored.
pub fn will_need(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len))
        else {
            return;
        };
        // SAFETY: a hint on the descriptor `file` owns, with integer arguments.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), offset, len, libc::POSIX_FADV_WILLNEED) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Bytes a [`WriteBehind`] writes between two [`write_back`]s: about 13 ms of a disk that
/// writes 300 MB/s, long enough that each step is one large write, short enough that the
/// writer rarely waits.
pub const WRITE_BEHIND_STEP: u64 = 4 << 20;

/// A file written front to back (a snapshot being received) whose pages are sent to the
/// disk as they are written, every [`WRITE_BEHIND_STEP`] bytes, rather than all at its
/// final fsync. The disk then writes while the data is still arriving, and the final
/// fsync has at most two steps left to write: a gigabyte arriving at the disk's speed is
/// durable about when its last byte arrives, instead of one disk-gigabyte later. Each
/// step waits for the one before it to reach the disk, so the writer never runs more than
/// two steps ahead of the disk. It makes nothing durable by itself: call
/// [`WriteBehind::sync_all`] at the end.
#[derive(Debug)]
pub struct WriteBehind {
    file: File,
    since_write_back: u64,
    /// Cleared when the kernel refuses `sync_file_range`: the file is then written
    /// back at its fsync only, as an ordinary file.
    pacing: bool,
}

impl WriteBehind {
    /// Writes `file` (opened for writing) with write-behind.
    pub fn new(file: File) -> WriteBehind {
        WriteBehind {
            file,
            since_write_back: 0,
            pacing: true,
        }
    }

    /// Flushes and fsyncs the file (its data and metadata).
    pub fn sync_all(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.sync_all()
    }

    /// The file.
    pub fn into_inner(self) -> File {
        self.file
    }
}

impl Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.since_write_back += n as u64;
        if self.pacing && self.since_write_back >= WRITE_BEHIND_STEP {
            self.since_write_back = 0;
            if write_back(&self.file).is_err() {
                // Only a speed-up: without it the final fsync writes everything.
                self.pacing = false;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Alignment of an `O_DIRECT` write's buffer, file offset and length: a multiple of every
/// logical block size in use (512 or 4096).
pub const DIRECT_ALIGN: usize = 4096;

/// Bytes a [`SequentialFile`] gathers for each write that bypasses the page cache.
const DIRECT_STEP: usize = 4 << 20;

/// A new file written once, front to back, then made durable: a snapshot being received.
///
/// Its bytes go to the disk without the page cache (`O_DIRECT`, in aligned steps of a few
/// MiB), so the writer neither copies them into the cache nor leaves them dirty for the
/// final fsync. On this kind of VM copying a gigabyte into fresh page-cache pages costs 1
/// to 4 s of CPU (the host faults every page in), several times what the disk takes to
/// write it (`dd oflag=direct`: 0.9 s); written directly, a snapshot is on the disk about
/// when its last byte has arrived. Where `O_DIRECT` is refused (tmpfs, other systems), or
/// fails on the first write, the file is written through the page cache with
/// [`WriteBehind`]. The file's content and length are the same either way; call
/// [`SequentialFile::finish`] to write the tail and fsync.
#[derive(Debug)]
pub struct SequentialFile {
    out: WriteBehind,
    /// While writes bypass the page cache: the aligned buffer they are gathered in.
    staging: Option<Staging>,
    /// Bytes written so far, staged ones included.
    len: u64,
}

/// A zeroed buffer whose first byte is [`DIRECT_ALIGN`]-aligned, as `O_DIRECT` reads and
/// writes need their memory to be. Safe code cannot ask the allocator for alignment, so the
/// allocation is longer by [`DIRECT_ALIGN`] and the buffer is the window of it that starts
/// at an aligned address.
#[derive(Debug)]
pub struct AlignedBuf {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// A buffer of `len` zero bytes.
    pub fn new(len: usize) -> AlignedBuf {
        let buf = vec![0u8; len + DIRECT_ALIGN];
        let start = buf.as_ptr().align_offset(DIRECT_ALIGN).min(DIRECT_ALIGN);
        AlignedBuf { buf, start, len }
    }

    /// Its length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

/// The aligned buffer a [`SequentialFile`] gathers its direct writes in.
#[derive(Debug)]
struct Staging {
    buf: AlignedBuf,
    filled: usize,
}

impl Staging {
    fn new() -> Staging {
        Staging {
            buf: AlignedBuf::new(DIRECT_STEP),
            filled: 0,
        }
    }
}

/// Creates a new file at `path` (it must not exist; mode 0600 where there are modes) for
/// reading and writing, with `O_DIRECT` if the file system takes it: reads and writes then
/// bypass the page cache and must be [`DIRECT_ALIGN`]-aligned in memory, offset and
/// length. Returns the file and whether it is direct. Where `O_DIRECT` is refused (tmpfs,
/// other systems) the file is an ordinary one. A file system may also take the flag at
/// open and refuse the first aligned write with `EINVAL` ([`is_einval`]); the caller then
/// calls [`clear_direct`] and goes on through the page cache.
pub fn create_direct(path: &Path) -> io::Result<(File, bool)> {
    let mut open = std::fs::OpenOptions::new();
    open.read(true).write(true).create_new(true);
    open_maybe_direct(open, path)
}

/// Opens `path` as `open` says, private (mode 0600 where there are modes) and with
/// `O_DIRECT` where the file system takes the flag; returns the file and whether it is
/// direct. Where the direct open fails (`EINVAL`: tmpfs on some kernels, or a file system
/// without the flag) the file is opened without it, which reports a genuine error (no
/// permission, no directory) itself. Some kernels create the file before refusing the
/// flag with `EINVAL`, so a file that was not there before is removed first (a `create_new`
/// open would fail on it).
fn open_maybe_direct(mut open: std::fs::OpenOptions, path: &Path) -> io::Result<(File, bool)> {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut direct = open.clone();
        direct.custom_flags(libc::O_DIRECT);
        let existed = path.exists();
        match direct.open(path) {
            Ok(file) => return Ok((file, true)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
            Err(e) if is_einval(&e) && !existed => {
                let _ = std::fs::remove_file(path);
            }
            Err(_) => {}
        }
    }
    Ok((open.open(path)?, false))
}

impl SequentialFile {
    /// Creates (or truncates) the file at `path` for writing; a new file gets mode 0600
    /// (etcd's `PrivateFileMode`: a snapshot holds every key).
    pub fn create(path: &Path) -> io::Result<SequentialFile> {
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create(true).truncate(true);
        let (file, direct) = open_maybe_direct(open, path)?;
        Ok(SequentialFile {
            out: WriteBehind::new(file),
            staging: direct.then(Staging::new),
            len: 0,
        })
    }

    /// Whether writes still bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.staging.is_some()
    }

    /// Writes the first `n` bytes of the staging window (`n` aligned, or the file's end);
    /// if the file refuses a direct write, goes on through the page cache.
    fn write_staged(&mut self, n: usize) -> io::Result<()> {
        let Some(st) = self.staging.as_mut() else {
            return Ok(());
        };
        let window = &st.buf[..n];
        let mut done = 0;
        while done < window.len() {
            match self.out.file.write(&window[done..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => done += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_einval(&e) && done % DIRECT_ALIGN == 0 => {
                    // The file system took the flag at open but refuses the writes: the
                    // rest goes through the page cache, from the same offset.
                    clear_direct(&self.out.file)?;
                    let rest = window[done..].to_vec();
                    self.staging = None;
                    return self.out.write_all(&rest);
                }
                Err(e) => return Err(e),
            }
        }
        st.filled = 0;
        Ok(())
    }

    /// Writes what is still staged (its last block padded with zeros, the padding then cut
    /// off), and fsyncs the file: its content, length and metadata are durable. The file
    /// returned writes through the page cache again, so any later write may be unaligned.
    pub fn finish(mut self) -> io::Result<File> {
        if let Some(st) = self.staging.as_mut() {
            let filled = st.filled;
            let padded = filled.div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
            st.buf[filled..padded].fill(0);
            self.write_staged(padded)?;
            if padded != filled {
                self.out.file.set_len(self.len)?;
            }
            if self.staging.is_some() {
                clear_direct(&self.out.file)?;
            }
        }
        self.out.sync_all()?;
        Ok(self.out.into_inner())
    }
}

impl Write for SequentialFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(st) = self.staging.as_mut() else {
            let n = self.out.write(buf)?;
            self.len += n as u64;
            return Ok(n);
        };
        let take = (DIRECT_STEP - st.filled).min(buf.len());
        st.buf[st.filled..st.filled + take].copy_from_slice(&buf[..take]);
        st.filled += take;
        self.len += take as u64;
        if st.filled == DIRECT_STEP {
            self.write_staged(DIRECT_STEP)?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Staged bytes wait for a full step or `finish`: a direct write must be aligned.
        Ok(())
    }
}

/// Opens `path` for reading with `O_DIRECT` where the file system takes it (reads then
/// bypass the page cache and must be [`DIRECT_ALIGN`]-aligned): a large file read once
/// (a snapshot being restored) does not fill the page cache. Returns the file and whether
/// it is direct; a refused flag gives an ordinary file.
pub fn open_direct_read(path: &Path) -> io::Result<(File, bool)> {
    let mut open = std::fs::OpenOptions::new();
    open.read(true);
    open_maybe_direct(open, path)
}

/// Whether all of the `len` bytes at `offset` of `file` are in the page cache, asked of the
/// kernel without reading any (`mincore` on a mapping of the range that is never touched);
/// false where it cannot tell. A file read once with `O_DIRECT` to spare the page cache is
/// better read through it where it is cached already (a snapshot just saved through the
/// page cache): memory instead of the disk.
#[cfg(target_os = "linux")]
pub fn is_cached(file: &File, offset: u64, len: usize) -> bool {
    use std::os::fd::AsRawFd;
    if len == 0 {
        return true;
    }
    // SAFETY: sysconf with a constant name.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 => p as u64,
        _ => return false,
    };
    let start = offset / page * page;
    let Some(map_len) = usize::try_from(offset - start)
        .ok()
        .and_then(|head| head.checked_add(len))
    else {
        return false;
    };
    let Ok(map_off) = libc::off_t::try_from(start) else {
        return false;
    };
    // SAFETY: a new read-only shared mapping of the file's range, chosen by the kernel (no
    // existing memory is replaced); it is never dereferenced (mincore reads the page
    // tables, not the pages) and is unmapped below. Pages past the file's end are simply
    // reported absent.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            map_len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            map_off,
        )
    };
    if addr == libc::MAP_FAILED {
        return false;
    }
    let mut resident = vec![0u8; map_len.div_ceil(page as usize)];
    // SAFETY: `addr` is the page-aligned start of a mapping of `map_len` bytes, and
    // `resident` has one byte per page of it.
    let ok = unsafe { libc::mincore(addr, map_len, resident.as_mut_ptr()) } == 0;
    // SAFETY: unmaps exactly the mapping made above.
    unsafe { libc::munmap(addr, map_len) };
    ok && resident.iter().all(|&b| b & 1 == 1)
}

/// Whether the range is in the page cache: never known on this system.
#[cfg(not(target_os = "linux"))]
pub fn is_cached(_file: &File, _offset: u64, _len: usize) -> bool {
    false
}

/// Whether `e` is `EINVAL`: what a file system that took `O_DIRECT` at open says to a
/// direct write it cannot do.
pub fn is_einval(e: &io::Error) -> bool {
    #[cfg(unix)]
    return e.raw_os_error() == Some(libc::EINVAL);
    #[cfg(not(unix))]
    return e.kind() == io::ErrorKind::InvalidInput;
}

/// Turns `O_DIRECT` off for `file`: its next reads and writes go through the page cache.
#[cfg(target_os = "linux")]
pub fn clear_direct(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor `file` owns, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Turns `O_DIRECT` off for `file` (nothing to do where it is never set).
#[cfg(not(target_os = "linux"))]
pub fn clear_direct(_file: &File) -> io::Result<()> {
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

    #[cfg(target_os = "linux")]
    #[test]
    fn is_cached_sees_what_the_page_cache_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 3 << 20]).unwrap();
        let f = File::open(&path).unwrap();
        f.sync_all().unwrap();
        // Just written through the page cache: there, at any offset, aligned or not.
        assert!(is_cached(&f, 0, 3 << 20));
        assert!(is_cached(&f, 5000, 1 << 20));
        assert!(is_cached(&f, 0, 0));
        // Past the end of the file nothing is cached.
        assert!(!is_cached(&f, (3 << 20) - 4096, 8192));
        // Dropped from the cache (clean pages after the fsync), where the file system
        // does drop them (tmpfs keeps its pages).
        evict(&f);
        if !is_tmpfs(&path) {
            assert!(!is_cached(&f, 0, 3 << 20));
        }
    }

    /// Drops `f`'s pages from the page cache (clean after an fsync, so they do go where
    /// the file system drops pages at all).
    #[cfg(target_os = "linux")]
    fn evict(f: &File) {
        use std::os::fd::AsRawFd;
        // SAFETY: posix_fadvise on a descriptor `f` owns, with integer arguments.
        let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(r, 0);
    }

    /// Pages dropped from the cache are back in it once `will_need` asked for them (the
    /// read is in the background: polled, within a generous bound).
    #[cfg(target_os = "linux")]
    #[test]
    fn will_need_brings_pages_back_into_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
        let f = File::open(&path).unwrap();
        f.sync_all().unwrap();
        evict(&f);
        if is_tmpfs(&path) || is_cached(&f, 0, 1 << 20) {
            return; // this file system keeps its pages: nothing to bring back
        }
        will_need(&f, 0, 1 << 20);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !is_cached(&f, 0, 1 << 20) {
            assert!(
                std::time::Instant::now() < deadline,
                "the pages asked for are still not cached"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
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
    fn write_behind_writes_every_byte_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("received");
        let mut w = WriteBehind::new(File::create(&path).unwrap());
        let mut want = Vec::new();
        // Steps that straddle WRITE_BEHIND_STEP, so write_back runs several times.
        for i in 0..40u32 {
            let part = vec![i as u8; 300_000 + i as usize];
            w.write_all(&part).unwrap();
            want.extend_from_slice(&part);
        }
        w.sync_all().unwrap();
        drop(w);
        assert!(want.len() as u64 > 2 * WRITE_BEHIND_STEP);
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }

    #[test]
    fn sequential_file_holds_exactly_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        // Empty, shorter than a block, one block, and over two direct steps with an
        // unaligned tail, written in pieces that straddle the steps.
        for total in [0usize, 100, DIRECT_ALIGN, 2 * DIRECT_STEP + 12_345] {
            let path = dir.path().join(format!("received-{total}"));
            let mut f = SequentialFile::create(&path).unwrap();
            let want: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
            for piece in want.chunks(1_000_003) {
                f.write_all(piece).unwrap();
            }
            f.finish().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), want, "{total} bytes");
        }
        // Created over an older, longer file: truncated.
        let path = dir.path().join("received-0");
        std::fs::write(&path, vec![1u8; 3 * DIRECT_ALIGN]).unwrap();
        let mut f = SequentialFile::create(&path).unwrap();
        f.write_all(b"short").unwrap();
        f.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"short");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let fresh = dir.path().join("fresh");
            SequentialFile::create(&fresh).unwrap().finish().unwrap();
            let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
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
