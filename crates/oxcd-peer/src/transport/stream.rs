//! The task behind each peer: open a raft stream to it ([`crate::raft_stream`]), write
//! what is queued in batches, keep the stream alive with pings, and on failure report the
//! peer unreachable, wait (backing off) and reconnect.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use oxcd_raft::eraftpb::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::Shared;
use crate::frame::{self, FrameKind};
use crate::raft_stream::{self, StreamIo};
use crate::stats::LinkStats;
use crate::PeerError;

/// A stream that stayed up this long counts as working (for logging changes of state: a
/// refusing peer accepts the connection and refuses the stream at once).
const ACTIVE_AFTER: Duration = Duration::from_millis(500);

/// Why a stream ended.
enum Ended {
    /// The transport dropped the peer.
    QueueClosed,
    /// The peer's URLs changed: reconnect at once.
    UrlsChanged,
    /// The connection failed or the peer refused it.
    Broken(PeerError),
}

/// What the peer task last logged, so each change of state is logged once.
#[derive(Default)]
struct LinkLog {
    /// The link was reported down (unreachable or refused).
    down: bool,
    /// The last refusal logged.
    refusal: Option<String>,
}

/// Runs until the peer is removed from the transport.
pub(super) async fn run(
    shared: Arc<Shared>,
    to: u64,
    mut queue: mpsc::Receiver<Message>,
    mut urls: watch::Receiver<Vec<String>>,
    link: Arc<LinkStats>,
) {
    let opts = &shared.opts;
    let peer = format!("{to:x}");
    let mut backoff = opts.backoff_min;
    let mut log = LinkLog::default();
    loop {
        let list = urls.borrow_and_update().clone();
        let (cluster_id, member_id) = (shared.handler.cluster_id(), shared.handler.member_id());
        let ended = match raft_stream::open(&opts.dial, &list, cluster_id, member_id).await {
            Ok(io) => {
                tracing::debug!(%peer, urls = ?list, "raft stream to peer opened");
                let ended = stream(&shared, to, io, &mut queue, &mut urls, &mut log, &link).await;
                link.deactivate();
                ended
            }
            Err(e) => Ended::Broken(e),
        };
        let e = match ended {
            Ended::QueueClosed => return,
            Ended::UrlsChanged => {
                tracing::info!(%peer, urls = ?*urls.borrow(), "peer URLs changed: reconnecting");
                backoff = opts.backoff_min;
                continue;
            }
            Ended::Broken(e) => e,
        };
        LinkStats::add(&link.sent_failures, 1);
        if !log.down {
            // The link worked until now: retry soon.
            backoff = opts.backoff_min;
        }
        shared.report_unreachable(to);
        shared.down.lock().insert(to);
        if e == PeerError::MemberRemoved {
            shared.mark_removed();
        }
        if e.is_refusal() {
            let text = e.to_string();
            if log.refusal.as_ref() != Some(&text) {
                tracing::error!(%peer, urls = ?list, error = %text, "peer refused this member");
                log.refusal = Some(text);
            }
            log.down = true;
            backoff = opts.backoff_max;
        } else if !log.down {
            tracing::warn!(%peer, urls = ?list, error = %e, "peer unreachable; retrying");
            log.down = true;
        } else {
            tracing::debug!(%peer, error = %e, "peer still unreachable");
        }
        // Wait out the backoff (cut short by new URLs), dropping what raft queues meanwhile.
        let sleep = tokio::time::sleep(backoff);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                changed = urls.changed() => match changed {
                    Ok(()) => break,
                    Err(_) => return,
                },
                m = queue.recv() => match m {
                    Some(_) => {
                        shared.count_dropped(1);
                        LinkStats::add(&link.sent_failures, 1);
                    }
                    None => return,
                },
            }
        }
        backoff = (backoff * 2).min(opts.backoff_max);
    }
}

/// The stream has stayed up long enough: log that the link works (again).
fn mark_active(log: &mut LinkLog, peer: u64) {
    if log.down || log.refusal.is_some() {
        tracing::info!(peer = %format!("{peer:x}"), "peer is reachable again");
    } else {
        tracing::info!(peer = %format!("{peer:x}"), "peer stream established");
    }
    *log = LinkLog::default();
}

