//! `lock` and `elect`, client-side on leases and create revisions, as clientv3's
//! `concurrency` package (so that they interoperate with Go programs using it).

use std::time::Duration;

use oxcd_proto::etcdserverpb::{
    compare, range_request, request_op, response_op, watch_request, Compare, DeleteRangeRequest,
    LeaseGrantRequest, PutRequest, RangeRequest, RangeResponse, RequestOp, ResponseHeader,
    TxnRequest, TxnResponse, WatchCreateRequest, WatchRequest,
};
use oxcd_proto::mvccpb::{event::EventType, KeyValue};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::lease::KeepAlive;
use super::{emit, Ctx};
use crate::conn;
use crate::error::{CtlError, ExitCode, RpcError};
use crate::output::prefix_range_end;

/// A lease kept alive in the background; `lost` turns true when it is gone.
struct Session {
    lease: i64,
    lost: watch::Receiver<bool>,
}

async fn new_session(ctx: &Ctx, ttl: i64) -> Result<Session, RpcError> {
    let grant = ctx
        .conn
        .unary(ctx.conn.command_timeout(), |s| async move {
            conn::lease(&s)
                .lease_grant(s.request(LeaseGrantRequest { ttl, id: 0 }))
                .await
        })
        .await?;
    let mut keep = KeepAlive::open(ctx, grant.id).await?;
    let (tx, lost) = watch::channel(false);
    tokio::spawn(async move {
        loop {
            match keep.renew().await {
                Ok(Some(r)) if r.ttl > 0 => {
                    tokio::time::sleep(Duration::from_millis((r.ttl as u64 * 1000 / 3).max(500)))
                        .await
                }
                _ => {
                    let _ = tx.send(true);
                    return;
                }
            }
        }
    });
    Ok(Session {
        lease: grant.id,
        lost,
    })
}

async fn range(ctx: &Ctx, request: RangeRequest) -> Result<RangeResponse, RpcError> {
    ctx.conn
        .unary(None, |s| async move {
            conn::kv(&s).range(s.request(request)).await
        })
        .await
}

async fn txn(ctx: &Ctx, request: TxnRequest) -> Result<TxnResponse, RpcError> {
    ctx.conn
        .unary(None, |s| async move {
            conn::kv(&s).txn(s.request(request)).await
        })
        .await
}

async fn delete(ctx: &Ctx, key: &[u8]) -> Result<(), RpcError> {
    let request = DeleteRangeRequest {
        key: key.to_vec(),
        ..Default::default()
    };
    ctx.conn
        .unary(None, |s| async move {
            conn::kv(&s).delete_range(s.request(request)).await
        })
        .await
        .map(|_| ())
}

/// `OpGet(prefix, WithFirstCreate())` / `WithLastCreate()`.
fn by_create(prefix: &[u8], order: range_request::SortOrder, max_create: i64) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_range_end(prefix),
        limit: 1,
        sort_order: order as i32,
        sort_target: range_request::SortTarget::Create as i32,
        max_create_revision: max_create,
        ..Default::default()
    }
}

/// The create-if-absent transaction of `Mutex.Lock` and `Election.Campaign`.
fn claim(key: &[u8], value: &[u8], lease: i64, owner_prefix: Option<&[u8]>) -> TxnRequest {
    let get_own = RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    };
    let put = RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    };
    let mut success = vec![put];
    let mut failure = vec![get_own];
    if let Some(prefix) = owner_prefix {
        let owner = RequestOp {
            request: Some(request_op::Request::RequestRange(by_create(
                prefix,
                range_request::SortOrder::Ascend,
                0,
            ))),
        };
        success.push(owner.clone());
        failure.push(owner);
    }
    TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Create as i32,
            key: key.to_vec(),
            target_union: Some(compare::TargetUnion::CreateRevision(0)),
            ..Default::default()
        }],
        success,
        failure,
    }
}

fn range_of(r: &TxnResponse, i: usize) -> Option<&RangeResponse> {
    match r.responses.get(i)?.response.as_ref()? {
        response_op::Response::ResponseRange(g) => Some(g),
        _ => None,
    }
}

/// Events of a watch on `key` (and `range_end`) from `revision`.
async fn open_watch(
    ctx: &Ctx,
    key: &[u8],
    range_end: Vec<u8>,
    revision: i64,
) -> Result<
    (
        mpsc::Sender<WatchRequest>,
        tonic::Streaming<oxcd_proto::etcdserverpb::WatchResponse>,
    ),
    RpcError,
> {
    let session = ctx.conn.session().await?;
    let (tx, rx) = mpsc::channel(4);
    let create = WatchCreateRequest {
        key: key.to_vec(),
        range_end,
        start_revision: revision,
        ..Default::default()
    };
    let _ = tx
        .send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
        })
        .await;
    let stream = conn::watch(&session)
        .watch(session.request(ReceiverStream::new(rx)))
        .await
        .map_err(|s| RpcError::from_status(&s))?
        .into_inner();
    Ok((tx, stream))
}

