//! In-memory index from user key to the revisions of that key (etcd's `key_index.go`
//! and `index.go`).
//!
//! A [`KeyIndex`] holds generations. A generation is the life of a key from its
//! creation to its deletion: its revisions in order, the last one being the
//! tombstone for every generation but the last (which is open and may be empty).

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use crate::revision::Revision;

/// One life of a key: created by the first revision, ended by a tombstone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generation {
    /// Version of the key at the last revision of this generation.
    pub ver: i64,
    /// Revision that created the key in this generation.
    pub created: Revision,
    /// Revisions in ascending order; for a closed generation the last is the tombstone.
    pub revs: Vec<Revision>,
}

impl Generation {
    fn is_empty(&self) -> bool {
        self.revs.is_empty()
    }

    /// Index (from the start) of the newest revision with `main <= at_rev`.
    fn newest_at(&self, at_rev: i64) -> Option<usize> {
        // revs are sorted: partition point of main <= at_rev.
        let n = self.revs.partition_point(|r| r.main <= at_rev);
        n.checked_sub(1)
    }
}

/// The revisions of one key. Never empty in a [`TreeIndex`]: the last generation is
/// open (possibly empty, meaning the key is currently deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIndex {
    /// Last modification (put or tombstone).
    pub modified: Revision,
    /// Generations, oldest first.
    pub generations: Vec<Generation>,
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex {
            modified: Revision::default(),
            generations: vec![Generation::default()],
        }
    }
}

/// Result of looking a key up at a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAt {
    /// The revision holding the value visible at the looked-up revision.
    pub modified: Revision,
    /// The revision that created the key's current generation.
    pub created: Revision,
    /// Version of the key at `modified`.
    pub version: i64,
}

impl KeyIndex {
    /// Records a put at `rev` (must be greater than every recorded revision).
    pub fn put(&mut self, rev: Revision) {
        debug_assert!(rev > self.modified, "put with smaller revision");
        if self.generations.is_empty() {
            self.generations.push(Generation::default());
        }
        let last = self.generations.len() - 1;
        let g = &mut self.generations[last];
        if g.revs.is_empty() {
            g.created = rev;
        }
        g.revs.push(rev);
        g.ver += 1;
        self.modified = rev;
    }

    /// Records a tombstone at `rev`, closing the current generation. Returns false
    /// (and changes nothing) if the key is not live.
    pub fn tombstone(&mut self, rev: Revision) -> bool {
        match self.generations.last() {
            Some(g) if !g.is_empty() => {}
            _ => return false,
        }
        self.put(rev);
        self.generations.push(Generation::default());
        true
    }

    /// True if the index holds no revision at all.
    pub fn is_empty(&self) -> bool {
        self.generations.iter().all(Generation::is_empty)
    }

    /// True if the key is live at the newest revision.
    pub fn is_live(&self) -> bool {
        self.generations.last().is_some_and(|g| !g.is_empty())
    }

