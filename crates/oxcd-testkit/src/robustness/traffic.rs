//! One traffic client: seeded random puts, ranges, deletes, compare-and-swap txns and lease
//! operations, each recorded with invocation and response times.

use std::collections::HashMap;
use std::time::Duration;

use oxcd_proto::etcdserverpb::kv_client::KvClient;
use oxcd_proto::etcdserverpb::lease_client::LeaseClient;
use oxcd_proto::etcdserverpb::{LeaseGrantRequest, LeaseRevokeRequest};
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::transport::Channel;

use super::convert;
use super::rng::Rng;
use crate::history::{
    Compare, CompareOp, CompareTarget, KeyRange, Operation, Outcome, Request, Response, TxnOp,
    TxnOpResult,
};

/// What every traffic client shares.
#[derive(Clone, Debug)]
pub(crate) struct TrafficPlan {
    /// Client URLs of the members.
    pub(crate) endpoints: Vec<String>,
    /// Keys are `k/000` .. this many.
    pub(crate) keys: u64,
    /// Timeout of one request.
    pub(crate) timeout: Duration,
    /// The run's seed.
    pub(crate) seed: u64,
    /// Time zero of the history.
    pub(crate) start: Instant,
    /// Send ranges as serializable (see [`super::RobustnessConfig::serializable_reads`]).
    pub(crate) serializable_reads: bool,
}

/// The key prefix all generated traffic lives under.
pub(crate) const PREFIX: &str = "k/";

/// Pause after a failed operation, so a client does not spin against a dead member.
const ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Whether the request never left the client (no connection could be made).
fn never_sent(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable && status.message().contains("tcp connect error")
}

/// gRPC codes etcd answers before a request can take effect.
fn definitely_refused(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        InvalidArgument
            | NotFound
            | FailedPrecondition
            | OutOfRange
            | PermissionDenied
            | Unauthenticated
            | AlreadyExists
            | ResourceExhausted
    )
}

/// A client's connection and what it remembers between operations.
struct Client {
    id: usize,
    plan: TrafficPlan,
    rng: Rng,
    endpoint: usize,
    kv: KvClient<Channel>,
    lease: LeaseClient<Channel>,
    leases: Vec<i64>,
    mod_revisions: HashMap<Vec<u8>, i64>,
    seq: u64,
}

