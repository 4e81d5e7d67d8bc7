//! Maintenance.Snapshot: a consistent point-in-time copy of the backend streamed to a
//! client, framed as etcd frames it (`api/v3rpc/maintenance.go`): chunks, each with the
//! bytes still to come in `remaining_bytes`, then one last message holding the SHA-256 of
//! everything sent (`remaining_bytes` 0). `etcdctl snapshot save` checks that the file it
//! wrote ends with that digest (its size is 32 past a multiple of 512) and `snapshot
//! restore` checks the digest itself.
//!
//! The copy is a dump of the backend's rows (`oxcd_mvcc::SnapshotDump`), read under one
//! read transaction while the member keeps serving reads and writes, and sent as it is
//! read: nothing is written to the server's disk. It is oxcd's format, not etcd's bbolt:
//! `oxcdctl snapshot status|restore` read it.

use std::io::Write;
use std::time::{Duration, Instant};

use oxcd_mvcc::SnapshotDump;
use oxcd_proto::etcdserverpb::SnapshotResponse;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::error::ServerError;
use crate::server::EtcdServer;

/// Bytes per message. etcd sends 32 KiB (`snapshotSendBufferSize`); clients only
/// concatenate the blobs, and 1 MiB messages carry a 1 GiB snapshot to etcdctl in 0.6×
/// the time of 32 KiB ones (docs/benchmarks.md), while staying far below the 4 MiB
/// that gRPC clients accept by default.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// Messages buffered between the dump and the client (4 MiB).
const BUFFERED_CHUNKS: usize = 4;

/// How often a long transfer logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// One message of a snapshot stream, or the error that ends it.
pub type SnapshotChunk = Result<SnapshotResponse, ServerError>;

impl EtcdServer {
    /// Maintenance.Snapshot: a dump of the backend as of now (`oxcd_mvcc::SnapshotDump`)
    /// and the stream of its chunks followed by its SHA-256 (see the module doc). Allowed
    /// on a learner, as in etcd. The stream stops early if the receiver is dropped.
    pub async fn snapshot(
        &self,
        cred: &crate::auth::Credentials,
    ) -> Result<mpsc::Receiver<SnapshotChunk>, ServerError> {
        self.check_admin(cred).await?;
        let store = self.store.clone();
        let started = Instant::now();
        let dump = tokio::task::spawn_blocking(move || store.dump_snapshot())
            .await
            .map_err(|e| ServerError::Internal(format!("snapshot task failed: {e}")))??;
        tracing::info!(
            total_bytes = dump.size,
            size = %human_bytes(dump.size),
            revision = dump.revision,
            counted_in = ?started.elapsed(),
            "sending database snapshot to client"
        );
        let (tx, rx) = mpsc::channel(BUFFERED_CHUNKS);
        tokio::task::spawn_blocking(move || send_dump(&dump, tx, started));
        Ok(rx)
    }
}

/// Writes `dump` into chunks on `tx`, then its digest.
fn send_dump(dump: &SnapshotDump, tx: mpsc::Sender<SnapshotChunk>, started: Instant) {
    let total = dump.size;
    let mut out = ChunkSender {
        tx,
        chunk: Vec::with_capacity(SNAPSHOT_CHUNK_BYTES),
        hash: Sha256::new(),
        sent: 0,
        total,
        last_log: Instant::now(),
    };
    let written = dump
        .write_to(&mut out)
        .map_err(|e| e.to_string())
        .and_then(|()| out.flush_chunk().map_err(|e| e.to_string()));
    if let Err(e) = written {
        if out.tx.is_closed() {
            tracing::warn!(
                sent = out.sent,
                total,
                "snapshot stream closed by the client"
            );
        } else {
            tracing::warn!(sent = out.sent, total, error = %e, "cannot send the snapshot");
            let _ = out.tx.blocking_send(Err(ServerError::Internal(format!(
                "cannot read the snapshot after {} of {total} bytes: {e}",
                out.sent
            ))));
        }
        return;
    }
    let sha = out.hash.finalize().to_vec();
    tracing::info!(
        total_bytes = total,
        checksum_size = sha.len(),
        "sending database sha256 checksum to client"
    );
    let done = SnapshotResponse {
        header: None,
        remaining_bytes: 0,
        blob: sha,
        version: String::new(),
    };
    if out.tx.blocking_send(Ok(done)).is_ok() {
        crate::backend_observer::observe(crate::BackendOp::Snapshot, started.elapsed());
        tracing::info!(
            total_bytes = total,
            size = %human_bytes(total),
            took = ?started.elapsed(),
            "successfully sent database snapshot to client"
        );
    }
}

/// The dump's writer: cuts it into [`SNAPSHOT_CHUNK_BYTES`] messages, each with the bytes
/// still to come, hashing what it sends.
struct ChunkSender {
    tx: mpsc::Sender<SnapshotChunk>,
    chunk: Vec<u8>,
    hash: Sha256,
    sent: u64,
    total: u64,
    last_log: Instant,
}

impl ChunkSender {
    /// Sends the bytes gathered so far, if any.
    fn flush_chunk(&mut self) -> std::io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let blob = std::mem::replace(&mut self.chunk, Vec::with_capacity(SNAPSHOT_CHUNK_BYTES));
        self.hash.update(&blob);
        self.sent += blob.len() as u64;
        let msg = SnapshotResponse {
            header: None,
            remaining_bytes: self.total.saturating_sub(self.sent),
            blob,
            // etcd 3.6's storage version; etcd 3.4 and 3.5 send none.
            version: String::new(),
        };
        if self.tx.blocking_send(Ok(msg)).is_err() {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        if self.last_log.elapsed() >= PROGRESS_EVERY {
            self.last_log = Instant::now();
            tracing::info!(
                sent_bytes = self.sent,
                total_bytes = self.total,
                percent = self.sent * 100 / self.total.max(1),
                "sending database snapshot to client"
            );
        }
        Ok(())
    }
}

impl Write for ChunkSender {
    fn write(&mut self, mut buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len();
        while !buf.is_empty() {
            let room = SNAPSHOT_CHUNK_BYTES - self.chunk.len();
            let take = room.min(buf.len());
            self.chunk.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.chunk.len() == SNAPSHOT_CHUNK_BYTES {
                self.flush_chunk()?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `n` bytes as go-humanize writes them (SI units: "2.1 GB").
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let e = e.min(UNITS.len() - 1);
    let v = n as f64 / 1000f64.powi(e as i32);
    if v < 10.0 {
        format!("{v:.1} {}", UNITS[e])
    } else {
        format!("{v:.0} {}", UNITS[e])
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn humanized_like_go() {
        assert_eq!(human_bytes(5), "5 B");
        assert_eq!(human_bytes(2 * 1024 * 1024 * 1024), "2.1 GB");
        assert_eq!(human_bytes(20480), "20 kB");
    }
}
