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
use oxcd_core::{Credentials, EtcdServer, ServerError};
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
    let lease_revoke = || {
        unary(|g, c, r: pb::LeaseRevokeRequest| async move { g.server.lease_revoke(&c, r).await })
    };
    let lease_ttl = || {
        unary(
            |g, _c, r: pb::LeaseTimeToLiveRequest| async move { g.server.lease_time_to_live(r).await },
        )
    };
    let lease_leases =
        || unary(|g, _c, _: pb::LeaseLeasesRequest| async move { g.server.lease_leases() });
    vec![
        (
            "/kv/range",
            unary(|g, c, r: pb::RangeRequest| async move { g.server.range(&c, r).await }),
        ),
        (
            "/kv/put",
            unary(|g, c, r: pb::PutRequest| async move { g.server.put(&c, r).await }),
        ),
        (
            "/kv/deleterange",
            unary(
                |g, c, r: pb::DeleteRangeRequest| async move { g.server.delete_range(&c, r).await },
            ),
        ),
        (
            "/kv/txn",
            unary(|g, c, r: pb::TxnRequest| async move { g.server.txn(&c, r).await }),
        ),
        (
            "/kv/compaction",
            unary(|g, c, r: pb::CompactionRequest| async move { g.server.compact(&c, r).await }),
        ),
        ("/watch", post(stream::watch).fallback(method_not_allowed)),
        (
            "/lease/grant",
            unary(
                |g, c, r: pb::LeaseGrantRequest| async move { g.server.lease_grant(&c, r).await },
            ),
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
            unary(|g, c, r: pb::MemberAddRequest| async move { g.server.member_add(&c, r).await }),
        ),
        (
            "/cluster/member/remove",
            unary(
                |g, c, r: pb::MemberRemoveRequest| async move { g.server.member_remove(&c, r).await },
            ),
        ),
        (
            "/cluster/member/update",
            unary(
                |g, c, r: pb::MemberUpdateRequest| async move { g.server.member_update(&c, r).await },
            ),
        ),
        (
            "/cluster/member/list",
            unary(|g, _c, r: pb::MemberListRequest| async move { g.server.member_list(r).await }),
        ),
        (
            "/cluster/member/promote",
            unary(|g, c, r: pb::MemberPromoteRequest| async move {
                g.server.member_promote(&c, r).await
            }),
        ),
        (
            "/maintenance/alarm",
            unary(|g, c, r: pb::AlarmRequest| async move { g.server.alarm(&c, r).await }),
        ),
        (
            "/maintenance/status",
            unary(
                |g, _c, _: pb::StatusRequest| async move { Ok::<_, ServerError>(g.server.status()) },
            ),
        ),
        (
            "/maintenance/defragment",
            unary(|g, c, _: pb::DefragmentRequest| async move { g.server.defragment(&c).await }),
        ),
        (
            "/lock/lock",
            unary(|g, c, r: LockRequest| async move { g.server.lock(&c, r).await }),
        ),
        (
            "/lock/unlock",
            unary(|g, c, r: UnlockRequest| async move { g.server.unlock(&c, r).await }),
        ),
        (
            "/election/campaign",
            unary(|g, c, r: CampaignRequest| async move { g.server.campaign(&c, r).await }),
        ),
        (
            "/election/proclaim",
            unary(|g, c, r: ProclaimRequest| async move { g.server.proclaim(&c, r).await }),
        ),
        (
            "/election/leader",
            unary(|g, c, r: LeaderRequest| async move { g.server.election_leader(&c, r).await }),
        ),
        (
            "/election/observe",
            post(stream::observe).fallback(method_not_allowed),
        ),
        (
            "/election/resign",
            unary(|g, c, r: ResignRequest| async move { g.server.resign(&c, r).await }),
        ),
        (
            "/auth/enable",
            unary(
                |g, c, r: pb::AuthEnableRequest| async move { g.server.auth_enable(&c, r).await },
            ),
        ),
        (
            "/auth/disable",
            unary(
                |g, c, r: pb::AuthDisableRequest| async move { g.server.auth_disable(&c, r).await },
            ),
        ),
        (
            "/auth/status",
            unary(|g, _c, _: pb::AuthStatusRequest| async move { g.server.auth_status().await }),
        ),
        (
            "/auth/authenticate",
            unary(
                |g, c, r: pb::AuthenticateRequest| async move { g.server.authenticate(&c, r).await },
            ),
        ),
        (
            "/auth/user/add",
            unary(|g, c, r: pb::AuthUserAddRequest| async move { g.server.user_add(&c, r).await }),
        ),
        (
            "/auth/user/get",
            unary(|g, c, r: pb::AuthUserGetRequest| async move { g.server.user_get(&c, r).await }),
        ),
        (
            "/auth/user/list",
            unary(
                |g, c, r: pb::AuthUserListRequest| async move { g.server.user_list(&c, r).await },
            ),
        ),
        (
            "/auth/user/delete",
            unary(
                |g, c, r: pb::AuthUserDeleteRequest| async move { g.server.user_delete(&c, r).await },
            ),
        ),
        (
            "/auth/user/changepw",
            unary(|g, c, r: pb::AuthUserChangePasswordRequest| async move {
                g.server.user_change_password(&c, r).await
            }),
        ),
        (
            "/auth/user/grant",
            unary(|g, c, r: pb::AuthUserGrantRoleRequest| async move {
                g.server.user_grant_role(&c, r).await
            }),
        ),
        (
            "/auth/user/revoke",
            unary(|g, c, r: pb::AuthUserRevokeRoleRequest| async move {
                g.server.user_revoke_role(&c, r).await
            }),
        ),
        (
            "/auth/role/add",
            unary(|g, c, r: pb::AuthRoleAddRequest| async move { g.server.role_add(&c, r).await }),
        ),
        (
            "/auth/role/get",
            unary(|g, c, r: pb::AuthRoleGetRequest| async move { g.server.role_get(&c, r).await }),
        ),
        (
            "/auth/role/list",
            unary(
                |g, c, r: pb::AuthRoleListRequest| async move { g.server.role_list(&c, r).await },
            ),
        ),
        (
            "/auth/role/delete",
            unary(
                |g, c, r: pb::AuthRoleDeleteRequest| async move { g.server.role_delete(&c, r).await },
            ),
        ),
        (
            "/auth/role/grant",
            unary(|g, c, r: pb::AuthRoleGrantPermissionRequest| async move {
                g.server.role_grant_permission(&c, r).await
            }),
        ),
        (
            "/auth/role/revoke",
            unary(|g, c, r: pb::AuthRoleRevokePermissionRequest| async move {
                g.server.role_revoke_permission(&c, r).await
            }),
        ),
        // etcd 3.4 and 3.5 route `/maintenance/hash` to Hash (HashKV's annotation names the
        // same path, and the first registered wins); 3.5.x and later serve HashKV on
        // `/maintenance/hashkv`.
        (
            "/maintenance/hash",
            unary(|g, c, _: pb::HashRequest| async move { g.server.hash(&c).await }),
        ),
        (
            "/maintenance/hashkv",
            unary(|g, c, r: pb::HashKvRequest| async move { g.server.hash_kv(&c, r).await }),
        ),
        (
            "/maintenance/snapshot",
            post(stream::snapshot).fallback(method_not_allowed),
        ),
        (
            "/maintenance/transfer-leadership",
            unary(
                |g, c, r: pb::MoveLeaderRequest| async move { g.server.move_leader(&c, r).await },
            ),
        ),
        ("/maintenance/downgrade", unimplemented("Downgrade")),
    ]
}

