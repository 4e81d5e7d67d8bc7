//! [`BackendBuilder`]: a new backend file written from revisions taken elsewhere — an
//! etcd backend being imported — rather than by applying requests. The revision table
//! uses etcd's own encoding (17-byte revision key, `t` for a tombstone, an encoded
//! `mvccpb.KeyValue` as value), so etcd's rows are checked and stored as they are (a large
//! one split into chunks like any other: see the `rows` module).

use std::path::{Path, PathBuf};

use redb::{Database, Durability, TableDefinition, WriteTransaction};

use crate::backend::{
    decode_kv, meta_put_u64, KV_TABLE, META_CONSISTENT_INDEX, META_CURRENT_REV,
    META_FINISHED_COMPACT, META_SCHEDULED_COMPACT, META_TABLE,
};
use crate::revision::Revision;
use crate::rows::{put_row, Chunks};
use crate::MvccError;

/// Rows written per (non-durable) commit, so a large import never holds all of it in one
/// transaction.
const ROWS_PER_COMMIT: u64 = 20_000;
/// Or this many bytes of rows, whichever comes first (20,000 rows of 64 KiB would be 1.3 GB
/// in one transaction).
const BYTES_PER_COMMIT: u64 = 64 << 20;

/// What a [`BackendBuilder`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BuiltBackend {
    /// Revision rows (puts and tombstones).
    pub rows: u64,
    /// Of which tombstones.
    pub tombstones: u64,
    /// The store's current revision when opened.
    pub revision: i64,
    /// The finished compaction revision (-1 if none).
    pub compact_revision: i64,
}

/// Writes a new backend file. Nothing is visible under the final name until
/// [`BackendBuilder::finish`]: the rows go into `<path>.building`, which is renamed
/// durably at the end (and removed if the builder is dropped unfinished).
pub struct BackendBuilder {
    db: Option<Database>,
    txn: Option<WriteTransaction>,
    path: PathBuf,
    building: PathBuf,
    pending: u64,
    pending_bytes: u64,
    built: BuiltBackend,
    max_main: i64,
    last: Option<Revision>,
    scheduled: Option<i64>,
    finished: Option<i64>,
}

impl BackendBuilder {
    /// Starts a new backend to be placed at `path`, which must not exist.
    pub fn create(path: &Path) -> Result<BackendBuilder, MvccError> {
        if path.exists() {
            return Err(MvccError::backend(format!(
                "{} exists already: a new backend is never written over one",
                path.display()
            )));
        }
        let mut building = path.as_os_str().to_owned();
        building.push(".building");
        let building = PathBuf::from(building);
        let _ = std::fs::remove_file(&building);
        let db = redb::Builder::new()
            .set_cache_size(crate::DEFAULT_CACHE_BYTES)
            .create(&building)?;
        let txn = db.begin_write()?;
        Ok(BackendBuilder {
            db: Some(db),
            txn: Some(txn),
            path: path.to_path_buf(),
            building,
            pending: 0,
            pending_bytes: 0,
            built: BuiltBackend {
                compact_revision: -1,
                ..Default::default()
            },
            max_main: 0,
            last: None,
            scheduled: None,
            finished: None,
        })
    }

    fn txn(&mut self) -> Result<&mut WriteTransaction, MvccError> {
        if self.txn.is_none() {
            let db = self
                .db
                .as_ref()
                .ok_or_else(|| MvccError::backend("backend builder already finished"))?;
            self.txn = Some(db.begin_write()?);
        }
        self.txn
            .as_mut()
            .ok_or_else(|| MvccError::backend("backend builder already finished"))
    }

