//! Server configuration: etcd's command-line flags, `ETCD_*` environment variables and
//! `--config-file` YAML, resolved into one validated [`Config`].
//!
//! Precedence follows etcd: a config file, when given, replaces flags and environment
//! entirely; otherwise a flag beats its `ETCD_<FLAG>` variable, which beats the default.
//! Go's flag package also accepts `-flag`; [`normalize_args`] rewrites those to `--flag`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};
use thiserror::Error;
use url::Url;

/// etcd's default request size limit (1.5 MiB).
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 1_572_864;
/// etcd's default backend quota when `--quota-backend-bytes` is 0 (2 GiB).
pub const DEFAULT_QUOTA_BACKEND_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// etcd refuses quotas above this (8 GiB) with a warning; we cap it the same way.
pub const MAX_QUOTA_BACKEND_BYTES: u64 = 8 * 1024 * 1024 * 1024;

/// A configuration mistake, worded for the person at the terminal: what is wrong and what to
/// change.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// Command line could not be parsed (unknown flag, malformed value).
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

/// etcd's flags, as clap parses them. Every flag can also come from `ETCD_<NAME>`.
///
/// Flags oxcd accepts for compatibility but does not act on yet are listed at the end and
/// reported by [`Config::ignored`].
#[derive(Debug, Parser)]
#[command(
    name = "oxcd",
    version = crate::version::OXCD_VERSION,
    about = "oxcd: an etcd v3 compatible, strongly consistent key-value store",
    disable_version_flag = true
)]
pub struct Flags {
    /// Path to the server configuration file (etcd's YAML keys). Replaces flags and env vars.
    #[arg(long, env = "ETCD_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: "<name>.etcd").
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Path to a dedicated WAL directory (default: <data-dir>/member/wal).
    #[arg(long, env = "ETCD_WAL_DIR")]
    pub wal_dir: Option<PathBuf>,
    /// URLs to listen on for client traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub listen_client_urls: String,
    /// Client URLs advertised to the rest of the cluster and to clients.
    #[arg(
        long,
        env = "ETCD_ADVERTISE_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub advertise_client_urls: String,
    /// URLs to listen on for peer traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub listen_peer_urls: String,
    /// Peer URLs advertised to the rest of the cluster.
    #[arg(
        long,
        env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping: name=peer-url,...
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,
    /// Initial cluster token, mixed into member and cluster IDs.
    #[arg(
        long,
        env = "ETCD_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,
    /// Number of applied entries between raft log compactions.
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to time out.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: u64,
    /// Raise an alarm when the backend exceeds this size (0 = 2 GiB).
    #[arg(
        long,
        env = "ETCD_QUOTA_BACKEND_BYTES",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub quota_backend_bytes: i64,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: u64,
    /// How often the leader checkpoints the remaining TTL of long-lived leases (etcd 3.5's
    /// flag; oxcd always checkpoints and persists, as etcd 3.6 does).
    #[arg(
        long,
        env = "ETCD_EXPERIMENTAL_LEASE_CHECKPOINT_INTERVAL",
        default_value = "5m"
    )]
    pub experimental_lease_checkpoint_interval: String,
    /// Log level: debug, info, warn, error, panic or fatal.
    #[arg(long, env = "ETCD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Duration of periodic watch progress notifications.
    #[arg(
        long,
        env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL",
        default_value = "10m"
    )]
    pub experimental_watch_progress_notify_interval: String,
    /// Print the version and exit.
    #[arg(long, action = ArgAction::SetTrue)]
    pub version: bool,

    // --- Accepted for compatibility with existing deployments; no effect yet. ---
    /// Logger to use (oxcd always logs structured lines through `tracing`).
    #[arg(long, env = "ETCD_LOGGER", hide = true)]
    pub logger: Option<String>,
    /// Log outputs (oxcd logs to stderr).
    #[arg(long, env = "ETCD_LOG_OUTPUTS", hide = true)]
    pub log_outputs: Option<String>,
    /// Deprecated etcd log output flag.
    #[arg(long, env = "ETCD_LOG_OUTPUT", hide = true)]
    pub log_output: Option<String>,
    /// Enable the v2 API (never supported by oxcd).
    #[arg(long, env = "ETCD_ENABLE_V2", hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub enable_v2: Option<bool>,
    /// Enable pprof (Go only).
    #[arg(long, env = "ETCD_ENABLE_PPROF", hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub enable_pprof: Option<bool>,
    /// Pre-vote (always on in oxcd).
    #[arg(long, env = "ETCD_PRE_VOTE", hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub pre_vote: Option<bool>,
    /// Strict reconfiguration check.
    #[arg(long, env = "ETCD_STRICT_RECONFIG_CHECK", hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub strict_reconfig_check: Option<bool>,
    /// Enable the gRPC gateway.
    #[arg(long, env = "ETCD_ENABLE_GRPC_GATEWAY", hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub enable_grpc_gateway: Option<bool>,
    /// Metrics detail level.
    #[arg(long, env = "ETCD_METRICS", hide = true)]
    pub metrics: Option<String>,
    /// Maximum snapshot files to retain.
    #[arg(long, env = "ETCD_MAX_SNAPSHOTS", hide = true)]
    pub max_snapshots: Option<u64>,
    /// Maximum WAL files to retain.
    #[arg(long, env = "ETCD_MAX_WALS", hide = true)]
    pub max_wals: Option<u64>,
    /// Auto compaction retention.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_RETENTION", hide = true)]
    pub auto_compaction_retention: Option<String>,
    /// Auto compaction mode.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_MODE", hide = true)]
    pub auto_compaction_mode: Option<String>,
    /// Debug logging (deprecated etcd flag; prefer --log-level=debug).
    #[arg(long, env = "ETCD_DEBUG", hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub debug: Option<bool>,
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
    /// Backend quota in bytes (resolved: never 0).
    pub quota_backend_bytes: u64,
    /// Operations allowed per txn.
    pub max_txn_ops: u64,
    /// Interval of lease remaining-TTL checkpoints (never zero).
    pub lease_checkpoint_interval: Duration,
    /// `tracing` filter directive derived from --log-level.
    pub log_level: String,
    /// Interval of watch progress notifications.
    pub watch_progress_notify_interval: Duration,
    /// Flags given that oxcd accepts but does not act on (reported at start-up).
    pub ignored: Vec<String>,
}

