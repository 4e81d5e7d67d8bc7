//! Transactions: compares, then-ops and else-ops (etcd's `If(...).Then(...).Else(...)`).

use oxcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxcd_proto::etcdserverpb::request_op::Request as OpRequest;
use oxcd_proto::etcdserverpb::{Compare as ProtoCompare, RequestOp, TxnRequest};

use crate::kv::{prefix_end, DeleteOptions, GetOptions, PutOptions};

/// How a compare relates the key's current field to the operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `>`
    Greater,
    /// `<`
    Less,
}

/// One condition of a [`Txn`].
///
/// ```
/// use oxcd_client::{Compare, CompareOp};
/// // The key does not exist yet.
/// let absent = Compare::create_revision("lock", CompareOp::Equal, 0);
/// // The key holds "v1".
/// let holds = Compare::value("config", CompareOp::Equal, "v1");
/// # let _ = (absent, holds);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Compare(ProtoCompare);

impl Compare {
    fn new(key: impl Into<Vec<u8>>, op: CompareOp, target: TargetUnion) -> Compare {
        let target_kind = match target {
            TargetUnion::Version(_) => CompareTarget::Version,
            TargetUnion::CreateRevision(_) => CompareTarget::Create,
            TargetUnion::ModRevision(_) => CompareTarget::Mod,
            TargetUnion::Value(_) => CompareTarget::Value,
            TargetUnion::Lease(_) => CompareTarget::Lease,
        };
        let result = match op {
            CompareOp::Equal => CompareResult::Equal,
            CompareOp::NotEqual => CompareResult::NotEqual,
            CompareOp::Greater => CompareResult::Greater,
            CompareOp::Less => CompareResult::Less,
        };
        Compare(ProtoCompare {
            result: result as i32,
            target: target_kind as i32,
            key: key.into(),
            target_union: Some(target),
            range_end: Vec::new(),
        })
    }

    /// Compares the key's version (0 = the key does not exist).
    pub fn version(key: impl Into<Vec<u8>>, op: CompareOp, version: i64) -> Compare {
        Compare::new(key, op, TargetUnion::Version(version))
    }
    /// Compares the key's create revision (0 = the key does not exist).
    pub fn create_revision(key: impl Into<Vec<u8>>, op: CompareOp, revision: i64) -> Compare {
        Compare::new(key, op, TargetUnion::CreateRevision(revision))
    }
    /// Compares the key's last modification revision.
    pub fn mod_revision(key: impl Into<Vec<u8>>, op: CompareOp, revision: i64) -> Compare {
        Compare::new(key, op, TargetUnion::ModRevision(revision))
    }
    /// Compares the key's value.
    pub fn value(key: impl Into<Vec<u8>>, op: CompareOp, value: impl Into<Vec<u8>>) -> Compare {
        Compare::new(key, op, TargetUnion::Value(value.into()))
    }
    /// Compares the key's lease id.
    pub fn lease(key: impl Into<Vec<u8>>, op: CompareOp, lease: i64) -> Compare {
        Compare::new(key, op, TargetUnion::Lease(lease))
    }
    /// Applies the comparison to every key with the key as prefix.
    pub fn with_prefix(mut self) -> Compare {
        self.0.range_end = prefix_end(&self.0.key);
        self
    }
    /// Applies the comparison to every key from the key up to `end`.
    pub fn with_range(mut self, end: impl Into<Vec<u8>>) -> Compare {
        self.0.range_end = end.into();
        self
    }
    /// The wire form.
    pub fn into_proto(self) -> ProtoCompare {
        self.0
    }
}

/// One operation of a [`Txn`].
#[derive(Debug, Clone, PartialEq)]
pub struct TxnOp(RequestOp);

