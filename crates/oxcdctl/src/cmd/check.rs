//! `check perf` and `check datascale`: etcdctl 3.4's load checks.
//!
//! `check perf` writes 256-byte keys with 1 KiB values under `--prefix` at the load's rate
//! for its duration (60 s) from its number of clients, then judges the throughput (above 90 %
//! of the rate), the slowest request (at most 0.5 s) and the standard deviation of the
//! latencies (at most 0.1 s). `check datascale` writes the load's number of 512-byte keys
//! with 512-byte values and reports the growth of the first endpoint's
//! `process_resident_memory_bytes` (its `/metrics`). Both refuse a prefix that holds keys,
//! delete the prefix afterwards, and may compact and defragment.
//!
//! `OXCDCTL_CHECK_PERF_DURATION` (whole seconds) shortens `check perf`'s run: a test knob,
//! not part of etcdctl's interface.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxcd_proto::etcdserverpb::{
    CompactionRequest, DefragmentRequest, DeleteRangeRequest, PutRequest, RangeRequest,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Mutex};

use super::{emit, Ctx};
use crate::cli::CheckCommand;
use crate::conn::{self, Connection};
use crate::error::{CtlError, ExitCode};
use crate::golog;

/// The test knob that replaces `check perf`'s 60 s duration (whole seconds).
const PERF_DURATION_ENV: &str = "OXCDCTL_CHECK_PERF_DURATION";

/// A `check perf` load: write rate, clients and duration in seconds.
#[derive(Debug, Clone, Copy)]
struct PerfLoad {
    limit: u64,
    clients: usize,
    duration: u64,
}

/// A `check datascale` load: number of keys, bytes per key-value, clients.
#[derive(Debug, Clone, Copy)]
struct DatascaleLoad {
    limit: u64,
    kv_size: u64,
    clients: usize,
}

/// `s`, `small`, `m`, `medium`, `l`, `large`, `xl`, `xLarge` → the load's short name.
fn load_model(load: &str) -> Result<&'static str, CtlError> {
    match load {
        "s" | "small" => Ok("s"),
        "m" | "medium" => Ok("m"),
        "l" | "large" => Ok("l"),
        "xl" | "xLarge" => Ok("xl"),
        _ => Err(CtlError::new(
            ExitCode::BadFeature,
            format!("unknown load option {load}"),
        )),
    }
}

fn perf_load(model: &str) -> PerfLoad {
    let (limit, clients) = match model {
        "m" => (1000, 200),
        "l" => (8000, 500),
        "xl" => (15000, 1000),
        _ => (150, 50),
    };
    PerfLoad {
        limit,
        clients,
        duration: 60,
    }
}

fn datascale_load(model: &str) -> DatascaleLoad {
    let (limit, clients) = match model {
        "m" => (100_000, 200),
        "l" => (1_000_000, 500),
        "xl" => (3_000_000, 1000),
        _ => (10_000, 50),
    };
    DatascaleLoad {
        limit,
        kv_size: 1024,
        clients,
    }
}

/// Runs `check perf` or `check datascale`.
pub(super) async fn run(ctx: &Ctx, command: CheckCommand) -> Result<(), CtlError> {
    match command {
        CheckCommand::Perf {
            load,
            prefix,
            auto_compact,
            auto_defrag,
        } => perf(ctx, &load, &prefix, auto_compact, auto_defrag).await,
        CheckCommand::Datascale {
            load,
            prefix,
            auto_compact,
            auto_defrag,
        } => datascale(ctx, &load, &prefix, auto_compact, auto_defrag).await,
    }
}

