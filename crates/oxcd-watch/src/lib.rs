//! oxcd-watch: the watch dispatcher. One [`Hub`] holds every watcher of every stream, fed
//! from the applier and, for watchers that are behind, from the backend's history. It knows
//! nothing of gRPC: a stream is a bounded queue of [`Outgoing`] responses that the server's
//! stream adapter frames, fragments and sends.
//!
//! # How it works
//!
//!
//! * **Synced** watchers have seen every revision up to the hub's revision. They sit in a
//!   [`WatcherIndex`] and get each committed batch of revisions straight from the applier
//!   ([`Hub::publish`]), one response per batch, with a non-blocking `try_send` into
//!   their stream's bounded queue.
//! * **Unsynced** watchers are behind: created with a past `start_revision`, or *parked*
//!   because their stream's queue was full when an event came (a slow client). A sync task
//!   reads their missing revisions from the backend in batches ([`oxcd_mvcc::Store::history`])
//!   and moves them back to synced once caught up. So the applier never waits for a client,
//!   a slow client's memory is bounded by its queue, and it still receives every event in
//!   order — or, if the history it needs was compacted meanwhile, a cancel carrying
//!   `compact_revision`, as etcd does.
//!
//! Every send for a watcher and every change of its state happens under the hub lock, so
//! a watcher's responses are strictly ordered and nothing is sent after its cancel
//! acknowledgement. Revisions are published only after the backend commit that made them
//! readable, so the sync task's backend reads never miss a published revision.

mod index;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use oxcd_mvcc::{HistoryRequest, KeyRange, MvccError, Store};
use oxcd_proto::etcdserverpb::{
    watch_create_request::FilterType, ResponseHeader, WatchCreateRequest, WatchResponse,
};
use oxcd_proto::mvccpb::{event::EventType, Event};
use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};

pub use index::Gid;
use index::WatcherIndex;

/// Responses queued per stream before its watchers are parked (etcd: 128 per stream).
pub const STREAM_QUEUE: usize = 128;
/// Unsynced watchers handled per sync round (etcd's `maxWatchersPerSync`).
pub const MAX_WATCHERS_PER_SYNC: usize = 512;
/// Distinct revisions read from the backend per sync round (etcd's `watchBatchMaxRevs`).
pub const MAX_REVS_PER_SYNC: usize = 1000;
/// Catch-up responses stop at the first revision boundary past this many bytes (at least
/// one revision is always sent), which bounds a slow client's queued memory and keeps
/// responses under clients' default 4 MiB receive limit.
pub const MAX_SYNC_RESPONSE_BYTES: usize = 1024 * 1024;
/// A caught-up watcher whose gap to the hub revision is at most this many revisions
/// closes it under the hub lock, so catching up converges under constant write load.
const FINAL_GAP_REVS: i64 = 64;
/// Pause between sync rounds that made no progress (all queues full).
const SYNC_RETRY: Duration = Duration::from_millis(10);

/// etcd's `clientv3.InvalidWatchID`: the watch id of failed creates and of progress
/// responses that concern the whole stream.
pub const INVALID_WATCH_ID: i64 = -1;

/// Texts etcd puts in `cancel_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CreateError {
    /// `range_end` not after `key`.
    #[error("mvcc: watcher range is empty")]
    EmptyRange,
    /// The client chose an id already used on the stream.
    #[error("mvcc: duplicate watch ID provided on the WatchStream")]
    DuplicateId,
}

/// A response queued for a stream; the stream fills the header's identity fields.
#[derive(Debug)]
pub struct Outgoing {
    /// The response; `header.revision` is already set.
    pub resp: WatchResponse,
    /// The watcher asked for fragmentation of large responses.
    pub fragment: bool,
}

/// One watcher's state.
struct Watcher {
    stream: u64,
    id: i64,
    range: KeyRange,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    progress_notify: bool,
    fragment: bool,
    /// The first revision this watcher has not been sent yet.
    next_rev: i64,
    synced: bool,
    /// Events were sent since the last progress tick (etcd elides the next notify).
    sent_since_tick: bool,
}

