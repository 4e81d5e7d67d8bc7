//! The `simple` format.

use std::io::Write;

use oxcd_proto::etcdserverpb as pb;
use oxcd_proto::etcdserverpb::response_op::Response;
use oxcd_proto::mvccpb::{event::EventType, KeyValue};

use super::{table, DbStatus, EpHashKv, EpHealth, EpStatus, WatchReply};

/// The simple printer's options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Simple {
    /// `--hex`.
    pub hex: bool,
    /// `--print-value-only`.
    pub value_only: bool,
}

/// `\xNN` for every byte, as etcdctl's `--hex`.
pub(crate) fn hex_escaped(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() * 4);
    for b in bytes {
        let _ = write!(out, "\\x{b:02x}");
    }
    out
}

/// Go's `%v` of a `mvccpb.Event_EventType`.
pub(crate) fn event_type_name(t: i32) -> String {
    match EventType::try_from(t) {
        Ok(EventType::Put) => "PUT".into(),
        Ok(EventType::Delete) => "DELETE".into(),
        Err(_) => t.to_string(),
    }
}

impl Simple {
    fn kv(&self, out: &mut Vec<u8>, kv: &KeyValue) {
        let (k, v) = if self.hex {
            (hex_escaped(&kv.key), hex_escaped(&kv.value))
        } else {
            (kv.key.clone(), kv.value.clone())
        };
        if !self.value_only {
            out.extend_from_slice(&k);
            out.push(b'\n');
        }
        out.extend_from_slice(&v);
        out.push(b'\n');
    }

    /// `get`.
    pub(crate) fn get(&self, r: &pb::RangeResponse) -> Vec<u8> {
        let mut out = Vec::new();
        for kv in &r.kvs {
            self.kv(&mut out, kv);
        }
        out
    }

    /// `put`.
    pub(crate) fn put(&self, r: &pb::PutResponse) -> Vec<u8> {
        let mut out = b"OK\n".to_vec();
        if let Some(prev) = &r.prev_kv {
            self.kv(&mut out, prev);
        }
        out
    }

    /// `del`.
    pub(crate) fn del(&self, r: &pb::DeleteRangeResponse) -> Vec<u8> {
        let mut out = format!("{}\n", r.deleted).into_bytes();
        for kv in &r.prev_kvs {
            self.kv(&mut out, kv);
        }
        out
    }

    /// `txn`.
    pub(crate) fn txn(&self, r: &pb::TxnResponse) -> Vec<u8> {
        let mut out = if r.succeeded {
            b"SUCCESS\n".to_vec()
        } else {
            b"FAILURE\n".to_vec()
        };
        for op in &r.responses {
            out.push(b'\n');
            match &op.response {
                Some(Response::ResponseDeleteRange(d)) => out.extend(self.del(d)),
                Some(Response::ResponsePut(p)) => out.extend(self.put(p)),
                Some(Response::ResponseRange(g)) => out.extend(self.get(g)),
                other => {
                    let _ = writeln!(out, "unexpected response {other:?}");
                }
            }
        }
        out
    }