async fn perf(
    ctx: &Ctx,
    load: &str,
    prefix: &str,
    auto_compact: bool,
    auto_defrag: bool,
) -> Result<(), CtlError> {
    let mut cfg = perf_load(load_model(load)?);
    if let Some(seconds) = std::env::var(PERF_DURATION_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| *s > 0)
    {
        cfg.duration = seconds;
    }
    let duration = Duration::from_secs(cfg.duration);
    let clients = connect(ctx, cfg.clients).await?;
    let first = &clients[0];
    refuse_used_prefix(first, prefix, Some(duration)).await?;

    let bar = ProgressBar::start(cfg.duration as i64);
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            for _ in 0..cfg.duration {
                tokio::time::sleep(Duration::from_secs(1)).await;
                bar.add(1);
            }
            bar.finish().await;
        })
    };

    let (sender, workers) = spawn_workers(&clients, None);
    let value = vec![0u8; 1024];
    let mut key = vec![0u8; 256];
    let mut rng = Rng::seeded();
    let deadline = tokio::time::Instant::now() + duration;
    let period = Duration::from_secs_f64(1.0 / cfg.limit as f64);
    let mut next = tokio::time::Instant::now();
    let started = Instant::now();
    loop {
        // etcd's rate.Limiter with a burst of 1: one token per period, and no wait that
        // would end after the deadline.
        let now = tokio::time::Instant::now();
        if next < now {
            next = now;
        }
        if next > deadline {
            break;
        }
        tokio::time::sleep_until(next).await;
        next += period;
        put_varint(&mut key, rng.below_max_i64());
        let mut full = prefix.as_bytes().to_vec();
        full.extend_from_slice(&key);
        if sender.send((full, value.clone())).await.is_err() {
            break;
        }
    }
    drop(sender);
    let stats = collect(workers, started).await;
    let _ = ticker.await;

    let revision = delete_prefix(first, prefix).await?;
    maintain(ctx, first, revision, auto_compact, auto_defrag).await?;

    let mut out = String::new();
    let mut ok = true;
    if !stats.errors.is_empty() {
        out.push_str("FAIL: too many errors\n");
        for (error, count) in &stats.errors {
            out.push_str(&format!("FAIL: ERROR({error}) -> {count}\n"));
        }
        ok = false;
    }
    let writes = stats.rps as i64 + 1;
    if stats.rps / cfg.limit as f64 <= 0.9 {
        out.push_str(&format!("FAIL: Throughput too low: {writes} writes/s\n"));
        ok = false;
    } else {
        out.push_str(&format!("PASS: Throughput is {writes} writes/s\n"));
    }
    if stats.slowest > 0.5 {
        out.push_str(&format!(
            "Slowest request took too long: {:.6}s\n",
            stats.slowest
        ));
        ok = false;
    } else {
        out.push_str(&format!(
            "PASS: Slowest request took {:.6}s\n",
            stats.slowest
        ));
    }
    if stats.stddev > 0.1 {
        out.push_str(&format!("Stddev too high: {:.6}s\n", stats.stddev));
        ok = false;
    } else {
        out.push_str(&format!("PASS: Stddev is {:.6}s\n", stats.stddev));
    }
    out.push_str(if ok { "PASS\n" } else { "FAIL\n" });
    emit(out.as_bytes())?;
    if ok {
        Ok(())
    } else {
        Err(CtlError::silent(ExitCode::Error))
    }
}

async fn datascale(
    ctx: &Ctx,
    load: &str,
    prefix: &str,
    auto_compact: bool,
    auto_defrag: bool,
) -> Result<(), CtlError> {
    let cfg = datascale_load(load_model(load)?);
    let clients = connect(ctx, cfg.clients).await?;
    let first = &clients[0];
    let endpoint = ctx
        .endpoints()
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:2379".to_string());
    refuse_used_prefix(first, prefix, None).await?;

    let before = resident_memory(&endpoint).await;
    if before == 0.0 {
        emit(b"FAIL: Could not read process_resident_memory_bytes before the put operations.\n")?;
        return Err(CtlError::silent(ExitCode::Error));
    }
    emit(
        format!(
            "Start data scale check for work load [{} key-value pairs, {} bytes per key-value, {} concurrent clients].\n",
            cfg.limit, cfg.kv_size, cfg.clients
        )
        .as_bytes(),
    )?;
    let bar = ProgressBar::start(cfg.limit as i64);
    let (sender, workers) = spawn_workers(&clients, Some(bar.clone()));
    let value = vec![0u8; 512];
    let mut key = vec![0u8; 512];
    let mut rng = Rng::seeded();
    let started = Instant::now();
    for _ in 0..cfg.limit {
        put_varint(&mut key, rng.below_max_i64());
        let mut full = prefix.as_bytes().to_vec();
        full.extend_from_slice(&key);
        if sender.send((full, value.clone())).await.is_err() {
            break;
        }
    }
    drop(sender);
    let stats = collect(workers, started).await;
    bar.finish().await;

    let after = resident_memory(&endpoint).await;
    if after == 0.0 {
        emit(b"FAIL: Could not read process_resident_memory_bytes after the put operations.\n")?;
        return Err(CtlError::silent(ExitCode::Error));
    }
    let revision = delete_prefix(first, prefix).await?;
    maintain(ctx, first, revision, auto_compact, auto_defrag).await?;

    if !stats.errors.is_empty() {
        let mut out = String::from("FAIL: too many errors\n");
        for (error, count) in &stats.errors {
            out.push_str(&format!("FAIL: ERROR({error}) -> {count}\n"));
        }
        emit(out.as_bytes())?;
        return Err(CtlError::silent(ExitCode::Error));
    }
    let used_mb = (after - before) / (1024.0 * 1024.0);
    emit(format!("PASS: Approximate system memory used : {used_mb:.2} MB.\n").as_bytes())
}

