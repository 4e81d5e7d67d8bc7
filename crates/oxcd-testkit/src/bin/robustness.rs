//! `oxcd-robustness`: starts a cluster of oxcd or etcd processes, runs seeded random traffic
//! while random faults strike, and prints the verdicts (exit status 1 if any check failed).
//!
//! ```text
//! oxcd-robustness --flavor etcd --bin /usr/bin/etcd --members 3 --seed 1 --duration 120s
//! oxcd-robustness --flavor oxcd --bin target/release/oxcd --members 1 --faults kill,pause
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use oxcd_testkit::robustness::{run, FaultKind, RobustnessConfig};
use oxcd_testkit::{Cluster, ClusterConfig, Flavor, PortSource};

/// Command line of `oxcd-robustness`.
#[derive(Debug, Parser)]
#[command(
    name = "oxcd-robustness",
    about = "Random traffic under random faults, then linearizability, watch and member checks"
)]
struct Cli {
    /// Which server `--bin` is.
    #[arg(long, value_enum, default_value = "oxcd")]
    flavor: CliFlavor,
    /// The server binary.
    #[arg(long)]
    bin: PathBuf,
    /// Cluster size.
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// First seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of runs (seeds `seed`, `seed + 1`, ...), each on a fresh cluster.
    #[arg(long, default_value_t = 1)]
    runs: u64,
    /// Seconds of traffic and faults per run.
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Traffic clients.
    #[arg(long, default_value_t = 6)]
    clients: usize,
    /// Watchers.
    #[arg(long, default_value_t = 3)]
    watchers: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 10)]
    keys: u64,
    /// Mean milliseconds between faults.
    #[arg(long, default_value_t = 1500)]
    fault_interval_ms: u64,
    /// Fault kinds, comma separated (default: all).
    #[arg(long, value_delimiter = ',')]
    faults: Vec<FaultKind>,
    /// First port of a range to take ports from (default: ports the OS picks).
    #[arg(long)]
    base_port: Option<u16>,
    /// Send ranges as serializable (not linearizable: a run should then FAIL under partitions;
    /// this shows the checker catches stale reads).
    #[arg(long)]
    serializable_reads: bool,
    /// Write each run's history and log into this directory (`<dir>/seed-N/`).
    #[arg(long)]
    dump: Option<PathBuf>,
    /// Extra server flags, e.g. `--extra=--snapshot-count=100` (repeatable).
    #[arg(long, allow_hyphen_values = true)]
    extra: Vec<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum CliFlavor {
    Oxcd,
    Etcd,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let flavor = match cli.flavor {
        CliFlavor::Oxcd => Flavor::Oxcd,
        CliFlavor::Etcd => Flavor::Etcd,
    };
    let mut failed = false;
    for run_index in 0..cli.runs {
        let mut cfg = ClusterConfig::new(flavor, &cli.bin, cli.members);
        cfg.extra_args.extend(cli.extra.iter().cloned());
        if let Some(base) = cli.base_port {
            cfg.ports = PortSource::range(base, base.saturating_add(200));
        }
        let mut rc = RobustnessConfig::ci(cli.seed + run_index);
        rc.duration = Duration::from_secs(cli.duration);
        rc.clients = cli.clients;
        rc.watchers = cli.watchers;
        rc.keys = cli.keys;
        rc.fault_interval = Duration::from_millis(cli.fault_interval_ms);
        rc.serializable_reads = cli.serializable_reads;
        rc.dump_to = cli
            .dump
            .as_ref()
            .map(|d| d.join(format!("seed-{}", rc.seed)));
        if !cli.faults.is_empty() {
            rc.faults = cli.faults.clone();
        }
        let mut cluster = match Cluster::start(cfg).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cluster did not start: {e}");
                return ExitCode::FAILURE;
            }
        };
        let report = run(&mut cluster, &rc).await;
        print!("{report}");
        if !report.passed() {
            failed = true;
            eprintln!("logs of the failed run:\n{}", cluster.logs(30));
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
