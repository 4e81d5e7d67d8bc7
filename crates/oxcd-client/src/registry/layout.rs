//! The two key layouts a service instance can be stored in, and how values are read back.
//!
//! * etcd's `naming/endpoints` (Go `go.etcd.io/etcd/client/v3/naming/endpoints`): key
//!   `<service>/<instance>`, value the JSON of its `internal.Update`:
//!   `{"Op":0,"Addr":"<address>","Metadata":<any JSON>}`; gRPC-Go's etcd resolver reads it.
//! * go-zero's `core/discov`: key `<service>/<lease id in decimal>`, value the bare address.
//!
//! Discovery reads both: a value that is etcd's JSON is an endpoint, any other value is a
//! go-zero address.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a registration is stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum KeyLayout {
    /// etcd's `naming/endpoints`: `<service>/<instance>` = `{"Op":0,"Addr":...,"Metadata":...}`.
    #[default]
    EtcdEndpoints,
    /// go-zero's discovery: `<service>/<lease id>` = address (metadata is not stored).
    GoZero,
}

/// etcd's `endpoints/internal.Update`, field names as Go's `encoding/json` writes them.
#[derive(Debug, Serialize, Deserialize)]
struct EtcdUpdate {
    #[serde(rename = "Op")]
    op: u8,
    #[serde(rename = "Addr")]
    addr: String,
    #[serde(rename = "Metadata", default)]
    metadata: serde_json::Value,
}

/// etcd's `Add` operation.
const OP_ADD: u8 = 0;

/// The key prefix of every instance of `service`.
pub(crate) fn service_prefix(service: &str) -> String {
    format!("{service}/")
}

/// The key of one instance: `<service>/<instance or lease id>`.
pub(crate) fn instance_key(
    service: &str,
    layout: KeyLayout,
    instance: &str,
    lease_id: i64,
) -> String {
    match layout {
        KeyLayout::EtcdEndpoints => format!("{service}/{instance}"),
        KeyLayout::GoZero if instance.is_empty() => format!("{service}/{lease_id}"),
        KeyLayout::GoZero => format!("{service}/{instance}"),
    }
}

/// The stored value of an instance at `address` with `metadata`.
pub(crate) fn instance_value(
    layout: KeyLayout,
    address: &str,
    metadata: &BTreeMap<String, String>,
) -> Vec<u8> {
    match layout {
        KeyLayout::EtcdEndpoints => {
            let metadata = if metadata.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::Value::Object(
                    metadata
                        .iter()
                        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                        .collect(),
                )
            };
            let update = EtcdUpdate {
                op: OP_ADD,
                addr: address.to_string(),
                metadata,
            };
            // Serializing a struct of strings and JSON values cannot fail.
            serde_json::to_vec(&update).unwrap_or_default()
        }
        KeyLayout::GoZero => address.as_bytes().to_vec(),
    }
}

/// A discovered instance of a service.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// The instance's key (`<service>/...`), which identifies it.
    pub key: String,
    /// Where the instance listens (`host:port`, as registered).
    pub address: String,
    /// etcd layout's metadata (`Null` when none, and for go-zero's layout).
    pub metadata: serde_json::Value,
    /// The layout it was found in.
    pub layout: KeyLayout,
}

/// Reads a stored instance; `None` for values that name no address (etcd's JSON with a
/// delete op or an empty address, or an empty value).
pub(crate) fn parse_instance(key: &[u8], value: &[u8]) -> Option<Instance> {
    let key = String::from_utf8_lossy(key).into_owned();
    if let Ok(update) = serde_json::from_slice::<EtcdUpdate>(value) {
        if update.op != OP_ADD || update.addr.is_empty() {
            return None;
        }
        return Some(Instance {
            key,
            address: update.addr,
            metadata: update.metadata,
            layout: KeyLayout::EtcdEndpoints,
        });
    }
    let address = std::str::from_utf8(value).ok()?.trim();
    if address.is_empty() {
        return None;
    }
    Some(Instance {
        key,
        address: address.to_string(),
        metadata: serde_json::Value::Null,
        layout: KeyLayout::GoZero,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_layout_writes_gos_json() {
        let none = instance_value(KeyLayout::EtcdEndpoints, "10.0.0.1:80", &BTreeMap::new());
        assert_eq!(none, br#"{"Op":0,"Addr":"10.0.0.1:80","Metadata":null}"#);
        let meta = BTreeMap::from([("zone".to_string(), "a".to_string())]);
        let some = instance_value(KeyLayout::EtcdEndpoints, "10.0.0.1:80", &meta);
        assert_eq!(
            some,
            br#"{"Op":0,"Addr":"10.0.0.1:80","Metadata":{"zone":"a"}}"#
        );
        assert_eq!(
            instance_key("svc", KeyLayout::EtcdEndpoints, "10.0.0.1:80", 7),
            "svc/10.0.0.1:80"
        );
    }

    #[test]
    fn go_zero_layout_keys_by_lease_id_and_stores_the_address() {
        assert_eq!(
            instance_key("rpc.user", KeyLayout::GoZero, "", 7587864068),
            "rpc.user/7587864068"
        );
        assert_eq!(
            instance_value(KeyLayout::GoZero, "10.0.0.1:80", &BTreeMap::new()),
            b"10.0.0.1:80"
        );
    }

    #[test]
    fn both_layouts_parse_back() {
        let etcd =
            parse_instance(b"svc/a", br#"{"Op":0,"Addr":"h:1","Metadata":{"w":2}}"#).unwrap();
        assert_eq!(
            (etcd.address.as_str(), etcd.layout),
            ("h:1", KeyLayout::EtcdEndpoints)
        );
        assert_eq!(etcd.metadata["w"], 2);
        // Go's older naming wrote no Metadata field at all.
        let bare = parse_instance(b"svc/b", br#"{"Op":0,"Addr":"h:2"}"#).unwrap();
        assert_eq!(bare.metadata, serde_json::Value::Null);
        let zero = parse_instance(b"svc/123", b"h:3").unwrap();
        assert_eq!(
            (zero.address.as_str(), zero.layout),
            ("h:3", KeyLayout::GoZero)
        );
        assert!(parse_instance(b"svc/c", br#"{"Op":1,"Addr":"h:4"}"#).is_none());
        assert!(parse_instance(b"svc/d", b"").is_none());
    }
}
