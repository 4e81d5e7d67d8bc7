//! The `protobuf` format: the response's wire encoding, as etcdctl writes it. Responses
//! that clientv3 wraps in its own structs (leases) cannot be marshalled there, and are an
//! error here too.

use oxcd_proto::etcdserverpb as pb;
use prost::Message;

use super::{DbStatus, EpHashKv, EpStatus, Format, Printed, WatchReply};
use crate::error::{CtlError, ExitCode};

fn encode<M: Message>(m: &M) -> Printed {
    Ok(m.encode_to_vec())
}

fn unmarshallable(go_type: &str) -> Printed {
    Err(CtlError::new(
        ExitCode::BadFeature,
        format!("marshal unsupported for type {go_type}"),
    ))
}

/// `get`.
pub(crate) fn get(r: &pb::RangeResponse) -> Printed {
    encode(r)
}
/// `put`.
pub(crate) fn put(r: &pb::PutResponse) -> Printed {
    encode(r)
}
/// `del`.
pub(crate) fn del(r: &pb::DeleteRangeResponse) -> Printed {
    encode(r)
}
/// `txn`.
pub(crate) fn txn(r: &pb::TxnResponse) -> Printed {
    encode(r)
}
/// One watch response, re-assembled as a `WatchResponse` (without the watch id, as etcdctl).
pub(crate) fn watch(r: &WatchReply) -> Printed {
    encode(&pb::WatchResponse {
        header: Some(r.header),
        events: r.events.clone(),
        compact_revision: r.compact_revision,
        canceled: r.canceled,
        created: r.created,
        ..Default::default()
    })
}
/// `lease grant`: clientv3's struct embeds the header, whose `Marshal` is all that is written.
pub(crate) fn grant(r: &pb::LeaseGrantResponse) -> Printed {
    Ok(header_message(r.header.as_ref()))
}
/// `lease revoke`.
pub(crate) fn revoke(_id: i64, _r: &pb::LeaseRevokeResponse) -> Printed {
    unmarshallable("clientv3.LeaseRevokeResponse")
}
/// `lease keep-alive`: the embedded header only, as `lease grant`.
pub(crate) fn keep_alive(r: &pb::LeaseKeepAliveResponse) -> Printed {
    Ok(header_message(r.header.as_ref()))
}
/// `lease timetolive`: the embedded header only, as `lease grant`.
pub(crate) fn time_to_live(r: &pb::LeaseTimeToLiveResponse, _keys: bool) -> Printed {
    Ok(header_message(r.header.as_ref()))
}
/// `lease list`: the embedded header only, as `lease grant`.
pub(crate) fn leases(r: &pb::LeaseLeasesResponse) -> Printed {
    Ok(header_message(r.header.as_ref()))
}

/// A `ResponseHeader` message by itself (nothing for a missing one).
fn header_message(h: Option<&pb::ResponseHeader>) -> Vec<u8> {
    h.map(Message::encode_to_vec).unwrap_or_default()
}
/// `member add`.
pub(crate) fn member_add(r: &pb::MemberAddResponse) -> Printed {
    encode(r)
}
/// `member remove`.
pub(crate) fn member_remove(_id: u64, r: &pb::MemberRemoveResponse) -> Printed {
    encode(r)
}
/// `member update`.
pub(crate) fn member_update(_id: u64, r: &pb::MemberUpdateResponse) -> Printed {
    encode(r)
}
/// `member promote`.
pub(crate) fn member_promote(_id: u64, r: &pb::MemberPromoteResponse) -> Printed {
    encode(r)
}
/// `member list`.
pub(crate) fn member_list(r: &pb::MemberListResponse) -> Printed {
    encode(r)
}
/// `endpoint status` (not a protobuf command in etcdctl).
pub(crate) fn endpoint_status(_r: &[EpStatus]) -> Printed {
    Err(Format::Protobuf.unsupported())
}
/// `endpoint hashkv` (not a protobuf command in etcdctl).
pub(crate) fn endpoint_hashkv(_r: &[EpHashKv]) -> Printed {
    Err(Format::Protobuf.unsupported())
}
/// `move-leader` (not a protobuf command in etcdctl).
pub(crate) fn move_leader(_l: u64, _t: u64, _r: &pb::MoveLeaderResponse) -> Printed {
    Err(Format::Protobuf.unsupported())
}
/// `alarm list|disarm`.
pub(crate) fn alarm(r: &pb::AlarmResponse) -> Printed {
    encode(r)
}
/// `snapshot status` (not a protobuf command in etcdctl).
pub(crate) fn db_status(_r: &DbStatus) -> Printed {
    Err(Format::Protobuf.unsupported())
}
/// A response that only has a header (field 1 in every such message).
pub(crate) fn header_only(h: Option<&pb::ResponseHeader>) -> Vec<u8> {
    pb::AuthUserAddResponse { header: h.cloned() }.encode_to_vec()
}
/// `role get`.
pub(crate) fn role_get(_role: &str, r: &pb::AuthRoleGetResponse) -> Printed {
    encode(r)
}
/// `role list`.
pub(crate) fn role_list(r: &pb::AuthRoleListResponse) -> Printed {
    encode(r)
}
/// `user get`.
pub(crate) fn user_get(_user: &str, r: &pb::AuthUserGetResponse) -> Printed {
    encode(r)
}
/// `user list`.
pub(crate) fn user_list(r: &pb::AuthUserListResponse) -> Printed {
    encode(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_grant_writes_only_the_embedded_header() {
        let h = pb::ResponseHeader {
            cluster_id: 1,
            member_id: 2,
            revision: 3,
            raft_term: 4,
        };
        let r = pb::LeaseGrantResponse {
            header: Some(h),
            id: 99,
            ttl: 10,
            error: String::new(),
        };
        assert_eq!(grant(&r).unwrap(), vec![0x08, 1, 0x10, 2, 0x18, 3, 0x20, 4]);
        assert!(revoke(1, &pb::LeaseRevokeResponse::default()).is_err());
    }

    #[test]
    fn get_is_the_wire_encoding() {
        let r = pb::RangeResponse {
            count: 1,
            ..Default::default()
        };
        assert_eq!(get(&r).unwrap(), vec![0x20, 1]);
    }
}