/// One connection per client, each dialed now (etcdctl's `mustClient` per client).
async fn connect(ctx: &Ctx, n: usize) -> Result<Vec<Arc<Connection>>, CtlError> {
    let clients: Vec<Arc<Connection>> = (0..n.max(1))
        .map(|_| Arc::new(ctx.conn.with_endpoints(ctx.endpoints().to_vec())))
        .collect();
    let dials = futures::future::join_all(clients.iter().map(|c| c.session())).await;
    for dial in dials {
        dial.map_err(|e| e.fail(ExitCode::BadConnection))?;
    }
    Ok(clients)
}

/// Fails when `prefix` already holds a key.
async fn refuse_used_prefix(
    client: &Connection,
    prefix: &str,
    timeout: Option<Duration>,
) -> Result<(), CtlError> {
    let request = RangeRequest {
        key: prefix.as_bytes().to_vec(),
        range_end: prefix_end(prefix.as_bytes()),
        limit: 1,
        ..Default::default()
    };
    let response = client
        .unary(timeout, |s| async move {
            conn::kv(&s).range(s.request(request)).await
        })
        .await
        .map_err(|e| e.fail(ExitCode::Error))?;
    if !response.kvs.is_empty() {
        return Err(CtlError::new(
            ExitCode::InvalidInput,
            format!(
                "prefix {} has keys. Delete with etcdctl del --prefix {prefix} first",
                golog::go_quote(prefix.as_bytes())
            ),
        ));
    }
    Ok(())
}

/// Deletes every key under `prefix`; the revision of the deletion.
async fn delete_prefix(client: &Connection, prefix: &str) -> Result<i64, CtlError> {
    let request = DeleteRangeRequest {
        key: prefix.as_bytes().to_vec(),
        range_end: prefix_end(prefix.as_bytes()),
        ..Default::default()
    };
    let response = client
        .unary(Some(Duration::from_secs(30)), |s| async move {
            conn::kv(&s).delete_range(s.request(request)).await
        })
        .await
        .map_err(|e| e.fail(ExitCode::Error))?;
    Ok(response.header.map(|h| h.revision).unwrap_or_default())
}

/// `--auto-compact` and `--auto-defrag` after a check.
async fn maintain(
    ctx: &Ctx,
    client: &Connection,
    revision: i64,
    compact: bool,
    defrag: bool,
) -> Result<(), CtlError> {
    let timeout = Some(Duration::from_secs(30));
    if compact {
        emit(format!("Compacting with revision {revision}\n").as_bytes())?;
        client
            .unary(timeout, |s| async move {
                conn::kv(&s)
                    .compact(s.request(CompactionRequest {
                        revision,
                        physical: true,
                    }))
                    .await
            })
            .await
            .map_err(|e| e.fail(ExitCode::Error))?;
        emit(format!("Compacted with revision {revision}\n").as_bytes())?;
    }
    if defrag {
        for endpoint in ctx.endpoints() {
            let quoted = golog::go_quote(endpoint.as_bytes());
            emit(format!("Defragmenting {quoted}\n").as_bytes())?;
            let member = ctx.conn.for_endpoint(endpoint);
            member
                .unary(timeout, |s| async move {
                    conn::maintenance(&s)
                        .defragment(s.request(DefragmentRequest {}))
                        .await
                })
                .await
                .map_err(|e| e.fail(ExitCode::Error))?;
            emit(format!("Defragmented {quoted}\n").as_bytes())?;
        }
    }
    Ok(())
}

