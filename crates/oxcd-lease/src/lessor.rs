//! The lessor's state: every lease, the keys attached to it, and — on the primary (the raft
//! leader) only — when each lease expires and when its remaining TTL is due for a checkpoint.
//!
//! Changes that every member must agree on (grant, revoke, checkpoint, attaching keys) are
//! made by the applier, in log order, and persisted in the backend's auxiliary table
//! [`LEASE_TABLE`] within the write batch of the raft entry. Expiry times are local to the
//! primary: renewals change them in memory only, as in etcd.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use oxcd_mvcc::{MvccError, Store};
use oxcd_proto::etcdserverpb::{LeaseCheckpoint, RangeRequest};
use oxcd_proto::mvccpb::{event::EventType, Event};
use oxcd_proto::oxcdinternal::LeaseRecord;
use parking_lot::Mutex;
use prost::Message;

use crate::LeaseError;

/// etcd's `MaxLeaseTTL`: a grant above this many seconds fails with "too large lease TTL".
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;
/// Name of the backend auxiliary table holding one [`LeaseRecord`] per lease, keyed by the
/// lease id as 8 big-endian bytes.
pub const LEASE_TABLE: &str = "lease";
/// After a revoke of an expired lease has been proposed, the lease is looked at again this
/// much later (etcd's `expiredLeaseRetryInterval`), in case the proposal was lost.
pub const EXPIRED_RETRY_INTERVAL: Duration = Duration::from_secs(3);
/// etcd's `leaseRevokeRate`: at most this many expired leases are revoked per second, so that
/// a mass expiry cannot starve client writes; [`Lessor::promote`] also spreads expiries so
/// that at most 3/4 of it fall in any second.
pub const LEASE_REVOKE_RATE: usize = 1000;

/// Why a renewal could not be served here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewError {
    /// No such lease, or it has expired (its revocation is pending).
    NotFound,
    /// This member is not the primary lessor: the renewal must go to the leader.
    NotPrimary,
}

/// A lease's state as [`Lessor::time_to_live`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseStatus {
    /// Seconds until expiry, truncated (etcd: `int64(Remaining().Seconds())`).
    pub remaining: i64,
    /// The granted TTL.
    pub granted: i64,
    /// Attached keys, sorted, when asked for.
    pub keys: Vec<Vec<u8>>,
}

#[derive(Debug)]
struct Lease {
    /// Granted TTL, seconds.
    ttl: i64,
    /// Last checkpointed remaining TTL, seconds; 0 = none.
    remaining_ttl: i64,
    /// `None` = never expires here (this member is not the primary).
    expiry: Option<Instant>,
    keys: BTreeSet<Vec<u8>>,
    /// When an expired lease whose revocation was proposed is looked at again.
    retry_at: Option<Instant>,
    /// When its next checkpoint is due (primary only); at most one is pending per lease.
    checkpoint_at: Option<Instant>,
    /// The time of this lease's one live entry in `Inner::expiries` (primary only).
    queued_at: Option<Instant>,
}

impl Lease {
    /// etcd's `RemainingTTL`: the checkpointed remaining TTL if any, else the TTL.
    fn remaining_ttl_or_ttl(&self) -> i64 {
        if self.remaining_ttl > 0 {
            self.remaining_ttl
        } else {
            self.ttl
        }
    }

    /// etcd's `refresh(extend)`: expire `extend` + (checkpointed remaining or full TTL) from now.
    fn refresh(&mut self, now: Instant, extend: Duration) -> Instant {
        let at = now + extend + Duration::from_secs(self.remaining_ttl_or_ttl().max(0) as u64);
        self.expiry = Some(at);
        self.retry_at = None;
        at
    }

    fn record(&self, id: i64) -> LeaseRecord {
        LeaseRecord {
            id,
            ttl: self.ttl,
            remaining_ttl: self.remaining_ttl,
        }
    }
}

