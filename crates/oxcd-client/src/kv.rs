//! The KV service: get, put, delete, compact, txn, with option builders.

use oxcd_proto::etcdserverpb::kv_client::KvClient;
use oxcd_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use oxcd_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};

use crate::client::{call, Client, Retry};
use crate::error::Result;
use crate::txn::Txn;

/// The end of a key range, as etcd's `range_end` field says it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KeyRange {
    /// Just the key.
    #[default]
    Single,
    /// Every key starting with the key (`WithPrefix`); the empty key means all keys.
    Prefix,
    /// The key and every key after it (`WithFromKey`).
    FromKey,
    /// Keys from the key up to, not including, this one (`WithRange`).
    End(Vec<u8>),
}

impl KeyRange {
    /// The `(key, range_end)` pair etcd expects for `key` and this range.
    pub fn bounds(&self, key: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
        match self {
            KeyRange::Single => (key, Vec::new()),
            KeyRange::Prefix if key.is_empty() => (vec![0], vec![0]),
            KeyRange::Prefix => {
                let end = prefix_end(&key);
                (key, end)
            }
            KeyRange::FromKey if key.is_empty() => (vec![0], vec![0]),
            KeyRange::FromKey => (key, vec![0]),
            KeyRange::End(end) => (key, end.clone()),
        }
    }
}

/// The first key after every key starting with `prefix` (etcd's `GetPrefixRangeEnd`);
/// `"\0"` (= to the end) when no such key exists.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The order of a range's results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrderBy {
    /// Ascending.
    Ascend,
    /// Descending.
    Descend,
}

/// What a range's results are sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    /// The key.
    Key,
    /// The key's version.
    Version,
    /// The key's create revision.
    CreateRevision,
    /// The key's last modification revision.
    ModRevision,
    /// The value.
    Value,
}

/// Options of [`Kv::get`] (etcd's `OpOption`s for `Get`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetOptions {
    range: KeyRange,
    limit: i64,
    revision: i64,
    sort: Option<(SortBy, SortOrderBy)>,
    serializable: bool,
    keys_only: bool,
    count_only: bool,
    min_mod_revision: i64,
    max_mod_revision: i64,
    min_create_revision: i64,
    max_create_revision: i64,
}

impl GetOptions {
    /// Just the key, linearizable, at the current revision.
    pub fn new() -> Self {
        Self::default()
    }
    key_range_builders!();
    /// At most `limit` keys (0 = no limit).
    pub fn with_limit(mut self, limit: i64) -> Self {
        self.limit = limit;
        self
    }
    /// Read at `revision` (0 = current).
    pub fn with_revision(mut self, revision: i64) -> Self {
        self.revision = revision;
        self
    }
    /// Sort the results.
    pub fn with_sort(mut self, by: SortBy, order: SortOrderBy) -> Self {
        self.sort = Some((by, order));
        self
    }
    /// Serve from the member's local data without a quorum read.
    pub fn with_serializable(mut self) -> Self {
        self.serializable = true;
        self
    }
    /// Keys without values.
    pub fn with_keys_only(mut self) -> Self {
        self.keys_only = true;
        self
    }
    /// Only the number of keys.
    pub fn with_count_only(mut self) -> Self {
        self.count_only = true;
        self
    }
    /// Only keys last modified at or after `revision`.
    pub fn with_min_mod_revision(mut self, revision: i64) -> Self {
        self.min_mod_revision = revision;
        self
    }
    /// Only keys last modified at or before `revision`.
    pub fn with_max_mod_revision(mut self, revision: i64) -> Self {
        self.max_mod_revision = revision;
        self
    }
    /// Only keys created at or after `revision`.
    pub fn with_min_create_revision(mut self, revision: i64) -> Self {
        self.min_create_revision = revision;
        self
    }
    /// Only keys created at or before `revision`.
    pub fn with_max_create_revision(mut self, revision: i64) -> Self {
        self.max_create_revision = revision;
        self
    }

