//! `oxcd import`: builds a new oxcd data dir from etcd's data (see
//! [`oxcd_core::import`]). It is a subcommand of the server binary, not of `oxcdctl`,
//! because it works offline on files: it needs the server's storage code and no running
//! server (as etcd 3.5 moved its own offline data-dir commands from `etcdctl` to
//! `etcdutl`). The membership is not chosen here: the first `oxcd` start on the imported
//! data dir bootstraps it from its `--name`/`--initial-cluster` flags, like any new member.
//!
//! ```text
//! oxcd import --from-etcd-snapshot snap.db --data-dir /var/lib/oxcd [--skip-hash-check]
//! oxcd import --from-etcd-data-dir /var/lib/etcd --data-dir /var/lib/oxcd [--wal-dir DIR]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use oxcd_core::import::{import_etcd, ImportSource};
use oxcd_core::DataDir;

/// The command's usage text.
pub const USAGE: &str = "\
Usage: oxcd import (--from-etcd-snapshot FILE | --from-etcd-data-dir DIR) --data-dir DIR [flags]

Builds a new oxcd data dir from etcd v3 data: every key with its revisions, versions and
lease, the leases, the compaction point, and the auth users and roles. Then start oxcd on
the data dir with the --name and --initial-cluster flags of the new cluster.

  --from-etcd-snapshot FILE  a snapshot from `etcdctl snapshot save` (its sha256 is checked)
  --from-etcd-data-dir DIR   the data dir of a stopped etcd (DIR/member/snap/db is read)
  --data-dir DIR             the new data dir (DIR/member must not exist)
  --wal-dir DIR              a separate WAL dir, as the server's --wal-dir
  --skip-hash-check          import a snapshot without (or with a wrong) sha256 trailer
";

/// What the command line asks.
#[derive(Debug, Clone, PartialEq)]
struct Args {
    snapshot: Option<PathBuf>,
    etcd_dir: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    wal_dir: Option<PathBuf>,
    skip_hash_check: bool,
}

fn parse(args: &[String]) -> Result<Option<Args>, String> {
    let mut a = Args {
        snapshot: None,
        etcd_dir: None,
        data_dir: None,
        wal_dir: None,
        skip_hash_check: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        if name == "help" || name == "h" {
            return Ok(None);
        }
        if name == "skip-hash-check" {
            a.skip_hash_check = match inline.as_deref() {
                None | Some("true") => true,
                Some("false") => false,
                Some(v) => return Err(format!("invalid boolean value {v:?} for -skip-hash-check")),
            };
            continue;
        }
        let slot = match name {
            "from-etcd-snapshot" => &mut a.snapshot,
            "from-etcd-data-dir" => &mut a.etcd_dir,
            "data-dir" => &mut a.data_dir,
            "wal-dir" => &mut a.wal_dir,
            _ => return Err(format!("flag provided but not defined: -{name}")),
        };
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .ok_or_else(|| format!("flag needs an argument: -{name}"))?,
        };
        if value.is_empty() {
            return Err(format!("-{name} needs a non-empty value"));
        }
        *slot = Some(PathBuf::from(value));
    }
    Ok(Some(a))
}

/// Runs `oxcd import` with the arguments after `import`.
pub fn main(args: &[String]) -> ExitCode {
    let a = match parse(args) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("oxcd import: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let source = match (a.snapshot, a.etcd_dir) {
        (Some(path), None) => ImportSource::Snapshot {
            path,
            skip_hash_check: a.skip_hash_check,
        },
        (None, Some(dir)) => ImportSource::DataDir(dir),
        _ => {
            eprintln!(
                "oxcd import: give exactly one of --from-etcd-snapshot and --from-etcd-data-dir\n\n{USAGE}"
            );
            return ExitCode::from(2);
        }
    };
    let Some(data_dir) = a.data_dir else {
        eprintln!("oxcd import: --data-dir is required\n\n{USAGE}");
        return ExitCode::from(2);
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("OXCD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    match import_etcd(&source, &DataDir::new(data_dir.clone(), a.wal_dir)) {
        Ok(r) => {
            println!(
                "imported {} revisions ({} keys live) at revision {} (compacted at {}), {} \
                 leases, {} users, {} roles into {}",
                r.revisions,
                r.live_keys,
                r.revision,
                r.compact_revision,
                r.leases,
                r.users,
                r.roles,
                data_dir.display()
            );
            if r.auth_enabled {
                println!("note: authentication was enabled in etcd");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("oxcd import: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_parse_as_go_flags() {
        let a = parse(&args(&[
            "--from-etcd-snapshot",
            "s.db",
            "-data-dir=d",
            "--skip-hash-check",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(a.snapshot, Some(PathBuf::from("s.db")));
        assert_eq!(a.data_dir, Some(PathBuf::from("d")));
        assert!(a.skip_hash_check);
        assert_eq!(parse(&args(&["--help"])).unwrap(), None);
        assert!(parse(&args(&["--nope"]))
            .unwrap_err()
            .contains("not defined: -nope"));
        assert!(parse(&args(&["--data-dir"]))
            .unwrap_err()
            .contains("needs an argument"));
        assert!(parse(&args(&["stray"])).is_err());
    }
}
