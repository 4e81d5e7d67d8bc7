//! etcd's check that a leader sends its heartbeats on time (its raft node's timeout
//! detector): a heartbeat to a peer sent more than twice the heartbeat interval after the
//! previous one to that peer is a failure, counted process-wide
//! (`etcd_server_heartbeat_send_failures_total`) and logged as etcd's "leader failed to send
//! out heartbeat on time" warning. The record starts again whenever raft's soft state (the
//! leader or this member's role) changes, as etcd's detector is reset.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static FAILURES: AtomicU64 = AtomicU64::new(0);

/// Heartbeats this process's leaders sent late, since it started.
pub fn heartbeat_send_failures() -> u64 {
    FAILURES.load(Ordering::Relaxed)
}

/// When the last heartbeat went to each peer.
#[derive(Debug)]
pub(crate) struct HeartbeatDetector {
    /// The heartbeat interval.
    interval: Duration,
    last: HashMap<u64, Instant>,
}

impl HeartbeatDetector {
    pub(crate) fn new(interval: Duration) -> HeartbeatDetector {
        HeartbeatDetector {
            interval,
            last: HashMap::new(),
        }
    }

    /// Forgets every peer (raft's soft state changed).
    pub(crate) fn reset(&mut self) {
        self.last.clear();
    }

    /// A heartbeat to `to` sent at `now`: by how much it exceeded twice the interval since
    /// the previous one to `to`, if it did.
    fn observe(&mut self, to: u64, now: Instant) -> Option<Duration> {
        self.last
            .insert(to, now)
            .and_then(|prev| {
                now.saturating_duration_since(prev)
                    .checked_sub(2 * self.interval)
            })
            .filter(|exceeded| !exceeded.is_zero())
    }

    /// Looks at the messages about to be sent: counts and logs each late heartbeat.
    pub(crate) fn check(&mut self, msgs: &[raft::eraftpb::Message]) {
        let mut now = None;
        for m in msgs {
            if m.get_msg_type() != raft::eraftpb::MessageType::MsgHeartbeat {
                continue;
            }
            let at = *now.get_or_insert_with(Instant::now);
            if let Some(exceeded) = self.observe(m.to, at) {
                FAILURES.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    to = %format!("{:x}", m.to),
                    heartbeat_interval = ?self.interval,
                    expected_duration = ?(2 * self.interval),
                    exceeded_duration = ?exceeded,
                    "leader failed to send out heartbeat on time; took too long, leader is \
                     overloaded likely from slow disk"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat(to: u64) -> raft::eraftpb::Message {
        let mut m = raft::eraftpb::Message::default();
        m.set_msg_type(raft::eraftpb::MessageType::MsgHeartbeat);
        m.to = to;
        m
    }

    #[test]
    fn a_heartbeat_later_than_twice_the_interval_is_a_failure() {
        let ms = Duration::from_millis;
        let mut d = HeartbeatDetector::new(ms(100));
        let t0 = Instant::now();
        assert_eq!(d.observe(2, t0), None, "the first one to a peer");
        assert_eq!(
            d.observe(2, t0 + ms(200)),
            None,
            "exactly twice the interval"
        );
        assert_eq!(d.observe(3, t0 + ms(500)), None, "another peer's first");
        assert_eq!(d.observe(2, t0 + ms(450)), Some(ms(50)));
        d.reset();
        assert_eq!(d.observe(2, t0 + ms(2000)), None, "forgotten by a reset");
    }

    #[test]
    fn only_heartbeats_are_checked_and_late_ones_counted() {
        let mut d = HeartbeatDetector::new(Duration::from_millis(1));
        let mut append = heartbeat(2);
        append.set_msg_type(raft::eraftpb::MessageType::MsgAppend);
        d.check(&[heartbeat(2), append.clone()]);
        std::thread::sleep(Duration::from_millis(5));
        // Other tests of this process may count too: the count only grows.
        let before = heartbeat_send_failures();
        d.check(&[append]);
        assert_eq!(heartbeat_send_failures(), before);
        d.check(&[heartbeat(2)]);
        assert!(heartbeat_send_failures() > before);
    }
}
