//! `snapshot save` (the server's backend snapshot, streamed to a file), `snapshot status`
//! (of an oxcd snapshot, or of an etcd bbolt file) and `snapshot restore` (of an oxcd
//! snapshot, into a new data dir: `oxcd_core::restore`).
//!
//! Restore lives here rather than in an `oxcd restore` subcommand because etcdctl 3.4 is
//! where operators' scripts call it (`etcdctl snapshot restore` with these flags), and
//! oxcdctl is etcdctl's drop-in; `oxcd` itself takes only etcd's server flags, as etcd
//! does.

use std::io::Write;

use oxcd_proto::etcdserverpb::SnapshotRequest;
use tokio_stream::StreamExt;

use super::{emit, Ctx};
use crate::bolt::{BoltError, Crc32c, Db};
use crate::cli::SnapshotCommand;
use crate::conn;
use crate::error::{CtlError, ExitCode, RpcError};
use crate::golog::{self, json_string};
use crate::output::{DbStatus, Printer};

/// `snapshot save|restore`.
pub(super) async fn run(ctx: &Ctx, command: SnapshotCommand) -> Result<(), CtlError> {
    match command {
        SnapshotCommand::Save { args } => save(ctx, &args).await,
        SnapshotCommand::Restore(args) => restore(&args),
        SnapshotCommand::Status { args } => status(ctx.printer, &args),
    }
}

/// `snapshot status <file>`: hash (CRC-32C over bucket names, keys and values), revision,
/// number of keys and size, as etcd's `snapshot.Status`, of an etcd (bbolt) snapshot or of
/// an oxcd one (its tables for buckets: see [`oxcd_status`]).
pub(super) fn status(printer: Printer, args: &[String]) -> Result<(), CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args(
            "snapshot status requires exactly one argument",
        ));
    }
    let path = std::path::Path::new(&args[0]);
    let mut head = [0u8; 8];
    let n = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .unwrap_or(0);
    if oxcd_mvcc::is_backend_file(&head[..n]) || oxcd_mvcc::is_dump(&head[..n]) {
        let status = oxcd_status(path).map_err(|e| CtlError::new(ExitCode::Error, e))?;
        return emit(&printer.db_status(&status)?);
    }
    let data = std::fs::read(&args[0]).map_err(|e| {
        let text = e.to_string();
        let cause = text
            .split(" (os error")
            .next()
            .unwrap_or(&text)
            .to_lowercase();
        CtlError::new(ExitCode::Error, format!("stat {}: {cause}", args[0]))
    })?;
    let status = db_status(&data).map_err(|e| CtlError::new(ExitCode::Error, e))?;
    emit(&printer.db_status(&status)?)
}

/// The status of an oxcd snapshot (a dump as Maintenance.Snapshot streams it, or a redb
/// backend; either with or without its SHA-256 trailer): the hash is CRC-32C over each
/// table's name and then its keys and values, in table-name order (etcd's over bbolt
/// buckets, the same way), the revision table's values being its logical rows however the
/// backend stores them (a large row's chunks are not visited), so a dump and the backend
/// restored from it hash alike; the revision is the store's; total keys counts the entries
/// of every table, as etcd counts every bucket's (a large row once); the size is the
/// file's less its trailer.
fn oxcd_status(path: &std::path::Path) -> Result<DbStatus, String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("stat {}: {e}", path.display()))?
        .len();
    let len = if size % 512 == 32 { size - 32 } else { size };
    let mut hash = Crc32c::default();
    let mut table = String::new();
    let mut each = |t: &str, k: &[u8], v: &[u8]| {
        if t != table {
            table = t.to_string();
            hash.write(t.as_bytes());
        }
        hash.write(k);
        hash.write(v);
    };
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut head = [0u8; 8];
    let n = std::io::Read::read(&mut file, &mut head)
        .map_err(|e| format!("read {}: {e}", path.display()))?;
    let scan = if oxcd_mvcc::is_dump(&head[..n]) {
        let mut r =
            std::io::BufReader::with_capacity(1 << 20, std::io::Read::chain(&head[..n], file));
        oxcd_mvcc::scan_dump(&mut r, len, &mut each)
    } else {
        oxcd_mvcc::scan_file(path, len, &mut each)
    }
    .map_err(|e| format!("snapshot file integrity check failed: {e}"))?;
    Ok(DbStatus {
        hash: hash.sum(),
        revision: scan.revision,
        total_key: scan.total_keys,
        total_size: len,
    })
}

