//! The gateway's streams: a request body of concatenated JSON objects (read as they arrive)
//! becomes the request stream of a gRPC streaming method, and its responses go back as
//! newline-terminated `{"result":...}` lines, or one `{"error":...}` line that ends the
//! stream, as grpc-gateway writes them.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use oxcd_proto::etcdserverpb::{
    LeaseKeepAliveRequest, SnapshotRequest, SnapshotResponse, WatchRequest,
};
use oxcd_proto::v3electionpb::LeaderRequest;
use tonic::Status;

use super::json::{self, Named};
use super::{http_status, Gateway};

/// `POST /v3/watch`: a watch stream.
pub async fn watch(
    State(gateway): State<Gateway>,
    headers: axum::http::HeaderMap,
    ext: axum::http::Extensions,
    body: Body,
) -> Response {
    // etcd's gateway opens the stream on its server over gRPC, without a client version.
    crate::metrics::grpc::count_client_request(false, None);
    let cred = super::credentials(&headers, &ext);
    let requests = requests::<WatchRequest>(body, gateway.max_body_bytes);
    respond(gateway.watch.open(Box::pin(requests), false, cred))
}

/// `POST /v3/lease/keepalive`: a keep-alive stream.
pub async fn keep_alive(State(gateway): State<Gateway>, body: Body) -> Response {
    // etcd's gateway opens the stream on its server over gRPC, without a client version.
    crate::metrics::grpc::count_client_request(false, None);
    let requests = requests::<LeaseKeepAliveRequest>(body, gateway.max_body_bytes);
    respond(crate::grpc::lease::keep_alive(
        gateway.server.clone(),
        Box::pin(requests),
    ))
}

/// `POST /v3/election/observe`: the leaders of an election as they change.
pub async fn observe(
    State(gateway): State<Gateway>,
    headers: axum::http::HeaderMap,
    ext: axum::http::Extensions,
    body: Body,
) -> Response {
    let cred = super::credentials(&headers, &ext);
    let bytes = match super::read_body(body, gateway.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(status) => return super::error_response(&status),
    };
    match json::from_json::<LeaderRequest>(&bytes) {
        Ok(req) => {
            // etcd's gateway calls its server over gRPC, without a client version.
            crate::metrics::grpc::count_client_request(false, None);
            respond(crate::grpc::election::observe(&gateway.server, &cred, req))
        }
        Err(e) => super::error_response(&Status::invalid_argument(e.to_string())),
    }
}

/// `POST /v3/maintenance/snapshot`: the backend snapshot, as Maintenance.Snapshot streams
/// it (each chunk's `blob` in base64, as proto3 JSON writes bytes).
pub async fn snapshot(
    State(gateway): State<Gateway>,
    headers: axum::http::HeaderMap,
    ext: axum::http::Extensions,
    body: Body,
) -> Response {
    let bytes = match super::read_body(body, gateway.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(status) => return super::error_response(&status),
    };
    if let Err(e) = json::from_json::<SnapshotRequest>(&bytes) {
        return super::error_response(&Status::invalid_argument(e.to_string()));
    }
    // etcd's gateway opens the stream on its server over gRPC, without a client version.
    crate::metrics::grpc::count_client_request(false, None);
    let cred = super::credentials(&headers, &ext);
    match crate::grpc::maintenance::snapshot(&gateway.server, &cred).await {
        Ok(stream) => respond(stream.flat_map(|r| futures::stream::iter(etcd_sized(r)))),
        Err(status) => super::error_response(&status),
    }
}

/// The bytes of each line of the gateway's snapshot stream: etcd's chunk size. The gRPC
/// stream's messages are larger (`oxcd_core::SNAPSHOT_CHUNK_BYTES`); cut to etcd's size,
/// the JSON lines stay within what line readers sized for etcd's gateway accept (Go's
/// `bufio.Scanner` stops at 64 KiB).
const GATEWAY_SNAPSHOT_CHUNK: usize = 32 * 1024;

/// `msg` as messages of at most [`GATEWAY_SNAPSHOT_CHUNK`] bytes, each with the bytes still
/// to come after it.
fn etcd_sized(msg: Result<SnapshotResponse, Status>) -> Vec<Result<SnapshotResponse, Status>> {
    let m = match msg {
        Ok(m) if m.blob.len() > GATEWAY_SNAPSHOT_CHUNK => m,
        other => return vec![other],
    };
    let mut left = m.blob.len() as u64;
    m.blob
        .chunks(GATEWAY_SNAPSHOT_CHUNK)
        .map(|piece| {
            left -= piece.len() as u64;
            Ok(SnapshotResponse {
                header: m.header,
                remaining_bytes: m.remaining_bytes + left,
                blob: piece.to_vec(),
                version: m.version.clone(),
            })
        })
        .collect()
}

