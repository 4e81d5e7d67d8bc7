//! The JSON mapping of etcd's gateway: proto messages to and from JSON exactly as etcd
//! 3.4/3.5's grpc-gateway (golang/protobuf `jsonpb` with `OrigName`) writes and reads them.
//!
//! Output: proto field names (`cluster_id`, `TTL`, `prev_kv`), fields in declaration order,
//! bytes as standard base64 with padding, 64-bit integers as strings, enums by name, default
//! values (zero, empty, false, the first enum value) left out, a set sub-message written
//! even when empty. Input: proto or lowerCamel names, integers as numbers or strings, enums
//! by name or number, standard or URL-safe base64; unknown fields are ignored (as etcd's
//! gateway does); an empty body or `null` is the empty message.
//!
//! # Why prost-reflect over our own descriptors
//!
//! The mapping is generic over every message of every service (some 80 of them), and its
//! rules are proto3's canonical JSON. `prost-reflect` applies them from the descriptor set
//! `oxcd-proto` already embeds, so no message needs hand-written code (which would have to
//! follow every proto change) and oxcd-proto's build stays as it is (pbjson would generate
//! serde impls for every message there, for every build of every crate). The cost is one
//! extra protobuf encode and decode per message, small next to the JSON text itself.

use std::sync::LazyLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, SerializeOptions};

/// Why a request body is not a valid JSON form of the request message.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The body ended inside a JSON value.
    #[error("unexpected EOF")]
    Eof,
    /// The body is not JSON of the message's shape (syntax, a wrong type, bad base64).
    #[error("{0}")]
    Invalid(String),
}

/// The descriptors of every oxcd proto, decoded once.
static POOL: LazyLock<Option<DescriptorPool>> =
    LazyLock::new(|| DescriptorPool::decode(oxcd_proto::FILE_DESCRIPTOR_SET).ok());

/// A message type with a full proto name, so its descriptor can be found.
pub trait Named: prost::Message + Default {
    /// The proto's full name, e.g. `etcdserverpb.RangeRequest`.
    const NAME: &'static str;
}

