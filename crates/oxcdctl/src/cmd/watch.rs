//! `watch`: one watch from the command line, or many from stdin (`-i`), each optionally
//! running a command per event (`watch k -- cmd args`).

use std::collections::{HashMap, VecDeque};
use std::io::BufRead;

use clap::Parser;
use oxcd_proto::etcdserverpb::{
    watch_request, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::{emit, emit_err, Ctx};
use crate::cli::WatchArgs;
use crate::conn;
use crate::error::{is_known_etcd_error, CtlError, ExitCode, RpcError};
use crate::golog::go_quote;
use crate::output::simple::event_type_name;
use crate::output::{prefix_range_end, WatchReply};

const BAD_ARGS: &str = "bad number of arguments";
const CONFLICT_ENV: &str = "bad number of arguments (found conflicting environment key)";
const SEPARATOR: &str = "bad number of arguments (found separator --, but no commands)";

/// `watch`.
pub(super) async fn run(ctx: &Ctx, a: WatchArgs) -> Result<(), CtlError> {
    let env_key = std::env::var("ETCDCTL_WATCH_KEY").unwrap_or_default();
    let env_range = std::env::var("ETCDCTL_WATCH_RANGE_END").unwrap_or_default();
    if env_key.is_empty() && !env_range.is_empty() {
        return Err(CtlError::bad_args(format!(
            "ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={}",
            go_quote(env_range.as_bytes())
        )));
    }
    if a.interactive {
        return interactive(ctx, &env_key, &env_range).await;
    }
    let raw: Vec<String> = std::env::args()
        .skip_while(|x| x != "watch")
        .skip(1)
        .collect();
    let separator = raw.iter().position(|x| x == "--");
    if separator == Some(raw.len().saturating_sub(1)) && separator.is_some() {
        return Err(CtlError::bad_args(SEPARATOR));
    }
    if !env_key.is_empty() && !a.args.is_empty() {
        return Err(CtlError::bad_args(CONFLICT_ENV));
    }
    let keys = with_env_key(a.args.clone(), &env_key, &env_range);
    let create = create_request(&a, &keys)?;
    let (tx, rx) = mpsc::channel::<WatchRequest>(16);
    let _ = tx.send(create_message(create)).await;
    let mut responses = open(ctx, rx).await?;
    let mut execs = Execs::default();
    execs.pending.push_back(a.exec.clone());
    while let Some(item) = responses.next().await {
        let response =
            item.map_err(|s| CtlError::new(ExitCode::BadConnection, RpcError::from_status(&s)))?;
        if !handle(ctx, &mut execs, response)? {
            break;
        }
    }
    drop(tx);
    Err(CtlError::new(
        ExitCode::Interrupted,
        "watch is canceled by the server",
    ))
}

fn with_env_key(args: Vec<String>, env_key: &str, env_range: &str) -> Vec<String> {
    if env_key.is_empty() {
        return args;
    }
    let mut keys = vec![env_key.to_string()];
    if !env_range.is_empty() {
        keys.push(env_range.to_string());
    }
    keys.extend(args);
    keys
}

fn create_request(a: &WatchArgs, keys: &[String]) -> Result<WatchCreateRequest, CtlError> {
    let Some(key) = keys.first() else {
        return Err(CtlError::bad_args(BAD_ARGS));
    };
    let mut create = WatchCreateRequest {
        key: key.clone().into_bytes(),
        start_revision: a.rev,
        prev_kv: a.prev_kv,
        ..Default::default()
    };
    if keys.len() == 2 {
        if a.prefix {
            return Err(CtlError::bad_args(
                "`range_end` and `--prefix` are mutually exclusive",
            ));
        }
        create.range_end = keys[1].clone().into_bytes();
    }
    if a.prefix {
        create.range_end = if create.key.is_empty() {
            vec![0]
        } else {
            prefix_range_end(&create.key)
        };
        if create.key.is_empty() {
            create.key = vec![0];
        }
    }
    Ok(create)
}

fn create_message(create: WatchCreateRequest) -> WatchRequest {
    WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
    }
}

