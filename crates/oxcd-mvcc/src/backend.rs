//! The redb backend: table definitions and meta helpers.

use redb::{ReadableTable, TableDefinition};

use crate::revision::Revision;
use crate::MvccError;

/// Revision-keyed table: 17-byte revision (+ `t` for tombstones) -> encoded `KeyValue`.
pub const KV_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("key");
/// Generic meta table keyed by name; values are raw bytes (integers big-endian).
pub const META_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Meta key: raft applied index covered by the data (u64).
pub const META_CONSISTENT_INDEX: &str = "consistent_index";
/// Meta key: raft term (u64), for the applier's use.
pub const META_TERM: &str = "term";
/// Meta key: compaction revision that has been scheduled (i64).
pub const META_SCHEDULED_COMPACT: &str = "scheduledCompactRev";
/// Meta key: compaction revision whose physical deletion has finished (i64).
pub const META_FINISHED_COMPACT: &str = "finishedCompactRev";
/// Meta key: the store's current main revision (i64). Not needed by etcd (which
/// derives it from the data), kept so a store whose newest revisions were all
/// compacted away still restores its exact revision.
pub const META_CURRENT_REV: &str = "current_rev";

/// Reads an 8-byte big-endian integer from the meta table.
pub fn meta_get_u64<T>(table: &T, key: &str) -> Result<Option<u64>, MvccError>
where
    T: ReadableTable<&'static str, &'static [u8]>,
{
    let Some(v) = table.get(key)? else {
        return Ok(None);
    };
    let bytes: [u8; 8] = v
        .value()
        .try_into()
        .map_err(|_| MvccError::corrupt(format!("meta {key}: bad length")))?;
    Ok(Some(u64::from_be_bytes(bytes)))
}

/// Reads an i64 meta value (stored as its two's-complement u64).
pub fn meta_get_i64<T>(table: &T, key: &str) -> Result<Option<i64>, MvccError>
where
    T: ReadableTable<&'static str, &'static [u8]>,
{
    Ok(meta_get_u64(table, key)?.map(|v| v as i64))
}

/// Writes an 8-byte big-endian integer to the meta table.
pub fn meta_put_u64(
    table: &mut redb::Table<'_, &'static str, &'static [u8]>,
    key: &str,
    v: u64,
) -> Result<(), MvccError> {
    table.insert(key, v.to_be_bytes().as_slice())?;
    Ok(())
}

/// Fetches and decodes the live (non-tombstone) value at `rev`.
pub fn get_kv<T>(table: &T, rev: Revision) -> Result<oxcd_proto::mvccpb::KeyValue, MvccError>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    let k = rev.to_bytes(false);
    let Some(v) = table.get(k.as_slice())? else {
        return Err(MvccError::corrupt(format!(
            "revision {}.{} is indexed but missing from the backend",
            rev.main, rev.sub
        )));
    };
    decode_kv(v.value())
}

/// Decodes a stored `KeyValue`.
pub fn decode_kv(b: &[u8]) -> Result<oxcd_proto::mvccpb::KeyValue, MvccError> {
    <oxcd_proto::mvccpb::KeyValue as prost::Message>::decode(b)
        .map_err(|e| MvccError::corrupt(format!("undecodable KeyValue: {e}")))
}