/// The end of the range of keys with `prefix` (clientv3's `GetPrefixRangeEnd`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Go's `binary.PutVarint` into the start of `buf` (zig-zag, then 7 bits a byte).
fn put_varint(buf: &mut [u8], x: i64) {
    let mut ux = ((x as u64) << 1) ^ ((x >> 63) as u64);
    let mut i = 0;
    while ux >= 0x80 && i < buf.len() {
        buf[i] = (ux as u8) | 0x80;
        ux >>= 7;
        i += 1;
    }
    if i < buf.len() {
        buf[i] = ux as u8;
    }
}

/// A small pseudo-random generator (splitmix64) for the keys.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        Rng(nanos ^ u64::from(std::process::id()).rotate_left(32))
    }

    /// A number in `[0, i64::MAX)`.
    fn below_max_i64(&mut self) -> i64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        ((z >> 1) % (i64::MAX as u64)) as i64
    }
}

/// One put's outcome: its latency, or the error's text.
type Outcome = Result<Duration, String>;

/// Starts one worker per client, taking puts from a shared queue as long as the clients.
#[allow(clippy::type_complexity)]
fn spawn_workers(
    clients: &[Arc<Connection>],
    bar: Option<ProgressBar>,
) -> (
    mpsc::Sender<(Vec<u8>, Vec<u8>)>,
    Vec<tokio::task::JoinHandle<Vec<Outcome>>>,
) {
    let (sender, receiver) = mpsc::channel::<(Vec<u8>, Vec<u8>)>(clients.len());
    let receiver = Arc::new(Mutex::new(receiver));
    let workers = clients
        .iter()
        .map(|client| {
            let client = Arc::clone(client);
            let receiver = Arc::clone(&receiver);
            let bar = bar.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                loop {
                    let next = receiver.lock().await.recv().await;
                    let Some((key, value)) = next else {
                        break;
                    };
                    let start = Instant::now();
                    let request = PutRequest {
                        key,
                        value,
                        ..Default::default()
                    };
                    let result = client
                        .unary(None, |s| async move {
                            conn::kv(&s).put(s.request(request)).await
                        })
                        .await;
                    outcomes.push(match result {
                        Ok(_) => Ok(start.elapsed()),
                        Err(e) => Err(e.to_string()),
                    });
                    if let Some(bar) = &bar {
                        bar.add(1);
                    }
                }
                outcomes
            })
        })
        .collect();
    (sender, workers)
}

/// etcd's `report.Stats`, the parts the checks use.
#[derive(Debug, Default)]
struct Stats {
    rps: f64,
    slowest: f64,
    stddev: f64,
    errors: BTreeMap<String, u64>,
}

/// Waits for the workers and computes the statistics of their puts (as etcd's `report`:
/// throughput over the whole run, latencies of the successful puts only).
async fn collect(workers: Vec<tokio::task::JoinHandle<Vec<Outcome>>>, started: Instant) -> Stats {
    let mut latencies = Vec::new();
    let mut stats = Stats::default();
    for worker in workers {
        match worker.await {
            Ok(outcomes) => {
                for outcome in outcomes {
                    match outcome {
                        Ok(latency) => latencies.push(latency.as_secs_f64()),
                        Err(error) => *stats.errors.entry(error).or_default() += 1,
                    }
                }
            }
            Err(e) => *stats.errors.entry(e.to_string()).or_default() += 1,
        }
    }
    let total = started.elapsed().as_secs_f64();
    let n = latencies.len() as f64;
    stats.rps = n / total;
    // With no successful put, etcd's average and deviation are 0/0 (NaN), kept here.
    let average = latencies.iter().sum::<f64>() / n;
    stats.stddev = (latencies
        .iter()
        .map(|l| (l - average) * (l - average))
        .sum::<f64>()
        / n)
        .sqrt();
    stats.slowest = latencies.iter().copied().fold(0.0, f64::max);
    stats
}

