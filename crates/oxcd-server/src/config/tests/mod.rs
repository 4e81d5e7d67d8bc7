//! Tests of the whole configuration path: command line, environment, config file, table.

use std::path::PathBuf;
use std::time::Duration;

use super::table;
use super::table::{Handling, FLAGS};
use super::values::Kind;
use super::*;

fn parse_env(args: &[&str], env: &[(&str, &str)]) -> Result<Option<Config>, ConfigError> {
    let mut v = vec!["oxcd".to_string()];
    v.extend(args.iter().map(|s| s.to_string()));
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::from_args_and_env(v, env)
}

fn parse(args: &[&str]) -> Result<Option<Config>, ConfigError> {
    parse_env(args, &[])
}

fn config(args: &[&str]) -> Config {
    match parse(args) {
        Ok(Some(c)) => c,
        other => panic!("{args:?} gave {other:?}"),
    }
}

fn error(args: &[&str]) -> String {
    match parse(args) {
        Err(e) => e.to_string(),
        Ok(c) => panic!("{args:?} was accepted: {c:?}"),
    }
}

mod etcd_flag_names;
use etcd_flag_names::{ETCD_34_FLAGS, ETCD_35_FLAGS};

#[test]
fn every_etcd_flag_is_in_the_table_with_its_versions() {
    for (list, in_version, version) in [
        (
            ETCD_34_FLAGS,
            table::Versions::in_34 as fn(table::Versions) -> bool,
            "3.4",
        ),
        (ETCD_35_FLAGS, table::Versions::in_35, "3.5"),
    ] {
        for name in list {
            let spec =
                table::find(name).unwrap_or_else(|| panic!("etcd {version} flag --{name} missing"));
            assert!(
                in_version(spec.etcd),
                "--{name} should be marked as an etcd {version} flag"
            );
        }
        for spec in FLAGS.iter().filter(|f| in_version(f.etcd)) {
            assert!(
                list.contains(&spec.name),
                "--{} is marked etcd {version} but is not",
                spec.name
            );
        }
    }
    let mut names: Vec<&str> = FLAGS.iter().map(|f| f.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), FLAGS.len(), "a flag is listed twice");
}

/// A value that asks for something: not the default/off value, nor a quiet one.
fn sample(kind: Kind, avoid: &[&str]) -> String {
    let candidates: Vec<String> = match kind {
        Kind::Bool => vec!["true".into(), "false".into()],
        Kind::Uint | Kind::Uint32 | Kind::Int => vec!["7".into(), "8".into()],
        Kind::Duration => vec!["7s".into(), "8s".into()],
        Kind::Text | Kind::Retired => vec!["x".into(), "y".into()],
        Kind::List => vec!["a,b".into()],
        Kind::Urls => vec!["http://127.0.0.1:1".into()],
        Kind::Choice(words) => words.iter().map(|w| w.to_string()).collect(),
        Kind::Retention => vec!["1".into()],
    };
    candidates
        .into_iter()
        .find(|c| !avoid.contains(&c.as_str()))
        .unwrap_or_else(|| panic!("no sample for {kind:?} avoiding {avoid:?}"))
}

