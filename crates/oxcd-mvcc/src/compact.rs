//! Compaction (etcd's `kvstore_compaction.go`), with the physical deletion in the
//! background.
//!
//! Compacting at `rev` has two halves. The applier's half ([`Store::compact`]) is short and
//! runs under the writer lock: it persists `scheduledCompactRev` durably, compacts the key
//! index (from then on no read looks at a row the compaction removes) and queues a job.
//! The other half deletes those rows from the backend. With a compactor thread running
//! ([`spawn_compactor`], as the server does) it deletes them in batches, each holding the
//! writer lock for at most [`COMPACTION_BATCH`] rows or [`BATCH_TIME`] and then handing the
//! lock straight to a waiting writer, so no write waits for a whole compaction (etcd
//! batches too, with the same 1,000 rows, but a batch there holds its backend lock however
//! long it takes). Without one (tools, unit tests) [`Store::compact`] deletes them before
//! it returns.
//!
//! Why a batch may run between any two writes: rows at or below a job's revision are only
//! ever deleted, and only by compaction (every write adds rows above the current revision),
//! and no reader looks for them once the index is compacted. Jobs run in order; a row a
//! later job keeps at or below an earlier job's revision was kept by the earlier one too
//! (it is its key's newest revision at both points).
//!
//! Lock order: the compaction gate, then the writer lock, then the job queue. The gate is
//! held for one batch, and for their whole length by a defragmentation (which copies the
//! file and must not see rows vanish under it) and by a snapshot install (which replaces
//! the jobs with the new file's own).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use redb::{ReadableTable, WriteTransaction};

use crate::backend::{meta_put_u64, KV_TABLE, META_FINISHED_COMPACT, META_TABLE};
use crate::revision::Revision;
use crate::rows::{remove_row, Chunks};
use crate::store::{poison, Store, Writer};
use crate::MvccError;

/// Rows examined per batch at most (etcd's default `--experimental-compaction-batch-limit`).
pub(crate) const COMPACTION_BATCH: usize = 1000;

/// Longest a batch goes on deleting while it holds the writer lock; it then commits and
/// lets writes in.
pub(crate) const BATCH_TIME: Duration = Duration::from_millis(4);

/// One compaction's physical deletion, in progress.
struct Job {
    /// The compaction revision.
    rev: i64,
    /// Rows at or below `rev` that stay: each key's newest revision (unless a tombstone).
    keep: Arc<HashSet<Revision>>,
    /// Backend key to resume the scan at.
    next: Vec<u8>,
    batches: usize,
    deleted: usize,
    started: Instant,
}

/// The queue of compactions still deleting, and what coordinates them.
#[derive(Default)]
pub(crate) struct Compactions {
    /// Held for one batch, by a defragmentation and by a snapshot install.
    pub(crate) gate: Mutex<()>,
    /// Jobs in the order they were scheduled; the front one is being worked on.
    jobs: Mutex<VecDeque<Job>>,
    /// Signalled when a job is queued or finished, or the queue is dropped.
    changed: Condvar,
    /// A compactor thread runs the jobs; otherwise [`Store::compact`] runs them itself.
    background: AtomicBool,
}

impl Compactions {
    /// Queues the deletion for a compaction at `rev` whose index compaction kept `keep`.
    pub(crate) fn push(&self, rev: i64, keep: HashSet<Revision>) {
        self.jobs.lock().push_back(Job {
            rev,
            keep: Arc::new(keep),
            next: Revision::new(0, 0).to_bytes(false),
            batches: 0,
            deleted: 0,
            started: Instant::now(),
        });
        self.changed.notify_all();
    }

    /// Drops every queued job (their file was replaced, or a batch failed and the store
    /// is poisoned; the next open resumes from the persisted `scheduledCompactRev`).
    pub(crate) fn clear(&self) {
        self.jobs.lock().clear();
        self.changed.notify_all();
    }

    pub(crate) fn in_background(&self) -> bool {
        self.background.load(Ordering::Acquire)
    }
}

impl Store {
    /// Runs one batch of the oldest queued compaction; the caller holds the gate. Returns
    /// whether jobs remain.
    pub(crate) fn compaction_batch(&self, _gate: &MutexGuard<'_, ()>) -> Result<bool, MvccError> {
        let (rev, keep, next) = match self.compactions.jobs.lock().front() {
            Some(job) => (job.rev, job.keep.clone(), job.next.clone()),
            None => return Ok(false),
        };
        let mut w = self.writer.lock();
        w.check()?;
        let r = self.delete_batch(&mut w, rev, &keep, next);
        let (next, deleted, done) = poison(&mut w, r)?;
        // A writer waiting now gets the lock before this thread can take it again.
        MutexGuard::unlock_fair(w);

        let mut jobs = self.compactions.jobs.lock();
        let Some(job) = jobs.front_mut() else {
            return Ok(false);
        };
        job.batches += 1;
        job.deleted += deleted;
        job.next = next;
        if done {
            tracing::info!(
                compact_revision = job.rev,
                deleted = job.deleted,
                batches = job.batches,
                took_ms = job.started.elapsed().as_millis() as u64,
                "finished scheduled compaction"
            );
            jobs.pop_front();
            self.compactions.changed.notify_all();
        }
        Ok(!jobs.is_empty())
    }

