//! The commands. Each module handles one etcdctl command group; [`run`] dispatches.

mod auth;
mod check;
mod concurrency;
mod endpoint;
mod kv;
mod lease;
mod legacy;
mod maintenance;
mod member;
mod mirror;
mod service;
mod snapshot;
mod txn;
mod watch;

use std::io::Write;
use std::time::Duration;

use crate::cli::{Cli, Command, GlobalFlags};
use crate::conn::{Connection, ConnectionConfig};
use crate::error::{CtlError, ExitCode};
use crate::output::{Format, Printer};

/// What every command gets: the connection and the printer.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// The (lazily dialed) connection.
    pub conn: Connection,
    /// The printer of `-w` / `--hex`.
    pub printer: Printer,
    /// `--command-timeout`.
    pub command_timeout: Duration,
    /// Whether `--command-timeout` was given (snapshot save has no timeout otherwise).
    pub command_timeout_set: bool,
}

impl Ctx {
    /// The endpoints given with `--endpoints`.
    pub(crate) fn endpoints(&self) -> &[String] {
        &self.conn.config().endpoints
    }
}

/// Writes bytes to stdout and flushes (watch and keep-alive print as events come).
pub(crate) fn emit(bytes: &[u8]) -> Result<(), CtlError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| CtlError::new(ExitCode::Io, e))
}

/// Writes bytes to stderr.
pub(crate) fn emit_err(bytes: &[u8]) {
    let _ = std::io::stderr().write_all(bytes);
}

/// Runs the command line.
pub(crate) async fn run(cli: Cli) -> Result<(), CtlError> {
    let Cli { global, command } = cli;
    match command {
        Command::Version => {
            emit(b"etcdctl version: 3.4.23\nAPI version: 3.4\n")?;
            return Ok(());
        }
        Command::Completion { shell } => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "oxcdctl", &mut script);
            let _ = emit(&script);
            return Ok(());
        }
        Command::Snapshot(crate::cli::SnapshotCommand::Status { args }) => {
            let printer = printer_of(&global)?;
            return snapshot::status(printer, &args);
        }
        Command::Snapshot(crate::cli::SnapshotCommand::Restore(args)) => {
            return snapshot::restore(&args);
        }
        _ => {}
    }
    let ctx = context(&global)?;
    match command {
        Command::Get(a) => kv::get(&ctx, &a).await,
        Command::Put(a) => kv::put(&ctx, &a).await,
        Command::Del(a) => kv::del(&ctx, &a).await,
        Command::Txn { interactive, args } => txn::run(&ctx, interactive, &args).await,
        Command::Compaction { physical, args } => {
            maintenance::compaction(&ctx, physical, &args).await
        }
        Command::Alarm(c) => maintenance::alarm(&ctx, c).await,
        Command::Defrag { cluster, data_dir } => maintenance::defrag(&ctx, cluster, data_dir).await,
        Command::Endpoint { cluster, command } => endpoint::run(&ctx, cluster, command).await,
        Command::MoveLeader { args } => maintenance::move_leader(&ctx, &args).await,
        Command::Watch(a) => watch::run(&ctx, a).await,
        Command::Lease(c) => lease::run(&ctx, c).await,
        Command::Member(c) => member::run(&ctx, c).await,
        Command::Snapshot(c) => snapshot::run(&ctx, c).await,
        Command::MakeMirror(a) => mirror::run(&ctx, &a).await,
        Command::Lock { ttl, args } => concurrency::lock(&ctx, ttl, &args).await,
        Command::Elect { listen, args } => concurrency::elect(&ctx, listen, &args).await,
        Command::Auth(c) => auth::auth(&ctx, c).await,
        Command::User(c) => auth::user(&ctx, c).await,
        Command::Role(c) => auth::role(&ctx, c).await,
        Command::Check(c) => check::run(&ctx, c).await,
        Command::Set { args } => legacy::set(&ctx, &args).await,
        Command::Ls { args } => legacy::ls(&ctx, &args).await,
        Command::Service(c) => service::run(&ctx, c).await,
        Command::Version | Command::Completion { .. } => Ok(()),
    }
}

fn printer_of(global: &GlobalFlags) -> Result<Printer, CtlError> {
    Ok(Printer {
        format: Format::parse(&global.write_out)?,
        hex: global.hex,
        value_only: false,
    })
}