#[test]
fn every_flag_gets_its_handling() {
    let mut counts = [[0usize; 3]; 2];
    for spec in FLAGS {
        let flag = format!("--{}", spec.name);
        let category = match spec.handling {
            Handling::Implemented { .. } => {
                if spec.name != "version" && spec.name != "config-file" {
                    let default_ok = parse(&[&flag]).is_ok() || spec.kind.takes_value();
                    assert!(default_ok, "{flag}");
                }
                0
            }
            Handling::Ignored { quiet, .. } => {
                let given = format!("{flag}={}", sample(spec.kind, quiet));
                let c = config(&[&given]);
                assert_eq!(c.warnings.len(), 1, "{given}: {:?}", c.warnings);
                assert!(c.warnings[0].starts_with(&given), "{}", c.warnings[0]);
                assert!(
                    c.warnings[0].contains("has no effect in oxcd"),
                    "{}",
                    c.warnings[0]
                );
                assert_eq!(c.ignored, vec![spec.name.to_string()]);
                for q in quiet {
                    let c = config(&[&format!("{flag}={q}")]);
                    assert!(c.warnings.is_empty(), "{flag}={q}: {:?}", c.warnings);
                }
                1
            }
            Handling::Retired => {
                let c = config(&[&flag]);
                assert_eq!(c.warnings.len(), 1, "{flag}");
                assert!(
                    c.warnings[0].contains("no longer supported"),
                    "{}",
                    c.warnings[0]
                );
                1
            }
            Handling::Refused { accepted, why } => {
                let given = format!("{flag}={}", sample(spec.kind, accepted));
                let e = error(&[&given]);
                assert!(e.starts_with(&given), "{e}");
                assert!(e.contains(why) && e.contains("remove it"), "{e}");
                assert!(!e.contains('\n'), "one line: {e}");
                for a in accepted {
                    let c = config(&[&format!("{flag}={a}")]);
                    assert!(c.warnings.is_empty(), "{flag}={a}: {:?}", c.warnings);
                }
                2
            }
        };
        if spec.etcd.in_34() {
            counts[0][category] += 1;
        }
        if spec.etcd.in_35() {
            counts[1][category] += 1;
        }
    }
    // Implemented / warned / refused, for etcd 3.4 and 3.5 (retired flags count as warned).
    assert_eq!(
        counts,
        [[54, 42, 9], [58, 58, 11]],
        "update the README's figures too"
    );
}

#[test]
fn deployment_command_line_of_etcd_34_has_documented_outcomes() {
    // Refused: each would silently weaken what the operator asked for.
    for refused in ["--enable-v2=true", "--force-new-cluster"] {
        let e = error(&[refused]);
        assert!(e.starts_with(refused), "{refused}: {e}");
    }
    // Accepted, implemented or with one warning each.
    let c = config(&[
        "--max-concurrent-streams=100",
        "--grpc-keepalive-min-time=10s",
        "--grpc-keepalive-interval=1m",
        "--grpc-keepalive-timeout=5s",
        "--logger",
        "zap",
        "--log-outputs",
        "stderr",
        "--auto-compaction-mode=periodic",
        "--auto-compaction-retention=0",
        "--experimental-initial-corrupt-check=false",
        "--experimental-corrupt-check-time=3m",
        "--snapshot-count=10000",
        "--enable-pprof",
        "--metrics=extensive",
        "--listen-metrics-urls=http://127.0.0.1:2381",
        "--enable-grpc-gateway=false",
        "--experimental-enable-lease-checkpoint",
    ]);
    assert!(c.metrics_extensive && !c.enable_grpc_gateway);
    assert!(!c.initial_corrupt_check);
    assert_eq!(c.corrupt_check_time, Duration::from_secs(180));
    assert_eq!(c.listen_metrics_urls.len(), 1);
    assert_eq!(c.max_concurrent_streams, 100);
    assert_eq!(c.grpc_keepalive_interval, Some(Duration::from_secs(60)));
    assert_eq!(c.grpc_keepalive_timeout, Duration::from_secs(5));
    assert_eq!(c.snapshot_count, 10_000);
    assert_eq!(
        c.ignored,
        ["grpc-keepalive-min-time", "logger", "enable-pprof",]
    );
    assert!(c
        .warnings
        .iter()
        .any(|w| w.starts_with("--logger=zap has no effect")));
}

#[test]
fn quota_backend_bytes_as_etcd() {
    assert_eq!(
        config(&["--quota-backend-bytes=1048576"]).quota_backend_bytes,
        1_048_576
    );
    assert_eq!(
        config(&["--quota-backend-bytes=-1"]).quota_backend_bytes,
        -1
    );
    let big = config(&["--quota-backend-bytes=17179869184"]);
    assert_eq!(big.quota_backend_bytes, 17_179_869_184);
    assert!(big
        .warnings
        .iter()
        .any(|w| w.contains("exceeds the maximum value")));
}