/// The first endpoint's `process_resident_memory_bytes` from its `/metrics`; 0 (after
/// saying why on stdout) when it cannot be read.
async fn resident_memory(endpoint: &str) -> f64 {
    const KEY: &str = "process_resident_memory_bytes";
    let host = if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    };
    let url = format!("{host}/metrics");
    let body = match http_get(&url).await {
        Ok(body) => body,
        Err(e) => {
            let _ = emit(format!("fetch error: {e}\n").as_bytes());
            return 0.0;
        }
    };
    let text = String::from_utf8_lossy(&body);
    let Some(value) = text
        .split('\n')
        .find_map(|line| line.strip_prefix(KEY))
        .map(str::trim)
        .filter(|v| !v.is_empty())
    else {
        let _ = emit(format!("could not find: {KEY}\n").as_bytes());
        return 0.0;
    };
    match value.parse::<f64>() {
        Ok(bytes) => bytes,
        Err(_) => {
            let _ = emit(
                format!("parse error: strconv.ParseFloat: parsing {value:?}: invalid syntax\n")
                    .as_bytes(),
            );
            0.0
        }
    }
}

/// A plain HTTP/1.1 GET of `url` (`http://host:port/path`); the body.
async fn http_get(url: &str) -> Result<Vec<u8>, String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!(
            "Get {}: TLS is not supported by this build of oxcdctl yet",
            golog::go_quote(url.as_bytes())
        ));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let quoted = golog::go_quote(url.as_bytes());
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| {
            format!(
                "Get {quoted}: dial tcp {authority}: connect: {}",
                io_text(&e)
            )
        })?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: Go-http-client/1.1\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("Get {quoted}: {}", io_text(&e)))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .map_err(|e| format!("reading {url}: {}", io_text(&e)))?;
    let Some(split) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(format!("Get {quoted}: malformed HTTP response"));
    };
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let body = &response[split + 4..];
    if head
        .lines()
        .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"))
    {
        Ok(dechunk(body))
    } else {
        Ok(body.to_vec())
    }
}

/// The body of a chunked transfer encoding.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&body[..eol]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            break;
        };
        body = &body[eol + 2..];
        if size == 0 || size > body.len() {
            out.extend_from_slice(&body[..size.min(body.len())]);
            break;
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or_default();
    }
    out
}

/// An I/O error as Go's syscall text (`connection refused`).
fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_lowercase(),
        None => text,
    }
}

/// The progress bar etcdctl draws with `pb.v1` and the format `Bom !`: counters, bar,
/// percentage and time left, redrawn every 200 ms after a carriage return, as wide as the
/// terminal (no bar at all without one).
#[derive(Debug, Clone)]
struct ProgressBar(Arc<BarState>);

