//! Damaging a stopped member's backend on purpose, for the tests of the corruption checks.

use std::path::Path;

use oxcd_mvcc::backend::{kv_key_and_lease, read_row_in, write_row_in, KV_TABLE};
use oxcd_proto::mvccpb::KeyValue;
use prost::Message;
use redb::ReadableTable;

/// Changes one byte of the value of `key`'s newest revision in the backend of the stopped
/// oxcd member whose data dir is `data_dir`, in place: same revision, same length, so the
/// member opens and serves it as before, but its data differs from its peers' (what a
/// flipped bit on disk does, short of breaking the file).
pub fn flip_value_byte(data_dir: &Path, key: &[u8]) -> Result<(), String> {
    let path = data_dir.join("member/snap/db");
    let err = |what: &str, e: &dyn std::fmt::Display| format!("{}: {what}: {e}", path.display());
    let db = redb::Database::open(&path).map_err(|e| err("open", &e))?;
    let txn = db.begin_write().map_err(|e| err("begin", &e))?;
    // Rows are read and written through the store's layout (a large row is in chunks).
    let rev = {
        let table = txn.open_table(KV_TABLE).map_err(|e| err("table", &e))?;
        let mut found = None;
        for row in table.iter().map_err(|e| err("scan", &e))?.rev() {
            let (rev, value) = row.map_err(|e| err("row", &e))?;
            let (row_key, _) = kv_key_and_lease(value.value()).map_err(|e| err("decode", &e))?;
            if row_key == key {
                found = Some(rev.value().to_vec());
                break;
            }
        }
        found.ok_or_else(|| err("find", &"no such key"))?
    };
    let row = read_row_in(&txn, &rev)
        .map_err(|e| err("read", &e))?
        .ok_or_else(|| err("read", &"the row vanished"))?;
    let mut kv = KeyValue::decode(row.as_slice()).map_err(|e| err("decode", &e))?;
    let first = kv
        .value
        .first_mut()
        .ok_or_else(|| err("flip", &"the value is empty"))?;
    *first ^= 0x01;
    write_row_in(&txn, &rev, &kv.encode_to_vec()).map_err(|e| err("write", &e))?;
    txn.commit().map_err(|e| err("commit", &e))
}
