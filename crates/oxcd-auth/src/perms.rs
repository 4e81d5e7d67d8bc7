//! Permission ranges (etcd's `range_perm_cache.go`): each user's READ and WRITE
//! permissions, merged over all its roles into sorted, disjoint key intervals, so a check
//! is one binary search.
//!
//! A permission is a single key (`range_end` empty), a from-key range (`range_end` = `\0`:
//! every key >= `key`) or a range `[key, range_end)`. A request's range is *permitted* when
//! the union of the permissions covers all of it, however many permissions that takes.

use oxcd_proto::authpb::{permission::Type as PermType, Permission};

/// A key interval `[begin, end)`; `end` `None` is unbounded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Interval {
    begin: Vec<u8>,
    end: Option<Vec<u8>>,
}

/// The interval a permission or request `(key, range_end)` names, in etcd's convention:
/// an empty `range_end` is the single key, `\0` is every key from `key` on.
fn interval(key: &[u8], range_end: &[u8]) -> Interval {
    let end = if range_end.is_empty() {
        let mut next = key.to_vec();
        next.push(0);
        Some(next)
    } else if range_end == [0] {
        None
    } else {
        Some(range_end.to_vec())
    };
    Interval {
        begin: key.to_vec(),
        end,
    }
}

/// `a < b` where `None` is +infinity.
fn end_lt(a: &Option<Vec<u8>>, b: &Option<Vec<u8>>) -> bool {
    match (a, b) {
        (_, None) => a.is_some(),
        (None, Some(_)) => false,
        (Some(a), Some(b)) => a < b,
    }
}

/// A set of keys given as sorted, disjoint, non-adjacent intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    intervals: Vec<Interval>,
}

impl KeySet {
    /// The union of `intervals` (empty and inverted ones contribute nothing).
    fn build(mut intervals: Vec<Interval>) -> KeySet {
        intervals.retain(|i| i.end.as_ref().is_none_or(|e| *e > i.begin));
        intervals.sort_by(|a, b| a.begin.cmp(&b.begin));
        let mut merged: Vec<Interval> = Vec::with_capacity(intervals.len());
        for i in intervals {
            if let Some(last) = merged.last_mut() {
                // Overlapping or adjacent: extend.
                let touches = last.end.as_ref().is_none_or(|e| i.begin <= *e);
                if touches {
                    if end_lt(&last.end, &i.end) {
                        last.end = i.end;
                    }
                    continue;
                }
            }
            merged.push(i);
        }
        KeySet { intervals: merged }
    }

    /// The merged interval holding `key`, if any.
    fn containing(&self, key: &[u8]) -> Option<&Interval> {
        // The last interval beginning at or before `key`.
        let n = self
            .intervals
            .partition_point(|i| i.begin.as_slice() <= key);
        let i = self.intervals.get(n.checked_sub(1)?)?;
        i.end
            .as_ref()
            .is_none_or(|e| key < e.as_slice())
            .then_some(i)
    }

    /// Whether every key of the request range `(key, range_end)` (etcd's convention) is in
    /// the set. An inverted range (`range_end` below `key`) is permitted only when one
    /// interval spans from below `range_end` past `key`, as etcd's interval tree answers.
    pub fn contains(&self, key: &[u8], range_end: &[u8]) -> bool {
        let want = interval(key, range_end);
        match &want.end {
            Some(end) if *end <= want.begin => self
                .intervals
                .iter()
                .any(|i| i.begin < *end && i.end.as_ref().is_none_or(|e| want.begin < *e)),
            _ => match self.containing(key) {
                Some(i) => !end_lt(&i.end, &want.end),
                None => false,
            },
        }
    }
}

/// A user's merged permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPerms {
    /// Keys the user may read.
    pub read: KeySet,
    /// Keys the user may write.
    pub write: KeySet,
}

