//! The node thread's loop.
//!
//! Per iteration: wait for a request until the next tick, drain the queue,
//! tick if due, start a batched ReadIndex round for waiting readers, then
//! handle every `Ready`, each preceded on a leader by `tell_commit` (a moved commit
//! index goes to each follower once, not after every acknowledgement):
//! 1. send messages (a leader may send before persisting, as etcd does);
//! 2. persist a received snapshot (marker and data) and deliver it;
//! 3. append entries + hard state to the WAL with **one** fdatasync and
//!    mirror them into `MemStorage`;
//! 4. send persisted messages, deliver committed entries (now durable);
//! 5. `advance`, then the `LightReady` the same way, then advance raft's
//!    applied index to what was delivered, but never past a membership
//!    change the applier has not applied yet.
//!
//! Then it publishes status and leadership, and moves the snapshot point.
//!
//! Commit-only hard-state changes are not synced on their own: those from
//! `LightReady` are not even written, and a `Ready` whose hard state moved
//! only its commit index writes it without an fdatasync (raft's `MustSync`);
//! they ride along with the next synced write or the final save at
//! shutdown. Losing one is harmless: the backend's applied index, passed at
//! start-up, raises the commit index (see [`super::storage`]), and anything
//! else is re-committed by the next leader term.

mod changes;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use raft::eraftpb::{Entry, EntryType, HardState};
use raft::{RawNode, ReadState, StateRole, Storage};
use tokio::sync::{mpsc as tokio_mpsc, oneshot, watch};

use super::heartbeat::HeartbeatDetector;
use super::membership::ConfHistory;
use super::snapshot::NodeStorage;
use super::storage::bootstrap;
use super::{
    logger, CommittedEntry, EntryKind, Leadership, RaftConfig, RaftError, Request, Shared,
    StartOptions, Transport,
};
use crate::wal::{Wal, WalContents};

/// Most requests handled before the loop looks at ticks and readies again.
const MAX_DRAIN: usize = 4096;
/// Most `Ready`s processed per loop iteration.
const MAX_READIES: usize = 64;
/// How long a ReadIndex round may go unanswered before the next one starts beside it
/// (etcd 3.5's `readIndexRetryTime`): its message or its answer may have been lost.
pub(crate) const READ_RETRY: Duration = Duration::from_millis(500);

type ReadReply = oneshot::Sender<Result<u64, RaftError>>;

/// Who waits for a ReadIndex round.
enum Reader {
    /// A reader on this member.
    Local(ReadReply),
    /// On the leader, a follower's `MsgReadIndex` (its round's context): answered with
    /// a `MsgReadIndexResp` when a round of the leader's own confirms it still leads.
    Follower { from: u64, ctx: bytes::Bytes },
}

/// The channels and shared state a worker talks through.
pub(crate) struct Parts<T: Transport> {
    pub transport: T,
    pub rx: Receiver<Request>,
    pub committed: tokio_mpsc::UnboundedSender<Vec<CommittedEntry>>,
    pub shared: Arc<Shared>,
    pub leadership: watch::Sender<Leadership>,
}