#[derive(Default)]
struct Inner {
    leases: HashMap<i64, Lease>,
    /// Which lease each attached key belongs to.
    key_lease: HashMap<Vec<u8>, i64>,
    primary: bool,
    /// (time, id), earliest first: each lease has one live entry (its `queued_at`), due no
    /// later than the lease's expiry (or revocation retry). A renewal that moves the expiry
    /// later queues nothing; the entry is moved to the new expiry when it surfaces. So the
    /// heap holds about one entry per lease however often leases are renewed (a client
    /// renewing in a loop once grew it by a million entries a second). Entries whose time
    /// is not their lease's `queued_at` are stale and dropped when they surface.
    expiries: DueQueue,
    /// (checkpoint due, id), earliest first; an entry is live while it is its lease's
    /// `checkpoint_at`.
    checkpoints: DueQueue,
}

/// All leases of this member; see the module docs.
pub struct Lessor {
    inner: Mutex<Inner>,
    min_ttl: i64,
    checkpoint_interval: Duration,
    /// Pushes every promotion and demotion, so renewals that arrive on a fresh leader wait
    /// for the promotion by an event, not by polling.
    primary_tx: tokio::sync::watch::Sender<bool>,
}

/// Makes sure lease `id` is looked at no later than `at`: queues an entry unless its live
/// entry already comes at or before `at` (see `Inner::expiries`).
fn queue_expiry(expiries: &mut DueQueue, lease: &mut Lease, id: i64, at: Instant) {
    if lease.queued_at.is_some_and(|q| q <= at) {
        return;
    }
    lease.queued_at = Some(at);
    expiries.push(Reverse((at, id)));
}

/// A (time, lease id) min-heap whose entries go stale when their lease changes.
type DueQueue = BinaryHeap<Reverse<(Instant, i64)>>;

/// Pops the next entry of `queue` due by `now` whose lease still exists and still holds
/// that entry as live (`live(lease) == Some(at)`); stale entries on the way are dropped.
/// Returns the entry's time and lease id, or `None` once nothing more is due.
fn pop_due(
    queue: &mut DueQueue,
    leases: &HashMap<i64, Lease>,
    now: Instant,
    live: impl Fn(&Lease) -> Option<Instant>,
) -> Option<(Instant, i64)> {
    while let Some(&Reverse((at, id))) = queue.peek() {
        if at > now {
            return None;
        }
        queue.pop();
        // A lease revoked meanwhile has no entry; a changed one has a newer entry.
        if leases.get(&id).is_some_and(|l| live(l) == Some(at)) {
            return Some((at, id));
        }
    }
    None
}

fn lease_key(id: i64) -> [u8; 8] {
    (id as u64).to_be_bytes()
}

fn persist(store: &Store, id: i64, lease: &Lease) -> Result<(), MvccError> {
    store.aux_put(
        LEASE_TABLE,
        &lease_key(id),
        &lease.record(id).encode_to_vec(),
    )
}

impl Lessor {
    /// An empty lessor. `min_ttl` (seconds) is etcd's minimum lease TTL; remaining TTLs of
    /// leases longer than `checkpoint_interval` are checkpointed that often.
    pub fn new(min_ttl: i64, checkpoint_interval: Duration) -> Lessor {
        Lessor {
            inner: Mutex::new(Inner::default()),
            min_ttl,
            checkpoint_interval,
            primary_tx: tokio::sync::watch::Sender::new(false),
        }
    }

    /// etcd's minimum TTL rule: `ceil((3 * electionTicks / 2) * heartbeat)` seconds, with
    /// the integer division etcd does (2 s for the default 100 ms / 1000 ms).
    pub fn min_ttl_for(heartbeat: Duration, election_ticks: usize) -> i64 {
        let ticks = (3 * election_ticks / 2) as u32;
        (heartbeat * ticks).as_secs_f64().ceil() as i64
    }

    /// The minimum TTL a grant is raised to.
    pub fn min_ttl(&self) -> i64 {
        self.min_ttl
    }

