//! The `watch` workload: many watchers on one key (or one prefix), a putter writing to
//! it, and a check that every watcher got every event exactly once, in order.
//!
//! ```text
//! oxcd-bench --conns 10 --total 1000 watch --streams 100 --watchers 1000 --key foo
//! oxcd-bench --conns 10 --total 200 watch --streams 100 --watchers 10000 --prefix /w/
//! ```
//!
//! 1. `--streams` gRPC watch streams are opened round-robin over the `--conns` channels
//!    and the `--watchers` watchers are spread evenly over them; the run waits until
//!    every watcher's `created` response has arrived.
//! 2. `--put-clients` putters write `--total` puts (at most `--rate` per second) to the
//!    watched key, or round-robin to `--key-space-size` keys under the prefix. Each value
//!    is the send time in nanoseconds since the run's start (8 bytes, big endian), so the
//!    receiving side records put-to-event latency per event.
//! 3. The run ends when every watcher has received one event per successful put (or after
//!    `--timeout` without any new event). Every watcher's revisions are compared with the
//!    put responses' revisions: missing, duplicate, out-of-order and unexpected events are
//!    counted (all must be 0).
//!
//! Delivery rate = events received by all watchers / time from the first put to the last
//! event.
//!
//! `watch-latency` (etcd's `benchmark watch-latency`) is the same machinery with etcd's
//! parameters: `--streams` x `--watchers-per-stream` watchers on one key, one putter on
//! its own connection writing `--put-total` puts at `--put-rate` per second, and the
//! latency of every event measured from the moment its put's *response* arrived (0 if
//! the event came first), as etcd measures it. The send-based latency is reported too.
//!
//! All times (put stamps, put responses, event arrivals) are nanoseconds since one epoch,
//! taken before the watchers are created.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use oxcd_proto::etcdserverpb::kv_client::KvClient;
use oxcd_proto::etcdserverpb::watch_client::WatchClient;
use oxcd_proto::etcdserverpb::{
    watch_request::RequestUnion, PutRequest, WatchCreateRequest, WatchRequest,
};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::progress::ProgressBar;
use crate::stats::{ErrorSample, Recorder, Summary};
use crate::workload::Workload;
use crate::Run;

/// What the watchers watch and where the puts go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WatchTarget {
    /// One key: every watcher watches it, every put writes it.
    Key(Vec<u8>),
    /// A prefix: every watcher watches `[prefix, prefix_end(prefix))`; put `seq` writes
    /// `prefix` followed by `seq % keys` as 8 decimal digits.
    Prefix {
        /// The watched prefix.
        prefix: Vec<u8>,
        /// Number of distinct keys written under the prefix (at least 1).
        keys: u64,
    },
}

impl WatchTarget {
    /// Builds the target from `--key` / `--prefix` (exactly one of them).
    pub(crate) fn new(key: Option<&str>, prefix: Option<&str>, keys: u64) -> Result<Self, String> {
        match (key, prefix) {
            (Some(k), None) if !k.is_empty() => Ok(WatchTarget::Key(k.as_bytes().to_vec())),
            (None, Some(p)) if !p.is_empty() => {
                if keys == 0 {
                    return Err("--key-space-size must be at least 1".into());
                }
                Ok(WatchTarget::Prefix {
                    prefix: p.as_bytes().to_vec(),
                    keys,
                })
            }
            (Some(_), Some(_)) => Err("give either --key or --prefix, not both".into()),
            _ => Err("watch needs a non-empty --key or --prefix".into()),
        }
    }

