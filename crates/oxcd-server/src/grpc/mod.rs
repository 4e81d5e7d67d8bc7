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

/// Whether a call carries clientv3's `WithRequireLeader` metadata (`hasleader: true`).
pub(crate) fn requires_leader(md: &tonic::metadata::MetadataMap) -> bool {
    md.get("hasleader").is_some_and(|v| v == "true")
}

/// etcd's require-leader check for every call: a call made `WithRequireLeader` fails at
/// once with "no leader" while this member knows none, instead of waiting for a timeout.
pub fn require_leader(
    server: std::sync::Arc<oxcd_core::EtcdServer>,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, Status> + Clone {
    move |req| {
        if requires_leader(req.metadata()) && !server.has_leader() {
            return Err(ServerError::NoLeader.into());
        }
        Ok(req)
    }
}

/// Completes once this member has had no leader for `grace` in a row (or raft stopped).
pub(crate) async fn leader_lost(
    mut leadership: tokio::sync::watch::Receiver<oxcd_core::Leadership>,
    grace: std::time::Duration,
) {
    loop {
        if leadership.wait_for(|l| !l.has_leader()).await.is_err() {
            return;
        }
        match tokio::time::timeout(grace, leadership.wait_for(|l| l.has_leader())).await {
            Ok(Ok(_)) => continue,
            Ok(Err(_)) | Err(_) => return,
        }
    }
}

/// A core result as a gRPC answer (errors with etcd's code and text).
fn status<T>(result: Result<T, ServerError>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

/// Stands in for services not built yet: every RPC answers `Unimplemented` (the generated
/// traits' default methods).
pub struct Unimplemented;

impl Auth for Unimplemented {}
