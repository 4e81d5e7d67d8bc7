//! oxcd-client's one job: let async Rust programs use an etcd v3 cluster (oxcd or etcd) —
//! keys, leases, watches, locks, and above all registering and finding services — without
//! handling connections, retries, tokens or reconnects themselves.
//!
//! Registering a service is four lines; the instance stays listed while the process lives
//! (its lease is kept alive, and re-created if lost) and leaves when `registration` is dropped:
//!
//! ```no_run
//! # async fn demo() -> oxcd_client::Result<()> {
//! use oxcd_client::{Client, ServiceInstance};
//! let client = Client::connect(["127.0.0.1:2379"]).await?;
//! let registration = client.register(ServiceInstance::new("greeter", "10.0.0.7:50051")).await?;
//! # drop(registration); Ok(())
//! # }
//! ```
//!
//! Finding it, from Rust ([`Client::discover`], or [`Client::balanced_channel`] for a tonic
//! channel over every instance) or from Go (etcd's `naming/endpoints` resolver, or go-zero's
//! discovery with [`KeyLayout::GoZero`]):
//!
//! ```no_run
//! # async fn demo(client: oxcd_client::Client) -> oxcd_client::Result<()> {
//! let greeters = client.discover("greeter").await?;
//! for instance in greeters.instances() {
//!     println!("{} at {}", instance.key, instance.address);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The rest of the API follows etcd's Go client:
//!
//! * [`Client`]: connects to several endpoints and fails over between them, retries the
//!   calls that are safe to send twice (reads, keep-alives; a write only when it surely
//!   never left), applies per-call timeouts ([`Client::with_timeout`]) and etcd's
//!   `hasleader` requirement ([`Client::with_require_leader`]), logs in with a user and
//!   password and logs in again when the token expires or the auth store changes
//!   ([`ConnectOptions`]), and can follow the member list ([`Client::sync_endpoints`]).
//! * [`Kv`] with [`GetOptions`], [`PutOptions`], [`DeleteOptions`] and [`Txn`];
//!   [`Lease`] with a reconnecting keep-alive ([`LeaseKeeper`]); [`Watch`], whose
//!   [`WatchStream`] resumes after a reconnect without losing or repeating events;
//!   [`Cluster`], [`Maintenance`], [`Auth`].
//! * [`Session`], [`Mutex`] and [`Election`] as Go's `concurrency` package (same keys);
//!   [`Namespace`], a key-prefixed view.
//! * Errors keep etcd's kinds ([`ErrorKind`]), decoded from the gRPC code and text.
//!
//! ```no_run
//! # async fn demo() -> oxcd_client::Result<()> {
//! use oxcd_client::{Client, GetOptions, PutOptions};
//! let client = Client::connect(["127.0.0.1:2379"]).await?;
//! client.kv().put("greeting", "hello", PutOptions::new()).await?;
//! let answer = client.kv().get("greeting", GetOptions::new()).await?;
//! assert_eq!(answer.kvs[0].value, b"hello");
//! # Ok(())
//! # }
//! ```
//!
//! TLS: with the cargo feature `tls`, `https://` endpoints are secured with rustls
//! (`ConnectOptions::with_tls` sets the CA, a client certificate, the server name, or
//! skips verification); without it they are refused with [`Error::InvalidArgument`].
//! [`danger::AcceptAnyServerCert`] (feature `danger`, in `tls`) is the rustls verifier behind
//! skipping verification, public for oxcdctl and the server.

/// The builders shared by every option type that names a key space (get, delete, watch):
/// one place for how `with_prefix`, `with_from_key` and `with_range` set its `range`.
macro_rules! key_range_builders {
    () => {
        /// Every key with the given key as prefix.
        pub fn with_prefix(mut self) -> Self {
            self.range = KeyRange::Prefix;
            self
        }
        /// The key and every key after it.
        pub fn with_from_key(mut self) -> Self {
            self.range = KeyRange::FromKey;
            self
        }
        /// Keys from the given key up to, not including, `end`.
        pub fn with_range(mut self, end: impl Into<Vec<u8>>) -> Self {
            self.range = KeyRange::End(end.into());
            self
        }
    };
}

mod auth;
mod client;
mod cluster;
mod concurrency;
#[cfg(feature = "danger")]
pub mod danger;
mod endpoints;
mod error;
mod kv;
mod lease;
mod maintenance;
mod namespace;
mod options;
mod registry;
mod task;
#[cfg(feature = "tls")]
mod tls;
mod txn;
mod watch;

pub use auth::{Auth, Permission};
pub use client::Client;
pub use cluster::Cluster;
pub use concurrency::{Election, Mutex, Observation, Session, DEFAULT_SESSION_TTL};
pub use error::{Error, ErrorKind, Result};
pub use kv::{
    prefix_end, DeleteOptions, GetOptions, KeyRange, Kv, PutOptions, SortBy, SortOrderBy,
};
pub use lease::{KeeperState, Lease, LeaseKeeper};
pub use maintenance::{Maintenance, SnapshotStream};
pub use namespace::Namespace;
pub use options::{ConnectOptions, Credentials};
pub use registry::{
    balance, Discovery, Instance, KeyLayout, Registration, RegistrationState, ServiceChange,
    ServiceInstance, DEFAULT_REGISTRATION_TTL,
};
#[cfg(feature = "tls")]
pub use tls::TlsOptions;
pub use txn::{Compare, CompareOp, Txn, TxnOp};
pub use watch::{Watch, WatchOptions, WatchStream};

/// The wire types (etcd's protobuf messages), for responses and for callers that need a
/// field the builders do not cover.
pub use oxcd_proto as proto;