    /// One watch response.
    pub(crate) fn watch(&self, r: &WatchReply) -> Vec<u8> {
        let mut out = Vec::new();
        for e in &r.events {
            let _ = writeln!(out, "{}", event_type_name(e.r#type));
            if let Some(prev) = &e.prev_kv {
                self.kv(&mut out, prev);
            }
            self.kv(&mut out, e.kv.as_ref().unwrap_or(&KeyValue::default()));
        }
        out
    }

    /// `lease grant`.
    pub(crate) fn grant(&self, r: &pb::LeaseGrantResponse) -> Vec<u8> {
        format!("lease {:016x} granted with TTL({}s)\n", r.id, r.ttl).into_bytes()
    }

    /// `lease revoke`.
    pub(crate) fn revoke(&self, id: i64, _r: &pb::LeaseRevokeResponse) -> Vec<u8> {
        format!("lease {id:016x} revoked\n").into_bytes()
    }

    /// `lease keep-alive`.
    pub(crate) fn keep_alive(&self, r: &pb::LeaseKeepAliveResponse) -> Vec<u8> {
        format!("lease {:016x} keepalived with TTL({})\n", r.id, r.ttl).into_bytes()
    }

    /// `lease timetolive`.
    pub(crate) fn time_to_live(&self, r: &pb::LeaseTimeToLiveResponse, keys: bool) -> Vec<u8> {
        if r.granted_ttl == 0 && r.ttl == -1 {
            return format!("lease {:016x} already expired\n", r.id).into_bytes();
        }
        let mut out = format!(
            "lease {:016x} granted with TTL({}s), remaining({}s)",
            r.id, r.granted_ttl, r.ttl
        )
        .into_bytes();
        if keys {
            out.extend_from_slice(b", attached keys([");
            for (i, k) in r.keys.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(k);
            }
            out.extend_from_slice(b"])");
        }
        out.push(b'\n');
        out
    }

    /// `lease list`.
    pub(crate) fn leases(&self, r: &pb::LeaseLeasesResponse) -> Vec<u8> {
        let mut out = format!("found {} leases\n", r.leases.len());
        for l in &r.leases {
            out.push_str(&format!("{:016x}\n", l.id));
        }
        out.into_bytes()
    }

    /// `alarm list|disarm`: Go's `%+v` of each alarm, its compact protobuf text.
    pub(crate) fn alarm(&self, r: &pb::AlarmResponse) -> Vec<u8> {
        let mut out = String::new();
        for a in &r.alarms {
            out.push_str(&alarm_member_text(a));
            out.push('\n');
        }
        out.into_bytes()
    }

    /// `member add` (the `ETCD_*` lines follow, printed by the command).
    pub(crate) fn member_add(&self, r: &pb::MemberAddResponse) -> Vec<u8> {
        let id = r.member.as_ref().map(|m| m.id).unwrap_or_default();
        format!(
            "Member {id:16x} added to cluster {:16x}\n",
            cluster_id(r.header.as_ref())
        )
        .into_bytes()
    }

    /// `member remove`.
    pub(crate) fn member_remove(&self, id: u64, r: &pb::MemberRemoveResponse) -> Vec<u8> {
        format!(
            "Member {id:16x} removed from cluster {:16x}\n",
            cluster_id(r.header.as_ref())
        )
        .into_bytes()
    }

    /// `member update`.
    pub(crate) fn member_update(&self, id: u64, r: &pb::MemberUpdateResponse) -> Vec<u8> {
        format!(
            "Member {id:16x} updated in cluster {:16x}\n",
            cluster_id(r.header.as_ref())
        )
        .into_bytes()
    }

    /// `member promote`.
    pub(crate) fn member_promote(&self, id: u64, r: &pb::MemberPromoteResponse) -> Vec<u8> {
        format!(
            "Member {id:16x} promoted in cluster {:16x}\n",
            cluster_id(r.header.as_ref())
        )
        .into_bytes()
    }

    /// `member list`.
    pub(crate) fn member_list(&self, r: &pb::MemberListResponse) -> Vec<u8> {
        join_rows(&table::member_list_rows(r))
    }

    /// `endpoint status`.
    pub(crate) fn endpoint_status(&self, r: &[EpStatus]) -> Vec<u8> {
        join_rows(&table::endpoint_status_rows(r))
    }

    /// `endpoint hashkv`.
    pub(crate) fn endpoint_hashkv(&self, r: &[EpHashKv]) -> Vec<u8> {
        join_rows(&table::endpoint_hashkv_rows(r))
    }

    /// `snapshot status`.
    pub(crate) fn db_status(&self, r: &DbStatus) -> Vec<u8> {
        join_rows(&table::db_status_rows(r))
    }

    /// `move-leader`.
    pub(crate) fn move_leader(
        &self,
        leader: u64,
        target: u64,
        _r: &pb::MoveLeaderResponse,
    ) -> Vec<u8> {
        format!("Leadership transferred from {leader:x} to {target:x}\n").into_bytes()
    }

    /// `role get`.
    pub(crate) fn role_get(&self, role: &str, r: &pb::AuthRoleGetResponse) -> Vec<u8> {
        use oxcd_proto::authpb::permission::Type;
        let mut out = format!("Role {role}\nKV Read:\n").into_bytes();
        let section = |out: &mut Vec<u8>, wanted: Type| {
            for p in &r.perm {
                let t = Type::try_from(p.perm_type).unwrap_or(Type::Read);
                if t == wanted || t == Type::Readwrite {
                    permission_line(out, p);
                }
            }
        };
        section(&mut out, Type::Read);
        out.extend_from_slice(b"KV Write:\n");
        section(&mut out, Type::Write);
        out
    }

    /// `role list`.
    pub(crate) fn role_list(&self, r: &pb::AuthRoleListResponse) -> Vec<u8> {
        r.roles
            .iter()
            .map(|x| format!("{x}\n"))
            .collect::<String>()
            .into_bytes()
    }

    /// `user get`.
    pub(crate) fn user_get(&self, user: &str, r: &pb::AuthUserGetResponse) -> Vec<u8> {
        let mut out = format!("User: {user}\nRoles:");
        for role in &r.roles {
            out.push(' ');
            out.push_str(role);
        }
        out.push('\n');
        out.into_bytes()
    }

    /// `user list`.
    pub(crate) fn user_list(&self, r: &pb::AuthUserListResponse) -> Vec<u8> {
        r.users
            .iter()
            .map(|x| format!("{x}\n"))
            .collect::<String>()
            .into_bytes()
    }
}

fn permission_line(out: &mut Vec<u8>, p: &oxcd_proto::authpb::Permission) {
    out.push(b'\t');
    if p.range_end.is_empty() {
        out.extend_from_slice(&p.key);
        out.push(b'\n');
        return;
    }
    if p.range_end != [0] {
        out.push(b'[');
        out.extend_from_slice(&p.key);
        out.extend_from_slice(b", ");
        out.extend_from_slice(&p.range_end);
        out.push(b')');
    } else {
        out.push(b'[');
        out.extend_from_slice(&p.key);
        out.extend_from_slice(b", <open ended>");
    }
    if super::prefix_range_end(&p.key) == p.range_end {
        out.extend_from_slice(b" (prefix ");
        out.extend_from_slice(&p.key);
        out.push(b')');
    }
    out.push(b'\n');
}

/// `endpoint health` in the simple format: one line per endpoint, on stderr.
pub(crate) fn endpoint_health(r: &[EpHealth]) -> Vec<u8> {
    let mut out = String::new();
    for h in r {
        if h.error.is_empty() {
            out.push_str(&format!(
                "{} is healthy: successfully committed proposal: took = {}\n",
                h.ep, h.took
            ));
        } else {
            out.push_str(&format!(
                "{} is unhealthy: failed to commit proposal: {}\n",
                h.ep, h.error
            ));
        }
    }
    out.into_bytes()
}

fn cluster_id(h: Option<&pb::ResponseHeader>) -> u64 {
    h.map(|h| h.cluster_id).unwrap_or_default()
}

fn join_rows(rows: &[Vec<String>]) -> Vec<u8> {
    rows.iter()
        .map(|r| format!("{}\n", r.join(", ")))
        .collect::<String>()
        .into_bytes()
}

/// The name of an alarm type, as Go's generated `String()`.
pub(crate) fn alarm_type_name(t: i32) -> String {
    match pb::AlarmType::try_from(t) {
        Ok(pb::AlarmType::None) => "NONE".into(),
        Ok(pb::AlarmType::Nospace) => "NOSPACE".into(),
        Ok(pb::AlarmType::Corrupt) => "CORRUPT".into(),
        Err(_) => t.to_string(),
    }
}

/// Go's `proto.CompactTextString` of an `AlarmMember`.
fn alarm_member_text(a: &pb::AlarmMember) -> String {
    let mut parts = Vec::new();
    if a.member_id != 0 {
        parts.push(format!("memberID:{}", a.member_id));
    }
    if a.alarm != 0 {
        parts.push(format!("alarm:{}", alarm_type_name(a.alarm)));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        }
    }

