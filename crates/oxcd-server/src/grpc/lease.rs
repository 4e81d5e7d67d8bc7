//! The etcd `Lease` service: LeaseGrant, LeaseRevoke, LeaseKeepAlive (a bidirectional
//! stream), LeaseTimeToLive and LeaseLeases.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use oxcd_proto::etcdserverpb::{
    lease_server::Lease, LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest,
    LeaseKeepAliveResponse, LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use oxcd_core::{EtcdServer, ServerError};

use super::{credentials, status};

/// Serves the Lease RPCs over the shared server state.
pub struct LeaseService {
    server: Arc<EtcdServer>,
}

impl LeaseService {
    /// A Lease service over `server`.
    pub fn new(server: Arc<EtcdServer>) -> LeaseService {
        LeaseService { server }
    }
}

/// The responses of one keep-alive stream.
pub type KeepAliveStream =
    Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let cred = credentials(&req);
        status(self.server.lease_grant(&cred, req.into_inner()).await)
    }

    async fn lease_revoke(
        &self,
        req: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let cred = credentials(&req);
        status(self.server.lease_revoke(&cred, req.into_inner()).await)
    }

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        // A request the stream could not deliver (etcd's receive failure); the gateway's
        // streams are not counted: etcd's gateway only forwards what it decoded.
        let inbound = req.into_inner().inspect(|r| {
            if let Err(status) = r {
                crate::metrics::grpc::stream_receive_failed(
                    crate::metrics::grpc::StreamApi::LeaseKeepAlive,
                    status,
                );
            }
        });
        Ok(Response::new(keep_alive(self.server.clone(), inbound)))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        status(self.server.lease_time_to_live(req.into_inner()).await)
    }

    async fn lease_leases(
        &self,
        _req: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        status(self.server.lease_leases())
    }
}

/// Runs one keep-alive stream over `inbound` (gRPC's request stream, or the gateway's
/// decoded JSON objects): each request is answered in order with `{header, ID, TTL}`.
pub fn keep_alive<S>(server: Arc<EtcdServer>, mut inbound: S) -> KeepAliveStream
where
    S: Stream<Item = Result<LeaseKeepAliveRequest, Status>> + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let req = match inbound.next().await {
                Some(Ok(r)) => r,
                // Client closed its side.
                None => return,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "lease keep-alive stream ended");
                    return;
                }
            };
            // etcd fills the header before renewing.
            let header = Some(server.header(server.current_revision()));
            let ttl = match server.lease_renew(req.id).await {
                Ok(ttl) => ttl,
                Err(ServerError::LeaseNotFound) => 0,
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            };
            let resp = LeaseKeepAliveResponse {
                header,
                id: req.id,
                ttl,
            };
            if tx.send(Ok(resp)).await.is_err() {
                return;
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}
