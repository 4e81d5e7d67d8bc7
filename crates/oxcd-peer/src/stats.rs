//! [`PeerStats`]: what the transport counts per peer, for etcd's `etcd_network_*` families
//! (oxcd-server exports them; this crate knows nothing of Prometheus).
//!
//! Every figure is an atomic in the peer's [`LinkStats`], resolved once per peer task or
//! per incoming stream, so counting a batch or a message costs one relaxed atomic add: no
//! lock, no allocation. What is counted, against etcd's rafthttp:
//!
//! * **bytes sent** (`etcd_network_peer_sent_bytes_total{To}`): the encoded raft messages
//!   of each batch handed to the peer's stream, and a snapshot's bytes once the peer
//!   confirmed them (etcd: the bytes its stream encoder flushed, and the merged snapshot
//!   size on success);
//! * **bytes received** (`etcd_network_peer_received_bytes_total{From}`): the encoded raft
//!   messages of each batch read from a peer's stream, and each snapshot chunk's bytes;
//! * **send failures** (`..._peer_sent_failures_total{To}`): each raft message dropped for a
//!   known peer (queue full, link down), each broken stream, each failed snapshot send;
//! * **receive failures** (`..._peer_received_failures_total{From}`): each incoming stream
//!   or snapshot that ended in an error after the sender was identified;
//! * **active / disconnected** (`etcd_network_active_peers`, `..._disconnected_peers_total`):
//!   the outgoing stream to the peer has stayed up (active) and then broke (a
//!   disconnection), as etcd's peer status activates and deactivates;
//! * **round-trip time** (`..._peer_round_trip_time_seconds{To}`): etcd's prober, see
//!   [`crate::transport`]: `GET /raft/probing` every 4 s, the smoothed RTT observed 5 s
//!   after the peer is added, then every 30 s (every 5 s while probes fail);
//! * **snapshots** (`etcd_network_snapshot_{send,receive}_*`): successes, failures, in
//!   flight, and total durations.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

/// Upper bounds of etcd's `peer_round_trip_time_seconds` buckets: 0.1 ms doubling 16 times
/// (to 3.2768 s).
pub const RTT_BUCKETS: [f64; 16] = exponential::<16>(0.0001);

/// Upper bounds of etcd's snapshot duration buckets: 100 ms doubling 10 times (to 51.2 s).
pub const SNAPSHOT_BUCKETS: [f64; 10] = exponential::<10>(0.1);

const fn exponential<const N: usize>(start: f64) -> [f64; N] {
    let mut out = [0.0; N];
    let mut v = start;
    let mut i = 0;
    while i < N {
        out[i] = v;
        v *= 2.0;
        i += 1;
    }
    out
}

/// A histogram of atomics with fixed upper bounds (Prometheus' cumulative buckets are
/// computed when read).
#[derive(Debug)]
pub struct AtomicHistogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative), plus one for `+Inf`.
    counts: Box<[AtomicU64]>,
    /// The sum of observations, as `f64` bits.
    sum: AtomicU64,
}

/// A histogram's state as read: cumulative bucket counts by upper bound, the count and the
/// sum.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistogramSnapshot {
    /// `(upper bound, observations at or below it)`, ascending; `+Inf` is `count`.
    pub buckets: Vec<(f64, u64)>,
    /// Observations.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
}

impl AtomicHistogram {
    /// An empty histogram with these upper bounds (ascending).
    pub fn new(bounds: &'static [f64]) -> AtomicHistogram {
        AtomicHistogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    /// The state now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (bound, c) in self.bounds.iter().zip(self.counts.iter()) {
            cumulative += c.load(Ordering::Relaxed);
            buckets.push((*bound, cumulative));
        }
        let inf = self.counts.last().map_or(0, |c| c.load(Ordering::Relaxed));
        HistogramSnapshot {
            buckets,
            count: cumulative + inf,
            sum: f64::from_bits(self.sum.load(Ordering::Relaxed)),
        }
    }
}

