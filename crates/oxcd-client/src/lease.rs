//! The Lease service, and a keep-alive task that survives reconnects.

use std::time::Duration;

use oxcd_proto::etcdserverpb::lease_client::LeaseClient;
use oxcd_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use crate::client::{call, token_of, Client, Retry};
use crate::error::{is_transport_failure, Error, ErrorKind, Result};
use crate::task::{Backoff, TaskGuard};

/// Shortest pause between two keep-alives of one lease.
const MIN_KEEP_ALIVE_INTERVAL: Duration = Duration::from_millis(500);
/// How long one keep-alive may wait for its answer before the stream is reopened.
const KEEP_ALIVE_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The Lease service of a [`Client`].
#[derive(Debug, Clone)]
pub struct Lease {
    client: Client,
}

impl Client {
    /// The Lease service.
    pub fn lease(&self) -> Lease {
        Lease {
            client: self.clone(),
        }
    }
}

impl Lease {
    /// Grants a lease of `ttl` seconds; `id` 0 lets the server choose the id.
    pub async fn grant(&self, ttl: i64, id: i64) -> Result<LeaseGrantResponse> {
        let request = LeaseGrantRequest { ttl, id };
        call!(
            self.client,
            Retry::OnlyIfNeverSent,
            request,
            LeaseClient::lease_grant
        )
    }

    /// Revokes lease `id`, deleting its keys. Retried on unavailability (revoking twice is
    /// harmless).
    pub async fn revoke(&self, id: i64) -> Result<LeaseRevokeResponse> {
        let request = LeaseRevokeRequest { id };
        call!(self.client, Retry::Safe, request, LeaseClient::lease_revoke)
    }

    /// The remaining TTL of lease `id`, and its keys if `keys`.
    pub async fn time_to_live(&self, id: i64, keys: bool) -> Result<LeaseTimeToLiveResponse> {
        let request = LeaseTimeToLiveRequest { id, keys };
        call!(
            self.client,
            Retry::Safe,
            request,
            LeaseClient::lease_time_to_live
        )
    }

    /// All leases.
    pub async fn leases(&self) -> Result<LeaseLeasesResponse> {
        call!(
            self.client,
            Retry::Safe,
            LeaseLeasesRequest {},
            LeaseClient::lease_leases
        )
    }

    /// Renews lease `id` once; fails with [`ErrorKind::LeaseNotFound`] if it is gone.
    pub async fn keep_alive_once(&self, id: i64) -> Result<LeaseKeepAliveResponse> {
        match self.client.call_timeout() {
            Some(limit) => tokio::time::timeout(limit, self.renew_once(id))
                .await
                .map_err(|_| Error::Timeout(limit))?,
            None => self.renew_once(id).await,
        }
    }

    async fn renew_once(&self, id: i64) -> Result<LeaseKeepAliveResponse> {
        let (endpoint, channel) = self.client.channel()?;
        let request = self
            .client
            .request(tokio_stream::once(LeaseKeepAliveRequest { id }))
            .await?;
        let mut answers = LeaseClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .lease_keep_alive(request)
            .await
            .map_err(|s| Error::from_status(s, &endpoint))?
            .into_inner();
        match answers.next().await {
            Some(Ok(answer)) if answer.ttl > 0 => Ok(answer),
            Some(Ok(_)) => Err(lease_not_found()),
            Some(Err(status)) => Err(Error::from_status(status, &endpoint)),
            None => Err(Error::Unreachable {
                endpoint,
                cause: "keep-alive stream closed".into(),
            }),
        }
    }

    /// Keeps lease `id` alive in a background task until the returned [`LeaseKeeper`] is
    /// dropped. The task reconnects by itself (to another endpoint if need be) and reports
    /// through [`LeaseKeeper::lost`] when the server says the lease is gone.
    ///
    /// Returns after the first successful renewal, so an unknown lease fails here with
    /// [`ErrorKind::LeaseNotFound`].
    pub async fn keep_alive(&self, id: i64) -> Result<LeaseKeeper> {
        let first = self.keep_alive_once(id).await?;
        let (state_tx, state) = watch::channel(KeeperState::Alive { ttl: first.ttl });
        let task = TaskGuard::spawn(keep_alive_loop(
            self.client.clone(),
            id,
            first.ttl,
            state_tx,
        ));
        Ok(LeaseKeeper {
            id,
            state,
            _task: task,
        })
    }
}

fn lease_not_found() -> Error {
    Error::Server {
        kind: ErrorKind::LeaseNotFound,
        code: tonic::Code::NotFound,
        message: ErrorKind::LeaseNotFound
            .etcd_text()
            .unwrap_or_default()
            .to_string(),
    }
}

/// What a keep-alive task knows about its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeeperState {
    /// Renewed; the server's TTL of the last renewal, in seconds.
    Alive {
        /// Seconds the lease lives after the last renewal.
        ttl: i64,
    },
    /// The server said the lease is gone (expired or revoked).
    Lost,
}

/// A lease kept alive in the background; dropping it stops the renewals (the lease then
/// expires after its TTL, or revoke it).
#[derive(Debug)]
pub struct LeaseKeeper {
    id: i64,
    state: watch::Receiver<KeeperState>,
    _task: TaskGuard,
}

impl LeaseKeeper {
    /// The kept lease's id.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// What the task knows now.
    pub fn state(&self) -> KeeperState {
        *self.state.borrow()
    }

