//! Generates Rust code for the protos under `<workspace>/proto` using `protox`
//! (pure Rust, no `protoc` needed) and `tonic-prost-build`.

use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &[
    "mvccpb/kv.proto",
    "authpb/auth.proto",
    "etcdserverpb/rpc.proto",
    "v3electionpb/v3election.proto",
    "v3lockpb/v3lock.proto",
    "oxcdinternal/internal.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    println!("cargo:rerun-if-changed={}", proto_root.display());
    for p in PROTOS {
        println!("cargo:rerun-if-changed={}", proto_root.join(p).display());
    }

    let fds = protox::compile(PROTOS, [&proto_root])?;

    // Keep the descriptor set around so the server can offer reflection.
    std::fs::write(out_dir.join("oxcd_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // RPCs not built yet answer `Unimplemented` without a hand-written stub per method.
        .generate_default_stubs(true)
        // prost with 1 KiB starting buffers instead of tonic's 8 KiB (see src/codec.rs).
        .codec_path("crate::codec::SmallBufferCodec")
        .compile_fds(fds)?;
    Ok(())
}
