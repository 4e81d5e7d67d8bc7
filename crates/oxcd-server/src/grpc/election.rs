//! The v3election `Election` service: a thin adapter over the server's election methods.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use oxcd_core::EtcdServer;
use oxcd_proto::v3electionpb::{
    election_server::Election, CampaignRequest, CampaignResponse, LeaderRequest, LeaderResponse,
    ProclaimRequest, ProclaimResponse, ResignRequest, ResignResponse,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{credentials, status};

/// Serves Campaign, Proclaim, Leader, Observe and Resign.
pub struct ElectionService {
    server: Arc<EtcdServer>,
}

impl ElectionService {
    /// An Election service over `server`.
    pub fn new(server: Arc<EtcdServer>) -> ElectionService {
        ElectionService { server }
    }
}

/// The responses of one Observe call.
pub type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

/// Observe as a stream of gRPC results.
pub fn observe(
    server: &Arc<EtcdServer>,
    cred: &oxcd_core::Credentials,
    req: LeaderRequest,
) -> ObserveStream {
    let rx = server.observe(cred, req);
    Box::pin(ReceiverStream::new(rx).map(|r| r.map_err(Status::from)))
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        req: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let cred = credentials(&req);
        status(self.server.campaign(&cred, req.into_inner()).await)
    }

    async fn proclaim(
        &self,
        req: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let cred = credentials(&req);
        status(self.server.proclaim(&cred, req.into_inner()).await)
    }

    async fn leader(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let cred = credentials(&req);
        status(self.server.election_leader(&cred, req.into_inner()).await)
    }

    async fn observe(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<ObserveStream>, Status> {
        let cred = credentials(&req);
        Ok(Response::new(observe(
            &self.server,
            &cred,
            req.into_inner(),
        )))
    }

    async fn resign(
        &self,
        req: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let cred = credentials(&req);
        status(self.server.resign(&cred, req.into_inner()).await)
    }
}