    /// The range request for `key` with these options.
    pub fn into_request(self, key: impl Into<Vec<u8>>) -> RangeRequest {
        let (key, range_end) = self.range.bounds(key.into());
        let (sort_target, sort_order) = match self.sort {
            None => (SortTarget::Key, SortOrder::None),
            Some((by, order)) => (
                match by {
                    SortBy::Key => SortTarget::Key,
                    SortBy::Version => SortTarget::Version,
                    SortBy::CreateRevision => SortTarget::Create,
                    SortBy::ModRevision => SortTarget::Mod,
                    SortBy::Value => SortTarget::Value,
                },
                match order {
                    SortOrderBy::Ascend => SortOrder::Ascend,
                    SortOrderBy::Descend => SortOrder::Descend,
                },
            ),
        };
        RangeRequest {
            key,
            range_end,
            limit: self.limit,
            revision: self.revision,
            sort_order: sort_order as i32,
            sort_target: sort_target as i32,
            serializable: self.serializable,
            keys_only: self.keys_only,
            count_only: self.count_only,
            min_mod_revision: self.min_mod_revision,
            max_mod_revision: self.max_mod_revision,
            min_create_revision: self.min_create_revision,
            max_create_revision: self.max_create_revision,
        }
    }
}

/// Options of [`Kv::put`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    lease: i64,
    prev_kv: bool,
    ignore_value: bool,
    ignore_lease: bool,
}

impl PutOptions {
    /// No lease, no previous value.
    pub fn new() -> Self {
        Self::default()
    }
    /// Attach the key to lease `id`.
    pub fn with_lease(mut self, id: i64) -> Self {
        self.lease = id;
        self
    }
    /// Return the previous key-value.
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }
    /// Keep the current value (only the lease changes).
    pub fn with_ignore_value(mut self) -> Self {
        self.ignore_value = true;
        self
    }
    /// Keep the current lease (only the value changes).
    pub fn with_ignore_lease(mut self) -> Self {
        self.ignore_lease = true;
        self
    }
    /// The put request for `key` and `value` with these options.
    pub fn into_request(self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> PutRequest {
        PutRequest {
            key: key.into(),
            value: value.into(),
            lease: self.lease,
            prev_kv: self.prev_kv,
            ignore_value: self.ignore_value,
            ignore_lease: self.ignore_lease,
        }
    }
}

/// Options of [`Kv::delete`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    range: KeyRange,
    prev_kv: bool,
}

impl DeleteOptions {
    /// Just the key, without previous values.
    pub fn new() -> Self {
        Self::default()
    }
    key_range_builders!();
    /// Return the deleted key-values.
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }
    /// The delete request for `key` with these options.
    pub fn into_request(self, key: impl Into<Vec<u8>>) -> DeleteRangeRequest {
        let (key, range_end) = self.range.bounds(key.into());
        DeleteRangeRequest {
            key,
            range_end,
            prev_kv: self.prev_kv,
        }
    }
}

/// The KV service of a [`Client`].
#[derive(Debug, Clone)]
pub struct Kv {
    client: Client,
}

impl Client {
    /// The KV service.
    pub fn kv(&self) -> Kv {
        Kv {
            client: self.clone(),
        }
    }
}

impl Kv {
    /// Reads `key` (or a range, per `options`). Retried on unavailability.
    pub async fn get(&self, key: impl Into<Vec<u8>>, options: GetOptions) -> Result<RangeResponse> {
        self.range(options.into_request(key)).await
    }

    /// Sends a prepared range request. Retried on unavailability.
    pub async fn range(&self, request: RangeRequest) -> Result<RangeResponse> {
        call!(self.client, Retry::Safe, request, KvClient::range)
    }

