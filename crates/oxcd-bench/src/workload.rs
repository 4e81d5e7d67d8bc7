//! Request generation for the benchmark workloads.
//!
//! Every client task owns a [`Rng`] and asks the shared [`Workload`] for the
//! request that corresponds to a global sequence number.

use oxcd_proto::etcdserverpb::{PutRequest, RangeRequest};

use crate::watch::WatchTarget;

/// Small, fast, deterministic pseudo random generator (SplitMix64).
///
/// Good enough for picking keys and filling values; not cryptographic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Creates a generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Returns the next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Returns a number in `0..n` (`n` must be non-zero).
    pub fn below(&mut self, n: u64) -> u64 {
        // Multiply-shift: unbiased enough for benchmarking purposes.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Returns `len` random printable bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len() as u64) as usize])
            .collect()
    }
}

/// Parameters of the `put` workload.
#[derive(Debug, Clone)]
pub struct PutWorkload {
    /// Size of every key in bytes (at least 1).
    pub key_size: usize,
    /// Number of distinct keys written (at least 1).
    pub key_space_size: u64,
    /// Write keys `0, 1, 2, ...` (modulo the key space) instead of random ones.
    pub sequential: bool,
    /// Value sent with every put (generated once).
    pub value: Vec<u8>,
}

impl PutWorkload {
    /// Builds a put workload, checking that `key_size` bytes can hold
    /// `key_space_size` distinct keys.
    pub fn new(
        key_size: usize,
        val_size: usize,
        key_space_size: u64,
        sequential: bool,
    ) -> Result<Self, String> {
        if key_size == 0 {
            return Err("--key-size must be at least 1".into());
        }
        if key_space_size == 0 {
            return Err("--key-space-size must be at least 1".into());
        }
        if key_size < 8 && key_space_size > 1u64 << (8 * key_size) {
            return Err(format!(
                "--key-space-size {key_space_size} does not fit in --key-size {key_size} bytes"
            ));
        }
        Ok(PutWorkload {
            key_size,
            key_space_size,
            sequential,
            value: Rng::new(0x5EED).bytes(val_size),
        })
    }

    /// Index (in `0..key_space_size`) of the key used by request `seq`.
    pub fn key_index(&self, seq: u64, rng: &mut Rng) -> u64 {
        if self.sequential {
            seq % self.key_space_size
        } else {
            rng.below(self.key_space_size)
        }
    }

    /// Encodes a key index as exactly `key_size` bytes: zero padding followed
    /// by the big-endian index, so sequential keys also sort in order.
    pub fn encode_key(&self, index: u64) -> Vec<u8> {
        let mut key = vec![0u8; self.key_size];
        let be = index.to_be_bytes();
        let n = self.key_size.min(be.len());
        key[self.key_size - n..].copy_from_slice(&be[be.len() - n..]);
        key
    }

    /// Builds the put request for global sequence number `seq`.
    pub fn request(&self, seq: u64, rng: &mut Rng) -> PutRequest {
        let key = self.encode_key(self.key_index(seq, rng));
        PutRequest {
            key,
            value: self.value.clone(),
            ..Default::default()
        }
    }
}

/// Parameters of the `range` workload.
#[derive(Debug, Clone)]
pub struct RangeWorkload {
    /// The request sent every time.
    pub request: RangeRequest,
}

impl RangeWorkload {
    /// Builds a range workload over `[key, end)` (or the single `key`).
    pub fn new(key: &str, end: Option<&str>, serializable: bool, limit: i64) -> Self {
        RangeWorkload {
            request: RangeRequest {
                key: key.as_bytes().to_vec(),
                range_end: end.map(|e| e.as_bytes().to_vec()).unwrap_or_default(),
                limit,
                serializable,
                ..Default::default()
            },
        }
    }
}

/// A benchmark workload: what every request looks like.
#[derive(Debug, Clone)]
pub enum Workload {
    /// `Put` requests.
    Put(PutWorkload),
    /// `Range` requests.
    Range(RangeWorkload),
    /// The puts of the `watch` workload (stamped with their send time).
    Watch(WatchTarget),
}

impl Workload {
    /// Short name of the workload, used in the JSON summary.
    pub fn name(&self) -> &'static str {
        match self {
            Workload::Put(_) => "put",
            Workload::Range(_) => "range",
            Workload::Watch(_) => "watch",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn sequential_keys_cycle_through_key_space() {
        let w = PutWorkload::new(8, 4, 5, true).unwrap();
        let mut rng = Rng::new(1);
        let idx: Vec<u64> = (0..12).map(|s| w.key_index(s, &mut rng)).collect();
        assert_eq!(idx, vec![0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]);
        let r = w.request(7, &mut rng);
        assert_eq!(r.key, vec![0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(r.value.len(), 4);
    }

    #[test]
    fn random_keys_stay_in_key_space_and_cover_it() {
        let w = PutWorkload::new(8, 8, 10, false).unwrap();
        let mut rng = Rng::new(42);
        let mut seen = HashSet::new();
        for s in 0..2000 {
            let i = w.key_index(s, &mut rng);
            assert!(i < 10);
            seen.insert(i);
        }
        assert_eq!(seen.len(), 10, "all keys of a small space get hit");
        // Key space of one: always the same key.
        let one = PutWorkload::new(8, 8, 1, false).unwrap();
        assert!((0..100).all(|s| one.key_index(s, &mut rng) == 0));
    }

    #[test]
    fn key_size_is_respected() {
        for size in [1usize, 2, 3, 8, 16, 100] {
            let w = PutWorkload::new(size, 8, 200, false).unwrap();
            let mut rng = Rng::new(size as u64);
            for s in 0..50 {
                assert_eq!(w.request(s, &mut rng).key.len(), size);
            }
        }
        let w = PutWorkload::new(3, 0, 1 << 20, true).unwrap();
        assert_eq!(w.encode_key(0x0001_0203), vec![1, 2, 3]);
        let w = PutWorkload::new(10, 0, 1, true).unwrap();
        assert_eq!(w.encode_key(0x0102), vec![0, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
    }

    #[test]
    fn distinct_indices_give_distinct_keys() {
        let w = PutWorkload::new(2, 0, 65536, true).unwrap();
        let keys: HashSet<Vec<u8>> = (0..65536).map(|i| w.encode_key(i)).collect();
        assert_eq!(keys.len(), 65536);
    }

    #[test]
    fn rejects_key_space_too_large_for_key_size() {
        assert!(PutWorkload::new(1, 8, 257, false).is_err());
        assert!(PutWorkload::new(1, 8, 256, false).is_ok());
        assert!(PutWorkload::new(0, 8, 1, false).is_err());
        assert!(PutWorkload::new(8, 8, 0, false).is_err());
    }

    #[test]
    fn value_size_and_range_request() {
        let w = PutWorkload::new(8, 256, 1, false).unwrap();
        assert_eq!(w.value.len(), 256);
        let r = RangeWorkload::new("foo", Some("fop"), true, 10).request;
        assert_eq!(r.key, b"foo");
        assert_eq!(r.range_end, b"fop");
        assert!(r.serializable);
        assert_eq!(r.limit, 10);
        let r = RangeWorkload::new("foo", None, false, 0).request;
        assert!(r.range_end.is_empty() && !r.serializable);
    }
}
