//! The Cluster service: members.

use oxcd_proto::etcdserverpb::cluster_client::ClusterClient;
use oxcd_proto::etcdserverpb::*;

use crate::client::{call, Client, Retry};
use crate::error::Result;

/// The Cluster service of a [`Client`].
#[derive(Debug, Clone)]
pub struct Cluster {
    client: Client,
}

impl Client {
    /// The Cluster service.
    pub fn cluster(&self) -> Cluster {
        Cluster {
            client: self.clone(),
        }
    }
}

impl Cluster {
    /// The members; `linearizable` asks the leader instead of the local member.
    pub async fn member_list(&self, linearizable: bool) -> Result<MemberListResponse> {
        let request = MemberListRequest { linearizable };
        call!(
            self.client,
            Retry::Safe,
            request,
            ClusterClient::member_list
        )
    }
    /// Adds a member with these peer URLs (as a learner if `learner`).
    pub async fn member_add(
        &self,
        peer_urls: Vec<String>,
        learner: bool,
    ) -> Result<MemberAddResponse> {
        let request = MemberAddRequest {
            peer_ur_ls: peer_urls,
            is_learner: learner,
        };
        call!(
            self.client,
            Retry::OnlyIfNeverSent,
            request,
            ClusterClient::member_add
        )
    }
    /// Removes member `id`.
    pub async fn member_remove(&self, id: u64) -> Result<MemberRemoveResponse> {
        let request = MemberRemoveRequest { id };
        call!(
            self.client,
            Retry::OnlyIfNeverSent,
            request,
            ClusterClient::member_remove
        )
    }
    /// Sets member `id`'s peer URLs.
    pub async fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<MemberUpdateResponse> {
        let request = MemberUpdateRequest {
            id,
            peer_ur_ls: peer_urls,
        };
        call!(
            self.client,
            Retry::OnlyIfNeverSent,
            request,
            ClusterClient::member_update
        )
    }
    /// Promotes learner `id` to a voting member.
    pub async fn member_promote(&self, id: u64) -> Result<MemberPromoteResponse> {
        let request = MemberPromoteRequest { id };
        call!(
            self.client,
            Retry::OnlyIfNeverSent,
            request,
            ClusterClient::member_promote
        )
    }
}