/// `snapshot restore <file>`: a new data dir from an oxcd snapshot, as etcdctl restores
/// one (its flags, texts and log lines).
pub(super) fn restore(a: &crate::cli::RestoreArgs) -> Result<(), CtlError> {
    if a.args.len() != 1 {
        return Err(CtlError::bad_args(
            "snapshot restore requires exactly one argument",
        ));
    }
    let cfg = oxcd_core::restore::RestoreConfig {
        snapshot: a.args[0].clone().into(),
        name: a.name.clone(),
        initial_cluster: a.initial_cluster.clone(),
        initial_cluster_token: a.initial_cluster_token.clone(),
        initial_advertise_peer_urls: a
            .initial_advertise_peer_urls
            .split(',')
            .map(str::to_string)
            .collect(),
        data_dir: (!a.data_dir.is_empty()).then(|| a.data_dir.clone().into()),
        wal_dir: (!a.wal_dir.is_empty()).then(|| a.wal_dir.clone().into()),
        skip_hash_check: a.skip_hash_check,
        bump_revision: a.bump_revision,
        mark_compacted: a.mark_compacted,
    };
    oxcd_core::restore::check_revision_flags(cfg.bump_revision, cfg.mark_compacted)
        .map_err(CtlError::bad_args)?;
    let data_dir = cfg
        .data_dir
        .clone()
        .unwrap_or_else(|| format!("{}.etcd", cfg.name).into());
    let wal_dir = cfg
        .wal_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("member").join("wal"));
    let paths = [
        ("path", json_string(&a.args[0])),
        ("wal-dir", json_string(&wal_dir.display().to_string())),
        ("data-dir", json_string(&data_dir.display().to_string())),
        (
            "snap-dir",
            json_string(&data_dir.join("member").join("snap").display().to_string()),
        ),
    ];
    golog::info(
        true,
        "snapshot/v3_snapshot.go:296",
        "restoring snapshot",
        &paths,
    );
    let restored =
        oxcd_core::restore::restore(&cfg).map_err(|e| CtlError::new(ExitCode::Error, e))?;
    golog::info(
        true,
        "snapshot/v3_snapshot.go:309",
        "restored snapshot",
        &[
            paths[0].clone(),
            paths[1].clone(),
            paths[2].clone(),
            paths[3].clone(),
            ("revision", restored.revision.to_string()),
            (
                "member-id",
                json_string(&format!("{:x}", restored.member_id)),
            ),
            (
                "cluster-id",
                json_string(&format!("{:x}", restored.cluster_id)),
            ),
        ],
    );
    Ok(())
}

/// The status of a bbolt file's contents.
pub(super) fn db_status(data: &[u8]) -> Result<DbStatus, BoltError> {
    let db = Db::open(data)?;
    let mut hash = Crc32c::default();
    let mut status = DbStatus {
        total_size: db.high_water * db.page_size() as u64,
        ..Default::default()
    };
    db.for_each_bucket(|name, each| {
        hash.write(name);
        let is_key_bucket = name == b"key";
        each(&mut |k, v| {
            hash.write(k);
            hash.write(v);
            if is_key_bucket && k.len() >= 8 {
                let mut main = [0u8; 8];
                main.copy_from_slice(&k[..8]);
                status.revision = i64::from_be_bytes(main);
            }
            status.total_key += 1;
            Ok(())
        })
    })?;
    status.hash = hash.sum();
    Ok(status)
}

async fn save(ctx: &Ctx, args: &[String]) -> Result<(), CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args("snapshot save expects one argument"));
    }
    let path = &args[0];
    let partial = format!("{path}.part");
    let timeout = if ctx.command_timeout_set {
        Some(ctx.command_timeout)
    } else {
        None
    };
    let endpoint = ctx.endpoints().first().cloned().unwrap_or_default();
    let started = std::time::Instant::now();
    let mut size = 0u64;
    let work = async {
        let writer = oxcd_fs::SequentialFile::create(partial.as_ref())
            .and_then(FileWriter::start)
            .map_err(|e| RpcError::Status {
                code: tonic::Code::Unknown,
                message: e.to_string(),
            })?;
        // etcdctl's (zap) progress lines, on stderr.
        golog::info(
            true,
            "snapshot/v3_snapshot.go:119",
            "created temporary db file",
            &[("path", json_string(&partial))],
        );
        let session = ctx.conn.session().await?;
        let opened = conn::maintenance(&session)
            .snapshot(session.request(SnapshotRequest {}))
            .await;
        golog::info(
            false,
            "clientv3/maintenance.go:200",
            "opened snapshot stream; downloading",
            &[],
        );
        golog::info(
            true,
            "snapshot/v3_snapshot.go:127",
            "fetching snapshot",
            &[("endpoint", json_string(&endpoint))],
        );
        let receive_failed = |status: &tonic::Status| {
            let error = RpcError::from_status(status);
            golog::warn(
                "clientv3/maintenance.go:210",
                "failed to receive from snapshot stream; closing",
                &[("error", json_string(&error.grpc_text()))],
            );
            error
        };
        let mut stream = opened.map_err(|s| receive_failed(&s))?.into_inner();
        while let Some(item) = stream.next().await {
            let chunk = item.map_err(|s| receive_failed(&s))?;
            size += chunk.blob.len() as u64;
            if writer.blobs.send(chunk.blob).await.is_err() {
                // The writer stopped on an error: it says which.
                break;
            }
        }
        golog::info(
            false,
            "clientv3/maintenance.go:208",
            "completed snapshot read; closing",
            &[],
        );
        // Every byte received is written, and the file fsynced, before the checks below.
        writer.finish(size % 512 == 32).await?;
        // etcd's check that the stream ended with the database's digest.
        if size % 512 != 32 {
            return Err(RpcError::Status {
                code: tonic::Code::Unknown,
                message: format!("sha256 checksum not found [bytes: {size}]"),
            });
        }
        Ok::<(), RpcError>(())
    };
    let result = match timeout {
        Some(t) => tokio::time::timeout(t, work)
            .await
            .unwrap_or(Err(RpcError::DeadlineExceeded)),
        None => work.await,
    };
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e.fail(ExitCode::Interrupted));
    }
    golog::info(
        true,
        "snapshot/v3_snapshot.go:142",
        "fetched snapshot",
        &[
            ("endpoint", json_string(&endpoint)),
            ("size", json_string(&golog::humanize_bytes(size))),
            ("took", format!("{}", started.elapsed().as_secs_f64())),
        ],
    );
    std::fs::rename(&partial, path).map_err(|e| CtlError::new(ExitCode::Interrupted, e))?;
    golog::info(
        true,
        "snapshot/v3_snapshot.go:152",
        "saved",
        &[("path", json_string(path))],
    );
    emit(format!("Snapshot saved at {path}\n").as_bytes())
}

