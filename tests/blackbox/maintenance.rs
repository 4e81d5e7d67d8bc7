//! The Maintenance API over the wire: Defragment.

use oxcd_proto::etcdserverpb::{
    CompactionRequest, DefragmentRequest, PutRequest, RangeRequest, StatusRequest,
};

use crate::harness::Server;

const KEYS: usize = 2000;

/// Puts every key once with `value`, 8 writers at a time.
async fn put_all(s: &Server, value: &[u8]) {
    let mut tasks = Vec::new();
    for w in 0..8 {
        let mut kv = s.kv().await;
        let value = value.to_vec();
        tasks.push(tokio::spawn(async move {
            for i in (w..KEYS).step_by(8) {
                kv.put(PutRequest {
                    key: format!("defrag/{i:05}").into_bytes(),
                    value: value.clone(),
                    ..Default::default()
                })
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Every key under `defrag/` and the revision read at.
async fn all(s: &Server) -> (i64, Vec<oxcd_proto::mvccpb::KeyValue>) {
    let r = s
        .kv()
        .await
        .range(RangeRequest {
            key: b"defrag/".to_vec(),
            range_end: b"defrag0".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (r.header.unwrap().revision, r.kvs)
}

#[tokio::test]
async fn defragment_after_compaction_shrinks_the_backend_and_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    put_all(&s, &[b'a'; 1024]).await;
    put_all(&s, &[b'b'; 1024]).await;
    let (rev, before) = all(&s).await;
    assert_eq!(before.len(), KEYS);
    s.kv()
        .await
        .compact(CompactionRequest {
            revision: rev,
            physical: true,
        })
        .await
        .unwrap();
    let mut m = s.maintenance().await;
    let st = m.status(StatusRequest {}).await.unwrap().into_inner();
    let db_file = dir.path().join("member/snap/db");
    assert_eq!(
        st.db_size as u64,
        std::fs::metadata(&db_file).unwrap().len()
    );
    assert!(st.db_size_in_use <= st.db_size);

    // Reads go on while the backend is copied.
    let reader = {
        let mut kv = s.kv().await;
        tokio::spawn(async move {
            for _ in 0..50 {
                let r = kv
                    .range(RangeRequest {
                        key: b"defrag/00007".to_vec(),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(r.kvs[0].value, vec![b'b'; 1024]);
            }
        })
    };
    let r = m
        .defragment(DefragmentRequest {})
        .await
        .unwrap()
        .into_inner();
    // etcd 3.4 answers with an empty response, without a header.
    assert_eq!(r.header, None);
    reader.await.unwrap();

    let after = m.status(StatusRequest {}).await.unwrap().into_inner();
    assert!(
        after.db_size < st.db_size * 3 / 4,
        "db size {} -> {}",
        st.db_size,
        after.db_size
    );
    assert_eq!(
        after.db_size as u64,
        std::fs::metadata(&db_file).unwrap().len()
    );
    assert!(after.db_size_in_use <= after.db_size);
    assert_eq!(after.header.unwrap().revision, rev);
    assert_eq!(all(&s).await, (rev, before.clone()));

    // Writes go on in the new file and survive a restart.
    s.kv()
        .await
        .put(PutRequest {
            key: b"defrag/new".to_vec(),
            value: b"n".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (port, peer) = (s.port, s.peer_port);
    assert!(s.terminate().success());
    let s = Server::start_with(dir.path(), port, peer, &[]);
    let (rev2, kvs) = all(&s).await;
    assert_eq!(rev2, rev + 1);
    assert_eq!(kvs.len(), KEYS + 1);
    assert_eq!(&kvs[..KEYS], &before[..]);
    assert!(!dir.path().join("member/snap/db.defrag").exists());
}

#[tokio::test]
async fn hash_kv_follows_the_key_space_and_move_leader_checks_its_target() {
    use oxcd_proto::etcdserverpb::{HashKvRequest, MoveLeaderRequest};
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let mut m = s.maintenance().await;
    let mut kv = s.kv().await;
    let put = |k: &str| PutRequest {
        key: k.as_bytes().to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    kv.put(put("a")).await.unwrap();
    let first = m
        .hash_kv(HashKvRequest { revision: 0 })
        .await
        .unwrap()
        .into_inner();
    let again = m
        .hash_kv(HashKvRequest { revision: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.hash, again.hash);
    assert_eq!(first.hash_revision, 2);
    kv.put(put("b")).await.unwrap();
    let later = m
        .hash_kv(HashKvRequest { revision: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(later.hash, first.hash);
    let at_2 = m
        .hash_kv(HashKvRequest { revision: 2 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        at_2.hash, first.hash,
        "a past revision hashes as it did then"
    );
    let future = m.hash_kv(HashKvRequest { revision: 99 }).await.unwrap_err();
    assert_eq!(
        future.message(),
        "etcdserver: mvcc: required revision is a future revision"
    );

    let bad = m
        .move_leader(MoveLeaderRequest { target_id: 12345 })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::FailedPrecondition);
    assert_eq!(bad.message(), "etcdserver: bad leader transferee");
    let me = m.status(StatusRequest {}).await.unwrap().into_inner();
    m.move_leader(MoveLeaderRequest {
        target_id: me.header.unwrap().member_id,
    })
    .await
    .unwrap();
}
