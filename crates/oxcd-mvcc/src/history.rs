//! History reads for watchers: the events of a span of revisions, read from the
//! revision-ordered KV table (etcd's `syncWatchers` + `kvsToEvents`).

use oxcd_proto::mvccpb::{event::EventType, Event, KeyValue};

use crate::backend::{kv_key_and_lease, KV_TABLE};
use crate::key_range::KeyRange;
use crate::revision::Revision;
use crate::rows::{decode_row, get_kv, Chunks, ReadChunks};
use crate::store::Store;
use crate::MvccError;

/// What to read.
#[derive(Debug, Clone)]
pub struct HistoryRequest {
    /// First revision to read (inclusive).
    pub from: i64,
    /// Last revision to read (inclusive); clamped to the committed revision.
    pub to: i64,
    /// Read at most this many distinct revisions (`0`: no limit).
    pub max_revs: usize,
    /// Only events whose key is in this range (`None`: all keys).
    pub range: Option<KeyRange>,
    /// Fill each event's `prev_kv` (the key's value just before the event's revision,
    /// when that is still readable, i.e. not compacted).
    pub prev_kv: bool,
}

/// Events read by [`Store::history`].
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Events in revision order (main, then sub).
    pub events: Vec<Event>,
    /// The highest revision the read covered: every event in `[from, covered]` is in
    /// `events`. `from - 1` if nothing could be read.
    pub covered: i64,
}

impl Store {
    /// Reads the events of revisions `[req.from, req.to]` from the committed state.
    ///
    /// Follows etcd's rule for watchers: if `from` is below the compact revision the
    /// history is gone and the read fails with [`MvccError::Compacted`]. The snapshot is
    /// taken under the state lock after that check, so a compaction that starts later
    /// cannot remove events from the read. Deletes are reported with `kv = {key,
    /// mod_revision}` as etcd does.
    pub fn history(&self, req: &HistoryRequest) -> Result<History, MvccError> {
        let (rtxn, to) = {
            let st = self.state.read();
            if req.from < st.compact_rev {
                return Err(MvccError::Compacted);
            }
            (self.begin_read()?, req.to.min(st.committed_rev))
        };
        let mut out = History {
            events: Vec::new(),
            covered: req.from - 1,
        };
        if to < req.from {
            return Ok(out);
        }
        let to = if req.max_revs > 0 {
            to.min(req.from.saturating_add(req.max_revs as i64 - 1))
        } else {
            to
        };
        let table = rtxn.open_table(KV_TABLE)?;
        let chunks = Chunks::new(&*rtxn);
        let lo = Revision::new(req.from, 0).to_bytes(false);
        let hi = Revision::new(to.saturating_add(1), 0).to_bytes(false);
        for entry in table.range(lo.as_slice()..hi.as_slice())? {
            let (k, v) = entry?;
            let (rev, tombstone) = Revision::from_bytes(k.value())?;
            // The key is read from the row alone: a large value out of range is not read.
            if let Some(r) = &req.range {
                if !r.contains(kv_key_and_lease(v.value())?.0) {
                    continue;
                }
            }
            let mut kv = decode_row(&chunks, k.value(), v.value())?;
            let ty = if tombstone {
                kv = KeyValue {
                    key: kv.key,
                    mod_revision: rev.main,
                    ..Default::default()
                };
                EventType::Delete
            } else {
                EventType::Put
            };
            out.events.push(Event {
                r#type: ty as i32,
                kv: Some(kv),
                prev_kv: None,
            });
        }
        if req.prev_kv {
            self.fill_prevs_in(&table, &chunks, &mut out.events)?;
        }
        out.covered = to;
        Ok(out)
    }