/// Waits until `key` is deleted (from `revision` on).
async fn wait_delete(ctx: &Ctx, key: &[u8], revision: i64) -> Result<(), RpcError> {
    let (_tx, mut stream) = open_watch(ctx, key, Vec::new(), revision).await?;
    while let Some(item) = stream.next().await {
        let r = item.map_err(|s| RpcError::from_status(&s))?;
        if r.events
            .iter()
            .any(|e| e.r#type == EventType::Delete as i32)
        {
            return Ok(());
        }
    }
    Err(RpcError::Status {
        code: tonic::Code::Cancelled,
        message: "watch closed".into(),
    })
}

/// Waits until every key under `prefix` created at or before `max_create` is gone.
async fn wait_deletes(ctx: &Ctx, prefix: &[u8], max_create: i64) -> Result<(), RpcError> {
    loop {
        let r = range(
            ctx,
            by_create(prefix, range_request::SortOrder::Descend, max_create),
        )
        .await?;
        let Some(last) = r.kvs.first() else {
            return Ok(());
        };
        let revision = r.header.as_ref().map(|h| h.revision).unwrap_or_default();
        wait_delete(ctx, &last.key, revision).await?;
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn interrupted() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn session_lost(lost: &mut watch::Receiver<bool>) {
    while !*lost.borrow() {
        if lost.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// `lock [--ttl N] <name> [command...]`.
pub(super) async fn lock(ctx: &Ctx, ttl: i64, args: &[String]) -> Result<(), CtlError> {
    // `lock name -- cmd -flag`: the separator is not part of the command (pflag drops it).
    let args: Vec<String> = match args.iter().position(|a| a == "--") {
        Some(i) => args[..i].iter().chain(&args[i + 1..]).cloned().collect(),
        None => args.to_vec(),
    };
    let args = &args[..];
    let Some(name) = args.first() else {
        return Err(CtlError::bad_args(
            "lock takes a lock name argument and an optional command to execute",
        ));
    };
    let fail = |e: RpcError| e.fail(ExitCode::Error);
    let mut session = new_session(ctx, ttl).await.map_err(fail)?;
    let prefix = format!("{name}/").into_bytes();
    let key = format!("{name}/{:x}", session.lease).into_bytes();
    let acquire = async {
        let r = txn(ctx, claim(&key, b"", session.lease, Some(&prefix))).await?;
        let my_rev = if r.succeeded {
            r.header.as_ref().map(|h| h.revision).unwrap_or_default()
        } else {
            range_of(&r, 0)
                .and_then(|g| g.kvs.first())
                .map(|kv| kv.create_revision)
                .unwrap_or_default()
        };
        let owner = range_of(&r, 1).and_then(|g| g.kvs.first().cloned());
        if owner.is_some_and(|o| o.create_revision != my_rev) {
            wait_deletes(ctx, &prefix, my_rev - 1).await?;
        }
        Ok::<i64, RpcError>(my_rev)
    };
    let _my_rev = tokio::select! {
        r = acquire => r.map_err(fail)?,
        _ = interrupted() => return Err(CtlError::new(ExitCode::Error, "context canceled")),
    };
    let current = range(
        ctx,
        RangeRequest {
            key: key.clone(),
            ..Default::default()
        },
    )
    .await
    .map_err(fail)?;
    if current.kvs.is_empty() {
        return Err(CtlError::new(ExitCode::Error, "lock lost on init"));
    }
    let key_text = String::from_utf8_lossy(&key).into_owned();
    if args.len() > 1 {
        let revision = current
            .header
            .as_ref()
            .map(|h| h.revision)
            .unwrap_or_default();
        let status = std::process::Command::new(&args[1])
            .args(&args[2..])
            .env("ETCD_LOCK_KEY", &key_text)
            .env("ETCD_LOCK_REV", revision.to_string())
            .status();
        delete(ctx, &key).await.map_err(fail)?;
        return match status {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(CtlError::new(
                ExitCode::Error,
                format!("exit status {}", s.code().unwrap_or(-1)),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CtlError::new(
                ExitCode::Error,
                format!("exec: \"{}\": executable file not found in $PATH", args[1]),
            )),
            Err(e) => Err(CtlError::new(ExitCode::Error, e)),
        };
    }
    emit(&ctx.printer.get(&current)?)?;
    tokio::select! {
        _ = interrupted() => delete(ctx, &key).await.map_err(fail),
        _ = session_lost(&mut session.lost) => Err(CtlError::new(ExitCode::Error, "session expired")),
    }
}

/// `elect [-l] <name> [proposal]`.
pub(super) async fn elect(ctx: &Ctx, listen: bool, args: &[String]) -> Result<(), CtlError> {
    if args.len() != 1 && args.len() != 2 {
        return Err(CtlError::bad_args(
            "elect takes one election name argument and an optional proposal argument",
        ));
    }
    if args.len() == 1 && !listen {
        return Err(CtlError::bad_args("no proposal argument but -l not set"));
    }
    if args.len() == 2 && listen {
        return Err(CtlError::bad_args("proposal given but -l is set"));
    }
    let prefix = format!("{}/", args[0]).into_bytes();
    if listen {
        return tokio::select! {
            r = observe(ctx, &prefix) => r.map_err(|e| e.fail(ExitCode::Error)),
            _ = interrupted() => Ok(()),
        };
    }
    campaign(ctx, &prefix, args[1].as_bytes()).await
}

async fn campaign(ctx: &Ctx, prefix: &[u8], proposal: &[u8]) -> Result<(), CtlError> {
    let fail = |e: RpcError| e.fail(ExitCode::Error);
    let mut session = new_session(ctx, 60).await.map_err(fail)?;
    let key = [prefix, format!("{:x}", session.lease).as_bytes()].concat();
    let elected = async {
        let r = txn(ctx, claim(&key, proposal, session.lease, None)).await?;
        let leader_rev = if r.succeeded {
            r.header.as_ref().map(|h| h.revision).unwrap_or_default()
        } else {
            let kv = range_of(&r, 0)
                .and_then(|g| g.kvs.first().cloned())
                .unwrap_or_default();
            if kv.value != proposal {
                let put = PutRequest {
                    key: key.clone(),
                    value: proposal.to_vec(),
                    lease: session.lease,
                    ..Default::default()
                };
                ctx.conn
                    .unary(
                        None,
                        |s| async move { conn::kv(&s).put(s.request(put)).await },
                    )
                    .await?;
            }
            kv.create_revision
        };
        wait_deletes(ctx, prefix, leader_rev - 1).await?;
        Ok::<i64, RpcError>(leader_rev)
    };
    let leader_rev = tokio::select! {
        r = elected => r.map_err(fail)?,
        _ = interrupted() => return Err(CtlError::new(ExitCode::Error, "context canceled")),
    };
    let current = range(
        ctx,
        RangeRequest {
            key: key.clone(),
            ..Default::default()
        },
    )
    .await
    .map_err(fail)?;
    emit(&ctx.printer.get(&current)?)?;
    tokio::select! {
        _ = interrupted() => {}
        _ = session_lost(&mut session.lost) => return Err(CtlError::new(ExitCode::Error, "elect: session expired")),
    }
    let resign = TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Create as i32,
            key: key.clone(),
            target_union: Some(compare::TargetUnion::CreateRevision(leader_rev)),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key,
                    ..Default::default()
                },
            )),
        }],
        failure: vec![],
    };
    txn(ctx, resign).await.map(|_| ()).map_err(fail)
}

