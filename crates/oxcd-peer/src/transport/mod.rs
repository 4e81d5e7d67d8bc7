//! [`PeerTransport`]: the raft node's [`Transport`] over the network.
//!
//! `send` runs on the raft thread and never blocks: the messages for each destination are
//! framed into its bounded [`outbox::Outbox`] (full, or the link down: dropped and
//! counted; raft retries) and written to its open raft stream ([`crate::raft_stream`])
//! with one non-blocking write where the socket allows; a task per peer keeps the stream
//! open and writes what the raft thread could not ([`stream`]). A `MsgSnapshot` instead
//! starts a snapshot send on a stream of its own ([`snapshot`]), so heartbeats keep
//! flowing while a large backend is sent.

mod probe;
pub(crate) use probe::{probing_body, PROBING_PATH};
mod outbox;
mod snapshot;
pub(crate) use snapshot::RemoveOnDrop;
mod stream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use oxcd_raft::eraftpb::{Message, MessageType};
use oxcd_raft::{RaftHandle, SnapshotStatus, Transport};
use parking_lot::{Mutex, RwLock};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::stats::{LinkStats, PeerStats};
use crate::{DialOptions, PeerClient, PeerError, PeerHandler};

/// Tunables of a [`PeerTransport`].
#[derive(Debug, Clone)]
pub struct TransportOptions {
    /// How to reach peers.
    pub dial: DialOptions,
    /// Messages waiting per peer before further ones are dropped (TiKV: 8192).
    pub queue_capacity: usize,
    /// Size of the pieces a snapshot is sent in (1 MiB).
    pub snapshot_chunk_bytes: usize,
    /// First wait before reconnecting to a peer; doubles per failure.
    pub backoff_min: Duration,
    /// Longest wait before reconnecting.
    pub backoff_max: Duration,
    /// Where the per-peer counters go (share it with the handler's
    /// [`PeerHandler::peer_stats`], so both directions land in one place).
    pub stats: Arc<PeerStats>,
    /// How often each peer is probed for its round-trip time (etcd: 4 s).
    pub probe_interval: Duration,
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            dial: DialOptions::default(),
            queue_capacity: 4096,
            snapshot_chunk_bytes: 1 << 20,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            stats: PeerStats::new(),
            probe_interval: probe::PROBE_INTERVAL,
        }
    }
}

/// Counters of a [`PeerTransport`], for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Messages handed to a peer stream.
    pub sent: u64,
    /// Messages dropped: queue full, peer unknown, or not connected.
    pub dropped: u64,
    /// Times a peer was reported unreachable to raft.
    pub unreachable: u64,
    /// Snapshots the peer confirmed as received.
    pub snapshots_sent: u64,
    /// Snapshot sends that failed.
    pub snapshots_failed: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    dropped: AtomicU64,
    unreachable: AtomicU64,
    snapshots_sent: AtomicU64,
    snapshots_failed: AtomicU64,
}

/// A peer: its URLs (watched by its tasks), its outbox, its stream task and its prober.
struct Peer {
    urls: watch::Sender<Vec<String>>,
    outbox: Arc<outbox::Outbox>,
    task: JoinHandle<()>,
    prober: JoinHandle<()>,
    /// Its counters.
    link: Arc<LinkStats>,
    /// A snapshot send to this peer is running.
    snapshot_busy: Arc<AtomicBool>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
        self.prober.abort();
        self.link.deactivate();
    }
}

/// State shared by the transport's handle and its tasks.
struct Shared {
    handler: Arc<dyn PeerHandler>,
    opts: TransportOptions,
    runtime: Handle,
    raft: RwLock<Option<RaftHandle>>,
    peers: Mutex<HashMap<u64, Peer>>,
    removed: watch::Sender<bool>,
    counters: Counters,
    /// Set by [`PeerTransport::shutdown`]: no peer is added any more.
    stopped: AtomicBool,
    /// Peers whose link is down (unreachable or refused) since it last failed.
    down: Mutex<std::collections::BTreeSet<u64>>,
}

impl Shared {
    fn raft(&self) -> Option<RaftHandle> {
        self.raft.read().clone()
    }

