//! etcd's KV model replayed from a [`Log`]: the state at any revision, and what a request
//! would do to a state.

use std::collections::BTreeMap;

use crate::history::{
    Compare, CompareOp, CompareTarget, Event, EventKind, KeyRange, Kv, Log, Rev, TxnOp, TxnOpResult,
};

/// Every version of every key, so the state at any revision can be read.
#[derive(Debug, Default)]
pub struct Store {
    /// Per key: (revision, the key's value from then on; `None` = deleted), ascending.
    keys: BTreeMap<Vec<u8>, Vec<(Rev, Option<Kv>)>>,
    /// The last revision replayed.
    last: Rev,
}

/// Why a log is not a possible etcd log on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogError {
    /// The revision.
    pub revision: Rev,
    /// What is wrong.
    pub reason: String,
}

impl Store {
    /// Replays `log`, checking that revisions are contiguous from 2 and that every event is
    /// what etcd would record (create revision, version, deletes of existing keys only).
    pub fn replay(log: &Log) -> Result<Store, LogError> {
        let mut store = Store {
            keys: BTreeMap::new(),
            last: 1,
        };
        for (&rev, events) in &log.revisions {
            if rev != store.last + 1 {
                return Err(LogError {
                    revision: rev,
                    reason: format!("revisions jump from {} to {rev}", store.last),
                });
            }
            let mut changed = std::collections::BTreeSet::new();
            for e in events {
                if !changed.insert(e.kv.key.clone()) {
                    return Err(LogError {
                        revision: rev,
                        reason: format!("key {} changed twice in one revision", show(&e.kv.key)),
                    });
                }
                let expected = expected_event(&store, rev, e);
                if let Err(reason) = expected {
                    return Err(LogError {
                        revision: rev,
                        reason,
                    });
                }
                let versions = store.keys.entry(e.kv.key.clone()).or_default();
                let value = (e.kind == EventKind::Put).then(|| e.kv.clone());
                versions.push((rev, value));
            }
            store.last = rev;
        }
        Ok(store)
    }

    /// The last revision of the log.
    pub fn last_revision(&self) -> Rev {
        self.last
    }

    /// The key-value of `key` at `rev`.
    pub fn get(&self, key: &[u8], rev: Rev) -> Option<&Kv> {
        let versions = self.keys.get(key)?;
        let i = versions.partition_point(|(r, _)| *r <= rev);
        versions.get(i.checked_sub(1)?)?.1.as_ref()
    }

    /// The key-values in `range` at `rev`, in key order.
    pub fn range(&self, range: &KeyRange, rev: Rev) -> Vec<Kv> {
        self.keys
            .range(range.key.clone()..)
            .take_while(|(k, _)| !range_past(range, k))
            .filter(|(k, _)| range.contains(k))
            .filter_map(|(k, _)| self.get(k, rev).cloned())
            .collect()
    }

    /// Keys attached to `lease` at `rev`, in key order.
    pub fn keys_with_lease(&self, lease: i64, rev: Rev) -> Vec<Vec<u8>> {
        self.keys
            .keys()
            .filter(|k| self.get(k, rev).is_some_and(|kv| kv.lease == lease))
            .cloned()
            .collect()
    }
}

/// Whether `k` lies after the end of `range` (so scanning can stop).
fn range_past(range: &KeyRange, k: &[u8]) -> bool {
    if range.range_end.is_empty() {
        k > range.key.as_slice()
    } else if range.range_end == [0] {
        false
    } else {
        k >= range.range_end.as_slice()
    }
}

/// Checks one event against the state before its revision.
fn expected_event(store: &Store, rev: Rev, e: &Event) -> Result<(), String> {
    let before = store.get(&e.kv.key, rev - 1);
    if e.kv.mod_revision != rev {
        return Err(format!(
            "event on {} has mod_revision {}",
            show(&e.kv.key),
            e.kv.mod_revision
        ));
    }
    match (e.kind, before) {
        (EventKind::Delete, None) => Err(format!("delete of missing key {}", show(&e.kv.key))),
        (EventKind::Delete, Some(_)) => Ok(()),
        (EventKind::Put, prev) => {
            let (create, version) = match prev {
                Some(p) => (p.create_revision, p.version + 1),
                None => (rev, 1),
            };
            if e.kv.create_revision != create || e.kv.version != version {
                return Err(format!(
                    "put of {} has create_revision {} version {}, expected {create} and {version}",
                    show(&e.kv.key),
                    e.kv.create_revision,
                    e.kv.version
                ));
            }
            Ok(())
        }
    }
}

/// A view of the state at one revision plus writes made earlier in the same txn.
pub struct Scratch<'a> {
    store: &'a Store,
    rev: Rev,
    overlay: BTreeMap<Vec<u8>, Option<Kv>>,
}

