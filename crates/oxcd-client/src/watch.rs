//! Watches as streams that resume after a reconnect from the revision after the last one
//! delivered: no event is lost or repeated, and a compacted resume point is an error.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use oxcd_proto::etcdserverpb::watch_client::WatchClient;
use oxcd_proto::etcdserverpb::watch_create_request::FilterType;
use oxcd_proto::etcdserverpb::watch_request::RequestUnion;
use oxcd_proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use crate::client::{token_of, Client};
use crate::error::{Error, Result};
use crate::kv::KeyRange;
use crate::lease::note_stream_failure;
use crate::task::{Backoff, TaskGuard};

/// How many responses a watch buffers before it waits for its reader.
const WATCH_BUFFER: usize = 64;

/// Options of [`Watch::watch`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchOptions {
    range: KeyRange,
    start_revision: i64,
    prev_kv: bool,
    progress_notify: bool,
    no_put: bool,
    no_delete: bool,
}

impl WatchOptions {
    /// Just the key, from now on.
    pub fn new() -> Self {
        Self::default()
    }
    key_range_builders!();
    /// Start at `revision` (inclusive) instead of now.
    pub fn with_start_revision(mut self, revision: i64) -> Self {
        self.start_revision = revision;
        self
    }
    /// Events carry the key's previous value.
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }
    /// Ask the server for periodic empty progress responses.
    pub fn with_progress_notify(mut self) -> Self {
        self.progress_notify = true;
        self
    }
    /// Leave out put events.
    pub fn with_no_put(mut self) -> Self {
        self.no_put = true;
        self
    }
    /// Leave out delete events.
    pub fn with_no_delete(mut self) -> Self {
        self.no_delete = true;
        self
    }

    /// The key range watched.
    pub(crate) fn range(&self) -> &KeyRange {
        &self.range
    }

    /// Watches exactly up to `end` (empty: the key alone), whatever range was set.
    pub(crate) fn with_explicit_end(mut self, end: Vec<u8>) -> Self {
        self.range = if end.is_empty() {
            KeyRange::Single
        } else {
            KeyRange::End(end)
        };
        self
    }

    fn create_request(&self, key: &[u8], start_revision: i64) -> WatchCreateRequest {
        let (key, range_end) = self.range.bounds(key.to_vec());
        let mut filters = Vec::new();
        if self.no_put {
            filters.push(FilterType::Noput as i32);
        }
        if self.no_delete {
            filters.push(FilterType::Nodelete as i32);
        }
        WatchCreateRequest {
            key,
            range_end,
            start_revision,
            progress_notify: self.progress_notify,
            filters,
            prev_kv: self.prev_kv,
            watch_id: 0,
            fragment: false,
        }
    }
}

/// The Watch service of a [`Client`].
#[derive(Debug, Clone)]
pub struct Watch {
    client: Client,
}

impl Client {
    /// The Watch service.
    pub fn watch(&self) -> Watch {
        Watch {
            client: self.clone(),
        }
    }
}

impl Watch {
    /// Watches `key` (or a range, per `options`).
    ///
    /// Returns once the server confirmed the watch: every later write is seen. The stream
    /// yields the server's responses that carry events or progress (the `created` answers
    /// stay inside). A start revision that is compacted shows as [`Error::WatchCompacted`]
    /// on the stream, as etcd cancels such a watch after creating it. When a connection breaks, the watch is created again
    /// on the next reachable endpoint from the revision after the last one delivered, so
    /// events are neither lost nor repeated; if that revision was compacted meanwhile the
    /// stream yields [`Error::WatchCompacted`] and ends. Dropping the stream cancels the watch.
    pub async fn watch(
        &self,
        key: impl Into<Vec<u8>>,
        options: WatchOptions,
    ) -> Result<WatchStream> {
        let key = key.into();
        let (responses, responses_rx) = mpsc::channel(WATCH_BUFFER);
        let mut resume = ResumePoint::new(options.start_revision);
        // The first creation runs here so that an unreachable cluster is an error at once and
        // the watch is in place when this returns.
        let session = open(&self.client, &key, &options, &mut resume)
            .await
            .map_err(OpenFailure::into_error)?;
        let task = TaskGuard::spawn(watch_loop(
            self.client.clone(),
            key,
            options,
            resume,
            session,
            responses,
        ));
        Ok(WatchStream {
            responses: responses_rx,
            _task: task,
        })
    }
}

/// A running watch: a stream of event (and progress) responses.
#[derive(Debug)]
pub struct WatchStream {
    responses: mpsc::Receiver<Result<WatchResponse>>,
    _task: TaskGuard,
}

impl Stream for WatchStream {
    type Item = Result<WatchResponse>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.responses.poll_recv(cx)
    }
}

/// Where a watch resumes: the first revision not delivered yet (0 = "now", before anything
/// was delivered on a watch started without a revision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResumePoint {
    next_revision: i64,
}

