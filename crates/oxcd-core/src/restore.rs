//! `snapshot restore`: a new member's data dir built from a snapshot file, as etcd's
//! `snapshot restore` builds one (etcd 3.4's etcdctl, 3.5's etcdutl), for a *new* cluster
//! whose membership is given by the flags.
//!
//! Nothing is half-restored: the data dir is built under a temporary name beside the
//! target (`<data-dir>.restoring-<pid>`), checked, made durable, and only then renamed to
//! `--data-dir`; any failure removes the temporary dir. Steps:
//!
//! 1. the snapshot's SHA-256 trailer (the last 32 bytes of a file whose size is 32 past a
//!    multiple of 512, as etcd writes it) is checked against the rest, unless
//!    `--skip-hash-check` (a backend copied from a data dir has no trailer);
//! 2. the copy is read in full, read-only, to prove it is a complete backend;
//! 3. the old cluster's membership is replaced by the new one (the same IDs the new
//!    members compute from `--initial-cluster` and `--initial-cluster-token`), the
//!    consistent index goes back to 0 (the new cluster's raft log starts empty, and every
//!    member restored from the same file starts from the same state), and the revision
//!    is bumped and compacted if asked (`--bump-revision`, `--mark-compacted`). Keys,
//!    their revisions and versions, leases and alarms are kept, as etcd keeps them.

use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use oxcd_mvcc::Store;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::config::ClusterSpec;
use crate::membership::Membership;

/// Size of the SHA-256 trailer.
const SHA_LEN: u64 = 32;

/// The options of `snapshot restore`, named after its flags.
#[derive(Debug, Clone)]
pub struct RestoreConfig {
    /// The snapshot file.
    pub snapshot: PathBuf,
    /// `--name`.
    pub name: String,
    /// `--initial-cluster` (`name=url,...`).
    pub initial_cluster: String,
    /// `--initial-cluster-token`.
    pub initial_cluster_token: String,
    /// `--initial-advertise-peer-urls`.
    pub initial_advertise_peer_urls: Vec<String>,
    /// `--data-dir` (default `<name>.etcd`).
    pub data_dir: Option<PathBuf>,
    /// `--wal-dir` (default `<data-dir>/member/wal`); must not exist.
    pub wal_dir: Option<PathBuf>,
    /// `--skip-hash-check`.
    pub skip_hash_check: bool,
    /// `--bump-revision`.
    pub bump_revision: u64,
    /// `--mark-compacted`.
    pub mark_compacted: bool,
}

/// What a restore made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The new data dir.
    pub data_dir: PathBuf,
    /// The WAL dir the member will use.
    pub wal_dir: PathBuf,
    /// The snapshot dir (`<data-dir>/member/snap`).
    pub snap_dir: PathBuf,
    /// The revision the member starts at.
    pub revision: i64,
    /// This member's id.
    pub member_id: u64,
    /// The new cluster's id.
    pub cluster_id: u64,
}

/// Why a restore was refused or failed; nothing is left behind.
#[derive(Debug, Error)]
pub enum RestoreError {
    /// Bad flags (etcd's texts where etcd has one).
    #[error("{0}")]
    Config(String),
    /// The target exists (etcd: `data-dir "x" exists`).
    #[error("{0}")]
    Exists(String),
    /// The file has no trailer and `--skip-hash-check` was not given.
    #[error("snapshot missing hash but --skip-hash-check=false")]
    MissingHash,
    /// The trailer does not match the contents (etcd's text, Go's byte-slice form).
    #[error("expected sha256 {expected}, got {got}")]
    HashMismatch {
        /// The trailer.
        expected: String,
        /// The digest of the contents.
        got: String,
    },
    /// The contents are not a complete backend.
    #[error("{0}")]
    Invalid(String),
    /// An I/O or backend failure.
    #[error("{0}")]
    Io(String),
}

/// Go's `%v` of a byte slice: `[1 2 3]`.
fn go_bytes(b: &[u8]) -> String {
    let parts: Vec<String> = b.iter().map(u8::to_string).collect();
    format!("[{}]", parts.join(" "))
}

