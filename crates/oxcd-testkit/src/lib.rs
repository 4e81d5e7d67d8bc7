//! Test infrastructure for oxcd clusters, usable against etcd as well:
//!
//! - [`proxy`] / [`net`]: a TCP fault proxy per directed peer link (pass, blackhole, delay, drop);
//! - [`cluster`]: N server processes on loopback with crash, pause, restart, replace, full disk;
//! - [`history`], [`linearizability`], [`watch_check`]: histories of etcd KV operations and
//!   checkers for them;
//! - [`robustness`]: seeded random traffic under random faults, then every check;
//! - [`scenarios`]: cluster scenarios run against etcd first, then oxcd.

pub mod cluster;
pub mod corrupt;
pub mod history;
pub mod linearizability;
pub mod model;
pub mod net;
pub mod ports;
pub mod proxy;
pub mod robustness;
pub mod scenarios;
pub mod watch_check;

pub use cluster::{Cluster, ClusterConfig, Flavor, HarnessError, Member, MemberState};
pub use net::FaultNet;
pub use ports::PortSource;
pub use proxy::{LinkControl, LinkMode};