    /// Short name for the summary (`key` or `prefix`).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            WatchTarget::Key(_) => "key",
            WatchTarget::Prefix { .. } => "prefix",
        }
    }

    /// The create request every watcher sends (server-chosen watch id).
    pub(crate) fn create_request(&self) -> WatchCreateRequest {
        match self {
            WatchTarget::Key(k) => WatchCreateRequest {
                key: k.clone(),
                ..Default::default()
            },
            WatchTarget::Prefix { prefix, .. } => WatchCreateRequest {
                key: prefix.clone(),
                range_end: prefix_end(prefix),
                ..Default::default()
            },
        }
    }

    /// The key written by put number `seq`.
    pub(crate) fn put_key(&self, seq: u64) -> Vec<u8> {
        match self {
            WatchTarget::Key(k) => k.clone(),
            WatchTarget::Prefix { prefix, keys } => {
                let mut key = prefix.clone();
                key.extend_from_slice(format!("{:08}", seq % keys).as_bytes());
                key
            }
        }
    }

    /// Put number `seq`, stamped with `sent_nanos` (nanoseconds since the run's epoch):
    /// the value is the stamp (8 bytes, big endian), zero-padded to `val_size` bytes.
    pub(crate) fn put_request(&self, seq: u64, sent_nanos: u64, val_size: usize) -> PutRequest {
        let mut value = sent_nanos.to_be_bytes().to_vec();
        value.resize(val_size.max(8), 0);
        PutRequest {
            key: self.put_key(seq),
            value,
            ..Default::default()
        }
    }
}

/// etcd's `GetPrefixRangeEnd`: the smallest key after every key starting with `prefix`
/// (`[0]`, "to the end of the key space", if the prefix is all `0xff`).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The send time embedded in a put's value by [`WatchTarget::put_request`].
pub(crate) fn decode_stamp(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.get(..8)?.try_into().ok()?))
}

/// Splits `total` items into `parts` counts differing by at most one (first ones larger).
pub(crate) fn split_evenly(total: usize, parts: usize) -> Vec<usize> {
    if parts == 0 {
        return Vec::new();
    }
    (0..parts)
        .map(|i| total / parts + usize::from(i < total % parts))
        .collect()
}

/// How one watcher's (or all watchers') received revisions compare with the expected ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Check {
    /// Expected revisions never received.
    pub missing: u64,
    /// Events whose revision the watcher had already received.
    pub duplicates: u64,
    /// Events with a revision lower than one the watcher received before.
    pub out_of_order: u64,
    /// Distinct received revisions no put of this run produced.
    pub unexpected: u64,
}

impl Check {
    /// Compares `received` (in arrival order) with `expected` (sorted, distinct).
    pub(crate) fn of(expected: &[i64], received: &[i64]) -> Check {
        let mut out_of_order = 0;
        let mut max = i64::MIN;
        for &r in received {
            if r < max {
                out_of_order += 1;
            }
            max = max.max(r);
        }
        let mut distinct = received.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let duplicates = (received.len() - distinct.len()) as u64;
        let (mut missing, mut unexpected) = (0, 0);
        let (mut e, mut d) = (expected.iter().peekable(), distinct.iter().peekable());
        loop {
            match (e.peek(), d.peek()) {
                (Some(x), Some(y)) if x == y => {
                    e.next();
                    d.next();
                }
                (Some(x), Some(y)) if x < y => {
                    missing += 1;
                    e.next();
                }
                (Some(_), Some(_)) | (None, Some(_)) => {
                    unexpected += 1;
                    d.next();
                }
                (Some(_), None) => {
                    missing += 1;
                    e.next();
                }
                (None, None) => break,
            }
        }
        Check {
            missing,
            duplicates,
            out_of_order,
            unexpected,
        }
    }

    /// Adds `other`'s counts.
    pub(crate) fn add(&mut self, other: Check) {
        self.missing += other.missing;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.unexpected += other.unexpected;
    }
}

/// Where the event latency is measured from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LatencyFrom {
    /// The put's send time (stamped in its value): `watch`.
    PutSent,
    /// The arrival of the put's response, 0 if the event came first: `watch-latency`,
    /// as etcd's benchmark measures it.
    PutAcked,
}