    /// Writes `value` at `key`. Sent again only if it surely never reached a server.
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        options: PutOptions,
    ) -> Result<PutResponse> {
        self.put_request(options.into_request(key, value)).await
    }

    /// Sends a prepared put request. Sent again only if it surely never reached a server.
    pub async fn put_request(&self, request: PutRequest) -> Result<PutResponse> {
        call!(self.client, Retry::OnlyIfNeverSent, request, KvClient::put)
    }

    /// Deletes `key` (or a range, per `options`). Sent again only if it surely never
    /// reached a server.
    pub async fn delete(
        &self,
        key: impl Into<Vec<u8>>,
        options: DeleteOptions,
    ) -> Result<DeleteRangeResponse> {
        self.delete_range(options.into_request(key)).await
    }

    /// Sends a prepared delete request. Sent again only if it surely never reached a server.
    pub async fn delete_range(&self, request: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        call!(
            self.client,
            Retry::OnlyIfNeverSent,
            request,
            KvClient::delete_range
        )
    }

    /// Runs a transaction. A read-only one is retried like a get; one that writes is sent
    /// again only if it surely never reached a server.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        let read_only = txn.is_read_only();
        self.txn_request(txn.into_request(), read_only).await
    }

    /// Sends a prepared txn request, retried like a get if `read_only`.
    pub(crate) async fn txn_request(
        &self,
        request: TxnRequest,
        read_only: bool,
    ) -> Result<TxnResponse> {
        let retry = if read_only {
            Retry::Safe
        } else {
            Retry::OnlyIfNeverSent
        };
        call!(self.client, retry, request, KvClient::txn)
    }

    /// Compacts the history up to `revision`; `physical` waits until the space is freed.
    pub async fn compact(&self, revision: i64, physical: bool) -> Result<CompactionResponse> {
        let request = CompactionRequest { revision, physical };
        call!(
            self.client,
            Retry::OnlyIfNeverSent,
            request,
            KvClient::compact
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_below_0xff() {
        assert_eq!(prefix_end(b"abc"), b"abd");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }

    #[test]
    fn ranges_become_etcd_bounds() {
        assert_eq!(
            KeyRange::Single.bounds(b"k".to_vec()),
            (b"k".to_vec(), vec![])
        );
        assert_eq!(KeyRange::Prefix.bounds(vec![]), (vec![0], vec![0]));
        assert_eq!(
            KeyRange::FromKey.bounds(b"k".to_vec()),
            (b"k".to_vec(), vec![0])
        );
        assert_eq!(
            KeyRange::End(b"z".to_vec()).bounds(b"a".to_vec()),
            (b"a".to_vec(), b"z".to_vec())
        );
    }

    #[test]
    fn get_options_fill_every_field() {
        let request = GetOptions::new()
            .with_prefix()
            .with_limit(3)
            .with_revision(7)
            .with_sort(SortBy::ModRevision, SortOrderBy::Descend)
            .with_serializable()
            .with_keys_only()
            .with_count_only()
            .with_min_mod_revision(1)
            .with_max_mod_revision(2)
            .with_min_create_revision(3)
            .with_max_create_revision(4)
            .into_request("p/");
        assert_eq!(request.key, b"p/");
        assert_eq!(request.range_end, b"p0");
        assert_eq!(request.limit, 3);
        assert_eq!(request.revision, 7);
        assert_eq!(request.sort_target, SortTarget::Mod as i32);
        assert_eq!(request.sort_order, SortOrder::Descend as i32);
        assert!(request.serializable && request.keys_only && request.count_only);
        assert_eq!(
            (
                request.min_mod_revision,
                request.max_mod_revision,
                request.min_create_revision,
                request.max_create_revision
            ),
            (1, 2, 3, 4)
        );
    }

    #[test]
    fn put_and_delete_options() {
        let put = PutOptions::new()
            .with_lease(5)
            .with_prev_kv()
            .with_ignore_value()
            .with_ignore_lease()
            .into_request("k", "v");
        assert_eq!(
            (put.lease, put.prev_kv, put.ignore_value, put.ignore_lease),
            (5, true, true, true)
        );
        let delete = DeleteOptions::new()
            .with_from_key()
            .with_prev_kv()
            .into_request("k");
        assert_eq!(delete.range_end, vec![0]);
        assert!(delete.prev_kv);
    }
}