async fn open(
    ctx: &Ctx,
    rx: mpsc::Receiver<WatchRequest>,
) -> Result<tonic::Streaming<WatchResponse>, CtlError> {
    let session = ctx
        .conn
        .session()
        .await
        .map_err(|e| e.fail(ExitCode::Error))?;
    let mut request = session.request(ReceiverStream::new(rx));
    request.metadata_mut().insert(
        "hasleader",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    conn::watch(&session)
        .watch(request)
        .await
        .map(|r| r.into_inner())
        .map_err(|s| CtlError::new(ExitCode::BadArgs, RpcError::from_status(&s)))
}

/// Commands to run per event, by watch id (assigned in the order the watches were created).
#[derive(Debug, Default)]
struct Execs {
    pending: VecDeque<Vec<String>>,
    by_id: HashMap<i64, Vec<String>>,
}

/// Prints one response as etcdctl does; false when the watch ended.
fn handle(ctx: &Ctx, execs: &mut Execs, r: WatchResponse) -> Result<bool, CtlError> {
    if r.created {
        let exec = execs.pending.pop_front().unwrap_or_default();
        execs.by_id.insert(r.watch_id, exec);
        if !r.canceled && r.events.is_empty() {
            return Ok(true);
        }
    }
    let reply = WatchReply {
        header: r.header.unwrap_or_default(),
        events: r.events.clone(),
        compact_revision: r.compact_revision,
        canceled: r.canceled,
        created: false,
    };
    if r.canceled {
        emit_err(format!("watch was canceled ({})\n", cancel_error(&r)).as_bytes());
    }
    let progress =
        r.events.is_empty() && !r.canceled && r.compact_revision == 0 && reply.header.revision != 0;
    // A progress response for the whole stream (watch id -1) reaches every watcher.
    let copies = if progress && !execs.by_id.contains_key(&r.watch_id) {
        execs.by_id.len().max(1)
    } else {
        1
    };
    for _ in 0..copies {
        if progress {
            emit(format!("progress notify: {}\n", reply.header.revision).as_bytes())?;
        }
        emit(&ctx.printer.watch(&reply)?)?;
    }
    if let Some(exec) = execs.by_id.get(&r.watch_id).filter(|e| !e.is_empty()) {
        for event in &r.events {
            run_exec(exec, reply.header.revision, event)?;
        }
    }
    Ok(!r.canceled)
}

/// clientv3's `WatchResponse.Err()` of a cancelled watch.
fn cancel_error(r: &WatchResponse) -> String {
    if r.compact_revision != 0 {
        return "etcdserver: mvcc: required revision has been compacted".into();
    }
    if !r.cancel_reason.is_empty() {
        if is_known_etcd_error(&r.cancel_reason) {
            return r.cancel_reason.clone();
        }
        return format!(
            "rpc error: code = FailedPrecondition desc = {}",
            r.cancel_reason
        );
    }
    "etcdserver: mvcc: required revision is a future revision".into()
}

fn run_exec(
    exec: &[String],
    revision: i64,
    event: &oxcd_proto::mvccpb::Event,
) -> Result<(), CtlError> {
    let kv = event.kv.clone().unwrap_or_default();
    let status = std::process::Command::new(&exec[0])
        .args(&exec[1..])
        .env("ETCD_WATCH_REVISION", revision.to_string())
        .env(
            "ETCD_WATCH_EVENT_TYPE",
            format!("\"{}\"", event_type_name(event.r#type)),
        )
        .env("ETCD_WATCH_KEY", go_quote(&kv.key))
        .env("ETCD_WATCH_VALUE", go_quote(&kv.value))
        .status();
    let failure = match status {
        Ok(s) if s.success() => return Ok(()),
        Ok(s) => match s.code() {
            Some(code) => format!("exit status {code}"),
            None => "signal: killed".to_string(),
        },
        Err(e) => e.to_string(),
    };
    let quoted: Vec<String> = exec.iter().map(|x| go_quote(x.as_bytes())).collect();
    emit_err(format!("command [{}] error ({failure})\n", quoted.join(" ")).as_bytes());
    Err(CtlError::silent(ExitCode::Error))
}

/// The flags of an interactive `watch ...` line.
#[derive(Debug, Parser)]
#[command(no_binary_name = true)]
struct WatchLine {
    #[command(flatten)]
    args: WatchArgs,
}

/// `watch -i`: `watch ...` and `progress` lines from stdin.
async fn interactive(ctx: &Ctx, env_key: &str, env_range: &str) -> Result<(), CtlError> {
    let (line_tx, mut lines) = mpsc::channel::<std::io::Result<String>>(16);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        loop {
            let mut buf = Vec::new();
            let item = match input.read_until(b'\n', &mut buf) {
                Ok(_) if buf.last() == Some(&b'\n') => {
                    Ok(String::from_utf8_lossy(&buf[..buf.len() - 1]).into_owned())
                }
                Ok(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "EOF",
                )),
                Err(e) => Err(e),
            };
            let end = item.is_err();
            if line_tx.blocking_send(item).is_err() || end {
                return;
            }
        }
    });
    let (tx, rx) = mpsc::channel::<WatchRequest>(16);
    let mut responses: Option<tonic::Streaming<WatchResponse>> = None;
    let mut pending_rx = Some(rx);
    let mut execs = Execs::default();
    loop {
        tokio::select! {
            line = lines.recv() => {
                let line = match line {
                    Some(Ok(l)) => l,
                    Some(Err(e)) => return Err(CtlError::new(ExitCode::InvalidInput, format!("Error reading watch request line: {e}"))),
                    None => return Err(CtlError::new(ExitCode::InvalidInput, "Error reading watch request line: EOF")),
                };
                if let Some(message) = interactive_line(&line, env_key, env_range, &mut execs)? {
                    let _ = tx.send(message).await;
                    // The stream is opened with its first request (the server answers then).
                    if let Some(rx) = pending_rx.take() {
                        responses = Some(open(ctx, rx).await?);
                    }
                }
            }
            item = next(&mut responses) => {
                match item {
                    Some(Ok(r)) => { handle(ctx, &mut execs, r)?; }
                    Some(Err(s)) => return Err(CtlError::new(ExitCode::BadConnection, RpcError::from_status(&s))),
                    None => responses = None,
                }
            }
        }
    }
}