macro_rules! named {
    ($($pkg:ident :: $ty:ident => $name:literal),* $(,)?) => {
        $(impl Named for oxcd_proto::$pkg::$ty { const NAME: &'static str = $name; })*
    };
}

named! {
    etcdserverpb::RangeRequest => "etcdserverpb.RangeRequest",
    etcdserverpb::RangeResponse => "etcdserverpb.RangeResponse",
    etcdserverpb::PutRequest => "etcdserverpb.PutRequest",
    etcdserverpb::PutResponse => "etcdserverpb.PutResponse",
    etcdserverpb::DeleteRangeRequest => "etcdserverpb.DeleteRangeRequest",
    etcdserverpb::DeleteRangeResponse => "etcdserverpb.DeleteRangeResponse",
    etcdserverpb::TxnRequest => "etcdserverpb.TxnRequest",
    etcdserverpb::TxnResponse => "etcdserverpb.TxnResponse",
    etcdserverpb::AuthEnableRequest => "etcdserverpb.AuthEnableRequest",
    etcdserverpb::AuthEnableResponse => "etcdserverpb.AuthEnableResponse",
    etcdserverpb::AuthDisableRequest => "etcdserverpb.AuthDisableRequest",
    etcdserverpb::AuthDisableResponse => "etcdserverpb.AuthDisableResponse",
    etcdserverpb::AuthStatusRequest => "etcdserverpb.AuthStatusRequest",
    etcdserverpb::AuthStatusResponse => "etcdserverpb.AuthStatusResponse",
    etcdserverpb::AuthenticateRequest => "etcdserverpb.AuthenticateRequest",
    etcdserverpb::AuthenticateResponse => "etcdserverpb.AuthenticateResponse",
    etcdserverpb::AuthUserAddRequest => "etcdserverpb.AuthUserAddRequest",
    etcdserverpb::AuthUserAddResponse => "etcdserverpb.AuthUserAddResponse",
    etcdserverpb::AuthUserGetRequest => "etcdserverpb.AuthUserGetRequest",
    etcdserverpb::AuthUserGetResponse => "etcdserverpb.AuthUserGetResponse",
    etcdserverpb::AuthUserListRequest => "etcdserverpb.AuthUserListRequest",
    etcdserverpb::AuthUserListResponse => "etcdserverpb.AuthUserListResponse",
    etcdserverpb::AuthUserDeleteRequest => "etcdserverpb.AuthUserDeleteRequest",
    etcdserverpb::AuthUserDeleteResponse => "etcdserverpb.AuthUserDeleteResponse",
    etcdserverpb::AuthUserChangePasswordRequest => "etcdserverpb.AuthUserChangePasswordRequest",
    etcdserverpb::AuthUserChangePasswordResponse => "etcdserverpb.AuthUserChangePasswordResponse",
    etcdserverpb::AuthUserGrantRoleRequest => "etcdserverpb.AuthUserGrantRoleRequest",
    etcdserverpb::AuthUserGrantRoleResponse => "etcdserverpb.AuthUserGrantRoleResponse",
    etcdserverpb::AuthUserRevokeRoleRequest => "etcdserverpb.AuthUserRevokeRoleRequest",
    etcdserverpb::AuthUserRevokeRoleResponse => "etcdserverpb.AuthUserRevokeRoleResponse",
    etcdserverpb::AuthRoleAddRequest => "etcdserverpb.AuthRoleAddRequest",
    etcdserverpb::AuthRoleAddResponse => "etcdserverpb.AuthRoleAddResponse",
    etcdserverpb::AuthRoleGetRequest => "etcdserverpb.AuthRoleGetRequest",
    etcdserverpb::AuthRoleGetResponse => "etcdserverpb.AuthRoleGetResponse",
    etcdserverpb::AuthRoleListRequest => "etcdserverpb.AuthRoleListRequest",
    etcdserverpb::AuthRoleListResponse => "etcdserverpb.AuthRoleListResponse",
    etcdserverpb::AuthRoleDeleteRequest => "etcdserverpb.AuthRoleDeleteRequest",
    etcdserverpb::AuthRoleDeleteResponse => "etcdserverpb.AuthRoleDeleteResponse",
    etcdserverpb::AuthRoleGrantPermissionRequest => "etcdserverpb.AuthRoleGrantPermissionRequest",
    etcdserverpb::AuthRoleGrantPermissionResponse => "etcdserverpb.AuthRoleGrantPermissionResponse",
    etcdserverpb::AuthRoleRevokePermissionRequest => "etcdserverpb.AuthRoleRevokePermissionRequest",
    etcdserverpb::AuthRoleRevokePermissionResponse => "etcdserverpb.AuthRoleRevokePermissionResponse",
    etcdserverpb::CompactionRequest => "etcdserverpb.CompactionRequest",
    etcdserverpb::CompactionResponse => "etcdserverpb.CompactionResponse",
    etcdserverpb::WatchRequest => "etcdserverpb.WatchRequest",
    etcdserverpb::WatchResponse => "etcdserverpb.WatchResponse",
    etcdserverpb::LeaseGrantRequest => "etcdserverpb.LeaseGrantRequest",
    etcdserverpb::LeaseGrantResponse => "etcdserverpb.LeaseGrantResponse",
    etcdserverpb::LeaseRevokeRequest => "etcdserverpb.LeaseRevokeRequest",
    etcdserverpb::LeaseRevokeResponse => "etcdserverpb.LeaseRevokeResponse",
    etcdserverpb::LeaseKeepAliveRequest => "etcdserverpb.LeaseKeepAliveRequest",
    etcdserverpb::LeaseKeepAliveResponse => "etcdserverpb.LeaseKeepAliveResponse",
    etcdserverpb::LeaseTimeToLiveRequest => "etcdserverpb.LeaseTimeToLiveRequest",
    etcdserverpb::LeaseTimeToLiveResponse => "etcdserverpb.LeaseTimeToLiveResponse",
    etcdserverpb::LeaseLeasesRequest => "etcdserverpb.LeaseLeasesRequest",
    etcdserverpb::LeaseLeasesResponse => "etcdserverpb.LeaseLeasesResponse",
    etcdserverpb::MemberAddRequest => "etcdserverpb.MemberAddRequest",
    etcdserverpb::MemberAddResponse => "etcdserverpb.MemberAddResponse",
    etcdserverpb::MemberRemoveRequest => "etcdserverpb.MemberRemoveRequest",
    etcdserverpb::MemberRemoveResponse => "etcdserverpb.MemberRemoveResponse",
    etcdserverpb::MemberUpdateRequest => "etcdserverpb.MemberUpdateRequest",
    etcdserverpb::MemberUpdateResponse => "etcdserverpb.MemberUpdateResponse",
    etcdserverpb::MemberListRequest => "etcdserverpb.MemberListRequest",
    etcdserverpb::MemberListResponse => "etcdserverpb.MemberListResponse",
    etcdserverpb::MemberPromoteRequest => "etcdserverpb.MemberPromoteRequest",
    etcdserverpb::MemberPromoteResponse => "etcdserverpb.MemberPromoteResponse",
    etcdserverpb::AlarmRequest => "etcdserverpb.AlarmRequest",
    etcdserverpb::AlarmResponse => "etcdserverpb.AlarmResponse",
    etcdserverpb::StatusRequest => "etcdserverpb.StatusRequest",
    etcdserverpb::StatusResponse => "etcdserverpb.StatusResponse",
    etcdserverpb::DefragmentRequest => "etcdserverpb.DefragmentRequest",
    etcdserverpb::DefragmentResponse => "etcdserverpb.DefragmentResponse",
    etcdserverpb::SnapshotRequest => "etcdserverpb.SnapshotRequest",
    etcdserverpb::SnapshotResponse => "etcdserverpb.SnapshotResponse",
    etcdserverpb::HashRequest => "etcdserverpb.HashRequest",
    etcdserverpb::HashResponse => "etcdserverpb.HashResponse",
    etcdserverpb::HashKvRequest => "etcdserverpb.HashKVRequest",
    etcdserverpb::HashKvResponse => "etcdserverpb.HashKVResponse",
    etcdserverpb::MoveLeaderRequest => "etcdserverpb.MoveLeaderRequest",
    etcdserverpb::MoveLeaderResponse => "etcdserverpb.MoveLeaderResponse",
    v3lockpb::LockRequest => "v3lockpb.LockRequest",
    v3lockpb::LockResponse => "v3lockpb.LockResponse",
    v3lockpb::UnlockRequest => "v3lockpb.UnlockRequest",
    v3lockpb::UnlockResponse => "v3lockpb.UnlockResponse",
    v3electionpb::CampaignRequest => "v3electionpb.CampaignRequest",
    v3electionpb::CampaignResponse => "v3electionpb.CampaignResponse",
    v3electionpb::ProclaimRequest => "v3electionpb.ProclaimRequest",
    v3electionpb::ProclaimResponse => "v3electionpb.ProclaimResponse",
    v3electionpb::LeaderRequest => "v3electionpb.LeaderRequest",
    v3electionpb::LeaderResponse => "v3electionpb.LeaderResponse",
    v3electionpb::ResignRequest => "v3electionpb.ResignRequest",
    v3electionpb::ResignResponse => "v3electionpb.ResignResponse",
}

fn descriptor(name: &str) -> Result<prost_reflect::MessageDescriptor, JsonError> {
    POOL.as_ref()
        .and_then(|pool| pool.get_message_by_name(name))
        .ok_or_else(|| JsonError::Invalid(format!("no descriptor for {name}")))
}

/// `msg` as etcd's gateway writes it (one line, no trailing newline).
pub fn to_json<T: Named>(msg: &T) -> Vec<u8> {
    let Ok(desc) = descriptor(T::NAME) else {
        return b"{}".to_vec();
    };
    let Ok(dynamic) = DynamicMessage::decode(desc, msg.encode_to_vec().as_slice()) else {
        return b"{}".to_vec();
    };
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(true)
        .stringify_64_bit_integers(true);
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::new(&mut out);
    if dynamic.serialize_with_options(&mut ser, &options).is_err() {
        return b"{}".to_vec();
    }
    out
}

fn deserialize_options() -> DeserializeOptions {
    DeserializeOptions::new().deny_unknown_fields(false)
}

/// Reads one request from its JSON text (`body` holds one value, or only blanks).
pub fn from_json<T: Named>(body: &[u8]) -> Result<T, JsonError> {
    let text = body.trim_ascii();
    if text.is_empty() || text == b"null" {
        return Ok(T::default());
    }
    let desc = descriptor(T::NAME)?;
    let mut de = serde_json::Deserializer::from_slice(text);
    let dynamic = DynamicMessage::deserialize_with_options(desc, &mut de, &deserialize_options())
        .map_err(json_error)?;
    de.end().map_err(json_error)?;
    transcode(&dynamic)
}

/// Reads one request of a stream from its already parsed JSON value.
pub fn from_value<T: Named>(value: serde_json::Value) -> Result<T, JsonError> {
    if value.is_null() {
        return Ok(T::default());
    }
    let desc = descriptor(T::NAME)?;
    let dynamic = DynamicMessage::deserialize_with_options(desc, value, &deserialize_options())
        .map_err(json_error)?;
    transcode(&dynamic)
}

fn transcode<T: Named>(dynamic: &DynamicMessage) -> Result<T, JsonError> {
    T::decode(Message::encode_to_vec(dynamic).as_slice())
        .map_err(|e| JsonError::Invalid(e.to_string()))
}

fn json_error(e: serde_json::Error) -> JsonError {
    if e.is_eof() {
        JsonError::Eof
    } else {
        JsonError::Invalid(go_text(&strip_position(&e.to_string())))
    }
}

/// Go's text for a base64 error (`illegal base64 data at input byte N`), which clients
/// of etcd's gateway may match; other texts stay serde's.
fn go_text(text: &str) -> String {
    match text.rsplit_once("offset ") {
        Some((head, offset)) if head.starts_with("invalid base64") => {
            let byte = offset.trim_end_matches('.');
            format!("illegal base64 data at input byte {byte}")
        }
        _ => text.to_string(),
    }
}

/// serde_json appends " at line L column C"; etcd's messages carry no position.
fn strip_position(text: &str) -> String {
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests;