/// The counters of one peer link (both directions).
#[derive(Debug)]
pub struct LinkStats {
    /// Bytes sent to the peer.
    pub sent_bytes: AtomicU64,
    /// Bytes received from the peer.
    pub received_bytes: AtomicU64,
    /// Send failures (messages dropped, streams broken, snapshot sends failed).
    pub sent_failures: AtomicU64,
    /// Receive failures (incoming streams or snapshots ended in an error).
    pub received_failures: AtomicU64,
    /// The outgoing stream is up.
    pub active: AtomicBool,
    /// Times the outgoing stream went from up to down.
    pub disconnects: AtomicU64,
    /// The prober's smoothed round-trip time, in nanoseconds (0: none yet).
    pub srtt_nanos: AtomicU64,
    /// The smoothed RTT as observed every 30 s (etcd's `rttSec`).
    pub rtt: AtomicHistogram,
    /// Snapshots sent and confirmed.
    pub snapshot_send_success: AtomicU64,
    /// Snapshot sends that failed.
    pub snapshot_send_failures: AtomicU64,
    /// Snapshot sends under way.
    pub snapshot_send_inflight: AtomicI64,
    /// Durations of successful snapshot sends.
    pub snapshot_send_seconds: AtomicHistogram,
    /// Snapshots received and handed over.
    pub snapshot_receive_success: AtomicU64,
    /// Snapshot receives that failed.
    pub snapshot_receive_failures: AtomicU64,
    /// Snapshot receives under way.
    pub snapshot_receive_inflight: AtomicI64,
    /// Durations of successful snapshot receives.
    pub snapshot_receive_seconds: AtomicHistogram,
}

impl Default for LinkStats {
    fn default() -> Self {
        LinkStats {
            sent_bytes: AtomicU64::new(0),
            received_bytes: AtomicU64::new(0),
            sent_failures: AtomicU64::new(0),
            received_failures: AtomicU64::new(0),
            active: AtomicBool::new(false),
            disconnects: AtomicU64::new(0),
            srtt_nanos: AtomicU64::new(0),
            rtt: AtomicHistogram::new(&RTT_BUCKETS),
            snapshot_send_success: AtomicU64::new(0),
            snapshot_send_failures: AtomicU64::new(0),
            snapshot_send_inflight: AtomicI64::new(0),
            snapshot_send_seconds: AtomicHistogram::new(&SNAPSHOT_BUCKETS),
            snapshot_receive_success: AtomicU64::new(0),
            snapshot_receive_failures: AtomicU64::new(0),
            snapshot_receive_inflight: AtomicI64::new(0),
            snapshot_receive_seconds: AtomicHistogram::new(&SNAPSHOT_BUCKETS),
        }
    }
}

/// The weight of a new sample in the smoothed RTT (the `probing` library's α).
const SRTT_ALPHA: f64 = 0.125;

impl LinkStats {
    /// Adds `n` to a counter.
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The outgoing stream has stayed up.
    pub(crate) fn activate(&self) {
        self.active.store(true, Ordering::Relaxed);
    }

    /// The outgoing stream broke: a disconnection if it was up.
    pub(crate) fn deactivate(&self) {
        if self.active.swap(false, Ordering::Relaxed) {
            self.disconnects.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A probe came back after `rtt`: smoothed as etcd's prober does
    /// (`srtt = (1 - α) srtt + α rtt`, starting from 0).
    pub(crate) fn record_rtt(&self, rtt: Duration) {
        let _ = self
            .srtt_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                let new = (1.0 - SRTT_ALPHA) * old as f64 + SRTT_ALPHA * rtt.as_nanos() as f64;
                Some(new as u64)
            });
    }

    /// Observes the smoothed RTT into the histogram (etcd's status monitor does so every
    /// 30 s, whatever the probes' health).
    pub(crate) fn observe_srtt(&self) {
        let srtt = self.srtt_nanos.load(Ordering::Relaxed);
        self.rtt.observe(srtt as f64 / 1e9);
    }
}

/// Upper bounds of etcd's `etcd_snap_db_fsync_duration_seconds` buckets: 1 ms doubling 14
/// times (to 8.192 s).
pub const SNAP_DB_FSYNC_BUCKETS: [f64; 14] = exponential::<14>(0.001);

