//! The `fields` format: `"Name" : value` lines.

use std::fmt::Write;

use oxcd_proto::etcdserverpb as pb;
use oxcd_proto::etcdserverpb::response_op::Response;
use oxcd_proto::mvccpb::KeyValue;

use super::simple::{alarm_type_name, event_type_name};
use super::{DbStatus, EpHashKv, EpHealth, EpStatus, Format, Printed, WatchReply};
use crate::golog::go_quote;

fn kv(out: &mut String, pfx: &str, kv: &KeyValue) {
    let _ = writeln!(out, "\"{pfx}Key\" : {}", go_quote(&kv.key));
    let _ = writeln!(out, "\"{pfx}CreateRevision\" : {}", kv.create_revision);
    let _ = writeln!(out, "\"{pfx}ModRevision\" : {}", kv.mod_revision);
    let _ = writeln!(out, "\"{pfx}Version\" : {}", kv.version);
    let _ = writeln!(out, "\"{pfx}Value\" : {}", go_quote(&kv.value));
    let _ = writeln!(out, "\"{pfx}Lease\" : {}", kv.lease);
}

fn hdr(out: &mut String, h: Option<&pb::ResponseHeader>) {
    let h = h.cloned().unwrap_or_default();
    let _ = writeln!(out, "\"ClusterID\" : {}", h.cluster_id);
    let _ = writeln!(out, "\"MemberID\" : {}", h.member_id);
    let _ = writeln!(out, "\"Revision\" : {}", h.revision);
    let _ = writeln!(out, "\"RaftTerm\" : {}", h.raft_term);
}

fn del_into(out: &mut String, r: &pb::DeleteRangeResponse) {
    hdr(out, r.header.as_ref());
    let _ = writeln!(out, "\"Deleted\" : {}", r.deleted);
    for p in &r.prev_kvs {
        kv(out, "Prev", p);
    }
}

fn get_into(out: &mut String, r: &pb::RangeResponse) {
    hdr(out, r.header.as_ref());
    for k in &r.kvs {
        kv(out, "", k);
    }
    let _ = writeln!(out, "\"More\" : {}", r.more);
    let _ = writeln!(out, "\"Count\" : {}", r.count);
}

fn put_into(out: &mut String, r: &pb::PutResponse) {
    hdr(out, r.header.as_ref());
    if let Some(p) = &r.prev_kv {
        kv(out, "Prev", p);
    }
}

/// `get`.
pub(crate) fn get(r: &pb::RangeResponse) -> Printed {
    let mut out = String::new();
    get_into(&mut out, r);
    Ok(out.into_bytes())
}

/// `put`.
pub(crate) fn put(r: &pb::PutResponse) -> Printed {
    let mut out = String::new();
    put_into(&mut out, r);
    Ok(out.into_bytes())
}

/// `del`.
pub(crate) fn del(r: &pb::DeleteRangeResponse) -> Printed {
    let mut out = String::new();
    del_into(&mut out, r);
    Ok(out.into_bytes())
}

/// `txn`.
pub(crate) fn txn(r: &pb::TxnResponse) -> Printed {
    let mut out = String::new();
    hdr(&mut out, r.header.as_ref());
    let _ = writeln!(out, "\"Succeeded\" : {}", r.succeeded);
    for op in &r.responses {
        match &op.response {
            Some(Response::ResponseDeleteRange(d)) => del_into(&mut out, d),
            Some(Response::ResponsePut(p)) => put_into(&mut out, p),
            Some(Response::ResponseRange(g)) => get_into(&mut out, g),
            other => {
                let _ = writeln!(
                    out,
                    "\"Unknown\" : {}",
                    go_quote(format!("{other:?}").as_bytes())
                );
            }
        }
    }
    Ok(out.into_bytes())
}

