//! `make-mirror <destination>`: copies the keys under `--prefix` to another cluster at one
//! revision, then applies every later change (one txn per source revision), printing the
//! number of keys mirrored every 30 seconds, as etcdctl.
//!
//! `OXCDCTL_MAKE_MIRROR_INTERVAL` (whole seconds) shortens that period: a test knob, not part
//! of etcdctl's interface.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use oxcd_proto::etcdserverpb::{
    request_op, watch_request, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    WatchCreateRequest, WatchRequest,
};
use oxcd_proto::mvccpb::event::EventType;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::{emit, Ctx};
use crate::cli::MakeMirrorArgs;
use crate::conn::{self, Connection, ConnectionConfig};
use crate::error::{CtlError, ExitCode, RpcError};
use crate::output::prefix_range_end;

/// Keys fetched per range request of the initial copy (clientv3 mirror's batch limit).
const BATCH: i64 = 1000;

/// etcdctl's period between two prints of the count of keys mirrored.
const REPORT_EVERY: Duration = Duration::from_secs(30);

/// The test knob that replaces [`REPORT_EVERY`] (whole seconds, > 0).
const REPORT_EVERY_ENV: &str = "OXCDCTL_MAKE_MIRROR_INTERVAL";

/// `make-mirror`.
pub(super) async fn run(ctx: &Ctx, a: &MakeMirrorArgs) -> Result<(), CtlError> {
    if a.args.len() != 1 {
        return Err(CtlError::bad_args(
            "make-mirror takes one destination argument",
        ));
    }
    let dest = Connection::new(ConnectionConfig {
        endpoints: vec![a.args[0].clone()],
        credentials: None,
        tls: crate::tls::client_config(&crate::tls::TlsFlags {
            cert: a.dest_cert.clone(),
            key: a.dest_key.clone(),
            cacert: a.dest_cacert.clone(),
            insecure_transport: a.dest_insecure_transport,
            insecure_skip_verify: false,
        })
        .map_err(CtlError::bad_args)?,
        ..ctx.conn.config().clone()
    });
    if a.no_dest_prefix && !a.dest_prefix.is_empty() {
        return Err(CtlError::bad_args(
            "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one",
        ));
    }
    let dest_prefix = if !a.no_dest_prefix && a.dest_prefix.is_empty() {
        a.prefix.clone()
    } else {
        a.dest_prefix.clone()
    };
    let total = Arc::new(AtomicI64::new(0));
    let counter = Arc::clone(&total);
    let every = std::env::var(REPORT_EVERY_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(REPORT_EVERY, Duration::from_secs);
    let reporter = tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let _ = emit(format!("{}\n", counter.load(Ordering::Relaxed)).as_bytes());
        }
    });
    let result = mirror(ctx, &dest, &a.prefix, &dest_prefix, &total).await;
    reporter.abort();
    Err(match result {
        Ok(()) => CtlError::new(ExitCode::Error, "<nil>"),
        Err(e) => e.fail(ExitCode::Error),
    })
}

/// The key with its first `prefix` replaced by `dest` (Go's `strings.Replace(key, p, d, 1)`).
fn modify_prefix(key: &[u8], prefix: &str, dest: &str) -> Vec<u8> {
    let key = String::from_utf8_lossy(key);
    key.replacen(prefix, dest, 1).into_bytes()
}

async fn mirror(
    ctx: &Ctx,
    dest: &Connection,
    prefix: &str,
    dest_prefix: &str,
    total: &AtomicI64,
) -> Result<(), RpcError> {
    let probe = RangeRequest {
        key: b"foo".to_vec(),
        ..Default::default()
    };
    let rev = ctx
        .conn
        .unary(None, |s| async move {
            conn::kv(&s).range(s.request(probe)).await
        })
        .await?;
    let rev = rev.header.map(|h| h.revision).unwrap_or_default();
    let (mut key, end) = if prefix.is_empty() {
        (vec![0], vec![0])
    } else {
        (
            prefix.as_bytes().to_vec(),
            prefix_range_end(prefix.as_bytes()),
        )
    };
    loop {
        let request = RangeRequest {
            key: key.clone(),
            range_end: end.clone(),
            limit: BATCH,
            revision: rev,
            ..Default::default()
        };
        let page = ctx
            .conn
            .unary(None, |s| async move {
                conn::kv(&s).range(s.request(request)).await
            })
            .await?;
        for kv in &page.kvs {
            let put = PutRequest {
                key: modify_prefix(&kv.key, prefix, dest_prefix),
                value: kv.value.clone(),
                ..Default::default()
            };
            dest.unary(
                None,
                |s| async move { conn::kv(&s).put(s.request(put)).await },
            )
            .await?;
            total.fetch_add(1, Ordering::Relaxed);
        }
        match (page.more, page.kvs.last()) {
            (true, Some(last)) => {
                key = last.key.clone();
                key.push(0);
            }
            _ => break,
        }
    }
    let session = ctx.conn.session().await?;
    let (tx, rx) = mpsc::channel(4);
    let create = WatchCreateRequest {
        key: key_of(prefix),
        range_end: end,
        start_revision: rev + 1,
        ..Default::default()
    };
    let _ = tx
        .send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
        })
        .await;
    let mut stream = conn::watch(&session)
        .watch(session.request(ReceiverStream::new(rx)))
        .await
        .map_err(|s| RpcError::from_status(&s))?
        .into_inner();
    while let Some(item) = stream.next().await {
        let r = item.map_err(|s| RpcError::from_status(&s))?;
        if r.compact_revision != 0 {
            return Err(RpcError::Status {
                code: tonic::Code::OutOfRange,
                message: "etcdserver: mvcc: required revision has been compacted".into(),
            });
        }
        let mut ops: Vec<RequestOp> = Vec::new();
        let mut last_rev = 0;
        for e in &r.events {
            let kv = e.kv.clone().unwrap_or_default();
            if last_rev != 0 && kv.mod_revision > last_rev {
                commit(dest, std::mem::take(&mut ops)).await?;
            }
            last_rev = kv.mod_revision;
            let target = modify_prefix(&kv.key, prefix, dest_prefix);
            let op = if e.r#type == EventType::Delete as i32 {
                request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                    key: target,
                    ..Default::default()
                })
            } else {
                request_op::Request::RequestPut(PutRequest {
                    key: target,
                    value: kv.value,
                    ..Default::default()
                })
            };
            ops.push(RequestOp { request: Some(op) });
            total.fetch_add(1, Ordering::Relaxed);
        }
        if !ops.is_empty() {
            commit(dest, ops).await?;
        }
    }
    drop(tx);
    Ok(())
}

fn key_of(prefix: &str) -> Vec<u8> {
    if prefix.is_empty() {
        vec![0]
    } else {
        prefix.as_bytes().to_vec()
    }
}

async fn commit(dest: &Connection, success: Vec<RequestOp>) -> Result<(), RpcError> {
    let txn = TxnRequest {
        compare: vec![],
        success,
        failure: vec![],
    };
    dest.unary(
        None,
        |s| async move { conn::kv(&s).txn(s.request(txn)).await },
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_replaced_once() {
        assert_eq!(modify_prefix(b"a/a/k", "a/", "b/"), b"b/a/k");
        assert_eq!(modify_prefix(b"k", "", ""), b"k");
    }
}
