//! Store-level tests: etcd semantics, persistence, compaction, and a model-based
//! proptest.

mod compaction;
mod layout;
mod model;
mod op_counts;
mod semantics;
