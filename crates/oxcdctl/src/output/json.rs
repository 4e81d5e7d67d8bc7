//! The `json` format: Go's `encoding/json` of the response clientv3 returns.

use oxcd_proto::etcdserverpb as pb;
use oxcd_proto::etcdserverpb::response_op::Response;
use oxcd_proto::mvccpb::{Event, KeyValue};

use super::gojson::{array, array_or_null, Obj};
use super::{DbStatus, EpHashKv, EpHealth, EpStatus, Printed, WatchReply};

fn line(s: String) -> Vec<u8> {
    let mut out = s.into_bytes();
    out.push(b'\n');
    out
}

/// The fields of a response header (also used flattened, as clientv3 embeds it).
fn header_fields(o: Obj, h: &pb::ResponseHeader) -> Obj {
    o.num("cluster_id", h.cluster_id)
        .num("member_id", h.member_id)
        .num("revision", h.revision)
        .num("raft_term", h.raft_term)
}

/// A `ResponseHeader`.
pub(crate) fn header(h: &pb::ResponseHeader) -> String {
    header_fields(Obj::new(), h).end()
}

fn opt_header(h: Option<&pb::ResponseHeader>) -> Option<String> {
    h.map(header)
}

/// A `mvccpb.KeyValue`.
pub(crate) fn kv(kv: &KeyValue) -> String {
    Obj::new()
        .bytes("key", &kv.key)
        .num("create_revision", kv.create_revision)
        .num("mod_revision", kv.mod_revision)
        .num("version", kv.version)
        .bytes("value", &kv.value)
        .num("lease", kv.lease)
        .end()
}