    #[test]
    fn get_prints_keys_and_values_and_hex() {
        let r = pb::RangeResponse {
            kvs: vec![kv("foo", "bar")],
            ..Default::default()
        };
        let s = Simple {
            hex: false,
            value_only: false,
        };
        assert_eq!(s.get(&r), b"foo\nbar\n");
        let h = Simple {
            hex: true,
            value_only: false,
        };
        assert_eq!(h.get(&r), b"\\x66\\x6f\\x6f\n\\x62\\x61\\x72\n");
        let v = Simple {
            hex: false,
            value_only: true,
        };
        assert_eq!(v.get(&r), b"bar\n");
    }

    #[test]
    fn txn_separates_responses_with_blank_lines() {
        let r = pb::TxnResponse {
            succeeded: false,
            responses: vec![pb::ResponseOp {
                response: Some(Response::ResponsePut(pb::PutResponse::default())),
            }],
            ..Default::default()
        };
        assert_eq!(
            Simple {
                hex: false,
                value_only: false
            }
            .txn(&r),
            b"FAILURE\n\nOK\n"
        );
    }

    #[test]
    fn lease_lines() {
        let s = Simple {
            hex: false,
            value_only: false,
        };
        let g = pb::LeaseGrantResponse {
            id: 0x1c41,
            ttl: 10,
            ..Default::default()
        };
        assert_eq!(
            s.grant(&g),
            b"lease 0000000000001c41 granted with TTL(10s)\n"
        );
        let t = pb::LeaseTimeToLiveResponse {
            id: 1,
            ttl: -1,
            granted_ttl: 0,
            ..Default::default()
        };
        assert_eq!(
            s.time_to_live(&t, true),
            b"lease 0000000000000001 already expired\n"
        );
        let t = pb::LeaseTimeToLiveResponse {
            id: 1,
            ttl: 5,
            granted_ttl: 10,
            keys: vec![b"a".to_vec(), b"b".to_vec()],
            ..Default::default()
        };
        assert_eq!(
            s.time_to_live(&t, true),
            b"lease 0000000000000001 granted with TTL(10s), remaining(5s), attached keys([a b])\n"
        );
    }

    #[test]
    fn member_ids_are_space_padded() {
        let s = Simple {
            hex: false,
            value_only: false,
        };
        let r = pb::MemberRemoveResponse {
            header: Some(pb::ResponseHeader {
                cluster_id: 0xabc,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            s.member_remove(0x12, &r),
            b"Member               12 removed from cluster              abc\n"
        );
    }
}
