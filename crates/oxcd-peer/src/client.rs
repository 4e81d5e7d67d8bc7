//! [`PeerClient`]: requests to a peer other than raft messages: a follower forwarding
//! lease keep-alives, TimeToLive and MemberPromote to the leader (as etcd does over the peer
//! port), and a joining member reading the cluster from a peer's `GET /members` and `GET /version`.

use std::collections::HashMap;
use std::sync::Arc;

use oxcd_proto::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use parking_lot::Mutex;
use tonic::transport::Channel;

use crate::proto::raft_peer_client::RaftPeerClient;
use crate::{identity, DialOptions, MemberInfo, PeerError, PeerHandler, PeerHashKv, Versions};

/// Largest `/members` or `/version` answer read.
const MAX_HTTP_BODY: usize = 16 << 20;

/// A cluster as a peer's `GET /members` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCluster {
    /// The cluster id (its `X-Etcd-Cluster-ID` header).
    pub cluster_id: u64,
    /// The members, as listed.
    pub members: Vec<MemberInfo>,
}

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

    /// Reads the cluster from the first of `peer_urls` that answers `GET /members` (etcd's
    /// `GetClusterFromRemotePeers`, for a member joining with `--initial-cluster-state
    /// existing`).
    pub async fn members(&self, peer_urls: &[String]) -> Result<RemoteCluster, PeerError> {
        let mut last = PeerError::Unreachable("no peer URL given".into());
        for url in peer_urls {
            match self.get_members(url).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(%url, error = %e, "cannot read the members from a peer");
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn get_members(&self, url: &str) -> Result<RemoteCluster, PeerError> {
        let (headers, body) = self.http_get(url, "/members").await?;
        let cluster_id = headers
            .get("x-etcd-cluster-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| u64::from_str_radix(v, 16).ok())
            .ok_or_else(|| {
                PeerError::InvalidRequest(format!("{url}/members: no valid X-Etcd-Cluster-ID"))
            })?;
        let members = serde_json::from_slice(&body)
            .map_err(|e| PeerError::InvalidRequest(format!("{url}/members: {e}")))?;
        Ok(RemoteCluster {
            cluster_id,
            members,
        })
    }

    /// A peer's `GET /version`.
    pub async fn versions(&self, peer_url: &str) -> Result<Versions, PeerError> {
        let (_, body) = self.http_get(peer_url, "/version").await?;
        serde_json::from_slice(&body)
            .map_err(|e| PeerError::InvalidRequest(format!("{peer_url}/version: {e}")))
    }

    /// Forwards a MemberPromote of learner `id` to the leader at `leader_urls` (etcd's
    /// `POST /members/promote/<id>`); returns the members afterwards. etcd's answers:
    /// 404 [`PeerError::MemberNotFound`], 412 [`PeerError::MemberNotLearner`] or
    /// [`PeerError::LearnerNotReady`] by its text; anything else unexpected is
    /// [`PeerError::Unreachable`] (the caller retries until its deadline, as etcd does).
    pub async fn member_promote(
        &self,
        leader_urls: &[String],
        id: u64,
    ) -> Result<Vec<MemberInfo>, PeerError> {
        let mut last = PeerError::Unreachable("no leader URL known".into());
        for url in leader_urls {
            let path = format!("/members/promote/{id}");
            let post = self.http_call(hyper::Method::POST, url, &path, String::new());
            let (status, _, body) = match post.await {
                Ok(r) => r,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let text = String::from_utf8_lossy(&body);
            return match status.as_u16() {
                200 => serde_json::from_slice(&body)
                    .map_err(|e| PeerError::InvalidRequest(format!("{url}{path}: {e}"))),
                404 => Err(PeerError::MemberNotFound),
                412 if text.contains(&PeerError::LearnerNotReady.to_string()) => {
                    Err(PeerError::LearnerNotReady)
                }
                412 if text.contains(&PeerError::MemberNotLearner.to_string()) => {
                    Err(PeerError::MemberNotLearner)
                }
                _ => Err(PeerError::Unreachable(format!(
                    "{url}{path}: HTTP {status}: {}",
                    text.trim_end()
                ))),
            };
        }
        Err(last)
    }

    /// An HTTP/1.1 GET of `path` on the peer at `url`: the headers and body of a 2xx answer.
    async fn http_get(
        &self,
        url: &str,
        path: &str,
    ) -> Result<(hyper::HeaderMap, bytes::Bytes), PeerError> {
        let (status, headers, body) = self
            .http_call(hyper::Method::GET, url, path, String::new())
            .await?;
        if !status.is_success() {
            return Err(PeerError::Internal(format!("{url}{path}: HTTP {status}")));
        }
        Ok((headers, body))
    }

    /// A peer's hash of every revision up to `revision` (etcd's `POST /members/hashkv`),
    /// from the first of its `peer_urls` that answers. A refusal (a compacted or future
    /// revision) is [`PeerError::InvalidRequest`] with the peer's text.
    pub async fn hash_kv(
        &self,
        peer_urls: &[String],
        revision: i64,
    ) -> Result<PeerHashKv, PeerError> {
        let mut last = PeerError::Unreachable("the member has no peer URL".into());
        let body = format!("{{\"revision\":{revision}}}");
        for url in peer_urls {
            let post = self.http_call(hyper::Method::POST, url, "/members/hashkv", body.clone());
            let (status, _, answer) = match post.await {
                Ok(r) => r,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            if status.is_success() {
                return serde_json::from_slice(&answer)
                    .map_err(|e| PeerError::InvalidRequest(format!("{url}/members/hashkv: {e}")));
            }
            let text = String::from_utf8_lossy(&answer).trim_end().to_string();
            last = if status == hyper::StatusCode::BAD_REQUEST {
                PeerError::InvalidRequest(text)
            } else {
                PeerError::Internal(format!("{url}/members/hashkv: HTTP {status}: {text}"))
            };
        }
        Err(last)
    }

    /// An HTTP/1.1 request to `path` on the peer at `url` with `body` (over TLS where the
    /// peer URL is `https`): the status, headers and body of its answer.
    async fn http_call(
        &self,
        method: hyper::Method,
        url: &str,
        path: &str,
        body: String,
    ) -> Result<(hyper::StatusCode, hyper::HeaderMap, bytes::Bytes), PeerError> {
        let unreachable = |e: &dyn std::fmt::Display| PeerError::Unreachable(format!("{url}: {e}"));
        let call = async {
            let (io, authority) = self.dial.connect_io(url).await?;
            let req = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header(hyper::header::HOST, authority)
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from(body))
                .map_err(|e| PeerError::Config(e.to_string()))?;
            let (parts, body) = io.send_http1(url, req).await?.into_parts();
            let body = axum::body::to_bytes(axum::body::Body::new(body), MAX_HTTP_BODY)
                .await
                .map_err(|e| unreachable(&e))?;
            Ok((parts.status, parts.headers, body))
        };
        tokio::time::timeout(self.dial.request_timeout, call)
            .await
            .map_err(|_| unreachable(&"timed out"))?
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
