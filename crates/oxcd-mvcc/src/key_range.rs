//! etcd's `(key, range_end)` convention, decoded in one place.
//!
//! Every request that names keys (Range, DeleteRange, Watch, txn compares, permissions)
//! spells a key space the same way: an empty `range_end` is the single `key`, a
//! `range_end` of `"\0"` is every key `>= key`, and anything else is `[key, range_end)`
//! (empty when `range_end <= key`). [`key_bounds`] is the one decoder; [`KeyRange`] is its
//! owned form for code that keeps a key space (watchers, permissions).

use std::ops::Bound;

/// Decodes a request's `(key, range_end)` into B-tree bounds without copying. Returns
/// `None` for a range that is empty by construction (`range_end <= key`).
pub fn key_bounds<'a>(key: &'a [u8], range_end: &'a [u8]) -> Option<(&'a [u8], Bound<&'a [u8]>)> {
    if range_end.is_empty() {
        return Some((key, Bound::Included(key)));
    }
    if range_end == [0u8] {
        return Some((key, Bound::Unbounded));
    }
    if range_end <= key {
        return None;
    }
    Some((key, Bound::Excluded(range_end)))
}

/// A non-empty key space: one key, `[key, end)`, or every key `>= key`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyRange {
    /// First key (inclusive).
    pub key: Vec<u8>,
    /// `None`: only `key`; `Some(empty)`: every key `>= key`; otherwise the
    /// exclusive end.
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    /// The key space of a request's `(key, range_end)` ([`key_bounds`]); `None` if it is
    /// empty by construction.
    pub fn from_request(key: &[u8], range_end: &[u8]) -> Option<KeyRange> {
        let (start, end) = key_bounds(key, range_end)?;
        Some(KeyRange {
            key: start.to_vec(),
            end: match end {
                Bound::Included(_) => None,
                Bound::Unbounded => Some(Vec::new()),
                Bound::Excluded(e) => Some(e.to_vec()),
            },
        })
    }

    /// Exactly the key `key`.
    pub fn single(key: impl Into<Vec<u8>>) -> KeyRange {
        KeyRange {
            key: key.into(),
            end: None,
        }
    }

    /// Whether `k` lies in the range.
    pub fn contains(&self, k: &[u8]) -> bool {
        match &self.end {
            None => k == self.key.as_slice(),
            Some(end) => k >= self.key.as_slice() && (end.is_empty() || k < end.as_slice()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_etcds_convention() {
        let single = KeyRange::from_request(b"a", b"").unwrap();
        assert!(single.contains(b"a") && !single.contains(b"ab"));
        let from_key = KeyRange::from_request(b"b", b"\0").unwrap();
        assert!(from_key.contains(b"b") && from_key.contains(b"zzz") && !from_key.contains(b"a"));
        let span = KeyRange::from_request(b"b", b"d").unwrap();
        assert!(span.contains(b"b") && span.contains(b"c\xff") && !span.contains(b"d"));
        assert_eq!(KeyRange::from_request(b"d", b"d"), None);
        assert_eq!(KeyRange::from_request(b"d", b"c"), None);
        assert_eq!(key_bounds(b"d", b"c"), None);
        assert_eq!(key_bounds(b"a", b"\0"), Some((&b"a"[..], Bound::Unbounded)));
    }
}
