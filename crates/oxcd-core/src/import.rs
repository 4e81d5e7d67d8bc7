//! Moving in from etcd: a new oxcd data dir built from what etcd stored — a snapshot file
//! (`etcdctl snapshot save`: the backend followed by its sha256) or a stopped etcd's
//! backend (`<data-dir>/member/snap/db`), both bbolt files read with `oxcd-bbolt`.
//!
//! What is carried over, bucket by bucket of etcd's backend:
//!
//! * `key`: every revision row as it is (etcd's and oxcd's revision tables share their
//!   encoding: revision key -> `mvccpb.KeyValue`, tombstones marked), so every key keeps
//!   its create and mod revisions, version and lease, and the history down to the
//!   compaction point stays readable and watchable.
//! * `meta`: `scheduledCompactRev` and `finishedCompactRev` (the compaction point; a
//!   compaction etcd scheduled but did not finish is finished when oxcd opens the data).
//!   etcd's consistent index is not kept: the imported data starts a new raft log.
//! * `lease`: every lease with its granted TTL and its checkpointed remaining TTL, into
//!   the lessor's table (its record has the same fields as etcd's `leasepb.Lease`).
//! * `auth`, `authUsers`, `authRoles`: copied key for key into the auxiliary tables
//!   [`AUTH_TABLE`], [`AUTH_USERS_TABLE`] and [`AUTH_ROLES_TABLE`], in etcd's encoding
//!   (`authEnabled` and `authRevision` in the first; `authpb.User` and `authpb.Role` by
//!   name in the others), for the auth store to read. Users and roles are checked to
//!   decode.
//! * Not carried over: `members`, `members_removed`, `cluster` (the imported data starts
//!   a new cluster, whose membership the first start's `--initial-cluster` flags
//!   bootstrap, as for any new data dir) and `alarm` (alarms belong to the old members).
//!
//! The import writes `<data-dir>/member/snap/db` only (no WAL, no membership), through
//! [`BackendBuilder`]: nothing appears under the final name until every row is checked and
//! written, and a failed import removes what it created.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oxcd_bbolt::{Db, Value};
use oxcd_mvcc::{BackendBuilder, MvccError, Revision};
use oxcd_proto::authpb;
use oxcd_proto::oxcdinternal::LeaseRecord;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::data_dir::DataDir;

/// Auxiliary table holding etcd's `auth` bucket: `authEnabled` (one byte, 1 = on) and
/// `authRevision` (u64, big-endian).
pub const AUTH_TABLE: &str = "auth";
/// Auxiliary table holding etcd's `authUsers` bucket: user name -> encoded `authpb.User`.
pub const AUTH_USERS_TABLE: &str = "authUsers";
/// Auxiliary table holding etcd's `authRoles` bucket: role name -> encoded `authpb.Role`.
pub const AUTH_ROLES_TABLE: &str = "authRoles";

/// How often progress is logged during a large import.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// What to import.
#[derive(Debug, Clone)]
pub enum ImportSource {
    /// A snapshot file written by `etcdctl snapshot save` (or etcd's Maintenance.Snapshot).
    Snapshot {
        /// The file.
        path: PathBuf,
        /// Accept a file without (or with a wrong) sha256 trailer, as etcd's
        /// `--skip-hash-check` (e.g. a backend file copied by hand).
        skip_hash_check: bool,
    },
    /// The data dir of a stopped etcd: its `member/snap/db` is read.
    DataDir(PathBuf),
}

/// What an import found and wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Revision rows imported (puts and tombstones).
    pub revisions: u64,
    /// Of which tombstones.
    pub tombstones: u64,
    /// Keys live at the current revision.
    pub live_keys: u64,
    /// The current revision of the imported data.
    pub revision: i64,
    /// The compaction revision (-1 if never compacted).
    pub compact_revision: i64,
    /// Leases imported.
    pub leases: u64,
    /// Auth users imported.
    pub users: u64,
    /// Auth roles imported.
    pub roles: u64,
    /// Whether auth was enabled in etcd.
    pub auth_enabled: bool,
    /// etcd's consistent index (raft applied index) in the source, for the log.
    pub etcd_consistent_index: u64,
    /// Buckets of the source that were not imported.
    pub skipped_buckets: Vec<String>,
}