/// Runs client `id` until `stop` turns true; returns its operations.
pub(crate) async fn run_client(
    id: usize,
    plan: TrafficPlan,
    mut stop: watch::Receiver<bool>,
) -> Vec<Operation> {
    let channel = crate::cluster::channel_to(&plan.endpoints[id % plan.endpoints.len()]);
    let mut c = Client {
        id,
        rng: Rng::new(plan.seed ^ (id as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407)),
        endpoint: id % plan.endpoints.len(),
        kv: KvClient::new(channel.clone()),
        lease: LeaseClient::new(channel),
        leases: Vec::new(),
        mod_revisions: HashMap::new(),
        seq: 0,
        plan,
    };
    let mut ops = Vec::new();
    while !*stop.borrow_and_update() {
        let request = c.next_request();
        let call = c.plan.start.elapsed();
        let outcome = c.execute(&request).await;
        let ret = c.plan.start.elapsed();
        match &outcome {
            Outcome::Ok(_) => {}
            Outcome::Unknown(_) => {
                c.switch_endpoint();
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
            Outcome::Failed(_) => tokio::time::sleep(ERROR_BACKOFF).await,
        }
        ops.push(Operation {
            client: id,
            call,
            ret,
            request,
            outcome,
        });
    }
    ops
}

impl Client {
    fn switch_endpoint(&mut self) {
        self.endpoint = (self.endpoint + 1) % self.plan.endpoints.len();
        let channel = crate::cluster::channel_to(&self.plan.endpoints[self.endpoint]);
        self.kv = KvClient::new(channel.clone());
        self.lease = LeaseClient::new(channel);
    }

    fn unique_value(&mut self) -> Vec<u8> {
        self.seq += 1;
        format!("c{}-{}", self.id, self.seq).into_bytes()
    }

    fn next_request(&mut self) -> Request {
        let key = format!("{PREFIX}{:03}", self.rng.below(self.plan.keys)).into_bytes();
        let roll = self.rng.below(100);
        let value = self.unique_value();
        match roll {
            0..30 => Request::Put {
                key,
                value,
                lease: 0,
            },
            30..45 => Request::Range(KeyRange::single(key)),
            45..55 => Request::Range(KeyRange::prefix(PREFIX)),
            55..65 => Request::Delete(KeyRange::single(key)),
            65..80 => {
                let expected = self.mod_revisions.get(&key).copied().unwrap_or(0);
                Request::Txn {
                    compare: vec![Compare {
                        key: key.clone(),
                        op: CompareOp::Equal,
                        target: CompareTarget::ModRevision(expected),
                    }],
                    success: vec![TxnOp::Put {
                        key: key.clone(),
                        value,
                        lease: 0,
                    }],
                    failure: vec![TxnOp::Get(KeyRange::single(key))],
                }
            }
            80..87 if self.leases.len() < 3 => Request::LeaseGrant {
                ttl: 1 + self.rng.below(4) as i64,
            },
            87..95 if !self.leases.is_empty() => {
                let lease = self.leases[self.rng.below(self.leases.len() as u64) as usize];
                Request::Put { key, value, lease }
            }
            95..100 if !self.leases.is_empty() => {
                let i = self.rng.below(self.leases.len() as u64) as usize;
                Request::LeaseRevoke {
                    id: self.leases.swap_remove(i),
                }
            }
            _ => Request::Range(KeyRange::single(key)),
        }
    }

    async fn execute(&mut self, request: &Request) -> Outcome {
        let limit = self.plan.timeout;
        let result = tokio::time::timeout(limit, self.send(request)).await;
        match result {
            Ok(Ok(resp)) => {
                self.remember(request, &resp);
                Outcome::Ok(resp)
            }
            Ok(Err(status))
                if definitely_refused(status.code())
                    || never_sent(&status)
                    || !request.may_write() =>
            {
                Outcome::Failed(format!("{:?}: {}", status.code(), status.message()))
            }
            Ok(Err(status)) => {
                Outcome::Unknown(format!("{:?}: {}", status.code(), status.message()))
            }
            Err(_) if !request.may_write() => Outcome::Failed("timed out".into()),
            Err(_) => Outcome::Unknown("timed out".into()),
        }
    }

    async fn send(&mut self, request: &Request) -> Result<Response, tonic::Status> {
        let timeout = self.plan.timeout;
        let rev = |h: Option<oxcd_proto::etcdserverpb::ResponseHeader>| {
            h.map(|h| h.revision).unwrap_or(0)
        };
        Ok(match request {
            Request::Put { key, value, lease } => {
                let r = self
                    .kv
                    .put(timed(timeout, convert::put(key, value, *lease)))
                    .await?
                    .into_inner();
                Response::Put {
                    revision: rev(r.header),
                }
            }
            Request::Range(range) => {
                let r = self
                    .kv
                    .range(timed(
                        timeout,
                        convert::range(range, self.plan.serializable_reads),
                    ))
                    .await?
                    .into_inner();
                Response::Range {
                    revision: rev(r.header),
                    kvs: r.kvs.into_iter().map(convert::kv).collect(),
                }
            }
            Request::Delete(range) => {
                let r = self
                    .kv
                    .delete_range(timed(timeout, convert::delete(range)))
                    .await?
                    .into_inner();
                Response::Delete {
                    revision: rev(r.header),
                    deleted: r.deleted,
                }
            }
            Request::Txn {
                compare,
                success,
                failure,
            } => {
                let r = self
                    .kv
                    .txn(timed(timeout, convert::txn(compare, success, failure)))
                    .await?;
                convert::txn_response(r.into_inner())
            }
            Request::LeaseGrant { ttl } => {
                let req = LeaseGrantRequest { ttl: *ttl, id: 0 };
                let r = self
                    .lease
                    .lease_grant(timed(timeout, req))
                    .await?
                    .into_inner();
                Response::LeaseGrant {
                    revision: rev(r.header),
                    id: r.id,
                }
            }
            Request::LeaseRevoke { id } => {
                let r = self
                    .lease
                    .lease_revoke(timed(timeout, LeaseRevokeRequest { id: *id }))
                    .await?;
                Response::LeaseRevoke {
                    revision: rev(r.into_inner().header),
                }
            }
        })
    }

    /// Learns mod revisions (for the next compare-and-swap) and granted leases.
    fn remember(&mut self, request: &Request, resp: &Response) {
        match (request, resp) {
            (Request::Put { key, .. }, Response::Put { revision }) => {
                self.mod_revisions.insert(key.clone(), *revision);
            }
            (Request::Range(_), Response::Range { kvs, .. }) => {
                for kv in kvs {
                    self.mod_revisions.insert(kv.key.clone(), kv.mod_revision);
                }
            }
            (Request::Txn { .. }, Response::Txn { results, .. }) => {
                for r in results {
                    if let TxnOpResult::Get(kvs) = r {
                        for kv in kvs {
                            self.mod_revisions.insert(kv.key.clone(), kv.mod_revision);
                        }
                    }
                }
            }
            (_, Response::LeaseGrant { id, .. }) => self.leases.push(*id),
            _ => {}
        }
    }
}

/// A gRPC request carrying `timeout` (sent to the server as `grpc-timeout`).
fn timed<T>(timeout: Duration, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(timeout);
    r
}
