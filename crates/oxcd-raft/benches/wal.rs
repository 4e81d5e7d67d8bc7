//! Micro-benchmarks of the WAL: the append + fdatasync the raft node does for each Ready,
//! the same append on tmpfs (where fdatasync costs nothing, so what is left is encoding,
//! crc and the write: CPU regressions are not hidden behind the disk), and replay (open)
//! of a WAL holding N entries.
//!
//! Run: `cargo bench -p oxcd-raft` (`-- <regex>` for a subset, `-- --test` runs each once).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // a benchmark: a failure is a crashed run

use std::cell::Cell;
use std::path::Path;
use std::time::Duration;

use divan::counter::{BytesCount, ItemsCount};
use divan::Bencher;
use oxcd_raft::eraftpb::{Entry, HardState};
use oxcd_raft::Wal;
use tempfile::TempDir;

fn main() {
    // Defaults that keep a whole `cargo bench -p oxcd-raft` short; `--max-time`,
    // `--sample-count` (or DIVAN_MAX_TIME, ...) override them.
    divan::Divan::default()
        .min_time(Duration::from_millis(500))
        .max_time(Duration::from_secs(1))
        .config_with_args()
        .main();
}

/// Entries per save (one raft Ready) and payload bytes per entry.
const ENTRIES: [usize; 3] = [1, 16, 128];
const PAYLOAD: [usize; 3] = [100, 1024, 4096];

/// A temporary directory on tmpfs (`/dev/shm`), or in the default temp dir if there is
/// none (the "tmpfs" numbers then include fdatasync).
fn tmpfs_dir() -> TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    eprintln!("warning: /dev/shm unavailable; the tmpfs benches write to the temp dir's disk");
    tempfile::tempdir().expect("temp dir")
}

fn entry(index: u64, template: &Entry) -> Entry {
    let mut e = template.clone(); // the payload is a `Bytes`: a cheap clone
    e.index = index;
    e
}

fn template(payload: usize) -> Entry {
    Entry {
        term: 1,
        data: vec![0x5a; payload].into(),
        ..Default::default()
    }
}

fn hard_state(commit: u64) -> HardState {
    HardState {
        term: 1,
        vote: 1,
        commit,
        ..Default::default()
    }
}

/// One raft Ready's persistence: `N` entries of `payload` bytes plus the hard state,
/// written with one `Wal::save` (one write, one fdatasync), in a fresh WAL in `dir`.
/// Entries are built outside the timing.
fn save<const N: usize>(bencher: Bencher, dir: TempDir, payload: usize) {
    let (mut wal, _) = Wal::open(dir.path().join("wal")).expect("open WAL");
    let template = template(payload);
    let next = Cell::new(1u64);
    bencher
        .counter(BytesCount::new(N * payload))
        .with_inputs(|| {
            let first = next.get();
            next.set(first + N as u64);
            let entries: Vec<Entry> = (first..first + N as u64)
                .map(|i| entry(i, &template))
                .collect();
            (entries, hard_state(first + N as u64 - 1))
        })
        .bench_local_values(|(entries, hs)| {
            wal.save(&entries, Some(&hs)).expect("save");
            entries // dropped outside the timing
        });
    drop(wal);
    drop(dir);
}

/// Append + fdatasync on the temp dir's disk: what a write waits for.
#[divan::bench(consts = ENTRIES, args = PAYLOAD)]
fn append_fdatasync<const N: usize>(bencher: Bencher, payload: usize) {
    save::<N>(bencher, tempfile::tempdir().expect("temp dir"), payload);
}

/// The same append on tmpfs: encoding, crc chaining and the write into the page cache.
#[divan::bench(consts = ENTRIES, args = PAYLOAD)]
fn append_tmpfs<const N: usize>(bencher: Bencher, payload: usize) {
    save::<N>(bencher, tmpfs_dir(), payload);
}

/// Opening a WAL of `n` entries of 256 bytes (written 16 per save, as a loaded leader
/// does): read, crc check, decode and rebuild of the entry list, what a restart pays
/// before raft starts. The WAL is written on tmpfs to keep the set-up short; on a disk its
/// files would be in the page cache after the first open anyway.
#[divan::bench(args = [1_000, 10_000, 100_000])]
fn replay(bencher: Bencher, n: usize) {
    let dir = tmpfs_dir();
    let path = dir.path().join("wal");
    {
        let (mut wal, _) = Wal::open(&path).expect("open WAL");
        let template = template(256);
        let mut index = 1u64;
        while index <= n as u64 {
            let last = (index + 15).min(n as u64);
            let entries: Vec<Entry> = (index..=last).map(|i| entry(i, &template)).collect();
            wal.save(&entries, Some(&hard_state(last))).expect("save");
            index = last + 1;
        }
    }
    bencher.counter(ItemsCount::new(n)).bench_local(|| {
        let (wal, contents) = Wal::open(&path).expect("open WAL");
        debug_assert_eq!(contents.entries.len(), n);
        (wal, contents) // dropped outside the timing
    });
}
