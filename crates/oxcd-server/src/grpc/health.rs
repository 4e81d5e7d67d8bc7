//! The gRPC health service (`grpc.health.v1.Health`, tonic-health's implementation): the
//! server-wide service `""` is SERVING while this member knows a raft leader and
//! NOT_SERVING otherwise (and once the server stops), followed as leadership changes.

use std::sync::Arc;
use std::time::Duration;

use oxcd_core::EtcdServer;
use tokio::sync::watch;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// How often the leader is looked at.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The `""` status for a member that does (or does not) know a leader.
pub fn status_for(has_leader: bool) -> ServingStatus {
    if has_leader {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

/// Keeps the `""` status in step with the leader until `stop` turns true, then reports
/// NOT_SERVING.
pub async fn follow_leader(
    reporter: HealthReporter,
    server: Arc<EtcdServer>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    let mut last = None;
    loop {
        // The select's value (which may hold the watch's read guard) ends here, before
        // any await below.
        let stopped = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        if stopped {
            break;
        }
        let now = status_for(server.has_leader());
        if last != Some(now) {
            reporter.set_service_status("", now).await;
            last = Some(now);
        }
    }
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_follows_the_leader() {
        assert_eq!(status_for(true), ServingStatus::Serving);
        assert_eq!(status_for(false), ServingStatus::NotServing);
    }
}
