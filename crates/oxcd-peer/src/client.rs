//! [`PeerClient`]: requests to a peer other than raft messages (a follower forwarding
//! lease keep-alives and TimeToLive to the leader, as etcd does over the peer port).

use std::collections::HashMap;
use std::sync::Arc;

use oxcd_proto::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use parking_lot::Mutex;
use tonic::transport::Channel;

use crate::proto::raft_peer_client::RaftPeerClient;
use crate::{identity, DialOptions, PeerError, PeerHandler};

/// Sends requests to peers, reusing one connection per peer URL. Cheap to clone.
#[derive(Clone)]
pub struct PeerClient {
    handler: Arc<dyn PeerHandler>,
    dial: DialOptions,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient")
            .field("connections", &self.channels.lock().len())
            .finish()
    }
}

impl PeerClient {
    /// A client speaking for the member `handler` serves.
    pub fn new(handler: Arc<dyn PeerHandler>, dial: DialOptions) -> Self {
        Self {
            handler,
            dial,
            channels: Arc::default(),
        }
    }

    /// Forwards a keep-alive of lease `id` to the leader at `leader_urls`; returns the TTL
    /// it granted ([`PeerError::LeaseNotFound`], [`PeerError::NotLeader`] from the leader).
    pub async fn lease_renew(&self, leader_urls: &[String], id: i64) -> Result<i64, PeerError> {
        let (url, mut client) = self.client(leader_urls).await?;
        let resp = client
            .lease_renew(self.request(LeaseKeepAliveRequest { id }))
            .await;
        Ok(self.answer(&url, resp)?.ttl)
    }

    /// Forwards a TimeToLive request for lease `id` to the leader at `leader_urls`.
    pub async fn lease_time_to_live(
        &self,
        leader_urls: &[String],
        id: i64,
        keys: bool,
    ) -> Result<LeaseTimeToLiveResponse, PeerError> {
        let (url, mut client) = self.client(leader_urls).await?;
        let resp = client
            .lease_time_to_live(self.request(LeaseTimeToLiveRequest { id, keys }))
            .await;
        self.answer(&url, resp)
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(self.dial.request_timeout);
        identity::stamp(
            req.metadata_mut(),
            self.handler.cluster_id(),
            self.handler.member_id(),
        );
        req
    }

    /// The response, forgetting the connection if it failed.
    fn answer<T>(
        &self,
        url: &str,
        resp: Result<tonic::Response<T>, tonic::Status>,
    ) -> Result<T, PeerError> {
        resp.map(tonic::Response::into_inner).map_err(|s| {
            let e = PeerError::from(s);
            if matches!(e, PeerError::Unreachable(_)) {
                self.channels.lock().remove(url);
            }
            e
        })
    }

    /// A client on a connection to the first of `urls` that answers.
    async fn client(
        &self,
        urls: &[String],
    ) -> Result<(String, RaftPeerClient<Channel>), PeerError> {
        let cached = urls.iter().find_map(|u| {
            let channels = self.channels.lock();
            channels.get(u).map(|c| (u.clone(), c.clone()))
        });
        if let Some((url, ch)) = cached {
            return Ok((url, RaftPeerClient::new(ch)));
        }
        let mut last = PeerError::Unreachable("no leader URL known".into());
        for url in urls {
            match self.dial.connect(std::slice::from_ref(url)).await {
                Ok(ch) => {
                    self.channels.lock().insert(url.clone(), ch.clone());
                    return Ok((url.clone(), RaftPeerClient::new(ch)));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}