/// Parses `--initial-cluster` (`name=url,name=url`); a name may appear more than once.
fn parse_initial_cluster(s: &str) -> Result<BTreeMap<String, Vec<String>>, RestoreError> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, url)) = part.split_once('=') else {
            return Err(RestoreError::Config(format!(
                "invalid --initial-cluster entry {part:?}: expected name=url"
            )));
        };
        map.entry(name.trim().to_string())
            .or_default()
            .push(url.trim().to_string());
    }
    if map.is_empty() {
        return Err(RestoreError::Config(
            "initial cluster unset and no discovery URL found".into(),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for url in map.values().flatten() {
        if !seen.insert(url) {
            return Err(RestoreError::Config(format!(
                "initial cluster {s} has duplicate url"
            )));
        }
    }
    Ok(map)
}

/// etcd's `VerifyBootstrap` checks for a new member: it is in the cluster, with exactly the
/// peer URLs it advertises.
fn check_bootstrap(
    name: &str,
    cluster: &BTreeMap<String, Vec<String>>,
    advertised: &[String],
) -> Result<(), RestoreError> {
    let Some(urls) = cluster.get(name) else {
        return Err(RestoreError::Config(format!(
            "couldn't find local name {name:?} in the initial cluster configuration"
        )));
    };
    let mut a = advertised.to_vec();
    a.sort();
    let mut b = urls.clone();
    b.sort();
    if a == b {
        return Ok(());
    }
    let missing: Vec<String> = b
        .iter()
        .filter(|u| !a.contains(u))
        .map(|u| format!("{name}={u}"))
        .collect();
    if !missing.is_empty() {
        return Err(RestoreError::Config(format!(
            "--initial-cluster has {} but missing from --initial-advertise-peer-urls={}",
            missing.join(","),
            a.join(",")
        )));
    }
    let extra: Vec<&String> = a.iter().filter(|u| !b.contains(u)).collect();
    let extra: Vec<&str> = extra.iter().map(|s| s.as_str()).collect();
    let own: Vec<String> = a.iter().map(|u| format!("{name}={u}")).collect();
    Err(RestoreError::Config(format!(
        "--initial-advertise-peer-urls has {} but missing from --initial-cluster={}",
        extra.join(","),
        own.join(",")
    )))
}

fn io_err(what: &str, path: &Path, e: impl std::fmt::Display) -> RestoreError {
    RestoreError::Io(format!("{what} {}: {e}", path.display()))
}

/// etcdutl's rule for `--bump-revision` and `--mark-compacted`: both or neither.
pub fn check_revision_flags(bump_revision: u64, mark_compacted: bool) -> Result<(), String> {
    match (bump_revision > 0, mark_compacted) {
        (true, false) => Err("--mark-compacted required if --bump-revision > 0".into()),
        (false, true) => Err("--bump-revision > 0 required if --mark-compacted".into()),
        _ => Ok(()),
    }
}

/// Restores `cfg.snapshot` into a new data dir (see the module doc).
pub fn restore(cfg: &RestoreConfig) -> Result<Restored, RestoreError> {
    check_revision_flags(cfg.bump_revision, cfg.mark_compacted).map_err(RestoreError::Config)?;
    let cluster = parse_initial_cluster(&cfg.initial_cluster)?;
    check_bootstrap(&cfg.name, &cluster, &cfg.initial_advertise_peer_urls)?;
    let data_dir = cfg
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", cfg.name)));
    if data_dir.exists() {
        return Err(RestoreError::Exists(format!(
            "data-dir {:?} exists",
            data_dir.display().to_string()
        )));
    }
    if let Some(w) = &cfg.wal_dir {
        if w.exists() {
            return Err(RestoreError::Exists(format!(
                "wal-dir {:?} exists",
                w.display().to_string()
            )));
        }
    }
    let file_name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| RestoreError::Config(format!("invalid --data-dir {:?}", data_dir)))?;
    let tmp = data_dir.with_file_name(format!("{file_name}.restoring-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let spec = ClusterSpec {
        initial_cluster: cluster,
        initial_cluster_token: cfg.initial_cluster_token.clone(),
        initial_advertise_peer_urls: cfg.initial_advertise_peer_urls.clone(),
        advertise_client_urls: Vec::new(),
        join_existing: false,
    };
    let membership = Membership::bootstrap(&cfg.name, &spec);
    let built = build(cfg, &tmp, &membership);
    let revision = match built {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    if let Err(e) = std::fs::rename(&tmp, &data_dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(io_err(
            "cannot rename the restored data dir to",
            &data_dir,
            e,
        ));
    }
    oxcd_fs::sync_parent(&data_dir)
        .map_err(|e| io_err("cannot sync the parent of", &data_dir, e))?;
    let wal_dir = cfg
        .wal_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("member").join("wal"));
    Ok(Restored {
        snap_dir: data_dir.join("member").join("snap"),
        data_dir,
        wal_dir,
        revision,
        member_id: membership.local_id,
        cluster_id: membership.cluster_id,
    })
}

/// Builds the data dir under `root`; returns the revision restored.
fn build(cfg: &RestoreConfig, root: &Path, membership: &Membership) -> Result<i64, RestoreError> {
    let snap = root.join("member").join("snap");
    for d in [root.to_path_buf(), root.join("member"), snap.clone()] {
        std::fs::create_dir_all(&d).map_err(|e| io_err("cannot create", &d, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| io_err("cannot set the mode of", &d, e))?;
        }
    }
    let db = snap.join("db");
    place_backend(cfg, &db)?;
    let store = Store::open(&db).map_err(|e| io_err("cannot open the restored backend", &db, e))?;
    let backend = |e: oxcd_mvcc::MvccError| io_err("cannot write the restored backend", &db, e);
    membership.save(&store).map_err(backend)?;
    let revision = store
        .reset_for_restore(cfg.bump_revision, cfg.mark_compacted)
        .map_err(backend)?;
    drop(store);
    for d in [snap, root.join("member"), root.to_path_buf()] {
        oxcd_fs::sync_dir(&d).map_err(|e| io_err("cannot sync", &d, e))?;
    }
    Ok(revision)
}

/// Writes the backend held by the snapshot to `db`, checking the snapshot's trailer (and
/// that it is complete) on the way: a dump (what Maintenance.Snapshot streams) is
/// rebuilt into a backend; a backend file (a copy of a data dir's `member/snap/db`, or a
/// snapshot saved by oxcd before the dump format) is copied and then read in full.
fn place_backend(cfg: &RestoreConfig, db: &Path) -> Result<(), RestoreError> {
    let src = &cfg.snapshot;
    let mut f = std::fs::File::open(src).map_err(|e| io_err("cannot open", src, e))?;
    let size = f
        .metadata()
        .map_err(|e| io_err("cannot stat", src, e))?
        .len();
    let mut head = [0u8; 8];
    let n = f
        .read(&mut head)
        .map_err(|e| io_err("cannot read", src, e))?;
    let head = &head[..n];
    let is_dump = oxcd_mvcc::is_dump(head);
    if !is_dump && !oxcd_mvcc::is_backend_file(head) {
        let etcd = looks_like_bbolt(src);
        return Err(RestoreError::Invalid(if etcd {
            format!(
                "{} is an etcd (bbolt) snapshot; oxcdctl snapshot restore takes snapshots \
                 saved from oxcd",
                src.display()
            )
        } else {
            format!("{} is not an oxcd snapshot", src.display())
        }));
    }
    // etcd's rule: a file whose size is 32 past a multiple of 512 ends with its digest.
    let has_hash = size % 512 == SHA_LEN;
    if !has_hash && !cfg.skip_hash_check {
        return Err(RestoreError::MissingHash);
    }
    let body = if has_hash { size - SHA_LEN } else { size };
    let truncated = |e: &dyn std::fmt::Display| {
        RestoreError::Invalid(format!(
            "{} is not a complete oxcd snapshot ({e}); was it truncated?",
            src.display()
        ))
    };
    if is_dump {
        return place_dump(
            src,
            size,
            body,
            has_hash && !cfg.skip_hash_check,
            db,
            &truncated,
        );
    }
    let mut reader = std::io::BufReader::with_capacity(1 << 20, std::io::Read::chain(head, &mut f));
    // A backend file (a copy of a data dir's `db`): copied while another thread checks the
    // digest (reading the file a second time, from the page cache).
    std::thread::scope(|scope| {
        let digest = (has_hash && !cfg.skip_hash_check)
            .then(|| scope.spawn(move || check_digest(src, body)));
        let placed = copy_backend(&mut reader, body, db, &truncated);
        // A damaged file is refused for its digest first, as etcd refuses any file.
        if let Some(digest) = digest {
            digest.join().unwrap_or_else(|_| {
                Err(RestoreError::Io(
                    "the snapshot's digest check panicked".into(),
                ))
            })?;
        }
        placed
    })?;
    // A backend file is only known to be complete once read in full.
    oxcd_mvcc::scan_file(db, body, &mut |_, _, _| {}).map_err(|e| truncated(&e))?;
    Ok(())
}

/// Bytes of the snapshot read at a time when it is a dump.
const READ_BLOCK: usize = 4 << 20;
/// Blocks read ahead of the parser.
const BLOCKS_AHEAD: usize = 2;

/// Rebuilds the backend at `db` from the dump `src` (`size` bytes, the first `body` of
/// them the dump), checking its digest if `check`. The file is read once, past the page
/// cache where the file system allows (`O_DIRECT`) unless already cached, by a thread
/// whose blocks another hashes and hands to the rebuild: a snapshot saved by `oxcdctl`
/// was written past the page cache too, so reading it through the cache (twice: the
/// digest and the rebuild) filled a gigabyte of fresh page cache, which on this VM costs
/// 1-4 s of CPU (the first restore of such a file took 7.1 s where a cached one took 4.0).
fn place_dump(
    src: &Path,
    size: u64,
    body: u64,
    check: bool,
    db: &Path,
    truncated: &dyn Fn(&dyn std::fmt::Display) -> RestoreError,
) -> Result<(), RestoreError> {
    let (full_tx, full_rx) =
        std::sync::mpsc::sync_channel::<(oxcd_fs::AlignedBuf, usize)>(BLOCKS_AHEAD);
    let (empty_tx, empty_rx) = std::sync::mpsc::channel::<oxcd_fs::AlignedBuf>();
    std::thread::scope(|scope| {
        let reader = std::thread::Builder::new()
            .name("oxcd-restore-read".into())
            .spawn_scoped(scope, move || {
                read_and_hash(src, size, body, check, full_tx, empty_rx)
            })
            .map_err(|e| RestoreError::Io(format!("cannot start the snapshot's reader: {e}")))?;
        let mut blocks = Blocks {
            rx: full_rx,
            back: empty_tx,
            cur: None,
            pos: 0,
        };
        let placed = oxcd_mvcc::restore_dump(&mut blocks, body, db)
            .map(drop)
            .map_err(|e| match e {
                oxcd_mvcc::MvccError::Corrupt { .. } => truncated(&e),
                other => io_err("cannot restore the backend into", db, other),
            });
        // The reader reads (and hashes) on to the end even when the rebuild stopped early.
        drop(blocks);
        // A damaged file is refused for its digest first, as etcd refuses any file.
        reader
            .join()
            .unwrap_or_else(|_| Err(RestoreError::Io("the snapshot's reader panicked".into())))?;
        placed
    })
}

/// The reader's blocks as a `Read` for the rebuild.
struct Blocks {
    rx: std::sync::mpsc::Receiver<(oxcd_fs::AlignedBuf, usize)>,
    back: std::sync::mpsc::Sender<oxcd_fs::AlignedBuf>,
    /// The block being read and its length.
    cur: Option<(oxcd_fs::AlignedBuf, usize)>,
    pos: usize,
}

impl Read for Blocks {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some((buf, len)) = &self.cur {
                if self.pos < *len {
                    let n = (*len - self.pos).min(out.len());
                    out[..n].copy_from_slice(&buf[self.pos..self.pos + n]);
                    self.pos += n;
                    return Ok(n);
                }
                if let Some((done, _)) = self.cur.take() {
                    let _ = self.back.send(done);
                }
            }
            match self.rx.recv() {
                Ok(next) => {
                    self.cur = Some(next);
                    self.pos = 0;
                }
                // The reader ended (the file's end, or its error, which it reports).
                Err(_) => return Ok(0),
            }
        }
    }
}