/// Rewrites Go-style single-dash long flags (`-name x`) to `--name x`, as Go's flag package
/// accepts both spellings.
pub fn normalize_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut after_double_dash = false;
    for (i, a) in args.into_iter().enumerate() {
        if i > 0 && !after_double_dash && a.len() > 2 && a.starts_with('-') && !a.starts_with("--")
        {
            let second = a.as_bytes()[1];
            if second.is_ascii_alphabetic() {
                out.push(format!("-{a}"));
                continue;
            }
        }
        if a == "--" {
            after_double_dash = true;
        }
        out.push(a);
    }
    out
}

impl Config {
    /// Parses the process's arguments and environment. Returns `Ok(None)` for `--version`.
    pub fn from_args(args: Vec<String>) -> Result<Option<Config>, ConfigError> {
        let args = normalize_args(args);
        let matches = Flags::command().try_get_matches_from(&args).map_err(|e| {
            let text = e.render().to_string().trim_end().to_string();
            match e.kind() {
                clap::error::ErrorKind::DisplayHelp => ConfigError::Help(text),
                _ => ConfigError::Args(text),
            }
        })?;
        let flags =
            Flags::from_arg_matches(&matches).map_err(|e| ConfigError::Args(e.to_string()))?;
        if flags.version {
            return Ok(None);
        }
        if let Some(path) = flags.config_file.clone() {
            return Self::from_config_file(&path).map(Some);
        }
        Self::from_flags(flags).map(Some)
    }

