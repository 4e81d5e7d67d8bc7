//! `oxcd-bench`: a load generator for any etcd v3 gRPC endpoint, in the
//! spirit of etcd's `tools/benchmark`.
//!
//! ```text
//! oxcd-bench --endpoints 127.0.0.1:2379 --conns 10 --clients 100 --total 20000 put
//! oxcd-bench --clients 100 range foo --consistency s --json
//! oxcd-bench --conns 10 --clients 100 txn-put --txn-ops 4 --key-space-size 100000
//! oxcd-bench --conns 10 --clients 100 txn-mixed --rw-ratio 4 --key-space-size 1000
//! oxcd-bench --conns 10 --clients 100 lease-keepalive
//! oxcd-bench --gateway --clients 100 put        # over the JSON gateway, HTTP/1.1
//! oxcd-bench --conns 10 --total 1000 watch --streams 100 --watchers 1000 --key foo
//! oxcd-bench --conns 10 watch-latency --streams 100 --watchers-per-stream 10 --put-rate 200
//! oxcd-bench --endpoints https://127.0.0.1:2379 --cacert ca.pem --user bench:secret put
//! ```
//!
//! Auth and TLS as etcd's benchmark tool: `--user name:password` logs every connection in
//! (Authenticate) and sends the token with each request; `--cacert` (and `--cert`/`--key`
//! for servers that check clients) turns on TLS, also for endpoints without a scheme.
//!
//! Every workload prints the same summary (`--json`: `requests`, `ok`, `errors`,
//! `error_samples`, `total_secs`, `requests_per_sec`, `p50_ms` ... `p999_ms`, ...) plus
//! fields of its own; the watch workloads count events there (see `watch.rs`).

mod gateway;
mod lease;
mod progress;
mod stats;
mod watch;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use oxcd_client::{Client, ConnectOptions, Kv, TlsOptions, Txn};
use oxcd_proto::etcdserverpb::RangeRequest;
use serde::Serialize;
use tokio::time::Instant;
use tonic::transport::Channel;

use progress::ProgressBar;
use stats::{Recorder, Summary};
use watch::{LatencyFrom, WatchParams, WatchTarget};
use workload::{PutWorkload, RangeWorkload, Rng, TxnMixedWorkload, TxnPutWorkload, Workload};