impl Watcher {
    /// The events of `evs` this watcher wants, from `next_rev` on, with `prev_kv` only if
    /// asked for.
    fn select<'e>(&self, evs: impl Iterator<Item = &'e Event>) -> Vec<Event> {
        evs.filter(|ev| {
            let Some(kv) = &ev.kv else { return false };
            let is_put = ev.r#type == EventType::Put as i32;
            kv.mod_revision >= self.next_rev
                && self.range.contains(&kv.key)
                && !(is_put && self.no_put)
                && (is_put || !self.no_delete)
        })
        .map(|ev| Event {
            r#type: ev.r#type,
            kv: ev.kv.clone(),
            // Not cloned at all unless asked for: most watchers don't want it.
            prev_kv: if self.prev_kv {
                ev.prev_kv.clone()
            } else {
                None
            },
        })
        .collect()
    }

    fn response(&self, rev: i64, events: Vec<Event>) -> Outgoing {
        Outgoing {
            resp: WatchResponse {
                header: Some(header(rev)),
                watch_id: self.id,
                events,
                ..Default::default()
            },
            fragment: self.fragment,
        }
    }
}

fn header(revision: i64) -> ResponseHeader {
    ResponseHeader {
        revision,
        ..Default::default()
    }
}

struct Stream {
    tx: mpsc::Sender<Outgoing>,
    /// Watch ids in use on the stream -> hub ids (ids of compacted watchers stay
    /// reserved until cancelled, as in etcd).
    ids: HashMap<i64, Gid>,
    next_id: i64,
    /// Watchers of the stream not synced.
    unsynced: usize,
    /// A progress request waits until the stream's watchers are synced.
    progress_wanted: bool,
}

#[derive(Default)]
struct State {
    /// Newest revision published (committed and notified).
    rev: i64,
    watchers: HashMap<Gid, Watcher>,
    synced: WatcherIndex,
    unsynced: BTreeSet<Gid>,
    streams: HashMap<u64, Stream>,
    next_gid: Gid,
}

impl State {
    fn set_synced(&mut self, gid: Gid) {
        let Some(w) = self.watchers.get_mut(&gid) else {
            return;
        };
        if w.synced {
            return;
        }
        w.synced = true;
        self.synced.insert(gid, &w.range);
        if self.unsynced.remove(&gid) {
            let sid = w.stream;
            if let Some(s) = self.streams.get_mut(&sid) {
                s.unsynced = s.unsynced.saturating_sub(1);
            }
            self.answer_progress(sid);
        }
    }

    fn set_unsynced(&mut self, gid: Gid, next_rev: i64) {
        let Some(w) = self.watchers.get_mut(&gid) else {
            return;
        };
        w.next_rev = next_rev;
        if w.synced {
            w.synced = false;
            self.synced.remove(gid, &w.range);
        }
        if self.unsynced.insert(gid) {
            if let Some(s) = self.streams.get_mut(&w.stream) {
                s.unsynced += 1;
            }
        }
    }

    fn remove_watcher(&mut self, gid: Gid) {
        if let Some(w) = self.watchers.remove(&gid) {
            if w.synced {
                self.synced.remove(gid, &w.range);
            } else if self.unsynced.remove(&gid) {
                if let Some(s) = self.streams.get_mut(&w.stream) {
                    s.unsynced = s.unsynced.saturating_sub(1);
                }
            }
        }
    }

    /// Sends a waiting progress response if the stream is now fully synced.
    fn answer_progress(&mut self, sid: u64) {
        let rev = self.rev;
        if let Some(s) = self.streams.get_mut(&sid) {
            if s.progress_wanted && s.unsynced == 0 {
                let out = Outgoing {
                    resp: WatchResponse {
                        header: Some(header(rev)),
                        watch_id: INVALID_WATCH_ID,
                        ..Default::default()
                    },
                    fragment: false,
                };
                if s.tx.try_send(out).is_ok() {
                    s.progress_wanted = false;
                }
            }
        }
    }
}

/// A watcher chosen for a sync round.
struct Chosen {
    gid: Gid,
    next_rev: i64,
    range: KeyRange,
}

/// The watch hub. See the module documentation.
pub struct Hub {
    store: Arc<Store>,
    state: Mutex<State>,
    /// Events applied but not yet committed (published by [`Hub::publish`]).
    staged: Mutex<Vec<Arc<Vec<Event>>>>,
    wake: Arc<Notify>,
    next_stream: AtomicU64,
}

