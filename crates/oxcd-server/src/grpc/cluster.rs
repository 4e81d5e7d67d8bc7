//! The etcd `Cluster` service: a thin adapter over [`EtcdServer`].

use std::sync::Arc;

use oxcd_core::EtcdServer;
use oxcd_proto::etcdserverpb::{cluster_server::Cluster, MemberListRequest, MemberListResponse};
use tonic::{Request, Response, Status};

use super::status;

/// Serves MemberList (member changes arrive with multi-member clusters).
pub struct ClusterService {
    server: Arc<EtcdServer>,
}

impl ClusterService {
    /// A Cluster service over `server`.
    pub fn new(server: Arc<EtcdServer>) -> ClusterService {
        ClusterService { server }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(
        &self,
        req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        status(self.server.member_list(req.into_inner()).await)
    }
}
