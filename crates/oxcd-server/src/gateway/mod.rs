//! etcd's HTTP/JSON gateway: every route of etcd 3.4/3.5's grpc-gateway (`/v3/...`, and
//! `/v3beta/...` for the same), each a POST whose body is the request message in JSON
//! ([`json`]) and whose answer is the response message, or etcd's error body
//! `{"error","message","code"}` with grpc-gateway's HTTP status for the gRPC code.
//! `/v3/watch`, `/v3/lease/keepalive`, `/v3/election/observe`, `/v3/maintenance/snapshot`
//! answer with a stream of
//! `{"result":...}` lines ([`stream`]).
//!
//! Each route calls the same [`EtcdServer`] method as its gRPC adapter; nothing here
//! touches the store.

pub mod json;
pub mod stream;

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post, MethodRouter};
use axum::Router;
use oxcd_core::{EtcdServer, ServerError};
use oxcd_proto::etcdserverpb as pb;
use oxcd_proto::v3electionpb::{CampaignRequest, LeaderRequest, ProclaimRequest, ResignRequest};
use oxcd_proto::v3lockpb::{LockRequest, UnlockRequest};
use tonic::{Code, Status};

use crate::grpc::watch::WatchService;
use json::Named;

/// What the gateway's routes share.
#[derive(Clone)]
pub struct Gateway {
    server: Arc<EtcdServer>,
    watch: Arc<WatchService>,
    /// Request bodies above this many bytes are refused, as gRPC refuses such messages.
    max_body_bytes: usize,
}

impl Gateway {
    /// A gateway over `server`, its watch streams run by `watch`, bodies up to
    /// `max_body_bytes`.
    pub fn new(server: Arc<EtcdServer>, watch: WatchService, max_body_bytes: usize) -> Gateway {
        Gateway {
            server,
            watch: Arc::new(watch),
            max_body_bytes,
        }
    }
}

/// The routes, under `/v3/` and `/v3beta/`.
pub fn router(gateway: Gateway) -> Router {
    let mut router = Router::new();
    for prefix in ["/v3", "/v3beta"] {
        for (path, route) in routes() {
            router = router.route(&format!("{prefix}{path}"), route);
        }
        router = router.route(&format!("{prefix}/{{*rest}}"), any(not_found));
    }
    router.with_state(gateway)
}

type Route = MethodRouter<Gateway>;