/// The requests in `body`, decoded as each complete JSON value arrives. A value that is
/// not a `T`, or a body that ends inside a value, ends the stream with an error.
pub fn requests<T: Named + Send + 'static>(
    body: Body,
    max_value_bytes: usize,
) -> impl Stream<Item = Result<T, Status>> + Send + 'static {
    let frames = body.into_data_stream();
    futures::stream::unfold(
        Some((
            frames,
            Vec::<u8>::new(),
            std::collections::VecDeque::<Result<T, Status>>::new(),
        )),
        move |state| async move {
            let (mut frames, mut buf, mut ready) = state?;
            loop {
                if let Some(item) = ready.pop_front() {
                    let stop = item.is_err();
                    let next = if stop {
                        None
                    } else {
                        Some((frames, buf, ready))
                    };
                    return Some((item, next));
                }
                match frames.next().await {
                    Some(Ok(chunk)) => {
                        buf.extend_from_slice(&chunk);
                        split_values::<T>(&mut buf, &mut ready);
                        if buf.len() > max_value_bytes {
                            ready.push_back(Err(Status::resource_exhausted(
                                "grpc: received message larger than max",
                            )));
                        }
                    }
                    Some(Err(_)) | None => {
                        if buf.trim_ascii().is_empty() {
                            return None;
                        }
                        let e = json::JsonError::Eof;
                        return Some((Err(Status::invalid_argument(e.to_string())), None));
                    }
                }
            }
        },
    )
}

/// Moves every complete JSON value at the front of `buf` into `ready` (decoded as `T`),
/// leaving an unfinished value in `buf`.
fn split_values<T: Named>(
    buf: &mut Vec<u8>,
    ready: &mut std::collections::VecDeque<Result<T, Status>>,
) {
    let mut values = serde_json::Deserializer::from_slice(buf).into_iter::<serde_json::Value>();
    let mut consumed = 0;
    loop {
        match values.next() {
            Some(Ok(value)) => {
                consumed = values.byte_offset();
                let decoded = json::from_value::<T>(value)
                    .map_err(|e| Status::invalid_argument(e.to_string()));
                if let Ok(msg) = &decoded {
                    crate::metrics::network::count_gateway_received(msg.encoded_len());
                }
                ready.push_back(decoded);
            }
            Some(Err(e)) if e.is_eof() => break,
            Some(Err(e)) => {
                ready.push_back(Err(Status::invalid_argument(e.to_string())));
                consumed = buf.len();
                break;
            }
            None => {
                consumed = buf.len();
                break;
            }
        }
    }
    buf.drain(..consumed);
}

/// One stream line: `{"result":<message>}` or grpc-gateway's `{"error":{...}}`.
pub fn line<T: Named>(item: &Result<T, Status>) -> Bytes {
    let mut out = match item {
        Ok(msg) => {
            crate::metrics::network::count_gateway_sent(msg.encoded_len());
            let mut out = b"{\"result\":".to_vec();
            out.extend_from_slice(&json::to_json(msg));
            out.push(b'}');
            out
        }
        Err(status) => {
            let http = http_status(status.code());
            let message = serde_json::Value::from(status.message()).to_string();
            format!(
                "{{\"error\":{{\"grpc_code\":{},\"http_code\":{},\"message\":{message},\"http_status\":{}}}}}",
                status.code() as i32,
                http.as_u16(),
                serde_json::Value::from(http.canonical_reason().unwrap_or("")),
            )
            .into_bytes()
        }
    };
    out.push(b'\n');
    Bytes::from(out)
}

/// A streaming answer: 200 with one line per response; an error is the last line.
pub fn respond<T, S>(responses: S) -> Response
where
    T: Named + Send + 'static,
    S: Stream<Item = Result<T, Status>> + Send + 'static,
{
    let lines = responses.scan(false, |ended, item| {
        let out = if *ended {
            None
        } else {
            *ended = item.is_err();
            Some(Ok::<_, std::convert::Infallible>(line(&item)))
        };
        futures::future::ready(out)
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(lines),
    )
        .into_response()
}
