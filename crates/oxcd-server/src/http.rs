//! HTTP endpoints on the client port: `/version`, and the health probes as etcd 3.5
//! serves them:
//!
//! * `/health` — JSON `{"health","reason"}`: 503 with `ALARM NOSPACE`/`ALARM CORRUPT` for an
//!   active alarm (unless `?exclude=NAME`), `RAFT NO LEADER` without a leader (unless
//!   `?serializable=true`; followed by `; peers unreachable: <name> (<id>) <urls>; ...`
//!   when links to peers are down), `RANGE ERROR:<why>` when the probe read fails;
//! * `/livez` (check `serializable_read`) and `/readyz` (checks `data_corruption`,
//!   `serializable_read`, `linearizable_read`) — Kubernetes-style text probes: `ok`, or
//!   with `?verbose` one `[+]check ok` / `[-]check failed: reason` line per check;
//!   `?exclude=check` skips one; `/livez/<check>` runs one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use oxcd_core::version::{ETCD_CLUSTER_VERSION, ETCD_SERVER_VERSION, OXCD_VERSION};
use oxcd_core::EtcdServer;
use oxcd_proto::etcdserverpb::AlarmType;

/// The HTTP routes, over `server`.
pub fn router(server: Arc<EtcdServer>) -> Router {
    Router::new()
        .route("/health", get(health).fallback(get_only))
        .route("/livez", get(livez).fallback(get_only))
        .route("/livez/{check}", get(livez_one).fallback(get_only))
        .route("/readyz", get(readyz).fallback(get_only))
        .route("/readyz/{check}", get(readyz_one).fallback(get_only))
        .route("/version", get(version))
        .with_state(server)
}

/// The query parameters the probes take (`exclude` may repeat).
#[derive(Debug, Default)]
struct ProbeQuery {
    exclude: Vec<String>,
    serializable: bool,
    verbose: bool,
}

impl ProbeQuery {
    fn parse(raw: Option<&str>) -> ProbeQuery {
        let mut q = ProbeQuery::default();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "exclude" if !value.is_empty() => q.exclude.push(value.to_string()),
                "serializable" => q.serializable = value == "true",
                "verbose" => q.verbose = true,
                _ => {}
            }
        }
        q
    }

    fn excludes(&self, name: &str) -> bool {
        self.exclude.iter().any(|e| e == name)
    }
}

/// Why `/health` is false, in etcd's words; `None` when healthy.
async fn health_failure(server: &EtcdServer, q: &ProbeQuery) -> Option<String> {
    if let Some(alarm) = server
        .active_alarms()
        .into_iter()
        .find(|a| !q.excludes(a.as_str_name()))
    {
        return Some(match alarm {
            AlarmType::Nospace => "ALARM NOSPACE".to_string(),
            AlarmType::Corrupt => "ALARM CORRUPT".to_string(),
            _ => "ALARM UNKNOWN".to_string(),
        });
    }
    if !q.serializable && !server.has_leader() {
        // etcd's reason, and (oxcd's addition) which peers cannot be reached.
        let down = server.unreachable_peers();
        if down.is_empty() {
            return Some("RAFT NO LEADER".to_string());
        }
        return Some(format!(
            "RAFT NO LEADER; peers unreachable: {}",
            down.join("; ")
        ));
    }
    match server.probe_read(q.serializable).await {
        Ok(()) => None,
        Err(e) => Some(format!("RANGE ERROR:{e}")),
    }
}

/// `/health` answers that were healthy, since start (`etcd_server_health_success`).
pub static HEALTH_SUCCESS: AtomicU64 = AtomicU64::new(0);
/// `/health` answers that were not (`etcd_server_health_failures`).
pub static HEALTH_FAILURES: AtomicU64 = AtomicU64::new(0);

async fn health(State(server): State<Arc<EtcdServer>>, RawQuery(raw): RawQuery) -> Response {
    let q = ProbeQuery::parse(raw.as_deref());
    let failure = health_failure(&server, &q).await;
    let counter = if failure.is_none() {
        &HEALTH_SUCCESS
    } else {
        &HEALTH_FAILURES
    };
    counter.fetch_add(1, Ordering::Relaxed);
    match failure {
        None => (
            StatusCode::OK,
            serde_json::json!({"health": "true", "reason": ""}).to_string(),
        )
            .into_response(),
        Some(reason) => {
            tracing::warn!(%reason, "/health error");
            let body = serde_json::json!({"health": "false", "reason": reason});
            plain_error(StatusCode::SERVICE_UNAVAILABLE, &body.to_string())
        }
    }
}