    fn report_unreachable(&self, to: u64) {
        self.counters.unreachable.fetch_add(1, Ordering::Relaxed);
        if let Some(raft) = self.raft() {
            let _ = raft.report_unreachable(to);
        }
    }

    fn report_snapshot(&self, to: u64, status: SnapshotStatus) {
        let c = match status {
            SnapshotStatus::Finish => &self.counters.snapshots_sent,
            SnapshotStatus::Failure => &self.counters.snapshots_failed,
        };
        c.fetch_add(1, Ordering::Relaxed);
        if let Some(raft) = self.raft() {
            let _ = raft.report_snapshot(to, status);
        }
    }

    fn count_dropped(&self, n: u64) {
        self.counters.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// A peer said this member was removed: tell whoever watches (core stops the member).
    fn mark_removed(&self) {
        if !self.removed.send_replace(true) {
            tracing::error!(
                member = %format!("{:x}", self.handler.member_id()),
                "{}", crate::MEMBER_REMOVED
            );
        }
    }
}

/// The peer transport: implements [`Transport`] for the raft node; clones share it.
///
/// Lifecycle: create it inside a tokio runtime with [`PeerTransport::new`], add the
/// initial peers with [`PeerTransport::set_peer_urls`], start the raft node with a clone,
/// then hand it the node's handle with [`PeerTransport::set_raft`] (until then nothing is
/// reported to raft). Peers come and go with membership changes through
/// [`PeerTransport::set_peer_urls`] / [`PeerTransport::remove_peer`]. Stop it with
/// [`PeerTransport::shutdown`] (its tasks hold it, and it holds the raft handle).
#[derive(Clone)]
pub struct PeerTransport {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PeerTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTransport")
            .field(
                "member",
                &format_args!("{:x}", self.shared.handler.member_id()),
            )
            .field("peers", &self.shared.peers.lock().len())
            .finish()
    }
}

impl PeerTransport {
    /// A transport for the member `handler` serves, with no peers yet. Must be called
    /// within a tokio runtime (its tasks run there).
    pub fn new(handler: Arc<dyn PeerHandler>, opts: TransportOptions) -> Result<Self, PeerError> {
        let runtime = Handle::try_current().map_err(|_| {
            PeerError::Config("the peer transport must be created within a tokio runtime".into())
        })?;
        Ok(Self {
            shared: Arc::new(Shared {
                handler,
                opts,
                runtime,
                raft: RwLock::new(None),
                peers: Mutex::new(HashMap::new()),
                removed: watch::channel(false).0,
                counters: Counters::default(),
                stopped: AtomicBool::new(false),
                down: Mutex::default(),
            }),
        })
    }

    /// Gives the transport the raft node's handle, for `report_unreachable` and
    /// `report_snapshot`.
    pub fn set_raft(&self, raft: RaftHandle) {
        *self.shared.raft.write() = Some(raft);
    }

    /// Adds peer `id` or replaces its URLs (a reconnection to the new URLs follows at
    /// once). Ignored for this member's own id.
    pub fn set_peer_urls(&self, id: u64, urls: Vec<String>) {
        if id == self.shared.handler.member_id() {
            return;
        }
        let mut peers = self.shared.peers.lock();
        if self.shared.stopped.load(Ordering::Acquire) {
            return;
        }
        if let Some(p) = peers.get(&id) {
            p.urls.send_if_modified(|cur| {
                let changed = *cur != urls;
                *cur = urls.clone();
                changed
            });
            return;
        }
        let (urls_tx, urls_rx) = watch::channel(urls);
        let outbox = Arc::new(outbox::Outbox::new(self.shared.opts.queue_capacity));
        let link = self.shared.opts.stats.link(id);
        let task = self.shared.runtime.spawn(stream::run(
            self.shared.clone(),
            id,
            outbox.clone(),
            urls_rx.clone(),
            link.clone(),
        ));
        let prober = self.shared.runtime.spawn(probe::run(
            self.shared.opts.dial.clone(),
            self.shared.opts.probe_interval,
            urls_rx,
            link.clone(),
        ));
        peers.insert(
            id,
            Peer {
                urls: urls_tx,
                outbox,
                task,
                prober,
                link,
                snapshot_busy: Arc::new(AtomicBool::new(false)),
            },
        );
    }

