//! The command line as Go's `flag` package reads it (etcd uses it), and etcd's mapping of
//! `ETCD_*` environment variables onto flags.
//!
//! Go's syntax: `-name`, `--name`, `-name=value`, `--name value`; a bool flag takes its value
//! only as `--name=value` (`--name false` is the flag alone, then a stray `false`); `--`
//! ends the flags; the first argument that is not a flag ends them too, and etcd refuses
//! any such leftover argument.

use std::collections::HashSet;

use super::settings::{Settings, Source};
use super::table::{self, FlagSpec};
use super::ConfigError;

/// The parsed command line.
#[derive(Debug, Default)]
pub(super) struct Parsed {
    /// The flags given.
    pub settings: Settings,
    /// `-h`, `-help` or `--help` was given.
    pub help: bool,
}

/// Parses the arguments after the program name.
pub(super) fn parse_args(args: &[String]) -> Result<Parsed, ConfigError> {
    let mut parsed = Parsed::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let Some(flag) = arg.strip_prefix('-').filter(|f| !f.is_empty()) else {
            return Err(not_a_flag(arg));
        };
        let (dashes, body) = match flag.strip_prefix('-') {
            Some("") => {
                // `--` ends the flags; etcd accepts nothing after it.
                return match rest.next() {
                    Some(extra) => Err(not_a_flag(extra)),
                    None => Ok(parsed),
                };
            }
            Some(body) => ("--", body),
            None => ("-", flag),
        };
        if body.starts_with(['-', '=']) {
            return Err(ConfigError::Args(format!("bad flag syntax: {arg}")));
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(spec) = table::find(name) else {
            if name == "h" || name == "help" {
                parsed.help = true;
                return Ok(parsed);
            }
            return Err(ConfigError::Args(format!(
                "flag provided but not defined: {dashes}{name}\nRun 'oxcd --help' for the list of etcd flags oxcd knows."
            )));
        };
        let (text, spelled) = match inline {
            Some(v) => (v.to_string(), arg.clone()),
            None if !spec.kind.takes_value() => ("true".to_string(), arg.clone()),
            None => {
                let v = rest.next().ok_or_else(|| {
                    ConfigError::Args(format!("flag needs an argument: {dashes}{name}"))
                })?;
                (v.clone(), format!("{dashes}{name}={v}"))
            }
        };
        let value = spec.kind.parse(&text).map_err(|expected| {
            ConfigError::Args(format!(
                "invalid value {text:?} for flag {dashes}{name}: expected {expected}"
            ))
        })?;
        parsed
            .settings
            .set(spec, value, Source::CommandLine(spelled));
    }
    Ok(parsed)
}

fn not_a_flag(arg: &str) -> ConfigError {
    ConfigError::Args(format!(
        "'{arg}' is not a valid flag (a bool flag takes its value as --flag=false, not --flag false)"
    ))
}

/// Fills the flags not given on the command line from their `ETCD_*` variables, as etcd
/// does: an empty variable counts as unset; a variable whose flag was also given is refused;
/// any other `ETCD_*` variable is reported as unrecognized.
pub(super) fn merge_env(
    mut settings: Settings,
    env: &[(String, String)],
) -> Result<Settings, ConfigError> {
    let on_command_line: HashSet<String> = settings.given_names().map(env_name).collect();
    let mut used: HashSet<String> = HashSet::new();
    for spec in table::FLAGS {
        let var = spec.env_var();
        if on_command_line.contains(&var) {
            continue;
        }
        let Some((_, text)) = env.iter().find(|(k, v)| *k == var && !v.is_empty()) else {
            continue;
        };
        used.insert(var.clone());
        if spec.name == "config-file" {
            // Already consumed: a config file replaces flags and environment.
            continue;
        }
        if spec.name == "version" {
            settings.notes.push(format!(
                "{var} is ignored: it cannot ask for the version (etcd ignores it too)"
            ));
            continue;
        }
        let value = spec.kind.parse(text).map_err(|expected| {
            ConfigError::Args(format!(
                "invalid value {text:?} for {var}: expected {expected}"
            ))
        })?;
        settings.set(spec, value, Source::Env(var, text.clone()));
    }
    for (key, _) in env {
        if used.contains(key) {
            continue;
        }
        if on_command_line.contains(key) {
            return Err(ConfigError::EnvConflict(key.clone()));
        }
        if key.starts_with("ETCD_") {
            settings.notes.push(format!(
                "unrecognized environment variable {key} is ignored (etcd ignores it too)"
            ));
        }
    }
    Ok(settings)
}

fn env_name(flag: &str) -> String {
    table::find(flag).map(FlagSpec::env_var).unwrap_or_default()
}
