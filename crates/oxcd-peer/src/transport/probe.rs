//! The round-trip prober, etcd's: every 4 s (etcd's `ConnReadTimeout - 1s`) each peer's
//! `GET /raft/probing` is timed on a connection of the prober's own, and the smoothed RTT
//! (`LinkStats::record_rtt`, the `probing` library's α = 0.125) is observed into
//! `etcd_network_peer_round_trip_time_seconds` 5 s after the peer is added, then every 30 s
//! while probes succeed and every 5 s while they fail (etcd's `monitorProbingStatus`).
//! etcd runs two probers per peer (its pipeline and stream round trippers) observing into
//! the same series; oxcd has one connection type and one prober, so one observation per
//! period.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tonic::transport::Channel;
use tower::ServiceExt;

use crate::stats::LinkStats;
use crate::DialOptions;

/// How often a peer is probed (etcd's `proberInterval`).
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(4);
/// When the first smoothed RTT is observed, and how often while probes fail (etcd's
/// `statusErrorInterval`).
const OBSERVE_UNHEALTHY: Duration = Duration::from_secs(5);
/// How often the smoothed RTT is observed while probes succeed (etcd's
/// `statusMonitoringInterval`).
const OBSERVE_HEALTHY: Duration = Duration::from_secs(30);

/// etcd's probing path on the peer port.
pub(crate) const PROBING_PATH: &str = "/raft/probing";

/// Probes the peer at `urls` until the task is aborted (the peer is removed).
pub(super) async fn run(
    dial: DialOptions,
    every: Duration,
    mut urls: watch::Receiver<Vec<String>>,
    link: Arc<LinkStats>,
) {
    let every = every.max(Duration::from_millis(10));
    let mut channel: Option<Channel> = None;
    let mut healthy = false;
    let mut probe = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let observe = tokio::time::sleep(OBSERVE_UNHEALTHY);
    tokio::pin!(observe);
    loop {
        tokio::select! {
            _ = probe.tick() => {
                let list = urls.borrow().clone();
                healthy = match probe_once(&dial, &mut channel, &list, every).await {
                    Some(rtt) => {
                        link.record_rtt(rtt);
                        true
                    }
                    None => {
                        channel = None;
                        false
                    }
                };
            }
            _ = &mut observe => {
                link.observe_srtt();
                let next = if healthy { OBSERVE_HEALTHY } else { OBSERVE_UNHEALTHY };
                observe.as_mut().reset(tokio::time::Instant::now() + next);
            }
            changed = urls.changed() => {
                if changed.is_err() {
                    return;
                }
                channel = None;
            }
        }
    }
}

/// One probe: the time until `GET /raft/probing` answered 200 with its body read, or `None`
/// if the peer cannot be reached or answered otherwise within `timeout`.
async fn probe_once(
    dial: &DialOptions,
    channel: &mut Option<Channel>,
    urls: &[String],
    timeout: Duration,
) -> Option<Duration> {
    let attempt = async {
        if channel.is_none() {
            *channel = Some(dial.connect(urls).await.ok()?);
        }
        let ch = channel.clone()?;
        let started = Instant::now();
        let req = axum::http::Request::get(PROBING_PATH)
            .body(tonic::body::Body::empty())
            .ok()?;
        let resp = ch.oneshot(req).await.ok()?;
        if resp.status() != axum::http::StatusCode::OK {
            return None;
        }
        let body = axum::body::to_bytes(axum::body::Body::new(resp.into_body()), 4096)
            .await
            .ok()?;
        // etcd's prober decodes `{"OK":true,...}` and counts anything else as a failure.
        let health: serde_json::Value = serde_json::from_slice(&body).ok()?;
        (health.get("OK") == Some(&serde_json::Value::Bool(true))).then(|| started.elapsed())
    };
    tokio::time::timeout(timeout, attempt).await.ok().flatten()
}

/// etcd's `/raft/probing` answer (the `probing` library's handler):
/// `{"OK":true,"Now":"<RFC 3339 time>"}` and a newline.
pub(crate) fn probing_body(now: std::time::SystemTime) -> String {
    format!("{{\"OK\":true,\"Now\":\"{}\"}}\n", rfc3339_utc(now))
}

/// `now` as RFC 3339 in UTC with nanoseconds (Go's `time.RFC3339Nano` layout, trailing
/// zeros of the fraction dropped as Go drops them).
fn rfc3339_utc(now: std::time::SystemTime) -> String {
    let since = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut frac = format!("{:09}", since.subsec_nanos());
    while frac.ends_with('0') {
        frac.pop();
    }
    let frac = if frac.is_empty() {
        String::new()
    } else {
        format!(".{frac}")
    };
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}{frac}Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn probing_body_is_etcds() {
        let t = UNIX_EPOCH + Duration::new(1_764_728_400, 120_000_000);
        assert_eq!(
            probing_body(t),
            "{\"OK\":true,\"Now\":\"2025-12-03T02:20:00.12Z\"}\n"
        );
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
        assert!(probing_body(SystemTime::now()).starts_with("{\"OK\":true,\"Now\":\"20"));
    }
}
