//! The raft stream: one long-lived connection per directed pair of members carrying the
//! sender's raft messages, opened as an HTTP/1.1 upgrade on the peer port and then
//! framed by [`crate::frame`].
//!
//! **Why not a gRPC stream.** Raft messages used to travel on a client-streaming gRPC call.
//! Each batch then woke three tasks on the sender (the peer task, hyper's body pipe and the
//! HTTP/2 connection) and two on the receiver, and went through HTTP/2 flow control and
//! framing: about a quarter of a leader's runtime CPU under a put load. On an upgraded
//! connection, the raft thread writes a batch with one non-blocking `write` (see the
//! transport's outbox) and a receiving thread (a task, for TLS) steps what it reads
//! (etcd's rafthttp streams are long-lived HTTP/1.1 bodies for the same reason). The upgrade keeps the peer port one listener, TLS included, and carries the
//! sender's identity in headers the receiver checks as it checks every peer call
//! ([`identity`]).
//!
//! Opening: `POST /oxcdpeer/raft` with `Connection: upgrade`, `Upgrade:`
//! [`PROTOCOL`] and the identity headers. The receiver answers `101 Switching Protocols`,
//! or refuses with `412` and the refusal as gRPC status headers (`grpc-status`,
//! `grpc-message`, `oxcd-peer-refusal`), which the sender reads back into a [`PeerError`].
//! Keep-alive: the sender pings every [`DialOptions::keepalive_interval`] and drops the
//! connection when a pong is [`DialOptions::keepalive_timeout`] late (a peer cut off
//! without a reset, or stopped).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONNECTION, HOST, UPGRADE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::dial::Io;
use crate::frame::{self, FrameKind};
use crate::stats::LinkStats;
use crate::{identity, DialOptions, PeerError, PeerHandler};

/// Path of the upgrade request.
pub(crate) const PATH: &str = "/oxcdpeer/raft";

/// The `Upgrade` token; a new framing would get a new one.
pub(crate) const PROTOCOL: &str = "oxcd-raft/1";

/// The sending end of an open raft stream.
pub(crate) enum Opened {
    /// Plain TCP, handed back by hyper with whatever it read past the `101` answer.
    Plain {
        /// The connection.
        tcp: tokio::net::TcpStream,
        /// Bytes of the stream hyper had read already.
        read_buf: bytes::Bytes,
    },
    /// Anything else (TLS).
    Other(TokioIo<hyper::upgrade::Upgraded>),
}

/// A stream that carries nothing for this long is dropped: its sender pings every second
/// (by default), so it is gone (cut off without a reset) and has opened another.
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Room kept free in the receive buffer before each read.
const READ_CHUNK: usize = 64 << 10;

/// The refusal of an upgrade request: 412 with `e` as gRPC status headers.
fn refusal(e: PeerError) -> Response {
    let mut resp = Status::from(e).into_http::<Body>();
    *resp.status_mut() = StatusCode::PRECONDITION_FAILED;
    resp.into_response()
}