impl LatencyFrom {
    fn name(self) -> &'static str {
        match self {
            LatencyFrom::PutSent => "put-sent",
            LatencyFrom::PutAcked => "put-acked",
        }
    }
}

/// Parameters of a watch run (besides the global ones).
#[derive(Debug, Clone)]
pub(crate) struct WatchParams {
    /// Workload name in the summary (`watch`, `watch-latency`).
    pub name: &'static str,
    /// Watch streams (gRPC calls) to open.
    pub streams: usize,
    /// Watchers in total.
    pub watchers: usize,
    /// Concurrent putters.
    pub put_clients: usize,
    /// Puts to make.
    pub puts: u64,
    /// Size of every put's value (at least the 8 bytes of the stamp).
    pub val_size: usize,
    /// Ask for the previous key-value with every event.
    pub prev_kv: bool,
    /// What the latency percentiles measure from.
    pub latency_from: LatencyFrom,
    /// The putters' connection; `None` = round robin over the watch connections.
    pub put_channel: Option<Channel>,
    /// What is watched and written.
    pub target: WatchTarget,
}

/// Result of a watch run; latencies are in milliseconds.
///
/// The common fields (flattened [`Summary`]) count **events**: `requests` = events
/// expected, `ok` = events received, `requests_per_sec` = events/s, the percentiles are
/// the event latency (from `latency_from`), and `errors` = failed puts + missing,
/// duplicate, out-of-order and unexpected events.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct WatchSummary {
    /// The common fields; see above.
    #[serde(flatten)]
    pub summary: Summary,
    /// `put-sent` or `put-acked`: where the latency percentiles start.
    pub latency_from: String,
    /// `key` or `prefix`.
    pub target: String,
    /// Watchers created.
    pub watchers: usize,
    /// Watch streams.
    pub streams: usize,
    /// gRPC connections.
    pub conns: usize,
    /// Concurrent putters.
    pub put_clients: usize,
    /// Successful puts.
    pub puts: u64,
    /// Failed puts.
    pub put_errors: u64,
    /// The first few distinct put errors.
    pub put_error_samples: Vec<ErrorSample>,
    /// Seconds from the first create request to the last `created` response.
    pub setup_secs: f64,
    /// Events expected: watchers x successful puts.
    pub events_expected: u64,
    /// Events received by all watchers.
    pub events_received: u64,
    /// Events received per second over `total_secs`.
    pub events_per_sec: f64,
    /// Missing events, summed over the watchers.
    pub missing: u64,
    /// Duplicate events, summed over the watchers.
    pub duplicates: u64,
    /// Out-of-order events, summed over the watchers.
    pub out_of_order: u64,
    /// Events of revisions no put of this run made, summed over the watchers.
    pub unexpected: u64,
    /// With `latency_from` = `put-acked`: the latency from the put's send time as well.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_send: Option<Summary>,
    /// Put request latency and throughput.
    pub put: Summary,
}

impl WatchSummary {
    /// Whether every watcher got every event exactly once and in order, and no put failed.
    pub(crate) fn clean(&self) -> bool {
        self.put_errors == 0
            && self.missing == 0
            && self.duplicates == 0
            && self.out_of_order == 0
            && self.unexpected == 0
    }