/// Command line of `oxcd-bench`.
#[derive(Debug, Parser)]
#[command(
    name = "oxcd-bench",
    version,
    about = "Load generator for etcd v3 gRPC endpoints (etcd, oxcd, ...)"
)]
struct Cli {
    /// gRPC endpoints, comma separated (`host:port`, `http://` optional).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379",
        global = true
    )]
    endpoints: Vec<String>,
    /// Number of gRPC connections (channels), spread over the endpoints.
    #[arg(long, default_value_t = 1, global = true)]
    conns: usize,
    /// Number of concurrent clients (in-flight requests), spread over the connections.
    #[arg(long, default_value_t = 1, global = true)]
    clients: usize,
    /// Total number of requests (0 = unlimited; then --duration is required).
    #[arg(long, default_value_t = 10_000, global = true)]
    total: u64,
    /// Stop after this long (e.g. `10s`, `1m30s`, `500ms`), whichever of
    /// --total and --duration comes first.
    #[arg(long, value_parser = parse_duration, global = true)]
    duration: Option<Duration>,
    /// Maximum request rate in requests/s (0 = unlimited).
    #[arg(long, default_value_t = 0, global = true)]
    rate: u64,
    /// Print the summary as JSON on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Run put or range over etcd's HTTP/JSON gateway (`/v3/kv/put`, `/v3/kv/range`)
    /// instead of gRPC: each client on its own HTTP/1.1 keep-alive connection (--conns
    /// is ignored).
    #[arg(long, global = true)]
    gateway: bool,
    /// Timeout of each request (and of connecting), e.g. `10s`.
    #[arg(long, value_parser = parse_duration, default_value = "10s", global = true)]
    timeout: Duration,
    /// Authenticate as this user (`name:password`, as etcdctl's --user): each connection
    /// logs in and sends its token with every request (gRPC put, range, txn-put, txn-mixed).
    #[arg(long, value_parser = parse_user, global = true)]
    user: Option<User>,
    /// Verify the servers' certificates against this CA (PEM file); turns on TLS, also for
    /// endpoints without `https://`.
    #[arg(long, global = true)]
    cacert: Option<PathBuf>,
    /// Client certificate (PEM file) for servers that check clients (--client-cert-auth,
    /// or --trusted-ca-file, which implies it); needs --key. Before the workload's name
    /// (`watch --key` is the watched key).
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Key of --cert (PEM file); before the workload's name.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// Benchmark workloads.
#[derive(Debug, Subcommand)]
enum Command {
    /// Benchmark Put requests.
    Put {
        #[command(flatten)]
        writes: WriteArgs,
    },
    /// Benchmark Range requests over KEY (or [KEY, END)).
    Range {
        /// Key (or start of the range).
        key: String,
        /// End of the range (exclusive); omit for a single key.
        end: Option<String>,
        /// Consistency: `l` (linearizable) or `s` (serializable).
        #[arg(long, value_enum, default_value = "l")]
        consistency: Consistency,
        /// Maximum number of keys returned per request (0 = no limit).
        #[arg(long, default_value_t = 0)]
        limit: i64,
    },
    /// Benchmark Txn requests of --txn-ops puts each, to distinct keys of the key space.
    TxnPut {
        #[command(flatten)]
        writes: WriteArgs,
        /// Puts per txn (at most --key-space-size).
        #[arg(long, default_value_t = 1)]
        txn_ops: u64,
    },
    /// Benchmark a mix of reads (a Txn with one Range over [KEY, END)) and writes (a Txn
    /// with one Put to the key space), --rw-ratio reads per write, like etcd's txn-mixed.
    /// Without KEY the reads cover the whole key space (at most --limit keys).
    TxnMixed {
        /// Key (or start of the range) the reads read; omit for the whole key space.
        key: Option<String>,
        /// End of the read range (exclusive); omit for a single key.
        end: Option<String>,
        /// Reads per write (e.g. 4 = 80% reads; 0 = writes only).
        #[arg(long, default_value_t = 1.0)]
        rw_ratio: f64,
        /// Consistency of the reads: `l` (linearizable) or `s` (serializable).
        #[arg(long, value_enum, default_value = "l")]
        consistency: Consistency,
        /// Maximum number of keys a read returns (0 = no limit).
        #[arg(long, default_value_t = 1000)]
        limit: i64,
        #[command(flatten)]
        writes: WriteArgs,
    },
    /// Benchmark lease keep-alives: each client grants a lease, then does keep-alive
    /// round trips on its own LeaseKeepAlive stream.
    LeaseKeepalive {
        /// TTL of each client's lease, seconds.
        #[arg(long, default_value_t = 60)]
        ttl: i64,
    },
    /// Benchmark watch event delivery: --watchers watchers on one key or prefix, then
    /// --total puts to it; reports events/s, put-to-event latency and checks that every
    /// watcher got every event exactly once, in order.
    Watch {
        /// Number of watch streams (gRPC calls), spread over the connections.
        #[arg(long, default_value_t = 10)]
        streams: usize,
        /// Number of watchers in total, spread evenly over the streams.
        #[arg(long, default_value_t = 100)]
        watchers: usize,
        /// Watch this single key (and put to it).
        #[arg(long, conflicts_with = "prefix")]
        key: Option<String>,
        /// Watch this prefix (and put to --key-space-size keys under it).
        #[arg(long)]
        prefix: Option<String>,
        /// Distinct keys written under --prefix (round robin).
        #[arg(long, default_value_t = 100)]
        key_space_size: u64,
        /// Number of concurrent putters (in-flight puts).
        #[arg(long, default_value_t = 1)]
        put_clients: usize,
    },
    /// Benchmark watch latency as etcd's watch-latency does: --streams x
    /// --watchers-per-stream watchers on one key, one putter (own connection) writing
    /// --put-total puts at --put-rate/s; the latency of every event is measured from its
    /// put's response (0 if the event came first). Ignores --total, --rate, --clients.
    WatchLatency {
        /// Number of watch streams, spread over the connections.
        #[arg(long, default_value_t = 10)]
        streams: usize,
        /// Watchers per stream.
        #[arg(long, default_value_t = 10)]
        watchers_per_stream: usize,
        /// Number of puts.
        #[arg(long, default_value_t = 1000)]
        put_total: u64,
        /// Puts per second (0 = as fast as one putter goes).
        #[arg(long, default_value_t = 100)]
        put_rate: u64,
        /// The watched (and written) key.
        #[arg(long, default_value = "/registry/pods")]
        key: String,
        /// Value size of the puts, bytes (at least 8: the send time is in the value).
        #[arg(long, default_value_t = 32)]
        val_size: usize,
        /// Ask for the previous key-value with every event.
        #[arg(long)]
        prevkv: bool,
    },
}

/// The keys and values a writing workload (put, txn-put, txn-mixed) puts.
#[derive(Debug, Args)]
struct WriteArgs {
    /// Key size in bytes.
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 8)]
    val_size: usize,
    /// Number of distinct keys to write.
    #[arg(long, default_value_t = 1)]
    key_space_size: u64,
    /// Write keys sequentially (0, 1, 2, ... modulo the key space, as etcd's txn-put
    /// does) instead of randomly.
    #[arg(long)]
    sequential_keys: bool,
}

