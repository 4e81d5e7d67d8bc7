//! Turns [`Settings`] into a [`Config`]: applies the table's warnings and refusals, derives
//! the defaults etcd derives, and checks values as etcd's `embed.Config.Validate` does.

use std::path::PathBuf;
use std::time::Duration;

use super::settings::{Settings, Source};
use super::table::Handling;
use super::urls::{parse_initial_cluster, parse_urls, url_text};
use super::{ClusterState, Config, ConfigError, DEFAULT_QUOTA_BACKEND_BYTES};

/// What the table says about the given settings: warnings for ignored ones, or the first
/// refusal.
struct Verdict {
    warnings: Vec<String>,
    ignored: Vec<String>,
}

fn judge(settings: &Settings) -> Result<Verdict, ConfigError> {
    let mut verdict = Verdict {
        warnings: Vec::new(),
        ignored: Vec::new(),
    };
    for (spec, setting) in settings.given() {
        match spec.handling {
            Handling::Implemented { .. } => {}
            Handling::Ignored { quiet, why } => {
                if !quiet.iter().any(|q| spec.kind.same(&setting.value, q)) {
                    verdict.warnings.push(format!(
                        "{} has no effect in oxcd: {why}",
                        setting.describe()
                    ));
                    verdict.ignored.push(spec.name.to_string());
                }
            }
            Handling::Refused { accepted, why } => {
                if !accepted.iter().any(|a| spec.kind.same(&setting.value, a)) {
                    return Err(ConfigError::Unsupported {
                        setting: setting.describe(),
                        why,
                        accepted: accepted.iter().copied().find(|a| !a.is_empty()),
                    });
                }
            }
            Handling::Retired => {
                verdict.warnings.push(format!(
                    "{} is no longer supported by etcd and is ignored",
                    setting.describe()
                ));
                verdict.ignored.push(spec.name.to_string());
            }
        }
    }
    Ok(verdict)
}

/// Validates the settings and derives the configuration.
pub(super) fn resolve(mut settings: Settings) -> Result<Config, ConfigError> {
    let verdict = judge(&settings)?;
    let name = settings.text("name");
    if name.is_empty() {
        return Err(ConfigError::Invalid(
            "--name must not be empty; pass a member name such as --name=infra0".into(),
        ));
    }
    let data_dir = match settings.text("data-dir") {
        d if d.is_empty() => PathBuf::from(format!("{name}.etcd")),
        d => PathBuf::from(d),
    };
    let wal_dir = match settings.text("wal-dir") {
        d if d.is_empty() => data_dir.join("member").join("wal"),
        d => PathBuf::from(d),
    };
    let urls = |flag: &'static str| parse_urls(flag, &settings.text(flag));
    let listen_client_urls = urls("listen-client-urls")?;
    let advertise_client_urls = urls("advertise-client-urls")?;
    let listen_peer_urls = urls("listen-peer-urls")?;
    let initial_advertise_peer_urls = urls("initial-advertise-peer-urls")?;
    // Unlike the client and peer URLs, the metrics URLs may be none (the default).
    let listen_metrics_urls = match settings.text("listen-metrics-urls") {
        t if t.trim().is_empty() => Vec::new(),
        _ => urls("listen-metrics-urls")?,
    };
    let from_flags_or_env = |flag| {
        settings
            .get(flag)
            .is_some_and(|s| !matches!(s.source, Source::File(..)))
    };
    if from_flags_or_env("listen-client-urls") && !settings.is_set("advertise-client-urls") {
        return Err(ConfigError::Invalid(
            "--advertise-client-urls is required when --listen-client-urls is set explicitly; pass the client URLs other members and clients should use".into(),
        ));
    }
    for u in listen_client_urls
        .iter()
        .chain(&listen_peer_urls)
        .chain(&listen_metrics_urls)
    {
        if u.scheme() == "https" {
            return Err(ConfigError::Invalid(format!(
                "{u}: TLS listeners are not supported by this oxcd build yet; use an http:// URL"
            )));
        }
    }
    let initial_cluster_text = match settings.text("initial-cluster") {
        t if t.is_empty() => initial_advertise_peer_urls
            .iter()
            .map(|u| format!("{name}={}", url_text(u)))
            .collect::<Vec<_>>()
            .join(","),
        t => t,
    };
    let initial_cluster = parse_initial_cluster(&initial_cluster_text)?;
    let initial_cluster_state = match settings.text("initial-cluster-state").as_str() {
        "existing" => ClusterState::Existing,
        _ => ClusterState::New,
    };
    check_member_in_cluster(
        &name,
        &initial_cluster_text,
        &initial_cluster,
        &initial_advertise_peer_urls,
    )?;
    let heartbeat_ms = settings.uint("heartbeat-interval");
    let election_ms = settings.uint("election-timeout");
    check_timing(heartbeat_ms, election_ms)?;
    let max_request_bytes = settings.uint("max-request-bytes");
    if max_request_bytes == 0 {
        return Err(ConfigError::Invalid(
            "--max-request-bytes must be > 0 (etcd's default is 1572864)".into(),
        ));
    }
    let max_txn_ops = settings.uint("max-txn-ops");
    if max_txn_ops == 0 {
        return Err(ConfigError::Invalid(
            "--max-txn-ops must be > 0 (etcd's default is 128)".into(),
        ));
    }
    let log_level = match settings.text("log-level").as_str() {
        _ if settings.bool("debug") => "debug",
        "debug" => "debug",
        "warn" => "warn",
        "error" | "dpanic" | "panic" | "fatal" => "error",
        _ => "info",
    };
    let lease_checkpoint_interval = settings.duration("experimental-lease-checkpoint-interval");
    if lease_checkpoint_interval.is_zero() {
        return Err(ConfigError::Invalid(
            "--experimental-lease-checkpoint-interval must be positive; use a Go duration such as 5m or 30s".into(),
        ));
    }
    let keepalive_interval = settings.duration("grpc-keepalive-interval");
    let max_concurrent_streams =
        u32::try_from(settings.uint("max-concurrent-streams")).unwrap_or(u32::MAX);
    if max_concurrent_streams == 0 {
        return Err(ConfigError::Invalid(
            "--max-concurrent-streams must be > 0 (etcd's default is 4294967295)".into(),
        ));
    }
    let auth_token = settings.text("auth-token");
    // Checked here so a bad value stops the server before it touches the data dir.
    oxcd_auth::TokenProvider::from_options(&auth_token, Duration::from_secs(1))
        .map_err(ConfigError::Invalid)?;
    // Outside 4..=31 the auth store warns and uses 10, as etcd does.
    let bcrypt_cost = u32::try_from(settings.uint("bcrypt-cost")).unwrap_or(u32::MAX);
    let mut warnings = std::mem::take(&mut settings.notes);
    warnings.extend(verdict.warnings);
    let mut ignored = verdict.ignored;
    ignored.append(&mut settings.unknown);
    Ok(Config {
        name,
        data_dir,
        wal_dir,
        listen_client_urls,
        advertise_client_urls,
        listen_peer_urls,
        initial_advertise_peer_urls,
        initial_cluster,
        initial_cluster_state,
        initial_cluster_token: settings.text("initial-cluster-token"),
        snapshot_count: settings.uint("snapshot-count").max(1),
        heartbeat_interval: Duration::from_millis(heartbeat_ms),
        election_timeout: Duration::from_millis(election_ms),
        max_request_bytes,
        // --quota-backend-bytes other than 0 is refused until the quota is enforced.
        quota_backend_bytes: DEFAULT_QUOTA_BACKEND_BYTES,
        max_txn_ops,
        lease_checkpoint_interval,
        log_level: log_level.to_string(),
        watch_progress_notify_interval: settings
            .duration("experimental-watch-progress-notify-interval"),
        ignored,
        warnings,
        grpc_keepalive_interval: (!keepalive_interval.is_zero()).then_some(keepalive_interval),
        grpc_keepalive_timeout: settings.duration("grpc-keepalive-timeout"),
        max_concurrent_streams,
        strict_reconfig_check: settings.bool("strict-reconfig-check"),
        listen_metrics_urls,
        metrics_extensive: settings.text("metrics") == "extensive",
        enable_grpc_gateway: settings.bool("enable-grpc-gateway"),
        auth_token,
        auth_token_ttl: Duration::from_secs(settings.uint("auth-token-ttl")),
        bcrypt_cost,
    })
}