/// What to do with one server response.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Give it to the reader (events already delivered removed).
    Deliver(WatchResponse),
    /// Internal (created answer, or nothing new): drop it.
    Skip,
    /// The watch ended with this error.
    End(Error),
}

impl ResumePoint {
    pub(crate) fn new(start_revision: i64) -> Self {
        ResumePoint {
            next_revision: start_revision.max(0),
        }
    }

    /// The start revision of a watch created now.
    pub(crate) fn start_revision(&self) -> i64 {
        self.next_revision
    }

    /// Judges one response and moves the resume point past what it delivers.
    pub(crate) fn judge(&mut self, mut response: WatchResponse) -> Verdict {
        let header_revision = response.header.as_ref().map_or(0, |h| h.revision);
        if response.canceled {
            return Verdict::End(if response.compact_revision > 0 {
                Error::WatchCompacted {
                    compact_revision: response.compact_revision,
                }
            } else {
                Error::from_etcd_text(&response.cancel_reason).unwrap_or(Error::WatchCanceled {
                    reason: response.cancel_reason,
                })
            });
        }
        if response.created {
            // A watch "from now" sees everything after the revision it was created at.
            if self.next_revision == 0 {
                self.next_revision = header_revision + 1;
            }
            return Verdict::Skip;
        }
        if response.events.is_empty() {
            // A progress notification: the watcher is in sync up to the header revision.
            if !response.fragment {
                self.next_revision = self.next_revision.max(header_revision + 1);
            }
            return Verdict::Deliver(response);
        }
        let next = self.next_revision;
        response
            .events
            .retain(|e| e.kv.as_ref().is_some_and(|kv| kv.mod_revision >= next));
        let Some(last) = response
            .events
            .iter()
            .filter_map(|e| e.kv.as_ref())
            .map(|kv| kv.mod_revision)
            .max()
        else {
            return Verdict::Skip;
        };
        if !response.fragment {
            self.next_revision = last + 1;
        }
        Verdict::Deliver(response)
    }
}

/// One watch gRPC stream: requests in, responses out.
struct Session {
    endpoint: String,
    token_used: Option<String>,
    _requests: mpsc::Sender<WatchRequest>,
    responses: tonic::Streaming<WatchResponse>,
}

/// Why a watch could not be (re)created.
enum OpenFailure {
    /// The connection failed; try again later (maybe elsewhere).
    Retry(Error),
    /// The server refused the watch (compacted start, permission...): the watch is over.
    Final(Error),
}

impl OpenFailure {
    fn into_error(self) -> Error {
        match self {
            OpenFailure::Retry(e) | OpenFailure::Final(e) => e,
        }
    }
}

/// How long a (re)created watch may take to be confirmed before the attempt counts as failed.
const CREATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens a watch stream on the current endpoint, creates the watch at the resume point and
/// waits for the server to confirm it, so no write after this returns can be missed.
async fn open(
    client: &Client,
    key: &[u8],
    options: &WatchOptions,
    resume: &mut ResumePoint,
) -> Result<Session, OpenFailure> {
    let limit = client.call_timeout().unwrap_or(CREATE_TIMEOUT);
    match tokio::time::timeout(limit, create(client, key, options, resume)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(OpenFailure::Retry(Error::Timeout(limit))),
    }
}

async fn create(
    client: &Client,
    key: &[u8],
    options: &WatchOptions,
    resume: &mut ResumePoint,
) -> Result<Session, OpenFailure> {
    let (endpoint, channel) = client.channel().map_err(OpenFailure::Final)?;
    let (requests, requests_rx) = mpsc::channel(1);
    let create = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(
            options.create_request(key, resume.start_revision()),
        )),
    };
    requests
        .send(create)
        .await
        .map_err(|_| OpenFailure::Final(Error::Closed))?;
    let request = client
        .request(ReceiverStream::new(requests_rx))
        .await
        .map_err(OpenFailure::Retry)?;
    let token_used = token_of(&request);
    let broken = |status: tonic::Status| OpenFailure::Retry(Error::from_status(status, &endpoint));
    let mut responses = match WatchClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .watch(request)
        .await
    {
        Ok(responses) => responses.into_inner(),
        Err(status) => {
            note_stream_failure(client, &endpoint, token_used.as_deref(), &status).await;
            return Err(broken(status));
        }
    };
    match responses.next().await {
        Some(Ok(first)) => match resume.judge(first) {
            Verdict::Skip => Ok(Session {
                endpoint,
                token_used,
                _requests: requests,
                responses,
            }),
            Verdict::End(error) => Err(OpenFailure::Final(error)),
            Verdict::Deliver(_) => Err(OpenFailure::Retry(Error::WatchCanceled {
                reason: "the server sent events before confirming the watch".into(),
            })),
        },
        Some(Err(status)) => {
            note_stream_failure(client, &endpoint, token_used.as_deref(), &status).await;
            Err(broken(status))
        }
        None => {
            client.endpoint_failed(&endpoint);
            Err(OpenFailure::Retry(Error::Unreachable {
                endpoint: endpoint.clone(),
                cause: "watch stream closed".into(),
            }))
        }
    }
}