/// The reader's thread (see [`place_dump`]): reads `src` front to back and hands the
/// blocks to a hashing thread, which hands the first `body` bytes on in blocks (while the
/// rebuild takes them) and, if `check`, hashes them and compares the digest with the
/// trailer. Reading and hashing are separate threads so the disk reads the next blocks
/// while SHA-256 (0.7 s per GiB here, the restore's largest CPU cost) runs on the last:
/// in one thread a cold 1 GiB file took the sum of the two.
fn read_and_hash(
    src: &Path,
    size: u64,
    body: u64,
    check: bool,
    full: std::sync::mpsc::SyncSender<(oxcd_fs::AlignedBuf, usize)>,
    empty: std::sync::mpsc::Receiver<oxcd_fs::AlignedBuf>,
) -> Result<(), RestoreError> {
    let (file, mut direct) =
        oxcd_fs::open_direct_read(src).map_err(|e| io_err("cannot open", src, e))?;
    // Blocks already in the page cache (a file just saved through it, as etcdctl saves)
    // are read from there: memory instead of the disk.
    let cached_file = if direct {
        Some(std::fs::File::open(src).map_err(|e| io_err("cannot open", src, e))?)
    } else {
        None
    };
    let (read_tx, read_rx) =
        std::sync::mpsc::sync_channel::<(oxcd_fs::AlignedBuf, usize)>(BLOCKS_AHEAD);
    std::thread::scope(|scope| {
        let hasher = std::thread::Builder::new()
            .name("oxcd-restore-hash".into())
            .spawn_scoped(scope, move || hash_and_hand_on(body, check, read_rx, full))
            .map_err(|e| RestoreError::Io(format!("cannot start the snapshot's hasher: {e}")))?;
        let read = (|| {
            let mut offset = 0u64;
            while offset < size {
                let mut buf = empty
                    .try_recv()
                    .unwrap_or_else(|_| oxcd_fs::AlignedBuf::new(READ_BLOCK));
                let want = usize::try_from(size - offset)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                let n = match &cached_file {
                    Some(f) if direct && oxcd_fs::is_cached(f, offset, want) => {
                        read_block(f, &mut false, &mut buf, offset)
                    }
                    _ => read_block(&file, &mut direct, &mut buf, offset),
                }
                .map_err(|e| io_err("cannot read", src, e))?;
                if n == 0 {
                    return Err(io_err("cannot read", src, "unexpected end of file"));
                }
                let n = n.min(want);
                offset += n as u64;
                // The hasher is gone only when nobody needs the rest (no check, and the
                // rebuild stopped).
                if read_tx.send((buf, n)).is_err() {
                    break;
                }
            }
            Ok(())
        })();
        drop(read_tx);
        let hashed = hasher
            .join()
            .unwrap_or_else(|_| Err(RestoreError::Io("the snapshot's hasher panicked".into())));
        // A read error first: the digest of what was read before it cannot match.
        read.and(hashed)
    })
}

