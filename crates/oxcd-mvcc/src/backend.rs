//! The redb backend: table definitions and meta helpers.

use redb::{ReadableTable, TableDefinition};

use crate::MvccError;

/// Revision-keyed table: 17-byte revision (+ `t` for tombstones) -> encoded `KeyValue`, or
/// for a large row its head behind a marker (see the `rows` module, which every read and
/// write of it goes through).
pub const KV_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("key");
/// The small chunks of the large rows of [`KV_TABLE`]: 17-byte revision + chunk index
/// (u32, big-endian) -> [`CHUNK_BYTES`] bytes of the row. One of [`KV_CHUNK_TABLES`].
pub const KV_CHUNK_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("key_chunk");
/// The 16 KiB-leaf chunks of large rows (keyed as in [`KV_CHUNK_TABLE`]).
pub const KV_CHUNK_16K_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("key_chunk_16k");
/// The 64 KiB-leaf chunks of large rows (keyed as in [`KV_CHUNK_TABLE`]).
pub const KV_CHUNK_64K_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("key_chunk_64k");
/// Every chunk table, smallest chunks first, in the order of
/// [`CHUNK_TIER_BYTES`](crate::rows::CHUNK_TIER_BYTES): a row's chunks of each size live
/// in the table of that size (see the `rows` module).
pub const KV_CHUNK_TABLES: [TableDefinition<&[u8], &[u8]>; 3] =
    [KV_CHUNK_TABLE, KV_CHUNK_16K_TABLE, KV_CHUNK_64K_TABLE];

/// Whether `name` is one of [`KV_CHUNK_TABLES`] (tables that hold pieces of revision
/// rows, never walked on their own).
pub fn is_chunk_table(name: &str) -> bool {
    use redb::TableHandle;
    KV_CHUNK_TABLES.iter().any(|t| t.name() == name)
}
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

/// Decodes a logical row (an encoded `KeyValue`).
pub fn decode_kv(b: &[u8]) -> Result<oxcd_proto::mvccpb::KeyValue, MvccError> {
    <oxcd_proto::mvccpb::KeyValue as prost::Message>::decode(b)
        .map_err(|e| MvccError::corrupt(format!("undecodable KeyValue: {e}")))
}

/// The `key` and `lease` fields of a [`KV_TABLE`] value — an encoded `KeyValue` (an inline
/// row, or a row of etcd's) or the head of a chunked row (see the `rows` module) — read
/// without decoding (nor copying) the rest, nor reading any chunk: rebuilding the index at
/// start-up needs nothing else, and skipping the value saves an allocation and a copy per
/// row.
pub fn kv_key_and_lease(b: &[u8]) -> Result<(&[u8], i64), MvccError> {
    crate::rows::stored_key_and_lease(b)
}

pub use crate::rows::{read_row_in, write_row_in, CHUNK_BYTES, CHUNK_TIER_BYTES, INLINE_MAX};

#[cfg(test)]
mod tests {
    use oxcd_proto::mvccpb::KeyValue;
    use prost::Message;

    use super::*;

    #[test]
    fn key_and_lease_match_prost() {
        for kv in [
            KeyValue::default(),
            KeyValue {
                key: b"k".to_vec(),
                ..Default::default()
            },
            KeyValue {
                key: vec![7; 300],
                create_revision: 1 << 40,
                mod_revision: 3,
                version: 2,
                value: vec![1; 100_000],
                lease: 0x694d_8a6b_1c2e_0f01,
            },
            KeyValue {
                key: b"neg".to_vec(),
                lease: -5,
                ..Default::default()
            },
        ] {
            let b = kv.encode_to_vec();
            assert_eq!(kv_key_and_lease(&b).unwrap(), (&kv.key[..], kv.lease));
            let f = crate::rows::encoded_fields(&b).unwrap();
            assert_eq!(
                (&b[f.key], f.create_revision, f.version, f.lease),
                (&kv.key[..], kv.create_revision, kv.version, kv.lease)
            );
        }
        let b = KeyValue {
            key: b"abc".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        }
        .encode_to_vec();
        // Cut inside a field (the key field is bytes 0..5, the value field 5..8).
        for cut in [1, 2, 3, 4, 6, 7] {
            assert!(kv_key_and_lease(&b[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(kv_key_and_lease(&b[..5]).unwrap(), (&b"abc"[..], 0));
    }
}
