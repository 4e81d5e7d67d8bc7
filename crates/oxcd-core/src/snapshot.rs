//! Maintenance.Snapshot: a consistent point-in-time copy of the backend streamed to a
//! client, as etcd streams it (`api/v3rpc/maintenance.go`): 32 KiB chunks, each with the
//! bytes still to come in `remaining_bytes`, then one last message holding the SHA-256 of
//! everything sent (`remaining_bytes` 0). `etcdctl snapshot save` checks that the file it
//! wrote ends with that digest (its size is 32 past a multiple of 512) and `snapshot
//! restore` checks the digest itself.
//!
//! The copy is the peers' snapshot export (`Store::export_snapshot`): the tables copied
//! under one read transaction into a new file in the snap dir, while the member keeps
//! serving reads and writes. The file is unlinked once opened, so nothing is left behind
//! whatever happens to the stream (and a crash's leftover is removed at start with the
//! transport's partial snapshots). The file is oxcd's backend format (redb), not etcd's
//! bbolt: `oxcdctl snapshot status|restore` read it.

use std::io::Read;
use std::time::{Duration, Instant};

use oxcd_proto::etcdserverpb::SnapshotResponse;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::error::ServerError;
use crate::server::EtcdServer;

/// Bytes per message (etcd's `snapshotSendBufferSize`).
pub const SNAPSHOT_CHUNK_BYTES: usize = 32 * 1024;

/// Messages buffered between the file reader and the client (2 MiB).
const BUFFERED_CHUNKS: usize = 64;

/// How often a long transfer logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// One message of a snapshot stream, or the error that ends it.
pub type SnapshotChunk = Result<SnapshotResponse, ServerError>;

impl EtcdServer {
    /// Maintenance.Snapshot: exports the backend as of now and returns the stream of its
    /// chunks followed by its SHA-256 (see the module doc). Allowed on a learner, as in
    /// etcd. The stream stops early if the receiver is dropped.
    pub async fn snapshot(
        &self,
        cred: &crate::auth::Credentials,
    ) -> Result<mpsc::Receiver<SnapshotChunk>, ServerError> {
        self.check_admin(cred).await?;
        let store = self.store.clone();
        let dir = store
            .path()
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let tmp = dir.join(format!("client-{:x}.snap.db.sending", self.next_id()));
        let started = Instant::now();
        let (file, info) = tokio::task::spawn_blocking(move || {
            let info = store.export_snapshot(&tmp)?;
            let opened = std::fs::File::open(&tmp).map_err(|e| {
                ServerError::Internal(format!("cannot open the snapshot {}: {e}", tmp.display()))
            });
            // Open or not, the name goes: the open file lives until the stream ends.
            if let Err(e) = std::fs::remove_file(&tmp) {
                tracing::warn!(path = %tmp.display(), error = %e, "cannot remove a snapshot file");
            }
            Ok::<_, ServerError>((opened?, info))
        })
        .await
        .map_err(|e| ServerError::Internal(format!("snapshot task failed: {e}")))??;
        tracing::info!(
            total_bytes = info.size,
            size = %human_bytes(info.size),
            revision = info.revision,
            exported_in = ?started.elapsed(),
            "sending database snapshot to client"
        );
        let (tx, rx) = mpsc::channel(BUFFERED_CHUNKS);
        tokio::task::spawn_blocking(move || send_file(file, info.size, &tx, started));
        Ok(rx)
    }
}

/// Reads `file` (`total` bytes) into chunks on `tx`, then the digest.
fn send_file(
    mut file: std::fs::File,
    total: u64,
    tx: &mpsc::Sender<SnapshotChunk>,
    started: Instant,
) {
    let mut hash = Sha256::new();
    let mut sent = 0u64;
    let mut last_log = Instant::now();
    while sent < total {
        let want = (total - sent).min(SNAPSHOT_CHUNK_BYTES as u64) as usize;
        let mut blob = vec![0u8; want];
        if let Err(e) = file.read_exact(&mut blob) {
            let _ = tx.blocking_send(Err(ServerError::Internal(format!(
                "cannot read the snapshot after {sent} of {total} bytes: {e}"
            ))));
            return;
        }
        hash.update(&blob);
        sent += want as u64;
        let msg = SnapshotResponse {
            header: None,
            remaining_bytes: total - sent,
            blob,
            // etcd 3.6's storage version; etcd 3.4 and 3.5 send none.
            version: String::new(),
        };
        if tx.blocking_send(Ok(msg)).is_err() {
            tracing::warn!(sent, total, "snapshot stream closed by the client");
            return;
        }
        if last_log.elapsed() >= PROGRESS_EVERY {
            last_log = Instant::now();
            tracing::info!(
                sent_bytes = sent,
                total_bytes = total,
                percent = sent * 100 / total.max(1),
                "sending database snapshot to client"
            );
        }
    }
    let sha = hash.finalize().to_vec();
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
    if tx.blocking_send(Ok(done)).is_ok() {
        crate::backend_observer::observe(crate::BackendOp::Snapshot, started.elapsed());
        tracing::info!(
            total_bytes = total,
            size = %human_bytes(total),
            took = ?started.elapsed(),
            "successfully sent database snapshot to client"
        );
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
