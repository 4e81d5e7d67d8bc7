//! Plain HTTP endpoints on the client port, beside gRPC: `/health` and `/version`, with
//! etcd's paths and JSON bodies.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use oxcd_proto::etcdserverpb::RangeRequest;

use crate::server::EtcdServer;
use crate::version::{ETCD_CLUSTER_VERSION, ETCD_SERVER_VERSION};

/// The HTTP routes.
pub fn router(server: Arc<EtcdServer>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .with_state(server)
}

/// etcd's `/health`: healthy when there is a leader and a linearizable read succeeds.
async fn health(State(server): State<Arc<EtcdServer>>) -> impl IntoResponse {
    let ok = server.raft.status().leader_id != 0
        && tokio::time::timeout(Duration::from_secs(1), async {
            server.linearizable_barrier().await?;
            server
                .store
                .range(&RangeRequest {
                    key: b"health".to_vec(),
                    ..Default::default()
                })
                .map_err(crate::error::ServerError::from)
        })
        .await
        .map(|r| r.is_ok())
        .unwrap_or(false);
    if ok {
        (StatusCode::OK, Json(serde_json::json!({"health": "true"})))
    } else {
        tracing::warn!("/health error: no leader or read failed");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"health": "false"})),
        )
    }
}

/// etcd's `/version`.
async fn version() -> impl IntoResponse {
    Json(serde_json::json!({
        "etcdserver": ETCD_SERVER_VERSION,
        "etcdcluster": ETCD_CLUSTER_VERSION,
        "oxcd": crate::version::OXCD_VERSION,
    }))
}
