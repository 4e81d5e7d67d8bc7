//! go-grpc-prometheus's server families, as etcd exports them: `grpc_server_started_total`,
//! `grpc_server_handled_total` (with `grpc_code`), `grpc_server_msg_received_total`,
//! `grpc_server_msg_sent_total` and, with `--metrics=extensive`,
//! `grpc_server_handling_seconds`; every series of every etcd method pre-created at zero.
//!
//! Each method's counters are resolved once into a table keyed by the request path, so a
//! call costs one hash lookup and a few atomic increments. Unary calls are counted when
//! they answer (`grpc-status` of a trailers-only answer, else OK); streams (Watch,
//! LeaseKeepAlive, Observe, Snapshot) count each message received and sent, read from
//! gRPC's length-prefixed framing of their bodies, and are handled with their trailers'
//! code.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::Frame;
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

/// The gRPC metadata header in which Go's clientv3 sends its API version (`3.5`).
const CLIENT_API_VERSION: axum::http::HeaderName =
    axum::http::HeaderName::from_static("client-api-version");

/// The `client_api_version` label values of `etcd_server_client_requests_total`: etcd's
/// `unknown` (no header), then every `3.<minor>` a client could send. A value outside the
/// list (no Go clientv3 sends one) is counted as `unknown` too, which keeps recording to
/// one comparison and one atomic add, and the family's series bounded.
pub const API_VERSIONS: [&str; 17] = [
    "unknown", "3.0", "3.1", "3.2", "3.3", "3.4", "3.5", "3.6", "3.7", "3.8", "3.9", "3.10",
    "3.11", "3.12", "3.13", "3.14", "3.15",
];

/// The `type` label values of `etcd_server_client_requests_total`, by index.
pub const REQUEST_TYPES: [&str; 2] = ["unary", "stream"];

/// Client requests by [`REQUEST_TYPES`] and [`API_VERSIONS`] index, process-wide; added
/// to `etcd_server_client_requests_total` when scraped.
pub static CLIENT_REQUESTS: [[AtomicU64; API_VERSIONS.len()]; 2] =
    [const { [const { AtomicU64::new(0) }; API_VERSIONS.len()] }; 2];

/// Where a request whose `client-api-version` header is `value` is counted in
/// [`API_VERSIONS`]: `3.<minor>` for a listed minor, else `unknown` (0).
pub fn api_version_slot(value: Option<&[u8]>) -> usize {
    let Some(minor) = value.and_then(|v| v.strip_prefix(b"3.")) else {
        return 0;
    };
    let n = match minor {
        [d] if d.is_ascii_digit() => usize::from(d - b'0'),
        [b'1', d] if d.is_ascii_digit() => 10 + usize::from(d - b'0'),
        _ => return 0,
    };
    if n + 1 < API_VERSIONS.len() {
        n + 1
    } else {
        0
    }
}

/// Counts one client request (etcd's interceptors: every unary call and every stream,
/// by the client's API version).
pub fn count_client_request(unary: bool, api_version: Option<&[u8]>) {
    CLIENT_REQUESTS[usize::from(!unary)][api_version_slot(api_version)]
        .fetch_add(1, Ordering::Relaxed);
}

/// The `(Type, API)` label values of `etcd_network_server_stream_failures_total`, by index.
pub const STREAM_FAILURE_LABELS: [(&str, &str); 4] = [
    ("receive", "watch"),
    ("send", "watch"),
    ("receive", "lease-keepalive"),
    ("send", "lease-keepalive"),
];

/// Stream failures by [`STREAM_FAILURE_LABELS`] index, process-wide.
pub static STREAM_FAILURES: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// Which stream API failed.
#[derive(Debug, Clone, Copy)]
pub enum StreamApi {
    /// `Watch`.
    Watch,
    /// `LeaseKeepAlive`.
    LeaseKeepAlive,
}

/// Whether a stream error is the client going away (etcd's `isClientCtxErr`: canceled,
/// past its deadline, disconnected), which etcd does not count as a failure.
pub fn is_client_gone(status: &tonic::Status) -> bool {
    matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded)
        || (status.code() == Code::Unavailable && status.message() == "client disconnected")
}

/// Counts (and logs, as etcd's warning) a request that could not be received from a
/// client's stream, unless the client went away.
pub fn stream_receive_failed(api: StreamApi, status: &tonic::Status) {
    let (index, what) = match api {
        StreamApi::Watch => (0, "watch request"),
        StreamApi::LeaseKeepAlive => (2, "lease keepalive request"),
    };
    if is_client_gone(status) {
        tracing::debug!(error = %status, "failed to receive {what} from gRPC stream");
    } else {
        tracing::warn!(error = %status, "failed to receive {what} from gRPC stream");
        STREAM_FAILURES[index].fetch_add(1, Ordering::Relaxed);
    }
}