    /// Rebuilds the lessor from the committed backend state: the leases from
    /// [`LEASE_TABLE`], their keys from every current key's `lease` field -- as the store
    /// found them while opening ([`Store::take_lease_attachments`]), or else by reading
    /// every current key. Keys naming an unknown lease are logged and left alone (etcd does
    /// the same).
    pub fn recover(
        store: &Store,
        min_ttl: i64,
        checkpoint_interval: Duration,
    ) -> Result<Lessor, MvccError> {
        let lessor = Lessor::new(min_ttl, checkpoint_interval);
        {
            let mut inner = lessor.inner.lock();
            for (k, v) in store.aux_scan(LEASE_TABLE)? {
                let rec = LeaseRecord::decode(v.as_slice()).map_err(|e| MvccError::Corrupt {
                    what: format!("undecodable lease record {k:?}: {e}"),
                })?;
                inner.leases.insert(
                    rec.id,
                    Lease {
                        ttl: rec.ttl,
                        remaining_ttl: rec.remaining_ttl,
                        expiry: None,
                        keys: BTreeSet::new(),
                        retry_at: None,
                        checkpoint_at: None,
                        queued_at: None,
                    },
                );
            }
            let mut attach = |key: Vec<u8>, lease: i64| match inner.leases.get_mut(&lease) {
                Some(l) => {
                    l.keys.insert(key.clone());
                    inner.key_lease.insert(key, lease);
                }
                None => tracing::warn!(
                    key = %String::from_utf8_lossy(&key),
                    lease,
                    "key is attached to a lease that does not exist"
                ),
            };
            if let Some(attachments) = store.take_lease_attachments() {
                for (key, lease) in attachments {
                    attach(key, lease);
                }
            } else {
                // Page through every current key; values are fetched too, a page at a time.
                let mut from = vec![0u8];
                loop {
                    let page = store.range_uncounted(&RangeRequest {
                        key: from.clone(),
                        range_end: vec![0],
                        limit: 10_000,
                        ..Default::default()
                    })?;
                    for kv in &page.kvs {
                        if kv.lease != 0 {
                            attach(kv.key.clone(), kv.lease);
                        }
                    }
                    match (page.more, page.kvs.last()) {
                        (true, Some(last)) => {
                            from = last.key.clone();
                            from.push(0);
                        }
                        _ => break,
                    }
                }
            }
            tracing::info!(
                leases = inner.leases.len(),
                attached_keys = inner.key_lease.len(),
                "recovered leases"
            );
        }
        Ok(lessor)
    }

    /// Replaces every lease and attachment with what `store` holds (its backend was just
    /// replaced by a snapshot from the leader). The lessor comes out demoted: a member
    /// receiving a snapshot follows, and the lessor loop promotes it again if it leads.
    pub fn reload(&self, store: &Store) -> Result<(), MvccError> {
        let fresh = Lessor::recover(store, self.min_ttl, self.checkpoint_interval)?;
        let fresh_inner = std::mem::take(&mut *fresh.inner.lock());
        *self.inner.lock() = fresh_inner;
        self.primary_tx.send_replace(false);
        Ok(())
    }

    /// Whether lease `id` exists (a put may attach keys to it).
    pub fn exists(&self, id: i64) -> bool {
        self.inner.lock().leases.contains_key(&id)
    }

    /// Number of leases.
    pub fn len(&self) -> usize {
        self.inner.lock().leases.len()
    }

    /// Whether there are no leases.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this member is the primary lessor (expires leases, serves renewals).
    pub fn is_primary(&self) -> bool {
        self.inner.lock().primary
    }

    /// Follows [`Lessor::is_primary`]: the value changes right after each promotion and
    /// demotion.
    pub fn subscribe_primary(&self) -> tokio::sync::watch::Receiver<bool> {
        self.primary_tx.subscribe()
    }

