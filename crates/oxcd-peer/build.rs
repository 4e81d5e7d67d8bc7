//! Generates the peer service from `<workspace>/proto/oxcdpeer/peer.proto` with `protox`
//! (pure Rust, no `protoc`); etcd's messages it reuses come from `oxcd-proto`.

use std::path::PathBuf;

const PROTO: &str = "oxcdpeer/peer.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    println!(
        "cargo:rerun-if-changed={}",
        proto_root.join(PROTO).display()
    );
    let fds = protox::compile([PROTO], [&proto_root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".oxcdpeer")
        .extern_path(".etcdserverpb", "::oxcd_proto::etcdserverpb")
        .extern_path(".mvccpb", "::oxcd_proto::mvccpb")
        .extern_path(".authpb", "::oxcd_proto::authpb")
        .compile_fds(fds)?;
    Ok(())
}