    /// Finds the generation the key is in at `rev`, if the key exists at `rev`.
    fn find_generation(&self, rev: i64) -> Option<&Generation> {
        let last = self.generations.len().checked_sub(1)?;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let (Some(first), Some(tomb)) = (g.revs.first(), g.revs.last()) else {
                continue;
            };
            if i != last && tomb.main <= rev {
                // rev falls after this generation's tombstone: key deleted at rev.
                return None;
            }
            if first.main <= rev {
                return Some(g);
            }
        }
        None
    }

    /// The key's state at `at_rev`, or `None` if it does not exist then.
    pub fn get(&self, at_rev: i64) -> Option<KeyAt> {
        let g = self.find_generation(at_rev)?;
        let n = g.newest_at(at_rev)?;
        Some(KeyAt {
            modified: g.revs[n],
            created: g.created,
            version: g.ver - (g.revs.len() - 1 - n) as i64,
        })
    }

    /// Etcd's `doCompact`: finds the generation holding `at_rev` (or the first one
    /// created after it) and the index of the newest revision `<= at_rev` in it,
    /// adding that revision to `keep`.
    fn do_compact(&self, at_rev: i64, keep: &mut HashSet<Revision>) -> (usize, Option<usize>) {
        let mut gen_idx = 0;
        while gen_idx + 1 < self.generations.len() {
            let g = &self.generations[gen_idx];
            match g.revs.last() {
                Some(tomb) if tomb.main > at_rev => break,
                _ => gen_idx += 1,
            }
        }
        let g = &self.generations[gen_idx];
        let rev_idx = g.newest_at(at_rev);
        if let Some(i) = rev_idx {
            keep.insert(g.revs[i]);
        }
        (gen_idx, rev_idx)
    }

    /// Removes every revision not needed to read at revisions `>= at_rev`: for the
    /// generation holding `at_rev`, keeps the newest revision `<= at_rev` unless it
    /// is a tombstone; drops older generations. Adds the kept revision `<= at_rev`
    /// (if any) to `keep`. Returns true if the key index became empty.
    pub fn compact(&mut self, at_rev: i64, keep: &mut HashSet<Revision>) -> bool {
        let (mut gen_idx, rev_idx) = self.do_compact(at_rev, keep);
        let last = self.generations.len() - 1;
        let g = &mut self.generations[gen_idx];
        if !g.is_empty() {
            if let Some(i) = rev_idx {
                g.revs.drain(..i);
            }
            // A generation reduced to its tombstone is not needed any more.
            if g.revs.len() == 1 && gen_idx != last {
                keep.remove(&g.revs[0]);
                gen_idx += 1;
            }
        }
        self.generations.drain(..gen_idx);
        self.generations.len() == 1 && self.generations[0].is_empty()
    }
}

/// Ordered index of all keys (etcd's `treeIndex`).
#[derive(Debug, Clone, Default)]
pub struct TreeIndex {
    keys: BTreeMap<Vec<u8>, KeyIndex>,
}

/// Converts a request's `(key, range_end)` into bounds: empty `range_end` is the
/// single key, `"\0"` means every key `>= key`, otherwise `[key, range_end)`.
/// Returns `None` for a range that is empty by construction (`range_end <= key`).
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

impl TreeIndex {
    /// Number of keys (live or with history) in the index.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True if no key is indexed.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Records a put of `key` at `rev`.
    pub fn put(&mut self, key: &[u8], rev: Revision) {
        match self.keys.get_mut(key) {
            Some(ki) => ki.put(rev),
            None => {
                let mut ki = KeyIndex::default();
                ki.put(rev);
                self.keys.insert(key.to_vec(), ki);
            }
        }
    }

    /// Records a put found while rebuilding the index from the backend: the first
    /// revision seen for a key may belong to a generation whose older revisions
    /// were compacted away, so its creation and version come from the stored value.
    pub fn restore_put(&mut self, key: &[u8], rev: Revision, created_main: i64, version: i64) {
        if let Some(ki) = self.keys.get_mut(key) {
            ki.put(rev);
            return;
        }
        let ki = KeyIndex {
            modified: rev,
            generations: vec![Generation {
                ver: version,
                created: Revision::new(created_main, 0),
                revs: vec![rev],
            }],
        };
        self.keys.insert(key.to_vec(), ki);
    }

