//! `oxcd-bench`: a load generator for any etcd v3 gRPC endpoint, in the
//! spirit of etcd's `tools/benchmark`.
//!
//! ```text
//! oxcd-bench --endpoints 127.0.0.1:2379 --conns 10 --clients 100 --total 20000 put
//! oxcd-bench --clients 100 range foo --consistency s --json
//! oxcd-bench --conns 10 --total 1000 watch --streams 100 --watchers 1000 --key foo
//! ```

mod stats;
mod watch;
mod workload;

use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use oxcd_proto::etcdserverpb::kv_client::KvClient;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use stats::Recorder;
use watch::{WatchParams, WatchTarget};
use workload::{PutWorkload, RangeWorkload, Rng, Workload};

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
    /// Timeout of each request (and of connecting), e.g. `10s`.
    #[arg(long, value_parser = parse_duration, default_value = "10s", global = true)]
    timeout: Duration,
    #[command(subcommand)]
    command: Command,
}

/// Benchmark workloads.
#[derive(Debug, Subcommand)]
enum Command {
    /// Benchmark Put requests.
    Put {
        /// Key size in bytes.
        #[arg(long, default_value_t = 8)]
        key_size: usize,
        /// Value size in bytes.
        #[arg(long, default_value_t = 8)]
        val_size: usize,
        /// Number of distinct keys to write.
        #[arg(long, default_value_t = 1)]
        key_space_size: u64,
        /// Write keys sequentially (0, 1, 2, ... modulo the key space) instead of randomly.
        #[arg(long)]
        sequential_keys: bool,
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

/// Turns `host:port` or `http(s)://host:port` into a URL tonic accepts.
fn endpoint_url(ep: &str) -> String {
    let ep = ep.trim();
    if ep.contains("://") {
        ep.to_string()
    } else {
        format!("http://{ep}")
    }
}

/// Limits of a run shared by all clients.
struct Run {
    workload: Workload,
    /// Next request sequence number to hand out.
    next: AtomicU64,
    /// Requests completed (ok or not), for the progress line.
    done: AtomicU64,
    /// Set once the duration is over.
    stop: AtomicBool,
    total: u64,
    deadline: Option<Instant>,
    rate: u64,
    start: Instant,
}

impl Run {
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

/// One client: issues requests one at a time until the run is over.
async fn client_loop(run: Arc<Run>, mut kv: KvClient<Channel>, id: u64) -> Recorder {
    let mut rec = Recorder::new();
    let mut rng = Rng::new(0xC0FFEE ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    while let Some(seq) = run.next_seq().await {
        let started = Instant::now();
        let result = match &run.workload {
            Workload::Put(w) => kv.put(w.request(seq, &mut rng)).await.map(drop),
            Workload::Range(w) => kv.range(w.request.clone()).await.map(drop),
            Workload::Watch(t) => {
                let sent = started.saturating_duration_since(run.start).as_nanos() as u64;
                kv.put(t.put_request(seq, sent)).await.map(drop)
            }
        };
        match result {
            Ok(()) => rec.record_ok(started.elapsed()),
            Err(status) => rec.record_err(&format!("{:?}: {}", status.code(), status.message())),
        }
        run.done.fetch_add(1, Ordering::Relaxed);
    }
    rec
}

/// Prints `done/total` and the current rate to stderr once a second.
async fn progress(run: Arc<Run>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = 0u64;
    loop {
        tick.tick().await;
        let done = run.done.load(Ordering::Relaxed);
        let total = if run.total == 0 {
            "?".to_string()
        } else {
            run.total.to_string()
        };
        let secs = run.start.elapsed().as_secs();
        eprint!(
            "\r\x1b[2K[{secs}s] {done}/{total} requests, {} req/s",
            done - last
        );
        let _ = std::io::stderr().flush();
        last = done;
    }
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

async fn connect(cli: &Cli) -> Result<Vec<Channel>, String> {
    let mut channels = Vec::with_capacity(cli.conns);
    for i in 0..cli.conns {
        let url = endpoint_url(&cli.endpoints[i % cli.endpoints.len()]);
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| format!("invalid endpoint {url:?}: {e}"))?
            .connect_timeout(cli.timeout)
            .timeout(cli.timeout)
            .tcp_nodelay(true);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {url}: {}", error_chain(&e)))?;
        channels.push(channel);
    }
    Ok(channels)
}

fn build_workload(command: &Command) -> Result<Workload, String> {
    Ok(match command {
        Command::Put {
            key_size,
            val_size,
            key_space_size,
            sequential_keys,
        } => Workload::Put(PutWorkload::new(
            *key_size,
            *val_size,
            *key_space_size,
            *sequential_keys,
        )?),
        Command::Range {
            key,
            end,
            consistency,
            limit,
        } => Workload::Range(RangeWorkload::new(
            key,
            end.as_deref(),
            *consistency == Consistency::S,
            *limit,
        )),
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
    })
}

/// Runs the `watch` workload and prints its summary; returns whether it was clean.
async fn run_watch(cli: &Cli, workload: Workload) -> Result<bool, String> {
    let (
        Workload::Watch(target),
        Command::Watch {
            streams,
            watchers,
            put_clients,
            ..
        },
    ) = (&workload, &cli.command)
    else {
        return Err("internal: run_watch needs the watch workload".into());
    };
    let params = WatchParams {
        streams: *streams,
        watchers: *watchers,
        put_clients: *put_clients,
        puts: cli.total,
        target: target.clone(),
    };
    let channels = connect(cli).await?;
    let summary = watch::run(&channels, &params, cli.timeout, |start| Run {
        workload,
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        total: cli.total,
        deadline: cli.duration.map(|d| start + d),
        rate: cli.rate,
        start,
    })
    .await?;
    if cli.json {
        let json =
            serde_json::to_string_pretty(&summary).map_err(|e| format!("encoding JSON: {e}"))?;
        println!("{json}");
    } else {
        print!("{}", summary.to_text());
    }
    if !summary.clean() {
        eprintln!("oxcd-bench: failed puts or missing/duplicate/out-of-order events");
    }
    Ok(summary.clean())
}

async fn run(cli: Cli) -> Result<bool, String> {
    if cli.conns == 0 || cli.clients == 0 {
        return Err("--conns and --clients must be at least 1".into());
    }
    if cli.endpoints.iter().all(|e| e.trim().is_empty()) {
        return Err("--endpoints is empty".into());
    }
    if cli.total == 0 && cli.duration.is_none() {
        return Err("--total 0 (unlimited) needs --duration".into());
    }
    let workload = build_workload(&cli.command)?;
    if matches!(workload, Workload::Watch(_)) {
        return run_watch(&cli, workload).await;
    }
    let channels = connect(&cli).await?;

    let start = Instant::now();
    let run = Arc::new(Run {
        workload,
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        total: cli.total,
        deadline: cli.duration.map(|d| start + d),
        rate: cli.rate,
        start,
    });
    let progress_task = std::io::stderr()
        .is_terminal()
        .then(|| tokio::spawn(progress(run.clone())));

    let clients: Vec<_> = (0..cli.clients)
        .map(|i| {
            let kv = KvClient::new(channels[i % channels.len()].clone())
                .max_decoding_message_size(usize::MAX);
            tokio::spawn(client_loop(run.clone(), kv, i as u64))
        })
        .collect();
    let mut total = Recorder::new();
    for joined in futures::future::join_all(clients).await {
        match joined {
            Ok(rec) => total.merge(&rec),
            Err(e) => return Err(format!("client task failed: {e}")),
        }
    }
    let elapsed = start.elapsed();
    if let Some(t) = progress_task {
        t.abort();
        eprint!("\r\x1b[2K");
    }

    let summary = total.summary(run.workload.name(), elapsed);
    if cli.json {
        let json =
            serde_json::to_string_pretty(&summary).map_err(|e| format!("encoding JSON: {e}"))?;
        println!("{json}");
    } else {
        print!("{}", summary.to_text());
    }
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
        assert_eq!(endpoint_url("127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(endpoint_url("http://h:1"), "http://h:1");
        assert_eq!(endpoint_url("https://h:1"), "https://h:1");
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
                key_size: 8,
                val_size: 8,
                key_space_size: 1,
                sequential_keys: true
            }
        ));
    }
}