/// etcd's rule: `--initial-cluster` names this member with exactly its advertised peer URLs.
fn check_member_in_cluster(
    name: &str,
    text: &str,
    cluster: &std::collections::BTreeMap<String, Vec<url::Url>>,
    advertised: &[url::Url],
) -> Result<(), ConfigError> {
    let Some(urls) = cluster.get(name) else {
        return Err(ConfigError::BadInitialCluster {
            value: text.to_string(),
            reason: format!(
                "it has no entry for this member's --name {name:?}; add {name}=<peer url> or fix --name"
            ),
        });
    };
    let mut listed: Vec<String> = urls.iter().map(url_text).collect();
    let mut ours: Vec<String> = advertised.iter().map(url_text).collect();
    listed.sort();
    ours.sort();
    if listed != ours {
        return Err(ConfigError::BadInitialCluster {
            value: text.to_string(),
            reason: format!(
                "--initial-cluster has {name}={} but --initial-advertise-peer-urls is {}; make them the same",
                listed.join(","),
                ours.join(",")
            ),
        });
    }
    Ok(())
}

/// etcd's heartbeat/election rules, with etcd's wording.
fn check_timing(heartbeat_ms: u64, election_ms: u64) -> Result<(), ConfigError> {
    if heartbeat_ms == 0 {
        return Err(ConfigError::Invalid(
            "--heartbeat-interval must be > 0 (milliseconds; etcd's default is 100)".into(),
        ));
    }
    if election_ms < 5 * heartbeat_ms {
        return Err(ConfigError::Invalid(format!(
            "--election-timeout[{election_ms}ms] should be at least as 5 times as --heartbeat-interval[{heartbeat_ms}ms]; raise --election-timeout or lower --heartbeat-interval"
        )));
    }
    if election_ms > 50_000 {
        return Err(ConfigError::Invalid(format!(
            "--election-timeout[{election_ms}ms] is too long, and should be set less than 50 seconds"
        )));
    }
    Ok(())
}