impl Hub {
    /// A hub over `store`, starting at its committed revision.
    pub fn new(store: Arc<Store>) -> Arc<Hub> {
        let rev = store.committed_revision();
        Arc::new(Hub {
            store,
            state: Mutex::new(State {
                rev,
                ..Default::default()
            }),
            staged: Mutex::new(Vec::new()),
            wake: Arc::new(Notify::new()),
            next_stream: AtomicU64::new(1),
        })
    }

    /// Starts the task that catches unsynced watchers up; it stops when the hub is
    /// dropped elsewhere.
    pub fn spawn_sync(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let wake = self.wake.clone();
        tokio::spawn(async move {
            loop {
                let Some(hub) = weak.upgrade() else { return };
                let (busy, progressed) = hub.sync_round();
                if !busy {
                    let notified = wake.notified();
                    drop(hub);
                    // Re-check now and then, so a dropped hub ends the task.
                    let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
                } else if !progressed {
                    drop(hub);
                    tokio::time::sleep(SYNC_RETRY).await;
                } else {
                    drop(hub);
                    tokio::task::yield_now().await;
                }
            }
        });
    }

    /// The newest published revision.
    pub fn rev(&self) -> i64 {
        self.state.lock().rev
    }

    /// Records the events of one applied (not yet committed) revision. Called by the
    /// applier; O(events), never blocks on watchers. The events are shared, not copied:
    /// the applier's other observers (the lessor) read the same list.
    pub fn stage(&self, events: impl Into<Arc<Vec<Event>>>) {
        let events = events.into();
        if !events.is_empty() {
            self.staged.lock().push(events);
        }
    }

    /// Publishes the staged revisions to synced watchers, after the backend commit that
    /// made them readable: each concerned watcher gets one response with its events of
    /// all the revisions committed together. O(events x matching watchers); never blocks
    /// on a client.
    pub fn publish(&self) {
        let staged = std::mem::take(&mut *self.staged.lock());
        if staged.is_empty() {
            return;
        }
        let mut st = self.state.lock();
        let parked = notify(&mut st, &staged, &self.store);
        drop(st);
        if parked {
            self.wake.notify_one();
        }
    }

    /// The backend was replaced by a newer one (a snapshot from the leader): every synced
    /// watcher is moved to catching up from the revision it has not been sent yet, so it
    /// reads the revisions it missed from the new backend's history — none lost, none
    /// repeated — or, if the new backend no longer has them (compacted), is cancelled
    /// with the compact revision, as etcd's `watchableStore.Restore` does.
    pub fn restore(&self) {
        self.staged.lock().clear();
        let mut st = self.state.lock();
        let synced: Vec<(Gid, i64)> = st
            .watchers
            .iter()
            .filter(|(_, w)| w.synced)
            .map(|(g, w)| (*g, w.next_rev))
            .collect();
        for (gid, next_rev) in synced {
            st.set_unsynced(gid, next_rev);
        }
        st.rev = self.store.committed_revision();
        drop(st);
        self.wake.notify_one();
    }

    /// Registers a stream whose responses go to `tx`; returns its id.
    pub fn open_stream(&self, tx: mpsc::Sender<Outgoing>) -> u64 {
        let sid = self.next_stream.fetch_add(1, Ordering::Relaxed);
        self.state.lock().streams.insert(
            sid,
            Stream {
                tx,
                ids: HashMap::new(),
                next_id: 0,
                unsynced: 0,
                progress_wanted: false,
            },
        );
        sid
    }

    /// Removes a stream and all its watchers.
    pub fn close_stream(&self, sid: u64) {
        let mut st = self.state.lock();
        if let Some(s) = st.streams.remove(&sid) {
            for gid in s.ids.into_values() {
                st.remove_watcher(gid);
            }
        }
    }