#[derive(Debug)]
struct BarState {
    total: i64,
    current: AtomicI64,
    start: Instant,
    /// (previous value, time it last changed), and whether the bar has finished.
    change: std::sync::Mutex<(i64, Instant, bool)>,
    refresher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ProgressBar {
    fn start(total: i64) -> ProgressBar {
        let now = Instant::now();
        let bar = ProgressBar(Arc::new(BarState {
            total,
            current: AtomicI64::new(0),
            start: now,
            change: std::sync::Mutex::new((0, now, false)),
            refresher: std::sync::Mutex::new(None),
        }));
        bar.update();
        let refresher = {
            let bar = bar.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    bar.update();
                }
            })
        };
        if let Ok(mut slot) = bar.0.refresher.lock() {
            *slot = Some(refresher);
        }
        bar
    }

    fn add(&self, n: i64) {
        self.0.current.fetch_add(n, Ordering::Relaxed);
    }

    fn update(&self) {
        let current = self.0.current.load(Ordering::Relaxed);
        let line = {
            let Ok(mut change) = self.0.change.lock() else {
                return;
            };
            if change.2 {
                return;
            }
            if change.0 != current {
                *change = (current, Instant::now(), false);
            }
            self.line(current, change.1, false)
        };
        let _ = emit(format!("\r{line}").as_bytes());
    }

    async fn finish(&self) {
        let refresher = self.0.refresher.lock().ok().and_then(|mut r| r.take());
        if let Some(refresher) = refresher {
            refresher.abort();
            let _ = refresher.await;
        }
        let current = self.0.current.load(Ordering::Relaxed);
        let line = {
            let Ok(mut change) = self.0.change.lock() else {
                return;
            };
            if change.2 {
                return;
            }
            change.2 = true;
            self.line(current, change.1, true)
        };
        let _ = emit(format!("\r{line}\n").as_bytes());
    }

    fn line(&self, current: i64, changed: Instant, finished: bool) -> String {
        let total = self.0.total;
        let width = terminal_width();
        let percent = if total > 0 {
            current as f64 / (total as f64 / 100.0)
        } else {
            current as f64 / 100.0
        };
        let percent_box = format!(" {percent:6.2}%");
        let counters = format!(" {current} / {total} ");
        let from_start = self.0.start.elapsed();
        let time_box = if finished {
            format!(
                " {}",
                golog::go_duration(Duration::from_secs(from_start.as_secs()))
            )
        } else if current > 0 && total > 0 {
            let from_change = changed.saturating_duration_since(self.0.start);
            let per_entry = from_change.as_nanos() as i128 / i128::from(current);
            let left =
                i128::from(total - current) * per_entry - changed.elapsed().as_nanos() as i128;
            let left_secs = left / 1_000_000_000;
            if left_secs > 0 {
                format!(" {}", pb_duration(left_secs as u64))
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        let fixed = counters.chars().count() + 2 + percent_box.len() + time_box.len();
        let mut bar = String::new();
        if width > fixed && total > 0 {
            let size = width - fixed;
            let cur = ((current as f64 / total as f64) * size as f64).ceil() as usize;
            let cur = cur.min(size);
            let empty = size - cur;
            bar.push('B');
            if empty == 0 {
                bar.push_str(&"o".repeat(cur));
            } else if cur > 0 {
                bar.push_str(&"o".repeat(cur - 1));
                bar.push('m');
            }
            bar.push_str(&" ".repeat(empty));
            bar.push('!');
        }
        let out = format!("{counters}{bar}{percent_box}{time_box}");
        let len = out.chars().count();
        if len < width {
            format!("{out}{}", " ".repeat(width - len))
        } else {
            out
        }
    }
}

/// pb's time-left format: `[Nd][Nh]MMmSSs`.
fn pb_duration(mut secs: u64) -> String {
    let mut out = String::new();
    if secs > 86_400 {
        out.push_str(&format!("{}d", secs / 86_400));
        secs %= 86_400;
    }
    if secs > 3600 {
        out.push_str(&format!("{}h", secs / 3600));
        secs %= 3600;
    }
    out.push_str(&format!("{:02}m{:02}s", secs / 60, secs % 60));
    out
}

/// The width of the controlling terminal (`/dev/tty`, else stdin), 0 without one.
fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ fills a `winsize` we own; the descriptor is open for the call.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        let tty = libc::open(c"/dev/tty".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        let fd = if tty >= 0 { tty } else { libc::STDIN_FILENO };
        let ok = libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) == 0;
        if tty >= 0 {
            libc::close(tty);
        }
        if ok {
            usize::from(ws.ws_col)
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_and_aliases_are_etcds() {
        for (alias, model) in [
            ("s", "s"),
            ("small", "s"),
            ("medium", "m"),
            ("large", "l"),
            ("xLarge", "xl"),
        ] {
            assert_eq!(load_model(alias).unwrap(), model);
        }
        let e = load_model("xlarge").unwrap_err();
        assert_eq!(e.code, ExitCode::BadFeature);
        assert_eq!(e.message.as_deref(), Some("unknown load option xlarge"));
        let s = perf_load("s");
        assert_eq!((s.limit, s.clients, s.duration), (150, 50, 60));
        let xl = perf_load("xl");
        assert_eq!((xl.limit, xl.clients), (15000, 1000));
        let m = datascale_load("m");
        assert_eq!((m.limit, m.kv_size, m.clients), (100_000, 1024, 200));
    }

    #[test]
    fn varint_keys_are_gos() {
        let mut k = [0u8; 4];
        put_varint(&mut k, 1);
        assert_eq!(k, [2, 0, 0, 0]);
        put_varint(&mut k, 300);
        assert_eq!(k, [0xd8, 0x04, 0, 0]);
    }

    #[test]
    fn prefix_end_and_chunked_bodies() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"),
            b"abcde".to_vec()
        );
    }

    #[test]
    fn pb_formats_time_left() {
        assert_eq!(pb_duration(59), "00m59s");
        assert_eq!(pb_duration(3725), "1h02m05s");
    }
}
