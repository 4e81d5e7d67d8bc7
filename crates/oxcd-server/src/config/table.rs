//! Every flag of etcd 3.4 and 3.5 (and oxcd's own), and what oxcd does with it: the single
//! source of truth for parsing, `ETCD_*` variables, config-file keys, `--help`, and which
//! settings are honoured, ignored with a warning, or refused.
//!
//! The rule for a flag oxcd does not implement: if ignoring it is harmless (logging, pprof,
//! tuning of etcd's own storage), it is accepted and one warning line says it has no effect;
//! if ignoring it would mislead (auth, metrics listeners,
//! discovery, corruption checks), a value other than its off/default value is refused at
//! start with the cause and the fix.

use super::values::Kind;

/// The etcd releases that have a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Versions(u8);

impl Versions {
    /// oxcd's own flag, unknown to etcd.
    pub(super) const OXCD: Versions = Versions(0);
    /// etcd 3.4 only.
    pub(super) const V34: Versions = Versions(1);
    /// etcd 3.5 only.
    pub(super) const V35: Versions = Versions(2);
    /// etcd 3.4 and 3.5.
    pub(super) const BOTH: Versions = Versions(3);

    /// Whether etcd 3.4 has the flag.
    pub(super) fn in_34(self) -> bool {
        self.0 & 1 != 0
    }

    /// Whether etcd 3.5 has the flag.
    pub(super) fn in_35(self) -> bool {
        self.0 & 2 != 0
    }
}

/// What oxcd does with a flag.
#[derive(Debug, Clone, Copy)]
pub(super) enum Handling {
    /// oxcd acts on it.
    Implemented {
        /// etcd's default, in flag syntax.
        default: &'static str,
        /// One line for `--help`.
        help: &'static str,
    },
    /// Accepted; when given a value other than those in `quiet`, one warning line says it
    /// has no effect, and why that is harmless.
    Ignored {
        /// Values that match what oxcd does anyway (no warning).
        quiet: &'static [&'static str],
        /// Why it has no effect.
        why: &'static str,
    },
    /// Accepted only with one of the `accepted` values (its default/off value); any other
    /// value stops the server at start, because ignoring it would mislead.
    Refused {
        /// Values that ask for nothing oxcd lacks.
        accepted: &'static [&'static str],
        /// What oxcd lacks.
        why: &'static str,
    },
    /// A flag etcd itself no longer supports and ignores with a warning; so does oxcd.
    Retired,
}

/// Where a flag lives in etcd's YAML config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileKey {
    /// A top-level key named like the flag.
    Same,
    /// A top-level key with another name.
    Named(&'static str),
    /// A key of the `client-transport-security` section.
    Client(&'static str),
    /// A key of the `peer-transport-security` section.
    Peer(&'static str),
    /// Not settable from the file.
    None,
}

/// One flag.
#[derive(Debug, Clone, Copy)]
pub(super) struct FlagSpec {
    /// Name without dashes.
    pub name: &'static str,
    /// Value syntax.
    pub kind: Kind,
    /// The etcd releases that have it.
    pub etcd: Versions,
    /// What oxcd does with it.
    pub handling: Handling,
    /// Its config-file key.
    pub file_key: FileKey,
}

impl FlagSpec {
    /// The `ETCD_*` variable etcd maps to this flag: `ETCD_` and the name in upper snake
    /// case.
    pub(super) fn env_var(&self) -> String {
        format!("ETCD_{}", self.name.to_ascii_uppercase().replace('-', "_"))
    }

    const fn file(mut self, key: FileKey) -> FlagSpec {
        self.file_key = key;
        self
    }
}

/// Looks a flag up by name.
pub(super) fn find(name: &str) -> Option<&'static FlagSpec> {
    FLAGS.iter().find(|f| f.name == name)
}

const fn used(
    name: &'static str,
    kind: Kind,
    etcd: Versions,
    default: &'static str,
    help: &'static str,
) -> FlagSpec {
    FlagSpec {
        name,
        kind,
        etcd,
        handling: Handling::Implemented { default, help },
        file_key: FileKey::Same,
    }
}

const fn ignored(
    name: &'static str,
    kind: Kind,
    etcd: Versions,
    quiet: &'static [&'static str],
    why: &'static str,
) -> FlagSpec {
    FlagSpec {
        name,
        kind,
        etcd,
        handling: Handling::Ignored { quiet, why },
        file_key: FileKey::Same,
    }
}

