//! gRPC services, one module each: thin adapters over [`oxcd_core::EtcdServer`], which
//! validates, runs the operation and fills the header.

pub mod auth;
pub mod cluster;
pub mod direct;
pub mod election;
pub mod health;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod watch;

use oxcd_core::{Credentials, ServerError};
use tonic::{Response, Status};

use crate::net::ClientAddr;
use crate::tls_identity::ClientCertCommonName;

/// Who a gRPC call says it comes from: etcd's `token` metadata (or `authorization`, which
/// etcd also reads), the common name of a verified client certificate, the client address.
pub fn credentials<T>(req: &tonic::Request<T>) -> Credentials {
    let md = req.metadata();
    let token = md
        .get("token")
        .or_else(|| md.get("authorization"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let ext = req.extensions();
    Credentials::new(
        token,
        ext.get::<ClientCertCommonName>().map(|c| c.0.clone()),
        ext.get::<ClientAddr>().map(|a| a.0.ip()),
    )
}

/// Whether a call carries clientv3's `WithRequireLeader` metadata (`hasleader: true`);
/// `headers` are the call's HTTP/2 headers, which its gRPC metadata is a view of.
pub(crate) fn requires_leader(headers: &axum::http::HeaderMap) -> bool {
    headers.get("hasleader").is_some_and(|v| v == "true")
}

/// etcd's require-leader check for every call: a call made `WithRequireLeader` fails at
/// once with "no leader" while this member knows none, instead of waiting for a timeout.
pub fn require_leader(
    server: std::sync::Arc<oxcd_core::EtcdServer>,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, Status> + Clone {
    move |req| {
        if requires_leader(req.metadata().as_ref()) && !server.has_leader() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_metadata_and_extensions() {
        let mut req = tonic::Request::new(());
        assert_eq!(credentials(&req), Credentials::default());
        req.metadata_mut().insert("token", "abc.5".parse().unwrap());
        req.extensions_mut()
            .insert(ClientCertCommonName("alice".into()));
        req.extensions_mut()
            .insert(ClientAddr("10.1.2.3:4000".parse().unwrap()));
        let c = credentials(&req);
        assert_eq!(c.token.as_deref(), Some("abc.5"));
        assert_eq!(c.cert_common_name.as_deref(), Some("alice"));
        assert_eq!(c.client, Some("10.1.2.3".parse().unwrap()));
        let mut req = tonic::Request::new(());
        req.metadata_mut()
            .insert("authorization", "tok".parse().unwrap());
        assert_eq!(credentials(&req).token.as_deref(), Some("tok"));
    }
}
