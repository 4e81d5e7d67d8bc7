//! The etcd `Watch` service: one bidirectional stream per call, many watchers per stream.
//!
//! A task reads the client's requests (create, cancel, progress) and ticks the stream's
//! progress notifications; responses flow from the [`Hub`] through the stream's bounded
//! queue to the client, with the header's identity fields filled on the way out and large
//! responses of `fragment` watchers split as etcd's `sendFragments` does.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use oxcd_proto::etcdserverpb::{
    watch_request::RequestUnion, watch_server::Watch, WatchRequest, WatchResponse,
};
use prost::Message;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use oxcd_core::{EtcdServer, ServerError};
use oxcd_watch::{Hub, Outgoing, INVALID_WATCH_ID, STREAM_QUEUE};

/// etcd's `minWatchProgressInterval`.
const MIN_PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// etcd's default progress notify interval.
const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(600);

/// Serves `Watch`.
pub struct WatchService {
    server: Arc<EtcdServer>,
    hub: Arc<Hub>,
    progress_interval: Duration,
    /// Responses of watchers that asked for fragments are cut below this many bytes
    /// (etcd: `--max-request-bytes` plus the gRPC framing allowance).
    fragment_limit: usize,
}

impl WatchService {
    /// A watch service over `server`'s watch hub, with
    /// `--experimental-watch-progress-notify-interval` and the fragment limit.
    pub fn new(
        server: Arc<EtcdServer>,
        configured: Duration,
        fragment_limit: usize,
    ) -> WatchService {
        let hub = server.watch_hub().clone();
        let progress_interval = if configured.is_zero() {
            DEFAULT_PROGRESS_INTERVAL
        } else {
            configured.max(MIN_PROGRESS_INTERVAL)
        };
        WatchService {
            server,
            hub,
            progress_interval,
            fragment_limit,
        }
    }
}

/// Removes the stream's watchers from the hub when the response stream is dropped
/// (the client went away or the call ended).
struct StreamGuard {
    hub: Arc<Hub>,
    sid: u64,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.hub.close_stream(self.sid);
    }
}

/// The responses of one watch stream.
pub type Responses = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Responses>, Status> {
        // etcd 3.4: a learner serves no streams.
        self.server.refuse_on_learner()?;
        let require_leader = super::requires_leader(req.metadata().as_ref());
        let cred = super::credentials(&req);
        // A request the stream could not deliver (etcd's receive failure); the gateway's
        // streams are not counted: etcd's gateway only forwards what it decoded.
        let inbound = req.into_inner().inspect(|r| {
            if let Err(status) = r {
                crate::metrics::grpc::stream_receive_failed(
                    crate::metrics::grpc::StreamApi::Watch,
                    status,
                );
            }
        });
        Ok(Response::new(self.open(inbound, require_leader, cred)))
    }
}

impl WatchService {
    /// Runs one watch stream over `inbound` (gRPC's request stream, or the gateway's
    /// decoded JSON objects) and returns its responses. With `require_leader`
    /// (clientv3's `WithRequireLeader`), the stream ends with "no leader" once this member
    /// has been without a leader for three election timeouts, as etcd's. Each watcher's
    /// range is checked against `cred`'s READ permission when it is created.
    pub fn open<S>(
        &self,
        mut inbound: S,
        require_leader: bool,
        cred: oxcd_core::Credentials,
    ) -> Responses
    where
        S: Stream<Item = Result<WatchRequest, Status>> + Send + Unpin + 'static,
    {
        let (tx, rx) = mpsc::channel::<Outgoing>(STREAM_QUEUE);
        let sid = self.hub.open_stream(tx.clone());
        let guard = StreamGuard {
            hub: self.hub.clone(),
            sid,
        };
        let hub = self.hub.clone();
        let interval = self.progress_interval;
        let checker = self.server.clone();
        tokio::spawn(async move {
            // etcd adds up to 10% jitter so streams created together don't tick together.
            let jitter = Duration::from_nanos(
                (std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos() as u64)
                    .unwrap_or(0))
                    % (interval.as_nanos() as u64 / 10).max(1),
            );
            let mut ticker = tokio::time::interval(interval + jitter);
            ticker.tick().await; // the first tick is immediate
            let mut reading = true;
            loop {
                tokio::select! {
                    msg = inbound.next(), if reading => match msg {
                        Some(Ok(req)) => {
                            if !handle(&checker, &cred, &hub, sid, &tx, req).await {
                                break;
                            }
                        }
                        // The client closed its side: keep sending, as etcd does.
                        None => reading = false,
                        Some(Err(_)) => {
                            hub.close_stream(sid);
                            break;
                        }
                    },
                    _ = ticker.tick() => hub.progress_tick(sid),
                    _ = tx.closed() => break,
                }
            }
        });
        let server = self.server.clone();
        let limit = self.fragment_limit;
        let out = tokio_stream::wrappers::ReceiverStream::new(rx).flat_map(move |o| {
            let _keep = &guard;
            let mut resp = o.resp;
            let rev = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
            resp.header = Some(server.header(rev));
            let parts = if o.fragment {
                fragments(resp, limit)
            } else {
                vec![resp]
            };
            futures::stream::iter(parts.into_iter().map(Ok))
        });
        if !require_leader {
            return Box::pin(out);
        }
        // `WithRequireLeader`: etcd ends the stream with "no leader" once this member has
        // been without a leader for three election timeouts.
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let grace = 3 * self.server.config().election_timeout;
        let leader_lost = {
            let lost = lost.clone();
            let leadership = self.server.leadership();
            async move {
                super::leader_lost(leadership, grace).await;
                lost.store(true, std::sync::atomic::Ordering::Release);
            }
        };
        let end = futures::stream::once(async move {
            lost.load(std::sync::atomic::Ordering::Acquire)
                .then(|| Err(Status::from(ServerError::NoLeader)))
        })
        .filter_map(std::future::ready);
        Box::pin(out.take_until(leader_lost).chain(end))
    }
}