    /// Deletes the unneeded rows of up to [`COMPACTION_BATCH`] revisions from `next` on
    /// (for at most [`BATCH_TIME`]; a large row's chunks count towards the batch, each as a
    /// row) and commits; the last batch also records `finishedCompactRev`. Returns where the
    /// next batch starts, how many rows went, and whether the job is done.
    fn delete_batch(
        &self,
        w: &mut Writer,
        rev: i64,
        keep: &HashSet<Revision>,
        mut next: Vec<u8>,
    ) -> Result<(Vec<u8>, usize, bool), MvccError> {
        let started = Instant::now();
        let end = Revision::new(rev + 1, 0).to_bytes(false);
        let txn: &WriteTransaction = self.open_txn(w)?;
        let mut table = txn.open_table(KV_TABLE)?;
        // A row's chunks go with it, in the same transaction.
        let chunks = Chunks::new(txn);
        let mut work = 0usize;
        let mut deleted = 0usize;
        let mut done = false;
        while !done && work < COMPACTION_BATCH && started.elapsed() < BATCH_TIME {
            // Revisions are read in slices so the table is not borrowed while deleting.
            let mut revs = Vec::with_capacity(100);
            for entry in table.range(next.as_slice()..end.as_slice())? {
                revs.push(entry?.0.value().to_vec());
                if revs.len() == 100 {
                    break;
                }
            }
            done = revs.len() < 100;
            for (i, k) in revs.iter().enumerate() {
                if i > 0 && (work >= COMPACTION_BATCH || started.elapsed() >= BATCH_TIME) {
                    // The rest of the slice is left to the next batch.
                    done = false;
                    break;
                }
                let (r, _) = Revision::from_bytes(k)?;
                // Rows of the compaction revision itself stay (its tombstones would
                // otherwise go): a watcher may start at the compact revision and must see
                // all of it. The next compaction removes them.
                if r.main != rev && !keep.contains(&r) {
                    let (_, chunks_removed) = remove_row(&mut table, &chunks, k)?;
                    deleted += 1;
                    work += chunks_removed as usize;
                }
                work += 1;
                next = Revision::new(r.main, r.sub + 1).to_bytes(false);
            }
        }
        drop(chunks);
        drop(table);
        if done {
            let mut meta = txn.open_table(META_TABLE)?;
            meta_put_u64(&mut meta, META_FINISHED_COMPACT, rev as u64)?;
        }
        self.commit_locked(w, false)?;
        Ok((next, deleted, done))
    }

    /// Deletes what every queued compaction still has to delete, before returning (a
    /// compactor thread, if one runs, simply finds nothing left). For tools, tests, and
    /// a defragmentation's start.
    pub fn finish_compactions(&self) -> Result<(), MvccError> {
        let gate = self.compactions.gate.lock();
        self.finish_compactions_locked(&gate)
    }

    /// [`Store::finish_compactions`] with the gate already held.
    pub(crate) fn finish_compactions_locked(
        &self,
        gate: &MutexGuard<'_, ()>,
    ) -> Result<(), MvccError> {
        while self.compaction_batch(gate)? {}
        Ok(())
    }

    /// Runs at most `batches` batches (a test's stand-in for a crash in the middle).
    #[cfg(test)]
    pub(crate) fn compaction_batches(&self, batches: usize) -> Result<(), MvccError> {
        let gate = self.compactions.gate.lock();
        for _ in 0..batches {
            if !self.compaction_batch(&gate)? {
                break;
            }
        }
        Ok(())
    }

    /// Waits until the compaction at `rev` (and every one before it) has deleted its rows
    /// from the backend: etcd's `physical` compaction. Blocks the calling thread.
    pub fn wait_compacted(&self, rev: i64) -> Result<(), MvccError> {
        let mut jobs = self.compactions.jobs.lock();
        while jobs.front().is_some_and(|j| j.rev <= rev) {
            self.compactions.changed.wait(&mut jobs);
        }
        drop(jobs);
        self.writer.lock().check()
    }

    /// Whether a compaction is still deleting rows.
    pub fn compaction_pending(&self) -> bool {
        !self.compactions.jobs.lock().is_empty()
    }
}

/// Starts the compactor thread of `store`: from now on [`Store::compact`] only schedules,
/// and the thread deletes in batches. The thread ends once the store is dropped.
pub fn spawn_compactor(store: &Arc<Store>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let weak: Weak<Store> = Arc::downgrade(store);
    let queue = store.compactions.clone();
    queue.background.store(true, Ordering::Release);
    std::thread::Builder::new()
        .name("oxcd-compactor".into())
        .spawn(move || loop {
            {
                let mut jobs = queue.jobs.lock();
                if jobs.is_empty() {
                    // Woken by a new job; the timeout notices a dropped store.
                    queue
                        .changed
                        .wait_for(&mut jobs, Duration::from_millis(500));
                    if jobs.is_empty() {
                        drop(jobs);
                        if weak.strong_count() == 0 {
                            return;
                        }
                        continue;
                    }
                }
            }
            let Some(store) = weak.upgrade() else {
                return;
            };
            let gate = store.compactions.gate.lock();
            if let Err(e) = store.compaction_batch(&gate) {
                tracing::error!(error = %e, "compaction failed; it resumes when the member restarts");
                store.compactions.clear();
            }
            drop(gate);
            drop(store);
            std::thread::yield_now();
        })
}
