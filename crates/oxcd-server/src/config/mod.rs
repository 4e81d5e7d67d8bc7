//! Server configuration: etcd's command-line flags, `ETCD_*` environment variables and
//! `--config-file` YAML, resolved into one validated [`Config`].
//!
//! One job per file:
//! - [`table`]: every flag etcd 3.4 and 3.5 know, and what oxcd does with each (the single
//!   source of truth: implemented, ignored with a warning, or refused at start).
//! - [`command_line`]: Go `flag`-package syntax and etcd's `ETCD_*` environment mapping.
//! - [`file`]: the YAML `--config-file` with etcd's keys.
//! - [`values`]: Go's value syntax (bools, integers, durations) as typed values.
//! - [`settings`]: what the user gave and where it came from.
//! - [`help`]: `--help`, generated from the table.
//! - [`resolve`]: turns the settings into a [`Config`], checks them as etcd does, and applies
//!   the table's warnings and refusals.
//! - [`urls`]: URL lists and `--initial-cluster`.
//!
//! Precedence follows etcd: a config file, when given, replaces flags and environment
//! entirely; otherwise a flag beats its `ETCD_<FLAG>` variable, which beats the default.

mod command_line;
mod file;
mod help;
mod resolve;
mod settings;
mod table;
mod urls;
mod values;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;
use url::Url;

pub use urls::url_text;

/// etcd's default request size limit (1.5 MiB).
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 1_572_864;
/// etcd's default backend quota when `--quota-backend-bytes` is 0 (2 GiB).
pub const DEFAULT_QUOTA_BACKEND_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// etcd warns about quotas above this (8 GiB) and keeps them; oxcd does the same.
pub const MAX_QUOTA_BACKEND_BYTES: u64 = 8 * 1024 * 1024 * 1024;

