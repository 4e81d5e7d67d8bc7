//! The etcd `Lease` service: LeaseGrant, LeaseRevoke, LeaseKeepAlive (a bidirectional
//! stream), LeaseTimeToLive and LeaseLeases.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use oxcd_proto::etcdserverpb::{
    lease_server::Lease, LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest,
    LeaseKeepAliveResponse, LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use oxcd_proto::oxcdinternal::raft_request::Op;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::ServerError;
use crate::lease::MAX_LEASE_TTL;
use crate::server::{ApplyResponse, EtcdServer};

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

fn unexpected(resp: ApplyResponse) -> Status {
    ServerError::Internal(format!("unexpected apply result {resp:?}")).into()
}

/// Responses of one keep-alive stream.
type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let mut req = req.into_inner();
        // The applier checks this too (as etcd's lessor does); refusing early saves an entry.
        if req.ttl > MAX_LEASE_TTL {
            return Err(ServerError::LeaseTtlTooLarge.into());
        }
        // No id given: pick one before proposing, so every member applies the same id.
        while req.id == 0 {
            req.id = (self.server.next_id() & (i64::MAX as u64)) as i64;
        }
        match self.server.propose(Op::LeaseGrant(req)).await? {
            ApplyResponse::LeaseGrant(mut resp) => {
                self.server.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn lease_revoke(
        &self,
        req: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        match self
            .server
            .propose(Op::LeaseRevoke(req.into_inner()))
            .await?
        {
            ApplyResponse::LeaseRevoke(mut resp) => {
                self.server.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    /// Answers every request on the stream, in order, with the lease's TTL after renewal —
    /// TTL 0 for an unknown or expired lease (the stream stays open, as in etcd). Any other
    /// failure (no leader, timeout) ends the stream with that error.
    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        let mut inbound = req.into_inner();
        let server = self.server.clone();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let req = match inbound.message().await {
                    Ok(Some(r)) => r,
                    // Client closed its side.
                    Ok(None) => return,
                    Err(e) => {
                        tracing::debug!(error = %e, "lease keep-alive stream ended");
                        return;
                    }
                };
                // etcd fills the header before renewing.
                let mut header = None;
                server.fill_header(&mut header);
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
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let req = req.into_inner();
        let mut resp = match self.server.lease_time_to_live(req.id, req.keys).await? {
            Some(st) => LeaseTimeToLiveResponse {
                header: None,
                id: req.id,
                ttl: st.remaining,
                granted_ttl: st.granted,
                keys: st.keys,
            },
            // etcd answers an unknown lease with TTL -1, not an error.
            None => LeaseTimeToLiveResponse {
                header: None,
                id: req.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
        };
        self.server.fill_header(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        _req: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let mut resp = LeaseLeasesResponse {
            header: None,
            leases: self
                .server
                .lessor
                .leases()
                .into_iter()
                .map(|id| LeaseStatus { id })
                .collect(),
        };
        self.server.fill_header(&mut resp.header);
        Ok(Response::new(resp))
    }
}