/// The links of a member's transport, by peer id, and how the snapshots it received were
/// saved. Cloned handles share it: the transport counts what it sends, the peer router what
/// it receives, the metrics read it.
#[derive(Debug)]
pub struct PeerStats {
    links: Mutex<BTreeMap<u64, Arc<LinkStats>>>,
    /// The fsync of each received snapshot's file (etcd's
    /// `etcd_snap_db_fsync_duration_seconds`).
    pub snap_db_fsync_seconds: AtomicHistogram,
    /// Each received snapshot's save, from creating its file to the file and its directory
    /// synced, the transfer included (etcd's `etcd_snap_db_save_total_duration_seconds`,
    /// whose save copies from the peer's request body too).
    pub snap_db_save_seconds: AtomicHistogram,
}

impl Default for PeerStats {
    fn default() -> Self {
        PeerStats {
            links: Mutex::default(),
            snap_db_fsync_seconds: AtomicHistogram::new(&SNAP_DB_FSYNC_BUCKETS),
            snap_db_save_seconds: AtomicHistogram::new(&SNAPSHOT_BUCKETS),
        }
    }
}

impl PeerStats {
    /// No links yet.
    pub fn new() -> Arc<PeerStats> {
        Arc::new(PeerStats::default())
    }

    /// The link to and from `peer`, created at zero the first time. Takes a lock: call it
    /// once per peer task or stream, not per message. A removed peer's link stays (its
    /// counters must not go back).
    pub fn link(&self, peer: u64) -> Arc<LinkStats> {
        self.links.lock().entry(peer).or_default().clone()
    }

    /// Every link, by peer id.
    pub fn links(&self) -> Vec<(u64, Arc<LinkStats>)> {
        self.links
            .lock()
            .iter()
            .map(|(id, l)| (*id, l.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_etcds() {
        assert_eq!(RTT_BUCKETS[0], 0.0001);
        assert!((RTT_BUCKETS[15] - 3.2768).abs() < 1e-12);
        assert_eq!(SNAPSHOT_BUCKETS[0], 0.1);
        assert!((SNAPSHOT_BUCKETS[9] - 51.2).abs() < 1e-9);
    }

    #[test]
    fn histogram_counts_cumulatively() {
        let h = AtomicHistogram::new(&RTT_BUCKETS);
        h.observe(0.00005); // first bucket
        h.observe(0.0002); // le 0.0002
        h.observe(10.0); // +Inf only
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert!((s.sum - 10.00025).abs() < 1e-9);
        assert_eq!(s.buckets[0], (0.0001, 1));
        assert_eq!(s.buckets[1], (0.0002, 2));
        assert_eq!(s.buckets[15].1, 2);
    }

    #[test]
    fn srtt_is_smoothed_like_etcds_prober() {
        let l = LinkStats::default();
        l.record_rtt(Duration::from_millis(8));
        assert_eq!(l.srtt_nanos.load(Ordering::Relaxed), 1_000_000);
        l.record_rtt(Duration::from_millis(8));
        assert_eq!(l.srtt_nanos.load(Ordering::Relaxed), 1_875_000);
        l.observe_srtt();
        assert_eq!(l.rtt.snapshot().count, 1);
    }

    #[test]
    fn a_disconnection_is_counted_once_per_active_period() {
        let l = LinkStats::default();
        l.deactivate();
        assert_eq!(l.disconnects.load(Ordering::Relaxed), 0);
        l.activate();
        l.deactivate();
        l.deactivate();
        assert_eq!(l.disconnects.load(Ordering::Relaxed), 1);
        assert!(!l.active.load(Ordering::Relaxed));
    }

    #[test]
    fn links_are_shared_and_kept() {
        let s = PeerStats::new();
        LinkStats::add(&s.link(2).sent_bytes, 5);
        LinkStats::add(&s.link(2).sent_bytes, 7);
        assert_eq!(s.links().len(), 1);
        assert_eq!(s.link(2).sent_bytes.load(Ordering::Relaxed), 12);
    }
}
