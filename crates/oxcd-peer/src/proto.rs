//! The generated `oxcdpeer` protocol (`proto/oxcdpeer/peer.proto`).
#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

tonic::include_proto!("oxcdpeer");
