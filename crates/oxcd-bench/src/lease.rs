//! The `lease-keepalive` workload: every client grants itself a lease (`--ttl`), opens
//! one `LeaseKeepAlive` stream and then, once per request, sends a keep-alive for its
//! lease and waits for the answer; one request = one round trip.
//!
//! ```text
//! oxcd-bench --conns 10 --clients 100 --total 100000 lease-keepalive --ttl 60
//! ```
//!
//! etcd's `benchmark lease-keepalive` calls `KeepAliveOnce`, which opens a new stream per
//! request; here the stream stays open, as a real client's keep-alive loop does, so the
//! figure is the server's keep-alive round trip rather than stream set-up. A response
//! with TTL <= 0 (lease gone) or another lease's ID counts as an error; after a failed
//! round trip the next request opens a fresh stream.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use oxcd_proto::etcdserverpb::lease_client::LeaseClient;
use oxcd_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseRevokeRequest,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::codec::Streaming;
use tonic::transport::Channel;

use crate::stats::Recorder;
use crate::{rpc_error, Run};

/// An open keep-alive stream: its request side and its responses.
type KeepAliveStream = (
    mpsc::Sender<LeaseKeepAliveRequest>,
    Streaming<LeaseKeepAliveResponse>,
);

/// Checks one keep-alive response for lease `id`.
pub(crate) fn check_response(id: i64, resp: &LeaseKeepAliveResponse) -> Result<(), String> {
    if resp.id != id {
        return Err(format!(
            "LeaseKeepAlive: response for lease {:x}, expected {id:x}",
            resp.id
        ));
    }
    if resp.ttl <= 0 {
        return Err("LeaseKeepAlive: lease not found (TTL <= 0)".into());
    }
    Ok(())
}

/// One keep-alive round trip on `stream`, opening it first if needed.
async fn round_trip(
    lease: &mut LeaseClient<Channel>,
    stream: &mut Option<KeepAliveStream>,
    id: i64,
) -> Result<(), String> {
    let req = LeaseKeepAliveRequest { id };
    if let Some((tx, _)) = stream.as_ref() {
        tx.send(req)
            .await
            .map_err(|_| "LeaseKeepAlive: request stream closed".to_string())?;
    } else {
        // Queue the first request before the call: a server may hold the response
        // headers back until it has something to answer.
        let (tx, rx) = mpsc::channel(1);
        tx.send(req)
            .await
            .map_err(|_| "LeaseKeepAlive: request stream closed".to_string())?;
        let inbound = lease
            .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(|s| rpc_error("LeaseKeepAlive", &s))?
            .into_inner();
        *stream = Some((tx, inbound));
    }
    let Some((_, inbound)) = stream.as_mut() else {
        return Err("internal: no keep-alive stream".into());
    };
    match inbound.message().await {
        Ok(Some(resp)) => check_response(id, &resp),
        Ok(None) => Err("LeaseKeepAlive: stream ended by the server".into()),
        Err(s) => Err(rpc_error("LeaseKeepAlive", &s)),
    }
}

/// One client: grants its lease, then does keep-alive round trips until the run is over,
/// and finally revokes the lease (best effort, not timed).
pub(crate) async fn client_loop(
    run: Arc<Run>,
    channel: Channel,
    ttl: i64,
    timeout: Duration,
) -> Recorder {
    let mut rec = Recorder::new();
    let mut lease = LeaseClient::new(channel);
    let id = match lease.lease_grant(LeaseGrantRequest { ttl, id: 0 }).await {
        Ok(resp) => {
            let resp = resp.into_inner();
            if !resp.error.is_empty() {
                rec.record_err(&format!("LeaseGrant: {}", resp.error));
                return rec;
            }
            resp.id
        }
        Err(s) => {
            rec.record_err(&rpc_error("LeaseGrant", &s));
            return rec;
        }
    };
    let mut stream: Option<KeepAliveStream> = None;
    while run.next_seq().await.is_some() {
        let started = Instant::now();
        let result =
            match tokio::time::timeout(timeout, round_trip(&mut lease, &mut stream, id)).await {
                Ok(r) => r,
                Err(_) => Err(format!("LeaseKeepAlive: no response within {timeout:?}")),
            };
        match result {
            Ok(()) => rec.record_ok(started.elapsed()),
            Err(e) => {
                rec.record_err(&e);
                stream = None;
            }
        }
        run.done.fetch_add(1, Ordering::Relaxed);
    }
    drop(stream);
    let _ = tokio::time::timeout(timeout, lease.lease_revoke(LeaseRevokeRequest { id })).await;
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_checked() {
        let ok = LeaseKeepAliveResponse {
            header: None,
            id: 7,
            ttl: 60,
        };
        assert!(check_response(7, &ok).is_ok());
        assert!(check_response(8, &ok).unwrap_err().contains("expected 8"));
        let gone = LeaseKeepAliveResponse { ttl: 0, ..ok };
        assert!(check_response(7, &gone).unwrap_err().contains("not found"));
    }
}