/// Owns the `RawNode` and the WAL; lives on the node thread.
pub(crate) struct Worker<T: Transport> {
    raw: RawNode<NodeStorage>,
    wal: Wal,
    transport: T,
    rx: Receiver<Request>,
    committed: tokio_mpsc::UnboundedSender<Vec<CommittedEntry>>,
    shared: Arc<Shared>,
    leadership: watch::Sender<Leadership>,
    id: u64,
    tick: Duration,
    /// Readers waiting for the next ReadIndex round.
    pending_reads: Vec<Reader>,
    pending_since: Option<Instant>,
    /// ReadIndex rounds in flight, by request context.
    inflight_reads: HashMap<Vec<u8>, (Instant, Vec<Reader>)>,
    read_timeout: Duration,
    /// Makes read contexts unique across restarts of this member.
    read_nonce: u64,
    next_read: u64,
    /// Hard state last written to the WAL.
    wal_hs: HardState,
    snapshot_count: u64,
    last_compact: u64,
    /// First index the in-memory log still holds (entries below were dropped).
    mem_first: u64,
    /// Entries the in-memory log keeps behind the applied and durable index.
    catch_up_entries: u64,
    /// Whether this member is the only voter (campaign at once).
    sole_voter: bool,
    /// Membership now and as of the recent indexes snapshots may be taken at.
    conf: ConfHistory,
    /// Delivered membership changes the applier has not applied (or
    /// rejected) yet, in log order.
    unapplied_conf_changes: VecDeque<u64>,
    /// Last index handed to the applier (an entry or a snapshot).
    delivered_to: u64,
    /// A received snapshot to hand to the applier again before anything else.
    pending_snapshot: Option<(u64, u64, Vec<u8>)>,
    /// Whether this leader's heartbeats go out on time.
    heartbeats: HeartbeatDetector,
    /// The commit index [`Self::tell_commit`] last made sure the followers are sent.
    told_commit: u64,
}

impl<T: Transport> Worker<T> {
    pub(crate) fn new(
        cfg: &RaftConfig,
        mut wal: Wal,
        contents: WalContents,
        parts: Parts<T>,
        opts: StartOptions,
    ) -> Result<Self, RaftError> {
        let boot = bootstrap(&contents, &cfg.peers, cfg.applied)?;
        if contents.conf_state.is_none() {
            // Record the initial membership so restarts don't depend on
            // `peers` matching.
            wal.save_conf_state(&boot.conf_state)?;
        }
        let rc = raft::Config {
            id: cfg.id,
            election_tick: cfg.election_ticks,
            heartbeat_tick: cfg.heartbeat_ticks,
            applied: boot.raft_applied,
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            // Commit indexes reach the followers through `tell_commit`, once per loop
            // iteration, rather than an append to every follower after every ack.
            skip_bcast_commit: true,
            ..Default::default()
        };
        rc.validate()?;
        let storage = NodeStorage::new(boot.storage, opts.snapshot_source);
        let raw = RawNode::new(&rc, storage, &logger::logger())?;
        // Learners do not vote: the only voter can elect itself at once.
        let sole_voter =
            boot.conf_state.voters == [cfg.id] && boot.conf_state.voters_outgoing.is_empty();
        *parts.shared.conf_state.lock() = boot.conf_state.clone();
        let read_nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let election = cfg.tick.saturating_mul(cfg.election_ticks as u32);
        Ok(Self {
            raw,
            wal,
            transport: parts.transport,
            rx: parts.rx,
            committed: parts.committed,
            shared: parts.shared,
            leadership: parts.leadership,
            id: cfg.id,
            tick: cfg.tick,
            pending_reads: Vec::new(),
            pending_since: None,
            inflight_reads: HashMap::new(),
            read_timeout: election.saturating_mul(2).max(Duration::from_secs(1)),
            read_nonce,
            next_read: 0,
            wal_hs: contents.hard_state,
            snapshot_count: cfg.snapshot_count,
            last_compact: boot.snapshot_index,
            mem_first: boot.snapshot_index,
            catch_up_entries: opts.catch_up_entries.max(1),
            sole_voter,
            conf: ConfHistory::new(boot.conf_state_index, boot.conf_state),
            unapplied_conf_changes: VecDeque::new(),
            delivered_to: boot.raft_applied,
            pending_snapshot: boot.pending_snapshot,
            heartbeats: HeartbeatDetector::new(cfg.tick.saturating_mul(cfg.heartbeat_ticks as u32)),
            told_commit: 0,
        })
    }

    /// Runs on the caller's thread before the node thread starts: a sole
    /// voter campaigns immediately instead of waiting out an election
    /// timeout, and the resulting readies (election, replay) are handled.
    pub(crate) fn bootstrap(&mut self) -> Result<(), RaftError> {
        if let Some((index, term, data)) = self.pending_snapshot.take() {
            tracing::warn!(
                index,
                "handing the applier again a snapshot it had not made durable before the stop"
            );
            self.deliver_snapshot(index, term, data)?;
        }
        if self.sole_voter {
            self.raw.campaign()?;
        }
        self.process_readies()?;
        self.publish_status();
        Ok(())
    }

