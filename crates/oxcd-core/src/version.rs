//! Version strings: oxcd's own, and the etcd version whose API it serves.

/// oxcd's own version (logs, `--version`, `/version`).
pub const OXCD_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The etcd server version oxcd reports to clients in `Status.version` and `/version`.
/// Clients gate features on it, so it names the etcd API level oxcd implements.
pub const ETCD_SERVER_VERSION: &str = "3.5.0";

/// The cluster version reported by `/version` (etcd reports major.minor.0).
pub const ETCD_CLUSTER_VERSION: &str = "3.5.0";
