//! oxcd-peer: the peer transport of an oxcd cluster, served and dialled on
//! `--listen-peer-urls` / the members' peer URLs.
//!
//! Its one job is moving raft traffic and a few forwarded requests between members; it
//! knows nothing of keys, leases or membership beyond what [`PeerHandler`] (implemented by
//! oxcd-core) tells it.
//!
//! # Sending: [`PeerTransport`]
//!
//! The raft node's [`oxcd_raft::Transport`]. Each peer has **one long-lived raft stream**
//! (an HTTP/1.1 connection upgraded to the framing of the `frame` module; `raft_stream`
//! says why not gRPC). `send` never blocks: it frames each destination's messages into
//! that peer's bounded outbox (full, or the link down: dropped and counted, raft retries)
//! and writes the **batch** with one non-blocking `write` on the socket; the peer's task
//! writes what the socket did not take, and TLS streams, and pings every keep-alive
//! interval. A
//! broken or refused connection calls `RaftHandle::report_unreachable(to)` and is retried
//! with backoff (50 ms doubling to 1 s); peer URLs are replaced at run time with
//! [`PeerTransport::set_peer_urls`] / [`PeerTransport::remove_peer`].
//!
//! **Snapshots** travel on a stream of their own (`RaftPeer/Snapshot`), so heartbeats and
//! appends keep flowing meanwhile: for a `MsgSnapshot`, the handler exports the backend
//! into a file in its snapshot directory ([`PeerHandler::export_snapshot`], i.e.
//! `oxcd_mvcc::Store::export_snapshot`), the file is streamed in 1 MiB chunks with the
//! message in the first one (progress logged with bytes and rate), and raft is told the
//! outcome with `report_snapshot(to, Finish | Failure)`. The receiver writes it to a
//! temporary file in its snapshot directory, fsyncs file and directory, and hands file
//! and message to [`PeerHandler::receive_snapshot`] (which keeps the file for its applier,
//! i.e. `oxcd_mvcc::Store::replace_with`, and steps the message). Temporary files a crash
//! leaves are removed by [`remove_partial_snapshots`] at start-up.
//!
//! # Receiving: [`router`]
//!
//! An axum router with the raft stream's upgrade (`POST /oxcdpeer/raft`: the stream is
//! then read by a thread of its own, `oxcd-peer-rx`, or a task for TLS), the
//! `oxcdpeer.RaftPeer` service (snapshot stream, forwarded `LeaseRenew` /
//! `LeaseTimeToLive`) and etcd's peer HTTP endpoints used by
//! tools and joining members: `GET /members` (etcd 3.4's JSON, `X-Etcd-Cluster-ID`
//! header) and `GET /version`.
//!
//! # Metrics
//!
//! [`PeerStats`] holds per-peer atomics for etcd's `etcd_network_peer_*`,
//! `etcd_network_active_peers`/`disconnected_peers_total` and `etcd_network_snapshot_*`
//! families (what each counts is in its module docs); the transport and the [`router`]
//! (through [`PeerHandler::peer_stats`]) record into one instance, oxcd-server exports it.
//! Each peer is probed with etcd's `GET /raft/probing` every 4 s for the round-trip time,
//! and the router answers that path as etcd does.
//!
//! # Identity
//!
//! Every call and raft stream carries the sender's cluster id and member id in its
//! metadata or headers. A receiver of
//! another cluster refuses it naming both cluster ids ([`PeerError::ClusterIdMismatch`]);
//! a receiver that knows the sender as removed refuses it with etcd's "the member has
//! been permanently removed from the cluster", and the sender's
//! [`PeerTransport::removed`] turns `true` so the member can stop itself.
//!
//! # Forwarding: [`PeerClient`]
//!
//! A follower forwards lease keep-alives and TimeToLive to the leader's peer URLs
//! ([`PeerClient::lease_renew`], [`PeerClient::lease_time_to_live`]); a member joining
//! an existing cluster reads it from a peer ([`PeerClient::members`],
//! [`PeerClient::versions`]).
//!
//! # Seams
//!
//! `https://` peer URLs are dialled with TLS through [`PeerTls::Tls`] in [`DialOptions`]
//! (a rustls client configuration oxcd-server builds from the `--peer-*` flags); the TLS
//! acceptor of the listener the [`router`] is served on is oxcd-server's.
//! For fault-injection tests only, [`DIAL_OVERRIDE_ENV`] (`OXCD_PEER_DIAL_OVERRIDE`)
//! maps peer URLs to the addresses actually dialled, so a harness can route each
//! directed link through a proxy.
//!
//! The wire protocol is `proto/oxcdpeer/peer.proto` and the raft stream's framing; raft
//! messages in both are bytes encoded by [`oxcd_raft::wire`], the only decoder of peer
//! bytes.

mod client;
mod dial;
mod error;
mod files;
mod frame;
mod handler;
mod identity;
mod proto;
mod raft_stream;
mod server;
mod stats;
mod transport;

#[cfg(test)]
mod tests;

pub use client::{PeerClient, RemoteCluster};
pub use dial::{DialOptions, PeerTls, DIAL_OVERRIDE_ENV};
pub use error::{PeerError, LEASE_NOT_FOUND, MEMBER_REMOVED};
pub use files::remove_partial_snapshots;
pub use handler::{MemberInfo, PeerHandler, PeerHashHeader, PeerHashKv, Versions};
pub use identity::{CLUSTER_ID_KEY, MEMBER_ID_KEY};
pub use server::router;
pub use stats::{
    AtomicHistogram, HistogramSnapshot, LinkStats, PeerStats, RTT_BUCKETS, SNAPSHOT_BUCKETS,
    SNAP_DB_FSYNC_BUCKETS,
};
pub use transport::{PeerTransport, TransportOptions, TransportStats};