    /// Records a tombstone of `key` at `rev`; false if the key is not live.
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) -> bool {
        self.keys.get_mut(key).is_some_and(|ki| ki.tombstone(rev))
    }

    /// State of `key` at `at_rev`.
    pub fn get(&self, key: &[u8], at_rev: i64) -> Option<KeyAt> {
        self.keys.get(key)?.get(at_rev)
    }

    /// Calls `f` in key order for every key of `[key, range_end)` (see
    /// [`key_bounds`]) that exists at `at_rev`.
    pub fn visit<'s>(
        &'s self,
        key: &[u8],
        range_end: &[u8],
        at_rev: i64,
        mut f: impl FnMut(&'s [u8], KeyAt),
    ) {
        let Some((start, end)) = key_bounds(key, range_end) else {
            return;
        };
        let range = self.keys.range::<[u8], _>((Bound::Included(start), end));
        for (k, ki) in range {
            if let Some(at) = ki.get(at_rev) {
                f(k.as_slice(), at);
            }
        }
    }

    /// Compacts every key at `at_rev` (see [`KeyIndex::compact`]), removing keys left
    /// empty. Returns the revisions `<= at_rev` that must be kept in the backend.
    pub fn compact(&mut self, at_rev: i64) -> HashSet<Revision> {
        let mut keep = HashSet::new();
        self.keys.retain(|_, ki| !ki.compact(at_rev, &mut keep));
        keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// The example from etcd's key_index.go:
    /// put(1.0);put(2.0);tombstone(3.0);put(4.0);tombstone(5.0)
    fn example() -> KeyIndex {
        let mut ki = KeyIndex::default();
        ki.put(r(1));
        ki.put(r(2));
        assert!(ki.tombstone(r(3)));
        ki.put(r(4));
        assert!(ki.tombstone(r(5)));
        ki
    }

    #[test]
    fn get_follows_generations() {
        let mut ki = example();
        assert_eq!(ki.get(0), None);
        assert_eq!(
            ki.get(1),
            Some(KeyAt {
                modified: r(1),
                created: r(1),
                version: 1
            })
        );
        assert_eq!(
            ki.get(2),
            Some(KeyAt {
                modified: r(2),
                created: r(1),
                version: 2
            })
        );
        assert_eq!(ki.get(3), None);
        assert_eq!(
            ki.get(4),
            Some(KeyAt {
                modified: r(4),
                created: r(4),
                version: 1
            })
        );
        assert_eq!(ki.get(5), None);
        assert_eq!(ki.get(100), None);
        assert!(!ki.tombstone(r(6)));
    }

    #[test]
    fn compact_like_etcd() {
        let mut ki = example();
        let mut keep = HashSet::new();
        assert!(!ki.compact(2, &mut keep));
        assert_eq!(keep, HashSet::from([r(2)]));
        assert_eq!(ki.generations.len(), 3);
        assert_eq!(ki.generations[0].revs, vec![r(2), r(3)]);
        assert_eq!(ki.get(2).map(|a| a.version), Some(2));

        let mut keep = HashSet::new();
        assert!(!ki.compact(4, &mut keep));
        assert_eq!(keep, HashSet::from([r(4)]));
        assert_eq!(ki.generations.len(), 2);
        assert_eq!(ki.generations[0].revs, vec![r(4), r(5)]);

        let mut keep = HashSet::new();
        assert!(ki.compact(5, &mut keep));
        assert!(keep.is_empty());
    }

    #[test]
    fn compact_at_tombstone_of_older_generation() {
        let mut ki = example();
        let mut keep = HashSet::new();
        // at 3 the key is deleted: generation {1,2,3t} goes away entirely.
        assert!(!ki.compact(3, &mut keep));
        assert!(keep.is_empty());
        assert_eq!(ki.generations.len(), 2);
        assert_eq!(ki.get(4).map(|a| a.version), Some(1));
    }

    #[test]
    fn tree_index_ranges() {
        let mut t = TreeIndex::default();
        t.put(b"a", r(2));
        t.put(b"b", r(3));
        t.put(b"c", r(4));
        assert!(t.tombstone(b"b", r(5)));
        let collect = |t: &TreeIndex, k: &[u8], e: &[u8], at: i64| {
            let mut v = vec![];
            t.visit(k, e, at, |k, _| v.push(k.to_vec()));
            v
        };
        assert_eq!(collect(&t, b"a", b"", 5), vec![b"a".to_vec()]);
        assert_eq!(
            collect(&t, b"a", b"\0", 5),
            vec![b"a".to_vec(), b"c".to_vec()]
        );
        assert_eq!(collect(&t, b"a", b"\0", 4).len(), 3);
        assert_eq!(collect(&t, b"\0", b"\0", 4).len(), 3);
        assert_eq!(collect(&t, b"b", b"c", 4), vec![b"b".to_vec()]);
        assert!(collect(&t, b"c", b"b", 4).is_empty());
        assert!(collect(&t, b"c", b"c", 4).is_empty());
        let keep = t.compact(5);
        assert_eq!(keep, HashSet::from([r(2), r(4)]));
        assert_eq!(t.len(), 2);
    }
}
