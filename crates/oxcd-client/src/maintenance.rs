//! The Maintenance service: status, alarms, defragmentation, hashes, snapshots, leadership.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use oxcd_proto::etcdserverpb::alarm_request::AlarmAction;
use oxcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd_proto::etcdserverpb::*;

use crate::client::{call, Client, Retry};
use crate::error::{Error, Result};

/// The chunks of a snapshot, in order.
pub type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse>> + Send>>;

/// The Maintenance service of a [`Client`]. Its calls go to the client's current endpoint;
/// for one member's view, connect a client to that member alone.
#[derive(Debug, Clone)]
pub struct Maintenance {
    client: Client,
}

impl Client {
    /// The Maintenance service.
    pub fn maintenance(&self) -> Maintenance {
        Maintenance {
            client: self.clone(),
        }
    }
}

impl Maintenance {
    /// The member's status (version, db size, leader, raft index...).
    pub async fn status(&self) -> Result<StatusResponse> {
        call!(
            self.client,
            Retry::Safe,
            StatusRequest {},
            MaintenanceClient::status
        )
    }
    /// The active alarms.
    pub async fn alarm_list(&self) -> Result<AlarmResponse> {
        let request = AlarmRequest {
            action: AlarmAction::Get as i32,
            member_id: 0,
            alarm: AlarmType::None as i32,
        };
        call!(self.client, Retry::Safe, request, MaintenanceClient::alarm)
    }
    /// Clears `alarm` on `member_id` (0 and `AlarmType::None` = every alarm of every member).
    pub async fn alarm_disarm(&self, member_id: u64, alarm: AlarmType) -> Result<AlarmResponse> {
        let request = AlarmRequest {
            action: AlarmAction::Deactivate as i32,
            member_id,
            alarm: alarm as i32,
        };
        call!(self.client, Retry::Safe, request, MaintenanceClient::alarm)
    }
    /// Defragments the member's backend.
    pub async fn defragment(&self) -> Result<DefragmentResponse> {
        call!(
            self.client,
            Retry::Safe,
            DefragmentRequest {},
            MaintenanceClient::defragment
        )
    }
    /// The hash of the member's whole backend.
    pub async fn hash(&self) -> Result<HashResponse> {
        call!(
            self.client,
            Retry::Safe,
            HashRequest {},
            MaintenanceClient::hash
        )
    }
    /// The hash of the key space up to `revision` (0 = current).
    pub async fn hash_kv(&self, revision: i64) -> Result<HashKvResponse> {
        call!(
            self.client,
            Retry::Safe,
            HashKvRequest { revision },
            MaintenanceClient::hash_kv
        )
    }
    /// Hands leadership to member `target_id` (call it on the leader).
    pub async fn move_leader(&self, target_id: u64) -> Result<MoveLeaderResponse> {
        let request = MoveLeaderRequest { target_id };
        call!(
            self.client,
            Retry::OnlyIfNeverSent,
            request,
            MaintenanceClient::move_leader
        )
    }
    /// Streams a snapshot of the member's backend.
    pub async fn snapshot(&self) -> Result<SnapshotStream> {
        let (endpoint, channel) = self.client.channel()?;
        let request = self.client.request(SnapshotRequest {}).await?;
        let chunks = MaintenanceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .snapshot(request)
            .await
            .map_err(|status| Error::from_status(status, &endpoint))?
            .into_inner();
        Ok(Box::pin(chunks.map(move |chunk| {
            chunk.map_err(|status| Error::from_status(status, &endpoint))
        })))
    }
}