    /// Renders the summary as text.
    pub(crate) fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\nWatch summary:");
        let _ = writeln!(
            out,
            "  Watchers:\t{} on one {} ({} streams, {} conns), created in {:.4} secs.",
            self.watchers, self.target, self.streams, self.conns, self.setup_secs
        );
        let _ = writeln!(
            out,
            "  Puts:\t\t{} ok, {} errors ({} clients)",
            self.puts, self.put_errors, self.put_clients
        );
        let _ = writeln!(out, "  Total:\t{:.4} secs.", self.summary.total_secs);
        let _ = writeln!(
            out,
            "  Events:\t{} of {} received",
            self.events_received, self.events_expected
        );
        let _ = writeln!(out, "  Events/sec:\t{:.4}", self.events_per_sec);
        let _ = writeln!(
            out,
            "  Check:\t{} missing, {} duplicate, {} out of order, {} unexpected",
            self.missing, self.duplicates, self.out_of_order, self.unexpected
        );
        let s = &self.summary;
        let _ = writeln!(
            out,
            "  Event latency ({}):\tp50 {:.4} ms, p90 {:.4} ms, p99 {:.4} ms, p99.9 {:.4} ms, max {:.4} ms",
            self.latency_from, s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms
        );
        if let Some(f) = &self.from_send {
            let _ = writeln!(
                out,
                "  Event latency (put-sent):\tp50 {:.4} ms, p90 {:.4} ms, p99 {:.4} ms, p99.9 {:.4} ms, max {:.4} ms",
                f.p50_ms, f.p90_ms, f.p99_ms, f.p999_ms, f.max_ms
            );
        }
        let _ = writeln!(
            out,
            "  Put latency:\tp50 {:.4} ms, p99 {:.4} ms",
            self.put.p50_ms, self.put.p99_ms
        );
        for e in &self.put_error_samples {
            let _ = writeln!(out, "  put error [{}]\t{}", e.count, e.message);
        }
        out
    }
}

/// What one stream task observed.
struct StreamResult {
    /// Per watcher, the revisions of its events in arrival order.
    revs: Vec<Vec<i64>>,
    /// Per watcher, the arrival time of each event (nanoseconds since the epoch), if
    /// recorded.
    arrivals: Vec<Vec<u64>>,
    /// Put-to-event latencies.
    latency: Recorder,
    /// When the stream's last event arrived.
    last_event: Option<Instant>,
}

/// Shared state of the watching side.
struct Watching {
    /// The epoch of every time stamp.
    epoch: Instant,
    /// Record each event's arrival time (for `put-acked` latency).
    record_arrivals: bool,
    /// Events received by all watchers so far.
    received: Arc<AtomicU64>,
    /// Events each watcher must receive (successful puts; the planned total until the
    /// putters are done).
    target: watch::Receiver<u64>,
    /// Set to stop waiting for events.
    stop: watch::Receiver<bool>,
}