/// The hashing thread of [`read_and_hash`]: hands the blocks' first `body` bytes on to
/// `full` and, if `check`, compares their SHA-256 with the trailer after them.
fn hash_and_hand_on(
    body: u64,
    check: bool,
    blocks: std::sync::mpsc::Receiver<(oxcd_fs::AlignedBuf, usize)>,
    full: std::sync::mpsc::SyncSender<(oxcd_fs::AlignedBuf, usize)>,
) -> Result<(), RestoreError> {
    let mut hash = Sha256::new();
    let mut trailer = Vec::with_capacity(SHA_LEN as usize);
    let mut sending = true;
    let mut offset = 0u64;
    for (buf, n) in blocks.iter() {
        let in_body = usize::try_from(body.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(n);
        offset += n as u64;
        if check {
            hash.update(&buf[..in_body]);
            trailer.extend_from_slice(&buf[in_body..n]);
        }
        if sending && in_body > 0 && full.send((buf, in_body)).is_err() {
            sending = false;
        }
        if !sending && !check {
            return Ok(());
        }
    }
    drop(full);
    if check {
        let got = hash.finalize();
        if got.as_slice() != trailer.as_slice() {
            return Err(RestoreError::HashMismatch {
                expected: go_bytes(&trailer),
                got: go_bytes(&got),
            });
        }
    }
    Ok(())
}

/// Reads up to a block at `offset` (aligned: a multiple of the block size) until the
/// block is full or the file ends; if a direct read is refused, goes on without
/// `O_DIRECT`. Returns the bytes read.
fn read_block(
    file: &std::fs::File,
    direct: &mut bool,
    buf: &mut [u8],
    offset: u64,
) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if *direct && oxcd_fs::is_einval(&e) => {
                oxcd_fs::clear_direct(file)?;
                *direct = false;
            }
            Err(e) => return Err(e),
        }
        // A direct read that came back short ended at the file's end (or an unaligned
        // tail, read on without the flag).
        if *direct && got % oxcd_fs::DIRECT_ALIGN != 0 {
            break;
        }
    }
    Ok(got)
}

