//! The `oxcd` binary: parse etcd's flags and environment, set up logging, run the server.
//! Any failure ends in one line on stderr saying what is wrong and what to change, and a
//! non-zero exit code.

use std::process::ExitCode;

use oxcd_server::config::Config;

/// jemalloc instead of glibc's malloc. Under 100 putting clients a 3-member cluster spent
/// a tenth of its CPU in glibc's allocator: the applier's 4 KiB aligned block per write
/// transaction (redb's page tracking) and tonic's 8 KiB buffers per call miss glibc's
/// per-thread cache and take the shared heap, consolidating it as they go. With jemalloc
/// (TiKV's choice, per-thread caches for all these sizes), six alternating rounds gave
/// members' CPU per put 57.3 -> 53.4 µs and puts/s +5%, with p99 and peak RSS (+4 MiB)
/// about the same; mimalloc gave less, with a higher p99 and 1.8x the RSS.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("import") {
        return oxcd_server::import::main(&args[2..]);
    }
    let cfg = match Config::from_args(args) {
        Ok(Some(cfg)) => cfg,
        Ok(None) => {
            println!("oxcd Version: {}", oxcd_server::version::OXCD_VERSION);
            println!(
                "etcd API Version: {}",
                oxcd_server::version::ETCD_SERVER_VERSION
            );
            return ExitCode::SUCCESS;
        }
        Err(oxcd_server::config::ConfigError::Help(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(oxcd_server::config::ConfigError::Args(text)) => {
            // The message already names the flag, worded as Go's flag package words it.
            eprintln!("{text}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("oxcd: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("OXCD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let workers = match runtime_workers(std::env::var("TOKIO_WORKER_THREADS").ok().as_deref()) {
        Ok(workers) => workers,
        Err(text) => {
            eprintln!("oxcd: {text}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(
        workers,
        "async runtime started; the raft thread and the applier run beside its workers"
    );
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(workers);
    // Without the LIFO slot, a task woken by the task that runs queues behind the tasks
    // already waiting. When the applier answers a batch of writes, every handler then
    // queues its response before the HTTP/2 connection task runs and writes them all
    // with one writev, instead of the connection jumping the queue after each handler
    // (one writev per response): 5x fewer writes, +10-20% puts/s at 100 clients.
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    #[cfg(not(tokio_unstable))]
    tracing::warn!(
        "built without --cfg tokio_unstable (a RUSTFLAGS variable replaced .cargo/config.toml): \
         the runtime keeps tokio's LIFO slot and writes one response per syscall under load"
    );
    // The workers run SCHED_BATCH like the raft and applier threads: a worker woken by a
    // request or a peer's message no longer preempts the raft thread or the applier
    // mid-batch, and finds more queued when it runs. 3-member cluster, etcd's Go client,
    // 100 clients putting, 5 alternating pairs: members' CPU per put 44.3 -> 41.5 us,
    // puts/s +2.5%, p99 lower; one client's latency unchanged.
    builder.on_thread_start(oxcd_core::prefer_batching_for_current_thread);
    let rt = match builder.enable_all().thread_name("oxcd").build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oxcd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(oxcd_server::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "oxcd stopped");
            eprintln!("oxcd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How many worker threads the async runtime gets: `TOKIO_WORKER_THREADS` if it is set
/// (tokio's own variable), else one fewer than the cores this process may use, at least one.
///
/// Why one fewer: under load the raft thread (WAL writes, fsync, peer messages) and the
/// applier keep about a core busy between them, and the runtime's workers, which serve the
/// clients and the peers, take the rest. With a worker per core, a 2-core machine ran four
/// busy threads on two cores, and the workers spent their time stealing each other's tasks
/// and waking each other through futexes. One worker instead of two on this project's
/// 2-core machine, 8 alternating rounds of a 3-member cluster at 100 clients: puts/s +5.5%
/// (members' CPU per put 49.4 -> 46.5 µs, 7 of 8 rounds faster, p99 7.2 -> 6.3 ms); three
/// rounds of linearizable reads from the followers: +16% (26.0 -> 20.4 µs per read).
/// `available_parallelism` follows the CPU affinity mask and cgroup quota, so `taskset`
/// and container limits count.
fn runtime_workers(env: Option<&str>) -> Result<usize, String> {
    if let Some(value) = env {
        return match value.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "TOKIO_WORKER_THREADS={value:?} is not a number of threads above 0; \
                 unset it or give a whole number such as 4"
            )),
        };
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    Ok(cores.saturating_sub(1).max(1))
}

#[cfg(test)]
mod tests {
    use super::runtime_workers;

    #[test]
    fn the_runtime_leaves_a_core_to_raft_and_the_applier_unless_told() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(runtime_workers(None), Ok(cores.saturating_sub(1).max(1)));
        assert_eq!(runtime_workers(Some("3")), Ok(3));
        assert_eq!(runtime_workers(Some(" 1 ")), Ok(1));
        for bad in ["0", "", "two", "-1"] {
            let err = runtime_workers(Some(bad)).expect_err(bad);
            assert!(err.contains("TOKIO_WORKER_THREADS"), "{err}");
        }
    }
}