/// One watch stream with `n` watchers: creates them, reports on `created_tx` once all are
/// created, then collects events until each watcher has the target count or it is stopped.
async fn stream_task(
    channel: Channel,
    n: usize,
    create: WatchCreateRequest,
    shared: Arc<Watching>,
    created_tx: oneshot::Sender<Result<(), String>>,
) -> Result<StreamResult, String> {
    let mut created_tx = Some(created_tx);
    let fail = |tx: &mut Option<oneshot::Sender<Result<(), String>>>, msg: String| {
        if let Some(tx) = tx.take() {
            let _ = tx.send(Err(msg.clone()));
        }
        Err(msg)
    };
    // The request side stays open for the whole run: etcd ends a watch stream whose
    // client closed its sending side.
    let (req_tx, req_rx) = mpsc::channel(n.max(1));
    for _ in 0..n {
        let req = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(create.clone())),
        };
        if req_tx.send(req).await.is_err() {
            return fail(&mut created_tx, "watch request queue closed".into());
        }
    }
    let mut client = WatchClient::new(channel).max_decoding_message_size(usize::MAX);
    let mut inbound = match client
        .watch(tokio_stream::wrappers::ReceiverStream::new(req_rx))
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) => return fail(&mut created_tx, format!("watch call failed: {s}")),
    };
    let mut ids: HashMap<i64, usize> = HashMap::with_capacity(n);
    let mut revs: Vec<Vec<i64>> = Vec::with_capacity(n);
    let mut arrivals: Vec<Vec<u64>> = Vec::new();
    let mut latency = Recorder::new();
    let mut last_event = None;
    let mut done = 0usize; // watchers with at least the target count
    let mut target = *shared.target.borrow();
    let mut target_rx = shared.target.clone();
    let mut stop_rx = shared.stop.clone();
    if n == 0 {
        if let Some(tx) = created_tx.take() {
            let _ = tx.send(Ok(()));
        }
    }
    loop {
        if n > 0 && ids.len() == n && done == n {
            break;
        }
        tokio::select! {
            msg = inbound.message() => {
                let resp = match msg {
                    Ok(Some(r)) => r,
                    Ok(None) => return fail(&mut created_tx, "watch stream ended by the server".into()),
                    Err(s) => return fail(&mut created_tx, format!("watch stream failed: {s}")),
                };
                if resp.created {
                    if resp.canceled {
                        return fail(&mut created_tx, format!("watch create refused: {}", resp.cancel_reason));
                    }
                    ids.insert(resp.watch_id, revs.len());
                    revs.push(Vec::new());
                    if shared.record_arrivals {
                        arrivals.push(Vec::new());
                    }
                    if ids.len() == n {
                        if let Some(tx) = created_tx.take() {
                            let _ = tx.send(Ok(()));
                        }
                    }
                    continue;
                }
                if resp.canceled {
                    return fail(&mut created_tx, format!("watch {} canceled: {} (compact revision {})",
                        resp.watch_id, resp.cancel_reason, resp.compact_revision));
                }
                if resp.events.is_empty() {
                    continue; // progress notification
                }
                let now = Instant::now();
                let since_start = now.saturating_duration_since(shared.epoch).as_nanos() as u64;
                let Some(&idx) = ids.get(&resp.watch_id) else {
                    return fail(&mut created_tx, format!("events for unknown watch id {}", resp.watch_id));
                };
                let w = &mut revs[idx];
                let before = w.len() as u64;
                for ev in &resp.events {
                    let Some(kv) = &ev.kv else { continue };
                    w.push(kv.mod_revision);
                    if let Some(a) = arrivals.get_mut(idx) {
                        a.push(since_start);
                    }
                    if let Some(sent) = decode_stamp(&kv.value) {
                        latency.record_ok(Duration::from_nanos(since_start.saturating_sub(sent)));
                    }
                }
                let after = w.len() as u64;
                if before < target && after >= target {
                    done += 1;
                }
                shared.received.fetch_add(resp.events.len() as u64, Ordering::Relaxed);
                last_event = Some(now);
            }
            changed = target_rx.changed() => {
                if changed.is_err() {
                    break;
                }
                target = *target_rx.borrow_and_update();
                done = revs.iter().filter(|r| r.len() as u64 >= target).count();
            }
            changed = stop_rx.changed() => {
                if changed.is_err() || *stop_rx.borrow_and_update() {
                    break;
                }
            }
        }
    }
    drop(req_tx);
    Ok(StreamResult {
        revs,
        arrivals,
        latency,
        last_event,
    })
}

/// A successful put: its revision and when its response arrived (nanoseconds since the
/// epoch).
type Acked = (i64, u64);

/// One putter: puts stamped values until the run's puts are all claimed; returns its
/// put latencies and its successful puts.
async fn put_loop(
    run: Arc<Run>,
    mut kv: KvClient<Channel>,
    epoch: Instant,
    val_size: usize,
) -> (Recorder, Vec<Acked>) {
    let mut rec = Recorder::new();
    let mut revs = Vec::new();
    let Workload::Watch(target) = &run.workload else {
        rec.record_err("internal: watch putter given another workload");
        return (rec, revs);
    };
    while let Some(seq) = run.next_seq().await {
        let started = Instant::now();
        let sent = started.saturating_duration_since(epoch).as_nanos() as u64;
        match kv.put(target.put_request(seq, sent, val_size)).await {
            Ok(resp) => {
                let acked = Instant::now();
                rec.record_ok(acked - started);
                let rev = resp.into_inner().header.map_or(0, |h| h.revision);
                revs.push((
                    rev,
                    acked.saturating_duration_since(epoch).as_nanos() as u64,
                ));
            }
            Err(status) => rec.record_err(&crate::rpc_error("Put", &status)),
        }
        run.done.fetch_add(1, Ordering::Relaxed);
    }
    (rec, revs)
}