/// Copies a backend file's `body` bytes from `reader` to `db`, durably.
fn copy_backend(
    reader: &mut impl Read,
    body: u64,
    db: &Path,
    truncated: &dyn Fn(&dyn std::fmt::Display) -> RestoreError,
) -> Result<(), RestoreError> {
    let mut out = std::fs::File::create(db).map_err(|e| io_err("cannot create", db, e))?;
    let copied = std::io::copy(&mut reader.take(body), &mut out)
        .map_err(|e| io_err("cannot copy the snapshot to", db, e))?;
    if copied != body {
        return Err(truncated(&format!("{copied} of {body} bytes")));
    }
    out.sync_all().map_err(|e| io_err("cannot sync", db, e))
}

/// Checks that the 32 bytes after the first `body` bytes of `src` are their SHA-256.
fn check_digest(src: &Path, body: u64) -> Result<(), RestoreError> {
    let f = std::fs::File::open(src).map_err(|e| io_err("cannot open", src, e))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, f);
    let mut hash = Sha256::new();
    let mut left = body;
    while left > 0 {
        let buf = reader
            .fill_buf()
            .map_err(|e| io_err("cannot read", src, e))?;
        if buf.is_empty() {
            return Err(io_err("cannot read", src, "unexpected end of file"));
        }
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        hash.update(&buf[..n]);
        reader.consume(n);
        left -= n as u64;
    }
    let mut trailer = [0u8; SHA_LEN as usize];
    reader
        .read_exact(&mut trailer)
        .map_err(|e| RestoreError::Io(format!("cannot read the snapshot's sha256: {e}")))?;
    let got = hash.finalize();
    if got.as_slice() != trailer {
        return Err(RestoreError::HashMismatch {
            expected: go_bytes(&trailer),
            got: go_bytes(&got),
        });
    }
    Ok(())
}

