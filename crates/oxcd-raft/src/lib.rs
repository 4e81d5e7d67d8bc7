//! oxcd-raft (being written).