/// Runs the watch workload over `channels`; `make_run` builds the putters' pacing state
/// from the instant the first put is due (after every watcher is created).
pub(crate) async fn run(
    channels: &[Channel],
    params: &WatchParams,
    idle_timeout: Duration,
    make_run: impl FnOnce(Instant) -> Run,
) -> Result<WatchSummary, String> {
    if params.streams == 0 || params.put_clients == 0 {
        return Err("--streams and --put-clients must be at least 1".into());
    }
    if params.watchers < params.streams {
        return Err("--watchers must be at least --streams".into());
    }
    if params.puts == 0 {
        return Err("watch needs --total > 0 (the number of puts)".into());
    }
    let start = Instant::now();
    let (target_tx, target_rx) = watch::channel(params.puts);
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Watching {
        epoch: start,
        record_arrivals: params.latency_from == LatencyFrom::PutAcked,
        received: Arc::new(AtomicU64::new(0)),
        target: target_rx,
        stop: stop_rx,
    });

    // Watchers.
    let mut create = params.target.create_request();
    create.prev_kv = params.prev_kv;
    let mut created = Vec::with_capacity(params.streams);
    let mut streams = Vec::with_capacity(params.streams);
    for (i, n) in split_evenly(params.watchers, params.streams)
        .into_iter()
        .enumerate()
    {
        let (tx, rx) = oneshot::channel();
        created.push(rx);
        streams.push(tokio::spawn(stream_task(
            channels[i % channels.len()].clone(),
            n,
            create.clone(),
            shared.clone(),
            tx,
        )));
    }
    let setup = async {
        for rx in created {
            match rx.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err("a watch stream task ended before its creates".into()),
            }
        }
        Ok(())
    };
    match tokio::time::timeout(idle_timeout.max(Duration::from_secs(30)), setup).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err("timed out waiting for the watchers' created responses".into()),
    }
    let setup_secs = start.elapsed().as_secs_f64();

    // Puts, paced from now.
    let put_start = Instant::now();
    let run = Arc::new(make_run(put_start));
    let bar = ProgressBar::start(
        "events",
        shared.received.clone(),
        params.puts.saturating_mul(params.watchers as u64),
        None,
    );
    let putters: Vec<_> = (0..params.put_clients)
        .map(|i| {
            let channel = params
                .put_channel
                .clone()
                .unwrap_or_else(|| channels[i % channels.len()].clone());
            tokio::spawn(put_loop(
                run.clone(),
                KvClient::new(channel),
                start,
                params.val_size,
            ))
        })
        .collect();
    let mut put_rec = Recorder::new();
    let mut acked: Vec<Acked> = Vec::new();
    for joined in futures::future::join_all(putters).await {
        match joined {
            Ok((rec, puts)) => {
                put_rec.merge(&rec);
                acked.extend(puts);
            }
            Err(e) => return Err(format!("put task failed: {e}")),
        }
    }
    let put_elapsed = put_start.elapsed();
    let mut put_revs: Vec<i64> = acked.iter().map(|&(rev, _)| rev).collect();
    put_revs.sort_unstable();
    put_revs.dedup();
    let _ = target_tx.send(put_rec.ok());

    // Wait for the events: stop after `idle_timeout` without a new one.
    let mut all = futures::future::join_all(streams);
    let mut stopped = false;
    let results = loop {
        let seen = shared.received.load(Ordering::Relaxed);
        tokio::select! {
            r = &mut all => break r,
            _ = tokio::time::sleep(idle_timeout) => {
                if shared.received.load(Ordering::Relaxed) == seen {
                    stopped = true;
                    let _ = stop_tx.send(true);
                }
            }
        }
    };
    if let Some(bar) = bar {
        bar.finish();
    }
    if stopped {
        eprintln!("oxcd-bench: no event for {idle_timeout:?}; stopped waiting (see missing count)");
    }

    let acked_at: HashMap<i64, u64> = acked.iter().copied().collect();
    let mut check = Check::default();
    let mut from_send = Recorder::new();
    let mut from_ack = Recorder::new();
    let mut last_event: Option<Instant> = None;
    let mut watchers = 0usize;
    for joined in results {
        let r = joined.map_err(|e| format!("watch task failed: {e}"))??;
        for w in &r.revs {
            check.add(Check::of(&put_revs, w));
        }
        for (revs, arrivals) in r.revs.iter().zip(&r.arrivals) {
            record_from_ack(&mut from_ack, &acked_at, revs, arrivals);
        }
        watchers += r.revs.len();
        from_send.merge(&r.latency);
        last_event = last_event.max(r.last_event);
    }
    let elapsed = last_event.map_or(Duration::ZERO, |t| t.saturating_duration_since(put_start));
    let received = shared.received.load(Ordering::Relaxed);
    let secs = elapsed.as_secs_f64();
    let events_per_sec = if secs > 0.0 {
        received as f64 / secs
    } else {
        0.0
    };
    let put = put_rec.summary("put", put_elapsed);
    let (primary, from_send) = match params.latency_from {
        LatencyFrom::PutSent => (from_send, None),
        LatencyFrom::PutAcked => (from_ack, Some(from_send.summary(params.name, elapsed))),
    };
    let events_expected = watchers as u64 * put_rec.ok();
    let mut summary = primary.summary(params.name, elapsed);
    summary.requests = events_expected;
    summary.ok = received;
    summary.requests_per_sec = events_per_sec;
    summary.error_samples = put.error_samples.clone();
    for (what, n) in [
        ("events missing", check.missing),
        ("duplicate events", check.duplicates),
        ("events out of order", check.out_of_order),
        ("events of unexpected revisions", check.unexpected),
    ] {
        if n > 0 {
            summary.error_samples.push(ErrorSample {
                message: format!("Watch: {what}"),
                count: n,
            });
        }
    }
    summary.errors =
        put_rec.errors() + check.missing + check.duplicates + check.out_of_order + check.unexpected;
    Ok(WatchSummary {
        summary,
        latency_from: params.latency_from.name().into(),
        target: params.target.kind().into(),
        watchers,
        streams: params.streams,
        conns: channels.len(),
        put_clients: params.put_clients,
        puts: put_rec.ok(),
        put_errors: put_rec.errors(),
        put_error_samples: put.error_samples.clone(),
        setup_secs,
        events_expected,
        events_received: received,
        events_per_sec,
        missing: check.missing,
        duplicates: check.duplicates,
        out_of_order: check.out_of_order,
        unexpected: check.unexpected,
        from_send,
        put,
    })
}

