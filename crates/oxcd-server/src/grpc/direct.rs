//! The direct lane for unary gRPC calls: a client connection hands a unary call of one of
//! etcd's services straight to that service's tonic server, counting it as the metrics
//! middleware would, instead of passing it through the axum router.
//!
//! Why: on the router a call crosses two path routers (the app's and tonic's), the metrics
//! middleware (a boxed future of its own), the require-leader interceptor (which turns the
//! headers into gRPC metadata and back) and several response conversions. At 100 clients
//! putting to a 3-member cluster that was about a tenth of the leader's request-serving CPU,
//! more than the put handler itself. Streams (Watch, LeaseKeepAlive, Snapshot, Observe), the
//! health service, unknown paths and every HTTP path still take the router, so there is one
//! place for each of those answers.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{Request, Response};
use bytes::Bytes;
use oxcd_core::{EtcdServer, ServerError};
use oxcd_proto::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
    lease_server::LeaseServer, maintenance_server::MaintenanceServer,
};
use oxcd_proto::v3electionpb::election_server::ElectionServer;
use oxcd_proto::v3lockpb::lock_server::LockServer;
use tower::Service as _;

use crate::metrics::grpc::{GrpcMetrics, UnaryCall};

use super::{auth, cluster, election, kv, lease, lock, maintenance, requires_leader};

/// A service's answer to one call, as every generated tonic server returns it.
type ServiceFuture =
    Pin<Box<dyn Future<Output = Result<Response<tonic::body::Body>, Infallible>> + Send>>;

/// The services with unary methods, configured once (message size limits) and cloned per
/// connection (each a few `Arc`s). The router serves the same servers' streams, so both
/// lanes answer alike.
#[derive(Clone)]
pub struct UnaryServices {
    server: Arc<EtcdServer>,
    metrics: Arc<GrpcMetrics>,
    pub(crate) kv: KvServer<kv::KvService>,
    pub(crate) lease: LeaseServer<lease::LeaseService>,
    pub(crate) cluster: ClusterServer<cluster::ClusterService>,
    pub(crate) maintenance: MaintenanceServer<maintenance::MaintenanceService>,
    pub(crate) auth: AuthServer<auth::AuthService>,
    pub(crate) lock: LockServer<lock::LockService>,
    pub(crate) election: ElectionServer<election::ElectionService>,
}

impl UnaryServices {
    /// The services over `server`, decoding requests of up to `max_decoding` bytes where
    /// the router's services do (KV), counted in `metrics`.
    pub fn new(server: Arc<EtcdServer>, metrics: Arc<GrpcMetrics>, max_decoding: usize) -> Self {
        UnaryServices {
            kv: KvServer::new(kv::KvService::new(server.clone()))
                .max_decoding_message_size(max_decoding),
            lease: LeaseServer::new(lease::LeaseService::new(server.clone())),
            cluster: ClusterServer::new(cluster::ClusterService::new(server.clone())),
            maintenance: MaintenanceServer::new(maintenance::MaintenanceService::new(
                server.clone(),
            )),
            auth: AuthServer::new(auth::AuthService::new(server.clone())),
            lock: LockServer::new(lock::LockService::new(server.clone())),
            election: ElectionServer::new(election::ElectionService::new(server.clone())),
            server,
            metrics,
        }
    }

    /// If `req` is a gRPC unary call of one of these services, counts its start and returns
    /// what [`Self::call`] needs to answer it; otherwise `None`, and `req` is the router's.
    pub fn take<B>(&self, req: &Request<B>) -> Option<TakenCall> {
        if !crate::metrics::network::is_grpc(req.headers()) {
            return None;
        }
        let path = req.uri().path();
        let service = service_of(path)?;
        let counted = self.metrics.start_unary(req.headers(), path)?;
        Some(TakenCall { service, counted })
    }

    /// Answers `req`, a call [`Self::take`] took.
    pub fn call<B>(&mut self, taken: TakenCall, req: Request<B>) -> UnaryCallFuture
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let TakenCall { service, counted } = taken;
        // etcd's require-leader interceptor guards these services, not Lock and Election.
        let guarded = !matches!(service, Service::Lock | Service::Election);
        let state = if guarded && requires_leader(req.headers()) && !self.server.has_leader() {
            State::Answered(Some(tonic::Status::from(ServerError::NoLeader).into_http()))
        } else {
            State::Running(match service {
                Service::Kv => self.kv.call(req),
                Service::Lease => self.lease.call(req),
                Service::Cluster => self.cluster.call(req),
                Service::Maintenance => self.maintenance.call(req),
                Service::Auth => self.auth.call(req),
                Service::Lock => self.lock.call(req),
                Service::Election => self.election.call(req),
            })
        };
        UnaryCallFuture {
            state,
            counted: Some(counted),
        }
    }
}

/// A unary call the direct lane took (its start already counted).
pub struct TakenCall {
    service: Service,
    counted: UnaryCall,
}

/// The services of the direct lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    Kv,
    Lease,
    Cluster,
    Maintenance,
    Auth,
    Lock,
    Election,
}

/// The service a gRPC path (`/package.Service/Method`) names, if it is on the direct lane.
fn service_of(path: &str) -> Option<Service> {
    let (service, _) = path.strip_prefix('/')?.split_once('/')?;
    Some(match service {
        "etcdserverpb.KV" => Service::Kv,
        "etcdserverpb.Lease" => Service::Lease,
        "etcdserverpb.Cluster" => Service::Cluster,
        "etcdserverpb.Maintenance" => Service::Maintenance,
        "etcdserverpb.Auth" => Service::Auth,
        "v3lockpb.Lock" => Service::Lock,
        "v3electionpb.Election" => Service::Election,
        _ => return None,
    })
}

enum State {
    Running(ServiceFuture),
    Answered(Option<Response<tonic::body::Body>>),
}

/// A unary call on the direct lane: the service's answer, counted when it comes.
pub struct UnaryCallFuture {
    state: State,
    counted: Option<UnaryCall>,
}

impl Future for UnaryCallFuture {
    type Output = Response<tonic::body::Body>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let resp = match &mut this.state {
            State::Running(answer) => match answer.as_mut().poll(cx) {
                Poll::Ready(Ok(resp)) => resp,
                Poll::Ready(Err(never)) => match never {},
                Poll::Pending => return Poll::Pending,
            },
            State::Answered(resp) => match resp.take() {
                Some(resp) => resp,
                None => return Poll::Pending,
            },
        };
        if let Some(counted) = this.counted.take() {
            counted.answered(resp.headers());
        }
        Poll::Ready(resp)
    }
}