impl WriteArgs {
    fn workload(&self) -> Result<PutWorkload, String> {
        PutWorkload::new(
            self.key_size,
            self.val_size,
            self.key_space_size,
            self.sequential_keys,
        )
    }
}

/// Read consistency of range requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Consistency {
    /// Linearizable reads (go through the leader's read index).
    L,
    /// Serializable reads (served locally).
    S,
}

/// Parses a Go-style duration such as `10s`, `1m30s`, `250ms`, `1.5h`.
/// A bare number is taken as seconds (unlike Go, for convenience on the command line).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(secs) => Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}")),
        Err(_) => oxcd_godur::parse(s),
    }
}

/// Turns `host:port` or `http(s)://host:port` into a URL tonic accepts; `host:port` is
/// `https://` when TLS flags are given.
fn endpoint_url(ep: &str, tls: bool) -> String {
    let ep = ep.trim();
    if ep.contains("://") {
        ep.to_string()
    } else if tls {
        format!("https://{ep}")
    } else {
        format!("http://{ep}")
    }
}

/// `--user name:password`.
#[derive(Clone)]
struct User {
    name: String,
    password: String,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// Parses `--user`: a benchmark cannot prompt, so the password is required.
fn parse_user(s: &str) -> Result<User, String> {
    match s.split_once(':') {
        Some((name, password)) if !name.is_empty() => Ok(User {
            name: name.to_string(),
            password: password.to_string(),
        }),
        _ => Err("want name:password".into()),
    }
}

impl Cli {
    /// The TLS options of --cacert/--cert/--key, or of an `https://` endpoint (system
    /// roots); `None` for plain text.
    fn tls(&self) -> Result<Option<TlsOptions>, String> {
        let https = self
            .endpoints
            .iter()
            .any(|e| e.trim().starts_with("https://"));
        if self.cacert.is_none() && self.cert.is_none() && !https {
            return Ok(None);
        }
        let mut tls = TlsOptions::new();
        if let Some(ca) = &self.cacert {
            tls = tls.with_ca_file(ca).map_err(|e| format!("--cacert: {e}"))?;
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            tls = tls
                .with_identity_files(cert, key)
                .map_err(|e| format!("--cert/--key: {e}"))?;
        }
        Ok(Some(tls))
    }
}

/// Formats a failed RPC for the error samples: `Txn: Unavailable: message`.
pub fn rpc_error(rpc: &str, status: &tonic::Status) -> String {
    format!("{rpc}: {:?}: {}", status.code(), status.message())
}

/// A failed call of the typed client, worded like [`rpc_error`].
fn client_error(rpc: &str, error: &oxcd_client::Error) -> String {
    format!("{rpc}: {error}")
}

/// Limits of a run shared by all clients.
pub struct Run {
    workload: Workload,
    /// Next request sequence number to hand out.
    next: AtomicU64,
    /// Requests completed (ok or not), for the progress bar.
    done: Arc<AtomicU64>,
    /// Set once the duration is over.
    stop: AtomicBool,
    total: u64,
    deadline: Option<Instant>,
    rate: u64,
    start: Instant,
}

impl Run {
    fn new(workload: Workload, total: u64, duration: Option<Duration>, rate: u64) -> Run {
        let start = Instant::now();
        Run {
            workload,
            next: AtomicU64::new(0),
            done: Arc::new(AtomicU64::new(0)),
            stop: AtomicBool::new(false),
            total,
            deadline: duration.map(|d| start + d),
            rate,
            start,
        }
    }

    /// Claims the next request sequence number, or `None` when the run is over.
    async fn next_seq(&self) -> Option<u64> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        if self.total != 0 && seq >= self.total {
            return None;
        }
        if self.rate > 0 {
            // Request `seq` is due at start + seq / rate.
            let due = self.start + Duration::from_secs_f64(seq as f64 / self.rate as f64);
            if self.deadline.is_some_and(|d| due >= d) {
                return None;
            }
            tokio::time::sleep_until(due).await;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.stop.store(true, Ordering::Relaxed);
            return None;
        }
        Some(seq)
    }
}

/// What one client recorded: all its requests, and for `txn-mixed` the reads and the
/// writes apart.
#[derive(Default)]
struct Recorded {
    all: Recorder,
    reads: Recorder,
    writes: Recorder,
}

impl Recorded {
    fn merge(&mut self, other: &Recorded) {
        self.all.merge(&other.all);
        self.reads.merge(&other.reads);
        self.writes.merge(&other.writes);
    }
}

