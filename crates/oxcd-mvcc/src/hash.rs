//! Hashes of the key space for comparing members (etcd's `HashByRev`, behind
//! Maintenance.HashKV): every member that applied the same log has the same rows, so the
//! same hash at the same revision; a member whose hash differs has diverged.
//!
//! The hash is a CRC-32 (IEEE) over the revision table's name, then each row's key (the
//! encoded revision) and logical value (the encoded `KeyValue`, however it is stored: see
//! the `rows` module, so members storing the same data in different layouts agree), in
//! revision order, for revisions up to the one asked for.
//! Rows at or below the compact revision that a finished compaction would remove (an
//! in-progress one may not have yet) are skipped, as etcd skips them, so a member in the
//! middle of compacting hashes like one that has finished.

use std::collections::HashSet;

use redb::TableHandle;

use crate::backend::{kv_key_and_lease, KV_TABLE};
use crate::revision::Revision;
use crate::rows::{each_piece, Chunks};
use crate::store::Store;
use crate::MvccError;

/// A hash of the key space at a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvHash {
    /// The CRC-32.
    pub hash: u32,
    /// The compact revision when it was computed (-1: never compacted).
    pub compact_revision: i64,
    /// The revision it covers.
    pub hash_revision: i64,
}

impl Store {
    /// The hash of every revision up to `rev` (0: the current revision), with etcd's
    /// errors for a compacted or future revision (never for 0, as etcd's `HashByRev`:
    /// the current revision may be the compact revision itself).
    pub fn hash_kv(&self, rev: i64) -> Result<KvHash, MvccError> {
        let (rtxn, rev, compact) = {
            let st = self.state.read();
            if rev > 0 && rev > st.committed_rev {
                return Err(MvccError::FutureRev);
            }
            if rev > 0 && rev <= st.compact_rev {
                return Err(MvccError::Compacted);
            }
            let rev = if rev == 0 { st.committed_rev } else { rev };
            (self.begin_read()?, rev, st.compact_rev)
        };
        let table = rtxn.open_table(KV_TABLE)?;
        let chunks = Chunks::new(&*rtxn);
        // Rows at or below the compact revision survive compaction only as the value each
        // key held at that revision: find those first.
        let mut old_rows = Vec::new();
        let upto_compact = Revision::new(compact.saturating_add(1), 0).to_bytes(false);
        for entry in table.range(..upto_compact.as_slice())? {
            let (k, v) = entry?;
            let (r, tombstone) = Revision::from_bytes(k.value())?;
            if !tombstone {
                old_rows.push((kv_key_and_lease(v.value())?.0.to_vec(), r));
            }
        }
        let kept: HashSet<Revision> = {
            let st = self.state.read();
            old_rows
                .into_iter()
                .filter(|(key, r)| st.index.get(key, compact) == Some(*r))
                .map(|(_, r)| r)
                .collect()
        };
        let hi = Revision::new(rev.saturating_add(1), 0).to_bytes(false);
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(KV_TABLE.name().as_bytes());
        for entry in table.range(..hi.as_slice())? {
            let (k, v) = entry?;
            let (r, _) = Revision::from_bytes(k.value())?;
            if r.main > compact || kept.contains(&r) {
                hasher.update(k.value());
                each_piece(&chunks, k.value(), v.value(), &mut |p| hasher.update(p))?;
            }
        }
        Ok(KvHash {
            hash: hasher.finalize(),
            compact_revision: compact,
            hash_revision: rev,
        })
    }
}

#[cfg(test)]
mod tests {
    use oxcd_proto::etcdserverpb::PutRequest;

    use crate::{MvccError, Store};

    fn put(s: &Store, key: &str, value: &str, index: u64) {
        s.put(
            &PutRequest {
                key: key.into(),
                value: value.into(),
                ..Default::default()
            },
            index,
            &|_| true,
        )
        .unwrap();
        s.commit(false).unwrap();
    }

    #[test]
    fn equal_histories_hash_equal_and_compaction_is_invisible() {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let stores: Vec<Store> = dirs
            .iter()
            .map(|d| Store::open(&d.path().join("db")).unwrap())
            .collect();
        for s in &stores {
            put(s, "a", "1", 1);
            put(s, "b", "1", 2);
            put(s, "a", "2", 3);
        }
        let h = stores[0].hash_kv(0).unwrap();
        assert_eq!(h, stores[1].hash_kv(0).unwrap());
        assert_eq!(h.hash_revision, 4);
        assert_ne!(
            h.hash,
            stores[0].hash_kv(3).unwrap().hash,
            "another revision"
        );
        put(&stores[1], "c", "1", 4);
        assert_ne!(
            stores[1].hash_kv(0).unwrap().hash,
            h.hash,
            "a diverged member"
        );
        assert_eq!(stores[1].hash_kv(4).unwrap().hash, h.hash);

        // Compacting at 4 drops a=1 (rev 2) on store 0 only.
        put(&stores[0], "c", "1", 4);
        let before = stores[0].hash_kv(5).unwrap();
        assert_eq!(before.hash, stores[1].hash_kv(5).unwrap().hash);
        stores[0].compact(4, 5).unwrap();
        stores[0].commit(true).unwrap();
        let compacted = stores[0].hash_kv(5).unwrap();
        assert_eq!(compacted.compact_revision, 4);
        assert_ne!(compacted.hash, before.hash, "the compacted row is gone");
        assert_eq!(stores[0].hash_kv(4).unwrap_err(), MvccError::Compacted);
        assert_eq!(stores[0].hash_kv(99).unwrap_err(), MvccError::FutureRev);
        // The same compaction on the other store gives the same hash.
        stores[1].compact(4, 5).unwrap();
        stores[1].commit(true).unwrap();
        assert_eq!(stores[1].hash_kv(5).unwrap(), compacted);
        // Compacted at the current revision: revision 0 (now) still hashes, as in etcd.
        stores[1].compact(5, 6).unwrap();
        stores[1].commit(true).unwrap();
        let now = stores[1].hash_kv(0).unwrap();
        assert_eq!((now.hash_revision, now.compact_revision), (5, 5));
        assert_eq!(stores[1].hash_kv(5).unwrap_err(), MvccError::Compacted);
    }
}
