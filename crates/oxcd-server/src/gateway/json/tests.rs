//! Golden texts captured from etcd 3.4.23's gateway (curl against a real etcd).

use oxcd_proto::etcdserverpb::{
    LeaseGrantResponse, LeaseTimeToLiveResponse, RangeRequest, RangeResponse, ResponseHeader,
    WatchRequest, WatchResponse,
};
use oxcd_proto::mvccpb::{event::EventType, Event, KeyValue};

use super::*;

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        cluster_id: 16186745900280095649,
        member_id: 5238870645652388801,
        revision,
        raft_term: 2,
    })
}

fn text<T: Named>(msg: &T) -> String {
    String::from_utf8(to_json(msg)).unwrap()
}

#[test]
fn range_response_matches_etcd() {
    let resp = RangeResponse {
        header: header(2),
        kvs: vec![KeyValue {
            key: b"foo".to_vec(),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            value: b"bar".to_vec(),
            lease: 0,
        }],
        more: false,
        count: 1,
    };
    assert_eq!(
        text(&resp),
        r#"{"header":{"cluster_id":"16186745900280095649","member_id":"5238870645652388801","revision":"2","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}"#
    );
}

#[test]
fn zero_ttl_is_left_out_as_patroni_expects() {
    let resp = LeaseTimeToLiveResponse {
        header: header(4),
        id: 123,
        ttl: -1,
        ..Default::default()
    };
    assert_eq!(
        text(&resp),
        r#"{"header":{"cluster_id":"16186745900280095649","member_id":"5238870645652388801","revision":"4","raft_term":"2"},"ID":"123","TTL":"-1"}"#
    );
    let grant = LeaseGrantResponse {
        header: header(2),
        id: 8917587096350504456,
        ttl: 60,
        error: String::new(),
    };
    assert!(text(&grant).ends_with(r#""ID":"8917587096350504456","TTL":"60"}"#));
    let expired = LeaseTimeToLiveResponse {
        id: 5,
        ..Default::default()
    };
    assert_eq!(text(&expired), r#"{"ID":"5"}"#);
}

#[test]
fn delete_event_names_its_type_and_put_is_left_out() {
    let resp = WatchResponse {
        header: header(4),
        events: vec![
            Event {
                r#type: EventType::Delete as i32,
                kv: Some(KeyValue {
                    key: b"foo".to_vec(),
                    mod_revision: 4,
                    ..Default::default()
                }),
                prev_kv: None,
            },
            Event::default(),
        ],
        ..Default::default()
    };
    assert!(text(&resp)
        .ends_with(r#""events":[{"type":"DELETE","kv":{"key":"Zm9v","mod_revision":"4"}},{}]}"#));
}

#[test]
fn input_takes_proto_and_camel_names_strings_and_numbers() {
    let r: RangeRequest =
        from_json(br#"{"key":"YQ==","rangeEnd":"AA==","sort_order":"DESCEND","limit":"3"}"#)
            .unwrap();
    assert_eq!(r.key, b"a");
    assert_eq!(r.range_end, b"\0");
    assert_eq!(r.sort_order, 2);
    assert_eq!(r.limit, 3);
    let r: RangeRequest = from_json(br#"{"key":"YQ==","sortOrder":1,"limit":4,"kex":1}"#).unwrap();
    assert_eq!((r.sort_order, r.limit), (1, 4));
    let w: WatchRequest =
        from_json(br#"{"create_request":{"key":"Zm9v","prev_kv":true}}"#).unwrap();
    assert!(w.request_union.is_some());
}

#[test]
fn empty_and_null_bodies_are_the_empty_request() {
    assert_eq!(
        from_json::<RangeRequest>(b"").unwrap(),
        RangeRequest::default()
    );
    assert_eq!(
        from_json::<RangeRequest>(b" null ").unwrap(),
        RangeRequest::default()
    );
}

#[test]
fn bad_bodies_are_refused() {
    assert!(matches!(
        from_json::<RangeRequest>(br#"{"key":"#),
        Err(JsonError::Eof)
    ));
    assert!(from_json::<RangeRequest>(br#"{"key":5}"#).is_err());
    assert_eq!(
        from_json::<RangeRequest>(br#"{"key":"@@"}"#)
            .unwrap_err()
            .to_string(),
        "illegal base64 data at input byte 0"
    );
    assert!(from_json::<RangeRequest>(br#"[1]"#).is_err());
    assert!(from_json::<RangeRequest>(br#"{"limit":"abc"}"#).is_err());
}