/// One KV client: issues requests one at a time until the run is over.
async fn client_loop(run: Arc<Run>, kv: Kv, id: u64) -> Recorded {
    let mut rec = Recorded::default();
    let mut rng = Rng::new(0xC0FFEE ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    while let Some(seq) = run.next_seq().await {
        let started = Instant::now();
        let mut is_read = None;
        let result = match &run.workload {
            Workload::Put(w) => kv
                .put_request(w.request(seq, &mut rng))
                .await
                .map(drop)
                .map_err(|e| client_error("Put", &e)),
            Workload::Range(w) => kv
                .range(w.request.clone())
                .await
                .map(drop)
                .map_err(|e| client_error("Range", &e)),
            Workload::TxnPut(w) => kv
                .txn(Txn::from(w.request(seq, &mut rng)))
                .await
                .map(drop)
                .map_err(|e| client_error("Txn", &e)),
            Workload::TxnMixed(w) => {
                let (read, txn) = w.request(seq, &mut rng);
                is_read = Some(read);
                kv.txn(Txn::from(txn))
                    .await
                    .map(drop)
                    .map_err(|e| client_error("Txn", &e))
            }
            Workload::LeaseKeepAlive { .. } | Workload::Watch(_) => Err(format!(
                "internal: {} is not a KV workload",
                run.workload.name()
            )),
        };
        let elapsed = started.elapsed();
        let class = match is_read {
            Some(true) => Some(&mut rec.reads),
            Some(false) => Some(&mut rec.writes),
            None => None,
        };
        match result {
            Ok(()) => {
                rec.all.record_ok(elapsed);
                if let Some(c) = class {
                    c.record_ok(elapsed);
                }
            }
            Err(e) => {
                rec.all.record_err(&e);
                if let Some(c) = class {
                    c.record_err(&e);
                }
            }
        }
        run.done.fetch_add(1, Ordering::Relaxed);
    }
    rec
}

/// Formats an error with all its sources (`a: b: c`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

async fn connect(cli: &Cli, n: usize) -> Result<Vec<Client>, String> {
    let tls = cli.tls()?;
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let url = endpoint_url(&cli.endpoints[i % cli.endpoints.len()], tls.is_some());
        // One client per connection, each pinned to its endpoint (no member-list sync):
        // the load is spread as --endpoints and --conns say, as etcd's benchmark does.
        let mut options = ConnectOptions::new()
            .with_dial_timeout(cli.timeout)
            .with_timeout(cli.timeout);
        if let Some(user) = &cli.user {
            options = options.with_user(&user.name, &user.password);
        }
        if let Some(tls) = &tls {
            options = options.with_tls(tls.clone());
        }
        let client = Client::connect_with([url.as_str()], options)
            .await
            .map_err(|e| format!("cannot connect to {url}: {}", error_chain(&e)))?;
        clients.push(client);
    }
    Ok(clients)
}

/// The raw connections of `clients`, for the stream workloads (watch, lease keep-alive),
/// which shape their streams themselves.
fn channels_of(clients: &[Client]) -> Result<Vec<Channel>, String> {
    clients
        .iter()
        .map(|c| c.raw_channel().map_err(|e| format!("no connection: {e}")))
        .collect()
}

/// The range request of `range KEY [END]` and `txn-mixed [KEY [END]]`; no key means
/// the whole key space (`\0` to `\0`, as etcd's prefix of the empty key).
fn range_request(
    key: Option<&str>,
    end: Option<&str>,
    consistency: Consistency,
    limit: i64,
) -> RangeRequest {
    let serializable = consistency == Consistency::S;
    match key {
        Some(k) => RangeWorkload::new(k, end, serializable, limit).request,
        None => RangeRequest {
            key: vec![0],
            range_end: vec![0],
            limit,
            serializable,
            ..Default::default()
        },
    }
}

fn build_workload(command: &Command) -> Result<Workload, String> {
    Ok(match command {
        Command::Put { writes } => Workload::Put(writes.workload()?),
        Command::Range {
            key,
            end,
            consistency,
            limit,
        } => Workload::Range(RangeWorkload {
            request: range_request(Some(key), end.as_deref(), *consistency, *limit),
        }),
        Command::TxnPut { writes, txn_ops } => {
            Workload::TxnPut(TxnPutWorkload::new(writes.workload()?, *txn_ops)?)
        }
        Command::TxnMixed {
            key,
            end,
            rw_ratio,
            consistency,
            limit,
            writes,
        } => {
            if end.is_some() && key.as_deref().is_none_or(str::is_empty) {
                return Err("txn-mixed: an END needs a KEY".into());
            }
            Workload::TxnMixed(TxnMixedWorkload::new(
                writes.workload()?,
                range_request(key.as_deref(), end.as_deref(), *consistency, *limit),
                *rw_ratio,
            )?)
        }
        Command::LeaseKeepalive { ttl } => {
            if *ttl <= 0 {
                return Err("--ttl must be at least 1".into());
            }
            Workload::LeaseKeepAlive { ttl: *ttl }
        }
        Command::Watch {
            key,
            prefix,
            key_space_size,
            ..
        } => Workload::Watch(WatchTarget::new(
            key.as_deref(),
            prefix.as_deref(),
            *key_space_size,
        )?),
        Command::WatchLatency { key, .. } => Workload::Watch(WatchTarget::new(Some(key), None, 1)?),
    })
}