    /// Applies a grant (called by the applier): checks, in etcd's order, the TTL limit and
    /// that the id is free; raises the TTL to the minimum; persists the lease in the current
    /// write batch. Returns the granted TTL.
    pub fn grant(&self, store: &Store, id: i64, ttl: i64) -> Result<i64, LeaseError> {
        if id == 0 {
            return Err(LeaseError::NotFound);
        }
        if ttl > MAX_LEASE_TTL {
            return Err(LeaseError::TtlTooLarge);
        }
        let mut inner = self.inner.lock();
        if inner.leases.contains_key(&id) {
            return Err(LeaseError::Exists);
        }
        let mut lease = Lease {
            ttl: ttl.max(self.min_ttl),
            remaining_ttl: 0,
            expiry: None,
            keys: BTreeSet::new(),
            retry_at: None,
            checkpoint_at: None,
            queued_at: None,
        };
        persist(store, id, &lease)?;
        let granted = lease.ttl;
        if inner.primary {
            let now = Instant::now();
            let at = lease.refresh(now, Duration::ZERO);
            queue_expiry(&mut inner.expiries, &mut lease, id, at);
            inner.leases.insert(id, lease);
            self.schedule_checkpoint(&mut inner, now, id);
        } else {
            inner.leases.insert(id, lease);
        }
        Ok(granted)
    }

    /// The keys attached to `id`, sorted, or `None` if there is no such lease. The applier
    /// deletes them (in one revision) before calling [`Lessor::remove`].
    pub fn keys(&self, id: i64) -> Option<Vec<Vec<u8>>> {
        self.inner
            .lock()
            .leases
            .get(&id)
            .map(|l| l.keys.iter().cloned().collect())
    }

    /// Forgets lease `id` and removes it from the backend in the current write batch.
    pub fn remove(&self, store: &Store, id: i64) -> Result<(), LeaseError> {
        let mut inner = self.inner.lock();
        if let Some(lease) = inner.leases.remove(&id) {
            for k in &lease.keys {
                if inner.key_lease.get(k) == Some(&id) {
                    inner.key_lease.remove(k);
                }
            }
        }
        store.aux_delete(LEASE_TABLE, &lease_key(id))?;
        Ok(())
    }

    /// Applies checkpoints (called by the applier): records each existing lease's remaining
    /// TTL, persists it, and on the primary schedules the next checkpoint.
    pub fn checkpoint(&self, store: &Store, cps: &[LeaseCheckpoint]) -> Result<(), LeaseError> {
        let mut inner = self.inner.lock();
        let now = Instant::now();
        for cp in cps {
            let Some(lease) = inner.leases.get_mut(&cp.id) else {
                continue;
            };
            lease.remaining_ttl = cp.remaining_ttl;
            persist(store, cp.id, lease)?;
            if inner.primary {
                self.schedule_checkpoint(&mut inner, now, cp.id);
            }
        }
        Ok(())
    }

