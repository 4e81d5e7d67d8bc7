//! HTTP endpoints on the client port: `/health` and `/version`, as etcd serves them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use oxcd_core::version::{ETCD_CLUSTER_VERSION, ETCD_SERVER_VERSION, OXCD_VERSION};
use oxcd_core::EtcdServer;

/// The HTTP routes, over `server`.
pub fn router(server: Arc<EtcdServer>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .with_state(server)
}

async fn health(State(server): State<Arc<EtcdServer>>) -> impl IntoResponse {
    match server.health().await {
        Ok(()) => (StatusCode::OK, Json(serde_json::json!({"health": "true"}))),
        Err(reason) => {
            tracing::warn!(%reason, "/health error");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"health": "false"})),
            )
        }
    }
}

async fn version() -> impl IntoResponse {
    Json(serde_json::json!({
        "etcdserver": ETCD_SERVER_VERSION,
        "etcdcluster": ETCD_CLUSTER_VERSION,
        "oxcd": OXCD_VERSION,
    }))
}
