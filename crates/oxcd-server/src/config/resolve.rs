//! Turns [`Settings`] into a [`Config`]: applies the table's warnings and refusals, derives
//! the defaults etcd derives, and checks values as etcd's `embed.Config.Validate` does.

use std::path::PathBuf;
use std::time::Duration;

use super::settings::{Settings, Source};
use super::table::Handling;
use super::urls::{parse_initial_cluster, parse_urls, url_text};
use super::{
    ClusterState, Config, ConfigError, DEFAULT_QUOTA_BACKEND_BYTES, MAX_QUOTA_BACKEND_BYTES,
};
use crate::tls::{suites, TlsCommon, TlsInfo, TlsVersion};

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
    let (client_tls, peer_tls, tls_common) = tls_settings(&settings)?;
    let mut tls_warnings = Vec::new();
    check_tls_urls(
        &listen_client_urls,
        &listen_peer_urls,
        &listen_metrics_urls,
        (&client_tls, &peer_tls),
        &mut tls_warnings,
    )?;
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
    let quota_backend_bytes = match settings.int("quota-backend-bytes") {
        0 => DEFAULT_QUOTA_BACKEND_BYTES as i64,
        q => {
            if q > MAX_QUOTA_BACKEND_BYTES as i64 {
                // etcd's "quota exceeds the maximum value": a warning, the quota stands.
                settings.notes.push(format!(
                    "--quota-backend-bytes={q} exceeds the maximum value {MAX_QUOTA_BACKEND_BYTES} \
                     (8.6 GB); a larger backend may degrade performance"
                ));
            }
            q
        }
    };
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
    let auto_compaction = oxcd_core::AutoCompaction::parse(
        &settings.text("auto-compaction-mode"),
        &settings.text("auto-compaction-retention"),
    )
    .map_err(|e| {
        ConfigError::Invalid(format!(
            "--auto-compaction-retention={}: {e}",
            settings.text("auto-compaction-retention")
        ))
    })?;
    let auth_token = settings.text("auth-token");
    // Checked here so a bad value stops the server before it touches the data dir.
    oxcd_auth::TokenProvider::from_options(&auth_token, Duration::from_secs(1))
        .map_err(ConfigError::Invalid)?;
    // Outside 4..=31 the auth store warns and uses 10, as etcd does.
    let bcrypt_cost = u32::try_from(settings.uint("bcrypt-cost")).unwrap_or(u32::MAX);
    let mut warnings = std::mem::take(&mut settings.notes);
    warnings.extend(verdict.warnings);
    warnings.extend(tls_warnings);
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
        quota_backend_bytes,
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
        initial_corrupt_check: settings.bool("experimental-initial-corrupt-check"),
        corrupt_check_time: settings.duration("experimental-corrupt-check-time"),
        listen_metrics_urls,
        metrics_extensive: settings.text("metrics") == "extensive",
        enable_grpc_gateway: settings.bool("enable-grpc-gateway"),
        client_tls,
        peer_tls,
        tls_common,
        auto_compaction,
        auth_token,
        auth_token_ttl: Duration::from_secs(settings.uint("auth-token-ttl")),
        bcrypt_cost,
    })
}