    /// Forgets peer `id` (removed from the cluster): its stream closes, queued messages
    /// are dropped.
    pub fn remove_peer(&self, id: u64) {
        self.shared.peers.lock().remove(&id);
        self.shared.down.lock().remove(&id);
    }

    /// The peers whose link is down: it failed (unreachable, or the peer refused this
    /// member) and has not worked since. Their tasks keep retrying.
    pub fn unreachable_peers(&self) -> Vec<u64> {
        self.shared.down.lock().iter().copied().collect()
    }

    /// Stops every peer task (their streams close, queued messages are dropped) and lets
    /// go of the raft handle; later messages are dropped. Call it when the member stops:
    /// the tasks and the handle otherwise live as long as the runtime. Snapshot sends
    /// under way finish or fail on their own.
    pub fn shutdown(&self) {
        let peers = {
            let mut p = self.shared.peers.lock();
            self.shared.stopped.store(true, Ordering::Release);
            std::mem::take(&mut *p)
        };
        drop(peers);
        *self.shared.raft.write() = None;
    }

    /// The ids of the peers known.
    pub fn peer_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.shared.peers.lock().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Becomes `true` when a peer refused this member as removed from the cluster: the
    /// member should stop (etcd logs "the member has been permanently removed from the
    /// cluster" and exits).
    pub fn removed(&self) -> watch::Receiver<bool> {
        self.shared.removed.subscribe()
    }

    /// The counters so far.
    pub fn stats(&self) -> TransportStats {
        let c = &self.shared.counters;
        TransportStats {
            sent: c.sent.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            unreachable: c.unreachable.load(Ordering::Relaxed),
            snapshots_sent: c.snapshots_sent.load(Ordering::Relaxed),
            snapshots_failed: c.snapshots_failed.load(Ordering::Relaxed),
        }
    }

    /// The per-peer counters (etcd's `etcd_network_peer_*` families).
    pub fn peer_stats(&self) -> Arc<PeerStats> {
        self.shared.opts.stats.clone()
    }

    /// A client for the peer requests that are not raft messages (lease forwarding),
    /// dialling as this transport does.
    pub fn client(&self) -> PeerClient {
        PeerClient::new(self.shared.handler.clone(), self.shared.opts.dial.clone())
    }

    /// Hands `msgs` (all for peer `to`, in order) to its outbox.
    fn send_to(&self, to: u64, msgs: Vec<Message>) {
        let n = msgs.len() as u64;
        let peer = {
            let peers = self.shared.peers.lock();
            peers.get(&to).map(|p| (p.outbox.clone(), p.link.clone()))
        };
        let Some((outbox, link)) = peer else {
            self.shared.count_dropped(n);
            tracing::debug!(to = %format!("{to:x}"), count = n, "dropped messages to an unknown peer");
            return;
        };
        let pushed = outbox.push(msgs);
        let c = &self.shared.counters;
        c.sent.fetch_add(pushed.accepted, Ordering::Relaxed);
        LinkStats::add(&link.sent_bytes, pushed.bytes);
        if pushed.dropped > 0 {
            LinkStats::add(&link.sent_failures, pushed.dropped);
            let before = c.dropped.fetch_add(pushed.dropped, Ordering::Relaxed);
            // One line per 1024 drops is enough to see it.
            if before / 1024 != (before + pushed.dropped) / 1024 {
                tracing::warn!(
                    to = %format!("{to:x}"),
                    dropped_total = before + pushed.dropped,
                    "peer link down or its queue full: dropping raft messages"
                );
            }
        }
    }
}

impl Transport for PeerTransport {
    fn send(&mut self, msgs: Vec<Message>) {
        // Per destination, in order: each peer's messages are framed and written together.
        let mut by_peer: Vec<(u64, Vec<Message>)> = Vec::new();
        for m in msgs {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                snapshot::start(&self.shared, m);
                continue;
            }
            match by_peer.iter_mut().find(|(to, _)| *to == m.to) {
                Some((_, list)) => list.push(m),
                None => by_peer.push((m.to, vec![m])),
            }
        }
        for (to, list) in by_peer {
            self.send_to(to, list);
        }
    }
}
