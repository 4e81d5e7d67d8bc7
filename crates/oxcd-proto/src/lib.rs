//! oxcd-proto (being written).
