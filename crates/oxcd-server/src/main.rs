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
    let mut builder = tokio::runtime::Builder::new_multi_thread();
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