/// Prints the leader and each change of it, as `Election.Observe`.
async fn observe(ctx: &Ctx, prefix: &[u8]) -> Result<(), RpcError> {
    loop {
        let first = range(ctx, by_create(prefix, range_request::SortOrder::Ascend, 0)).await?;
        let (kv, header): (KeyValue, ResponseHeader) = match first.kvs.first() {
            Some(kv) => (kv.clone(), first.header.unwrap_or_default()),
            None => {
                let from = first
                    .header
                    .as_ref()
                    .map(|h| h.revision)
                    .unwrap_or_default()
                    + 1;
                let (_tx, mut stream) =
                    open_watch(ctx, prefix, prefix_range_end(prefix), from).await?;
                let mut found = None;
                while let Some(item) = stream.next().await {
                    let r = item.map_err(|s| RpcError::from_status(&s))?;
                    if let Some(e) = r.events.iter().find(|e| e.r#type == EventType::Put as i32) {
                        found = Some((
                            e.kv.clone().unwrap_or_default(),
                            r.header.unwrap_or_default(),
                        ));
                        break;
                    }
                }
                match found {
                    Some(f) => f,
                    None => {
                        return Err(RpcError::Status {
                            code: tonic::Code::Cancelled,
                            message: "elect: observer lost".into(),
                        })
                    }
                }
            }
        };
        let print = |kv: KeyValue, header: ResponseHeader| {
            let response = RangeResponse {
                header: Some(header),
                kvs: vec![kv],
                more: false,
                count: 1,
            };
            ctx.printer.get(&response).map(|b| emit(&b))
        };
        let _ = print(kv.clone(), header);
        let (_tx, mut stream) = open_watch(ctx, &kv.key, Vec::new(), header.revision + 1).await?;
        'leader: while let Some(item) = stream.next().await {
            let r = item.map_err(|s| RpcError::from_status(&s))?;
            for e in &r.events {
                if e.r#type == EventType::Delete as i32 {
                    break 'leader;
                }
                let _ = print(
                    e.kv.clone().unwrap_or_default(),
                    r.header.unwrap_or_default(),
                );
            }
        }
    }
}