/// Writes queued messages in batches on one raft stream until it breaks, pinging the
/// peer every keep-alive interval.
async fn stream(
    shared: &Shared,
    to: u64,
    io: StreamIo,
    queue: &mut mpsc::Receiver<Message>,
    urls: &mut watch::Receiver<Vec<String>>,
    log: &mut LinkLog,
    link: &LinkStats,
) -> Ended {
    let dial = &shared.opts.dial;
    let broken = |what: &str, e: &dyn std::fmt::Display| {
        Ended::Broken(PeerError::Unreachable(format!("peer {to:x}: {what}: {e}")))
    };
    // Longest a batch or a ping may take to write: as long as a ping may go unanswered.
    let write_timeout = dial.keepalive_interval + dial.keepalive_timeout;
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut ping = Vec::new();
    frame::put_control(&mut ping, FrameKind::Ping);
    let mut answers = BytesMut::with_capacity(64);
    let mut out = Vec::with_capacity(64 << 10);
    let mut ping_due = Instant::now() + dial.keepalive_interval;
    let mut pong_due: Option<Instant> = None;
    let active = tokio::time::sleep(ACTIVE_AFTER);
    tokio::pin!(active);
    let mut marked = false;
    loop {
        let first = tokio::select! {
            _ = tokio::time::sleep_until(pong_due.unwrap_or(ping_due)) => {
                if pong_due.is_some() {
                    return broken("no answer to a ping", &format_args!("{:?}", dial.keepalive_timeout));
                }
                match tokio::time::timeout(write_timeout, wr.write_all(&ping)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return broken("cannot write", &e),
                    Err(_) => return broken("cannot write", &"timed out"),
                }
                pong_due = Some(Instant::now() + dial.keepalive_timeout);
                continue;
            }
            read = rd.read_buf(&mut answers) => {
                match read {
                    Ok(0) => return broken("stream", &"closed by the peer"),
                    Err(e) => return broken("cannot read", &e),
                    Ok(_) => {}
                }
                loop {
                    match frame::take_frame(&mut answers) {
                        Ok(Some((FrameKind::Pong, _))) => {
                            pong_due = None;
                            ping_due = Instant::now() + dial.keepalive_interval;
                        }
                        Ok(Some((kind, _))) => return broken("unexpected frame", &format_args!("{kind:?}")),
                        Ok(None) => break,
                        Err(e) => return broken("bad frame", &e),
                    }
                }
                continue;
            }
            _ = &mut active, if !marked => {
                marked = true;
                mark_active(log, to);
                link.activate();
                shared.down.lock().remove(&to);
                continue;
            }
            changed = urls.changed() => return match changed {
                Ok(()) => Ended::UrlsChanged,
                Err(_) => Ended::QueueClosed,
            },
            m = queue.recv() => match m {
                Some(m) => m,
                None => return Ended::QueueClosed,
            },
        };
        out.clear();
        let n = collect(shared, first, queue, &mut out);
        match tokio::time::timeout(write_timeout, wr.write_all(&out)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return broken("cannot write", &e),
            Err(_) => return broken("cannot write", &"timed out"),
        }
        shared.counters.sent.fetch_add(n, Ordering::Relaxed);
        LinkStats::add(&link.sent_bytes, out.len() as u64);
    }
}

/// Frames `first` and whatever else is queued, up to the batch limits, into `out`;
/// returns the number of messages.
fn collect(
    shared: &Shared,
    first: Message,
    queue: &mut mpsc::Receiver<Message>,
    out: &mut Vec<u8>,
) -> u64 {
    let opts = &shared.opts;
    frame::put_message(out, &first);
    let mut n = 1;
    while n < opts.max_batch_messages && out.len() < opts.max_batch_bytes {
        let Ok(m) = queue.try_recv() else { break };
        frame::put_message(out, &m);
        n += 1;
    }
    n as u64
}