/// One method's series.
struct MethodSeries {
    unary: bool,
    started: IntCounter,
    handled: [IntCounter; 17],
    received: IntCounter,
    sent: IntCounter,
    handling: Option<Histogram>,
}

impl MethodSeries {
    /// Counts the end of a call with `code`, `started` when it began.
    fn handled(&self, code: Code, started: Instant) {
        if let Some(h) = self.handled.get(code as usize) {
            h.inc();
        }
        if let Some(h) = &self.handling {
            h.observe(started.elapsed().as_secs_f64());
        }
    }
}

/// The gRPC families and the per-method table.
pub struct GrpcMetrics {
    by_path: HashMap<String, Arc<MethodSeries>>,
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
                    Arc::new(MethodSeries {
                        unary: *kind == "unary",
                        started: started.with_label_values(&l),
                        handled,
                        received: received.with_label_values(&l),
                        sent: sent.with_label_values(&l),
                        handling: handling.as_ref().map(|h| h.with_label_values(&l)),
                    }),
                );
            }
        }
        Ok(GrpcMetrics { by_path })
    }

    /// Counts the start of a unary call of a known method, as [`record`] does, and returns
    /// what counts its answer; `None` (nothing counted) for a stream or an unknown path.
    /// For callers that hand a call to its service themselves (`grpc::direct`).
    pub(crate) fn start_unary(
        &self,
        headers: &axum::http::HeaderMap,
        path: &str,
    ) -> Option<UnaryCall> {
        let series = self.by_path.get(path).filter(|s| s.unary)?;
        count_client_request(true, headers.get(CLIENT_API_VERSION).map(|v| v.as_bytes()));
        let started = Instant::now();
        series.started.inc();
        Some(UnaryCall::received(series.clone(), started))
    }
}

/// A unary call that has started and received its request: counts its answer.
pub(crate) struct UnaryCall {
    series: Arc<MethodSeries>,
    started: Instant,
}

impl UnaryCall {
    fn received(series: Arc<MethodSeries>, started: Instant) -> UnaryCall {
        series.received.inc();
        UnaryCall { series, started }
    }

    /// Counts the answer whose headers are `headers`: handled with its code, and sent if OK.
    pub(crate) fn answered(self, headers: &axum::http::HeaderMap) {
        // A trailers-only answer (an error) has grpc-status in its headers; tonic sends
        // an OK answer's status in the trailers.
        let code = grpc_status(headers).unwrap_or(Code::Ok);
        if code == Code::Ok {
            self.series.sent.inc();
        }
        self.series.handled(code, self.started);
    }
}

/// The `grpc-status` of a header or trailer map, if it has one.
fn grpc_status(headers: &axum::http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32)
}

/// Middleware recording every gRPC call (requests whose content type is gRPC), as
/// go-grpc-prometheus does: started when it arrives; a unary call received and (if OK)
/// sent one message and is handled when it answers; a stream counts each message it
/// receives and sends and is handled when its trailers go out (Canceled if the client
/// goes away first). A unary call costs one lookup (no allocation) and a few atomic
/// increments; a stream also wraps its two bodies, once for its whole life.
pub async fn record(State(metrics): State<Arc<GrpcMetrics>>, req: Request, next: Next) -> Response {
    let is_grpc = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let Some(series) = is_grpc
        .then(|| metrics.by_path.get(req.uri().path()))
        .flatten()
    else {
        return next.run(req).await;
    };
    count_client_request(
        series.unary,
        req.headers().get(CLIENT_API_VERSION).map(|v| v.as_bytes()),
    );
    let started = Instant::now();
    series.started.inc();
    if series.unary {
        let call = UnaryCall::received(series.clone(), started);
        let resp = next.run(req).await;
        call.answered(resp.headers());
        return resp;
    }
    let req = req.map(|body| {
        Body::new(CountMessages {
            inner: body,
            frames: Frames::default(),
            counter: series.received.clone(),
            end: None,
        })
    });
    let resp = next.run(req).await;
    if let Some(code) = grpc_status(resp.headers()) {
        series.handled(code, started);
        return resp;
    }
    resp.map(|body| {
        Body::new(CountMessages {
            inner: body,
            frames: Frames::default(),
            counter: series.sent.clone(),
            end: Some(StreamEnd {
                series: series.clone(),
                started,
                done: false,
            }),
        })
    })
}

/// Follows gRPC's length-prefixed framing (a flag byte, a 4-byte big-endian length, the
/// message) across data chunks, counting whole messages and their payload bytes.
#[derive(Debug, Default)]
pub(crate) struct Frames {
    /// Bytes of the current message's 5-byte prefix seen so far.
    prefix_seen: usize,
    /// The prefix's length bytes.
    len_bytes: [u8; 4],
    /// Bytes of the current message's body still to come (after a whole prefix).
    remaining: u64,
}