/// Records, for one watcher, each event's latency from its put's response (0 if the
/// event arrived first, as etcd's `watch-latency` counts it); events of revisions no
/// put acknowledged are skipped (they are counted by the check).
fn record_from_ack(
    rec: &mut Recorder,
    acked_at: &HashMap<i64, u64>,
    revs: &[i64],
    arrivals: &[u64],
) {
    for (rev, &arrived) in revs.iter().zip(arrivals) {
        if let Some(&acked) = acked_at.get(rev) {
            rec.record_micros(arrived.saturating_sub(acked) / 1000);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/w/"), b"/w0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b"az"), b"a{");
    }

    #[test]
    fn targets() {
        let k = WatchTarget::new(Some("foo"), None, 7).unwrap();
        assert_eq!(k.kind(), "key");
        assert_eq!(k.put_key(5), b"foo");
        let c = k.create_request();
        assert_eq!((c.key.as_slice(), c.range_end.len()), (&b"foo"[..], 0));

        let p = WatchTarget::new(None, Some("/w/"), 3).unwrap();
        assert_eq!(p.kind(), "prefix");
        assert_eq!(p.put_key(4), b"/w/00000001");
        let c = p.create_request();
        assert_eq!(
            (c.key.as_slice(), c.range_end.as_slice()),
            (&b"/w/"[..], &b"/w0"[..])
        );
        assert!(p.put_key(2).as_slice() < c.range_end.as_slice());

        assert!(WatchTarget::new(None, None, 1).is_err());
        assert!(WatchTarget::new(Some("a"), Some("b"), 1).is_err());
        assert!(WatchTarget::new(Some(""), None, 1).is_err());
        assert!(WatchTarget::new(None, Some("p"), 0).is_err());
    }

    #[test]
    fn stamps_round_trip() {
        let r = WatchTarget::Key(b"k".to_vec()).put_request(0, 123_456_789_012, 0);
        assert_eq!(r.value.len(), 8);
        assert_eq!(decode_stamp(&r.value), Some(123_456_789_012));
        assert_eq!(decode_stamp(b"short"), None);
        let r = WatchTarget::Key(b"k".to_vec()).put_request(0, 77, 32);
        assert_eq!(r.value.len(), 32);
        assert_eq!(decode_stamp(&r.value), Some(77));
    }

    #[test]
    fn latency_from_ack() {
        let acked: HashMap<i64, u64> = [(5, 1_000_000), (6, 2_000_000)].into_iter().collect();
        let mut rec = Recorder::new();
        // rev 5 arrives 0.5 ms after its ack; rev 6 before its ack (counts 0); rev 9 was
        // never acked (skipped).
        record_from_ack(
            &mut rec,
            &acked,
            &[5, 6, 9],
            &[1_500_000, 1_900_000, 3_000_000],
        );
        let s = rec.summary("watch-latency", Duration::from_secs(1));
        assert_eq!(s.ok, 2);
        assert!((s.max_ms - 0.5).abs() < 0.001, "{}", s.max_ms);
        assert!(s.fastest_ms < 0.002, "{}", s.fastest_ms);
    }

    #[test]
    fn splits() {
        assert_eq!(split_evenly(10, 3), vec![4, 3, 3]);
        assert_eq!(split_evenly(1000, 100), vec![10; 100]);
        assert_eq!(split_evenly(2, 4), vec![1, 1, 0, 0]);
        assert_eq!(split_evenly(5, 0), Vec::<usize>::new());
        assert_eq!(split_evenly(10_001, 100).iter().sum::<usize>(), 10_001);
    }

    #[test]
    fn checks() {
        let exp = [3, 5, 7, 9];
        assert_eq!(Check::of(&exp, &[3, 5, 7, 9]), Check::default());
        assert_eq!(
            Check::of(&exp, &[3, 7, 9]),
            Check {
                missing: 1,
                ..Default::default()
            }
        );
        assert_eq!(
            Check::of(&exp, &[3, 5, 5, 7, 9]),
            Check {
                duplicates: 1,
                ..Default::default()
            }
        );
        assert_eq!(
            Check::of(&exp, &[3, 7, 5, 9]),
            Check {
                out_of_order: 1,
                ..Default::default()
            }
        );
        assert_eq!(
            Check::of(&exp, &[1, 3, 5, 7, 9, 10]),
            Check {
                unexpected: 2,
                ..Default::default()
            }
        );
        // A late duplicate is both a duplicate and out of order; nothing received misses all.
        assert_eq!(
            Check::of(&exp, &[3, 5, 7, 3]),
            Check {
                missing: 1,
                duplicates: 1,
                out_of_order: 1,
                unexpected: 0
            }
        );
        assert_eq!(Check::of(&exp, &[]).missing, 4);
        let mut sum = Check::of(&exp, &[3]);
        sum.add(Check::of(&exp, &[4]));
        assert_eq!((sum.missing, sum.unexpected), (7, 1));
    }
}