/// The peer port's handler of [`PATH`]: checks the sender, switches protocols and spawns
/// the task that steps what the stream carries.
pub(crate) async fn accept(
    State(handler): State<Arc<dyn PeerHandler>>,
    mut req: Request,
) -> Response {
    let asks_upgrade = req
        .headers()
        .get(UPGRADE)
        .is_some_and(|v| v.as_bytes() == PROTOCOL.as_bytes());
    if !asks_upgrade {
        return refusal(PeerError::InvalidRequest(format!(
            "{PATH} must be opened with Upgrade: {PROTOCOL}"
        )));
    }
    let from = match identity::check(&MetadataMap::from_headers(req.headers().clone()), &*handler) {
        Ok(from) => from,
        Err(e) => return refusal(e),
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return refusal(PeerError::Internal(
            "this listener does not serve HTTP/1.1 upgrades".into(),
        ));
    };
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(peer = %format!("{from:x}"), error = %e, "raft stream upgrade failed");
                return;
            }
        };
        tracing::debug!(peer = %format!("{from:x}"), "raft stream opened");
        let link = handler.peer_stats().map(|s| s.link(from));
        let ended = move |e: PeerError, link: Option<&LinkStats>| {
            if let Some(link) = link {
                LinkStats::add(&link.received_failures, 1);
            }
            tracing::debug!(peer = %format!("{from:x}"), error = %e, "raft stream ended");
        };
        let upgraded = match upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() {
            Ok(parts) => {
                // Plain TCP: a thread of its own reads it (see `receive_blocking`).
                let buf = BytesMut::from(&parts.read_buf[..]);
                let tcp = match parts.io.into_inner().into_std() {
                    Ok(tcp) => tcp,
                    Err(e) => return ended(PeerError::Unreachable(e.to_string()), link.as_deref()),
                };
                let spawned = std::thread::Builder::new()
                    .name("oxcd-peer-rx".into())
                    .spawn(move || {
                        if let Err(e) = receive_blocking(&*handler, from, tcp, buf, link.as_deref())
                        {
                            ended(e, link.as_deref());
                        }
                    });
                if let Err(e) = spawned {
                    tracing::warn!(peer = %format!("{from:x}"), error = %e, "cannot start a raft stream receiver thread");
                }
                return;
            }
            Err(upgraded) => upgraded,
        };
        let buf = BytesMut::with_capacity(READ_CHUNK);
        if let Err(e) = receive(
            &*handler,
            from,
            TokioIo::new(upgraded),
            buf,
            link.as_deref(),
        )
        .await
        {
            ended(e, link.as_deref());
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(CONNECTION, "upgrade")
        .header(UPGRADE, PROTOCOL)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Steps the complete frames at the front of `buf`; returns how many pings to answer.
fn step_frames(
    handler: &dyn PeerHandler,
    from: u64,
    buf: &mut BytesMut,
    link: Option<&LinkStats>,
) -> Result<usize, PeerError> {
    let mut pings = 0;
    while let Some((kind, payload)) =
        frame::take_frame(buf).map_err(|e| PeerError::InvalidRequest(e.to_string()))?
    {
        match kind {
            FrameKind::Message => {
                if let Some(link) = link {
                    // Framed bytes, as the sender counts them.
                    let framed = frame::HEADER_LEN + payload.len();
                    LinkStats::add(&link.received_bytes, framed as u64);
                }
                let msg = oxcd_raft::wire::decode_message(payload)
                    .map_err(|e| PeerError::InvalidRequest(e.to_string()))?;
                crate::server::check_addressing(handler, from, msg.from, msg.to)?;
                handler.step(msg)?;
            }
            FrameKind::Ping => pings += 1,
            FrameKind::Pong => {
                return Err(PeerError::InvalidRequest(
                    "a pong on the receiving side of a raft stream".into(),
                ))
            }
        }
    }
    Ok(pings)
}

fn pong_frames(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..n {
        frame::put_control(&mut out, FrameKind::Pong);
    }
    out
}

/// Steps every message the stream from `from` carries and answers its pings, until it
/// ends (`Ok`) or breaks the framing, the addressing or the handler (`Err`).
async fn receive<I>(
    handler: &dyn PeerHandler,
    from: u64,
    mut io: I,
    mut buf: BytesMut,
    link: Option<&LinkStats>,
) -> Result<(), PeerError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let broken = |e: &dyn std::fmt::Display| PeerError::Unreachable(e.to_string());
    loop {
        let pings = step_frames(handler, from, &mut buf, link)?;
        if pings > 0 {
            io.write_all(&pong_frames(pings))
                .await
                .map_err(|e| broken(&e))?;
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        match tokio::time::timeout(IDLE_TIMEOUT, io.read_buf(&mut buf)).await {
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(broken(&e)),
            Err(_) => return Err(broken(&"silent for too long")),
        }
    }
}

/// [`receive`] on a thread of its own with blocking reads, for a plain TCP stream.
///
/// **Why a thread.** On the leader, followers' acknowledgements are on the commit path of
/// every write, and the runtime's worker is busy with clients' requests: a receiving task
/// waits behind them (and for the worker's next look at its sockets), where a thread
/// blocked in `read` is woken by the kernel as the bytes arrive. 6 alternating pairs
/// under go-load: puts/s +3.5% (median), 4 pairs faster. A member has one such thread per
/// peer; it ends with its connection.
fn receive_blocking(
    handler: &dyn PeerHandler,
    from: u64,
    mut tcp: std::net::TcpStream,
    mut buf: BytesMut,
    link: Option<&LinkStats>,
) -> Result<(), PeerError> {
    use std::io::{ErrorKind, Read, Write};
    let broken = |e: &dyn std::fmt::Display| PeerError::Unreachable(e.to_string());
    tcp.set_nonblocking(false).map_err(|e| broken(&e))?;
    tcp.set_read_timeout(Some(IDLE_TIMEOUT))
        .map_err(|e| broken(&e))?;
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let pings = step_frames(handler, from, &mut buf, link)?;
        if pings > 0 {
            tcp.write_all(&pong_frames(pings)).map_err(|e| broken(&e))?;
        }
        let n = match tcp.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(broken(&"silent for too long"))
            }
            Err(e) => return Err(broken(&e)),
        };
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Opens a raft stream to the first of `urls` that accepts one, as member `member_id` of
/// cluster `cluster_id`. A refusal ([`PeerError::is_refusal`]) ends the attempt at once.
pub(crate) async fn open(
    dial: &DialOptions,
    urls: &[String],
    cluster_id: u64,
    member_id: u64,
) -> Result<Opened, PeerError> {
    let mut last = PeerError::Unreachable("no peer URL known".into());
    for url in urls {
        let opened = async {
            let (io, authority) = dial.connect_io(url).await?;
            upgrade(io, url, &authority, cluster_id, member_id).await
        };
        match tokio::time::timeout(dial.request_timeout, opened).await {
            Ok(Ok(io)) => return Ok(io),
            Ok(Err(e)) if e.is_refusal() => return Err(e),
            Ok(Err(e)) => last = e,
            Err(_) => {
                last = PeerError::Unreachable(format!("{url}: opening a raft stream timed out"))
            }
        }
    }
    Err(last)
}