/// Why an import failed. Nothing is left in the target data dir then.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// etcd's `--skip-hash-check` text, for a file without a sha256 trailer.
    #[error("snapshot missing hash but --skip-hash-check=false")]
    MissingHash,
    /// The file's sha256 trailer does not match its contents.
    #[error(
        "snapshot file {path} is damaged or truncated: expected sha256 {expected}, got {got} \
         (--skip-hash-check imports it anyway)"
    )]
    HashMismatch {
        /// The file.
        path: PathBuf,
        /// The trailer.
        expected: String,
        /// The contents' hash.
        got: String,
    },
    /// The etcd that owns the data dir is still running.
    #[error(
        "{0} is locked by a running etcd: stop it first, or import a snapshot taken with \
         `etcdctl snapshot save`"
    )]
    Locked(PathBuf),
    /// The target data dir holds a member already.
    #[error("{0} exists already: import into a new data dir")]
    TargetExists(PathBuf),
    /// The target data dir could not be created.
    #[error("cannot create {path}: {reason}")]
    Target {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The source is not a bbolt file, or a damaged one.
    #[error("{path}: {source}")]
    Bolt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: oxcd_bbolt::Error,
    },
    /// The source is a bbolt file but not what etcd writes.
    #[error("{path}: not an etcd v3 backend: {what}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// Writing the new backend failed.
    #[error("cannot write the new backend: {0}")]
    Write(#[from] MvccError),
}

/// Reads the source's bytes: a snapshot's hash is checked and cut off; a data dir's backend
/// is read under a shared lock, refused while etcd holds it.
fn read_source(src: &ImportSource) -> Result<(PathBuf, Vec<u8>), ImportError> {
    match src {
        ImportSource::Snapshot {
            path,
            skip_hash_check,
        } => {
            let read = |source| ImportError::Read {
                path: path.clone(),
                source,
            };
            let mut data = std::fs::read(path).map_err(read)?;
            // etcd's rule: a file with a trailer is a multiple of 512 bytes plus 32.
            let has_hash = data.len() % 512 == 32;
            if !has_hash && !skip_hash_check {
                return Err(ImportError::MissingHash);
            }
            if has_hash {
                let at = data.len() - 32;
                if !skip_hash_check {
                    let got = Sha256::digest(&data[..at]);
                    if got.as_slice() != &data[at..] {
                        return Err(ImportError::HashMismatch {
                            path: path.clone(),
                            expected: hex(&data[at..]),
                            got: hex(&got),
                        });
                    }
                }
                data.truncate(at);
            }
            Ok((path.clone(), data))
        }
        ImportSource::DataDir(dir) => {
            let path = dir.join("member").join("snap").join("db");
            let read = |source| ImportError::Read {
                path: path.clone(),
                source,
            };
            let file = std::fs::File::open(&path).map_err(read)?;
            // etcd's bbolt holds an exclusive flock on its backend while it runs.
            match file.try_lock_shared() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(ImportError::Locked(path.clone()))
                }
                Err(std::fs::TryLockError::Error(source)) => return Err(read(source)),
            }
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut &file, &mut data).map_err(read)?;
            Ok((path, data))
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Imports `src` into the new data dir `dir` (whose `member` directory must not exist).
pub fn import_etcd(src: &ImportSource, dir: &DataDir) -> Result<ImportReport, ImportError> {
    let started = Instant::now();
    let (path, data) = read_source(src)?;
    let bolt_err = |source| ImportError::Bolt {
        path: path.clone(),
        source,
    };
    let db = Db::from_bytes(data).map_err(bolt_err)?;
    // The whole structure first: a damaged file is refused before anything is written.
    let stats = db.check().map_err(bolt_err)?;
    tracing::info!(
        source = %path.display(),
        bytes = db.size(),
        page_size = db.page_size(),
        txid = db.meta().txid,
        buckets = stats.buckets,
        entries = stats.keys,
        "reading etcd backend"
    );
    if db.bucket(b"key").map_err(bolt_err)?.is_none() {
        return Err(ImportError::Format {
            path,
            what: "it has no `key` bucket".into(),
        });
    }

    let member = dir.member();
    if member.exists() {
        return Err(ImportError::TargetExists(member));
    }
    let root_existed = dir.root().exists();
    dir.create().map_err(|e| ImportError::Target {
        path: member.clone(),
        reason: e.to_string(),
    })?;
    let result = build(&db, &path, dir, started);
    if result.is_err() {
        // Leave nothing behind: the member dir (and the data dir, if we made it).
        let _ = std::fs::remove_dir_all(&member);
        if !root_existed {
            let _ = std::fs::remove_dir(dir.root());
        }
    }
    result
}