    /// First half of a create: validates the request and reserves its watch id. Returns
    /// the hub id, the watch id and the revision for the `created` response. The watcher
    /// receives nothing until [`Hub::activate`], so the caller can queue `created` first.
    pub fn reserve(
        &self,
        sid: u64,
        req: &WatchCreateRequest,
    ) -> Result<(Gid, i64, i64), (CreateError, i64)> {
        let mut st = self.state.lock();
        let rev = st.rev;
        // etcd watches from "\0" when no key is given.
        let key: &[u8] = if req.key.is_empty() { &[0] } else { &req.key };
        let Some(range) = KeyRange::from_request(key, &req.range_end) else {
            return Err((CreateError::EmptyRange, rev));
        };
        let gid = st.next_gid;
        let Some(s) = st.streams.get_mut(&sid) else {
            return Err((CreateError::EmptyRange, rev));
        };
        // etcd 3.4: watch id 0 is clientv3.AutoWatchID, "let the server choose".
        let id = if req.watch_id == 0 {
            while s.ids.contains_key(&s.next_id) {
                s.next_id += 1;
            }
            s.next_id += 1;
            s.next_id - 1
        } else if s.ids.contains_key(&req.watch_id) {
            return Err((CreateError::DuplicateId, rev));
        } else {
            req.watch_id
        };
        s.ids.insert(id, gid);
        st.next_gid += 1;
        let has = |f: FilterType| req.filters.contains(&(f as i32));
        st.watchers.insert(
            gid,
            Watcher {
                stream: sid,
                id,
                range,
                no_put: has(FilterType::Noput),
                no_delete: has(FilterType::Nodelete),
                prev_kv: req.prev_kv,
                progress_notify: req.progress_notify,
                fragment: req.fragment,
                next_rev: i64::MAX,
                synced: false,
                sent_since_tick: false,
            },
        );
        Ok((gid, id, rev))
    }

    /// Second half of a create: the watcher starts at `start` (a future revision waits,
    /// a past one catches up from history).
    pub fn activate(&self, gid: Gid, start: i64) {
        let mut st = self.state.lock();
        let rev = st.rev;
        if !st.watchers.contains_key(&gid) {
            return;
        }
        if start > rev {
            if let Some(w) = st.watchers.get_mut(&gid) {
                w.next_rev = start;
            }
            st.set_synced(gid);
        } else {
            st.set_unsynced(gid, start);
            drop(st);
            self.wake.notify_one();
        }
    }

    /// Cancels watch `id` of stream `sid`; returns whether it existed. Nothing is sent
    /// for it after this returns.
    pub fn cancel(&self, sid: u64, id: i64) -> bool {
        let mut st = self.state.lock();
        let Some(gid) = st.streams.get_mut(&sid).and_then(|s| s.ids.remove(&id)) else {
            return false;
        };
        st.remove_watcher(gid);
        true
    }

    /// A WatchProgressRequest: answered with the current revision (watch id -1) once all
    /// the stream's watchers are synced, behind any events already queued.
    pub fn request_progress(&self, sid: u64) {
        let mut st = self.state.lock();
        if let Some(s) = st.streams.get_mut(&sid) {
            s.progress_wanted = true;
        }
        st.answer_progress(sid);
        let waiting = st.streams.get(&sid).is_some_and(|s| s.progress_wanted);
        drop(st);
        if waiting {
            self.wake.notify_one();
        }
    }

    /// The periodic progress notification of a stream: each synced `progress_notify`
    /// watcher that got no events since the last tick receives an empty response at the
    /// current revision (etcd's `sendLoop` ticker).
    pub fn progress_tick(&self, sid: u64) {
        let mut st = self.state.lock();
        let rev = st.rev;
        let State {
            streams, watchers, ..
        } = &mut *st;
        let Some(s) = streams.get(&sid) else { return };
        for gid in s.ids.values() {
            let Some(w) = watchers.get_mut(gid) else {
                continue;
            };
            if !w.progress_notify {
                continue;
            }
            if !w.sent_since_tick && w.synced {
                let _ = s.tx.try_send(w.response(rev, Vec::new()));
            }
            w.sent_since_tick = false;
        }
    }

