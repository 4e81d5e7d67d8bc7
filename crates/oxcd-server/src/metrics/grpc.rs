//! go-grpc-prometheus's server families, as etcd exports them: `grpc_server_started_total`,
//! `grpc_server_handled_total` (with `grpc_code`), `grpc_server_msg_received_total`,
//! `grpc_server_msg_sent_total` and, with `--metrics=extensive`,
//! `grpc_server_handling_seconds`; every series of every etcd method pre-created at zero.
//!
//! Each method's counters are resolved once into a table keyed by the request path, so a
//! call costs one hash lookup and a few atomic increments. Unary calls are counted when
//! they answer (`grpc-status` of a trailers-only answer, else OK); streams count as
//! started when opened (their messages and end are not counted yet).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};
use tonic::Code;

use super::{Level, MetricsError};

/// gRPC's codes by number, with go-grpc-prometheus's label values.
const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// etcd's gRPC services and methods with their call type.
const METHODS: &[(&str, &[(&str, &str)])] = &[
    (
        "etcdserverpb.KV",
        &[
            ("Range", "unary"),
            ("Put", "unary"),
            ("DeleteRange", "unary"),
            ("Txn", "unary"),
            ("Compact", "unary"),
        ],
    ),
    ("etcdserverpb.Watch", &[("Watch", "bidi_stream")]),
    (
        "etcdserverpb.Lease",
        &[
            ("LeaseGrant", "unary"),
            ("LeaseRevoke", "unary"),
            ("LeaseKeepAlive", "bidi_stream"),
            ("LeaseTimeToLive", "unary"),
            ("LeaseLeases", "unary"),
        ],
    ),
    (
        "etcdserverpb.Cluster",
        &[
            ("MemberAdd", "unary"),
            ("MemberRemove", "unary"),
            ("MemberUpdate", "unary"),
            ("MemberList", "unary"),
            ("MemberPromote", "unary"),
        ],
    ),
    (
        "etcdserverpb.Maintenance",
        &[
            ("Alarm", "unary"),
            ("Status", "unary"),
            ("Defragment", "unary"),
            ("Hash", "unary"),
            ("HashKV", "unary"),
            ("Snapshot", "server_stream"),
            ("MoveLeader", "unary"),
            ("Downgrade", "unary"),
        ],
    ),
    (
        "etcdserverpb.Auth",
        &[
            ("AuthEnable", "unary"),
            ("AuthDisable", "unary"),
            ("AuthStatus", "unary"),
            ("Authenticate", "unary"),
            ("UserAdd", "unary"),
            ("UserGet", "unary"),
            ("UserList", "unary"),
            ("UserDelete", "unary"),
            ("UserChangePassword", "unary"),
            ("UserGrantRole", "unary"),
            ("UserRevokeRole", "unary"),
            ("RoleAdd", "unary"),
            ("RoleGet", "unary"),
            ("RoleList", "unary"),
            ("RoleDelete", "unary"),
            ("RoleGrantPermission", "unary"),
            ("RoleRevokePermission", "unary"),
        ],
    ),
    ("v3lockpb.Lock", &[("Lock", "unary"), ("Unlock", "unary")]),
    (
        "v3electionpb.Election",
        &[
            ("Campaign", "unary"),
            ("Proclaim", "unary"),
            ("Leader", "unary"),
            ("Observe", "server_stream"),
            ("Resign", "unary"),
        ],
    ),
];

/// One method's series.
struct MethodSeries {
    unary: bool,
    started: IntCounter,
    handled: [IntCounter; 17],
    received: IntCounter,
    sent: IntCounter,
    handling: Option<Histogram>,
}

/// The gRPC families and the per-method table.
pub struct GrpcMetrics {
    by_path: HashMap<String, MethodSeries>,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    c: T,
) -> Result<T, MetricsError> {
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

impl GrpcMetrics {
    /// Registers the families in `registry` and pre-creates every etcd method's series.
    pub fn new(registry: &Registry, level: Level) -> Result<GrpcMetrics, MetricsError> {
        let labels = ["grpc_type", "grpc_service", "grpc_method"];
        let coded = ["grpc_type", "grpc_service", "grpc_method", "grpc_code"];
        let started = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "grpc_server_started_total",
                    "Total number of RPCs started on the server.",
                ),
                &labels,
            )?,
        )?;
        let handled = register(registry, IntCounterVec::new(Opts::new("grpc_server_handled_total", "Total number of RPCs completed on the server, regardless of success or failure."), &coded)?)?;
        let received = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "grpc_server_msg_received_total",
                    "Total number of RPC stream messages received on the server.",
                ),
                &labels,
            )?,
        )?;
        let sent = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "grpc_server_msg_sent_total",
                    "Total number of gRPC stream messages sent by the server.",
                ),
                &labels,
            )?,
        )?;
        let handling = match level {
            Level::Extensive => Some(register(registry, HistogramVec::new(HistogramOpts::new("grpc_server_handling_seconds", "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server."), &labels)?)?),
            Level::Basic => None,
        };
        let mut by_path = HashMap::new();
        for (service, methods) in METHODS {
            for (method, kind) in *methods {
                let l = [*kind, *service, *method];
                let handled =
                    CODES.map(|code| handled.with_label_values(&[*kind, *service, *method, code]));
                by_path.insert(
                    format!("/{service}/{method}"),
                    MethodSeries {
                        unary: *kind == "unary",
                        started: started.with_label_values(&l),
                        handled,
                        received: received.with_label_values(&l),
                        sent: sent.with_label_values(&l),
                        handling: handling.as_ref().map(|h| h.with_label_values(&l)),
                    },
                );
            }
        }
        Ok(GrpcMetrics { by_path })
    }

    /// Records a call of `path` that answered with `code` after `started`.
    fn record(&self, path: &str, code: Option<Code>, started: Instant) {
        let Some(m) = self.by_path.get(path) else {
            return;
        };
        m.started.inc();
        if !m.unary {
            return;
        }
        let code = code.unwrap_or(Code::Ok);
        m.received.inc();
        if code == Code::Ok {
            m.sent.inc();
        }
        if let Some(h) = m.handled.get(code as usize) {
            h.inc();
        }
        if let Some(h) = &m.handling {
            h.observe(started.elapsed().as_secs_f64());
        }
    }
}

/// Middleware recording every gRPC call (requests whose content type is gRPC).
pub async fn record(State(metrics): State<Arc<GrpcMetrics>>, req: Request, next: Next) -> Response {
    let is_grpc = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if !is_grpc {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    let code = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32);
    metrics.record(&path, code, started);
    resp
}