/// Whether `path` holds a bbolt file (etcd's backend): its meta page magic 0xED0CDAED at
/// offset 32 (page header 16 bytes, then the meta's magic), little-endian.
pub(crate) fn looks_like_bbolt(path: &Path) -> bool {
    let mut head = [0u8; 20];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head[16..20] == 0xED0C_DAEDu32.to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_cluster_parsing_and_bootstrap_checks() {
        let c = parse_initial_cluster("a=http://1:2380,b=http://2:2380,a=http://1:2381").unwrap();
        assert_eq!(c["a"].len(), 2);
        assert!(parse_initial_cluster("a=http://1,b=http://1").is_err());
        assert!(parse_initial_cluster("nonsense").is_err());
        let urls = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_bootstrap("a", &c, &urls(&["http://1:2381", "http://1:2380"])).is_ok());
        let e = check_bootstrap("a", &c, &urls(&["http://1:2380"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--initial-cluster has a=http://1:2381 but missing from \
             --initial-advertise-peer-urls=http://1:2380"
        );
        let e = check_bootstrap("z", &c, &urls(&["http://1:2380"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "couldn't find local name \"z\" in the initial cluster configuration"
        );
    }

    /// Drops `len` bytes at `offset` of the file at `path` from the page cache (after an
    /// fsync, so the pages are clean and do go).
    fn evict(path: &Path, offset: u64, len: u64) {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(path).unwrap();
        f.sync_all().unwrap();
        // SAFETY: posix_fadvise on a descriptor `f` owns, with integer arguments.
        let r = unsafe {
            libc::posix_fadvise(
                f.as_raw_fd(),
                offset as libc::off_t,
                len as libc::off_t,
                libc::POSIX_FADV_DONTNEED,
            )
        };
        assert_eq!(r, 0);
    }

    /// The dump reader hands on exactly the body, across blocks and an unaligned end,
    /// whether the file is in the page cache, out of it (read with `O_DIRECT`) or partly
    /// in it; checks the trailer, and still finds a bad digest when the consumer stops
    /// early.
    #[test]
    fn dump_reader_hands_on_the_body_and_checks_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        let body: Vec<u8> = (0..READ_BLOCK * 2 + 1_000)
            .map(|i| (i % 251) as u8)
            .collect();
        let digest = Sha256::digest(&body);
        // Which blocks of the file are dropped from the page cache before reading.
        #[derive(Clone, Copy)]
        enum Cache {
            All,
            None,
            Middle,
        }
        let run_cached = |file: &[u8], stop_after: Option<usize>, cache: Cache| {
            let path = dir.path().join("snap");
            std::fs::write(&path, file).unwrap();
            let block = READ_BLOCK as u64;
            match cache {
                Cache::All => {}
                Cache::None => evict(&path, 0, 0),
                Cache::Middle => {
                    evict(&path, 0, block);
                    evict(&path, 2 * block, 0);
                }
            }
            let (full_tx, full_rx) = std::sync::mpsc::sync_channel(BLOCKS_AHEAD);
            let (empty_tx, empty_rx) = std::sync::mpsc::channel();
            let size = file.len() as u64;
            let body_len = body.len() as u64;
            std::thread::scope(|scope| {
                let reader =
                    scope.spawn(|| read_and_hash(&path, size, body_len, true, full_tx, empty_rx));
                let mut blocks = Blocks {
                    rx: full_rx,
                    back: empty_tx,
                    cur: None,
                    pos: 0,
                };
                let mut got = Vec::new();
                match stop_after {
                    Some(n) => {
                        got.resize(n, 0);
                        blocks.read_exact(&mut got).unwrap();
                    }
                    None => {
                        blocks.read_to_end(&mut got).unwrap();
                    }
                }
                drop(blocks);
                (got, reader.join().unwrap())
            })
        };
        let run = |file: &[u8], stop_after: Option<usize>| run_cached(file, stop_after, Cache::All);
        let good = [body.as_slice(), digest.as_slice()].concat();
        for cache in [Cache::All, Cache::None, Cache::Middle] {
            let (got, checked) = run_cached(&good, None, cache);
            assert!(got == body, "the body read back differs");
            checked.unwrap();
        }
        let mut bad = good.clone();
        bad[READ_BLOCK + 5] ^= 1;
        let (_, checked) = run(&bad, Some(10));
        assert!(matches!(checked, Err(RestoreError::HashMismatch { .. })));
    }

    #[test]
    fn go_byte_slices() {
        assert_eq!(go_bytes(&[1, 255, 0]), "[1 255 0]");
    }
}
