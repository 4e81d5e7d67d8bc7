//! The task behind each peer: open a raft stream to it ([`crate::raft_stream`]), hand its
//! socket to the [`Outbox`] the raft thread writes through, write what the raft thread
//! could not, keep the stream alive with pings, and on failure report the peer
//! unreachable, wait (backing off) and reconnect.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::outbox::Outbox;
use super::Shared;
use crate::frame::{self, FrameKind};
use crate::raft_stream::{self, Opened};
use crate::stats::LinkStats;
use crate::PeerError;

/// A stream that stayed up this long counts as working (for logging changes of state: a
/// refusing peer accepts the connection and refuses the stream at once).
const ACTIVE_AFTER: Duration = Duration::from_millis(500);

/// Why a stream ended.
enum Ended {
    /// The transport dropped the peer.
    Removed,
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
    outbox: Arc<Outbox>,
    mut urls: watch::Receiver<Vec<String>>,
    link: Arc<LinkStats>,
) {
    let opts = &shared.opts;
    let peer = format!("{to:x}");
    let mut backoff = opts.backoff_min;
    let mut log = LinkLog::default();
    loop {
        outbox.connecting();
        let list = urls.borrow_and_update().clone();
        let (cluster_id, member_id) = (shared.handler.cluster_id(), shared.handler.member_id());
        let ended = match raft_stream::open(&opts.dial, &list, cluster_id, member_id).await {
            Ok(io) => {
                tracing::debug!(%peer, urls = ?list, "raft stream to peer opened");
                let ended = stream(&shared, to, io, &outbox, &mut urls, &mut log, &link).await;
                link.deactivate();
                ended
            }
            Err(e) => Ended::Broken(e),
        };
        // Whatever waits is dropped, a partly written frame with it: it must not start
        // the next stream.
        let dropped = outbox.down();
        shared.count_dropped(dropped);
        LinkStats::add(&link.sent_failures, dropped);
        let e = match ended {
            Ended::Removed => return,
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
        // Wait out the backoff (cut short by new URLs); the outbox drops what raft sends
        // meanwhile.
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            changed = urls.changed() => if changed.is_err() {
                return;
            },
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

/// Serves one open raft stream until it breaks: writes what the raft thread leaves in the
/// outbox, pings the peer every keep-alive interval and reads its pongs.
async fn stream(
    shared: &Shared,
    to: u64,
    opened: Opened,
    outbox: &Outbox,
    urls: &mut watch::Receiver<Vec<String>>,
    log: &mut LinkLog,
    link: &LinkStats,
) -> Ended {
    let dial = &shared.opts.dial;
    let broken = |what: &str, e: &dyn std::fmt::Display| {
        Ended::Broken(PeerError::Unreachable(format!("peer {to:x}: {what}: {e}")))
    };
    // Longest a write may take: as long as a ping may go unanswered.
    let write_timeout = dial.keepalive_interval + dial.keepalive_timeout;
    let (mut rd, mut wr, mut answers): (
        Box<dyn AsyncRead + Unpin + Send>,
        Box<dyn AsyncWrite + Unpin + Send>,
        BytesMut,
    ) = match opened {
        Opened::Plain { tcp, read_buf } => {
            count_sent(shared, link, outbox.open(duplicate(&tcp)));
            let (r, w) = tcp.into_split();
            (Box::new(r), Box::new(w), BytesMut::from(&read_buf[..]))
        }
        Opened::Other(io) => {
            count_sent(shared, link, outbox.open(None));
            let (r, w) = tokio::io::split(io);
            (Box::new(r), Box::new(w), BytesMut::new())
        }
    };
    let mut out = Vec::with_capacity(64 << 10);
    let mut ping_due = Instant::now() + dial.keepalive_interval;
    let mut pong_due: Option<Instant> = None;
    let active = tokio::time::sleep(ACTIVE_AFTER);
    tokio::pin!(active);
    let mut marked = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(pong_due.unwrap_or(ping_due)) => {
                if pong_due.is_some() {
                    return broken("no answer to a ping", &format_args!("{:?}", dial.keepalive_timeout));
                }
                outbox.push_control(FrameKind::Ping);
                pong_due = Some(Instant::now() + dial.keepalive_timeout);
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
                Err(_) => Ended::Removed,
            },
            () = outbox.wanted() => {}
        }
        // Write what waits for this task, until the raft thread may write again.
        loop {
            outbox.take(&mut out);
            if out.is_empty() {
                break;
            }
            let write = async {
                wr.write_all(&out).await?;
                wr.flush().await
            };
            match tokio::time::timeout(write_timeout, write).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return broken("cannot write", &e),
                Err(_) => return broken("cannot write", &"timed out"),
            }
        }
    }
}

/// Counts messages and bytes handed to the stream.
fn count_sent(shared: &Shared, link: &LinkStats, (messages, bytes): (u64, u64)) {
    shared
        .counters
        .sent
        .fetch_add(messages, std::sync::atomic::Ordering::Relaxed);
    LinkStats::add(&link.sent_bytes, bytes);
}

/// A second handle on `tcp`'s socket, for the raft thread's non-blocking writes (the
/// socket is already non-blocking: the flag belongs to the socket, not the handle).
#[cfg(unix)]
fn duplicate(tcp: &tokio::net::TcpStream) -> Option<std::net::TcpStream> {
    use std::os::fd::AsFd;
    tcp.as_fd()
        .try_clone_to_owned()
        .map(std::net::TcpStream::from)
        .ok()
}

/// Elsewhere the task writes everything.
#[cfg(not(unix))]
fn duplicate(_tcp: &tokio::net::TcpStream) -> Option<std::net::TcpStream> {
    None
}
