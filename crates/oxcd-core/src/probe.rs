//! What the health probes (`/health`, `/livez`, `/readyz`, the gRPC health service) ask of
//! the server: the active alarms, whether a leader is known, and a read through the API.

use oxcd_proto::etcdserverpb::{AlarmType, RangeRequest};

use crate::error::ServerError;
use crate::server::EtcdServer;

impl EtcdServer {
    /// The alarms active in the cluster, read from this member's state (no raft round).
    pub fn active_alarms(&self) -> Vec<AlarmType> {
        self.alarms
            .list(AlarmType::None)
            .into_iter()
            .filter_map(|a| AlarmType::try_from(a.alarm).ok())
            .collect()
    }

    /// The peers this member cannot reach now (their links are retried), each as
    /// `name (id) url,...` (the name is empty until that member has published it).
    pub fn unreachable_peers(&self) -> Vec<String> {
        let down = self.transport.unreachable_peers();
        let m = self.membership.read();
        down.into_iter()
            .map(|id| match m.members.get(&id) {
                Some(p) => format!("{} ({id:x}) {}", p.name, p.peer_urls.join(",")),
                None => format!("{id:x}"),
            })
            .collect()
    }

    /// etcd's probe read: a keys-only range of one key, serializable (this member alone)
    /// or linearizable (through the leader), within the request timeout.
    pub async fn probe_read(&self, serializable: bool) -> Result<(), ServerError> {
        let cred = crate::auth::Credentials::server();
        let read = self.range(
            &cred,
            RangeRequest {
                key: b"health".to_vec(),
                keys_only: true,
                limit: 1,
                serializable,
                ..Default::default()
            },
        );
        match tokio::time::timeout(self.request_timeout(), read).await {
            Ok(result) => result.map(|_| ()),
            Err(_) => Err(ServerError::Timeout),
        }
    }
}