const fn refused(
    name: &'static str,
    kind: Kind,
    etcd: Versions,
    accepted: &'static [&'static str],
    why: &'static str,
) -> FlagSpec {
    FlagSpec {
        name,
        kind,
        etcd,
        handling: Handling::Refused { accepted, why },
        file_key: FileKey::Same,
    }
}

const fn retired(name: &'static str) -> FlagSpec {
    FlagSpec {
        name,
        kind: Kind::Retired,
        etcd: Versions::BOTH,
        handling: Handling::Retired,
        file_key: FileKey::None,
    }
}

use FileKey::{Client, Named, Peer};
use Kind::{Bool, Choice, Duration, Int, List, Retention, Text, Uint, Uint32, Urls};
const B: Versions = Versions::BOTH;
const V34: Versions = Versions::V34;
const V35: Versions = Versions::V35;

const V2: &str = "oxcd serves only the v3 API";
const DISCOVERY: &str =
    "oxcd bootstraps only from --initial-cluster; list the members there instead of using discovery";
const CORRUPTION: &str = "oxcd has no compaction hash check (etcd 3.5's) yet; --experimental-corrupt-check-time checks the members periodically";
const TRACING: &str = "oxcd exports no OpenTelemetry traces yet";
const LOG: &str = "oxcd writes its own structured log lines to stderr (filter them with OXCD_LOG)";
const BBOLT: &str = "oxcd's backend is not bbolt, it has no such knob";
const ONLY_DISCOVERY: &str = "only used with --discovery, which oxcd refuses";
const ONLY_PROXY: &str = "only used with --proxy, which oxcd refuses";
const ONLY_TRACING: &str =
    "only used with --experimental-enable-distributed-tracing, which oxcd refuses";