fn routes() -> Vec<(&'static str, Route)> {
    let lease_revoke =
        || unary(|g, r: pb::LeaseRevokeRequest| async move { g.server.lease_revoke(r).await });
    let lease_ttl = || {
        unary(
            |g, r: pb::LeaseTimeToLiveRequest| async move { g.server.lease_time_to_live(r).await },
        )
    };
    let lease_leases =
        || unary(|g, _: pb::LeaseLeasesRequest| async move { g.server.lease_leases() });
    vec![
        (
            "/kv/range",
            unary(|g, r: pb::RangeRequest| async move { g.server.range(r).await }),
        ),
        (
            "/kv/put",
            unary(|g, r: pb::PutRequest| async move { g.server.put(r).await }),
        ),
        (
            "/kv/deleterange",
            unary(|g, r: pb::DeleteRangeRequest| async move { g.server.delete_range(r).await }),
        ),
        (
            "/kv/txn",
            unary(|g, r: pb::TxnRequest| async move { g.server.txn(r).await }),
        ),
        (
            "/kv/compaction",
            unary(|g, r: pb::CompactionRequest| async move { g.server.compact(r).await }),
        ),
        ("/watch", post(stream::watch).fallback(method_not_allowed)),
        (
            "/lease/grant",
            unary(|g, r: pb::LeaseGrantRequest| async move { g.server.lease_grant(r).await }),
        ),
        ("/lease/revoke", lease_revoke()),
        ("/kv/lease/revoke", lease_revoke()),
        (
            "/lease/keepalive",
            post(stream::keep_alive).fallback(method_not_allowed),
        ),
        ("/lease/timetolive", lease_ttl()),
        ("/kv/lease/timetolive", lease_ttl()),
        ("/lease/leases", lease_leases()),
        ("/kv/lease/leases", lease_leases()),
        (
            "/cluster/member/add",
            unary(|g, r: pb::MemberAddRequest| async move { g.server.member_add(r).await }),
        ),
        (
            "/cluster/member/remove",
            unary(|g, r: pb::MemberRemoveRequest| async move { g.server.member_remove(r).await }),
        ),
        (
            "/cluster/member/update",
            unary(|g, r: pb::MemberUpdateRequest| async move { g.server.member_update(r).await }),
        ),
        (
            "/cluster/member/list",
            unary(|g, r: pb::MemberListRequest| async move { g.server.member_list(r).await }),
        ),
        (
            "/cluster/member/promote",
            unary(|g, r: pb::MemberPromoteRequest| async move { g.server.member_promote(r).await }),
        ),
        (
            "/maintenance/alarm",
            unary(|g, r: pb::AlarmRequest| async move { g.server.alarm(r).await }),
        ),
        (
            "/maintenance/status",
            unary(|g, _: pb::StatusRequest| async move { Ok::<_, ServerError>(g.server.status()) }),
        ),
        (
            "/maintenance/defragment",
            unary(|g, _: pb::DefragmentRequest| async move { g.server.defragment().await }),
        ),
        (
            "/lock/lock",
            unary(|g, r: LockRequest| async move { g.server.lock(r).await }),
        ),
        (
            "/lock/unlock",
            unary(|g, r: UnlockRequest| async move { g.server.unlock(r).await }),
        ),
        (
            "/election/campaign",
            unary(|g, r: CampaignRequest| async move { g.server.campaign(r).await }),
        ),
        (
            "/election/proclaim",
            unary(|g, r: ProclaimRequest| async move { g.server.proclaim(r).await }),
        ),
        (
            "/election/leader",
            unary(|g, r: LeaderRequest| async move { g.server.election_leader(r).await }),
        ),
        (
            "/election/observe",
            post(stream::observe).fallback(method_not_allowed),
        ),
        (
            "/election/resign",
            unary(|g, r: ResignRequest| async move { g.server.resign(r).await }),
        ),
        // etcd 3.4 and 3.5 route `/maintenance/hash` to Hash (HashKV's annotation names the
        // same path, and the first registered wins); 3.5.x and later serve HashKV on
        // `/maintenance/hashkv`.
        (
            "/maintenance/hash",
            unary(|g, _: pb::HashRequest| async move { g.server.hash() }),
        ),
        (
            "/maintenance/hashkv",
            unary(|g, r: pb::HashKvRequest| async move { g.server.hash_kv(r) }),
        ),
        (
            "/maintenance/snapshot",
            post(stream::snapshot).fallback(method_not_allowed),
        ),
        (
            "/maintenance/transfer-leadership",
            unary(|g, r: pb::MoveLeaderRequest| async move { g.server.move_leader(r).await }),
        ),
        ("/maintenance/downgrade", unimplemented("Downgrade")),
    ]
}

/// A unary route: the body is `Req` in JSON, the answer `Resp` in JSON.
fn unary<Req, Resp, E, F, Fut>(call: F) -> Route
where
    Req: Named + Send + 'static,
    Resp: Named + Send + 'static,
    E: Into<Status>,
    F: Fn(Gateway, Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, E>> + Send + 'static,
{
    post(
        move |State(gateway): State<Gateway>, body: Body| async move {
            let bytes = match read_body(body, gateway.max_body_bytes).await {
                Ok(bytes) => bytes,
                Err(status) => return error_response(&status),
            };
            let req = match json::from_json::<Req>(&bytes) {
                Ok(req) => req,
                Err(e) => return error_response(&Status::invalid_argument(e.to_string())),
            };
            match call(gateway, req).await {
                Ok(resp) => json_response(StatusCode::OK, json::to_json(&resp)),
                Err(e) => error_response(&e.into()),
            }
        },
    )
    .fallback(method_not_allowed)
}

/// A route of a gRPC method oxcd does not serve yet: gRPC's `Unimplemented`.
fn unimplemented(method: &'static str) -> Route {
    post(move || async move {
        error_response(&Status::unimplemented(format!("unknown method {method}")))
    })
    .fallback(method_not_allowed)
}

/// Reads a whole request body of at most `limit` bytes (gRPC's receive limit).
async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, Status> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        Status::resource_exhausted(format!(
            "grpc: received message larger than max (more than {limit} bytes)"
        ))
    })
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// grpc-gateway's HTTP status for a gRPC code (`runtime.HTTPStatusFromCode`).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// etcd 3.4's gateway error body: `{"error":text,"message":text,"code":n}`.
pub fn error_body(status: &Status) -> Vec<u8> {
    let text = serde_json::Value::from(status.message()).to_string();
    format!(
        "{{\"error\":{text},\"message\":{text},\"code\":{}}}",
        status.code() as i32
    )
    .into_bytes()
}

fn error_response(status: &Status) -> Response {
    json_response(http_status(status.code()), error_body(status))
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Method Not Allowed\n",
    )
        .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Not Found\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests;