fn event(e: &Event) -> String {
    Obj::new()
        .num("type", e.r#type)
        .obj("kv", e.kv.as_ref().map(kv))
        .obj("prev_kv", e.prev_kv.as_ref().map(kv))
        .end()
}

fn range_obj(r: &pb::RangeResponse) -> String {
    Obj::new()
        .obj("header", opt_header(r.header.as_ref()))
        .list("kvs", r.kvs.iter().map(kv).collect())
        .flag("more", r.more)
        .num("count", r.count)
        .end()
}

fn put_obj(r: &pb::PutResponse) -> String {
    Obj::new()
        .obj("header", opt_header(r.header.as_ref()))
        .obj("prev_kv", r.prev_kv.as_ref().map(kv))
        .end()
}

fn del_obj(r: &pb::DeleteRangeResponse) -> String {
    Obj::new()
        .obj("header", opt_header(r.header.as_ref()))
        .num("deleted", r.deleted)
        .list("prev_kvs", r.prev_kvs.iter().map(kv).collect())
        .end()
}

fn txn_obj(r: &pb::TxnResponse) -> String {
    let ops = r
        .responses
        .iter()
        .map(|op| {
            let inner = match &op.response {
                Some(Response::ResponseRange(g)) => {
                    Some(Obj::new().raw("ResponseRange", &range_obj(g)).end())
                }
                Some(Response::ResponsePut(p)) => {
                    Some(Obj::new().raw("ResponsePut", &put_obj(p)).end())
                }
                Some(Response::ResponseDeleteRange(d)) => {
                    Some(Obj::new().raw("ResponseDeleteRange", &del_obj(d)).end())
                }
                Some(Response::ResponseTxn(t)) => {
                    Some(Obj::new().raw("ResponseTxn", &txn_obj(t)).end())
                }
                None => None,
            };
            Obj::new()
                .raw("Response", &inner.unwrap_or_else(|| "null".into()))
                .end()
        })
        .collect();
    Obj::new()
        .obj("header", opt_header(r.header.as_ref()))
        .flag("succeeded", r.succeeded)
        .list("responses", ops)
        .end()
}

/// `get`.
pub(crate) fn get(r: &pb::RangeResponse) -> Printed {
    Ok(line(range_obj(r)))
}

/// `put`.
pub(crate) fn put(r: &pb::PutResponse) -> Printed {
    Ok(line(put_obj(r)))
}

/// `del`.
pub(crate) fn del(r: &pb::DeleteRangeResponse) -> Printed {
    Ok(line(del_obj(r)))
}

/// `txn`.
pub(crate) fn txn(r: &pb::TxnResponse) -> Printed {
    Ok(line(txn_obj(r)))
}

/// A watch response: clientv3's `WatchResponse` struct (no JSON tags).
pub(crate) fn watch(r: &WatchReply) -> Printed {
    Ok(line(
        Obj::new()
            .raw("Header", &header(&r.header))
            .raw("Events", &array(r.events.iter().map(event).collect()))
            .num_always("CompactRevision", r.compact_revision)
            .flag_always("Canceled", r.canceled)
            .flag_always("Created", r.created)
            .end(),
    ))
}

/// `lease grant`: clientv3's struct embeds the header.
pub(crate) fn grant(r: &pb::LeaseGrantResponse) -> Printed {
    let o = match &r.header {
        Some(h) => header_fields(Obj::new(), h),
        None => Obj::new(),
    };
    Ok(line(
        o.num_always("ID", r.id)
            .num_always("TTL", r.ttl)
            .text_always("Error", &r.error)
            .end(),
    ))
}

/// `lease revoke`.
pub(crate) fn revoke(_id: i64, r: &pb::LeaseRevokeResponse) -> Printed {
    Ok(header_only(r.header.as_ref()))
}

/// `lease keep-alive`.
pub(crate) fn keep_alive(r: &pb::LeaseKeepAliveResponse) -> Printed {
    let o = match &r.header {
        Some(h) => header_fields(Obj::new(), h),
        None => Obj::new(),
    };
    Ok(line(
        o.num_always("ID", r.id).num_always("TTL", r.ttl).end(),
    ))
}

/// `lease timetolive`.
pub(crate) fn time_to_live(r: &pb::LeaseTimeToLiveResponse, _keys: bool) -> Printed {
    let o = match &r.header {
        Some(h) => header_fields(Obj::new(), h),
        None => Obj::new(),
    };
    let keys = if r.keys.is_empty() {
        None
    } else {
        Some(
            r.keys
                .iter()
                .map(|k| format!("\"{}\"", super::gojson::base64(k)))
                .collect(),
        )
    };
    Ok(line(
        o.num_always("id", r.id)
            .num_always("ttl", r.ttl)
            .num_always("granted-ttl", r.granted_ttl)
            .raw("keys", &array_or_null(keys))
            .end(),
    ))
}

/// `lease list`.
pub(crate) fn leases(r: &pb::LeaseLeasesResponse) -> Printed {
    let o = match &r.header {
        Some(h) => header_fields(Obj::new(), h),
        None => Obj::new(),
    };
    let items = r
        .leases
        .iter()
        .map(|l| Obj::new().num_always("id", l.id).end())
        .collect();
    Ok(line(o.raw("leases", &array(items)).end()))
}

fn member(m: &pb::Member) -> String {
    let strings = |v: &[String]| {
        v.iter()
            .map(|s| crate::golog::json_string(s))
            .collect::<Vec<_>>()
    };
    Obj::new()
        .num("ID", m.id)
        .text("name", &m.name)
        .list("peerURLs", strings(&m.peer_ur_ls))
        .list("clientURLs", strings(&m.client_ur_ls))
        .flag("isLearner", m.is_learner)
        .end()
}

fn members_obj(h: Option<&pb::ResponseHeader>, members: &[pb::Member]) -> Vec<u8> {
    line(
        Obj::new()
            .obj("header", opt_header(h))
            .list("members", members.iter().map(member).collect())
            .end(),
    )
}

/// `member add`.
pub(crate) fn member_add(r: &pb::MemberAddResponse) -> Printed {
    Ok(line(
        Obj::new()
            .obj("header", opt_header(r.header.as_ref()))
            .obj("member", r.member.as_ref().map(member))
            .list("members", r.members.iter().map(member).collect())
            .end(),
    ))
}

/// `member remove`.
pub(crate) fn member_remove(_id: u64, r: &pb::MemberRemoveResponse) -> Printed {
    Ok(members_obj(r.header.as_ref(), &r.members))
}

/// `member update`.
pub(crate) fn member_update(_id: u64, r: &pb::MemberUpdateResponse) -> Printed {
    Ok(members_obj(r.header.as_ref(), &r.members))
}

/// `member promote`.
pub(crate) fn member_promote(_id: u64, r: &pb::MemberPromoteResponse) -> Printed {
    Ok(members_obj(r.header.as_ref(), &r.members))
}

/// `member list`.
pub(crate) fn member_list(r: &pb::MemberListResponse) -> Printed {
    Ok(members_obj(r.header.as_ref(), &r.members))
}

/// `endpoint health`.
pub(crate) fn endpoint_health(r: &[EpHealth]) -> Vec<u8> {
    let items = r
        .iter()
        .map(|h| {
            Obj::new()
                .text_always("endpoint", &h.ep)
                .flag_always("health", h.health)
                .text_always("took", &h.took)
                .text("error", &h.error)
                .end()
        })
        .collect();
    line(array(items))
}

/// A `StatusResponse` with etcd 3.4's fields.
fn status(s: &pb::StatusResponse) -> String {
    let strings = s
        .errors
        .iter()
        .map(|e| crate::golog::json_string(e))
        .collect();
    Obj::new()
        .obj("header", opt_header(s.header.as_ref()))
        .text("version", &s.version)
        .num("dbSize", s.db_size)
        .num("leader", s.leader)
        .num("raftIndex", s.raft_index)
        .num("raftTerm", s.raft_term)
        .num("raftAppliedIndex", s.raft_applied_index)
        .list("errors", strings)
        .num("dbSizeInUse", s.db_size_in_use)
        .flag("isLearner", s.is_learner)
        .end()
}

/// `endpoint status`.
pub(crate) fn endpoint_status(r: &[EpStatus]) -> Printed {
    let items = r
        .iter()
        .map(|e| {
            Obj::new()
                .text_always("Endpoint", &e.ep)
                .raw("Status", &status(&e.resp))
                .end()
        })
        .collect();
    Ok(line(array(items)))
}

/// `endpoint hashkv`.
pub(crate) fn endpoint_hashkv(r: &[EpHashKv]) -> Printed {
    let items = r
        .iter()
        .map(|e| {
            let h = Obj::new()
                .obj("header", opt_header(e.resp.header.as_ref()))
                .num("hash", e.resp.hash)
                .num("compact_revision", e.resp.compact_revision)
                .end();
            Obj::new()
                .text_always("Endpoint", &e.ep)
                .raw("HashKV", &h)
                .end()
        })
        .collect();
    Ok(line(array(items)))
}

/// `move-leader`.
pub(crate) fn move_leader(_leader: u64, _target: u64, r: &pb::MoveLeaderResponse) -> Printed {
    Ok(header_only(r.header.as_ref()))
}

/// `alarm list|disarm`.
pub(crate) fn alarm(r: &pb::AlarmResponse) -> Printed {
    let items = r
        .alarms
        .iter()
        .map(|a| {
            Obj::new()
                .num("memberID", a.member_id)
                .num("alarm", a.alarm)
                .end()
        })
        .collect();
    Ok(line(
        Obj::new()
            .obj("header", opt_header(r.header.as_ref()))
            .list("alarms", items)
            .end(),
    ))
}

/// `snapshot status`: the `snapshot.Status` struct.
pub(crate) fn db_status(r: &DbStatus) -> Printed {
    Ok(line(
        Obj::new()
            .num_always("hash", r.hash)
            .num_always("revision", r.revision)
            .num_always("totalKey", r.total_key)
            .num_always("totalSize", r.total_size)
            .end(),
    ))
}

/// A response that only has a header.
pub(crate) fn header_only(h: Option<&pb::ResponseHeader>) -> Vec<u8> {
    line(Obj::new().obj("header", opt_header(h)).end())
}

/// `role get`.
pub(crate) fn role_get(_role: &str, r: &pb::AuthRoleGetResponse) -> Printed {
    let perms = r
        .perm
        .iter()
        .map(|p| {
            Obj::new()
                .num("permType", p.perm_type)
                .bytes("key", &p.key)
                .bytes("range_end", &p.range_end)
                .end()
        })
        .collect();
    Ok(line(
        Obj::new()
            .obj("header", opt_header(r.header.as_ref()))
            .list("perm", perms)
            .end(),
    ))
}

fn names(h: Option<&pb::ResponseHeader>, key: &str, v: &[String]) -> Vec<u8> {
    let items = v.iter().map(|s| crate::golog::json_string(s)).collect();
    line(
        Obj::new()
            .obj("header", opt_header(h))
            .list(key, items)
            .end(),
    )
}

/// `role list`.
pub(crate) fn role_list(r: &pb::AuthRoleListResponse) -> Printed {
    Ok(names(r.header.as_ref(), "roles", &r.roles))
}

/// `user get`.
pub(crate) fn user_get(_user: &str, r: &pb::AuthUserGetResponse) -> Printed {
    Ok(names(r.header.as_ref(), "roles", &r.roles))
}

/// `user list`.
pub(crate) fn user_list(r: &pb::AuthUserListResponse) -> Printed {
    Ok(names(r.header.as_ref(), "users", &r.users))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr() -> pb::ResponseHeader {
        pb::ResponseHeader {
            cluster_id: 17666670140434938592,
            member_id: 11048590297669999681,
            revision: 3,
            raft_term: 2,
        }
    }

    #[test]
    fn get_matches_etcdctl() {
        let r = pb::RangeResponse {
            header: Some(hdr()),
            kvs: vec![KeyValue {
                key: b"foo".to_vec(),
                create_revision: 2,
                mod_revision: 3,
                version: 2,
                value: b"bar2".to_vec(),
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        assert_eq!(
            String::from_utf8(get(&r).unwrap()).unwrap(),
            "{\"header\":{\"cluster_id\":17666670140434938592,\"member_id\":11048590297669999681,\"revision\":3,\"raft_term\":2},\"kvs\":[{\"key\":\"Zm9v\",\"create_revision\":2,\"mod_revision\":3,\"version\":2,\"value\":\"YmFyMg==\"}],\"count\":1}\n"
        );
    }

    #[test]
    fn lease_grant_flattens_the_header() {
        let r = pb::LeaseGrantResponse {
            header: Some(hdr()),
            id: 2036086864779806219,
            ttl: 100,
            error: String::new(),
        };
        assert_eq!(
            String::from_utf8(grant(&r).unwrap()).unwrap(),
            "{\"cluster_id\":17666670140434938592,\"member_id\":11048590297669999681,\"revision\":3,\"raft_term\":2,\"ID\":2036086864779806219,\"TTL\":100,\"Error\":\"\"}\n"
        );
    }

    #[test]
    fn timetolive_without_keys_is_null() {
        let r = pb::LeaseTimeToLiveResponse {
            header: Some(hdr()),
            id: 7,
            ttl: -1,
            granted_ttl: 0,
            keys: vec![],
        };
        assert_eq!(
            String::from_utf8(time_to_live(&r, true).unwrap()).unwrap(),
            "{\"cluster_id\":17666670140434938592,\"member_id\":11048590297669999681,\"revision\":3,\"raft_term\":2,\"id\":7,\"ttl\":-1,\"granted-ttl\":0,\"keys\":null}\n"
        );
    }

    #[test]
    fn txn_wraps_responses_in_go_oneof_names() {
        let r = pb::TxnResponse {
            header: Some(hdr()),
            succeeded: false,
            responses: vec![pb::ResponseOp {
                response: Some(Response::ResponsePut(pb::PutResponse {
                    header: Some(pb::ResponseHeader {
                        revision: 4,
                        ..Default::default()
                    }),
                    prev_kv: None,
                })),
            }],
        };
        assert_eq!(
            String::from_utf8(txn(&r).unwrap()).unwrap(),
            "{\"header\":{\"cluster_id\":17666670140434938592,\"member_id\":11048590297669999681,\"revision\":3,\"raft_term\":2},\"responses\":[{\"Response\":{\"ResponsePut\":{\"header\":{\"revision\":4}}}}]}\n"
        );
    }
}
