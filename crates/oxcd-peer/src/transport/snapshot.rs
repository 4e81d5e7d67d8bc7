//! Sending a snapshot: the handler exports the backend to a file, which is streamed to the
//! peer in chunks on a stream of its own, the `MsgSnapshot` in the first chunk; raft is
//! told how it ended (`report_snapshot`).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxcd_raft::eraftpb::Message;
use oxcd_raft::{wire, SnapshotStatus};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Shared;
use crate::proto::raft_peer_client::RaftPeerClient;
use crate::proto::SnapshotChunk;
use crate::stats::LinkStats;
use crate::{identity, PeerError};

/// How often progress is logged while a snapshot is sent.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Removes a file when dropped.
pub(crate) struct RemoveOnDrop(pub(crate) Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Starts sending `msg` (a `MsgSnapshot`) to its destination, unless one is being sent to
/// it already (raft sends no other before the first is reported).
pub(super) fn start(shared: &Arc<Shared>, msg: Message) {
    let to = msg.to;
    let found = shared
        .peers
        .lock()
        .get(&to)
        .map(|p| (p.urls.borrow().clone(), p.snapshot_busy.clone()));
    let Some((urls, busy)) = found else {
        tracing::warn!(peer = %format!("{to:x}"), "no URLs for a snapshot's destination");
        shared.report_snapshot(to, SnapshotStatus::Failure);
        return;
    };
    if busy.swap(true, Ordering::AcqRel) {
        tracing::debug!(peer = %format!("{to:x}"), "a snapshot is being sent already");
        return;
    }
    let shared2 = shared.clone();
    let link = shared.opts.stats.link(to);
    shared.runtime.spawn(async move {
        let index = msg.get_snapshot().get_metadata().index;
        let started = Instant::now();
        link.snapshot_send_inflight.fetch_add(1, Ordering::Relaxed);
        let result = send(&shared2, msg, &urls).await;
        link.snapshot_send_inflight.fetch_sub(1, Ordering::Relaxed);
        busy.store(false, Ordering::Release);
        match result {
            Ok(bytes) => {
                LinkStats::add(&link.sent_bytes, bytes);
                LinkStats::add(&link.snapshot_send_success, 1);
                link.snapshot_send_seconds
                    .observe(started.elapsed().as_secs_f64());
                tracing::info!(
                    peer = %format!("{to:x}"),
                    index,
                    bytes,
                    took_ms = started.elapsed().as_millis() as u64,
                    "sent a snapshot"
                );
                shared2.report_snapshot(to, SnapshotStatus::Finish);
            }
            Err(e) => {
                LinkStats::add(&link.sent_failures, 1);
                LinkStats::add(&link.snapshot_send_failures, 1);
                tracing::warn!(peer = %format!("{to:x}"), index, error = %e, "sending a snapshot failed");
                if e == PeerError::MemberRemoved {
                    shared2.mark_removed();
                }
                shared2.report_snapshot(to, SnapshotStatus::Failure);
            }
        }
    });
}

/// Exports, streams and removes the file; returns the bytes the peer confirmed.
async fn send(shared: &Arc<Shared>, msg: Message, urls: &[String]) -> Result<u64, PeerError> {
    let to = msg.to;
    let index = msg.get_snapshot().get_metadata().index;
    let dir = shared.handler.snapshot_dir();
    std::fs::create_dir_all(&dir)
        .map_err(|e| PeerError::Internal(format!("cannot create {}: {e}", dir.display())))?;
    let path = crate::files::sending(&dir, index, to);
    let _cleanup = RemoveOnDrop(Some(path.clone()));
    let handler = shared.handler.clone();
    let export_path = path.clone();
    let size = tokio::task::spawn_blocking(move || handler.export_snapshot(&export_path))
        .await
        .map_err(|e| PeerError::Internal(format!("snapshot export panicked: {e}")))??;
    tracing::info!(peer = %format!("{to:x}"), index, bytes = size, "sending a snapshot");

    let channel = shared.opts.dial.connect(urls).await?;
    let mut client = RaftPeerClient::new(channel);
    let (tx, rx) = mpsc::channel::<SnapshotChunk>(2);
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    identity::stamp(
        req.metadata_mut(),
        shared.handler.cluster_id(),
        shared.handler.member_id(),
    );
    let header = wire::encode_message(&msg);
    let chunk = shared.opts.snapshot_chunk_bytes.max(1);
    let (produced, answer) = tokio::join!(
        produce(&path, header, size, chunk, to, tx),
        client.snapshot(req)
    );
    let answer = answer.map_err(PeerError::from)?.into_inner();
    let sent = produced?;
    if answer.received_bytes != sent {
        return Err(PeerError::Internal(format!(
            "peer received {} of {sent} bytes",
            answer.received_bytes
        )));
    }
    Ok(sent)
}

/// Reads the file in chunks into the stream; returns the bytes sent.
async fn produce(
    path: &Path,
    header: Vec<u8>,
    size: u64,
    chunk: usize,
    to: u64,
    tx: mpsc::Sender<SnapshotChunk>,
) -> Result<u64, PeerError> {
    let io = |e: std::io::Error| PeerError::Internal(format!("reading {}: {e}", path.display()));
    let mut file = tokio::fs::File::open(path).await.map_err(io)?;
    let mut first = Some(header);
    let (mut sent, started) = (0u64, Instant::now());
    let mut next_log = started + PROGRESS_EVERY;
    loop {
        let mut data = Vec::with_capacity(chunk);
        while data.len() < chunk {
            let n = (&mut file)
                .take((chunk - data.len()) as u64)
                .read_to_end(&mut data)
                .await
                .map_err(io)?;
            if n == 0 {
                break;
            }
        }
        let last = data.len() < chunk;
        if data.is_empty() && first.is_none() {
            break;
        }
        let n = data.len() as u64;
        let piece = SnapshotChunk {
            total_bytes: if first.is_some() { size } else { 0 },
            message: first.take().unwrap_or_default().into(),
            data: data.into(),
        };
        if tx.send(piece).await.is_err() {
            // The call ended early; its status says why.
            break;
        }
        sent += n;
        if Instant::now() >= next_log {
            next_log += PROGRESS_EVERY;
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            tracing::info!(
                peer = %format!("{to:x}"),
                sent_bytes = sent,
                total_bytes = size,
                rate_mib_per_s = format!("{:.1}", sent as f64 / secs / (1 << 20) as f64),
                "sending a snapshot"
            );
        }
        if last {
            break;
        }
    }
    Ok(sent)
}
