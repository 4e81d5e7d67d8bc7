//! etcdctl's output formats: `simple`, `json`, `fields`, `table` and `protobuf`.
//!
//! Each printer turns a response into the exact bytes etcdctl 3.4 writes to stdout. A format
//! that etcdctl lacks for a response is the error `<format> not supported as output format`
//! (exit code 4), as there.

pub(crate) mod fields;
pub(crate) mod gojson;
pub(crate) mod json;
pub(crate) mod protobuf;
pub(crate) mod simple;
pub(crate) mod table;

use oxcd_proto::etcdserverpb as pb;

use crate::error::{CtlError, ExitCode};

/// An output format (`-w`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Human-readable lines (the default).
    Simple,
    /// Go's `encoding/json` of clientv3's response.
    Json,
    /// `"Field" : value` lines.
    Fields,
    /// ASCII tables (only for a few commands).
    Table,
    /// The response's protobuf encoding.
    Protobuf,
}

impl Format {
    /// Parses `-w`; etcdctl exits with "unsupported output format" (code 4) otherwise.
    pub(crate) fn parse(text: &str) -> Result<Format, CtlError> {
        match text {
            "simple" => Ok(Format::Simple),
            "json" => Ok(Format::Json),
            "fields" => Ok(Format::Fields),
            "table" => Ok(Format::Table),
            "protobuf" => Ok(Format::Protobuf),
            _ => Err(CtlError::new(
                ExitCode::BadFeature,
                "unsupported output format",
            )),
        }
    }

    /// The name etcdctl uses in its messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Simple => "simple",
            Format::Json => "json",
            Format::Fields => "fields",
            Format::Table => "table",
            Format::Protobuf => "protobuf",
        }
    }

    /// `<format> not supported as output format` (exit code 4).
    pub(crate) fn unsupported(self) -> CtlError {
        CtlError::new(
            ExitCode::BadFeature,
            format!("{} not supported as output format", self.name()),
        )
    }
}

/// The result of `endpoint health` for one endpoint.
#[derive(Debug, Clone)]
pub(crate) struct EpHealth {
    /// The endpoint.
    pub ep: String,
    /// Whether it answered.
    pub health: bool,
    /// How long the probe took (Go's duration text), empty if it never ran.
    pub took: String,
    /// The error, empty if healthy.
    pub error: String,
}

/// The result of `endpoint status` for one endpoint.
#[derive(Debug, Clone)]
pub(crate) struct EpStatus {
    /// The endpoint.
    pub ep: String,
    /// Its status.
    pub resp: pb::StatusResponse,
}

/// The result of `endpoint hashkv` for one endpoint.
#[derive(Debug, Clone)]
pub(crate) struct EpHashKv {
    /// The endpoint.
    pub ep: String,
    /// Its hash.
    pub resp: pb::HashKvResponse,
}

/// What `snapshot status` reports about a snapshot file.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DbStatus {
    /// CRC-32 (Castagnoli) hash of the data.
    pub hash: u32,
    /// The store's revision.
    pub revision: i64,
    /// Number of keys (including old revisions).
    pub total_key: u64,
    /// Size of the file in bytes.
    pub total_size: u64,
}

/// A watch response as clientv3 hands it to etcdctl's printers.
#[derive(Debug, Clone, Default)]
pub(crate) struct WatchReply {
    /// The response header.
    pub header: pb::ResponseHeader,
    /// The events.
    pub events: Vec<oxcd_proto::mvccpb::Event>,
    /// The compact revision, if the watch was cancelled by a compaction.
    pub compact_revision: i64,
    /// Whether the watch was cancelled.
    pub canceled: bool,
    /// Whether this is the creation response.
    pub created: bool,
}

/// Chooses the format and options; every command prints through one of these.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Printer {
    /// The format.
    pub format: Format,
    /// `--hex`: byte strings as `\x..` (simple format only).
    pub hex: bool,
    /// `--print-value-only` (simple format only).
    pub value_only: bool,
}

