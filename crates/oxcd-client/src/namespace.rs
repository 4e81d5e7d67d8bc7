//! A key-prefixed view of the KV and Watch services (etcd's `namespace` package): keys are
//! given and returned without the prefix, and nothing outside it can be reached.

use futures::{Stream, StreamExt};
use oxcd_proto::etcdserverpb::request_op::Request as OpRequest;
use oxcd_proto::etcdserverpb::response_op::Response as OpResponse;
use oxcd_proto::etcdserverpb::{
    DeleteRangeResponse, PutResponse, RangeResponse, TxnRequest, TxnResponse, WatchResponse,
};
use oxcd_proto::mvccpb::KeyValue;

use crate::client::Client;
use crate::error::Result;
use crate::kv::{prefix_end, DeleteOptions, GetOptions, PutOptions};
use crate::txn::Txn;
use crate::watch::WatchOptions;

/// The KV and Watch services under a key prefix.
///
/// ```no_run
/// # async fn demo(client: oxcd_client::Client) -> oxcd_client::Result<()> {
/// use oxcd_client::{GetOptions, PutOptions};
/// let app = client.namespaced("apps/billing/");
/// app.put("config", "v1", PutOptions::new()).await?; // writes "apps/billing/config"
/// let all = app.get("", GetOptions::new().with_prefix()).await?; // keys come back as "config"
/// # let _ = all; Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Namespace {
    client: Client,
    prefix: Vec<u8>,
}

impl Client {
    /// A view of this client where every key lives under `prefix`.
    pub fn namespaced(&self, prefix: impl Into<Vec<u8>>) -> Namespace {
        Namespace {
            client: self.clone(),
            prefix: prefix.into(),
        }
    }
}

impl Namespace {
    /// The prefix.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// [`Kv::get`](crate::Kv::get) inside the namespace.
    pub async fn get(&self, key: impl Into<Vec<u8>>, options: GetOptions) -> Result<RangeResponse> {
        let mut request = options.into_request(key);
        (request.key, request.range_end) = self.bounds(&request.key, &request.range_end);
        let mut response = self.client.kv().range(request).await?;
        self.strip_range(&mut response);
        Ok(response)
    }