    /// Waits for the next renewal and returns the TTL the server granted with it (etcdctl's
    /// `lease keep-alive` prints these); [`Error::LeaseLost`] once the lease is gone.
    pub async fn next_renewal(&mut self) -> Result<i64> {
        // The sender lives as long as the task, which only ends after reporting `Lost`.
        let _ = self.state.changed().await;
        match *self.state.borrow_and_update() {
            KeeperState::Alive { ttl } => Ok(ttl),
            KeeperState::Lost => Err(Error::LeaseLost { lease_id: self.id }),
        }
    }

    /// Waits until the lease is lost; returns [`Error::LeaseLost`].
    pub async fn lost(&mut self) -> Error {
        // The sender lives as long as the task, which only ends after reporting `Lost`.
        let _ = self.state.wait_for(|s| *s == KeeperState::Lost).await;
        Error::LeaseLost { lease_id: self.id }
    }
}

/// Renews lease `id` every third of its TTL, reopening the stream when it breaks, until the
/// server says the lease is gone.
async fn keep_alive_loop(client: Client, id: i64, ttl: i64, state: watch::Sender<KeeperState>) {
    let mut interval = renew_interval(ttl);
    let mut backoff = Backoff::new();
    loop {
        match keep_alive_stream(&client, id, &mut interval, &state, &mut backoff).await {
            StreamEnd::LeaseLost => {
                state.send_replace(KeeperState::Lost);
                return;
            }
            StreamEnd::Broken => backoff.wait().await,
        }
    }
}

/// Why one keep-alive stream ended.
enum StreamEnd {
    /// The server answered TTL 0: the lease is gone.
    LeaseLost,
    /// The stream failed; open another one.
    Broken,
}

/// Runs one keep-alive stream until it breaks or the lease is lost.
async fn keep_alive_stream(
    client: &Client,
    id: i64,
    interval: &mut Duration,
    state: &watch::Sender<KeeperState>,
    backoff: &mut Backoff,
) -> StreamEnd {
    let Ok((endpoint, channel)) = client.channel() else {
        return StreamEnd::Broken;
    };
    let (requests, requests_rx) = mpsc::channel(1);
    // The first renewal is queued before the stream opens: gRPC-Go servers (etcd) send the
    // response headers that complete the opening only with their first answer.
    if requests.try_send(LeaseKeepAliveRequest { id }).is_err() {
        return StreamEnd::Broken;
    }
    let Ok(request) = client.request(ReceiverStream::new(requests_rx)).await else {
        return StreamEnd::Broken;
    };
    let token_used = token_of(&request);
    let opened = tokio::time::timeout(
        KEEP_ALIVE_ANSWER_TIMEOUT,
        LeaseClient::new(channel).lease_keep_alive(request),
    )
    .await;
    let mut answers = match opened {
        Ok(Ok(answers)) => answers.into_inner(),
        Ok(Err(status)) => {
            note_stream_failure(client, &endpoint, token_used.as_deref(), &status).await;
            return StreamEnd::Broken;
        }
        Err(_) => {
            client.endpoint_failed(&endpoint);
            return StreamEnd::Broken;
        }
    };
    loop {
        match tokio::time::timeout(KEEP_ALIVE_ANSWER_TIMEOUT, answers.next()).await {
            Ok(Some(Ok(answer))) if answer.ttl <= 0 => return StreamEnd::LeaseLost,
            Ok(Some(Ok(answer))) => {
                backoff.reset();
                *interval = renew_interval(answer.ttl);
                state.send_replace(KeeperState::Alive { ttl: answer.ttl });
            }
            Ok(Some(Err(status))) => {
                if ErrorKind::from_status(&status) == ErrorKind::LeaseNotFound {
                    return StreamEnd::LeaseLost;
                }
                note_stream_failure(client, &endpoint, token_used.as_deref(), &status).await;
                return StreamEnd::Broken;
            }
            Ok(None) | Err(_) => {
                client.endpoint_failed(&endpoint);
                return StreamEnd::Broken;
            }
        }
        tokio::time::sleep(*interval).await;
        if requests.send(LeaseKeepAliveRequest { id }).await.is_err() {
            return StreamEnd::Broken;
        }
    }
}

/// Lets the client fail over or re-authenticate after a stream opened with `token_used`
/// broke with `status`.
pub(crate) async fn note_stream_failure(
    client: &Client,
    endpoint: &str,
    token_used: Option<&str>,
    status: &tonic::Status,
) {
    if is_transport_failure(status) {
        client.endpoint_failed(endpoint);
    }
    client
        .reauthenticate_if_needed(ErrorKind::from_status(status), token_used)
        .await;
}

/// A third of the TTL, as etcd's client renews, but not more often than twice a second.
fn renew_interval(ttl: i64) -> Duration {
    let ttl = Duration::from_secs(u64::try_from(ttl).unwrap_or(0));
    (ttl / 3).max(MIN_KEEP_ALIVE_INTERVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_every_third_of_the_ttl_at_most_twice_a_second() {
        assert_eq!(renew_interval(9), Duration::from_secs(3));
        assert_eq!(renew_interval(1), MIN_KEEP_ALIVE_INTERVAL);
        assert_eq!(renew_interval(-1), MIN_KEEP_ALIVE_INTERVAL);
    }

    #[test]
    fn lease_not_found_has_etcds_text() {
        let e = lease_not_found();
        assert_eq!(e.kind(), ErrorKind::LeaseNotFound);
        assert_eq!(e.to_string(), "etcdserver: requested lease not found");
    }
}