/// A comma list flag's items.
fn list(settings: &Settings, name: &str) -> Vec<String> {
    settings
        .text(name)
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The TLS flags of both sides, checked as etcd 3.5's `Config.Validate` checks them.
fn tls_settings(settings: &Settings) -> Result<(TlsInfo, TlsInfo, TlsCommon), ConfigError> {
    let client = TlsInfo {
        cert_file: settings.text("cert-file"),
        key_file: settings.text("key-file"),
        client_cert_file: settings.text("client-cert-file"),
        client_key_file: settings.text("client-key-file"),
        trusted_ca_file: settings.text("trusted-ca-file"),
        client_cert_auth: settings.bool("client-cert-auth"),
        crl_file: settings.text("client-crl-file"),
        allowed_cn: Vec::new(),
        allowed_hostname: list(settings, "client-cert-allowed-hostname"),
        auto_tls: settings.bool("auto-tls"),
        self_signed: false,
        skip_client_san_verify: false,
    };
    let peer = TlsInfo {
        cert_file: settings.text("peer-cert-file"),
        key_file: settings.text("peer-key-file"),
        client_cert_file: settings.text("peer-client-cert-file"),
        client_key_file: settings.text("peer-client-key-file"),
        trusted_ca_file: settings.text("peer-trusted-ca-file"),
        client_cert_auth: settings.bool("peer-client-cert-auth"),
        crl_file: settings.text("peer-crl-file"),
        allowed_cn: list(settings, "peer-cert-allowed-cn"),
        allowed_hostname: list(settings, "peer-cert-allowed-hostname"),
        auto_tls: settings.bool("peer-auto-tls"),
        self_signed: false,
        skip_client_san_verify: settings.bool("experimental-peer-skip-client-san-verification"),
    };
    if !peer.allowed_cn.is_empty() && !peer.allowed_hostname.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "AllowedCN and AllowedHostname are mutually exclusive (cn={:?}, hostname={:?}); give only one of --peer-cert-allowed-cn and --peer-cert-allowed-hostname",
            peer.allowed_cn.join(","),
            peer.allowed_hostname.join(",")
        )));
    }
    for (info, a, b) in [
        (&client, "--client-cert-file", "--client-key-file"),
        (&peer, "--peer-client-cert-file", "--peer-client-key-file"),
    ] {
        if info.client_cert_file.is_empty() != info.client_key_file.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "{a} and {b} must both be given or both be left out"
            )));
        }
    }
    let cipher_suites = list(settings, "cipher-suites");
    suites::parse_cipher_suites(&cipher_suites).map_err(ConfigError::Invalid)?;
    let min_text = settings.text("tls-min-version");
    let max_text = settings.text("tls-max-version");
    let min_version =
        TlsVersion::parse("tls-min-version", &min_text).map_err(ConfigError::Invalid)?;
    let max_version =
        TlsVersion::parse("tls-max-version", &max_text).map_err(ConfigError::Invalid)?;
    if let (Some(min), Some(max)) = (min_version, max_version) {
        if min > max {
            return Err(ConfigError::Invalid(format!(
                "min version ({}) is greater than max version ({}); lower --tls-min-version or raise --tls-max-version",
                min.name(),
                max.name()
            )));
        }
    }
    if min_version == Some(TlsVersion::Tls13) && !cipher_suites.is_empty() {
        return Err(ConfigError::Invalid(
            "cipher suites cannot be configured when only TLS1.3 is enabled; drop --cipher-suites or lower --tls-min-version".into(),
        ));
    }
    let common = TlsCommon {
        cipher_suites,
        min_version,
        max_version,
        self_signed_cert_validity: settings.uint("self-signed-cert-validity").max(1),
    };
    Ok((client, peer, common))
}

/// etcd's rules for `https://` listen URLs: a certificate (or auto TLS) is needed; on
/// `http://` peer URLs, given peer certificates are ignored with a warning.
fn check_tls_urls(
    client_urls: &[url::Url],
    peer_urls: &[url::Url],
    metrics_urls: &[url::Url],
    (client, peer): (&TlsInfo, &TlsInfo),
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let client_ready = !client.is_empty() || client.auto_tls;
    for u in client_urls {
        if u.scheme() == "https" && !client_ready {
            return Err(ConfigError::Invalid(format!(
                "TLS key/cert (--cert-file, --key-file) must be provided for client url {} with HTTPS scheme",
                url_text(u)
            )));
        }
    }
    for u in metrics_urls {
        if u.scheme() == "https" && !client_ready {
            return Err(ConfigError::Invalid(format!(
                "TLS key/cert (--cert-file, --key-file) must be provided for metrics url {} with HTTPS scheme",
                url_text(u)
            )));
        }
    }
    for u in peer_urls {
        match u.scheme() {
            "https" if peer.is_empty() && !peer.auto_tls => {
                return Err(ConfigError::Invalid(format!(
                    "cannot listen on TLS for {}: KeyFile and CertFile are not presented; pass --peer-cert-file and --peer-key-file, or --peer-auto-tls",
                    url_text(u)
                )));
            }
            "http" if !peer.is_empty() => warnings.push(format!(
                "the scheme of peer url {} is HTTP while peer key/cert files are presented; ignoring the key and cert files for this URL",
                url_text(u)
            )),
            _ => {}
        }
        if u.scheme() == "http" && peer.client_cert_auth {
            warnings.push(format!(
                "the scheme of peer url {} is HTTP while client cert auth (--peer-client-cert-auth) is enabled; ignoring client cert auth for this URL",
                url_text(u)
            ));
        }
    }
    Ok(())
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