#[test]
fn defaults_match_etcd() {
    let c = config(&[]);
    assert_eq!(c.name, "default");
    assert_eq!(c.data_dir, PathBuf::from("default.etcd"));
    assert_eq!(c.wal_dir, PathBuf::from("default.etcd/member/wal"));
    assert_eq!(url_text(&c.listen_client_urls[0]), "http://localhost:2379");
    assert_eq!(c.initial_cluster.len(), 1);
    assert_eq!(c.max_request_bytes, 1_572_864);
    assert_eq!(c.max_txn_ops, 128);
    assert_eq!(c.lease_checkpoint_interval, Duration::from_secs(300));
    assert_eq!(c.quota_backend_bytes, DEFAULT_QUOTA_BACKEND_BYTES as i64);
    assert_eq!(c.election_ticks(), 10);
    assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(600));
    assert_eq!(c.grpc_keepalive_interval, Some(Duration::from_secs(7200)));
    assert_eq!(c.grpc_keepalive_timeout, Duration::from_secs(20));
    assert_eq!(c.max_concurrent_streams, u32::MAX);
    assert!(c.warnings.is_empty() && c.ignored.is_empty());
}

#[test]
fn every_implemented_default_parses() {
    for f in FLAGS {
        if let Handling::Implemented { default, .. } = f.handling {
            if !default.is_empty() {
                assert!(
                    f.kind.parse(default).is_ok(),
                    "--{} default {default:?}",
                    f.name
                );
            }
        }
    }
}

#[test]
fn name_derives_data_dir_and_initial_cluster() {
    let c = config(&["--name", "infra0"]);
    assert_eq!(c.data_dir, PathBuf::from("infra0.etcd"));
    assert!(c.initial_cluster.contains_key("infra0"));
}

#[test]
fn go_flag_syntax() {
    let c = config(&["-name", "x", "-data-dir=/tmp/x", "--snapshot-count", "0x10"]);
    assert_eq!(c.name, "x");
    assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    assert_eq!(c.snapshot_count, 16);
    // A bool flag alone is true; its value needs '='.
    assert_eq!(config(&["--debug"]).log_level, "debug");
    assert_eq!(config(&["--debug=false"]).log_level, "info");
    assert_eq!(config(&["-debug=T"]).log_level, "debug");
    let e = error(&["--debug", "false"]);
    assert!(e.contains("'false' is not a valid flag"), "{e}");
    // Anything after `--` or a non-flag argument is refused, as etcd does.
    assert!(error(&["--", "--name=x"]).contains("'--name=x' is not a valid flag"));
    assert!(error(&["stray"]).contains("'stray' is not a valid flag"));
    assert!(error(&["---name=x"]).contains("bad flag syntax"));
    assert!(error(&["--name"]).contains("flag needs an argument: --name"));
    let e = error(&["--heartbeat-interval=abc"]);
    assert!(
        e.contains("invalid value \"abc\" for flag --heartbeat-interval"),
        "{e}"
    );
    // The last of a repeated flag wins.
    assert_eq!(config(&["--name=a", "--name=b"]).name, "b");
}

#[test]
fn help_lists_the_table() {
    for arg in ["-h", "--help", "-help"] {
        match parse(&[arg]) {
            Err(ConfigError::Help(text)) => {
                for f in FLAGS {
                    assert!(text.contains(&format!("  --{}", f.name)), "{}", f.name);
                }
            }
            other => panic!("{arg}: {other:?}"),
        }
    }
}

#[test]
fn unknown_flag_is_an_error() {
    let e = error(&["--no-such-flag"]);
    assert!(
        e.contains("flag provided but not defined: --no-such-flag"),
        "{e}"
    );
}

#[test]
fn bad_url_names_flag() {
    let e = error(&[
        "--listen-client-urls",
        "localhost:2379",
        "--advertise-client-urls=http://a:1",
    ]);
    assert!(e.contains("--listen-client-urls"), "{e}");
    let e = error(&[
        "--listen-client-urls",
        "http://127.0.0.1",
        "--advertise-client-urls=http://a:1",
    ]);
    assert!(e.contains("no port"), "{e}");
}