/// Handles one client request; returns false when the stream is gone.
async fn handle(
    server: &EtcdServer,
    cred: &oxcd_core::Credentials,
    hub: &Hub,
    sid: u64,
    tx: &mpsc::Sender<Outgoing>,
    req: WatchRequest,
) -> bool {
    let resp = match req.request_union {
        Some(RequestUnion::CreateRequest(c)) => {
            match watch_permitted(server, cred, &c).await.and_then(|()| {
                hub.reserve(sid, &c)
                    .map_err(|(e, rev)| (e.to_string(), rev))
            }) {
                Ok((gid, id, rev)) => {
                    let created = WatchResponse {
                        header: Some(header(rev)),
                        watch_id: id,
                        created: true,
                        ..Default::default()
                    };
                    if tx.send(plain(created)).await.is_err() {
                        return false;
                    }
                    let start = if c.start_revision == 0 {
                        rev + 1
                    } else {
                        c.start_revision
                    };
                    hub.activate(gid, start);
                    return true;
                }
                Err((reason, rev)) => WatchResponse {
                    header: Some(header(rev)),
                    watch_id: INVALID_WATCH_ID,
                    created: true,
                    canceled: true,
                    cancel_reason: reason,
                    ..Default::default()
                },
            }
        }
        Some(RequestUnion::CancelRequest(c)) => {
            if !hub.cancel(sid, c.watch_id) {
                return true; // etcd does not answer a cancel of an unknown watcher
            }
            WatchResponse {
                header: Some(header(hub.rev())),
                watch_id: c.watch_id,
                canceled: true,
                ..Default::default()
            }
        }
        Some(RequestUnion::ProgressRequest(_)) => {
            hub.request_progress(sid);
            return true;
        }
        None => return true,
    };
    tx.send(plain(resp)).await.is_ok()
}

/// etcd's `isWatchPermitted`: READ over the watched range, checked at creation. A refusal
/// cancels the watcher with etcd's cancel reason and the hub's current revision.
async fn watch_permitted(
    server: &EtcdServer,
    cred: &oxcd_core::Credentials,
    c: &oxcd_proto::etcdserverpb::WatchCreateRequest,
) -> Result<(), (String, i64)> {
    let key: &[u8] = if c.key.is_empty() { &[0] } else { &c.key };
    match server.check_watch(cred, key, &c.range_end).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let e = match e {
                ServerError::InvalidAuthToken
                | ServerError::AuthOldRevision
                | ServerError::UserEmpty => e,
                _ => ServerError::PermissionDenied,
            };
            // etcd puts the gRPC error's whole Go text there (`status.Error(...).Error()`).
            let code = match e.code() {
                tonic::Code::Unauthenticated => "Unauthenticated",
                tonic::Code::InvalidArgument => "InvalidArgument",
                _ => "PermissionDenied",
            };
            Err((
                format!("rpc error: code = {code} desc = {e}"),
                server.current_revision(),
            ))
        }
    }
}

fn plain(resp: WatchResponse) -> Outgoing {
    Outgoing {
        resp,
        fragment: false,
    }
}

fn header(revision: i64) -> oxcd_proto::etcdserverpb::ResponseHeader {
    oxcd_proto::etcdserverpb::ResponseHeader {
        revision,
        ..Default::default()
    }
}

/// etcd's `sendFragments`: a response of at least `limit` bytes with two or more events
/// is split into parts below the limit (each at least one event); all parts but the last
/// carry `fragment = true`.
pub fn fragments(resp: WatchResponse, limit: usize) -> Vec<WatchResponse> {
    if resp.encoded_len() < limit || resp.events.len() < 2 {
        return vec![resp];
    }
    let mut base = resp.clone();
    base.events = Vec::new();
    base.fragment = true;
    let mut out = Vec::new();
    let mut cur = base.clone();
    for ev in resp.events {
        cur.events.push(ev);
        if cur.events.len() > 1 && cur.encoded_len() >= limit {
            let last = cur.events.pop();
            out.push(std::mem::replace(&mut cur, base.clone()));
            cur.events.extend(last);
        }
    }
    cur.fragment = false;
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcd_proto::mvccpb::{Event, KeyValue};

    #[test]
    fn fragments_split_below_limit_and_flag_all_but_last() {
        let ev = |i: u8| Event {
            kv: Some(KeyValue {
                key: vec![i],
                value: vec![0; 100],
                ..Default::default()
            }),
            ..Default::default()
        };
        let resp = WatchResponse {
            events: (0..10).map(ev).collect(),
            ..Default::default()
        };
        let parts = fragments(resp.clone(), 350);
        assert!(parts.len() > 1);
        let n: usize = parts.iter().map(|p| p.events.len()).sum();
        assert_eq!(n, 10);
        for p in &parts[..parts.len() - 1] {
            assert!(p.fragment);
            assert!(p.encoded_len() < 350);
        }
        assert!(!parts[parts.len() - 1].fragment);
        assert_eq!(fragments(resp, 1 << 20).len(), 1);
    }
}