/// Asks the peer on `io` (dialled at `authority` for peer URL `url`) to switch to a raft
/// stream from member `member_id` of cluster `cluster_id`.
async fn upgrade(
    io: Io,
    url: &str,
    authority: &str,
    cluster_id: u64,
    member_id: u64,
) -> Result<Opened, PeerError> {
    let unreachable = |e: &dyn std::fmt::Display| PeerError::Unreachable(format!("{url}: {e}"));
    let req = hyper::Request::builder()
        .method(hyper::Method::POST)
        .uri(PATH)
        .header(HOST, authority)
        .header(CONNECTION, "upgrade")
        .header(UPGRADE, PROTOCOL)
        .header(identity::CLUSTER_ID_KEY, format!("{cluster_id:x}"))
        .header(identity::MEMBER_ID_KEY, format!("{member_id:x}"))
        .body(Body::empty())
        .map_err(|e| PeerError::Config(e.to_string()))?;
    let resp = io.send_http1(url, req).await?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(match Status::from_header_map(resp.headers()) {
            Some(status) => PeerError::from(status),
            None => unreachable(&format_args!(
                "answered HTTP {} instead of opening a raft stream",
                resp.status()
            )),
        });
    }
    let upgraded = hyper::upgrade::on(resp)
        .await
        .map_err(|e| unreachable(&e))?;
    Ok(
        match upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() {
            Ok(parts) => Opened::Plain {
                tcp: parts.io.into_inner(),
                read_buf: parts.read_buf,
            },
            Err(upgraded) => Opened::Other(TokioIo::new(upgraded)),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_travel_as_status_headers() {
        let resp = refusal(PeerError::MemberRemoved);
        assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
        let status = Status::from_header_map(resp.headers()).expect("status headers");
        assert_eq!(PeerError::from(status), PeerError::MemberRemoved);
    }
}