    /// Fills the `prev_kv` of each event that has none with the key's value just before
    /// the event's revision (none for a key created by the event), from the committed
    /// state. A value compacted away meanwhile stays absent, as in etcd's watch server.
    ///
    /// The applier leaves `prev_kv` out of the events it produces, so that a put need
    /// not read the value it replaces; the watch hub calls this for the few watchers
    /// that ask for it.
    pub fn fill_prev_kvs(&self, events: &mut [Event]) -> Result<(), MvccError> {
        if events.is_empty() {
            return Ok(());
        }
        let rtxn = self.begin_read()?;
        let table = rtxn.open_table(KV_TABLE)?;
        let chunks = Chunks::new(&*rtxn);
        self.fill_prevs_in(&table, &chunks, events)
    }

    fn fill_prevs_in(
        &self,
        table: &impl redb::ReadableTable<&'static [u8], &'static [u8]>,
        chunks: &dyn ReadChunks,
        events: &mut [Event],
    ) -> Result<(), MvccError> {
        // Resolve the previous revisions under the lock, fetch values without it.
        let prevs: Vec<Option<Revision>> = {
            let st = self.state.read();
            events
                .iter()
                .map(|ev| {
                    if ev.prev_kv.is_some() {
                        return None;
                    }
                    let kv = ev.kv.as_ref()?;
                    let at = kv.mod_revision - 1;
                    if at < st.compact_rev.max(1) {
                        return None;
                    }
                    st.index.get(&kv.key, at)
                })
                .collect()
        };
        for (ev, prev) in events.iter_mut().zip(prevs) {
            if let Some(r) = prev {
                ev.prev_kv = Some(get_kv(table, chunks, r)?);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcd_proto::etcdserverpb::{DeleteRangeRequest, PutRequest};

    fn put(s: &Store, k: &str, v: &str, idx: u64) -> Vec<Event> {
        let req = PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        };
        let (_, ev) = s.put(&req, idx, &|_| false).unwrap();
        s.commit(false).unwrap();
        ev
    }

    fn req(from: i64, to: i64) -> HistoryRequest {
        HistoryRequest {
            from,
            to,
            max_revs: 0,
            range: None,
            prev_kv: true,
        }
    }

    #[test]
    fn history_matches_applied_events() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        let mut all = Vec::new();
        all.extend(put(&s, "a", "1", 1));
        all.extend(put(&s, "b", "1", 2));
        all.extend(put(&s, "a", "2", 3));
        let (_, ev) = s
            .delete_range(
                &DeleteRangeRequest {
                    key: b"a".to_vec(),
                    ..Default::default()
                },
                4,
            )
            .unwrap();
        s.commit(false).unwrap();
        all.extend(ev);
        // The applier leaves prev_kv out; filled afterwards, it is what history reads.
        assert!(all.iter().all(|e| e.prev_kv.is_none()));
        s.fill_prev_kvs(&mut all).unwrap();
        assert_eq!(all[0].prev_kv, None, "a key created has no prev");
        assert_eq!(all[2].prev_kv.as_ref().unwrap().value, b"1");
        assert_eq!(all[3].prev_kv.as_ref().unwrap().value, b"2");
        let h = s.history(&req(2, 100)).unwrap();
        assert_eq!(h.covered, 5);
        assert_eq!(h.events, all);

        let mut r = req(3, 100);
        r.range = Some(KeyRange {
            key: b"a".to_vec(),
            end: None,
        });
        r.max_revs = 2;
        let h = s.history(&r).unwrap();
        assert_eq!(h.covered, 4);
        assert_eq!(h.events, vec![all[2].clone()]);

        s.compact(4, 5).unwrap();
        assert_eq!(s.history(&req(3, 100)).unwrap_err(), MvccError::Compacted);
        let h = s.history(&req(4, 100)).unwrap();
        assert_eq!(h.covered, 5);
        // The delete at 5 still shows; its prev (rev 4) survived the compaction at 4.
        assert_eq!(h.events.len(), 2);
        assert_eq!(h.events[1].prev_kv.as_ref().unwrap().value, b"2");
    }
}