/// Forwards responses of `session`, and of the sessions opened after it broke, until the
/// watch ends or the reader is gone.
async fn watch_loop(
    client: Client,
    key: Vec<u8>,
    options: WatchOptions,
    mut resume: ResumePoint,
    first: Session,
    out: mpsc::Sender<Result<WatchResponse>>,
) {
    let mut session = Some(first);
    let mut backoff = Backoff::new();
    loop {
        let mut current = match session.take() {
            Some(current) => current,
            None => match open(&client, &key, &options, &mut resume).await {
                Ok(current) => current,
                Err(OpenFailure::Retry(_)) => {
                    if out.is_closed() {
                        return;
                    }
                    backoff.wait().await;
                    continue;
                }
                Err(OpenFailure::Final(error)) => {
                    let _ = out.send(Err(error)).await;
                    return;
                }
            },
        };
        loop {
            match current.responses.next().await {
                Some(Ok(response)) => {
                    backoff.reset();
                    match resume.judge(response) {
                        Verdict::Deliver(response) => {
                            if out.send(Ok(response)).await.is_err() {
                                return;
                            }
                        }
                        Verdict::Skip => {}
                        Verdict::End(error) => {
                            let _ = out.send(Err(error)).await;
                            return;
                        }
                    }
                }
                Some(Err(status)) => {
                    let token_used = current.token_used.as_deref();
                    note_stream_failure(&client, &current.endpoint, token_used, &status).await;
                    break;
                }
                None => {
                    client.endpoint_failed(&current.endpoint);
                    break;
                }
            }
        }
        if out.is_closed() {
            return;
        }
        backoff.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcd_proto::etcdserverpb::ResponseHeader;
    use oxcd_proto::mvccpb::{Event, KeyValue};

    fn header(revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            revision,
            ..Default::default()
        })
    }

    fn events(revisions: &[i64]) -> WatchResponse {
        WatchResponse {
            header: header(*revisions.last().unwrap_or(&0)),
            events: revisions
                .iter()
                .map(|r| Event {
                    kv: Some(KeyValue {
                        key: b"k".to_vec(),
                        mod_revision: *r,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn revisions(verdict: Verdict) -> Vec<i64> {
        match verdict {
            Verdict::Deliver(r) => r
                .events
                .iter()
                .map(|e| e.kv.as_ref().unwrap().mod_revision)
                .collect(),
            other => panic!("not delivered: {other:?}"),
        }
    }

    #[test]
    fn a_watch_from_now_resumes_after_its_creation_revision() {
        let mut resume = ResumePoint::new(0);
        let created = WatchResponse {
            created: true,
            header: header(10),
            ..Default::default()
        };
        assert_eq!(resume.judge(created), Verdict::Skip);
        assert_eq!(resume.start_revision(), 11);
    }

    #[test]
    fn a_watch_from_a_revision_keeps_it_on_creation() {
        let mut resume = ResumePoint::new(5);
        let created = WatchResponse {
            created: true,
            header: header(10),
            ..Default::default()
        };
        assert_eq!(resume.judge(created), Verdict::Skip);
        assert_eq!(resume.start_revision(), 5);
    }

    #[test]
    fn events_move_the_resume_point_and_repeats_are_dropped() {
        let mut resume = ResumePoint::new(5);
        assert_eq!(revisions(resume.judge(events(&[5, 6]))), vec![5, 6]);
        assert_eq!(resume.start_revision(), 7);
        // After a reconnect the server must start at 7; anything older is a repeat.
        assert_eq!(revisions(resume.judge(events(&[6, 7, 8]))), vec![7, 8]);
        assert_eq!(resume.judge(events(&[8])), Verdict::Skip);
        assert_eq!(resume.start_revision(), 9);
    }

    #[test]
    fn progress_moves_the_resume_point_to_the_header() {
        let mut resume = ResumePoint::new(3);
        let progress = WatchResponse {
            header: header(20),
            ..Default::default()
        };
        assert!(matches!(resume.judge(progress), Verdict::Deliver(_)));
        assert_eq!(resume.start_revision(), 21);
    }

    #[test]
    fn a_compacted_start_ends_the_watch_with_its_compact_revision() {
        let mut resume = ResumePoint::new(2);
        let canceled = WatchResponse {
            canceled: true,
            created: true,
            compact_revision: 9,
            ..Default::default()
        };
        assert_eq!(
            resume.judge(canceled),
            Verdict::End(Error::WatchCompacted {
                compact_revision: 9
            })
        );
        let other = WatchResponse {
            canceled: true,
            cancel_reason: "bye".into(),
            ..Default::default()
        };
        assert!(matches!(
            resume.judge(other),
            Verdict::End(Error::WatchCanceled { .. })
        ));
    }
}
