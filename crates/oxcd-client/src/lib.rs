//! oxcd-client: an async Rust client for oxcd and etcd v3 clusters.
//!
//! One [`Client`] holds the connections to a cluster: it fails over between endpoints,
//! retries the calls that are safe to send twice, authenticates (and re-authenticates) by
//! itself, and hands out the services: [`Kv`], [`Lease`], [`Watch`].
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

mod auth;
mod client;
mod cluster;
mod concurrency;
mod endpoints;
mod error;
mod kv;
mod lease;
mod maintenance;
mod namespace;
mod options;
mod registry;
mod task;
mod txn;
mod watch;

pub use auth::{Auth, Permission};
pub use client::Client;
pub use cluster::Cluster;
pub use concurrency::{Election, Mutex, Session, DEFAULT_SESSION_TTL};
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
pub use txn::{Compare, CompareOp, Txn, TxnOp};
pub use watch::{Watch, WatchOptions, WatchStream};

/// The wire types (etcd's protobuf messages), for responses and for callers that need a
/// field the builders do not cover.
pub use oxcd_proto as proto;