impl<'a> Scratch<'a> {
    /// The state of `store` at `rev`, as a new write at `rev + 1` would see it.
    pub fn at(store: &'a Store, rev: Rev) -> Scratch<'a> {
        Scratch {
            store,
            rev,
            overlay: BTreeMap::new(),
        }
    }

    fn get(&self, key: &[u8]) -> Option<Kv> {
        match self.overlay.get(key) {
            Some(v) => v.clone(),
            None => self.store.get(key, self.rev).cloned(),
        }
    }

    fn range(&self, range: &KeyRange) -> Vec<Kv> {
        let mut out: BTreeMap<Vec<u8>, Kv> = self
            .store
            .range(range, self.rev)
            .into_iter()
            .map(|kv| (kv.key.clone(), kv))
            .collect();
        for (k, v) in &self.overlay {
            if range.contains(k) {
                match v {
                    Some(kv) => out.insert(k.clone(), kv.clone()),
                    None => out.remove(k),
                };
            }
        }
        out.into_values().collect()
    }

    /// Whether every compare holds (etcd: a value compare on a missing key fails; the other
    /// targets compare a missing key as zero).
    pub fn compares_hold(&self, compares: &[Compare]) -> bool {
        compares.iter().all(|c| {
            let kv = self.get(&c.key);
            let ord = match (&c.target, &kv) {
                (CompareTarget::Value(_), None) => return false,
                (CompareTarget::Value(v), Some(kv)) => kv.value.as_slice().cmp(v.as_slice()),
                (CompareTarget::Version(v), kv) => field(kv, |k| k.version).cmp(v),
                (CompareTarget::CreateRevision(v), kv) => field(kv, |k| k.create_revision).cmp(v),
                (CompareTarget::ModRevision(v), kv) => field(kv, |k| k.mod_revision).cmp(v),
                (CompareTarget::Lease(v), kv) => field(kv, |k| k.lease).cmp(v),
            };
            match c.op {
                CompareOp::Equal => ord.is_eq(),
                CompareOp::NotEqual => ord.is_ne(),
                CompareOp::Less => ord.is_lt(),
                CompareOp::Greater => ord.is_gt(),
            }
        })
    }

    /// Applies `ops` as one write at revision `rev + 1`: the events it produces and the
    /// results etcd would answer (reads see the txn's earlier writes).
    pub fn apply(&mut self, ops: &[TxnOp]) -> (Vec<Event>, Vec<TxnOpResult>) {
        let new_rev = self.rev + 1;
        let mut events = Vec::new();
        let mut results = Vec::new();
        for op in ops {
            match op {
                TxnOp::Put { key, value, lease } => {
                    let (create, version) = match self.get(key) {
                        Some(p) => (p.create_revision, p.version + 1),
                        None => (new_rev, 1),
                    };
                    let kv = Kv {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: create,
                        mod_revision: new_rev,
                        version,
                        lease: *lease,
                    };
                    self.overlay.insert(key.clone(), Some(kv.clone()));
                    events.push(Event {
                        kind: EventKind::Put,
                        kv,
                    });
                    results.push(TxnOpResult::Put);
                }
                TxnOp::Get(range) => results.push(TxnOpResult::Get(self.range(range))),
                TxnOp::Delete(range) => {
                    let gone = self.range(range);
                    for kv in &gone {
                        self.overlay.insert(kv.key.clone(), None);
                        events.push(deletion(&kv.key, new_rev));
                    }
                    results.push(TxnOpResult::Delete(gone.len() as i64));
                }
            }
        }
        (events, results)
    }
}

/// The delete event etcd records for `key` at `rev`.
pub fn deletion(key: &[u8], rev: Rev) -> Event {
    Event {
        kind: EventKind::Delete,
        kv: Kv {
            key: key.to_vec(),
            value: Vec::new(),
            create_revision: 0,
            mod_revision: rev,
            version: 0,
            lease: 0,
        },
    }
}

/// Whether two events record the same change (deletes carry only key and revision).
pub fn same_change(a: &Event, b: &Event) -> bool {
    match (a.kind, b.kind) {
        (EventKind::Put, EventKind::Put) => a.kv == b.kv,
        (EventKind::Delete, EventKind::Delete) => {
            a.kv.key == b.kv.key && a.kv.mod_revision == b.kv.mod_revision
        }
        _ => false,
    }
}

/// Whether two event lists record the same changes in the same order.
pub fn same_changes(a: &[Event], b: &[Event]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_change(x, y))
}

fn field(kv: &Option<Kv>, f: impl Fn(&Kv) -> i64) -> i64 {
    kv.as_ref().map(f).unwrap_or(0)
}

/// A key for messages: UTF-8 if it is, else hex.
pub fn show(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) => format!("{s:?}"),
        Err(_) => key.iter().map(|b| format!("{b:02x}")).collect(),
    }
}