#[test]
fn listen_client_urls_needs_advertise_client_urls() {
    let e = error(&["--listen-client-urls=http://127.0.0.1:1"]);
    assert!(e.contains("--advertise-client-urls is required"), "{e}");
}

#[test]
fn initial_cluster_must_name_member() {
    let e = error(&["--initial-cluster", "other=http://localhost:2380"]);
    assert!(e.contains("no entry"), "{e}");
}

#[test]
fn election_timeout_rule() {
    let e = error(&["--heartbeat-interval", "100", "--election-timeout", "300"]);
    assert!(e.contains("5 times"), "{e}");
}

#[test]
fn version_flag() {
    assert!(parse(&["--version"]).unwrap().is_none());
    assert!(parse(&["-version=true"]).unwrap().is_none());
}

#[test]
fn environment_maps_to_flags() {
    let c = parse_env(
        &[],
        &[("ETCD_NAME", "envnode"), ("ETCD_SNAPSHOT_COUNT", "7")],
    )
    .unwrap()
    .unwrap();
    assert_eq!((c.name.as_str(), c.snapshot_count), ("envnode", 7));
    // Empty counts as unset (and, as in etcd, is then reported as unrecognized); unknown
    // ETCD_ variables are reported, others left alone.
    let c = parse_env(
        &[],
        &[("ETCD_NAME", ""), ("ETCD_NO_SUCH", "1"), ("HOME", "/")],
    )
    .unwrap()
    .unwrap();
    assert_eq!(c.name, "default");
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("ETCD_NAME"), "{:?}", c.warnings);
    assert!(c.warnings[1].contains("ETCD_NO_SUCH"), "{:?}", c.warnings);
    // A flag and its variable both set: refused, as etcd refuses it.
    let e = parse_env(&["--name=a"], &[("ETCD_NAME", "b")]).unwrap_err();
    assert!(
        matches!(e, ConfigError::EnvConflict(ref v) if v == "ETCD_NAME"),
        "{e}"
    );
    // Refusals and warnings name the variable.
    let c = parse_env(&[], &[("ETCD_CERT_FILE", "/x.crt")])
        .unwrap()
        .unwrap();
    assert_eq!(c.client_tls.cert_file, "/x.crt");
    let e = parse_env(&[], &[("ETCD_ENABLE_V2", "true")])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("ETCD_ENABLE_V2=true: "), "{e}");
    let c = parse_env(&[], &[("ETCD_VERSION", "true")])
        .unwrap()
        .unwrap();
    assert!(
        c.warnings[0].starts_with("ETCD_VERSION is ignored"),
        "{:?}",
        c.warnings
    );
    let e = parse_env(&[], &[("ETCD_SNAPSHOT_COUNT", "x")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("for ETCD_SNAPSHOT_COUNT"), "{e}");
}

fn write_file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etcd.yml");
    std::fs::write(&path, text).unwrap();
    let path = path.to_str().unwrap().to_string();
    (dir, path)
}

#[test]
fn config_file_uses_etcd_keys() {
    let (_dir, path) = write_file(
        "name: 'm1'\ndata-dir: /tmp/m1\nlisten-client-urls: http://127.0.0.1:12379\nsnapshot-count: 5000\nenable-v2: false\nunknown-key: 1\nexperimental-watch-progress-notify-interval: 5000000000\nlog-outputs: [stderr]\n",
    );
    let c = config(&["--config-file", &path]);
    assert_eq!(c.name, "m1");
    assert_eq!(c.snapshot_count, 5000);
    assert_eq!(url_text(&c.listen_client_urls[0]), "http://127.0.0.1:12379");
    assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(5));
    assert!(c.ignored.iter().any(|k| k.contains("unknown-key")));
    // The file replaces flags and environment, as in etcd.
    let c = parse_env(&["--config-file", &path, "--name=x"], &[("ETCD_NAME", "y")])
        .unwrap()
        .unwrap();
    assert_eq!(c.name, "m1");
    assert!(
        c.warnings.iter().any(|w| w.contains("--name")),
        "{:?}",
        c.warnings
    );
    let c = parse_env(&[], &[("ETCD_CONFIG_FILE", &path)])
        .unwrap()
        .unwrap();
    assert_eq!(c.name, "m1");
}

