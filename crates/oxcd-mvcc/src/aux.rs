//! Auxiliary tables: small named byte-to-byte tables that live in the same redb database as
//! the key space and are written in the *same* write batch as the revisions and the
//! consistent index.
//!
//! The store knows nothing about what callers keep there (the server keeps its leases in
//! one); what it guarantees is atomicity: an auxiliary write made while applying a raft entry
//! becomes durable together with that entry's consistent index, or not at all.

use redb::{ReadableTable, TableDefinition, TableError};

use crate::store::Store;
use crate::MvccError;

/// Prefix of every auxiliary table's redb name, so that they can never collide with the
/// store's own tables (`key`, `meta`).
const AUX_PREFIX: &str = "aux/";

/// One entry of an auxiliary table: (key, value).
pub type AuxEntry = (Vec<u8>, Vec<u8>);

pub(crate) fn table_name(name: &str) -> String {
    format!("{AUX_PREFIX}{name}")
}

impl Store {
    /// Inserts or replaces `key` -> `value` in the auxiliary table `table`, in the current
    /// write batch (visible to [`Store::aux_scan`] after the next [`Store::commit`]).
    pub fn aux_put(&self, table: &str, key: &[u8], value: &[u8]) -> Result<(), MvccError> {
        let name = table_name(table);
        self.with_write_txn(|txn| {
            let mut t = txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&name))?;
            t.insert(key, value)?;
            Ok(())
        })
    }

    /// Removes `key` from the auxiliary table `table` in the current write batch; removing a
    /// missing key is not an error.
    pub fn aux_delete(&self, table: &str, key: &[u8]) -> Result<(), MvccError> {
        let name = table_name(table);
        self.with_write_txn(|txn| {
            let mut t = txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&name))?;
            t.remove(key)?;
            Ok(())
        })
    }

    /// Every entry of the auxiliary table `table` as of the last commit, in key order; an
    /// auxiliary table never written to is empty.
    pub fn aux_scan(&self, table: &str) -> Result<Vec<AuxEntry>, MvccError> {
        let name = table_name(table);
        let rtxn = self.begin_read()?;
        let t = match rtxn.open_table(TableDefinition::<&[u8], &[u8]>::new(&name)) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;

    #[test]
    fn aux_writes_commit_with_the_batch_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let s = Store::open(&path).unwrap();
            assert!(s.aux_scan("t").unwrap().is_empty());
            s.aux_put("t", b"b", b"2").unwrap();
            s.aux_put("t", b"a", b"1").unwrap();
            s.aux_put("t", b"c", b"3").unwrap();
            s.aux_delete("t", b"c").unwrap();
            s.set_consistent_index(7);
            // Not visible before the commit.
            assert!(s.aux_scan("t").unwrap().is_empty());
            s.commit(true).unwrap();
            assert_eq!(
                s.aux_scan("t").unwrap(),
                vec![
                    (b"a".to_vec(), b"1".to_vec()),
                    (b"b".to_vec(), b"2".to_vec())
                ]
            );
            // An uncommitted batch is lost on a crash (drop without commit).
            s.aux_put("t", b"z", b"9").unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.consistent_index(), 7);
        assert_eq!(s.aux_scan("t").unwrap().len(), 2);
        assert!(s.aux_scan("other").unwrap().is_empty());
    }
}
