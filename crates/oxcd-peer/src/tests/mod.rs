//! In-process tests: real raft nodes connected by real [`PeerTransport`]s over loopback
//! TCP (ports 24400-24499), some links through a proxy the test can cut.

mod cluster;
mod endpoints;
mod harness;