    /// One round of catching up: returns (unsynced work remains, progress was made).
    fn sync_round(&self) -> (bool, bool) {
        // Phase 1: choose watchers; cancel those whose history is compacted.
        let compact = self.store.compact_revision();
        let mut progressed = false;
        let (chosen, target, want_prev) = {
            let mut st = self.state.lock();
            let pending_progress: Vec<u64> = st
                .streams
                .iter()
                .filter(|(_, s)| s.progress_wanted)
                .map(|(id, _)| *id)
                .collect();
            for sid in &pending_progress {
                st.answer_progress(*sid);
            }
            let mut chosen = Vec::new();
            let mut want_prev = false;
            let ids: Vec<Gid> = st
                .unsynced
                .iter()
                .take(MAX_WATCHERS_PER_SYNC)
                .copied()
                .collect();
            for gid in ids {
                let Some(w) = st.watchers.get(&gid) else {
                    st.unsynced.remove(&gid);
                    continue;
                };
                if w.next_rev < compact {
                    let out = Outgoing {
                        resp: WatchResponse {
                            // etcd reports the compaction with revision 0 in the header.
                            header: Some(header(0)),
                            watch_id: w.id,
                            canceled: true,
                            compact_revision: compact,
                            ..Default::default()
                        },
                        fragment: false,
                    };
                    let sent = st
                        .streams
                        .get(&w.stream)
                        .is_some_and(|s| s.tx.try_send(out).is_ok());
                    if sent {
                        st.remove_watcher(gid);
                        progressed = true;
                    }
                    continue;
                }
                want_prev |= w.prev_kv;
                chosen.push(Chosen {
                    gid,
                    next_rev: w.next_rev,
                    range: w.range.clone(),
                });
            }
            let busy = !st.unsynced.is_empty() || st.streams.values().any(|s| s.progress_wanted);
            if chosen.is_empty() {
                return (busy, progressed);
            }
            (chosen, st.rev, want_prev)
        };
        let Some(from) = chosen.iter().map(|c| c.next_rev).min() else {
            return (true, progressed);
        };
        // Phase 2: read the history without the hub lock.
        let range = match chosen.as_slice() {
            [one] => Some(one.range.clone()),
            _ => None,
        };
        let history = self.store.history(&HistoryRequest {
            from,
            to: target,
            max_revs: MAX_REVS_PER_SYNC,
            range,
            prev_kv: want_prev,
        });
        let history = match history {
            Ok(h) => h,
            // Compacted meanwhile: the next round cancels the affected watchers.
            Err(MvccError::Compacted) => return (true, progressed),
            Err(e) => {
                tracing::error!(error = %e, "watch: reading history failed; retrying");
                return (true, false);
            }
        };
        // Phase 3: deliver under the lock.
        let mut st = self.state.lock();
        for c in chosen {
            let Some(w) = st.watchers.get(&c.gid) else {
                continue;
            };
            if w.synced || w.next_rev != c.next_rev || c.next_rev > history.covered {
                continue;
            }
            let (evs, cut) = cap_bytes(w.select(history.events.iter()));
            let mut next = cut.unwrap_or(history.covered + 1);
            if !evs.is_empty() {
                let out = w.response(target, evs);
                let sent = st
                    .streams
                    .get(&w.stream)
                    .is_some_and(|s| s.tx.try_send(out).is_ok());
                if !sent {
                    continue; // parked: retried next round
                }
            }
            progressed = true;
            if let Some(w) = st.watchers.get_mut(&c.gid) {
                w.next_rev = next;
                w.sent_since_tick = true;
            }
            if cut.is_none() && next <= st.rev && st.rev - next < FINAL_GAP_REVS {
                // Close the last gap while publishing is held off.
                match self.close_gap(&mut st, c.gid, next) {
                    Some(n) => next = n,
                    None => continue,
                }
            }
            if next > st.rev {
                st.set_synced(c.gid);
            }
        }
        let busy = !st.unsynced.is_empty() || st.streams.values().any(|s| s.progress_wanted);
        (busy, progressed)
    }

    /// Under the hub lock: reads `[next, rev]` for one watcher and sends it. Returns the
    /// new next revision, or `None` if its queue is full.
    fn close_gap(&self, st: &mut State, gid: Gid, next: i64) -> Option<i64> {
        let w = st.watchers.get(&gid)?;
        let h = self
            .store
            .history(&HistoryRequest {
                from: next,
                to: st.rev,
                max_revs: 0,
                range: Some(w.range.clone()),
                prev_kv: w.prev_kv,
            })
            .ok()?;
        let (evs, cut) = cap_bytes(w.select(h.events.iter()));
        if !evs.is_empty() {
            let out = w.response(st.rev, evs);
            let s = st.streams.get(&w.stream)?;
            s.tx.try_send(out).ok()?;
        }
        let next = cut.unwrap_or(h.covered + 1);
        let w = st.watchers.get_mut(&gid)?;
        w.next_rev = next;
        Some(next)
    }
}