impl UserPerms {
    /// The union of `perms` (all the permissions of all of a user's roles).
    pub fn merge<'a>(perms: impl IntoIterator<Item = &'a Permission>) -> UserPerms {
        let mut read = Vec::new();
        let mut write = Vec::new();
        for p in perms {
            let i = interval(&p.key, &p.range_end);
            match PermType::try_from(p.perm_type).unwrap_or(PermType::Read) {
                PermType::Read => read.push(i),
                PermType::Write => write.push(i),
                PermType::Readwrite => {
                    read.push(i.clone());
                    write.push(i);
                }
            }
        }
        UserPerms {
            read: KeySet::build(read),
            write: KeySet::build(write),
        }
    }

    /// Whether the user may do `typ` over `(key, range_end)` (READWRITE asks for both).
    pub fn permits(&self, typ: PermType, key: &[u8], range_end: &[u8]) -> bool {
        match typ {
            PermType::Read => self.read.contains(key, range_end),
            PermType::Write => self.write.contains(key, range_end),
            PermType::Readwrite => {
                self.read.contains(key, range_end) && self.write.contains(key, range_end)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn perm(typ: PermType, key: &[u8], end: &[u8]) -> Permission {
        Permission {
            perm_type: typ as i32,
            key: key.to_vec(),
            range_end: end.to_vec(),
        }
    }

    #[test]
    fn single_keys_prefixes_and_from_key() {
        let perms = [
            perm(PermType::Read, b"a", b""),
            perm(PermType::Readwrite, b"foo/", b"foo0"),
            perm(PermType::Write, b"z", b"\0"),
        ];
        let p = UserPerms::merge(&perms);
        assert!(p.permits(PermType::Read, b"a", b""));
        assert!(
            !p.permits(PermType::Read, b"a", b"b"),
            "a single key is not a range"
        );
        assert!(!p.permits(PermType::Read, b"a\0", b""));
        assert!(!p.permits(PermType::Write, b"a", b""));
        assert!(p.permits(PermType::Read, b"foo/x", b""));
        assert!(p.permits(PermType::Write, b"foo/", b"foo0"));
        assert!(p.permits(PermType::Read, b"foo/a", b"foo/b"));
        assert!(!p.permits(PermType::Read, b"foo/", b"foo1"));
        assert!(!p.permits(PermType::Read, b"foo/", b"\0"));
        assert!(p.permits(PermType::Write, b"zz", b"\0"));
        assert!(p.permits(PermType::Write, b"z", b"\xff\xff"));
        assert!(!p.permits(PermType::Write, b"y", b"\0"));
        assert!(!p.permits(PermType::Read, b"z", b""));
    }

    #[test]
    fn adjacent_and_overlapping_permissions_merge() {
        let perms = [
            perm(PermType::Read, b"a", b"c"),
            perm(PermType::Read, b"c", b"e"),
            perm(PermType::Read, b"d", b"g"),
            perm(PermType::Read, b"g", b""),
        ];
        let p = UserPerms::merge(&perms);
        assert!(p.permits(PermType::Read, b"a", b"g\0"));
        assert!(!p.permits(PermType::Read, b"a", b"g\0\0"));
        assert_eq!(p.read.intervals.len(), 1);
    }

    #[test]
    fn inverted_and_empty_ranges() {
        let p = UserPerms::merge(&[perm(PermType::Read, b"a", b"z")]);
        assert!(p.permits(PermType::Read, b"m", b"c"));
        assert!(!p.permits(PermType::Read, b"m", b"a"));
        assert!(!UserPerms::default().permits(PermType::Read, b"m", b"c"));
    }

    /// Every byte string over {0, 1, 2} of length at most 3: the model's universe. Every
    /// interval boundary the tests use has at most 3 bytes, so any gap in a coverage starts
    /// at one of these strings.
    fn universe() -> Vec<Vec<u8>> {
        let mut all = vec![Vec::new()];
        let mut last = vec![Vec::new()];
        for _ in 0..3 {
            let mut next = Vec::new();
            for s in &last {
                for b in 0..3u8 {
                    let mut t = s.clone();
                    t.push(b);
                    next.push(t);
                }
            }
            all.extend(next.iter().cloned());
            last = next;
        }
        all
    }

    fn model_holds(perms: &[Permission], typ: PermType, k: &[u8]) -> bool {
        perms.iter().any(|p| {
            let t = PermType::try_from(p.perm_type).unwrap_or(PermType::Read);
            let typ_ok = t == typ || t == PermType::Readwrite;
            let in_range = if p.range_end.is_empty() {
                k == p.key.as_slice()
            } else if p.range_end == [0] {
                k >= p.key.as_slice()
            } else {
                k >= p.key.as_slice() && k < p.range_end.as_slice()
            };
            typ_ok && in_range
        })
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(0u8..3, 0..=2)
    }

    fn end() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(Vec::new()),
            Just(vec![0u8]),
            proptest::collection::vec(0u8..3, 1..=2)
        ]
    }

    fn permission() -> impl Strategy<Value = Permission> {
        (0..3i32, key(), end()).prop_map(|(t, k, e)| Permission {
            perm_type: t,
            key: k,
            range_end: e,
        })
    }

    proptest! {
        #[test]
        fn merged_ranges_match_the_model(
            perms in proptest::collection::vec(permission(), 0..6),
            k in key(),
            e in end(),
            read in any::<bool>(),
        ) {
            let typ = if read { PermType::Read } else { PermType::Write };
            let requested = interval(&k, &e);
            prop_assume!(requested.end.as_ref().is_none_or(|x| *x > requested.begin));
            let merged = UserPerms::merge(&perms);
            let model = universe().iter().all(|s| {
                let inside = s.as_slice() >= k.as_slice()
                    && requested.end.as_ref().is_none_or(|x| s < x);
                !inside || model_holds(&perms, typ, s)
            });
            prop_assert_eq!(merged.permits(typ, &k, &e), model);
        }
    }
}