/// Messages (of up to 1 MiB from oxcd, 32 KiB from etcd) queued between the stream and the
/// thread that writes them: the stream goes on arriving while a write waits for the disk.
const QUEUED_BLOBS: usize = 32;

/// The thread that writes a snapshot being received to its `.part` file
/// (`oxcd_fs::SequentialFile`: around the page cache, straight to the disk), so the disk
/// writes while the stream arrives and the fsync at the end (etcdctl's) has nothing left
/// to write; the stream is read meanwhile.
struct FileWriter {
    /// Where the received blobs go, in order.
    blobs: tokio::sync::mpsc::Sender<Vec<u8>>,
    /// The file once every blob is written, or the first write error.
    written: tokio::sync::oneshot::Receiver<std::io::Result<oxcd_fs::SequentialFile>>,
}

impl FileWriter {
    fn start(mut out: oxcd_fs::SequentialFile) -> std::io::Result<FileWriter> {
        let (blobs, mut queue) = tokio::sync::mpsc::channel::<Vec<u8>>(QUEUED_BLOBS);
        let (written_tx, written) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("snapshot-writer".into())
            .spawn(move || {
                let mut result = Ok(());
                while let Some(blob) = queue.blocking_recv() {
                    if let Err(e) = out.write_all(&blob) {
                        result = Err(e);
                        break;
                    }
                }
                // Nobody waits for it if the save failed meanwhile.
                let _ = written_tx.send(result.map(|()| out));
            })?;
        Ok(FileWriter { blobs, written })
    }

    /// Waits until every blob sent is written (or the writer failed), then, if `sync`,
    /// writes what is still buffered and fsyncs the file.
    async fn finish(self, sync: bool) -> Result<(), RpcError> {
        let failed = |message: String| RpcError::Status {
            code: tonic::Code::Unknown,
            message,
        };
        drop(self.blobs);
        let out = self
            .written
            .await
            .map_err(|_| failed("the snapshot file's writer stopped".into()))?
            .map_err(|e| failed(e.to_string()))?;
        if sync {
            out.finish().map_err(|e| failed(e.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::FileWriter;

    #[tokio::test]
    async fn the_writer_writes_every_blob_in_order() {
        let dir = std::env::temp_dir().join(format!("oxcdctl-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("snapshot.db.part");
        let writer = FileWriter::start(oxcd_fs::SequentialFile::create(&path).unwrap()).unwrap();
        // Blobs of odd sizes, more than the queue holds and past several direct steps.
        let mut want = Vec::new();
        for i in 0..80u32 {
            let blob = vec![i as u8; 100_000 + i as usize * 1_001];
            want.extend_from_slice(&blob);
            writer.blobs.send(blob).await.unwrap();
        }
        writer.finish(true).await.unwrap();
        let got = std::fs::read(&path).unwrap();
        // A stream that fails is not synced: its file is removed anyway.
        let failed = dir.join("failed.part");
        let writer = FileWriter::start(oxcd_fs::SequentialFile::create(&failed).unwrap()).unwrap();
        writer.blobs.send(vec![1; 10]).await.unwrap();
        writer.finish(false).await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(got.len(), want.len());
        assert!(got == want);
    }
}
