//! The receiving side: [`router`] serves the peer gRPC service and etcd's peer HTTP
//! endpoints (`GET /members`, `GET /version`) on the peer URLs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path as UrlPath, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use oxcd_proto::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use oxcd_raft::eraftpb::MessageType;
use oxcd_raft::wire;
use tokio::io::AsyncWriteExt;
use tonic::{Request, Status, Streaming};

use crate::proto::raft_peer_server::{RaftPeer, RaftPeerServer};
use crate::proto::{SnapshotChunk, SnapshotReceived};
use crate::stats::LinkStats;
use crate::transport::{probing_body, RemoveOnDrop, PROBING_PATH};
use crate::{identity, PeerError, PeerHandler, PeerStats};

/// Largest gRPC message accepted from a peer: a snapshot chunk (1 MiB of the backend; the
/// first also carries the `MsgSnapshot`, whose snapshot metadata may be large) or a
/// forwarded lease call. Raft's other messages travel on the raft stream, whose frames
/// have their own bound (`frame::MAX_PAYLOAD`).
const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// The peer port's routes: the raft stream's upgrade ([`crate::raft_stream`]), the
/// `oxcdpeer.RaftPeer` gRPC service and etcd's `GET /members`,
/// `GET /version`, `GET /raft/probing`, `POST /members/promote/<id>` and
/// `POST /members/hashkv`. Serve it on each `--listen-peer-urls` listener (plain HTTP/2
/// today; peer TLS will wrap the listener, the router stays as it is).
pub fn router(handler: Arc<dyn PeerHandler>) -> axum::Router {
    let grpc = RaftPeerServer::new(PeerService {
        stats: handler.peer_stats(),
        handler: handler.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES);
    tonic::service::Routes::new(grpc).into_axum_router().merge(
        axum::Router::new()
            .route("/members", get(members))
            .route("/version", get(version))
            .route(
                PROBING_PATH,
                get(|| async {
                    (
                        [(CONTENT_TYPE, "application/json")],
                        probing_body(std::time::SystemTime::now()),
                    )
                }),
            )
            .route("/members/promote/{id}", post(member_promote))
            .route("/members/hashkv", post(hash_kv))
            .route(crate::raft_stream::PATH, post(crate::raft_stream::accept))
            .with_state(handler),
    )
}

/// etcd's `GET /members`: the members sorted by id, as etcd's JSON, with the cluster id
/// in `X-Etcd-Cluster-ID`.
async fn members(State(handler): State<Arc<dyn PeerHandler>>) -> Response {
    let mut ms = handler.members();
    ms.sort_by_key(|m| m.id);
    // Serializing plain strings and numbers cannot fail.
    let mut body = serde_json::to_string(&ms).unwrap_or_else(|_| "[]".into());
    body.push('\n');
    (
        [
            ("X-Etcd-Cluster-ID", format!("{:x}", handler.cluster_id())),
            (CONTENT_TYPE.as_str(), "application/json".to_string()),
        ],
        body,
    )
        .into_response()
}

/// etcd's `POST /members/promote/<id>` (the id in decimal), which a follower sends to the
/// leader: 200 with the members as `GET /members` lists them, 404 for an unknown id (or one
/// that is not a number), 412 with etcd's text for a voter or a learner not in sync, 503
/// when this member cannot promote (not the leader).
async fn member_promote(
    State(handler): State<Arc<dyn PeerHandler>>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let cluster = ("X-Etcd-Cluster-ID", format!("{:x}", handler.cluster_id()));
    let Ok(num) = id.parse::<u64>() else {
        let text = format!("member {id} not found in cluster\n");
        return (StatusCode::NOT_FOUND, [cluster], text).into_response();
    };
    match handler.member_promote(num).await {
        Ok(mut ms) => {
            ms.sort_by_key(|m| m.id);
            let mut body = serde_json::to_string(&ms).unwrap_or_else(|_| "[]".into());
            body.push('\n');
            let json = (CONTENT_TYPE.as_str(), "application/json".to_string());
            (StatusCode::OK, [cluster, json], body).into_response()
        }
        Err(e) => {
            let status = match e {
                PeerError::MemberNotFound => StatusCode::NOT_FOUND,
                PeerError::MemberNotLearner | PeerError::LearnerNotReady => {
                    StatusCode::PRECONDITION_FAILED
                }
                PeerError::NotLeader | PeerError::Unreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            tracing::warn!(member_id = %format!("{num:x}"), error = %e, "failed to promote a member");
            (status, [cluster], format!("{e}\n")).into_response()
        }
    }
}

/// The body of etcd's `POST /members/hashkv` (its `HashKVRequest` in JSON).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct HashKvRequest {
    revision: i64,
}

/// etcd's `POST /members/hashkv`: this member's hash up to the revision asked for, as JSON;
/// 400 with the reason (etcd's texts for a compacted or future revision) otherwise.
async fn hash_kv(State(handler): State<Arc<dyn PeerHandler>>, body: axum::body::Bytes) -> Response {
    let req: HashKvRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("error unmarshalling request: {e}\n"),
            )
                .into_response()
        }
    };
    let answer = tokio::task::spawn_blocking(move || handler.hash_kv(req.revision)).await;
    match answer {
        Ok(Ok(h)) => {
            let body = serde_json::to_string(&h).unwrap_or_default();
            ([(CONTENT_TYPE, "application/json")], body).into_response()
        }
        Ok(Err(PeerError::InvalidRequest(text))) => {
            (StatusCode::BAD_REQUEST, format!("{text}\n")).into_response()
        }
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// etcd's `GET /version`.
async fn version(State(handler): State<Arc<dyn PeerHandler>>) -> Response {
    let body = serde_json::to_string(&handler.versions()).unwrap_or_default();
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}

/// The gRPC service.
struct PeerService {
    handler: Arc<dyn PeerHandler>,
    /// Where bytes and failures received are counted, by sender.
    stats: Option<Arc<PeerStats>>,
}

fn invalid(e: impl std::fmt::Display) -> Status {
    Status::from(PeerError::InvalidRequest(e.to_string()))
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn snapshot(
        &self,
        req: Request<Streaming<SnapshotChunk>>,
    ) -> Result<tonic::Response<SnapshotReceived>, Status> {
        let from = identity::check(req.metadata(), &*self.handler)?;
        let link = self.stats.as_ref().map(|s| s.link(from));
        let started = Instant::now();
        if let Some(link) = &link {
            link.snapshot_receive_inflight
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let result = receive_snapshot(
            &self.handler,
            from,
            req.into_inner(),
            link.as_deref(),
            self.stats.as_deref(),
        )
        .await;
        if let Some(link) = &link {
            link.snapshot_receive_inflight
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            if result.is_ok() {
                LinkStats::add(&link.snapshot_receive_success, 1);
                link.snapshot_receive_seconds
                    .observe(started.elapsed().as_secs_f64());
            } else {
                LinkStats::add(&link.received_failures, 1);
                LinkStats::add(&link.snapshot_receive_failures, 1);
            }
        }
        Ok(tonic::Response::new(SnapshotReceived {
            received_bytes: result?,
        }))
    }

    async fn lease_renew(
        &self,
        req: Request<LeaseKeepAliveRequest>,
    ) -> Result<tonic::Response<LeaseKeepAliveResponse>, Status> {
        identity::check(req.metadata(), &*self.handler)?;
        let id = req.into_inner().id;
        let ttl = self.handler.lease_renew(id).await?;
        Ok(tonic::Response::new(LeaseKeepAliveResponse {
            header: None,
            id,
            ttl,
        }))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<tonic::Response<LeaseTimeToLiveResponse>, Status> {
        identity::check(req.metadata(), &*self.handler)?;
        let r = req.into_inner();
        let resp = self.handler.lease_time_to_live(r.id, r.keys).await?;
        Ok(tonic::Response::new(resp))
    }
}

/// Refuses a message not from the member whose stream carries it, or not for this member
/// (a peer URL now served by another member: stepping it here would be wrong).
pub(crate) fn check_addressing(
    handler: &dyn PeerHandler,
    stream_from: u64,
    from: u64,
    to: u64,
) -> Result<(), Status> {
    let local = handler.member_id();
    if from != stream_from || to != local {
        return Err(invalid(format!(
            "a message from {from:x} to {to:x} on the stream from member {stream_from:x} \
             to member {local:x}"
        )));
    }
    Ok(())
}

/// Writes a snapshot stream to a file in the snapshot directory, fsyncs it and hands it
/// to the handler; returns the bytes received.
async fn receive_snapshot(
    handler: &Arc<dyn PeerHandler>,
    from: u64,
    mut stream: Streaming<SnapshotChunk>,
    link: Option<&LinkStats>,
    stats: Option<&PeerStats>,
) -> Result<u64, Status> {
    let started = Instant::now();
    let first = stream
        .message()
        .await?
        .ok_or_else(|| invalid("empty snapshot stream"))?;
    let msg = wire::decode_message(first.message.clone()).map_err(invalid)?;
    if msg.get_msg_type() != MessageType::MsgSnapshot {
        return Err(invalid(format!(
            "the snapshot stream of member {from:x} starts with a {:?}",
            msg.get_msg_type()
        )));
    }
    check_addressing(&**handler, from, msg.from, msg.to)?;
    let index = msg.get_snapshot().get_metadata().index;
    let total = first.total_bytes;
    let dir = handler.snapshot_dir();
    let internal = |what: &str, p: &PathBuf, e: std::io::Error| {
        Status::from(PeerError::Internal(format!("{what} {}: {e}", p.display())))
    };
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| internal("cannot create", &dir, e))?;
    let path = crate::files::receiving(&dir, index, from);
    let mut cleanup = RemoveOnDrop(Some(path.clone()));
    tracing::info!(peer = %format!("{from:x}"), index, total_bytes = total, "receiving a snapshot");
    // etcd's save starts with creating the file.
    let save_started = Instant::now();
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| internal("cannot create", &path, e))?;
    let mut received = 0u64;
    let mut chunk = Some(first);
    while let Some(c) = chunk.take() {
        file.write_all(&c.data)
            .await
            .map_err(|e| internal("cannot write", &path, e))?;
        received += c.data.len() as u64;
        if let Some(link) = link {
            LinkStats::add(&link.received_bytes, c.data.len() as u64);
        }
        if received > total {
            return Err(invalid(format!(
                "snapshot larger than the {total} bytes announced"
            )));
        }
        chunk = stream.message().await?;
    }
    if received != total {
        return Err(invalid(format!(
            "snapshot stream ended after {received} of {total} bytes"
        )));
    }
    let fsync_started = Instant::now();
    let synced = file.sync_all().await;
    // etcd observes the fsync whether or not it failed.
    if let Some(stats) = stats {
        stats
            .snap_db_fsync_seconds
            .observe(fsync_started.elapsed().as_secs_f64());
    }
    synced.map_err(|e| internal("cannot sync", &path, e))?;
    drop(file);
    let h = handler.clone();
    let file_path = path.clone();
    let (saved_after, handed) = tokio::task::spawn_blocking(move || {
        oxcd_fs::sync_parent(&file_path).map_err(|e| {
            PeerError::Internal(format!(
                "cannot sync the directory of {}: {e}",
                file_path.display()
            ))
        })?;
        let saved_after = save_started.elapsed();
        Ok::<_, PeerError>((saved_after, h.receive_snapshot(msg, &file_path)))
    })
    .await
    .map_err(|e| Status::internal(format!("snapshot handler panicked: {e}")))??;
    // Saved: the file and its directory entry are durable (etcd: renamed into place).
    if let Some(stats) = stats {
        stats
            .snap_db_save_seconds
            .observe(saved_after.as_secs_f64());
    }
    handed?;
    // The handler owns the file now.
    cleanup.0 = None;
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    tracing::info!(
        peer = %format!("{from:x}"),
        index,
        bytes = received,
        rate_mib_per_s = format!("{:.1}", received as f64 / secs / (1 << 20) as f64),
        "received a snapshot"
    );
    Ok(received)
}
