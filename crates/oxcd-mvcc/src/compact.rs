//! Physical compaction (etcd's `kvstore_compaction.go`).

use redb::ReadableTable;

use crate::backend::{meta_put_u64, KV_TABLE, META_FINISHED_COMPACT, META_TABLE};
use crate::revision::Revision;
use crate::store::{Store, Writer};
use crate::MvccError;

/// Revisions examined per write transaction while deleting.
pub(crate) const COMPACTION_BATCH: usize = 1000;

/// Compacts the index at `rev` and deletes from the backend every revision
/// `<= rev` the index no longer needs, `COMPACTION_BATCH` per committed write
/// transaction, then records `finishedCompactRev`. The caller has already set the
/// compact revision and persisted `scheduledCompactRev`, so an interruption is
/// finished on the next open. `stop_after_batches` is a test hook that returns early
/// (as a crash would) after that many batches.
pub(crate) fn run(
    store: &Store,
    w: &mut Writer,
    rev: i64,
    stop_after_batches: Option<usize>,
) -> Result<(), MvccError> {
    let keep = store.state.write().index.compact(rev);
    let end = Revision::new(rev + 1, 0).to_bytes(false);
    let mut last = Revision::new(0, 0).to_bytes(false);
    let mut batches = 0usize;
    let mut deleted = 0usize;
    loop {
        if stop_after_batches.is_some_and(|n| batches >= n) {
            return Ok(());
        }
        batches += 1;
        let txn = store.open_txn(w)?;
        let mut table = txn.open_table(KV_TABLE)?;
        let mut keys: Vec<Vec<u8>> = Vec::with_capacity(COMPACTION_BATCH);
        for entry in table.range(last.as_slice()..end.as_slice())? {
            let (k, _) = entry?;
            keys.push(k.value().to_vec());
            if keys.len() == COMPACTION_BATCH {
                break;
            }
        }
        let mut last_rev = None;
        for k in &keys {
            let (r, _) = Revision::from_bytes(k)?;
            // Rows of the compaction revision itself stay (its tombstones would otherwise
            // go): a watcher may start at the compact revision and must see all of it.
            // The next compaction removes them.
            if r.main != rev && !keep.contains(&r) {
                table.remove(k.as_slice())?;
                deleted += 1;
            }
            last_rev = Some(r);
        }
        drop(table);
        let done = keys.len() < COMPACTION_BATCH;
        if done {
            let mut meta = txn.open_table(META_TABLE)?;
            meta_put_u64(&mut meta, META_FINISHED_COMPACT, rev as u64)?;
        }
        store.commit_locked(w, false)?;
        if done {
            tracing::info!(rev, deleted, batches, "finished compaction");
            return Ok(());
        }
        if let Some(r) = last_rev {
            last = Revision::new(r.main, r.sub + 1).to_bytes(false);
        }
    }
}
