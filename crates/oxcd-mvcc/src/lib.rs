//! oxcd-mvcc (being written).