impl TxnOp {
    /// A get.
    pub fn get(key: impl Into<Vec<u8>>, options: GetOptions) -> TxnOp {
        TxnOp(RequestOp {
            request: Some(OpRequest::RequestRange(options.into_request(key))),
        })
    }
    /// A put.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>, options: PutOptions) -> TxnOp {
        TxnOp(RequestOp {
            request: Some(OpRequest::RequestPut(options.into_request(key, value))),
        })
    }
    /// A delete.
    pub fn delete(key: impl Into<Vec<u8>>, options: DeleteOptions) -> TxnOp {
        TxnOp(RequestOp {
            request: Some(OpRequest::RequestDeleteRange(options.into_request(key))),
        })
    }
    /// A nested transaction.
    pub fn txn(txn: Txn) -> TxnOp {
        TxnOp(RequestOp {
            request: Some(OpRequest::RequestTxn(txn.into_request())),
        })
    }
    /// The wire form.
    pub fn into_proto(self) -> RequestOp {
        self.0
    }
}

/// A transaction: if every compare holds, the `then` ops run, otherwise the `else` ops.
///
/// ```
/// use oxcd_client::{Compare, CompareOp, PutOptions, GetOptions, Txn, TxnOp};
/// let txn = Txn::new()
///     .when([Compare::version("k", CompareOp::Equal, 0)])
///     .and_then([TxnOp::put("k", "first", PutOptions::new())])
///     .or_else([TxnOp::get("k", GetOptions::new())]);
/// # let _ = txn;
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Txn {
    request: TxnRequest,
}

impl Txn {
    /// An empty transaction.
    pub fn new() -> Txn {
        Txn::default()
    }
    /// Adds conditions (all must hold).
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Txn {
        self.request
            .compare
            .extend(compares.into_iter().map(Compare::into_proto));
        self
    }
    /// Adds operations run when the conditions hold.
    pub fn and_then(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Txn {
        self.request
            .success
            .extend(ops.into_iter().map(TxnOp::into_proto));
        self
    }
    /// Adds operations run when a condition fails.
    pub fn or_else(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Txn {
        self.request
            .failure
            .extend(ops.into_iter().map(TxnOp::into_proto));
        self
    }
    /// Whether no operation (nested ones included) writes.
    pub fn is_read_only(&self) -> bool {
        fn reads_only(request: &TxnRequest) -> bool {
            request
                .success
                .iter()
                .chain(&request.failure)
                .all(|op| match &op.request {
                    Some(OpRequest::RequestRange(_)) | None => true,
                    Some(OpRequest::RequestTxn(inner)) => reads_only(inner),
                    Some(_) => false,
                })
        }
        reads_only(&self.request)
    }
    /// The wire form.
    pub fn into_request(self) -> TxnRequest {
        self.request
    }
}

/// A transaction prepared in its wire form (a load generator's, a proxy's).
impl From<TxnRequest> for Txn {
    fn from(request: TxnRequest) -> Txn {
        Txn { request }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_compares_and_branches() {
        let txn = Txn::new()
            .when([
                Compare::value("a", CompareOp::NotEqual, "x"),
                Compare::mod_revision("p/", CompareOp::Less, 9).with_prefix(),
            ])
            .and_then([TxnOp::put("a", "x", PutOptions::new())])
            .or_else([TxnOp::delete("a", DeleteOptions::new())]);
        assert!(!txn.is_read_only());
        let request = txn.into_request();
        assert_eq!(request.compare.len(), 2);
        assert_eq!(request.compare[0].result, CompareResult::NotEqual as i32);
        assert_eq!(request.compare[0].target, CompareTarget::Value as i32);
        assert_eq!(request.compare[1].target, CompareTarget::Mod as i32);
        assert_eq!(request.compare[1].range_end, b"p0");
        assert_eq!(request.success.len(), 1);
        assert_eq!(request.failure.len(), 1);
    }

    #[test]
    fn read_only_looks_into_nested_txns() {
        let reads = Txn::new().and_then([TxnOp::get("a", GetOptions::new())]);
        assert!(reads.is_read_only());
        let nested_write = Txn::new().or_else([TxnOp::txn(Txn::new().and_then([TxnOp::put(
            "a",
            "b",
            PutOptions::new(),
        )]))]);
        assert!(!nested_write.is_read_only());
    }
}