#[test]
fn config_file_refuses_what_flags_refuse() {
    let (_dir, path) = write_file("enable-v2: true\n");
    let e = error(&["--config-file", &path]);
    assert!(e.starts_with("config file key enable-v2: true: "), "{e}");
    let (_dir, path) = write_file("auto-compaction-retention: '1'\n");
    assert_eq!(
        config(&["--config-file", &path]).auto_compaction,
        Some(oxcd_core::AutoCompaction::Periodic(Duration::from_secs(
            3600
        )))
    );
    let (_dir, path) = write_file("auto-compaction-retention: '0'\nquota-backend-bytes: 0\n");
    assert!(config(&["--config-file", &path]).warnings.is_empty());
}

#[test]
fn config_file_values_are_typed_as_etcd_reads_them() {
    let (_dir, path) = write_file("snapshot-count: '5000'\n");
    let e = error(&["--config-file", &path]);
    assert!(
        e.contains("key snapshot-count: expected a non-negative integer"),
        "{e}"
    );
    let (_dir, path) = write_file("experimental-watch-progress-notify-interval: 10m\n");
    let e = error(&["--config-file", &path]);
    assert!(e.contains("nanoseconds"), "{e}");
    let (_dir, path) = write_file("- a\n- b\n");
    assert!(error(&["--config-file", &path]).contains("expected a mapping"));
    let (_dir, path) = write_file("name: [unclosed\n");
    assert!(error(&["--config-file", &path]).contains("not valid YAML"));
    let (_dir, path) = write_file("");
    assert_eq!(config(&["--config-file", &path]).name, "default");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
    assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("x"), None);
    assert_eq!(parse_duration(""), None);
}

#[test]
fn tls_flags_and_file_keys_fill_both_sides() {
    let c = config(&[
        "--cert-file=/s.crt",
        "--key-file=/s.key",
        "--trusted-ca-file=/ca.crt",
        "--client-cert-auth",
        "--client-crl-file=/c.crl",
        "--peer-auto-tls",
        "--peer-cert-allowed-cn=m1,m2",
        "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "--tls-max-version=TLS1.2",
    ]);
    assert_eq!(c.client_tls.cert_file, "/s.crt");
    assert!(c.client_tls.client_cert_auth);
    assert_eq!(c.client_tls.crl_file, "/c.crl");
    assert!(c.peer_tls.auto_tls);
    assert_eq!(c.peer_tls.allowed_cn, ["m1", "m2"]);
    assert_eq!(c.tls_common.cipher_suites.len(), 2);
    assert_eq!(
        c.tls_common.max_version,
        Some(crate::tls::TlsVersion::Tls12)
    );
    let (_dir, path) = write_file(
        "peer-transport-security:\n  cert-file: /p.crt\n  key-file: /p.key\n  client-cert-auth: true\n  crl-file: /p.crl\nclient-transport-security:\n  auto-tls: true\n",
    );
    let c = config(&["--config-file", &path]);
    assert_eq!(c.peer_tls.cert_file, "/p.crt");
    assert_eq!(c.peer_tls.crl_file, "/p.crl");
    assert!(c.peer_tls.client_cert_auth && c.client_tls.auto_tls);
    // etcd 3.5's checks.
    assert!(
        error(&["--tls-min-version=TLS1.3", "--tls-max-version=TLS1.2"])
            .starts_with("min version (TLS1.3) is greater than max version (TLS1.2)")
    );
    assert!(error(&[
        "--tls-min-version=TLS1.3",
        "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    ])
    .starts_with("cipher suites cannot be configured when only TLS1.3 is enabled"));
    assert!(
        error(&["--peer-cert-allowed-cn=a", "--peer-cert-allowed-hostname=b"])
            .starts_with("AllowedCN and AllowedHostname are mutually exclusive")
    );
    assert!(error(&[
        "--listen-peer-urls=https://127.0.0.1:2380",
        "--initial-advertise-peer-urls=https://127.0.0.1:2380",
    ])
    .starts_with("cannot listen on TLS for https://127.0.0.1:2380"));
}
