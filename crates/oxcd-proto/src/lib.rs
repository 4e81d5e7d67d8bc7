//! Protobuf messages and gRPC services for oxcd.
//!
//! The `.proto` sources live in the workspace-level `proto/` directory and are
//! wire-compatible with etcd v3.6's v3 API (packages, services, messages,
//! field names and numbers), plus oxcd's own `oxcdinternal` package.

/// Storage-level key/value types (`mvccpb`).
#[allow(missing_docs, clippy::all, clippy::pedantic, rustdoc::all)]
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// Persisted auth records (`authpb`).
#[allow(missing_docs, clippy::all, clippy::pedantic, rustdoc::all)]
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// Client-facing v3 API: KV, Watch, Lease, Cluster, Maintenance and Auth
/// services (`etcdserverpb`).
#[allow(missing_docs, clippy::all, clippy::pedantic, rustdoc::all)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// Leader election service (`v3electionpb`).
#[allow(missing_docs, clippy::all, clippy::pedantic, rustdoc::all)]
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}

/// Distributed lock service (`v3lockpb`).
#[allow(missing_docs, clippy::all, clippy::pedantic, rustdoc::all)]
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

/// oxcd-internal messages such as the raft proposal envelope (`oxcdinternal`).
#[allow(missing_docs, clippy::all, clippy::pedantic, rustdoc::all)]
pub mod oxcdinternal {
    tonic::include_proto!("oxcdinternal");
}

pub mod codec;

/// Encoded `FileDescriptorSet` for all oxcd protos (e.g. for gRPC reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/oxcd_descriptor.bin"));

#[cfg(test)]
mod tests;