/// One named check of `/livez` or `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    DataCorruption,
    SerializableRead,
    LinearizableRead,
}

impl Check {
    fn name(self) -> &'static str {
        match self {
            Check::DataCorruption => "data_corruption",
            Check::SerializableRead => "serializable_read",
            Check::LinearizableRead => "linearizable_read",
        }
    }

    async fn run(self, server: &EtcdServer) -> Result<(), String> {
        match self {
            Check::DataCorruption => {
                if server.active_alarms().contains(&AlarmType::Corrupt) {
                    Err("alarm activated: CORRUPT".to_string())
                } else {
                    Ok(())
                }
            }
            Check::SerializableRead => server.probe_read(true).await.map_err(|e| e.to_string()),
            Check::LinearizableRead => server.probe_read(false).await.map_err(|e| e.to_string()),
        }
    }
}

const LIVEZ: &[Check] = &[Check::SerializableRead];
const READYZ: &[Check] = &[
    Check::DataCorruption,
    Check::SerializableRead,
    Check::LinearizableRead,
];

/// Runs `checks` (less the excluded) and answers as Kubernetes-style probes do.
async fn probe(server: &EtcdServer, kind: &str, checks: &[Check], q: &ProbeQuery) -> Response {
    let mut lines = String::new();
    let mut failed = false;
    for check in checks {
        if q.excludes(check.name()) {
            lines.push_str(&format!("[+]{} excluded: ok\n", check.name()));
            continue;
        }
        match check.run(server).await {
            Ok(()) => lines.push_str(&format!("[+]{} ok\n", check.name())),
            Err(reason) => {
                failed = true;
                lines.push_str(&format!("[-]{} failed: {reason}\n", check.name()));
            }
        }
    }
    if failed {
        tracing::warn!(probe = kind, "{}", lines.trim_end());
        return plain_error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("{lines}{kind} check failed"),
        );
    }
    let body = if q.verbose {
        format!("{lines}{kind} check passed\n")
    } else {
        "ok".to_string()
    };
    text(StatusCode::OK, body)
}

async fn livez(State(server): State<Arc<EtcdServer>>, RawQuery(raw): RawQuery) -> Response {
    probe(&server, "livez", LIVEZ, &ProbeQuery::parse(raw.as_deref())).await
}

async fn readyz(State(server): State<Arc<EtcdServer>>, RawQuery(raw): RawQuery) -> Response {
    probe(
        &server,
        "readyz",
        READYZ,
        &ProbeQuery::parse(raw.as_deref()),
    )
    .await
}

async fn livez_one(
    State(server): State<Arc<EtcdServer>>,
    Path(check): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    one(&server, "livez", LIVEZ, &check, raw.as_deref()).await
}

async fn readyz_one(
    State(server): State<Arc<EtcdServer>>,
    Path(check): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    one(&server, "readyz", READYZ, &check, raw.as_deref()).await
}

/// `/livez/<check>`: that one check.
async fn one(
    server: &EtcdServer,
    kind: &str,
    checks: &[Check],
    name: &str,
    raw: Option<&str>,
) -> Response {
    match checks.iter().find(|c| c.name() == name) {
        Some(check) => probe(server, kind, &[*check], &ProbeQuery::parse(raw)).await,
        None => text(StatusCode::NOT_FOUND, "404 page not found\n".to_string()),
    }
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// Go's `http.Error`: the text and a newline, as plain text.
fn plain_error(status: StatusCode, message: &str) -> Response {
    text(status, format!("{message}\n"))
}

async fn get_only() -> Response {
    let mut resp = plain_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    resp.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
    resp
}

async fn version() -> impl IntoResponse {
    Json(serde_json::json!({
        "etcdserver": ETCD_SERVER_VERSION,
        "etcdcluster": ETCD_CLUSTER_VERSION,
        "oxcd": OXCD_VERSION,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_query_reads_repeated_excludes_and_flags() {
        let q = ProbeQuery::parse(Some("exclude=NOSPACE&exclude=&serializable=true&verbose"));
        assert_eq!(q.exclude, vec!["NOSPACE".to_string()]);
        assert!(q.serializable && q.verbose);
        assert!(q.excludes("NOSPACE") && !q.excludes("CORRUPT"));
        let q = ProbeQuery::parse(None);
        assert!(q.exclude.is_empty() && !q.serializable && !q.verbose);
    }
}