/// One watch response.
pub(crate) fn watch(r: &WatchReply) -> Printed {
    let mut out = String::new();
    hdr(&mut out, Some(&r.header));
    for e in &r.events {
        let _ = writeln!(out, "\"Type\" : {}", event_type_name(e.r#type));
        if let Some(p) = &e.prev_kv {
            kv(&mut out, "Prev", p);
        }
        kv(&mut out, "", e.kv.as_ref().unwrap_or(&KeyValue::default()));
    }
    Ok(out.into_bytes())
}

/// `lease grant`.
pub(crate) fn grant(r: &pb::LeaseGrantResponse) -> Printed {
    let mut out = String::new();
    hdr(&mut out, r.header.as_ref());
    let _ = writeln!(out, "\"ID\" : {}\n\"TTL\" : {}", r.id, r.ttl);
    Ok(out.into_bytes())
}

/// `lease revoke`.
pub(crate) fn revoke(_id: i64, r: &pb::LeaseRevokeResponse) -> Printed {
    Ok(header_only(r.header.as_ref()))
}

/// `lease keep-alive`.
pub(crate) fn keep_alive(r: &pb::LeaseKeepAliveResponse) -> Printed {
    let mut out = String::new();
    hdr(&mut out, r.header.as_ref());
    let _ = writeln!(out, "\"ID\" : {}\n\"TTL\" : {}", r.id, r.ttl);
    Ok(out.into_bytes())
}

/// `lease timetolive`.
pub(crate) fn time_to_live(r: &pb::LeaseTimeToLiveResponse, _keys: bool) -> Printed {
    let mut out = String::new();
    hdr(&mut out, r.header.as_ref());
    let _ = writeln!(
        out,
        "\"ID\" : {}\n\"TTL\" : {}\n\"GrantedTTL\" : {}",
        r.id, r.ttl, r.granted_ttl
    );
    for k in &r.keys {
        let _ = writeln!(out, "\"Key\" : {}", go_quote(k));
    }
    Ok(out.into_bytes())
}

/// `lease list`.
pub(crate) fn leases(r: &pb::LeaseLeasesResponse) -> Printed {
    let mut out = String::new();
    hdr(&mut out, r.header.as_ref());
    for l in &r.leases {
        let _ = writeln!(out, "\"ID\" : {}", l.id);
    }
    Ok(out.into_bytes())
}

/// `member add` (not a fields command in etcdctl).
pub(crate) fn member_add(_r: &pb::MemberAddResponse) -> Printed {
    Err(Format::Fields.unsupported())
}

/// `member remove` (not a fields command in etcdctl).
pub(crate) fn member_remove(_id: u64, _r: &pb::MemberRemoveResponse) -> Printed {
    Err(Format::Fields.unsupported())
}

/// `member update` (not a fields command in etcdctl).
pub(crate) fn member_update(_id: u64, _r: &pb::MemberUpdateResponse) -> Printed {
    Err(Format::Fields.unsupported())
}

/// `member promote` (not a fields command in etcdctl).
pub(crate) fn member_promote(_id: u64, _r: &pb::MemberPromoteResponse) -> Printed {
    Err(Format::Fields.unsupported())
}

/// `member list`.
pub(crate) fn member_list(r: &pb::MemberListResponse) -> Printed {
    let mut out = String::new();
    hdr(&mut out, r.header.as_ref());
    for m in &r.members {
        let _ = writeln!(out, "\"ID\" : {}", m.id);
        let _ = writeln!(out, "\"Name\" : {}", go_quote(m.name.as_bytes()));
        for u in &m.peer_ur_ls {
            let _ = writeln!(out, "\"PeerURL\" : {}", go_quote(u.as_bytes()));
        }
        for u in &m.client_ur_ls {
            let _ = writeln!(out, "\"ClientURL\" : {}", go_quote(u.as_bytes()));
        }
        let _ = writeln!(out, "\"IsLearner\" : {}\n", m.is_learner);
    }
    Ok(out.into_bytes())
}

/// `endpoint health`.
pub(crate) fn endpoint_health(r: &[EpHealth]) -> Vec<u8> {
    let mut out = String::new();
    for h in r {
        let _ = writeln!(out, "\"Endpoint\" : {}", go_quote(h.ep.as_bytes()));
        let _ = writeln!(
            out,
            "\"Health\" : {}\n\"Took\" : {}\n\"Error\" : {}\n",
            h.health, h.took, h.error
        );
    }
    out.into_bytes()
}

/// `endpoint status`.
pub(crate) fn endpoint_status(r: &[EpStatus]) -> Printed {
    let mut out = String::new();
    for e in r {
        let s = &e.resp;
        hdr(&mut out, s.header.as_ref());
        let _ = writeln!(out, "\"Version\" : {}", go_quote(s.version.as_bytes()));
        let _ = writeln!(out, "\"DBSize\" : {}", s.db_size);
        let _ = writeln!(out, "\"Leader\" : {}", s.leader);
        let _ = writeln!(out, "\"IsLearner\" : {}", s.is_learner);
        let _ = writeln!(out, "\"RaftIndex\" : {}", s.raft_index);
        let _ = writeln!(out, "\"RaftTerm\" : {}", s.raft_term);
        let _ = writeln!(out, "\"RaftAppliedIndex\" : {}", s.raft_applied_index);
        let _ = writeln!(out, "\"Errors\" : [{}]", s.errors.join(" "));
        let _ = writeln!(out, "\"Endpoint\" : {}\n", go_quote(e.ep.as_bytes()));
    }
    Ok(out.into_bytes())
}

/// `endpoint hashkv`.
pub(crate) fn endpoint_hashkv(r: &[EpHashKv]) -> Printed {
    let mut out = String::new();
    for e in r {
        hdr(&mut out, e.resp.header.as_ref());
        let _ = writeln!(out, "\"Endpoint\" : {}", go_quote(e.ep.as_bytes()));
        let _ = writeln!(out, "\"Hash\" : {}\n", e.resp.hash);
    }
    Ok(out.into_bytes())
}

/// `move-leader` (not a fields command in etcdctl).
pub(crate) fn move_leader(_l: u64, _t: u64, _r: &pb::MoveLeaderResponse) -> Printed {
    Err(Format::Fields.unsupported())
}

/// `alarm list|disarm`.
pub(crate) fn alarm(r: &pb::AlarmResponse) -> Printed {
    let mut out = String::new();
    hdr(&mut out, r.header.as_ref());
    for a in &r.alarms {
        let _ = writeln!(
            out,
            "\"MemberID\" : {}\n\"AlarmType\" : {}\n",
            a.member_id,
            alarm_type_name(a.alarm)
        );
    }
    Ok(out.into_bytes())
}

/// `snapshot status`.
pub(crate) fn db_status(r: &DbStatus) -> Printed {
    Ok(format!(
        "\"Hash\" : {}\n\"Revision\" : {}\n\"Keys\" : {}\n\"Size\" : {}\n",
        r.hash, r.revision, r.total_key, r.total_size
    )
    .into_bytes())
}

/// A response that only has a header.
pub(crate) fn header_only(h: Option<&pb::ResponseHeader>) -> Vec<u8> {
    let mut out = String::new();
    hdr(&mut out, h);
    out.into_bytes()
}

/// `role get`.
pub(crate) fn role_get(_role: &str, r: &pb::AuthRoleGetResponse) -> Printed {
    use oxcd_proto::authpb::permission::Type;
    let mut out = String::new();
    hdr(&mut out, r.header.as_ref());
    for p in &r.perm {
        let t = match Type::try_from(p.perm_type) {
            Ok(Type::Read) => "READ".to_string(),
            Ok(Type::Write) => "WRITE".to_string(),
            Ok(Type::Readwrite) => "READWRITE".to_string(),
            Err(_) => p.perm_type.to_string(),
        };
        let _ = writeln!(out, "\"PermType\" :  {t}");
        let _ = writeln!(out, "\"Key\" : {}", go_quote(&p.key));
        let _ = writeln!(out, "\"RangeEnd\" : {}", go_quote(&p.range_end));
    }
    Ok(out.into_bytes())
}

/// `role list`.
pub(crate) fn role_list(r: &pb::AuthRoleListResponse) -> Printed {
    let mut out = String::new();
    hdr(&mut out, r.header.as_ref());
    out.push_str("\"Roles\" :");
    for role in &r.roles {
        let _ = write!(out, " {}", go_quote(role.as_bytes()));
    }
    out.push('\n');
    Ok(out.into_bytes())
}

/// `user get` (not a fields command in etcdctl).
pub(crate) fn user_get(_user: &str, _r: &pb::AuthUserGetResponse) -> Printed {
    Err(Format::Fields.unsupported())
}

/// `user list` (not a fields command in etcdctl).
pub(crate) fn user_list(_r: &pb::AuthUserListResponse) -> Printed {
    Err(Format::Fields.unsupported())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_matches_etcdctl() {
        let r = pb::RangeResponse {
            header: Some(pb::ResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: 3,
                raft_term: 2,
            }),
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
            "\"ClusterID\" : 1\n\"MemberID\" : 2\n\"Revision\" : 3\n\"RaftTerm\" : 2\n\"Key\" : \"foo\"\n\"CreateRevision\" : 2\n\"ModRevision\" : 3\n\"Version\" : 2\n\"Value\" : \"bar2\"\n\"Lease\" : 0\n\"More\" : false\n\"Count\" : 1\n"
        );
    }
}