    /// Reads etcd's YAML config file. Its keys are the flag names; unknown keys are ignored
    /// as etcd ignores them, but reported in the log.
    pub fn from_config_file(path: &std::path::Path) -> Result<Config, ConfigError> {
        let err = |reason: String| ConfigError::ConfigFile {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&text).map_err(|e| err(format!("not valid YAML: {e}")))?;
        let map = match doc {
            serde_yaml::Value::Mapping(m) => m,
            serde_yaml::Value::Null => serde_yaml::Mapping::new(),
            _ => return Err(err("expected a mapping of etcd config keys".into())),
        };
        // Environment must not leak in when a config file is used (etcd ignores it then).
        let cmd = Flags::command().mut_args(|a| a.env(None::<&'static str>));
        let known: Vec<String> = cmd
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect();
        let mut args = vec!["oxcd".to_string()];
        let mut unknown = Vec::new();
        for (k, v) in map {
            let Some(key) = k.as_str() else { continue };
            if key == "config-file" || key == "version" {
                continue;
            }
            let value = match v {
                serde_yaml::Value::Null => continue,
                serde_yaml::Value::String(s) => s,
                serde_yaml::Value::Bool(b) => b.to_string(),
                serde_yaml::Value::Number(n) => n.to_string(),
                serde_yaml::Value::Sequence(items) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect::<Vec<_>>()
                    .join(","),
                _ => {
                    unknown.push(key.to_string());
                    continue;
                }
            };
            if known.iter().any(|k| k == key) {
                args.push(format!("--{key}={value}"));
            } else {
                unknown.push(key.to_string());
            }
        }
        let matches = cmd
            .try_get_matches_from(&args)
            .map_err(|e| err(e.render().to_string().trim_end().to_string()))?;
        let flags = Flags::from_arg_matches(&matches).map_err(|e| err(e.to_string()))?;
        let mut cfg = Self::from_flags(flags)?;
        cfg.ignored.extend(
            unknown
                .into_iter()
                .map(|k| format!("{k} (config file key)")),
        );
        Ok(cfg)
    }

    /// Validates parsed flags and derives the defaults etcd derives.
    pub fn from_flags(f: Flags) -> Result<Config, ConfigError> {
        if f.name.is_empty() {
            return Err(ConfigError::Invalid(
                "--name must not be empty; pass a member name such as --name=infra0".into(),
            ));
        }
        let data_dir = f
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", f.name)));
        let wal_dir = f
            .wal_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("member").join("wal"));
        let listen_client_urls = parse_urls("listen-client-urls", &f.listen_client_urls)?;
        let advertise_client_urls = parse_urls("advertise-client-urls", &f.advertise_client_urls)?;
        let listen_peer_urls = parse_urls("listen-peer-urls", &f.listen_peer_urls)?;
        let initial_advertise_peer_urls = parse_urls(
            "initial-advertise-peer-urls",
            &f.initial_advertise_peer_urls,
        )?;
        for u in listen_client_urls.iter().chain(&listen_peer_urls) {
            if u.scheme() == "https" {
                return Err(ConfigError::Invalid(format!(
                    "{u}: TLS listeners are not supported by this oxcd build yet; use an http:// URL"
                )));
            }
        }
        let initial_cluster_text = f.initial_cluster.clone().unwrap_or_else(|| {
            initial_advertise_peer_urls
                .iter()
                .map(|u| format!("{}={}", f.name, url_text(u)))
                .collect::<Vec<_>>()
                .join(",")
        });
        let initial_cluster = parse_initial_cluster(&initial_cluster_text)?;
        let initial_cluster_state = match f.initial_cluster_state.as_str() {
            "new" => ClusterState::New,
            "existing" => ClusterState::Existing,
            other => {
                return Err(ConfigError::Invalid(format!(
                    "invalid --initial-cluster-state {other:?}: use 'new' or 'existing'"
                )))
            }
        };
        match initial_cluster.get(&f.name) {
            None => {
                return Err(ConfigError::BadInitialCluster {
                    value: initial_cluster_text,
                    reason: format!(
                        "it has no entry for this member's --name {:?}; add {}=<peer url> or fix --name",
                        f.name, f.name
                    ),
                })
            }
            Some(urls) => {
                let mut a: Vec<String> = urls.iter().map(url_text).collect();
                let mut b: Vec<String> = initial_advertise_peer_urls.iter().map(url_text).collect();
                a.sort();
                b.sort();
                if a != b {
                    return Err(ConfigError::BadInitialCluster {
                        value: initial_cluster_text,
                        reason: format!(
                            "--initial-cluster has {}={} but --initial-advertise-peer-urls is {}; make them the same",
                            f.name,
                            a.join(","),
                            b.join(",")
                        ),
                    });
                }
            }
        }
        if f.heartbeat_interval == 0 {
            return Err(ConfigError::Invalid(
                "--heartbeat-interval must be > 0 (milliseconds; etcd's default is 100)".into(),
            ));
        }
        if f.election_timeout < 5 * f.heartbeat_interval {
            return Err(ConfigError::Invalid(format!(
                "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]; raise --election-timeout or lower --heartbeat-interval",
                f.election_timeout, f.heartbeat_interval
            )));
        }
        if f.election_timeout > 50_000 {
            return Err(ConfigError::Invalid(format!(
                "--election-timeout[{}ms] is too long, and should be set less than 50 seconds",
                f.election_timeout
            )));
        }
        if f.max_request_bytes == 0 {
            return Err(ConfigError::Invalid(
                "--max-request-bytes must be > 0 (etcd's default is 1572864)".into(),
            ));
        }
        if f.max_txn_ops == 0 {
            return Err(ConfigError::Invalid(
                "--max-txn-ops must be > 0 (etcd's default is 128)".into(),
            ));
        }
        let quota_backend_bytes = match f.quota_backend_bytes {
            q if q < 0 => {
                return Err(ConfigError::Invalid(format!(
                    "--quota-backend-bytes={q} is negative; use 0 for the 2 GiB default"
                )))
            }
            0 => DEFAULT_QUOTA_BACKEND_BYTES,
            q => (q as u64).min(MAX_QUOTA_BACKEND_BYTES),
        };
        let log_level = match f.log_level.as_str() {
            "debug" => "debug",
            "info" => "info",
            "warn" => "warn",
            "error" | "dpanic" | "panic" | "fatal" => "error",
            other => {
                return Err(ConfigError::Invalid(format!(
                    "invalid --log-level {other:?}: use debug, info, warn, error, panic or fatal"
                )))
            }
        };
        let log_level = if f.debug == Some(true) {
            "debug"
        } else {
            log_level
        };
        let watch_progress_notify_interval =
            parse_duration(&f.experimental_watch_progress_notify_interval).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "invalid --experimental-watch-progress-notify-interval {:?}: use a Go duration such as 10m or 30s",
                    f.experimental_watch_progress_notify_interval
                ))
            })?;
        let lease_checkpoint_interval = parse_duration(&f.experimental_lease_checkpoint_interval)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "invalid --experimental-lease-checkpoint-interval {:?}: use a positive Go duration such as 5m or 30s",
                    f.experimental_lease_checkpoint_interval
                ))
            })?;
        let mut ignored = Vec::new();
        let compat: [(&str, bool); 13] = [
            ("logger", f.logger.is_some()),
            ("log-outputs", f.log_outputs.is_some()),
            ("log-output", f.log_output.is_some()),
            ("enable-v2", f.enable_v2.is_some()),
            ("enable-pprof", f.enable_pprof.is_some()),
            ("pre-vote", f.pre_vote.is_some()),
            ("strict-reconfig-check", f.strict_reconfig_check.is_some()),
            ("enable-grpc-gateway", f.enable_grpc_gateway.is_some()),
            ("metrics", f.metrics.is_some()),
            ("max-snapshots", f.max_snapshots.is_some()),
            ("max-wals", f.max_wals.is_some()),
            (
                "auto-compaction-retention",
                f.auto_compaction_retention.is_some(),
            ),
            ("auto-compaction-mode", f.auto_compaction_mode.is_some()),
        ];
        ignored.extend(
            compat
                .iter()
                .filter(|(_, set)| *set)
                .map(|(n, _)| (*n).to_string()),
        );
        Ok(Config {
            name: f.name,
            data_dir,
            wal_dir,
            listen_client_urls,
            advertise_client_urls,
            listen_peer_urls,
            initial_advertise_peer_urls,
            initial_cluster,
            initial_cluster_state,
            initial_cluster_token: f.initial_cluster_token,
            snapshot_count: f.snapshot_count.max(1),
            heartbeat_interval: Duration::from_millis(f.heartbeat_interval),
            election_timeout: Duration::from_millis(f.election_timeout),
            max_request_bytes: f.max_request_bytes,
            quota_backend_bytes,
            max_txn_ops: f.max_txn_ops,
            lease_checkpoint_interval,
            log_level: log_level.to_string(),
            watch_progress_notify_interval,
            ignored,
        })
    }

    /// Election timeout in heartbeat ticks, as raft counts it.
    pub fn election_ticks(&self) -> usize {
        let ticks = self.election_timeout.as_millis() / self.heartbeat_interval.as_millis().max(1);
        (ticks as usize).max(2)
    }
}