impl Frames {
    /// Feeds one chunk; returns how many messages it completed and how many of its bytes
    /// were message payload (not the 5-byte prefixes).
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> (u64, u64) {
        let mut done = 0;
        let mut payload = 0u64;
        while !data.is_empty() {
            if self.prefix_seen < 5 {
                if self.prefix_seen > 0 {
                    self.len_bytes[self.prefix_seen - 1] = data[0];
                }
                self.prefix_seen += 1;
                data = &data[1..];
                if self.prefix_seen == 5 {
                    self.remaining = u64::from(u32::from_be_bytes(self.len_bytes));
                    if self.remaining == 0 {
                        done += 1;
                        self.prefix_seen = 0;
                    }
                }
                continue;
            }
            let take = data
                .len()
                .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
            data = &data[take..];
            self.remaining -= take as u64;
            payload += take as u64;
            if self.remaining == 0 {
                done += 1;
                self.prefix_seen = 0;
            }
        }
        (done, payload)
    }
}

/// The end of a stream's answer: counted handled once, with its trailers' code.
struct StreamEnd {
    series: Arc<MethodSeries>,
    started: Instant,
    done: bool,
}

impl StreamEnd {
    fn finish(&mut self, code: Code) {
        if !self.done {
            self.done = true;
            self.series.handled(code, self.started);
        }
    }
}

impl Drop for StreamEnd {
    fn drop(&mut self) {
        // The client went away before the trailers: go-grpc-prometheus sees Canceled.
        self.finish(Code::Cancelled);
    }
}

/// A request or response body counting the gRPC messages that pass through it.
struct CountMessages {
    inner: Body,
    frames: Frames,
    counter: IntCounter,
    /// For a response: where its end is counted.
    end: Option<StreamEnd>,
}

impl HttpBody for CountMessages {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let (n, _) = this.frames.feed(data);
                    if n > 0 {
                        this.counter.inc_by(n);
                    }
                } else if let (Some(trailers), Some(end)) = (frame.trailers_ref(), &mut this.end) {
                    end.finish(grpc_status(trailers).unwrap_or(Code::Ok));
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(end) = &mut this.end {
                    end.finish(Code::Unknown);
                }
            }
            Poll::Ready(None) => {
                if let Some(end) = &mut this.end {
                    end.finish(Code::Ok);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::{api_version_slot, is_client_gone, Frames, API_VERSIONS};

    #[test]
    fn the_api_version_label_is_the_clients_known_version_or_unknown() {
        let label = |v: Option<&[u8]>| API_VERSIONS[api_version_slot(v)];
        assert_eq!(label(None), "unknown");
        assert_eq!(label(Some(b"3.5")), "3.5");
        assert_eq!(label(Some(b"3.0")), "3.0");
        assert_eq!(label(Some(b"3.4")), "3.4");
        assert_eq!(label(Some(b"3.10")), "3.10");
        assert_eq!(label(Some(b"3.15")), "3.15");
        for other in [
            &b""[..],
            b"3",
            b"3.",
            b"3.16",
            b"3.20",
            b"3.5.1",
            b"2.3",
            b"4.0",
            b"3.x",
            b"unknown",
            b"3.05",
        ] {
            assert_eq!(label(Some(other)), "unknown", "{other:?}");
        }
    }

    #[test]
    fn a_client_going_away_is_not_a_stream_failure() {
        assert!(is_client_gone(&tonic::Status::cancelled("gone")));
        assert!(is_client_gone(&tonic::Status::deadline_exceeded("late")));
        assert!(is_client_gone(&tonic::Status::unavailable(
            "client disconnected"
        )));
        assert!(!is_client_gone(&tonic::Status::out_of_range(
            "decoded message length too large"
        )));
        assert!(!is_client_gone(&tonic::Status::internal("decode")));
    }

    fn message(len: u32) -> Vec<u8> {
        let mut m = vec![0];
        m.extend_from_slice(&len.to_be_bytes());
        m.extend(std::iter::repeat_n(7u8, len as usize));
        m
    }

    #[test]
    fn frames_count_whole_messages_across_any_chunking() {
        let mut stream = Vec::new();
        for len in [3, 0, 300, 1, 70_000] {
            stream.extend(message(len));
        }
        for chunk in [1, 2, 4, 5, 6, 7, 64, 1000, stream.len()] {
            let mut frames = Frames::default();
            let (counted, payload) = stream
                .chunks(chunk)
                .map(|c| frames.feed(c))
                .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
            assert_eq!(counted, 5, "chunks of {chunk}");
            assert_eq!(payload, 3 + 300 + 1 + 70_000, "chunks of {chunk}");
        }
        // A message cut short is not counted until its last byte arrives.
        let mut frames = Frames::default();
        let m = message(10);
        assert_eq!(frames.feed(&m[..14]), (0, 9));
        assert_eq!(frames.feed(&m[14..]), (1, 1));
    }
}
