//! The index of synced watchers by the keys they watch, so that a revision's events
//! reach their watchers without scanning every watcher.
//!
//! Single-key watchers are found by one hash lookup per event. Range watchers are
//! grouped by their exact `(start, end)`: tens of thousands of watchers on the same
//! prefix cost one comparison per event, and the cost of a lookup grows with the number
//! of *distinct* ranges starting at or before the key, not with the number of watchers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;

use oxcd_mvcc::KeyRange;

/// Hub-wide watcher id.
pub type Gid = u64;

/// Synced watchers by watched key space.
#[derive(Default)]
pub(crate) struct WatcherIndex {
    exact: HashMap<Vec<u8>, HashSet<Gid>>,
    /// start -> end (empty: no end) -> watchers.
    ranges: BTreeMap<Vec<u8>, HashMap<Vec<u8>, HashSet<Gid>>>,
}

impl WatcherIndex {
    /// Adds `gid` watching `range`.
    pub(crate) fn insert(&mut self, gid: Gid, range: &KeyRange) {
        match &range.end {
            None => {
                self.exact.entry(range.key.clone()).or_default().insert(gid);
            }
            Some(end) => {
                self.ranges
                    .entry(range.key.clone())
                    .or_default()
                    .entry(end.clone())
                    .or_default()
                    .insert(gid);
            }
        }
    }

    /// Removes `gid` watching `range`; returns whether it was there.
    pub(crate) fn remove(&mut self, gid: Gid, range: &KeyRange) -> bool {
        match &range.end {
            None => {
                let Some(set) = self.exact.get_mut(&range.key) else {
                    return false;
                };
                let found = set.remove(&gid);
                if set.is_empty() {
                    self.exact.remove(&range.key);
                }
                found
            }
            Some(end) => {
                let Some(ends) = self.ranges.get_mut(&range.key) else {
                    return false;
                };
                let Some(set) = ends.get_mut(end) else {
                    return false;
                };
                let found = set.remove(&gid);
                if set.is_empty() {
                    ends.remove(end);
                }
                if ends.is_empty() {
                    self.ranges.remove(&range.key);
                }
                found
            }
        }
    }

    /// Calls `f` for every watcher whose key space contains `key`.
    pub(crate) fn for_each_match(&self, key: &[u8], mut f: impl FnMut(Gid)) {
        if let Some(set) = self.exact.get(key) {
            set.iter().for_each(|g| f(*g));
        }
        for (_, ends) in self
            .ranges
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
        {
            for (end, set) in ends {
                if end.is_empty() || key < end.as_slice() {
                    set.iter().for_each(|g| f(*g));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(key: &str, end: Option<&str>) -> KeyRange {
        KeyRange {
            key: key.into(),
            end: end.map(Into::into),
        }
    }

    #[test]
    fn finds_exact_ranges_and_from_key() {
        let mut ix = WatcherIndex::default();
        ix.insert(1, &r("a", None));
        ix.insert(2, &r("a", Some("b")));
        ix.insert(3, &r("b", Some("")));
        ix.insert(4, &r("a", Some("b")));
        let got = |ix: &WatcherIndex, k: &str| {
            let mut v = Vec::new();
            ix.for_each_match(k.as_bytes(), |g| v.push(g));
            v.sort();
            v
        };
        assert_eq!(got(&ix, "a"), vec![1, 2, 4]);
        assert_eq!(got(&ix, "a1"), vec![2, 4]);
        assert_eq!(got(&ix, "b"), vec![3]);
        assert_eq!(got(&ix, "zz"), vec![3]);
        assert_eq!(got(&ix, "0"), Vec::<Gid>::new());
        assert!(ix.remove(2, &r("a", Some("b"))));
        assert!(!ix.remove(2, &r("a", Some("b"))));
        assert!(ix.remove(1, &r("a", None)));
        assert_eq!(got(&ix, "a"), vec![4]);
    }
}
