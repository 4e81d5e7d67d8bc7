//! Watchers of the traffic's keys and the per-member log collection: both open etcd
//! watches and resume them after errors from the revision after the last event seen.

use std::time::Duration;

use futures::StreamExt;
use oxcd_proto::etcdserverpb::watch_client::WatchClient;
use oxcd_proto::etcdserverpb::{watch_request, WatchCreateRequest, WatchRequest};
use tokio::sync::{mpsc, watch};
use tokio_stream_shim::ReceiverStream;

use super::convert;
use crate::history::{Event, KeyRange, Rev};
use crate::watch_check::WatchRecord;

/// How long a watch may take to deliver the target revision once it is known.
const CATCH_UP: Duration = Duration::from_secs(30);

/// Watches `range` from `start_revision` through whichever members answer until it has seen
/// the revision `target` will name; gives up [`CATCH_UP`] after the target is known.
pub(crate) async fn run_watcher(
    id: usize,
    endpoints: Vec<String>,
    range: KeyRange,
    start_revision: Rev,
    mut target: watch::Receiver<Option<Rev>>,
) -> WatchRecord {
    let mut record = WatchRecord {
        range: Some(range.clone()),
        start_revision,
        reached: 0,
        events: Vec::new(),
    };
    let mut attempt = id;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let goal = *target.borrow_and_update();
        if let Some(goal) = goal {
            deadline.get_or_insert_with(|| tokio::time::Instant::now() + CATCH_UP);
            if seen_up_to(&record) >= goal {
                record.reached = goal;
                return record;
            }
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() > d) {
            record.reached = goal.unwrap_or(0);
            return record;
        }
        let endpoint = &endpoints[attempt % endpoints.len()];
        attempt += 1;
        let next = seen_up_to(&record).max(start_revision - 1) + 1;
        let stream = open(endpoint, &range, next).await;
        let Ok(mut stream) = stream else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(Ok(resp)) if !resp.canceled => {
                        record.events.extend(resp.events.into_iter().filter_map(convert::event));
                    }
                    _ => break,
                },
                changed = target.changed() => {
                    if changed.is_err() {
                        break;
                    }
                },
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            if let Some(goal) = *target.borrow() {
                if seen_up_to(&record) >= goal {
                    break;
                }
                if deadline.is_some_and(|d| tokio::time::Instant::now() > d) {
                    break;
                }
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + CATCH_UP);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// All events of one member from revision 1 through `until` (its own data: the member
/// answers watches from its local store).
pub(crate) async fn member_events(
    endpoint: &str,
    until: Rev,
    limit: Duration,
) -> Result<Vec<Event>, String> {
    let all = KeyRange {
        key: vec![0],
        range_end: vec![0],
    };
    let collect = async {
        let mut stream = open(endpoint, &all, 1).await?;
        let mut events: Vec<Event> = Vec::new();
        while events.last().map(Event::revision).unwrap_or(0) < until {
            match stream.next().await {
                Some(Ok(resp)) if !resp.canceled => {
                    events.extend(resp.events.into_iter().filter_map(convert::event));
                }
                Some(Ok(resp)) => return Err(format!("watch canceled: {}", resp.cancel_reason)),
                Some(Err(status)) => return Err(status.message().to_string()),
                None => return Err("watch stream ended".into()),
            }
        }
        events.retain(|e| e.revision() <= until);
        Ok(events)
    };
    tokio::time::timeout(limit, collect)
        .await
        .map_err(|_| format!("no events up to revision {until} within {limit:?}"))?
}

fn seen_up_to(record: &WatchRecord) -> Rev {
    record.events.last().map(Event::revision).unwrap_or(0)
}

type WatchStream = tonic::Streaming<oxcd_proto::etcdserverpb::WatchResponse>;

/// Opens a watch stream on `endpoint` for `range` from `start_revision`.
async fn open(
    endpoint: &str,
    range: &KeyRange,
    start_revision: Rev,
) -> Result<WatchStream, String> {
    let mut client = WatchClient::new(crate::cluster::channel_to(endpoint));
    let (tx, rx) = mpsc::channel(1);
    let create = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: range.key.clone(),
                range_end: range.range_end.clone(),
                start_revision,
                ..Default::default()
            },
        )),
    };
    tx.send(create).await.map_err(|e| e.to_string())?;
    // Keep the request side open for the life of the stream.
    let requests = ReceiverStream::new(rx, tx);
    let resp = tokio::time::timeout(Duration::from_secs(2), client.watch(requests))
        .await
        .map_err(|_| "watch open timed out".to_string())?
        .map_err(|s| s.message().to_string())?;
    Ok(resp.into_inner())
}

/// A stream over an mpsc receiver that also owns the sender, so the request side of the
/// watch stays open (a closed request stream would end etcd's watch).
mod tokio_stream_shim {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::sync::mpsc;

    /// The stream.
    pub(crate) struct ReceiverStream<T> {
        rx: mpsc::Receiver<T>,
        _tx: mpsc::Sender<T>,
    }

    impl<T> ReceiverStream<T> {
        /// Wraps `rx`, keeping `tx` alive.
        pub(crate) fn new(rx: mpsc::Receiver<T>, tx: mpsc::Sender<T>) -> Self {
            ReceiverStream { rx, _tx: tx }
        }
    }

    impl<T> futures::Stream for ReceiverStream<T> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            self.rx.poll_recv(cx)
        }
    }
}