/// Prints a summary as JSON or text.
fn print_summary<T: Serialize>(
    cli: &Cli,
    summary: &T,
    text: impl FnOnce() -> String,
) -> Result<(), String> {
    if cli.json {
        let json =
            serde_json::to_string_pretty(summary).map_err(|e| format!("encoding JSON: {e}"))?;
        println!("{json}");
    } else {
        print!("{}", text());
    }
    Ok(())
}

/// Runs `watch` or `watch-latency` and prints its summary; returns whether it was clean.
async fn run_watch(cli: &Cli, workload: Workload) -> Result<bool, String> {
    let Workload::Watch(target) = &workload else {
        return Err("internal: run_watch needs a watch workload".into());
    };
    let target = target.clone();
    let channels = channels_of(&connect(cli, cli.conns).await?)?;
    let (params, total, rate) = match &cli.command {
        Command::Watch {
            streams,
            watchers,
            put_clients,
            ..
        } => (
            WatchParams {
                name: "watch",
                streams: *streams,
                watchers: *watchers,
                put_clients: *put_clients,
                puts: cli.total,
                val_size: 8,
                prev_kv: false,
                latency_from: LatencyFrom::PutSent,
                put_channel: None,
                target,
            },
            cli.total,
            cli.rate,
        ),
        Command::WatchLatency {
            streams,
            watchers_per_stream,
            put_total,
            put_rate,
            val_size,
            prevkv,
            ..
        } => (
            WatchParams {
                name: "watch-latency",
                streams: *streams,
                watchers: streams.saturating_mul(*watchers_per_stream),
                put_clients: 1,
                puts: *put_total,
                val_size: *val_size,
                prev_kv: *prevkv,
                latency_from: LatencyFrom::PutAcked,
                // etcd's watch-latency puts on a connection of its own.
                put_channel: channels_of(&connect(cli, 1).await?)?.pop(),
                target,
            },
            *put_total,
            *put_rate,
        ),
        _ => return Err("internal: run_watch needs a watch command".into()),
    };
    let summary = watch::run(&channels, &params, cli.timeout, |start| Run {
        start,
        deadline: cli.duration.map(|d| start + d),
        ..Run::new(workload, total, None, rate)
    })
    .await?;
    print_summary(cli, &summary, || summary.to_text())?;
    if !summary.clean() {
        eprintln!("oxcd-bench: failed puts or missing/duplicate/out-of-order events");
    }
    Ok(summary.clean())
}

/// Summary of `txn-mixed`: all requests (combined throughput) plus reads and writes.
#[derive(Debug, Serialize)]
struct MixedSummary {
    #[serde(flatten)]
    summary: Summary,
    /// Reads per write asked for.
    rw_ratio: f64,
    /// Read txns issued.
    reads: u64,
    /// Write txns issued.
    writes: u64,
    /// The reads alone (`requests_per_sec` = reads per second of the whole run).
    read: Summary,
    /// The writes alone.
    write: Summary,
}

impl MixedSummary {
    fn to_text(&self) -> String {
        format!(
            "\nReads ({} requests):{}\nWrites ({} requests):{}\nAll:{}",
            self.reads,
            self.read.to_text(),
            self.writes,
            self.write.to_text(),
            self.summary.to_text()
        )
    }
}

/// Summary of `lease-keepalive`.
#[derive(Debug, Serialize)]
struct LeaseSummary {
    #[serde(flatten)]
    summary: Summary,
    /// TTL of the clients' leases, seconds.
    ttl: i64,
    /// Clients, each with a lease and a keep-alive stream.
    leases: usize,
}

