//! The task behind each peer: connect, keep one client stream of message batches open,
//! and on failure report the peer unreachable, wait (backing off) and reconnect.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use oxcd_raft::eraftpb::Message;
use oxcd_raft::wire;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::Shared;
use crate::proto::raft_peer_client::RaftPeerClient;
use crate::proto::RaftBatch;
use crate::stats::LinkStats;
use crate::{identity, PeerError};

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
        let ended = match opts.dial.connect(&list).await {
            Ok(channel) => {
                tracing::debug!(%peer, urls = ?list, "connected to peer");
                let ended =
                    stream(&shared, to, channel, &mut queue, &mut urls, &mut log, &link).await;
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

/// Sends queued messages in batches on one stream until it breaks.
async fn stream(
    shared: &Shared,
    to: u64,
    channel: Channel,
    queue: &mut mpsc::Receiver<Message>,
    urls: &mut watch::Receiver<Vec<String>>,
    log: &mut LinkLog,
    link: &LinkStats,
) -> Ended {
    let mut client = RaftPeerClient::new(channel);
    let (tx, rx) = mpsc::channel::<RaftBatch>(4);
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    identity::stamp(
        req.metadata_mut(),
        shared.handler.cluster_id(),
        shared.handler.member_id(),
    );
    let call = client.raft(req);
    tokio::pin!(call);
    let broken = |r: Result<tonic::Response<_>, tonic::Status>| {
        Ended::Broken(match r {
            Ok(_) => PeerError::Unreachable(format!("peer {to:x} closed the stream")),
            Err(status) => PeerError::from(status),
        })
    };
    let active = tokio::time::sleep(ACTIVE_AFTER);
    tokio::pin!(active);
    let mut marked = false;
    loop {
        let first = tokio::select! {
            r = &mut call => return broken(r),
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
        let (batch, bytes) = collect(shared, first, queue);
        let n = batch.messages.len() as u64;
        tokio::select! {
            r = &mut call => return broken(r),
            sent = tx.send(batch) => {
                if sent.is_err() {
                    return Ended::Broken(PeerError::Unreachable("stream closed".into()));
                }
                shared.counters.sent.fetch_add(n, Ordering::Relaxed);
                LinkStats::add(&link.sent_bytes, bytes as u64);
            }
        }
    }
}

/// `first` and whatever else is queued, up to the batch limits, and the batch's encoded
/// message bytes.
fn collect(
    shared: &Shared,
    first: Message,
    queue: &mut mpsc::Receiver<Message>,
) -> (RaftBatch, usize) {
    let opts = &shared.opts;
    let first = bytes::Bytes::from(wire::encode_message(&first));
    let mut bytes = first.len();
    let mut messages = vec![first];
    while messages.len() < opts.max_batch_messages && bytes < opts.max_batch_bytes {
        let Ok(m) = queue.try_recv() else { break };
        let b = bytes::Bytes::from(wire::encode_message(&m));
        bytes += b.len();
        messages.push(b);
    }
    (RaftBatch { messages }, bytes)
}