    /// Adds one row of the revision table: `rev_key` as etcd encodes it, `kv` an encoded
    /// `mvccpb.KeyValue`. Rows must come in ascending revision order (as a B+tree yields
    /// them). Checks that the row is one etcd could have written: a valid revision key, a
    /// decodable value with a key, and for a put a `mod_revision` equal to the row's
    /// revision, a `create_revision` not after it and a version of at least 1.
    pub fn put_revision(&mut self, rev_key: &[u8], kv: &[u8]) -> Result<Revision, MvccError> {
        let (rev, tombstone) = Revision::from_bytes(rev_key)?;
        let at = || format!("revision {}.{}", rev.main, rev.sub);
        if rev.main < 1 || rev.sub < 0 {
            return Err(MvccError::corrupt(format!(
                "{}: not a valid revision",
                at()
            )));
        }
        if let Some(last) = self.last {
            if rev <= last {
                return Err(MvccError::corrupt(format!(
                    "{} follows {}.{}: revisions out of order",
                    at(),
                    last.main,
                    last.sub
                )));
            }
        }
        let decoded = decode_kv(kv).map_err(|e| MvccError::corrupt(format!("{}: {e}", at())))?;
        if decoded.key.is_empty() {
            return Err(MvccError::corrupt(format!(
                "{}: a value without a key",
                at()
            )));
        }
        if !tombstone
            && (decoded.mod_revision != rev.main
                || decoded.create_revision < 1
                || decoded.create_revision > rev.main
                || decoded.version < 1)
        {
            return Err(MvccError::corrupt(format!(
                "{}: key {:?} has mod_revision {}, create_revision {}, version {}",
                at(),
                String::from_utf8_lossy(&decoded.key),
                decoded.mod_revision,
                decoded.create_revision,
                decoded.version
            )));
        }
        {
            let txn: &WriteTransaction = self.txn()?;
            let mut t = txn.open_table(KV_TABLE)?;
            put_row(&mut t, &Chunks::new(txn), rev_key, kv)?;
        }
        self.last = Some(rev);
        self.max_main = self.max_main.max(rev.main);
        self.built.rows += 1;
        self.built.tombstones += u64::from(tombstone);
        self.pending += 1;
        self.pending_bytes += kv.len() as u64;
        if self.pending >= ROWS_PER_COMMIT || self.pending_bytes >= BYTES_PER_COMMIT {
            self.commit(false)?;
        }
        Ok(rev)
    }

    /// Records etcd's compaction positions: the scheduled and the finished compaction
    /// revisions (a scheduled one past the finished one is completed when the store opens,
    /// as etcd does).
    pub fn set_compaction(&mut self, scheduled: Option<i64>, finished: Option<i64>) {
        self.scheduled = scheduled;
        self.finished = finished;
    }

    /// Adds `key` -> `value` to the auxiliary table `table` (see [`crate::Store::aux_put`]).
    pub fn aux_put(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<(), MvccError> {
        let name = crate::aux::table_name(table);
        let txn = self.txn()?;
        let mut t = txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&name))?;
        t.insert(key, value)?;
        Ok(())
    }

    fn commit(&mut self, durable: bool) -> Result<(), MvccError> {
        if let Some(mut txn) = self.txn.take() {
            txn.set_durability(if durable {
                Durability::Immediate
            } else {
                Durability::None
            })?;
            txn.commit()?;
        }
        self.pending = 0;
        self.pending_bytes = 0;
        Ok(())
    }

    /// Writes the meta table (current revision, compaction, a consistent index of 0: the
    /// raft log of the new member starts empty), commits durably and renames the file to
    /// its final name durably.
    pub fn finish(mut self) -> Result<BuiltBackend, MvccError> {
        let finished = self.finished.unwrap_or(-1);
        let revision = self.max_main.max(finished).max(1);
        let scheduled = self.scheduled;
        {
            let txn = self.txn()?;
            txn.open_table(KV_TABLE)?;
            let mut meta = txn.open_table(META_TABLE)?;
            meta_put_u64(&mut meta, META_CONSISTENT_INDEX, 0)?;
            meta_put_u64(&mut meta, META_CURRENT_REV, revision as u64)?;
            if finished >= 0 {
                meta_put_u64(&mut meta, META_FINISHED_COMPACT, finished as u64)?;
            }
            if let Some(s) = scheduled {
                meta_put_u64(&mut meta, META_SCHEDULED_COMPACT, s as u64)?;
            }
        }
        self.commit(true)?;
        drop(self.db.take());
        std::fs::rename(&self.building, &self.path).map_err(|e| {
            let _ = std::fs::remove_file(&self.building);
            MvccError::backend(format!(
                "cannot rename {} to {}: {e}",
                self.building.display(),
                self.path.display()
            ))
        })?;
        oxcd_fs::sync_parent(&self.path).map_err(|e| {
            MvccError::backend(format!(
                "cannot sync the directory of {}: {e}",
                self.path.display()
            ))
        })?;
        self.built.revision = revision;
        self.built.compact_revision = finished;
        Ok(self.built)
    }
}