    /// Keeps key attachments in step with applied writes: a put attaches its key to the
    /// put's lease (detaching it from any other), a delete detaches it.
    pub fn on_events(&self, events: &[Event]) {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        for ev in events {
            let Some(kv) = &ev.kv else { continue };
            let new = if ev.r#type == EventType::Put as i32 {
                kv.lease
            } else {
                0
            };
            let old = inner.key_lease.get(&kv.key).copied().unwrap_or(0);
            if old == new {
                continue;
            }
            if old != 0 {
                inner.key_lease.remove(&kv.key);
                if let Some(l) = inner.leases.get_mut(&old) {
                    l.keys.remove(&kv.key);
                }
            }
            if new != 0 {
                if let Some(l) = inner.leases.get_mut(&new) {
                    l.keys.insert(kv.key.clone());
                    inner.key_lease.insert(kv.key.clone(), new);
                }
            }
        }
    }

    /// Whether a renewal of `id` must first clear a checkpointed remaining TTL (through
    /// raft, as etcd does, so a restart after the renewal does not use the stale value).
    pub fn needs_checkpoint_clear(&self, id: i64) -> bool {
        self.inner
            .lock()
            .leases
            .get(&id)
            .is_some_and(|l| l.remaining_ttl > 0)
    }

    /// Entries in the expiry queue (tests: it must not grow with renewals).
    #[cfg(test)]
    pub(crate) fn queued_expiries(&self) -> usize {
        self.inner.lock().expiries.len()
    }

    /// Renews `id` on the primary: its expiry becomes now + TTL. Returns the TTL. An expired
    /// lease (revocation pending) counts as not found, as etcd answers once it is revoked.
    pub fn renew(&self, id: i64) -> Result<i64, RenewError> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        if !inner.primary {
            return Err(RenewError::NotPrimary);
        }
        let now = Instant::now();
        let Some(lease) = inner.leases.get_mut(&id) else {
            return Err(RenewError::NotFound);
        };
        if lease.expiry.is_some_and(|e| e <= now) {
            return Err(RenewError::NotFound);
        }
        // The caller cleared any checkpoint through raft; renewing restarts the full TTL.
        lease.remaining_ttl = 0;
        let at = lease.refresh(now, Duration::ZERO);
        queue_expiry(&mut inner.expiries, lease, id, at);
        Ok(lease.ttl)
    }

    /// TimeToLive of `id`, `None` if there is no such lease.
    pub fn time_to_live(&self, id: i64, keys: bool) -> Option<LeaseStatus> {
        let inner = self.inner.lock();
        let lease = inner.leases.get(&id)?;
        let remaining = match lease.expiry {
            None => i64::MAX / 1_000_000_000, // etcd: time.Duration(math.MaxInt64).Seconds()
            Some(at) => {
                let now = Instant::now();
                if at >= now {
                    (at - now).as_secs() as i64
                } else {
                    -((now - at).as_secs() as i64)
                }
            }
        };
        Some(LeaseStatus {
            remaining,
            granted: lease.ttl,
            keys: if keys {
                lease.keys.iter().cloned().collect()
            } else {
                Vec::new()
            },
        })
    }

    /// Every lease id, soonest expiry first (as etcd's `Leases()` sorts), ties by id.
    pub fn leases(&self) -> Vec<i64> {
        let inner = self.inner.lock();
        let mut v: Vec<(Option<Instant>, i64)> =
            inner.leases.iter().map(|(id, l)| (l.expiry, *id)).collect();
        // None (forever) sorts last.
        v.sort_by_key(|(e, id)| (e.is_none(), *e, *id));
        v.into_iter().map(|(_, id)| id).collect()
    }

    /// Becomes the primary (this member became leader): every lease expires `extend` (the
    /// election timeout) plus its checkpointed remaining TTL — or its full TTL if never
    /// checkpointed — from now, and with many leases expiries are spread so that no second
    /// holds more than 3/4 of [`LEASE_REVOKE_RATE`] (etcd's `Promote`).
    pub fn promote(&self, extend: Duration) {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        inner.primary = true;
        inner.expiries.clear();
        inner.checkpoints.clear();
        let now = Instant::now();
        for lease in inner.leases.values_mut() {
            lease.refresh(now, extend);
            lease.checkpoint_at = None;
            lease.queued_at = None;
        }
        if inner.leases.len() >= LEASE_REVOKE_RATE {
            let mut by_expiry: Vec<(Instant, i64)> = inner
                .leases
                .iter()
                .filter_map(|(id, l)| l.expiry.map(|e| (e, *id)))
                .collect();
            by_expiry.sort();
            let target = (3 * LEASE_REVOKE_RATE / 4) as f64;
            let mut base = by_expiry[0].0;
            let mut next_window = base + Duration::from_secs(1);
            let mut expires = 0usize;
            for (at, id) in by_expiry {
                if at > next_window {
                    base = at;
                    next_window = base + Duration::from_secs(1);
                    expires = 1;
                    continue;
                }
                expires += 1;
                if expires as f64 <= target {
                    continue;
                }
                // Push this lease out so its window holds at most `target` expiries; leases
                // already `at - base` later than the window start need that much less.
                let delay = Duration::from_secs_f64(expires as f64 / target)
                    .saturating_sub(at.saturating_duration_since(base));
                next_window = base + delay;
                if let Some(l) = inner.leases.get_mut(&id) {
                    l.refresh(now, delay + extend);
                }
            }
        }
        let ids: Vec<i64> = inner.leases.keys().copied().collect();
        for id in ids {
            if let Some(lease) = inner.leases.get_mut(&id) {
                if let Some(at) = lease.expiry {
                    queue_expiry(&mut inner.expiries, lease, id, at);
                }
            }
            self.schedule_checkpoint(inner, now, id);
        }
        tracing::info!(
            leases = inner.leases.len(),
            extend_ms = extend.as_millis() as u64,
            "lessor promoted: this member expires leases"
        );
        drop(guard);
        self.primary_tx.send_replace(true);
    }

    /// Stops being the primary (leadership lost): no lease expires here any more.
    pub fn demote(&self) {
        let mut inner = self.inner.lock();
        inner.primary = false;
        inner.expiries.clear();
        inner.checkpoints.clear();
        for lease in inner.leases.values_mut() {
            lease.expiry = None;
            lease.retry_at = None;
            lease.checkpoint_at = None;
            lease.queued_at = None;
        }
        tracing::info!("lessor demoted");
        drop(inner);
        self.primary_tx.send_replace(false);
    }

    /// Up to `limit` leases that have expired, for the caller to revoke through raft. Each
    /// is looked at again after [`EXPIRED_RETRY_INTERVAL`] in case its revocation is lost.
    pub fn take_expired(&self, limit: usize) -> Vec<i64> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let mut out = Vec::new();
        if !inner.primary {
            return out;
        }
        let now = Instant::now();
        while out.len() < limit {
            let Some((_, id)) = pop_due(&mut inner.expiries, &inner.leases, now, |l| l.queued_at)
            else {
                break;
            };
            let Some(lease) = inner.leases.get_mut(&id) else {
                continue;
            };
            lease.queued_at = None;
            match lease.retry_at.or(lease.expiry) {
                None => continue,
                Some(due) if due > now => {
                    // Renewed since this entry was queued: look again at the new expiry.
                    queue_expiry(&mut inner.expiries, lease, id, due);
                    continue;
                }
                Some(_) => {}
            }
            // `expiry` stays in the past, so renewals see the lease as expired.
            let retry = now + EXPIRED_RETRY_INTERVAL;
            lease.retry_at = Some(retry);
            queue_expiry(&mut inner.expiries, lease, id, retry);
            out.push(id);
        }
        out
    }

    /// Up to `limit` checkpoints that are due: each lease's remaining TTL, rounded up, for
    /// leases whose remaining TTL is below their TTL (etcd's `findDueScheduledCheckpoints`).
    pub fn take_due_checkpoints(&self, limit: usize) -> Vec<LeaseCheckpoint> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let mut out = Vec::new();
        if !inner.primary {
            return out;
        }
        let now = Instant::now();
        while out.len() < limit {
            let Some((_, id)) = pop_due(&mut inner.checkpoints, &inner.leases, now, |l| {
                l.checkpoint_at
            }) else {
                break;
            };
            let Some(lease) = inner.leases.get_mut(&id) else {
                continue;
            };
            // Applying the checkpoint schedules the next one.
            lease.checkpoint_at = None;
            let Some(at) = lease.expiry.filter(|at| *at > now) else {
                continue;
            };
            let remaining = (at - now).as_secs_f64().ceil() as i64;
            if remaining >= lease.ttl {
                continue;
            }
            out.push(LeaseCheckpoint {
                id,
                remaining_ttl: remaining,
            });
        }
        out
    }

    fn wants_checkpoint(&self, ttl: i64, remaining_ttl: i64) -> bool {
        let rem = if remaining_ttl > 0 {
            remaining_ttl
        } else {
            ttl
        };
        rem > self.checkpoint_interval.as_secs() as i64
    }

    /// Schedules lease `id`'s next checkpoint one interval from `now`, unless one is
    /// pending or the lease is too short to need one.
    fn schedule_checkpoint(&self, inner: &mut Inner, now: Instant, id: i64) {
        let Some(lease) = inner.leases.get_mut(&id) else {
            return;
        };
        if lease.checkpoint_at.is_some() || !self.wants_checkpoint(lease.ttl, lease.remaining_ttl) {
            return;
        }
        let due = now + self.checkpoint_interval;
        lease.checkpoint_at = Some(due);
        inner.checkpoints.push(Reverse((due, id)));
    }
}
