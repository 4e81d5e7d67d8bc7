//! oxcd-core: the server behind every adapter, etcd's `EtcdServer`.
//!
//! One type, [`EtcdServer`], owns the server's state privately and offers one method per
//! etcd operation (range, put, delete, txn, compact, lease grant/revoke/renew/time-to-live/
//! list, member list, status, alarm, defragment), each validating its request with etcd's
//! rules and returning a typed response with its header filled. gRPC services and HTTP
//! endpoints (in `oxcd-server`) only translate; the linearizable-read barrier, and later
//! auth and metrics, live here once.
//!
//! Writes are typed proposals ([`proposal`]): a request goes through raft in an envelope
//! carrying a request header (user, auth revision), and its waiter gets the response of its
//! own type. Committed entries go through the applier ([`apply`]): a chain of layers
//! (alarm gate, then the backend), after which [`apply::ApplyObserver`]s (the lessor's
//! key attachments, the watch hub) see each write's events.
//!
//! [`Core::start`] assembles a member from a data dir ([`DataDir`]) and a [`CoreConfig`]:
//! backend, membership (stored in the backend), lessor, raft, applier thread, watch hub.

mod alarm;
pub mod apply;
pub mod apply_observer;
mod auth;
mod backend_observer;
mod cluster;
pub mod compactor;
mod concurrency;
mod config;
mod corrupt;
mod data_dir;
mod error;
pub mod import;
mod kv;
mod lease;
mod lessor_loop;
mod maintenance;
mod member_events;
mod membership;
mod peer;
mod probe;
pub mod proposal;
mod quota;
pub mod restore;
mod server;
mod slow_apply;
mod snapshot;
mod start;
pub mod validate;
pub mod version;

pub use alarm::AlarmSet;
pub use apply_observer::{set_apply_observer, ApplyOp, ALL_APPLY_OPS, APPLY_OPS};
pub use auth::Credentials;
pub use backend_observer::{set_backend_observer, BackendOp};
pub use compactor::AutoCompaction;
pub use config::{ClusterSpec, CoreConfig};
pub use data_dir::{DataDir, DataDirLock};
pub use error::ServerError;
pub use member_events::{learner_promotes, snapshot_applies_in_progress};
pub use membership::{cluster_id, member_id, Member, Membership};
pub use oxcd_auth::{AuthInfo, AuthStore};
pub use oxcd_raft::heartbeat_send_failures;
/// Marks the calling thread `SCHED_BATCH`, as the raft and applier threads are (the
/// server's async runtime marks its workers with it too).
pub use oxcd_raft::sched::prefer_batching_for_current_thread;
/// Sets the observer of every WAL fdatasync's duration (oxcd-raft's hook, for metrics).
pub use oxcd_raft::set_fsync_observer as set_wal_fsync_observer;
pub use oxcd_raft::wal_write_bytes;
/// Who leads, as raft pushes it ([`EtcdServer::leadership`]).
pub use oxcd_raft::Leadership;
pub use server::EtcdServer;
pub use slow_apply::slow_applies;
pub use snapshot::{SnapshotChunk, SNAPSHOT_CHUNK_BYTES};
pub use start::{Core, StartError};