/// The output of a printer: bytes for stdout.
pub(crate) type Printed = Result<Vec<u8>, CtlError>;

macro_rules! dispatch {
    ($self:ident, $method:ident ( $($arg:expr),* ), table: $table:expr) => {
        match $self.format {
            Format::Simple => Ok(simple::Simple { hex: $self.hex, value_only: $self.value_only }.$method($($arg),*)),
            Format::Json => json::$method($($arg),*),
            Format::Fields => fields::$method($($arg),*),
            Format::Protobuf => protobuf::$method($($arg),*),
            Format::Table => $table,
        }
    };
}

impl Printer {
    /// `get`.
    pub(crate) fn get(&self, r: &pb::RangeResponse) -> Printed {
        dispatch!(self, get(r), table: Err(self.format.unsupported()))
    }
    /// `put`.
    pub(crate) fn put(&self, r: &pb::PutResponse) -> Printed {
        dispatch!(self, put(r), table: Err(self.format.unsupported()))
    }
    /// `del`.
    pub(crate) fn del(&self, r: &pb::DeleteRangeResponse) -> Printed {
        dispatch!(self, del(r), table: Err(self.format.unsupported()))
    }
    /// `txn`.
    pub(crate) fn txn(&self, r: &pb::TxnResponse) -> Printed {
        dispatch!(self, txn(r), table: Err(self.format.unsupported()))
    }
    /// One watch response.
    pub(crate) fn watch(&self, r: &WatchReply) -> Printed {
        dispatch!(self, watch(r), table: Err(self.format.unsupported()))
    }
    /// `lease grant`.
    pub(crate) fn grant(&self, r: &pb::LeaseGrantResponse) -> Printed {
        dispatch!(self, grant(r), table: Err(self.format.unsupported()))
    }
    /// `lease revoke`.
    pub(crate) fn revoke(&self, id: i64, r: &pb::LeaseRevokeResponse) -> Printed {
        dispatch!(self, revoke(id, r), table: Err(self.format.unsupported()))
    }
    /// `lease keep-alive`, one answer.
    pub(crate) fn keep_alive(&self, r: &pb::LeaseKeepAliveResponse) -> Printed {
        dispatch!(self, keep_alive(r), table: Err(self.format.unsupported()))
    }
    /// `lease timetolive`.
    pub(crate) fn time_to_live(&self, r: &pb::LeaseTimeToLiveResponse, keys: bool) -> Printed {
        dispatch!(self, time_to_live(r, keys), table: Err(self.format.unsupported()))
    }
    /// `lease list`.
    pub(crate) fn leases(&self, r: &pb::LeaseLeasesResponse) -> Printed {
        dispatch!(self, leases(r), table: Err(self.format.unsupported()))
    }
    /// `member add`.
    pub(crate) fn member_add(&self, r: &pb::MemberAddResponse) -> Printed {
        dispatch!(self, member_add(r), table: Err(self.format.unsupported()))
    }
    /// `member remove`.
    pub(crate) fn member_remove(&self, id: u64, r: &pb::MemberRemoveResponse) -> Printed {
        dispatch!(self, member_remove(id, r), table: Err(self.format.unsupported()))
    }
    /// `member update`.
    pub(crate) fn member_update(&self, id: u64, r: &pb::MemberUpdateResponse) -> Printed {
        dispatch!(self, member_update(id, r), table: Err(self.format.unsupported()))
    }
    /// `member promote`.
    pub(crate) fn member_promote(&self, id: u64, r: &pb::MemberPromoteResponse) -> Printed {
        dispatch!(self, member_promote(id, r), table: Err(self.format.unsupported()))
    }
    /// `member list`.
    pub(crate) fn member_list(&self, r: &pb::MemberListResponse) -> Printed {
        dispatch!(self, member_list(r), table: Ok(table::member_list(r)))
    }
    /// `endpoint health`: (stdout, stderr) since the simple format writes to stderr.
    pub(crate) fn endpoint_health(&self, r: &[EpHealth]) -> Result<(Vec<u8>, Vec<u8>), CtlError> {
        match self.format {
            Format::Simple => Ok((Vec::new(), simple::endpoint_health(r))),
            Format::Json => Ok((json::endpoint_health(r), Vec::new())),
            Format::Fields => Ok((fields::endpoint_health(r), Vec::new())),
            Format::Table => Ok((table::endpoint_health(r), Vec::new())),
            Format::Protobuf => Err(self.format.unsupported()),
        }
    }
    /// `endpoint status`.
    pub(crate) fn endpoint_status(&self, r: &[EpStatus]) -> Printed {
        match self.format {
            Format::Protobuf => Err(self.format.unsupported()),
            Format::Table => Ok(table::endpoint_status(r)),
            _ => dispatch!(self, endpoint_status(r), table: Err(self.format.unsupported())),
        }
    }
    /// `endpoint hashkv`.
    pub(crate) fn endpoint_hashkv(&self, r: &[EpHashKv]) -> Printed {
        match self.format {
            Format::Protobuf => Err(self.format.unsupported()),
            Format::Table => Ok(table::endpoint_hashkv(r)),
            _ => dispatch!(self, endpoint_hashkv(r), table: Err(self.format.unsupported())),
        }
    }
    /// `move-leader`.
    pub(crate) fn move_leader(
        &self,
        leader: u64,
        target: u64,
        r: &pb::MoveLeaderResponse,
    ) -> Printed {
        dispatch!(self, move_leader(leader, target, r), table: Err(self.format.unsupported()))
    }
    /// `alarm list` / `alarm disarm`.
    pub(crate) fn alarm(&self, r: &pb::AlarmResponse) -> Printed {
        dispatch!(self, alarm(r), table: Err(self.format.unsupported()))
    }
    /// `snapshot status`.
    pub(crate) fn db_status(&self, r: &DbStatus) -> Printed {
        match self.format {
            Format::Protobuf => Err(self.format.unsupported()),
            Format::Table => Ok(table::db_status(r)),
            _ => dispatch!(self, db_status(r), table: Err(self.format.unsupported())),
        }
    }
    /// An auth command: `role add|delete|grant-permission`, `user add|delete|passwd|grant-role|revoke-role`,
    /// `auth` responses that only carry a header; `simple` is the line etcdctl prints.
    pub(crate) fn auth_header(
        &self,
        simple_line: &str,
        header: Option<&pb::ResponseHeader>,
        fields_ok: bool,
    ) -> Printed {
        match self.format {
            Format::Simple => Ok(format!("{simple_line}\n").into_bytes()),
            Format::Json => Ok(json::header_only(header)),
            Format::Fields if fields_ok => Ok(fields::header_only(header)),
            Format::Protobuf => Ok(protobuf::header_only(header)),
            _ => Err(self.format.unsupported()),
        }
    }
    /// `role get`.
    pub(crate) fn role_get(&self, role: &str, r: &pb::AuthRoleGetResponse) -> Printed {
        dispatch!(self, role_get(role, r), table: Err(self.format.unsupported()))
    }
    /// `role list`.
    pub(crate) fn role_list(&self, r: &pb::AuthRoleListResponse) -> Printed {
        dispatch!(self, role_list(r), table: Err(self.format.unsupported()))
    }
    /// `user get`.
    pub(crate) fn user_get(&self, user: &str, r: &pb::AuthUserGetResponse) -> Printed {
        dispatch!(self, user_get(user, r), table: Err(self.format.unsupported()))
    }
    /// `user list`.
    pub(crate) fn user_list(&self, r: &pb::AuthUserListResponse) -> Printed {
        dispatch!(self, user_list(r), table: Err(self.format.unsupported()))
    }
}

/// `clientv3.GetPrefixRangeEnd`: the end of the range of keys that start with `prefix`.
pub(crate) fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
