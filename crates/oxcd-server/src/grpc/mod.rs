//! gRPC services, one module each: thin adapters over [`oxcd_core::EtcdServer`], which
//! validates, runs the operation and fills the header.

pub mod cluster;
pub mod election;
pub mod health;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod watch;

use oxcd_core::ServerError;
use oxcd_proto::etcdserverpb::auth_server::Auth;
use tonic::{Response, Status};

/// A core result as a gRPC answer (errors with etcd's code and text).
fn status<T>(result: Result<T, ServerError>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

/// Stands in for services not built yet: every RPC answers `Unimplemented` (the generated
/// traits' default methods).
pub struct Unimplemented;

impl Auth for Unimplemented {}