/// A configuration mistake, worded for the person at the terminal: what is wrong and what to
/// change.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The command line could not be parsed (unknown flag, malformed value).
    #[error("{0}")]
    Args(String),
    /// `--help` was asked for: the text to print on stdout.
    #[error("{0}")]
    Help(String),
    /// A URL flag holds something that is not a usable URL.
    #[error(
        "invalid URL {url:?} in --{flag}: {reason}; expected a list like http://127.0.0.1:2379"
    )]
    BadUrl {
        /// The flag the URL came from.
        flag: &'static str,
        /// The offending text.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// `--initial-cluster` is malformed or does not name this member.
    #[error("invalid --initial-cluster {value:?}: {reason}")]
    BadInitialCluster {
        /// The flag's value.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A flag oxcd knows from etcd but cannot honour, set to a value whose silent loss would
    /// mislead (TLS, auth, quota, ...).
    #[error("{setting}: {why}; remove it{}", accepted_hint(.accepted))]
    Unsupported {
        /// Where the value came from, as the user wrote it (`--cert-file=x`,
        /// `ETCD_CERT_FILE=x`, `config file key cert-file`).
        setting: String,
        /// What oxcd lacks.
        why: &'static str,
        /// A value that is accepted instead, if any besides leaving the flag out.
        accepted: Option<&'static str>,
    },
    /// An `ETCD_*` variable and its command-line flag are both set (etcd refuses this too).
    #[error("conflicting environment variable {0:?} is shadowed by the corresponding command-line flag; unset the variable or drop the flag")]
    EnvConflict(String),
    /// Any other invalid value, already phrased as cause and fix.
    #[error("{0}")]
    Invalid(String),
    /// The config file could not be read or parsed.
    #[error("cannot use --config-file {path}: {reason}")]
    ConfigFile {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

fn accepted_hint(accepted: &Option<&'static str>) -> String {
    match accepted {
        Some(v) => format!(" or set it to {v:?}"),
        None => String::new(),
    }
}

/// How the member joins its cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    /// Bootstrap a new cluster from `--initial-cluster`.
    New,
    /// Join a cluster that already runs.
    Existing,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Member name.
    pub name: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// WAL directory.
    pub wal_dir: PathBuf,
    /// Where to listen for clients.
    pub listen_client_urls: Vec<Url>,
    /// What to tell clients.
    pub advertise_client_urls: Vec<Url>,
    /// Where to listen for peers.
    pub listen_peer_urls: Vec<Url>,
    /// What to tell peers.
    pub initial_advertise_peer_urls: Vec<Url>,
    /// name -> peer URLs of the initial members.
    pub initial_cluster: BTreeMap<String, Vec<Url>>,
    /// New or existing cluster.
    pub initial_cluster_state: ClusterState,
    /// Token mixed into IDs.
    pub initial_cluster_token: String,
    /// Applied entries between log compactions.
    pub snapshot_count: u64,
    /// Raft tick.
    pub heartbeat_interval: Duration,
    /// Raft election timeout.
    pub election_timeout: Duration,
    /// Request size limit.
    pub max_request_bytes: u64,
    /// Backend quota in bytes (resolved: never 0; negative disables it, as in etcd).
    pub quota_backend_bytes: i64,
    /// Operations allowed per txn.
    pub max_txn_ops: u64,
    /// Interval of lease remaining-TTL checkpoints (never zero).
    pub lease_checkpoint_interval: Duration,
    /// `tracing` filter directive derived from --log-level.
    pub log_level: String,
    /// Interval of watch progress notifications.
    pub watch_progress_notify_interval: Duration,
    /// Flags (or config file keys) given that oxcd accepts but does not act on, by name.
    pub ignored: Vec<String>,
    /// One line per accepted-but-ignored setting, saying what is ignored and why; the server
    /// logs each at start-up.
    pub warnings: Vec<String>,
    /// `--grpc-keepalive-interval`: how often the server pings an idle client connection
    /// (`None`: never).
    pub grpc_keepalive_interval: Option<Duration>,
    /// `--grpc-keepalive-timeout`: how long a ping may go unanswered before the connection
    /// is closed.
    pub grpc_keepalive_timeout: Duration,
    /// `--max-concurrent-streams`: HTTP/2 streams one client connection may open at once.
    pub max_concurrent_streams: u32,
    /// `--experimental-initial-corrupt-check`: compare the backend's hash with the peers'
    /// before serving clients.
    pub initial_corrupt_check: bool,
    /// `--experimental-corrupt-check-time`: how often the leader compares the members'
    /// hashes (zero: never).
    pub corrupt_check_time: Duration,
    /// `--strict-reconfig-check`: refuse membership changes that would lose the quorum of
    /// started members.
    pub strict_reconfig_check: bool,
    /// `--auth-token`: `simple` or `jwt,...` (checked at start).
    pub auth_token: String,
    /// `--auth-token-ttl`: the lifetime of a simple token after its last use.
    pub auth_token_ttl: Duration,
    /// `--bcrypt-cost`.
    pub bcrypt_cost: u32,
    /// `--listen-metrics-urls`: more listeners serving `/metrics` and `/health` only.
    pub listen_metrics_urls: Vec<Url>,
    /// `--metrics=extensive`: export the gRPC handling-time histograms too.
    pub metrics_extensive: bool,
    /// `--enable-grpc-gateway`: serve the HTTP/JSON gateway (`/v3/...`) on client URLs.
    pub enable_grpc_gateway: bool,
    /// The client side's TLS flags (`--cert-file`, `--trusted-ca-file`, `--auto-tls`, ...),
    /// used by `https://` client and metrics URLs.
    pub client_tls: crate::tls::TlsInfo,
    /// The peer side's TLS flags (`--peer-cert-file`, ...), used by `https://` peer URLs.
    pub peer_tls: crate::tls::TlsInfo,
    /// `--cipher-suites`, `--tls-min-version`, `--tls-max-version`,
    /// `--self-signed-cert-validity`.
    pub tls_common: crate::tls::TlsCommon,
    /// `--auto-compaction-mode` with `--auto-compaction-retention` (`None`: off).
    pub auto_compaction: Option<oxcd_core::AutoCompaction>,
}

impl Config {
    /// Parses the process's arguments (program name first) and environment. Returns
    /// `Ok(None)` for `--version`.
    pub fn from_args(args: Vec<String>) -> Result<Option<Config>, ConfigError> {
        let env = std::env::vars_os().map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        });
        Self::from_args_and_env(args, env)
    }

    /// [`Config::from_args`] with the environment given explicitly (for tests).
    pub fn from_args_and_env(
        args: Vec<String>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Option<Config>, ConfigError> {
        let parsed = command_line::parse_args(args.get(1..).unwrap_or_default())?;
        if parsed.help {
            return Err(ConfigError::Help(help::text()));
        }
        if parsed.settings.bool("version") {
            return Ok(None);
        }
        let env: Vec<(String, String)> = env.into_iter().collect();
        let config_file = match parsed.settings.text("config-file") {
            path if !path.is_empty() => path,
            _ => env
                .iter()
                .find(|(k, _)| k == "ETCD_CONFIG_FILE")
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
        };
        if !config_file.is_empty() {
            let mut settings = file::read(std::path::Path::new(&config_file))?;
            let shadowed: Vec<&str> = parsed
                .settings
                .given_names()
                .filter(|n| *n != "config-file")
                .collect();
            if !shadowed.is_empty() {
                settings.notes.push(format!(
                    "--config-file is set, so these command-line flags are ignored (as etcd ignores them): --{}",
                    shadowed.join(", --")
                ));
            }
            return resolve::resolve(settings).map(Some);
        }
        let settings = command_line::merge_env(parsed.settings, &env)?;
        resolve::resolve(settings).map(Some)
    }

    /// Election timeout in heartbeat ticks, as raft counts it.
    pub fn election_ticks(&self) -> usize {
        let ticks = self.election_timeout.as_millis() / self.heartbeat_interval.as_millis().max(1);
        (ticks as usize).max(2)
    }
}

/// Parses a Go duration such as `10m`, `1h30m`, `500ms`, `2.5s` (etcd's flag syntax).
pub fn parse_duration(text: &str) -> Option<Duration> {
    oxcd_godur::parse(text).ok()
}