async fn run(cli: Cli) -> Result<bool, String> {
    if cli.conns == 0 || cli.clients == 0 {
        return Err("--conns and --clients must be at least 1".into());
    }
    if cli.endpoints.iter().all(|e| e.trim().is_empty()) {
        return Err("--endpoints is empty".into());
    }
    let workload = build_workload(&cli.command)?;
    if cli.user.is_some()
        && matches!(
            workload,
            Workload::Watch(_) | Workload::LeaseKeepAlive { .. }
        )
    {
        // Their streams are built on the raw connections, which carry no token.
        return Err(format!(
            "--user: {} does not authenticate yet (put, range, txn-put and txn-mixed do)",
            workload.name()
        ));
    }
    if cli.gateway && (cli.user.is_some() || cli.tls()?.is_some()) {
        return Err(
            "--gateway speaks plain HTTP without auth: no --user, --cacert, --cert or https://"
                .into(),
        );
    }
    if matches!(workload, Workload::Watch(_)) {
        return run_watch(&cli, workload).await;
    }
    if cli.total == 0 && cli.duration.is_none() {
        return Err("--total 0 (unlimited) needs --duration".into());
    }
    if cli.gateway {
        return run_gateway(&cli, workload).await;
    }
    let connections = connect(&cli, cli.conns).await?;

    let run = Arc::new(Run::new(workload, cli.total, cli.duration, cli.rate));
    let unit = match run.workload {
        Workload::LeaseKeepAlive { .. } => "keep-alives",
        _ => "requests",
    };
    let bar = ProgressBar::start(unit, run.done.clone(), cli.total, cli.duration);

    let clients: Vec<_> = (0..cli.clients)
        .map(|i| {
            let client = &connections[i % connections.len()];
            let run = run.clone();
            if let Workload::LeaseKeepAlive { ttl } = run.workload {
                let timeout = cli.timeout;
                let channel = client.raw_channel();
                tokio::spawn(async move {
                    let all = match channel {
                        Ok(channel) => lease::client_loop(run, channel, ttl, timeout).await,
                        Err(e) => {
                            let mut failed = Recorder::default();
                            failed.record_err(&format!("no connection: {e}"));
                            failed
                        }
                    };
                    Recorded {
                        all,
                        ..Default::default()
                    }
                })
            } else {
                tokio::spawn(client_loop(run, client.kv(), i as u64))
            }
        })
        .collect();
    let mut total = Recorded::default();
    for joined in futures::future::join_all(clients).await {
        match joined {
            Ok(rec) => total.merge(&rec),
            Err(e) => return Err(format!("client task failed: {e}")),
        }
    }
    let elapsed = run.start.elapsed();
    if let Some(bar) = bar {
        bar.finish();
    }

    let name = run.workload.name();
    let summary = total.all.summary(name, elapsed);
    match &run.workload {
        Workload::TxnMixed(w) => {
            let s = MixedSummary {
                summary,
                rw_ratio: w.rw_ratio,
                reads: total.reads.ok() + total.reads.errors(),
                writes: total.writes.ok() + total.writes.errors(),
                read: total.reads.summary("txn-mixed-read", elapsed),
                write: total.writes.summary("txn-mixed-write", elapsed),
            };
            print_summary(&cli, &s, || s.to_text())?;
        }
        Workload::LeaseKeepAlive { ttl } => {
            let s = LeaseSummary {
                summary,
                ttl: *ttl,
                leases: cli.clients,
            };
            print_summary(&cli, &s, || s.summary.to_text())?;
        }
        _ => print_summary(&cli, &summary, || summary.to_text())?,
    }
    if total.all.ok() == 0 && total.all.errors() > 0 {
        eprintln!("oxcd-bench: every request failed");
    }
    Ok(total.all.errors() == 0)
}