/// Every flag, in etcd's help order: member, clustering, proxy, security, logging,
/// auth, experimental, unsafe; then etcd's retired flags.
pub(super) static FLAGS: &[FlagSpec] = &[
    used("config-file", Text, B, "", "YAML file with etcd's keys; when given, all other flags and ETCD_* variables are ignored").file(FileKey::None),
    // Member.
    used("name", Text, B, "default", "Human-readable name for this member"),
    used("data-dir", Text, B, "", "Path to the data directory (default: <name>.etcd)"),
    used("wal-dir", Text, B, "", "Path to a dedicated WAL directory (default: <data-dir>/member/wal)"),
    used("snapshot-count", Uint, B, "100000", "Applied entries between raft log compactions"),
    used("heartbeat-interval", Uint, B, "100", "Time (ms) of a heartbeat interval"),
    used("election-timeout", Uint, B, "1000", "Time (ms) for an election to time out"),
    ignored("initial-election-tick-advance", Bool, B, &["false"], "oxcd does not fast-forward election ticks at boot; the first election waits a full timeout"),
    used("listen-peer-urls", Urls, B, "http://localhost:2380", "URLs to listen on for peer traffic"),
    used("listen-client-urls", Urls, B, "http://localhost:2379", "URLs to listen on for client traffic (gRPC and HTTP)"),
    refused("listen-client-http-urls", Urls, B, &[""], "oxcd serves HTTP and gRPC together on --listen-client-urls and has no separate HTTP listener"),
    used("listen-metrics-urls", Urls, B, "", "Additional URLs to serve /metrics and /health on."),
    ignored("max-snapshots", Uint, B, &["5"], "oxcd keeps only the snapshot files it needs"),
    ignored("max-wals", Uint, B, &["5"], "oxcd removes WAL files once the log is compacted past them"),
    used("quota-backend-bytes", Int, B, "0", "Raise an alarm when the backend size exceeds the given quota (0 defaults to 2 GiB, negative disables)"),
    ignored("backend-bbolt-freelist-type", Text, V35, &[], BBOLT),
    ignored("experimental-backend-bbolt-freelist-type", Text, V34, &[], BBOLT),
    ignored("backend-batch-interval", Duration, B, &[], "oxcd commits its backend once per applied batch"),
    ignored("backend-batch-limit", Int, B, &[], "oxcd commits its backend once per applied batch"),
    used("max-txn-ops", Uint, B, "128", "Maximum operations in one transaction"),
    used("max-request-bytes", Uint, B, "1572864", "Maximum client request size in bytes"),
    ignored("grpc-keepalive-min-time", Duration, B, &["5s"], "oxcd does not limit how often clients ping"),
    used("grpc-keepalive-interval", Duration, B, "2h", "How often the server pings an idle client connection (0 disables)"),
    used("grpc-keepalive-timeout", Duration, B, "20s", "How long a server ping may go unanswered before the connection closes"),
    used("max-concurrent-streams", Uint32, B, "4294967295", "Maximum concurrent HTTP/2 streams per client connection"),
    ignored("socket-reuse-port", Bool, V35, &["false"], "oxcd does not set SO_REUSEPORT on its listeners").file(Named("socket-options.reuse-port")),
    ignored("socket-reuse-address", Bool, V35, &["true"], "oxcd always sets SO_REUSEADDR on its listeners").file(Named("socket-options.reuse-address")),
    ignored("raft-read-timeout", Duration, V35, &["5s"], "oxcd's peer transport has its own timeouts").file(FileKey::None),
    ignored("raft-write-timeout", Duration, V35, &["5s"], "oxcd's peer transport has its own timeouts").file(FileKey::None),
    // Clustering.
    used("initial-advertise-peer-urls", Urls, B, "http://localhost:2380", "This member's peer URLs to advertise to the cluster"),
    used("initial-cluster", Text, B, "", "Initial cluster for bootstrapping: name=peer-url,... (default: <name>=<initial-advertise-peer-urls>)"),
    used("initial-cluster-state", Choice(&["new", "existing"]), B, "new", "Initial cluster state: new or existing"),
    used("initial-cluster-token", Text, B, "etcd-cluster", "Initial cluster token, mixed into member and cluster IDs"),
    used("advertise-client-urls", Urls, B, "http://localhost:2379", "This member's client URLs to advertise"),
    refused("discovery", Text, B, &[""], DISCOVERY),
    ignored("discovery-fallback", Choice(&["exit", "proxy"]), B, &[], ONLY_DISCOVERY),
    ignored("discovery-proxy", Text, B, &[""], ONLY_DISCOVERY),
    refused("discovery-srv", Text, B, &[""], DISCOVERY),
    refused("discovery-srv-name", Text, B, &[""], DISCOVERY),
    used("strict-reconfig-check", Bool, B, "true", "Reject reconfiguration requests that would cause quorum loss"),
    ignored("pre-vote", Bool, B, &["true"], "oxcd always runs raft's pre-vote phase"),
    used("auto-compaction-retention", Retention, B, "0", "Auto compaction retention: hours or a Go duration (periodic), or revisions (revision); 0 disables"),
    used("auto-compaction-mode", Choice(&["periodic", "revision"]), B, "periodic", "Interpret --auto-compaction-retention as periodic (time) or revision (count)"),
    refused("enable-v2", Bool, B, &["false"], V2),
    refused("experimental-enable-v2v3", Text, B, &[""], V2),
    ignored("v2-deprecation", Choice(&["not-yet", "write-only", "write-only-drop-data", "gone"]), V35, &[], "oxcd has no v2 store"),
    ignored("next-cluster-version-compatible", Bool, V34, &["false"], "oxcd does not support downgrades"),
    // Proxy.
    refused("proxy", Choice(&["off", "readonly", "on"]), B, &["off"], "oxcd has no v2 proxy mode"),
    ignored("proxy-failure-wait", Uint, B, &[], ONLY_PROXY),
    ignored("proxy-refresh-interval", Uint, B, &[], ONLY_PROXY),
    ignored("proxy-dial-timeout", Uint, B, &[], ONLY_PROXY),
    ignored("proxy-write-timeout", Uint, B, &[], ONLY_PROXY),
    ignored("proxy-read-timeout", Uint, B, &[], ONLY_PROXY),
    // Security.
    used("cert-file", Text, B, "", "Path to the client server TLS cert file.").file(Client("cert-file")),
    used("key-file", Text, B, "", "Path to the client server TLS key file.").file(Client("key-file")),
    used("client-cert-file", Text, V35, "", "Path to an explicit client TLS cert file (checked; oxcd's gateway dials nothing)").file(Client("client-cert-file")),
    used("client-key-file", Text, V35, "", "Path to an explicit client TLS key file (checked; oxcd's gateway dials nothing)").file(Client("client-key-file")),
    used("client-cert-auth", Bool, B, "false", "Enable client cert authentication.").file(Client("client-cert-auth")),
    used("client-crl-file", Text, B, "", "Path to the client certificate revocation list file.").file(Client("crl-file")),
    used("client-cert-allowed-hostname", List, B, "", "Allowed TLS hostname for client cert authentication.").file(Client("allowed-hostname")),
    used("trusted-ca-file", Text, B, "", "Path to the client server TLS trusted CA cert file.").file(Client("trusted-ca-file")),
    used("auto-tls", Bool, B, "false", "Client TLS using generated certificates").file(Client("auto-tls")),
    used("self-signed-cert-validity", Uint, V35, "1", "The validity period of the client and peer certificates, unit is year"),
    used("peer-cert-file", Text, B, "", "Path to the peer server TLS cert file.").file(Peer("cert-file")),
    used("peer-key-file", Text, B, "", "Path to the peer server TLS key file.").file(Peer("key-file")),
    used("peer-client-cert-file", Text, V35, "", "Path to an explicit peer client TLS cert file otherwise peer cert file will be used when client auth is required.").file(Peer("client-cert-file")),
    used("peer-client-key-file", Text, V35, "", "Path to an explicit peer client TLS key file otherwise peer key file will be used when client auth is required.").file(Peer("client-key-file")),
    used("peer-client-cert-auth", Bool, B, "false", "Enable peer client cert authentication.").file(Peer("client-cert-auth")),
    used("peer-trusted-ca-file", Text, B, "", "Path to the peer server TLS trusted CA file.").file(Peer("trusted-ca-file")),
    used("peer-auto-tls", Bool, B, "false", "Peer TLS using generated certificates").file(Peer("auto-tls")),
    used("peer-cert-allowed-cn", List, B, "", "Allowed CN for inter peer authentication.").file(Peer("allowed-cn")),
    used("peer-cert-allowed-hostname", List, B, "", "Allowed TLS hostname for inter peer authentication.").file(Peer("allowed-hostname")),
    used("peer-crl-file", Text, B, "", "Path to the peer certificate revocation list file.").file(Peer("crl-file")),
    used("experimental-peer-skip-client-san-verification", Bool, B, "false", "Skip verification of SAN field in client certificate for peer connections.").file(FileKey::None),
    used("cipher-suites", List, B, "", "Comma-separated list of supported TLS cipher suites between client/server and peers (empty: rustls' defaults)."),
    used("tls-min-version", Text, B, "TLS1.2", "Minimum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3."),
    used("tls-max-version", Text, B, "", "Maximum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3 (empty: TLS1.3)."),
    ignored("cors", List, B, &["*", ""], "oxcd sends no CORS headers, so browsers refuse every cross-origin request"),
    refused("host-whitelist", List, B, &["*", ""], "oxcd does not check the Host header, so it would answer every host name"),
    // Logging.
    ignored("logger", Text, B, &[], LOG),
    ignored("log-outputs", List, B, &["default", "stderr"], LOG),
    ignored("log-output", List, V34, &["default", "stderr"], LOG),
    used("log-level", Choice(&["debug", "info", "warn", "error", "dpanic", "panic", "fatal"]), B, "info", "Log level: debug, info, warn, error, panic or fatal"),
    used("debug", Bool, V34, "false", "Log at debug level (etcd 3.4's older spelling of --log-level=debug)"),
    ignored("log-package-levels", Text, V34, &[""], "per-package log levels are not supported; use OXCD_LOG=<tracing filter>"),
    ignored("enable-log-rotation", Bool, V35, &["false"], "oxcd writes its log to stderr and does not rotate files"),
    ignored("log-rotation-config-json", Text, V35, &[], "oxcd writes its log to stderr and does not rotate files"),
    // Version.
    used("version", Bool, B, "false", "Print the version and exit").file(FileKey::None),
    // Profiling and metrics.
    ignored("enable-pprof", Bool, B, &["false"], "oxcd is not a Go program; profile it with perf"),
    used("metrics", Choice(&["basic", "extensive"]), B, "basic", "Set level of detail for exported metrics, specify 'extensive' to include server side grpc histogram metrics."),
    refused("experimental-enable-distributed-tracing", Bool, V35, &["false"], TRACING),
    ignored("experimental-distributed-tracing-address", Text, V35, &[], ONLY_TRACING),
    ignored("experimental-distributed-tracing-service-name", Text, V35, &[], ONLY_TRACING),
    ignored("experimental-distributed-tracing-instance-id", Text, V35, &[], ONLY_TRACING),
    ignored("experimental-distributed-tracing-sampling-rate", Int, V35, &[], ONLY_TRACING),
    // Auth.
    used("auth-token", Text, B, "simple", "Specify auth token specific options: 'simple' or 'jwt,pub-key=<path>,priv-key=<path>,sign-method=<alg>,ttl=<duration>'"),
    used("bcrypt-cost", Uint, B, "10", "Specify bcrypt algorithm cost factor for auth password hashing (4 to 31)"),
    used("auth-token-ttl", Uint, B, "300", "The lifetime in seconds of the auth token"),
    // Gateway.
    used("enable-grpc-gateway", Bool, B, "true", "Enable GRPC gateway."),
    // Experimental.
    used("experimental-initial-corrupt-check", Bool, B, "false", "Check the backend's hash against the peers' before serving clients"),
    used("experimental-corrupt-check-time", Duration, B, "0s", "How often the leader compares the members' hashes (0s: never)"),
    refused("experimental-compact-hash-check-enabled", Bool, V35, &["false"], CORRUPTION),
    ignored("experimental-compact-hash-check-time", Duration, V35, &[], "only used with --experimental-compact-hash-check-enabled, which oxcd refuses"),
    ignored("experimental-enable-lease-checkpoint", Bool, B, &["true"], "oxcd always checkpoints the remaining TTL of leases"),
    ignored("experimental-enable-lease-checkpoint-persist", Bool, B, &["true"], "oxcd always persists lease checkpoints"),
    used("experimental-lease-checkpoint-interval", Duration, Versions::OXCD, "5m", "How often the leader checkpoints the remaining TTL of long-lived leases"),
    ignored("experimental-compaction-batch-limit", Int, B, &[], "oxcd deletes compacted revisions in the background, in batches of at most 1000 revisions or 4 ms"),
    ignored("experimental-compaction-sleep-interval", Duration, V35, &[], "oxcd deletes compacted revisions in the background, in batches of at most 1000 revisions or 4 ms"),
    used("experimental-watch-progress-notify-interval", Duration, B, "10m", "Interval of periodic watch progress notifications"),
    ignored("experimental-warning-apply-duration", Duration, B, &[], "oxcd warns of and counts applies slower than etcd's default, 100 ms"),
    ignored("experimental-txn-mode-write-with-shared-buffer", Bool, V35, &[], BBOLT),
    ignored("experimental-bootstrap-defrag-threshold-megabytes", Uint, V35, &["0"], "oxcd does not defragment at start"),
    ignored("experimental-memory-mlock", Bool, V35, &["false"], "oxcd does not lock its memory"),
    ignored("experimental-snapshot-catchup-entries", Uint, V35, &[], "oxcd's raft keeps its own catch-up window").file(Named("experimental-snapshot-catch-up-entries")),
    ignored("experimental-stop-grpc-service-on-defrag", Bool, V35, &["false"], "oxcd keeps serving during defragmentation"),
    ignored("experimental-downgrade-check-time", Duration, V35, &[], "oxcd does not support downgrades"),
    // Unsafe.
    refused("force-new-cluster", Bool, B, &["false"], "oxcd cannot turn an existing data dir into a new one-member cluster yet"),
    ignored("unsafe-no-fsync", Bool, B, &["false"], "oxcd always fsyncs (safe, slower)"),
    // Flags etcd itself ignores with a warning.
    retired("cluster-active-size"),
    retired("cluster-remove-delay"),
    retired("cluster-sync-interval"),
    retired("config"),
    retired("force"),
    retired("max-result-buffer"),
    retired("max-retry-attempts"),
    retired("peer-heartbeat-interval"),
    retired("peer-election-timeout"),
    retired("retry-interval"),
    retired("snapshot"),
    retired("v"),
    retired("vv"),
    retired("test.coverprofile"),
    retired("test.outputdir"),
];