fn duration_flag(name: &str, value: &str) -> Result<Duration, CtlError> {
    oxcd_godur::parse(value).map_err(|e| {
        CtlError::new(
            ExitCode::Error,
            format!("invalid argument {value:?} for \"--{name}\" flag: {e}"),
        )
    })
}

/// Global flags that have an `ETCDCTL_*` variable.
const ENV_FLAGS: [&str; 18] = [
    "endpoints",
    "debug",
    "write-out",
    "hex",
    "dial-timeout",
    "command-timeout",
    "keepalive-time",
    "keepalive-timeout",
    "insecure-transport",
    "insecure-discovery",
    "insecure-skip-tls-verify",
    "cert",
    "key",
    "cacert",
    "user",
    "password",
    "discovery-srv",
    "discovery-srv-name",
];

/// etcd's `pkg/flags` refuses a flag given both on the command line and in its `ETCDCTL_*`
/// variable (a fatal capnslog line, exit code 1).
fn check_env_conflicts() -> Result<(), CtlError> {
    let args: Vec<String> = std::env::args().collect();
    for flag in ENV_FLAGS {
        let env = format!("ETCDCTL_{}", flag.to_uppercase().replace('-', "_"));
        let long = format!("--{flag}");
        let on_command_line = args
            .iter()
            .any(|a| a == &long || a.starts_with(&format!("{long}=")))
            || (flag == "write-out" && args.iter().any(|a| a == "-w" || a.starts_with("-w=")));
        if on_command_line && std::env::var_os(&env).is_some() {
            let now = std::time::SystemTime::now();
            let ts = crate::golog::zap_timestamp(now)
                .replace('T', " ")
                .replace('Z', "");
            emit_err(
                format!(
                    "{ts}000 C | pkg/flags: conflicting environment variable \"{env}\" is shadowed by corresponding command-line flag (either unset environment variable or disable flag)\n"
                )
                .as_bytes(),
            );
            return Err(CtlError::silent(ExitCode::Error));
        }
    }
    Ok(())
}

/// The connection and printer from the global flags, as etcdctl's `clientConfigFromCmd`.
fn context(global: &GlobalFlags) -> Result<Ctx, CtlError> {
    check_env_conflicts()?;
    let dial_timeout = duration_flag("dial-timeout", &global.dial_timeout)?;
    let command_timeout = duration_flag("command-timeout", &global.command_timeout)?;
    for (name, value) in [
        ("cert", &global.cert),
        ("key", &global.key),
        ("cacert", &global.cacert),
    ] {
        if value.as_deref() == Some("") {
            return Err(CtlError::bad_args(format!(
                "empty string is passed to --{name} option"
            )));
        }
    }
    let credentials = credentials(global)?;
    let printer = printer_of(global)?;
    let tls = crate::tls::client_config(&crate::tls::TlsFlags {
        cert: global.cert.clone(),
        key: global.key.clone(),
        cacert: global.cacert.clone(),
        insecure_transport: global.insecure_transport,
        insecure_skip_verify: global.insecure_skip_tls_verify,
    })
    .map_err(CtlError::bad_args)?;
    let endpoints = global
        .endpoints
        .iter()
        .map(|e| e.trim().to_string())
        .collect();
    Ok(Ctx {
        conn: Connection::new(ConnectionConfig {
            endpoints,
            dial_timeout,
            command_timeout,
            credentials,
            tls,
        }),
        printer,
        command_timeout,
        command_timeout_set: std::env::args().any(|a| a.starts_with("--command-timeout"))
            || std::env::var_os("ETCDCTL_COMMAND_TIMEOUT").is_some(),
    })
}

/// `--user name[:password]` and `--password`, prompting when the password is missing.
fn credentials(global: &GlobalFlags) -> Result<Option<(String, String)>, CtlError> {
    let Some(user) = global.user.as_deref().filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    if let Some(password) = global.password.as_deref().filter(|p| !p.is_empty()) {
        return Ok(Some((user.to_string(), password.to_string())));
    }
    match user.split_once(':') {
        Some((name, password)) => Ok(Some((name.to_string(), password.to_string()))),
        None => {
            let password = crate::prompt::ask_password("Password: ")
                .map_err(|e| CtlError::new(ExitCode::Error, e))?;
            Ok(Some((user.to_string(), password)))
        }
    }
}