    /// [`Kv::put`](crate::Kv::put) inside the namespace.
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        options: PutOptions,
    ) -> Result<PutResponse> {
        let key = self.key(&key.into());
        let mut response = self.client.kv().put(key, value, options).await?;
        self.strip_kv_option(&mut response.prev_kv);
        Ok(response)
    }

    /// [`Kv::delete`](crate::Kv::delete) inside the namespace.
    pub async fn delete(
        &self,
        key: impl Into<Vec<u8>>,
        options: DeleteOptions,
    ) -> Result<DeleteRangeResponse> {
        let mut request = options.into_request(key);
        (request.key, request.range_end) = self.bounds(&request.key, &request.range_end);
        let mut response = self.client.kv().delete_range(request).await?;
        response
            .prev_kvs
            .iter_mut()
            .for_each(|kv| self.strip_kv(kv));
        Ok(response)
    }

    /// [`Kv::txn`](crate::Kv::txn) inside the namespace (compares and ops, nested ones too).
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        let read_only = txn.is_read_only();
        let mut request = txn.into_request();
        self.prefix_txn(&mut request);
        let mut response = self.client.kv().txn_request(request, read_only).await?;
        self.strip_txn(&mut response);
        Ok(response)
    }

    /// [`Watch::watch`](crate::Watch::watch) inside the namespace; event keys come without
    /// the prefix.
    pub async fn watch(
        &self,
        key: impl Into<Vec<u8>>,
        options: WatchOptions,
    ) -> Result<impl Stream<Item = Result<WatchResponse>> + Send + Unpin + 'static> {
        let key = key.into();
        let (key, range_end) = {
            let (k, e) = options.range().bounds(key);
            self.bounds(&k, &e)
        };
        let options = options.with_explicit_end(range_end);
        let stream = self.client.watch().watch(key, options).await?;
        let view = self.clone();
        Ok(stream.map(move |item| {
            item.map(|mut response| {
                for event in &mut response.events {
                    view.strip_kv_option(&mut event.kv);
                    view.strip_kv_option(&mut event.prev_kv);
                }
                response
            })
        }))
    }

    fn key(&self, key: &[u8]) -> Vec<u8> {
        [self.prefix.as_slice(), key].concat()
    }

    /// etcd's `prefixInterval`: the prefixed key and range end ("to the end" = the
    /// prefix's end).
    fn bounds(&self, key: &[u8], end: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let key = if key == [0] && end == [0] {
            self.prefix.clone()
        } else {
            self.key(key)
        };
        let end = match end {
            [] => Vec::new(),
            [0] => prefix_end(&self.prefix),
            end => self.key(end),
        };
        (key, end)
    }

    fn strip_kv(&self, kv: &mut KeyValue) {
        if kv.key.starts_with(&self.prefix) {
            kv.key.drain(..self.prefix.len());
        }
    }

    fn strip_kv_option(&self, kv: &mut Option<KeyValue>) {
        if let Some(kv) = kv {
            self.strip_kv(kv);
        }
    }

    fn strip_range(&self, response: &mut RangeResponse) {
        response.kvs.iter_mut().for_each(|kv| self.strip_kv(kv));
    }

    fn prefix_txn(&self, request: &mut TxnRequest) {
        for compare in &mut request.compare {
            (compare.key, compare.range_end) = self.bounds(&compare.key, &compare.range_end);
        }
        for op in request.success.iter_mut().chain(request.failure.iter_mut()) {
            match &mut op.request {
                Some(OpRequest::RequestRange(r)) => {
                    (r.key, r.range_end) = self.bounds(&r.key, &r.range_end)
                }
                Some(OpRequest::RequestPut(r)) => r.key = self.key(&r.key),
                Some(OpRequest::RequestDeleteRange(r)) => {
                    (r.key, r.range_end) = self.bounds(&r.key, &r.range_end)
                }
                Some(OpRequest::RequestTxn(inner)) => self.prefix_txn(inner),
                None => {}
            }
        }
    }

    fn strip_txn(&self, response: &mut TxnResponse) {
        for op in &mut response.responses {
            match &mut op.response {
                Some(OpResponse::ResponseRange(r)) => self.strip_range(r),
                Some(OpResponse::ResponsePut(r)) => self.strip_kv_option(&mut r.prev_kv),
                Some(OpResponse::ResponseDeleteRange(r)) => {
                    r.prev_kvs.iter_mut().for_each(|kv| self.strip_kv(kv))
                }
                Some(OpResponse::ResponseTxn(inner)) => self.strip_txn(inner),
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::{Compare, CompareOp, TxnOp};

    async fn view() -> Namespace {
        let client = Client::lazy_for_tests();
        client.namespaced("ns/")
    }

    #[tokio::test]
    async fn bounds_follow_etcds_prefix_interval() {
        let ns = view().await;
        assert_eq!(ns.bounds(b"k", b""), (b"ns/k".to_vec(), vec![]));
        assert_eq!(ns.bounds(b"a", b"b"), (b"ns/a".to_vec(), b"ns/b".to_vec()));
        assert_eq!(ns.bounds(b"a", b"\0"), (b"ns/a".to_vec(), b"ns0".to_vec()));
        // Everything in the namespace.
        assert_eq!(ns.bounds(b"\0", b"\0"), (b"ns/".to_vec(), b"ns0".to_vec()));
    }

    #[tokio::test]
    async fn txns_are_prefixed_all_the_way_down() {
        let ns = view().await;
        let mut request = Txn::new()
            .when([Compare::version("c", CompareOp::Equal, 0)])
            .and_then([TxnOp::txn(Txn::new().and_then([TxnOp::put(
                "p",
                "v",
                PutOptions::new(),
            )]))])
            .or_else([TxnOp::get("g", GetOptions::new().with_prefix())])
            .into_request();
        ns.prefix_txn(&mut request);
        assert_eq!(request.compare[0].key, b"ns/c");
        let Some(OpRequest::RequestTxn(inner)) = &request.success[0].request else {
            panic!("nested txn")
        };
        let Some(OpRequest::RequestPut(put)) = &inner.success[0].request else {
            panic!("put")
        };
        assert_eq!(put.key, b"ns/p");
        let Some(OpRequest::RequestRange(get)) = &request.failure[0].request else {
            panic!("get")
        };
        assert_eq!(
            (get.key.as_slice(), get.range_end.as_slice()),
            (&b"ns/g"[..], &b"ns/h"[..])
        );
    }
}
