//! The gRPC codec of the generated services and clients: prost, with smaller buffers.
//!
//! tonic's own prost codec starts every call's encode buffer and every call's decode
//! buffer at 8 KiB. A unary etcd call is mostly tens of bytes each way, and an 8 KiB block
//! is too large for glibc's per-thread cache, so each call paid two trips through the
//! shared heap for memory it never touched. These buffers start at 1 KiB, served from that
//! cache, and grow as tonic grows any buffer when a message is larger.

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Initial size of a call's encode and decode buffer: within glibc's per-thread cache
/// (requests up to 1,032 bytes).
const BUFFER_SIZE: usize = 1024;

/// How many encoded bytes a streaming call gathers before it sends them (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// A [`ProstCodec`] whose buffers start at [`BUFFER_SIZE`]; named by the generated code
/// (`codec_path` in `build.rs`).
#[derive(Debug, Clone, Copy)]
pub struct SmallBufferCodec<T, U> {
    _types: std::marker::PhantomData<(T, U)>,
}

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        Self {
            _types: std::marker::PhantomData,
        }
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD)
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::codec::{Decoder, Encoder};

    #[test]
    fn buffers_start_small_and_within_the_thread_cache() {
        let mut codec = SmallBufferCodec::<
            crate::etcdserverpb::PutResponse,
            crate::etcdserverpb::PutRequest,
        >::default();
        let enc = codec.encoder();
        let dec = codec.decoder();
        // BufferSettings has no getters; its Debug output names both fields.
        for s in [
            format!("{:?}", enc.buffer_settings()),
            format!("{:?}", dec.buffer_settings()),
        ] {
            assert!(s.contains("buffer_size: 1024"), "{s}");
            assert!(s.contains("yield_threshold: 32768"), "{s}");
        }
    }
}