/// A URL as etcd prints it: `scheme://host:port` without a trailing slash.
pub fn url_text(u: &Url) -> String {
    let s = u.as_str();
    s.strip_suffix('/').unwrap_or(s).to_string()
}

fn parse_urls(flag: &'static str, text: &str) -> Result<Vec<Url>, ConfigError> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = |reason: &str| ConfigError::BadUrl {
            flag,
            url: part.to_string(),
            reason: reason.to_string(),
        };
        let u = Url::parse(part).map_err(|e| bad(&e.to_string()))?;
        match u.scheme() {
            "http" | "https" => {}
            s => return Err(bad(&format!("scheme {s:?} is not http or https"))),
        }
        if u.host_str().is_none() {
            return Err(bad("it has no host"));
        }
        if u.port().is_none() {
            return Err(bad("it has no port"));
        }
        if !(u.path().is_empty() || u.path() == "/") {
            return Err(bad("it must not have a path"));
        }
        out.push(u);
    }
    if out.is_empty() {
        return Err(ConfigError::BadUrl {
            flag,
            url: text.to_string(),
            reason: "no URL given".into(),
        });
    }
    Ok(out)
}

fn parse_initial_cluster(text: &str) -> Result<BTreeMap<String, Vec<Url>>, ConfigError> {
    let mut map: BTreeMap<String, Vec<Url>> = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((name, url)) = part.split_once('=') else {
            return Err(ConfigError::BadInitialCluster {
                value: text.to_string(),
                reason: format!("{part:?} is not name=url"),
            });
        };
        let urls = parse_urls("initial-cluster", url)?;
        map.entry(name.to_string()).or_default().extend(urls);
    }
    if map.is_empty() {
        return Err(ConfigError::BadInitialCluster {
            value: text.to_string(),
            reason: "it names no member".into(),
        });
    }
    Ok(map)
}