    /// The thread body. Returns when asked to stop or on a fatal error.
    pub(crate) fn run(mut self) {
        let mut next_tick = Instant::now() + self.tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.take_requests(wait) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::error!(error = %e, "raft node stopping after a fatal error");
                    break;
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                self.raw.tick();
                next_tick += self.tick;
                if next_tick < now {
                    // Fell behind (slow fsync): don't burst-tick.
                    next_tick = now + self.tick;
                }
            }
            self.issue_reads();
            let mut handled = self.process_readies();
            // A round answered in those readies lets the readers queued behind it go now,
            // not after the next request or tick.
            if handled.is_ok() && self.issue_reads() {
                handled = self.process_readies();
            }
            if let Err(e) = handled.and_then(|()| self.maybe_compact()) {
                tracing::error!(error = %e, "raft node stopping after a fatal error");
                break;
            }
            self.expire_reads();
            self.publish_status();
            self.move_snapshot_point();
        }
        self.finish();
    }

    /// Waits up to `wait` for a request, then handles everything queued (up to
    /// [`MAX_DRAIN`]). `Ok(false)` means stop, an error is fatal.
    fn take_requests(&mut self, wait: Duration) -> Result<bool, RaftError> {
        match self.rx.recv_timeout(wait) {
            Ok(req) => {
                if !self.handle(req)? {
                    return Ok(false);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(false),
        }
        for _ in 0..MAX_DRAIN {
            let Ok(req) = self.rx.try_recv() else { break };
            if !self.handle(req)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Handles one request; `Ok(false)` means stop, an error is fatal.
    fn handle(&mut self, req: Request) -> Result<bool, RaftError> {
        match req {
            Request::Propose { data, reply } => {
                reply.send(self.propose(data));
            }
            Request::ProposeConfChange { cc, reply } => {
                let _ = reply.send(self.propose_conf_change(cc));
            }
            Request::ApplyConfChange { index, cc, reply } => {
                let result = self.apply_conf_change(index, cc);
                // A WAL failure stops the node; the caller then sees Stopped.
                let answer = match result {
                    Err(RaftError::Wal(e)) => {
                        let _ = reply.send(Err(RaftError::Stopped));
                        return Err(RaftError::Wal(e));
                    }
                    other => other,
                };
                let _ = reply.send(answer);
            }
            Request::ReportSnapshot { to, status } => self.raw.report_snapshot(to, status),
            Request::ReportUnreachable(to) => self.raw.report_unreachable(to),
            Request::TransferLeadership(to) => self.raw.transfer_leader(to),
            Request::MatchIndexes { reply } => {
                let raft = &self.raw.raft;
                let matches = (raft.state == raft::StateRole::Leader).then(|| {
                    raft.prs()
                        .iter()
                        .map(|(id, pr)| (*id, pr.matched))
                        .collect()
                });
                let _ = reply.send(matches);
            }
            Request::ReadIndex { reply } => {
                self.pending_since.get_or_insert_with(Instant::now);
                self.pending_reads.push(Reader::Local(reply));
            }
            Request::Step(msg) if self.is_follower_read(&msg) => {
                self.pending_since.get_or_insert_with(Instant::now);
                let ctx = msg.entries[0].data.clone();
                self.pending_reads.push(Reader::Follower {
                    from: msg.from,
                    ctx,
                });
            }
            Request::Step(msg) => {
                if let Err(e) = self.raw.step(*msg) {
                    tracing::debug!(error = %e, "ignoring raft message");
                }
            }
            Request::Shutdown => return Ok(false),
        }
        Ok(true)
    }

    /// Whether `msg` is a follower's ReadIndex request this leader serves with its own
    /// rounds rather than stepping it into raft.
    ///
    /// Why: raft answers each such request with a heartbeat round of its own, so two
    /// busy followers cost the leader two rounds per round trip (and each follower the
    /// heartbeats of the other's rounds too). Queued with the leader's own readers, they
    /// share one round. It is as safe: the round starts after the request arrived, so its
    /// index is at least the commit index the request saw, and its quorum confirms that
    /// this member still led after that.
    fn is_follower_read(&self, msg: &raft::eraftpb::Message) -> bool {
        let raft = &self.raw.raft;
        msg.get_msg_type() == raft::eraftpb::MessageType::MsgReadIndex
            && raft.state == StateRole::Leader
            && msg.from != self.id
            && msg.term <= raft.term
            && msg.entries.len() == 1
    }

    /// Proposes `data`: on the leader it is appended, on a follower that knows the leader
    /// raft forwards it there (as etcd's followers do); without a leader it fails at once.
    fn propose(&mut self, data: Vec<u8>) -> Result<(), RaftError> {
        if data.is_empty() {
            return Err(RaftError::EmptyProposal);
        }
        if self.raw.raft.leader_id == 0 {
            return Err(RaftError::NoLeader);
        }
        match self.raw.propose(Vec::new(), data) {
            Ok(()) => Ok(()),
            Err(raft::Error::ProposalDropped) => Err(RaftError::ProposalDropped),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts one ReadIndex round for all waiting readers, when raft can
    /// serve it: a leader only after committing an entry in its term (raft-rs
    /// silently drops earlier requests), a follower only with a known leader.
    /// Returns whether a round started.
    ///
    /// One round is in flight at a time, as in etcd's linearizable read loop: readers
    /// arriving meanwhile wait for the next round, so a busy member sends one round per
    /// round trip, each answering many readers, instead of one per loop iteration. Every
    /// round costs the leader a heartbeat to each follower and their answers. A round
    /// unanswered for [`READ_RETRY`] is presumed lost: its readers join the next one.
    fn issue_reads(&mut self) -> bool {
        let now = Instant::now();
        self.requeue_reads(|since| now.duration_since(since) >= READ_RETRY);
        if self.pending_reads.is_empty() || !self.inflight_reads.is_empty() {
            return false;
        }
        let r = &self.raw.raft;
        let ready = match r.state {
            StateRole::Leader => r.commit_to_current_term(),
            _ => r.leader_id != 0,
        };
        if !ready {
            return false;
        }
        self.next_read += 1;
        let mut ctx = Vec::with_capacity(16);
        ctx.extend_from_slice(&self.read_nonce.to_be_bytes());
        ctx.extend_from_slice(&self.next_read.to_be_bytes());
        self.raw.read_index(ctx.clone());
        self.pending_since = None;
        let waiters = std::mem::take(&mut self.pending_reads);
        self.inflight_reads.insert(ctx, (now, waiters));
        true
    }

    /// Hands the readers of the rounds in flight that started at a time `lost` accepts to
    /// the next round. Raft may never answer a round whose message was lost, nor one
    /// from before a change of leader or role (a follower's request went to the old
    /// leader; a leader that stepped down forgets its own). A later round is as good for
    /// those readers, since it starts after they arrived; they keep their start time for
    /// the read timeout.
    fn requeue_reads(&mut self, lost: impl Fn(Instant) -> bool) {
        let pending_since = &mut self.pending_since;
        let pending_reads = &mut self.pending_reads;
        self.inflight_reads.retain(|_, (since, waiters)| {
            if !lost(*since) {
                return true;
            }
            *pending_since = Some(pending_since.map_or(*since, |p| p.min(*since)));
            pending_reads.append(waiters);
            false
        });
    }

    fn resolve_reads(&mut self, states: Vec<ReadState>) {
        let mut answers = Vec::new();
        for rs in states {
            let Some((_, readers)) = self.inflight_reads.remove(&rs.request_ctx) else {
                continue;
            };
            for reader in readers {
                match reader {
                    Reader::Local(w) => {
                        let _ = w.send(Ok(rs.index));
                    }
                    // As raft answers a follower's request: the index is the leader's
                    // commit index, of the leader's term (it has committed in its term).
                    Reader::Follower { from, ctx } => {
                        let mut m = raft::eraftpb::Message::default();
                        m.set_msg_type(raft::eraftpb::MessageType::MsgReadIndexResp);
                        m.from = self.id;
                        m.to = from;
                        m.term = self.raw.raft.term;
                        m.index = rs.index;
                        m.entries = vec![Entry {
                            data: ctx,
                            ..Default::default()
                        }]
                        .into();
                        answers.push(m);
                    }
                }
            }
        }
        self.send(answers);
    }

    /// Drops the followers' requests among the waiting readers (called once every round
    /// in flight was handed back to them): this member no longer leads, and the followers
    /// retry their rounds, at the new leader, after [`READ_RETRY`].
    fn drop_follower_reads(&mut self) {
        self.pending_reads.retain(|r| matches!(r, Reader::Local(_)));
        if self.pending_reads.is_empty() {
            self.pending_since = None;
        }
    }

    /// Fails readers that waited longer than the read timeout.
    fn expire_reads(&mut self) {
        let now = Instant::now();
        let timeout = self.read_timeout;
        if self
            .pending_since
            .is_some_and(|t| now.duration_since(t) > timeout)
        {
            let err = || match self.raw.raft.leader_id {
                0 => RaftError::NoLeader,
                _ => RaftError::Timeout,
            };
            for r in self.pending_reads.drain(..) {
                if let Reader::Local(w) = r {
                    let _ = w.send(Err(err()));
                }
            }
            self.pending_since = None;
        }
        self.inflight_reads.retain(|_, (since, readers)| {
            if now.duration_since(*since) <= timeout {
                return true;
            }
            for r in readers.drain(..) {
                if let Reader::Local(w) = r {
                    let _ = w.send(Err(RaftError::Timeout));
                }
            }
            false
        });
    }

    fn process_readies(&mut self) -> Result<(), RaftError> {
        for _ in 0..MAX_READIES {
            // Before each `Ready`: acknowledgements just stepped, or the leader's own
            // persisting in the last `advance`, may have moved the commit index.
            self.tell_commit();
            if !self.raw.has_ready() {
                break;
            }
            self.process_ready()?;
        }
        Ok(())
    }

    fn process_ready(&mut self) -> Result<(), RaftError> {
        let mut rd = self.raw.ready();
        if rd.ss().is_some() {
            // A new leader or role: heartbeat intervals are measured afresh, as etcd's.
            self.heartbeats.reset();
            self.requeue_reads(|_| true);
            if self.raw.raft.state != StateRole::Leader {
                self.drop_follower_reads();
            }
        }
        self.send(rd.take_messages());
        if !rd.snapshot().is_empty() {
            self.install_snapshot(rd.snapshot().clone())?;
        }
        self.resolve_reads(rd.take_read_states());
        let mut committed = rd.take_committed_entries();
        let entries = rd.take_entries();
        if rd.snapshot().is_empty() {
            // Committed entries already durable in our own WAL go to the applier before
            // this Ready's fdatasync, not after it: on a leader that is every committed
            // entry (raft commits only what earlier Readys appended), so a write no longer
            // waits for the leader's next fsync before it is applied -- etcd applies
            // concurrently with its WAL write too. An entry not yet in our WAL (a
            // follower learning of a commit with the entries themselves) waits for the
            // save, so the backend never holds an entry the WAL could lose.
            let durable = entries
                .first()
                .map_or(self.wal.last_index(), |e| e.index - 1)
                .min(self.wal.last_index());
            let split = committed.partition_point(|e| e.index <= durable);
            let later = committed.split_off(split);
            self.deliver(std::mem::replace(&mut committed, later))?;
        }
        let hs = self.raw.raft.hard_state();
        let hs = (hs != self.wal_hs).then_some(hs);
        // The durability point: one fdatasync for entries + hard state (none for
        // a change of the commit index alone; see `Wal::save`).
        self.wal.save(&entries, hs.as_ref())?;
        {
            let store = self.raw.mut_store();
            let mut core = store.wl();
            core.append(&entries)?;
            if let Some(hs) = &hs {
                core.set_hardstate(hs.clone());
            }
        }
        if let Some(hs) = hs {
            self.wal_hs = hs;
        }
        self.send(rd.take_persisted_messages());
        self.deliver(committed)?;
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().wl().mut_hard_state().commit = commit;
        }
        self.send(light.take_messages());
        self.deliver(light.take_committed_entries())?;
        self.advance_applied();
        Ok(())
    }

    /// On a leader whose commit index moved since it last looked, makes sure every
    /// follower and learner is sent an append carrying it (raft's own broadcast after each
    /// commit is off, see `skip_bcast_commit`).
    ///
    /// Why: raft-rs by default answers every acknowledgement that commits something with
    /// an append to *every* follower, so under load each batch of proposals costs a
    /// second round of appends and acknowledgements (and a follower `Ready`) that carries
    /// nothing but the commit index. Here one look per `Ready` suffices: a follower
    /// already queued an append that carries the new commit index (the next batch's
    /// entries, typically) gets nothing more, the others an append at once, so followers
    /// learn of a commit as soon as before, never only at the next heartbeat.
    fn tell_commit(&mut self) {
        let raft = &mut self.raw.raft;
        if raft.state != StateRole::Leader {
            return;
        }
        let committed = raft.raft_log.committed;
        if committed <= self.told_commit {
            return;
        }
        self.told_commit = committed;
        let me = raft.id;
        let queued = |to: u64| {
            raft.msgs.iter().any(|m| {
                m.to == to
                    && m.get_msg_type() == raft::eraftpb::MessageType::MsgAppend
                    && m.commit >= committed
            })
        };
        let untold: Vec<u64> = raft
            .prs()
            .iter()
            .map(|(id, _)| *id)
            .filter(|&id| id != me && !queued(id))
            .collect();
        for id in untold {
            // Sends nothing to a follower raft holds back (probing, or its inflight
            // window full); that one learns the index with its next append or heartbeat,
            // as with raft's own broadcast.
            raft.send_append(id);
        }
    }

    fn send(&mut self, msgs: Vec<raft::eraftpb::Message>) {
        if !msgs.is_empty() {
            self.heartbeats.check(&msgs);
            self.transport.send(msgs);
        }
    }

    fn deliver(&mut self, entries: Vec<Entry>) -> Result<(), RaftError> {
        if entries.is_empty() {
            return Ok(());
        }
        let recorded = self.conf.latest().0;
        let batch: Vec<CommittedEntry> = entries.into_iter().map(to_committed).collect();
        for e in &batch {
            if e.kind == EntryKind::ConfChange && e.index > recorded {
                self.unapplied_conf_changes.push_back(e.index);
            }
        }
        if let Some(last) = batch.last() {
            // The applier may make what it applies durable in the backend at any time.
            debug_assert!(
                last.index <= self.wal.last_index(),
                "entry {} delivered before it is in the WAL (last {})",
                last.index,
                self.wal.last_index()
            );
            self.delivered_to = last.index;
        }
        // A dropped receiver means the applier is gone: nothing can make
        // progress, so stop (undelivered entries are replayed on restart).
        self.committed.send(batch).map_err(|_| RaftError::Stopped)
    }

    /// Keeps the in-memory log to `catch_up_entries` behind the index
    /// applied *and* durable in the backend (dropping entries in steps of that
    /// size); every `snapshot_count` such entries, also writes a snapshot
    /// marker and releases old WAL segments. The in-memory log keeps its
    /// catch-up entries then too (as etcd does), so a follower slightly
    /// behind is sent entries, not a snapshot.
    fn maybe_compact(&mut self) -> Result<(), RaftError> {
        if self.snapshot_count == 0 {
            return Ok(());
        }
        let applied = self.shared.applied.load(Ordering::Acquire);
        let durable = self.shared.durable_applied.load(Ordering::Acquire);
        let idx = applied.min(durable).min(self.raw.raft.raft_log.applied);
        let mem_first = idx.saturating_sub(self.catch_up_entries);
        if mem_first >= self.mem_first + self.catch_up_entries {
            self.raw.mut_store().wl().compact(mem_first)?;
            self.mem_first = mem_first;
        }
        if idx <= self.last_compact || idx - self.last_compact < self.snapshot_count {
            return Ok(());
        }
        let term = match self.raw.raft.raft_log.term(idx) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(index = idx, error = %e, "cannot compact: term unavailable");
                return Ok(());
            }
        };
        // Markers carry the membership as of their index, not the latest.
        let Some(cs) = self.conf.as_of(idx).cloned() else {
            return Ok(());
        };
        self.conf.forget_before(idx);
        self.wal.save_snapshot_marker(idx, term, &cs)?;
        let released = self.wal.release_to(idx)?;
        tracing::debug!(index = idx, term, released, "compacted raft log");
        self.last_compact = idx;
        Ok(())
    }

    fn publish_status(&self) {
        let r = &self.raw.raft;
        {
            let mut s = self.shared.status.lock();
            s.id = self.id;
            s.leader_id = r.leader_id;
            s.term = r.term;
            s.commit_index = r.raft_log.committed;
            s.is_leader = r.state == StateRole::Leader;
            s.log_first_index = r.raft_log.store.first_index().unwrap_or(0);
        }
        self.publish_leadership(Leadership {
            role: r.state.into(),
            leader_id: r.leader_id,
            term: r.term,
        });
    }

    fn publish_leadership(&self, now: Leadership) {
        self.leadership.send_if_modified(|seen| {
            let changed = *seen != now;
            *seen = now;
            changed
        });
    }

    /// Marks the node stopped, fails waiters and writes the latest hard
    /// state (a commit-only change may still be unsynced).
    fn finish(&mut self) {
        self.shared.stopped.store(true, Ordering::Release);
        let rounds = self.inflight_reads.drain().flat_map(|(_, (_, rs))| rs);
        for r in self.pending_reads.drain(..).chain(rounds) {
            if let Reader::Local(w) = r {
                let _ = w.send(Err(RaftError::Stopped));
            }
        }
        // Requests still queued are dropped, so their callers see Stopped.
        while self.rx.try_recv().is_ok() {}
        let hs = self.raw.raft.hard_state();
        let saved = if hs != self.wal_hs {
            self.wal.save(&[], Some(&hs))
        } else {
            Ok(())
        };
        if let Err(e) = saved.and_then(|()| self.wal.sync()) {
            tracing::warn!(error = %e, "could not save the final hard state");
        }
        {
            let mut s = self.shared.status.lock();
            s.leader_id = 0;
            s.is_leader = false;
        }
        self.publish_leadership(Leadership {
            role: super::Role::Follower,
            leader_id: 0,
            term: self.raw.raft.term,
        });
        // The leadership channel closes when the worker is dropped, right after.
    }
}

fn to_committed(e: Entry) -> CommittedEntry {
    let (kind, data) = match e.get_entry_type() {
        EntryType::EntryNormal => (EntryKind::Normal, e.data.to_vec()),
        EntryType::EntryConfChangeV2 => (EntryKind::ConfChange, e.data.to_vec()),
        // One form for the applier; undecodable data stays as it is, for the
        // applier's decoding to report.
        EntryType::EntryConfChange => (
            EntryKind::ConfChange,
            crate::wire::conf_change_v1_as_v2(&e.data).unwrap_or_else(|| e.data.to_vec()),
        ),
    };
    CommittedEntry {
        index: e.index,
        term: e.term,
        data,
        kind,
    }
}