fn build(
    db: &Db,
    path: &Path,
    dir: &DataDir,
    started: Instant,
) -> Result<ImportReport, ImportError> {
    let bolt_err = |source| ImportError::Bolt {
        path: path.to_path_buf(),
        source,
    };
    let format = |what: String| ImportError::Format {
        path: path.to_path_buf(),
        what,
    };
    let mut report = ImportReport::default();
    let mut b = BackendBuilder::create(&dir.backend())?;

    // Revisions.
    let mut live: std::collections::HashMap<Vec<u8>, bool> = std::collections::HashMap::new();
    let mut last_log = Instant::now();
    let mut rows = 0u64;
    if let Some(keys) = db.bucket(b"key").map_err(bolt_err)? {
        for entry in keys.iter() {
            let (k, v) = entry.map_err(bolt_err)?;
            let Value::Data(v) = v else {
                return Err(format("a nested bucket inside `key`".into()));
            };
            let rev = b.put_revision(k, v).map_err(|e| match e {
                MvccError::Corrupt { what } => format(what),
                e => ImportError::Write(e),
            })?;
            let tombstone = k.len() == 18;
            let key = oxcd_mvcc::backend::kv_key_and_lease(v)?.0;
            live.insert(key.to_vec(), !tombstone);
            rows += 1;
            if last_log.elapsed() >= PROGRESS_EVERY {
                last_log = Instant::now();
                tracing::info!(
                    revisions = rows,
                    revision = rev.main,
                    elapsed_s = started.elapsed().as_secs(),
                    "importing"
                );
            }
        }
    }
    report.live_keys = live.values().filter(|l| **l).count() as u64;
    drop(live);

    // The compaction point.
    if let Some(meta) = db.bucket(b"meta").map_err(bolt_err)? {
        let rev_of = |name: &[u8]| -> Result<Option<i64>, ImportError> {
            match meta.get(name).map_err(bolt_err)? {
                None => Ok(None),
                Some(v) => Revision::from_bytes(v)
                    .map(|(r, _)| Some(r.main))
                    .map_err(|e| format(format!("meta {}: {e}", String::from_utf8_lossy(name)))),
            }
        };
        b.set_compaction(
            rev_of(b"scheduledCompactRev")?,
            rev_of(b"finishedCompactRev")?,
        );
        if let Some(ci) = meta.get(b"consistent_index").map_err(bolt_err)? {
            if let Ok(a) = <[u8; 8]>::try_from(ci) {
                report.etcd_consistent_index = u64::from_be_bytes(a);
            }
        }
    }

    // Leases.
    if let Some(leases) = db.bucket(b"lease").map_err(bolt_err)? {
        for entry in leases.iter() {
            let (k, v) = entry.map_err(bolt_err)?;
            let Value::Data(v) = v else {
                return Err(format("a nested bucket inside `lease`".into()));
            };
            let rec = LeaseRecord::decode(v)
                .map_err(|e| format(format!("undecodable lease {}: {e}", hex(k))))?;
            if k != (rec.id as u64).to_be_bytes() {
                return Err(format(format!(
                    "lease record {:x} stored under key {}",
                    rec.id,
                    hex(k)
                )));
            }
            b.aux_put(oxcd_lease::LEASE_TABLE, k, &rec.encode_to_vec())?;
            report.leases += 1;
        }
    }

    // Auth.
    if let Some(auth) = db.bucket(b"auth").map_err(bolt_err)? {
        for entry in auth.iter() {
            if let (k, Value::Data(v)) = entry.map_err(bolt_err)? {
                if k == b"authEnabled" {
                    report.auth_enabled = v == [1];
                }
                b.aux_put(AUTH_TABLE, k, v)?;
            }
        }
    }
    for (bucket, table) in [
        (&b"authUsers"[..], AUTH_USERS_TABLE),
        (b"authRoles", AUTH_ROLES_TABLE),
    ] {
        let Some(items) = db.bucket(bucket).map_err(bolt_err)? else {
            continue;
        };
        for entry in items.iter() {
            let (k, Value::Data(v)) = entry.map_err(bolt_err)? else {
                continue;
            };
            let name = if table == AUTH_USERS_TABLE {
                authpb::User::decode(v).map(|u| u.name)
            } else {
                authpb::Role::decode(v).map(|r| r.name)
            }
            .map_err(|e| {
                format(format!(
                    "{table}: undecodable {:?}: {e}",
                    String::from_utf8_lossy(k)
                ))
            })?;
            if name != k {
                return Err(format(format!(
                    "{table}: record {:?} stored under {:?}",
                    String::from_utf8_lossy(&name),
                    String::from_utf8_lossy(k)
                )));
            }
            b.aux_put(table, k, v)?;
            if table == AUTH_USERS_TABLE {
                report.users += 1;
            } else {
                report.roles += 1;
            }
        }
    }

    for name in db.bucket_names().map_err(bolt_err)? {
        let known: &[&[u8]] = &[
            b"key",
            b"meta",
            b"lease",
            b"auth",
            b"authUsers",
            b"authRoles",
        ];
        if !known.contains(&name) {
            report
                .skipped_buckets
                .push(String::from_utf8_lossy(name).into_owned());
        }
    }

    let built = b.finish()?;
    report.revisions = built.rows;
    report.tombstones = built.tombstones;
    report.revision = built.revision;
    report.compact_revision = built.compact_revision;
    tracing::info!(
        revisions = report.revisions,
        live_keys = report.live_keys,
        revision = report.revision,
        compact_revision = report.compact_revision,
        leases = report.leases,
        users = report.users,
        roles = report.roles,
        auth_enabled = report.auth_enabled,
        skipped_buckets = ?report.skipped_buckets,
        elapsed_ms = started.elapsed().as_millis() as u64,
        backend = %dir.backend().display(),
        "imported etcd data"
    );
    Ok(report)
}
