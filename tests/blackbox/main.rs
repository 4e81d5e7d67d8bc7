//! Black-box tests: each spawns real `oxcd` processes and talks to them over gRPC/HTTP.

// A test binary: a panic is a failed test, and its helpers are not an API.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod harness;

mod auth;
mod auto_compaction;
mod check;
mod client;
mod cluster;
mod durability;
mod etcd_flags;
mod gateway;
mod import;
mod kv;
mod lease;
mod maintenance;
#[cfg(target_os = "linux")]
mod scheduling;
mod snapshot;
mod startup;
mod tls;
mod watch;
