//! `oxcdctl`: an etcdctl-compatible command line client (etcd v3 API) for oxcd and etcd.
//!
//! For the same operation against the same server it prints what etcdctl 3.4 prints, in
//! every output format, with etcdctl's exit codes and error texts; when a server cannot be
//! reached it says so ("cannot reach ...") instead of "context deadline exceeded".

mod bolt;
mod cli;
mod cmd;
mod conn;
mod error;
mod golog;
mod gostr;
mod output;
mod prompt;
mod tls;

use std::io::Write;
use std::process::ExitCode as ProcessExit;

use clap::Parser;

use crate::error::{CtlError, ExitCode};

fn main() -> ProcessExit {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return parse_failure(e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return report(CtlError::new(ExitCode::Error, e)),
    };
    let result = runtime.block_on(cmd::run(cli));
    runtime.shutdown_background();
    match result {
        Ok(()) => ProcessExit::SUCCESS,
        Err(e) => report(e),
    }
}

/// Prints `Error: <message>` (if any) and turns the error into the exit status.
fn report(error: CtlError) -> ProcessExit {
    let _ = std::io::stdout().flush();
    if let Some(message) = &error.message {
        let _ = writeln!(std::io::stderr(), "Error: {message}");
    }
    ProcessExit::from(error.code as u8)
}

/// A command line clap cannot parse: help and version print and succeed; otherwise the
/// error is reported as cobra's `Error: ...` (twice, as etcdctl) with exit code 1.
fn parse_failure(error: clap::Error) -> ProcessExit {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            ProcessExit::SUCCESS
        }
        ErrorKind::UnknownArgument => {
            let arg = match error.get(ContextKind::InvalidArg) {
                Some(ContextValue::String(s)) => s.split('=').next().unwrap_or(s).to_string(),
                _ => String::new(),
            };
            let text = if arg.starts_with("--") || arg.len() != 2 {
                format!("unknown flag: {arg}")
            } else {
                format!(
                    "unknown shorthand flag: '{}' in {arg}",
                    arg.trim_start_matches('-')
                )
            };
            let _ = write!(std::io::stderr(), "Error: {text}\n\nError: {text}\n");
            ProcessExit::from(ExitCode::Error as u8)
        }
        ErrorKind::InvalidSubcommand => {
            let name = match error.get(ContextKind::InvalidSubcommand) {
                Some(ContextValue::String(s)) => s.clone(),
                _ => String::new(),
            };
            let text = format!("unknown command \"{name}\" for \"etcdctl\"");
            let _ = write!(
                std::io::stderr(),
                "Error: {text}\nRun 'etcdctl --help' for usage.\nError: {text}\n"
            );
            ProcessExit::from(ExitCode::Error as u8)
        }
        _ => {
            let _ = error.print();
            ProcessExit::from(ExitCode::Error as u8)
        }
    }
}
