//! The etcd `Cluster` service (membership changes arrive with the cluster issue).

use std::sync::Arc;

use oxcd_proto::etcdserverpb::{
    cluster_server::Cluster, Member, MemberListRequest, MemberListResponse,
};
use tonic::{Request, Response, Status};

use crate::server::EtcdServer;

/// Serves MemberList; the other RPCs answer `Unimplemented` for now.
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
        if req.into_inner().linearizable {
            self.server.linearizable_barrier().await?;
        }
        let members = self
            .server
            .membership
            .read()
            .members
            .values()
            .map(|m| Member {
                id: m.id,
                name: m.name.clone(),
                peer_ur_ls: m.peer_urls.clone(),
                client_ur_ls: m.client_urls.clone(),
                is_learner: m.is_learner,
            })
            .collect();
        Ok(Response::new(MemberListResponse {
            // etcd's cluster service sends no revision in its headers.
            header: Some(self.server.header(0)),
            members,
        }))
    }
}