async fn next(
    responses: &mut Option<tonic::Streaming<WatchResponse>>,
) -> Option<Result<WatchResponse, tonic::Status>> {
    match responses {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// One line of `watch -i`: the request to send, if any; complaints go to stderr.
fn interactive_line(
    line: &str,
    env_key: &str,
    env_range: &str,
    execs: &mut Execs,
) -> Result<Option<WatchRequest>, CtlError> {
    let args = super::txn::argify(line).unwrap_or_default();
    let Some(first) = args.first() else {
        emit_err(format!("Invalid command: {line} (watch and progress supported)\n").as_bytes());
        return Ok(None);
    };
    match first.as_str() {
        "watch" => {
            if args.len() < 2 && env_key.is_empty() {
                emit_err(
                    format!("Invalid command {line} (command type or key is not provided)\n")
                        .as_bytes(),
                );
                return Ok(None);
            }
            if args.last().map(String::as_str) == Some("--") {
                return Err(CtlError::bad_args(SEPARATOR));
            }
            let parsed =
                WatchLine::try_parse_from(&args[1..]).map_err(|e| CtlError::bad_args(e.kind()))?;
            let a = parsed.args;
            if a.args.is_empty() && a.exec.is_empty() && env_key.is_empty() {
                return Err(CtlError::bad_args(BAD_ARGS));
            }
            if !a.args.is_empty() && !env_key.is_empty() && a.exec.is_empty() {
                return Err(CtlError::bad_args(CONFLICT_ENV));
            }
            let keys = with_env_key(a.args.clone(), env_key, env_range);
            match create_request(&a, &keys) {
                Ok(create) => {
                    execs.pending.push_back(a.exec.clone());
                    Ok(Some(create_message(create)))
                }
                Err(e) => {
                    emit_err(
                        format!(
                            "Invalid command {line} ({})\n",
                            e.message.unwrap_or_default()
                        )
                        .as_bytes(),
                    );
                    Ok(None)
                }
            }
        }
        "progress" => Ok(Some(WatchRequest {
            request_union: Some(watch_request::RequestUnion::ProgressRequest(
                WatchProgressRequest {},
            )),
        })),
        _ => {
            emit_err(format!("Invalid command {line} (only support watch)\n").as_bytes());
            Ok(None)
        }
    }
}
