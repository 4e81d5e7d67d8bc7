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
