//! Micro-benchmarks of watch dispatch: the applier handing a batch of committed revisions
//! to the watch hub (`Hub::stage` per revision, then `Hub::publish`), which finds the
//! synced watchers concerned through its index and queues one response per watcher.
//!
//! Run: `cargo bench -p oxcd-watch` (`-- <regex>` for a subset, `-- --test` runs each once).
//!
//! Watchers are spread over up to 100 streams. Stream queues are large here (the server's
//! hold 128 responses) and drained between samples, outside the timing, so every watcher
//! stays synced and what is timed is the hub's work only.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // a benchmark: a failure is a crashed run

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Duration;

use divan::Bencher;
use oxcd_mvcc::Store;
use oxcd_proto::etcdserverpb::WatchCreateRequest;
use oxcd_proto::mvccpb::{event::EventType, Event, KeyValue};
use oxcd_watch::{Hub, Outgoing};
use tempfile::TempDir;
use tokio::sync::mpsc;

fn main() {
    // Defaults that keep a whole `cargo bench -p oxcd-watch` short; `--max-time`,
    // `--sample-count` (or DIVAN_MAX_TIME, ...) override them.
    divan::Divan::default()
        .min_time(Duration::from_millis(500))
        .max_time(Duration::from_secs(1))
        .config_with_args()
        .main();
}

/// Watchers per benchmark.
const WATCHERS: [usize; 3] = [1, 100, 10_000];
/// Revisions committed together (one `publish`), one put event each.
const BATCH: [usize; 2] = [1, 16];
/// Streams the watchers are spread over (at most one per watcher).
const MAX_STREAMS: usize = 100;
/// Per-stream queue capacity here: enough for every response of a sample.
const QUEUE: usize = 1 << 22;
const VALUE_LEN: usize = 128;

fn key(prefix: &str, i: usize) -> Vec<u8> {
    format!("{prefix}{i:08}").into_bytes()
}

/// A hub over an empty store with `n` synced watchers, watcher `i` created by `create(i)`.
struct Fixture {
    _dir: TempDir,
    hub: Arc<Hub>,
    streams: Vec<mpsc::Receiver<Outgoing>>,
    /// The revision of the next event.
    rev: Cell<i64>,
    received: Cell<usize>,
}

impl Fixture {
    fn new(n: usize, create: impl Fn(usize) -> WatchCreateRequest) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(Store::open(&dir.path().join("db")).expect("open store"));
        let hub = Hub::new(store);
        let mut sids = Vec::new();
        let mut streams = Vec::new();
        for _ in 0..n.min(MAX_STREAMS) {
            let (tx, rx) = mpsc::channel(QUEUE);
            sids.push(hub.open_stream(tx));
            streams.push(rx);
        }
        for i in 0..n {
            let (gid, _, rev) = hub
                .reserve(sids[i % sids.len()], &create(i))
                .expect("create watcher");
            hub.activate(gid, rev + 1);
        }
        let rev = Cell::new(hub.rev() + 1);
        Fixture {
            _dir: dir,
            hub,
            streams,
            rev,
            received: Cell::new(0),
        }
    }

    /// Empties the stream queues (between samples).
    fn drain(&mut self) {
        let mut n = self.received.get();
        for rx in &mut self.streams {
            while rx.try_recv().is_ok() {
                n += 1;
            }
        }
        self.received.set(n);
    }

    /// The next `batch` revisions, one put of `key(j)` each (`j` counting on).
    fn revisions(&self, batch: usize, key: impl Fn(usize) -> Vec<u8>) -> Vec<Vec<Event>> {
        (0..batch)
            .map(|_| {
                let rev = self.rev.get();
                self.rev.set(rev + 1);
                vec![Event {
                    r#type: EventType::Put as i32,
                    kv: Some(KeyValue {
                        key: key(rev as usize),
                        create_revision: 2,
                        mod_revision: rev,
                        version: rev - 1,
                        value: vec![b'v'; VALUE_LEN],
                        lease: 0,
                    }),
                    prev_kv: None,
                }]
            })
            .collect()
    }
}

/// Times stage + publish of batches made by `key`; the queues are drained while the next
/// sample's batches are made. Checks that every publish queued `responses` responses (so
/// no watcher was parked or missed).
fn run<const B: usize>(
    bencher: Bencher,
    fixture: Fixture,
    responses: usize,
    key: impl Fn(usize) -> Vec<u8> + Copy,
) {
    let fixture = RefCell::new(fixture);
    let mut publishes = 0usize;
    bencher
        .with_inputs(|| {
            let mut f = fixture.borrow_mut();
            f.drain();
            f.revisions(B, key)
        })
        .bench_local_values(|batch| {
            let f = fixture.borrow();
            // The hub owns staged events (as the applier hands them over) and drops
            // them in publish, as in the server.
            for evs in batch {
                f.hub.stage(evs);
            }
            f.hub.publish();
            publishes += 1;
        });
    let mut f = fixture.into_inner();
    f.drain();
    assert_eq!(f.received.get(), publishes * responses, "responses queued");
}

fn watch_key(key: Vec<u8>) -> WatchCreateRequest {
    WatchCreateRequest {
        key,
        ..Default::default()
    }
}

/// `watchers` watchers on one key; each revision of the batch puts that key, so every
/// watcher gets one response carrying the batch's events.
#[divan::bench(consts = BATCH, args = WATCHERS)]
fn one_key<const B: usize>(bencher: Bencher, watchers: usize) {
    let f = Fixture::new(watchers, |_| watch_key(b"hot".to_vec()));
    run::<B>(bencher, f, watchers, |_| b"hot".to_vec());
}

/// `watchers` watchers on the prefix `p/`; each revision puts a different key under it.
#[divan::bench(consts = BATCH, args = WATCHERS)]
fn prefix<const B: usize>(bencher: Bencher, watchers: usize) {
    let f = Fixture::new(watchers, |_| WatchCreateRequest {
        key: b"p/".to_vec(),
        range_end: b"p0".to_vec(),
        ..Default::default()
    });
    run::<B>(bencher, f, watchers, |rev| key("p/", rev));
}

/// `watchers` watchers on as many different keys; each revision puts one watched key (in
/// turn), so each event is an index lookup among `watchers` keys that finds one watcher.
#[divan::bench(consts = BATCH, args = WATCHERS)]
fn many_keys<const B: usize>(bencher: Bencher, watchers: usize) {
    let f = Fixture::new(watchers, |i| watch_key(key("k/", i)));
    run::<B>(bencher, f, B.min(watchers), move |rev| {
        key("k/", rev % watchers)
    });
}