/// Keeps whole revisions of `evs` up to [`MAX_SYNC_RESPONSE_BYTES`]; returns the kept
/// events and, if some were cut, the first revision left out.
fn cap_bytes(mut evs: Vec<Event>) -> (Vec<Event>, Option<i64>) {
    use prost::Message;
    let rev_of = |e: &Event| e.kv.as_ref().map_or(0, |k| k.mod_revision);
    let mut size = 0usize;
    for i in 0..evs.len() {
        if i > 0 && size >= MAX_SYNC_RESPONSE_BYTES && rev_of(&evs[i]) != rev_of(&evs[i - 1]) {
            let cut = rev_of(&evs[i]);
            evs.truncate(i);
            return (evs, Some(cut));
        }
        size += evs[i].encoded_len();
    }
    (evs, None)
}

/// The revision of a staged write's events (all events of one write share it).
fn staged_rev(events: &[Event]) -> Option<i64> {
    events
        .first()
        .and_then(|e| e.kv.as_ref())
        .map(|k| k.mod_revision)
}

/// Delivers a batch of committed revisions (in revision order) to the synced watchers
/// they concern: one response per watcher carrying its events of every revision of the
/// batch, as etcd sends a catching-up watcher several revisions at once. Returns whether
/// a watcher was parked.
fn notify(st: &mut State, batch: &[Arc<Vec<Event>>], store: &Store) -> bool {
    let revs = || batch.iter().filter_map(|evs| staged_rev(evs));
    let (Some(first), Some(last)) = (revs().next(), revs().next_back()) else {
        return false;
    };
    st.rev = st.rev.max(last);
    let mut matched: Vec<Gid> = Vec::new();
    let mut events = 0usize;
    for ev in batch.iter().flat_map(|evs| evs.iter()) {
        if let Some(kv) = &ev.kv {
            events += 1;
            st.synced.for_each_match(&kv.key, |g| matched.push(g));
        }
    }
    if events > 1 {
        // A watcher matching several events is served once.
        matched.sort_unstable();
        matched.dedup();
    }
    // The applier leaves `prev_kv` out; read it (in one backend read for the whole
    // batch) only if a watcher here asked for it.
    let with_prev;
    let mut batch = batch;
    if matched
        .iter()
        .any(|g| st.watchers.get(g).is_some_and(|w| w.prev_kv))
    {
        let mut all: Vec<Event> = batch.iter().flat_map(|evs| evs.iter().cloned()).collect();
        if let Err(error) = store.fill_prev_kvs(&mut all) {
            tracing::warn!(%error, "watch events sent without prev_kv: the backend read failed");
        }
        let mut all = all.into_iter();
        with_prev = batch
            .iter()
            .map(|evs| Arc::new(all.by_ref().take(evs.len()).collect::<Vec<_>>()))
            .collect::<Vec<_>>();
        batch = &with_prev;
    }
    let mut parked = false;
    for gid in matched {
        let Some(w) = st.watchers.get(&gid) else {
            continue;
        };
        if w.next_rev > last {
            continue; // waits for a future start revision
        }
        let evs = w.select(batch.iter().flat_map(|evs| evs.iter()));
        if evs.is_empty() {
            continue; // a batch filtered to nothing is not sent
        }
        let missed_from = w.next_rev.max(first);
        let out = w.response(last, evs);
        let sent = match st.streams.get(&w.stream) {
            Some(s) => match s.tx.try_send(out) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => false,
                // The stream is going away; close_stream removes the watcher.
                Err(mpsc::error::TrySendError::Closed(_)) => true,
            },
            None => true,
        };
        if sent {
            if let Some(w) = st.watchers.get_mut(&gid) {
                w.next_rev = last + 1;
                w.sent_since_tick = true;
            }
        } else {
            st.set_unsynced(gid, missed_from);
            parked = true;
        }
    }
    parked
}

#[cfg(test)]
mod tests;
