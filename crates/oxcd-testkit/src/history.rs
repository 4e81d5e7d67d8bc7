//! Histories of etcd KV operations as clients saw them, and the revision log a cluster
//! claims (its watch events from revision 1), in a form the checkers read.

use std::collections::BTreeMap;
use std::time::Duration;

/// A global etcd revision.
pub type Rev = i64;

/// A key-value pair as etcd returns it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Kv {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// Revision of the put that created the key (since its last delete).
    pub create_revision: Rev,
    /// Revision of the last put.
    pub mod_revision: Rev,
    /// Number of puts since creation.
    pub version: i64,
    /// Attached lease id, 0 for none.
    pub lease: i64,
}

/// A key range as etcd spells it: `range_end` empty is the single key, `[0]` is every key
/// from `key` on, anything else is `[key, range_end)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    /// First key.
    pub key: Vec<u8>,
    /// End (see the type's doc).
    pub range_end: Vec<u8>,
}

impl KeyRange {
    /// The single key `key`.
    pub fn single(key: impl Into<Vec<u8>>) -> KeyRange {
        KeyRange {
            key: key.into(),
            range_end: Vec::new(),
        }
    }

    /// Every key starting with `prefix`.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> KeyRange {
        let key: Vec<u8> = prefix.into();
        let mut end = key.clone();
        while let Some(last) = end.pop() {
            if last < 0xff {
                end.push(last + 1);
                return KeyRange {
                    key,
                    range_end: end,
                };
            }
        }
        KeyRange {
            key,
            range_end: vec![0],
        }
    }

    /// Whether `k` lies in the range.
    pub fn contains(&self, k: &[u8]) -> bool {
        if self.range_end.is_empty() {
            k == self.key.as_slice()
        } else if self.range_end == [0] {
            k >= self.key.as_slice()
        } else {
            k >= self.key.as_slice() && k < self.range_end.as_slice()
        }
    }
}

/// What a compare looks at, with the value compared against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    /// The value.
    Value(Vec<u8>),
    /// The version (0 for a missing key).
    Version(i64),
    /// The create revision (0 for a missing key).
    CreateRevision(Rev),
    /// The mod revision (0 for a missing key).
    ModRevision(Rev),
    /// The lease (0 for a missing key).
    Lease(i64),
}

/// A compare operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `<`
    Less,
    /// `>`
    Greater,
}

/// One compare of a txn, on a single key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    /// The key.
    pub key: Vec<u8>,
    /// The operator.
    pub op: CompareOp,
    /// The target and the operand.
    pub target: CompareTarget,
}

/// An operation inside a txn branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOp {
    /// A put.
    Put {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
        /// Lease, 0 for none.
        lease: i64,
    },
    /// A range read.
    Get(KeyRange),
    /// A delete.
    Delete(KeyRange),
}

/// A client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Put.
    Put {
        /// Key.
        key: Vec<u8>,
        /// Value (unique per put in generated traffic, so a put can be recognised).
        value: Vec<u8>,
        /// Lease, 0 for none.
        lease: i64,
    },
    /// A linearizable range read at the latest revision.
    Range(KeyRange),
    /// DeleteRange.
    Delete(KeyRange),
    /// A txn.
    Txn {
        /// Compares (all must hold for `success`).
        compare: Vec<Compare>,
        /// Ops when they hold.
        success: Vec<TxnOp>,
        /// Ops otherwise.
        failure: Vec<TxnOp>,
    },
    /// LeaseGrant.
    LeaseGrant {
        /// TTL in seconds.
        ttl: i64,
    },
    /// LeaseRevoke.
    LeaseRevoke {
        /// The lease.
        id: i64,
    },
}

impl Request {
    /// Whether the request may change the keyspace.
    pub fn may_write(&self) -> bool {
        !matches!(self, Request::Range(_) | Request::LeaseGrant { .. })
    }
}

/// The result of one op inside a txn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOpResult {
    /// A put.
    Put,
    /// A range read's key-values.
    Get(Vec<Kv>),
    /// How many keys a delete removed.
    Delete(i64),
}

/// A successful response (the header revision is in every variant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// Put.
    Put {
        /// Header revision.
        revision: Rev,
    },
    /// Range.
    Range {
        /// Header revision.
        revision: Rev,
        /// Key-values, in key order.
        kvs: Vec<Kv>,
    },
    /// DeleteRange.
    Delete {
        /// Header revision.
        revision: Rev,
        /// Keys deleted.
        deleted: i64,
    },
    /// Txn.
    Txn {
        /// Header revision.
        revision: Rev,
        /// Whether the compares held.
        succeeded: bool,
        /// One result per op of the branch taken.
        results: Vec<TxnOpResult>,
    },
    /// LeaseGrant.
    LeaseGrant {
        /// Header revision.
        revision: Rev,
        /// The granted lease.
        id: i64,
    },
    /// LeaseRevoke.
    LeaseRevoke {
        /// Header revision.
        revision: Rev,
    },
}

impl Response {
    /// The header revision.
    pub fn revision(&self) -> Rev {
        match self {
            Response::Put { revision }
            | Response::Range { revision, .. }
            | Response::Delete { revision, .. }
            | Response::Txn { revision, .. }
            | Response::LeaseGrant { revision, .. }
            | Response::LeaseRevoke { revision } => *revision,
        }
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered.
    Ok(Response),
    /// Refused before it could take effect (e.g. `InvalidArgument`, lease not found).
    Failed(String),
    /// The answer was lost (timeout, connection error): it may or may not have happened,
    /// at most once, at some revision after its invocation.
    Unknown(String),
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// Which client issued it (a client runs one operation at a time).
    pub client: usize,
    /// Invocation time since the history's start.
    pub call: Duration,
    /// Response time; for [`Outcome::Unknown`] the time it was given up (not a bound).
    pub ret: Duration,
    /// The request.
    pub request: Request,
    /// The outcome.
    pub outcome: Outcome,
}

/// Kind of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventKind {
    /// A put.
    Put,
    /// A delete.
    Delete,
}

/// A watch event (for deletes, `kv` holds the key and `mod_revision` only).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key-value after the event.
    pub kv: Kv,
}

impl Event {
    /// The revision the event happened at.
    pub fn revision(&self) -> Rev {
        self.kv.mod_revision
    }
}

/// The cluster's claimed sequence of writes: the events of each revision, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Log {
    /// Events grouped by revision.
    pub revisions: BTreeMap<Rev, Vec<Event>>,
}

impl Log {
    /// Groups events (as a watch from revision 1 delivers them) by revision.
    pub fn from_events(events: impl IntoIterator<Item = Event>) -> Log {
        let mut revisions: BTreeMap<Rev, Vec<Event>> = BTreeMap::new();
        for e in events {
            revisions.entry(e.revision()).or_default().push(e);
        }
        Log { revisions }
    }

    /// Every event, in revision order.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.revisions.values().flatten()
    }

    /// The last revision with events (1, etcd's initial revision, for an empty log).
    pub fn last_revision(&self) -> Rev {
        self.revisions.keys().next_back().copied().unwrap_or(1)
    }
}
