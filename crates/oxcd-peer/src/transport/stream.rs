//! The task behind each peer: connect, keep one client stream of message batches open,
//! and on failure report the peer unreachable, wait (backing off) and reconnect.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use oxcd_raft::eraftpb::Message;
use oxcd_raft::wire;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::Shared;
use crate::proto::raft_peer_client::RaftPeerClient;
use crate::proto::RaftBatch;
use crate::{identity, PeerError};

/// Why a stream ended.
enum Ended {
    /// The transport dropped the peer.
    QueueClosed,
    /// The connection failed or the peer refused it.
    Broken(PeerError),
}

/// Runs until the peer is removed from the transport.
pub(super) async fn run(
    shared: Arc<Shared>,
    to: u64,
    mut queue: mpsc::Receiver<Message>,
    mut urls: watch::Receiver<Vec<String>>,
) {
    let opts = &shared.opts;
    let mut backoff = opts.backoff_min;
    // Log a change of state once, not every retry.
    let mut healthy = true;
    loop {
        let list = urls.borrow_and_update().clone();
        let ended = match opts.dial.connect(&list).await {
            Ok(channel) => {
                tracing::info!(peer = %format!("{to:x}"), urls = ?list, "peer stream established");
                healthy = true;
                backoff = opts.backoff_min;
                stream(&shared, to, channel, &mut queue).await
            }
            Err(e) => Ended::Broken(e),
        };
        let e = match ended {
            Ended::QueueClosed => return,
            Ended::Broken(e) => e,
        };
        shared.report_unreachable(to);
        if healthy {
            tracing::warn!(peer = %format!("{to:x}"), urls = ?list, error = %e, "peer unreachable");
            healthy = false;
        } else {
            tracing::debug!(peer = %format!("{to:x}"), error = %e, "peer still unreachable");
        }
        if e == PeerError::MemberRemoved {
            shared.mark_removed();
        }
        if e.is_refusal() {
            tracing::error!(peer = %format!("{to:x}"), error = %e, "peer refused this member");
            backoff = opts.backoff_max;
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
                    Some(_) => shared.count_dropped(1),
                    None => return,
                },
            }
        }
        backoff = (backoff * 2).min(opts.backoff_max);
    }
}

/// Sends queued messages in batches on one stream until it breaks.
async fn stream(
    shared: &Shared,
    to: u64,
    channel: Channel,
    queue: &mut mpsc::Receiver<Message>,
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
    loop {
        let first = tokio::select! {
            r = &mut call => return broken(r),
            m = queue.recv() => match m {
                Some(m) => m,
                None => return Ended::QueueClosed,
            },
        };
        let batch = collect(shared, first, queue);
        let n = batch.messages.len() as u64;
        tokio::select! {
            r = &mut call => return broken(r),
            sent = tx.send(batch) => {
                if sent.is_err() {
                    return Ended::Broken(PeerError::Unreachable("stream closed".into()));
                }
                shared.counters.sent.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

/// `first` and whatever else is queued, up to the batch limits.
fn collect(shared: &Shared, first: Message, queue: &mut mpsc::Receiver<Message>) -> RaftBatch {
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
    RaftBatch { messages }
}
