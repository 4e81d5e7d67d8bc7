//! Black-box tests: each spawns real `oxcd` processes and talks to them over gRPC/HTTP.

mod harness;

mod client;
mod durability;
mod kv;
mod lease;
mod maintenance;
mod startup;
mod watch;
