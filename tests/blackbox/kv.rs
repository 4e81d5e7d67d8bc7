//! The KV API over the wire: results, headers and etcd's exact errors.

use oxcd_proto::etcdserverpb::{
    compare, request_op, response_op, CompactionRequest, Compare, DeleteRangeRequest, PutRequest,
    RangeRequest, RequestOp, StatusRequest, TxnRequest,
};
use tonic::Code;

use crate::harness::Server;

fn put(k: &str, v: &str) -> PutRequest {
    PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn put_get_delete_with_headers() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let mut kv = s.kv().await;
    let r = kv.put(put("foo", "bar")).await.unwrap().into_inner();
    let h = r.header.unwrap();
    assert_eq!(h.revision, 2, "first write gets revision 2, as in etcd");
    assert_ne!(h.cluster_id, 0);
    assert_ne!(h.member_id, 0);
    assert!(h.raft_term >= 1);

    let r = kv
        .range(RangeRequest {
            key: b"foo".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.count, 1);
    assert_eq!(r.kvs[0].value, b"bar");
    assert_eq!(r.kvs[0].create_revision, 2);
    assert_eq!(r.kvs[0].version, 1);
    assert_eq!(r.header.unwrap().revision, 2);

    let r = kv
        .delete_range(DeleteRangeRequest {
            key: b"foo".to_vec(),
            prev_kv: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.deleted, 1);
    assert_eq!(r.prev_kvs[0].value, b"bar");
    assert_eq!(r.header.unwrap().revision, 3);
}

#[tokio::test]
async fn etcd_errors_exact() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let mut kv = s.kv().await;

    let e = kv.put(put("", "v")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "etcdserver: key is not provided");

    let mut p = put("k", "v");
    p.lease = 1234;
    let e = kv.put(p).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(e.message(), "etcdserver: requested lease not found");

    let big = "x".repeat(1_600_000);
    let e = kv.put(put("big", &big)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "etcdserver: request is too large");

    let ops = (0..129)
        .map(|i| RequestOp {
            request: Some(request_op::Request::RequestPut(put(&format!("k{i}"), "v"))),
        })
        .collect();
    let e = kv
        .txn(TxnRequest {
            success: ops,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.message(),
        "etcdserver: too many operations in txn request"
    );

    let dup = vec![
        RequestOp {
            request: Some(request_op::Request::RequestPut(put("d", "1"))),
        },
        RequestOp {
            request: Some(request_op::Request::RequestPut(put("d", "2"))),
        },
    ];
    let e = kv
        .txn(TxnRequest {
            success: dup,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        e.message(),
        "etcdserver: duplicate key given in txn request"
    );

    for i in 0..5 {
        kv.put(put("c", &i.to_string())).await.unwrap();
    }
    kv.compact(CompactionRequest {
        revision: 4,
        physical: true,
    })
    .await
    .unwrap();
    let e = kv
        .range(RangeRequest {
            key: b"c".to_vec(),
            revision: 3,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange);
    assert_eq!(
        e.message(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    let e = kv
        .range(RangeRequest {
            key: b"c".to_vec(),
            revision: 1000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange);
    assert_eq!(
        e.message(),
        "etcdserver: mvcc: required revision is a future revision"
    );
    // Nothing above changed a key except the five puts.
    let r = kv
        .range(RangeRequest {
            key: b"\0".to_vec(),
            range_end: b"\0".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.count, 1);
    assert_eq!(r.header.unwrap().revision, 6);
}

#[tokio::test]
async fn txn_compare_and_swap() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let mut kv = s.kv().await;
    kv.put(put("lock", "free")).await.unwrap();
    let cas = |expect: &str, new: &str| TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Value as i32,
            key: b"lock".to_vec(),
            target_union: Some(compare::TargetUnion::Value(expect.into())),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(put("lock", new))),
        }],
        failure: vec![RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: b"lock".to_vec(),
                ..Default::default()
            })),
        }],
    };
    let r = kv.txn(cas("free", "held")).await.unwrap().into_inner();
    assert!(r.succeeded);
    assert_eq!(r.header.unwrap().revision, 3);
    let r = kv.txn(cas("free", "again")).await.unwrap().into_inner();
    assert!(!r.succeeded);
    match &r.responses[0].response {
        Some(response_op::Response::ResponseRange(rr)) => {
            assert_eq!(rr.kvs[0].value, b"held");
            assert_eq!(rr.header.as_ref().unwrap().revision, 3);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn status_and_http_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let mut m = s.maintenance().await;
    let st = m.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(st.leader, st.header.as_ref().unwrap().member_id);
    assert!(st.raft_index >= 1);
    assert!(st.db_size > 0);
    assert!(!st.version.is_empty());

    let body = http_get(s.port, "/health").await;
    assert!(body.contains("200 OK"), "{body}");
    assert!(body.contains(r#"{"health":"true","reason":""}"#), "{body}");
    let body = http_get(s.port, "/version").await;
    assert!(body.contains("\"etcdserver\""), "{body}");
}

/// A minimal HTTP/1.1 GET, returning the raw response.
async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).await.unwrap();
    out
}
