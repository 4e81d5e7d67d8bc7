//! gRPC services, one module each, over the shared [`EtcdServer`](crate::server::EtcdServer).

pub mod cluster;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod validate;
pub mod watch;

use oxcd_proto::etcdserverpb::auth_server::Auth;
use oxcd_proto::v3electionpb::election_server::Election;
use oxcd_proto::v3lockpb::lock_server::Lock;

/// Stands in for services not built yet: every RPC answers `Unimplemented` (the generated
/// traits' default methods).
pub struct Unimplemented;

impl Auth for Unimplemented {}
impl Election for Unimplemented {}
impl Lock for Unimplemented {}
