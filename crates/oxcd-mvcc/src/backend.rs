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

/// The `key` and `lease` fields of a stored `KeyValue`, read without decoding (nor
/// copying) the rest: rebuilding the index at start-up needs nothing else, and skipping
/// the value saves an allocation and a copy per row.
pub fn kv_key_and_lease(mut b: &[u8]) -> Result<(&[u8], i64), MvccError> {
    fn varint(b: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for (i, &byte) in b.iter().enumerate().take(10) {
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                *b = &b[i + 1..];
                return Some(v);
            }
        }
        None
    }
    let bad = || MvccError::corrupt("undecodable KeyValue");
    let (mut key, mut lease): (&[u8], i64) = (&[], 0);
    while !b.is_empty() {
        let tag = varint(&mut b).ok_or_else(bad)?;
        match tag & 7 {
            0 => {
                let v = varint(&mut b).ok_or_else(bad)?;
                if tag >> 3 == 6 {
                    lease = v as i64;
                }
            }
            1 => b = b.get(8..).ok_or_else(bad)?,
            2 => {
                let len = usize::try_from(varint(&mut b).ok_or_else(bad)?).map_err(|_| bad())?;
                let field = b.get(..len).ok_or_else(bad)?;
                if tag >> 3 == 1 {
                    key = field;
                }
                b = &b[len..];
            }
            5 => b = b.get(4..).ok_or_else(bad)?,
            _ => return Err(bad()),
        }
    }
    Ok((key, lease))
}

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