impl Drop for BackendBuilder {
    fn drop(&mut self) {
        if self.db.is_some() {
            self.txn = None;
            self.db = None;
            let _ = std::fs::remove_file(&self.building);
        }
    }
}

#[cfg(test)]
mod tests {
    use oxcd_proto::etcdserverpb::RangeRequest;
    use oxcd_proto::mvccpb::KeyValue;
    use prost::Message;

    use super::*;
    use crate::Store;

    fn kv(key: &str, create: i64, m: i64, version: i64, lease: i64) -> Vec<u8> {
        KeyValue {
            key: key.into(),
            create_revision: create,
            mod_revision: m,
            version,
            value: format!("v{m}").into_bytes(),
            lease,
        }
        .encode_to_vec()
    }

    fn tomb(key: &str) -> Vec<u8> {
        KeyValue {
            key: key.into(),
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn built_rows_open_as_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut b = BackendBuilder::create(&path).unwrap();
        b.put_revision(&Revision::new(2, 0).to_bytes(false), &kv("a", 2, 2, 1, 0))
            .unwrap();
        b.put_revision(&Revision::new(3, 0).to_bytes(false), &kv("a", 2, 3, 2, 7))
            .unwrap();
        b.put_revision(&Revision::new(4, 0).to_bytes(false), &kv("b", 4, 4, 1, 0))
            .unwrap();
        b.put_revision(&Revision::new(5, 0).to_bytes(true), &tomb("b"))
            .unwrap();
        b.aux_put("lease", &7u64.to_be_bytes(), b"rec").unwrap();
        b.set_compaction(Some(3), Some(3));
        // Out of order, bad key, inconsistent put: refused.
        assert!(b
            .put_revision(&Revision::new(5, 0).to_bytes(false), &kv("c", 5, 5, 1, 0))
            .is_err());
        assert!(b.put_revision(b"nonsense", &kv("c", 6, 6, 1, 0)).is_err());
        assert!(b
            .put_revision(&Revision::new(6, 0).to_bytes(false), &kv("c", 6, 5, 1, 0))
            .is_err());
        b.put_revision(&Revision::new(9, 0).to_bytes(true), &tomb("a"))
            .unwrap();
        assert!(!path.exists(), "not visible before finish");
        let built = b.finish().unwrap();
        assert_eq!(
            built,
            BuiltBackend {
                rows: 5,
                tombstones: 2,
                revision: 9,
                compact_revision: 3
            }
        );
        let s = Store::open(&path).unwrap();
        assert_eq!(s.current_revision(), 9);
        assert_eq!(s.compact_revision(), 3);
        assert_eq!(s.consistent_index(), 0);
        let r = s
            .range(&RangeRequest {
                key: b"a".to_vec(),
                revision: 4,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(r.kvs[0].version, 2);
        assert_eq!(r.kvs[0].lease, 7);
        let now = s
            .range(&RangeRequest {
                key: vec![0],
                range_end: vec![0],
                ..Default::default()
            })
            .unwrap();
        assert!(now.kvs.is_empty());
        assert_eq!(s.aux_scan("lease").unwrap().len(), 1);
    }

    #[test]
    fn an_unfinished_build_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut b = BackendBuilder::create(&path).unwrap();
        b.put_revision(&Revision::new(2, 0).to_bytes(false), &kv("a", 2, 2, 1, 0))
            .unwrap();
        drop(b);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        std::fs::write(&path, b"x").unwrap();
        assert!(BackendBuilder::create(&path).is_err());
    }
}