/// Who a gateway request says it comes from: the token in its `Authorization` header (as
/// etcd's gateway passes it on), and its address. A client certificate's common name is not
/// used on the gateway, as in etcd.
pub fn credentials(headers: &axum::http::HeaderMap, ext: &axum::http::Extensions) -> Credentials {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Credentials::new(
        token,
        None,
        ext.get::<crate::net::ClientAddr>().map(|a| a.0.ip()),
    )
}

/// A unary route: the body is `Req` in JSON, the answer `Resp` in JSON.
fn unary<Req, Resp, E, F, Fut>(call: F) -> Route
where
    Req: Named + Send + 'static,
    Resp: Named + Send + 'static,
    E: Into<Status>,
    F: Fn(Gateway, Credentials, Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, E>> + Send + 'static,
{
    post(
        move |State(gateway): State<Gateway>,
              headers: axum::http::HeaderMap,
              ext: axum::http::Extensions,
              body: Body| async move {
            let cred = credentials(&headers, &ext);
            let bytes = match read_body(body, gateway.max_body_bytes).await {
                Ok(bytes) => bytes,
                Err(status) => return error_response(&status),
            };
            let req = match json::from_json::<Req>(&bytes) {
                Ok(req) => req,
                Err(e) => return error_response(&Status::invalid_argument(e.to_string())),
            };
            // etcd's gateway reaches its server over gRPC, whose codec counts the messages
            // and whose interceptor the call (no client version: `unknown`).
            crate::metrics::network::count_gateway_received(req.encoded_len());
            crate::metrics::grpc::count_client_request(true, None);
            match call(gateway, cred, req).await {
                Ok(resp) => {
                    crate::metrics::network::count_gateway_sent(resp.encoded_len());
                    json_response(StatusCode::OK, json::to_json(&resp))
                }
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