/// Parses a Go duration such as `10m`, `1h30m`, `500ms`, `2.5s` (etcd's flag syntax).
pub fn parse_duration(text: &str) -> Option<Duration> {
    oxcd_godur::parse(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Config>, ConfigError> {
        let mut v = vec!["oxcd".to_string()];
        v.extend(args.iter().map(|s| s.to_string()));
        Config::from_args(v)
    }

    #[test]
    fn defaults_match_etcd() {
        let c = parse(&[]).unwrap().unwrap();
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, PathBuf::from("default.etcd"));
        assert_eq!(c.wal_dir, PathBuf::from("default.etcd/member/wal"));
        assert_eq!(url_text(&c.listen_client_urls[0]), "http://localhost:2379");
        assert_eq!(c.initial_cluster.len(), 1);
        assert_eq!(c.max_request_bytes, 1_572_864);
        assert_eq!(c.max_txn_ops, 128);
        assert_eq!(c.lease_checkpoint_interval, Duration::from_secs(300));
        assert_eq!(c.quota_backend_bytes, DEFAULT_QUOTA_BACKEND_BYTES);
        assert_eq!(c.election_ticks(), 10);
        assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(600));
    }

    #[test]
    fn name_derives_data_dir_and_initial_cluster() {
        let c = parse(&["--name", "infra0"]).unwrap().unwrap();
        assert_eq!(c.data_dir, PathBuf::from("infra0.etcd"));
        assert!(c.initial_cluster.contains_key("infra0"));
    }

    #[test]
    fn go_style_single_dash_flags() {
        let c = parse(&["-name", "x", "-data-dir=/tmp/x"]).unwrap().unwrap();
        assert_eq!(c.name, "x");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn unknown_flag_is_an_error() {
        let e = parse(&["--no-such-flag"]).unwrap_err().to_string();
        assert!(e.contains("--no-such-flag"), "{e}");
    }

    #[test]
    fn bad_url_names_flag() {
        let e = parse(&["--listen-client-urls", "localhost:2379"]).unwrap_err();
        assert!(e.to_string().contains("--listen-client-urls"), "{e}");
        let e = parse(&["--listen-client-urls", "http://127.0.0.1"]).unwrap_err();
        assert!(e.to_string().contains("no port"), "{e}");
    }

    #[test]
    fn initial_cluster_must_name_member() {
        let e = parse(&["--initial-cluster", "other=http://localhost:2380"]).unwrap_err();
        assert!(e.to_string().contains("no entry"), "{e}");
    }

    #[test]
    fn election_timeout_rule() {
        let e = parse(&["--heartbeat-interval", "100", "--election-timeout", "300"]).unwrap_err();
        assert!(e.to_string().contains("5 times"), "{e}");
    }

    #[test]
    fn version_flag() {
        assert!(parse(&["--version"]).unwrap().is_none());
    }

    #[test]
    fn config_file_uses_etcd_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.yml");
        std::fs::write(
            &path,
            "name: 'm1'\ndata-dir: /tmp/m1\nlisten-client-urls: http://127.0.0.1:12379\nsnapshot-count: 5000\nenable-v2: false\nunknown-key: 1\n",
        )
        .unwrap();
        let c = parse(&["--config-file", path.to_str().unwrap()])
            .unwrap()
            .unwrap();
        assert_eq!(c.name, "m1");
        assert_eq!(c.snapshot_count, 5000);
        assert_eq!(url_text(&c.listen_client_urls[0]), "http://127.0.0.1:12379");
        assert!(c.ignored.iter().any(|k| k.contains("unknown-key")));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration(""), None);
    }
}