/// Runs put or range over the JSON gateway (`--gateway`) and prints its summary.
async fn run_gateway(cli: &Cli, workload: Workload) -> Result<bool, String> {
    if !matches!(workload, Workload::Put(_) | Workload::Range(_)) {
        return Err(format!(
            "--gateway runs put and range, not {}",
            workload.name()
        ));
    }
    let mut conns = Vec::with_capacity(cli.clients);
    for i in 0..cli.clients {
        conns.push(gateway::Conn::connect(&cli.endpoints[i % cli.endpoints.len()]).await?);
    }
    let run = Arc::new(Run::new(workload, cli.total, cli.duration, cli.rate));
    let bar = ProgressBar::start("requests", run.done.clone(), cli.total, cli.duration);
    let clients: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| tokio::spawn(gateway::client_loop(run.clone(), conn, i as u64)))
        .collect();
    let mut total = Recorder::default();
    for joined in futures::future::join_all(clients).await {
        match joined {
            Ok(rec) => total.merge(&rec),
            Err(e) => return Err(format!("client task failed: {e}")),
        }
    }
    let elapsed = run.start.elapsed();
    if let Some(bar) = bar {
        bar.finish();
    }
    let name = format!("gateway-{}", run.workload.name());
    let summary = total.summary(&name, elapsed);
    print_summary(cli, &summary, || summary.to_text())?;
    if total.ok() == 0 && total.errors() > 0 {
        eprintln!("oxcd-bench: every request failed");
    }
    Ok(total.errors() == 0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oxcd-bench: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        // The summary was printed; signal that some requests failed.
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("oxcd-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("100ns"), Ok(Duration::from_nanos(100)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration(" 0 "), Ok(Duration::ZERO));
        for bad in ["", "s", "10x", "ms10", "1..5s", "-1s", "10s5"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn endpoint_urls() {
        assert_eq!(
            endpoint_url("127.0.0.1:2379", false),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            endpoint_url("127.0.0.1:2379", true),
            "https://127.0.0.1:2379"
        );
        assert_eq!(endpoint_url("http://h:1", true), "http://h:1");
        assert_eq!(endpoint_url("https://h:1", false), "https://h:1");
    }

    #[test]
    fn auth_and_tls_flags() {
        let cli = parse(&["--user", "bench:pa:ss", "put"]);
        let user = cli.user.as_ref().unwrap();
        assert_eq!(
            (user.name.as_str(), user.password.as_str()),
            ("bench", "pa:ss")
        );
        assert!(
            !format!("{cli:?}").contains("pa:ss"),
            "the password is never printed"
        );
        assert!(cli.tls().unwrap().is_none());
        for bad in ["bench", ":pw"] {
            assert!(Cli::try_parse_from(["oxcd-bench", "--user", bad, "put"]).is_err());
        }
        // --cert needs --key and the other way round; neither clashes with the
        // workloads' own KEY and --key.
        assert!(Cli::try_parse_from(["oxcd-bench", "--cert", "c.pem", "put"]).is_err());
        assert!(Cli::try_parse_from(["oxcd-bench", "--key", "k.pem", "put"]).is_err());
        let cli = parse(&["--cert", "c.pem", "--key", "k.pem", "range", "foo"]);
        assert_eq!(cli.key, Some(PathBuf::from("k.pem")));
        assert!(matches!(&cli.command, Command::Range { key, .. } if key == "foo"));
        let cli = parse(&["--cert", "c.pem", "--key", "k.pem", "watch", "--key", "w"]);
        assert!(matches!(&cli.command, Command::Watch { key: Some(k), .. } if k == "w"));
        // An https:// endpoint alone: TLS against the system's roots.
        let cli = parse(&["--endpoints", "https://h:1", "put"]);
        assert_eq!(cli.tls().unwrap(), Some(TlsOptions::new()));
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "pem").unwrap();
        let cli = parse(&["--cacert", ca.to_str().unwrap(), "put"]);
        assert_eq!(
            cli.tls().unwrap(),
            Some(TlsOptions::new().with_ca_pem(b"pem".to_vec()))
        );
        let missing = dir.path().join("missing.pem");
        let cli = parse(&["--cacert", missing.to_str().unwrap(), "put"]);
        assert!(cli.tls().unwrap_err().starts_with("--cacert: "));
    }

    #[tokio::test]
    async fn stream_and_gateway_workloads_refuse_what_they_cannot_do() {
        let e = run(parse(&["--user", "u:p", "watch", "--key", "k"]))
            .await
            .unwrap_err();
        assert!(e.contains("watch does not authenticate"), "{e}");
        let e = run(parse(&["--user", "u:p", "lease-keepalive"]))
            .await
            .unwrap_err();
        assert!(e.contains("does not authenticate"), "{e}");
        let e = run(parse(&["--gateway", "--endpoints", "https://h:1", "put"]))
            .await
            .unwrap_err();
        assert!(e.starts_with("--gateway speaks plain HTTP"), "{e}");
    }

    #[test]
    fn cli_parses() {
        let cli = Cli::try_parse_from([
            "oxcd-bench",
            "--endpoints",
            "a:1,http://b:2",
            "--clients",
            "100",
            "--conns",
            "10",
            "--duration",
            "5s",
            "range",
            "foo",
            "fop",
            "--consistency",
            "s",
            "--json",
        ])
        .unwrap();
        assert_eq!(cli.endpoints, vec!["a:1", "http://b:2"]);
        assert_eq!((cli.clients, cli.conns, cli.total), (100, 10, 10_000));
        assert_eq!(cli.duration, Some(Duration::from_secs(5)));
        assert!(cli.json);
        match build_workload(&cli.command).unwrap() {
            Workload::Range(w) => {
                assert!(w.request.serializable);
                assert_eq!(w.request.range_end, b"fop");
            }
            _ => panic!("expected range"),
        }
        let cli = Cli::try_parse_from([
            "oxcd-bench",
            "--total",
            "200",
            "watch",
            "--streams",
            "100",
            "--watchers",
            "10000",
            "--prefix",
            "/w/",
        ])
        .unwrap();
        assert_eq!(cli.total, 200);
        match build_workload(&cli.command).unwrap() {
            Workload::Watch(t) => assert_eq!(t.kind(), "prefix"),
            _ => panic!("expected watch"),
        }
        assert!(matches!(
            cli.command,
            Command::Watch {
                streams: 100,
                watchers: 10_000,
                put_clients: 1,
                ..
            }
        ));
        assert!(
            Cli::try_parse_from(["oxcd-bench", "watch", "--key", "a", "--prefix", "b"]).is_err()
        );
        let cli = Cli::try_parse_from(["oxcd-bench", "watch"]).unwrap();
        assert!(
            build_workload(&cli.command).is_err(),
            "--key or --prefix is required"
        );
        let cli = Cli::try_parse_from(["oxcd-bench", "put", "--sequential-keys"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Put {
                writes: WriteArgs {
                    key_size: 8,
                    val_size: 8,
                    key_space_size: 1,
                    sequential_keys: true
                }
            }
        ));
    }

    fn parse(args: &[&str]) -> Cli {
        let mut all = vec!["oxcd-bench"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap()
    }

    #[test]
    fn cli_parses_txn_workloads() {
        let cli = parse(&[
            "--clients",
            "100",
            "txn-put",
            "--txn-ops",
            "4",
            "--key-space-size",
            "1000",
            "--val-size",
            "32",
        ]);
        match build_workload(&cli.command).unwrap() {
            Workload::TxnPut(w) => {
                assert_eq!(w.txn_ops, 4);
                assert_eq!(w.put.key_space_size, 1000);
                assert_eq!(w.put.value.len(), 32);
                assert!(!w.put.sequential);
            }
            _ => panic!("expected txn-put"),
        }
        // etcd's default of one op per txn; more ops than keys is refused.
        match build_workload(&parse(&["txn-put"]).command).unwrap() {
            Workload::TxnPut(w) => assert_eq!(w.txn_ops, 1),
            _ => panic!("expected txn-put"),
        }
        assert!(build_workload(&parse(&["txn-put", "--txn-ops", "2"]).command).is_err());

        // txn-mixed without a key reads the whole key space, etcd's --limit 1000 default.
        match build_workload(&parse(&["txn-mixed"]).command).unwrap() {
            Workload::TxnMixed(w) => {
                assert_eq!(w.rw_ratio, 1.0);
                assert_eq!(
                    (w.read.key.as_slice(), w.read.range_end.as_slice()),
                    (&[0u8][..], &[0u8][..])
                );
                assert_eq!(w.read.limit, 1000);
                assert!(!w.read.serializable);
            }
            _ => panic!("expected txn-mixed"),
        }
        let cli = parse(&[
            "txn-mixed",
            "a",
            "b",
            "--rw-ratio",
            "4",
            "--consistency",
            "s",
            "--limit",
            "10",
        ]);
        match build_workload(&cli.command).unwrap() {
            Workload::TxnMixed(w) => {
                assert_eq!(w.read_probability(), 0.8);
                assert_eq!(
                    (w.read.key.as_slice(), w.read.range_end.as_slice()),
                    (&b"a"[..], &b"b"[..])
                );
                assert_eq!(w.read.limit, 10);
                assert!(w.read.serializable);
            }
            _ => panic!("expected txn-mixed"),
        }
        assert!(build_workload(&parse(&["txn-mixed", "--rw-ratio=-1"]).command).is_err());
    }

    #[test]
    fn cli_parses_lease_and_watch_latency() {
        match build_workload(&parse(&["lease-keepalive"]).command).unwrap() {
            Workload::LeaseKeepAlive { ttl } => assert_eq!(ttl, 60),
            _ => panic!("expected lease-keepalive"),
        }
        assert!(build_workload(&parse(&["lease-keepalive", "--ttl", "0"]).command).is_err());
        let cli = parse(&[
            "watch-latency",
            "--streams",
            "100",
            "--watchers-per-stream",
            "10",
            "--put-total",
            "500",
            "--put-rate",
            "200",
        ]);
        assert!(matches!(
            cli.command,
            Command::WatchLatency {
                streams: 100,
                watchers_per_stream: 10,
                put_total: 500,
                put_rate: 200,
                val_size: 32,
                prevkv: false,
                ..
            }
        ));
        match build_workload(&cli.command).unwrap() {
            Workload::Watch(WatchTarget::Key(k)) => assert_eq!(k, b"/registry/pods"),
            _ => panic!("expected one watched key"),
        }
    }

    #[test]
    fn every_summary_has_the_common_fields() {
        let base = Recorder::new().summary("x", Duration::from_secs(1));
        let mixed = MixedSummary {
            summary: base.clone(),
            rw_ratio: 1.0,
            reads: 0,
            writes: 0,
            read: base.clone(),
            write: base.clone(),
        };
        let lease = LeaseSummary {
            summary: base.clone(),
            ttl: 60,
            leases: 1,
        };
        let watch = watch::WatchSummary {
            summary: base.clone(),
            ..Default::default()
        };
        let values = [
            serde_json::to_value(&base).unwrap(),
            serde_json::to_value(&mixed).unwrap(),
            serde_json::to_value(&lease).unwrap(),
            serde_json::to_value(&watch).unwrap(),
        ];
        for v in &values {
            for f in stats::COMMON_FIELDS {
                assert!(v.get(f).is_some(), "{f} missing in {v}");
            }
        }
        assert!(values[1]["read"]["p99_ms"].is_number());
        assert!(values[1]["write"]["requests_per_sec"].is_number());
        assert!(values[3]["events_per_sec"].is_number());
    }
}
