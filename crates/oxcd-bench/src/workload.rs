//! Request generation for the benchmark workloads.
//!
//! Every client task owns a [`Rng`] and asks the shared [`Workload`] for the
//! request that corresponds to a global sequence number.

use oxcd_proto::etcdserverpb::{request_op, PutRequest, RangeRequest, RequestOp, TxnRequest};

use crate::watch::WatchTarget;

/// Small, fast, deterministic pseudo random generator (SplitMix64).
///
/// Good enough for picking keys and filling values; not cryptographic.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// Creates a generator from a seed.
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Returns the next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Returns a number in `0..n` (`n` must be non-zero).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        // Multiply-shift: unbiased enough for benchmarking purposes.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Returns a uniformly distributed number in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        // The top 53 bits fill an f64 mantissa exactly.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Returns `n` distinct numbers in `0..space` (`n <= space`), uniformly chosen
    /// (Floyd's algorithm: `n` draws, never a retry loop).
    pub(crate) fn distinct_below(&mut self, n: u64, space: u64) -> Vec<u64> {
        let mut out: Vec<u64> = Vec::with_capacity(n as usize);
        for j in space - n..space {
            let t = self.below(j + 1);
            if out.contains(&t) {
                out.push(j);
            } else {
                out.push(t);
            }
        }
        out
    }

    /// Returns `len` random printable bytes.
    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len() as u64) as usize])
            .collect()
    }
}

/// Parameters of the `put` workload.
#[derive(Debug, Clone)]
pub(crate) struct PutWorkload {
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
    pub(crate) fn new(
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
    pub(crate) fn key_index(&self, seq: u64, rng: &mut Rng) -> u64 {
        if self.sequential {
            seq % self.key_space_size
        } else {
            rng.below(self.key_space_size)
        }
    }

    /// Encodes a key index as exactly `key_size` bytes: zero padding followed
    /// by the big-endian index, so sequential keys also sort in order.
    pub(crate) fn encode_key(&self, index: u64) -> Vec<u8> {
        let mut key = vec![0u8; self.key_size];
        let be = index.to_be_bytes();
        let n = self.key_size.min(be.len());
        key[self.key_size - n..].copy_from_slice(&be[be.len() - n..]);
        key
    }

    /// Builds the put request for global sequence number `seq`.
    pub(crate) fn request(&self, seq: u64, rng: &mut Rng) -> PutRequest {
        let key = self.encode_key(self.key_index(seq, rng));
        PutRequest {
            key,
            value: self.value.clone(),
            ..Default::default()
        }
    }
}

/// Parameters of the `txn-put` workload: every request is a Txn without compares whose
/// success branch puts `txn_ops` distinct keys of the key space.
#[derive(Debug, Clone)]
pub(crate) struct TxnPutWorkload {
    /// Keys and value, as for `put`.
    pub put: PutWorkload,
    /// Puts per txn (at least 1, at most the key space: keys in a txn must differ).
    pub txn_ops: u64,
}

impl TxnPutWorkload {
    /// Builds a txn-put workload.
    pub(crate) fn new(put: PutWorkload, txn_ops: u64) -> Result<Self, String> {
        if txn_ops == 0 {
            return Err("--txn-ops must be at least 1".into());
        }
        if txn_ops > put.key_space_size {
            return Err(format!(
                "--txn-ops {txn_ops} is larger than --key-space-size {} (the keys of one txn must differ)",
                put.key_space_size
            ));
        }
        Ok(TxnPutWorkload { put, txn_ops })
    }

    /// Key indices written by request `seq`: `txn_ops` distinct indices, random, or
    /// `seq * txn_ops + j` modulo the key space with --sequential-keys (etcd's pattern).
    pub(crate) fn key_indices(&self, seq: u64, rng: &mut Rng) -> Vec<u64> {
        let space = self.put.key_space_size;
        if self.put.sequential {
            (0..self.txn_ops)
                .map(|j| (seq.wrapping_mul(self.txn_ops).wrapping_add(j)) % space)
                .collect()
        } else {
            rng.distinct_below(self.txn_ops, space)
        }
    }

    /// Builds the txn for global sequence number `seq`.
    pub(crate) fn request(&self, seq: u64, rng: &mut Rng) -> TxnRequest {
        let success = self
            .key_indices(seq, rng)
            .into_iter()
            .map(|i| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: self.put.encode_key(i),
                    value: self.put.value.clone(),
                    ..Default::default()
                })),
            })
            .collect();
        TxnRequest {
            success,
            ..Default::default()
        }
    }
}

/// Parameters of the `txn-mixed` workload (etcd's `txn-mixed`): every request is a Txn
/// holding either one Range (a read) or one Put (a write); a request is a read with
/// probability `rw_ratio / (1 + rw_ratio)`.
#[derive(Debug, Clone)]
pub(crate) struct TxnMixedWorkload {
    /// The writes' keys and value, as for `put`.
    pub put: PutWorkload,
    /// The range every read sends.
    pub read: RangeRequest,
    /// Reads per write (0 = writes only).
    pub rw_ratio: f64,
}

impl TxnMixedWorkload {
    /// Builds a txn-mixed workload.
    pub(crate) fn new(put: PutWorkload, read: RangeRequest, rw_ratio: f64) -> Result<Self, String> {
        if !rw_ratio.is_finite() || rw_ratio < 0.0 {
            return Err(format!(
                "--rw-ratio must be a finite number >= 0, not {rw_ratio}"
            ));
        }
        Ok(TxnMixedWorkload {
            put,
            read,
            rw_ratio,
        })
    }

    /// Probability of a request being a read.
    pub(crate) fn read_probability(&self) -> f64 {
        self.rw_ratio / (1.0 + self.rw_ratio)
    }

    /// Builds request `seq`: `(true, txn)` for a read, `(false, txn)` for a write.
    pub(crate) fn request(&self, seq: u64, rng: &mut Rng) -> (bool, TxnRequest) {
        let is_read = rng.next_f64() < self.read_probability();
        let op = if is_read {
            request_op::Request::RequestRange(self.read.clone())
        } else {
            request_op::Request::RequestPut(self.put.request(seq, rng))
        };
        let txn = TxnRequest {
            success: vec![RequestOp { request: Some(op) }],
            ..Default::default()
        };
        (is_read, txn)
    }
}

/// Parameters of the `range` workload.
#[derive(Debug, Clone)]
pub(crate) struct RangeWorkload {
    /// The request sent every time.
    pub request: RangeRequest,
}

impl RangeWorkload {
    /// Builds a range workload over `[key, end)` (or the single `key`).
    pub(crate) fn new(key: &str, end: Option<&str>, serializable: bool, limit: i64) -> Self {
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
pub(crate) enum Workload {
    /// `Put` requests.
    Put(PutWorkload),
    /// `Range` requests.
    Range(RangeWorkload),
    /// Txns of puts.
    TxnPut(TxnPutWorkload),
    /// Txns of one range or one put.
    TxnMixed(TxnMixedWorkload),
    /// Lease keep-alive round trips on one stream per client, each client on its own
    /// lease of this TTL (seconds).
    LeaseKeepAlive {
        /// TTL of every client's lease, seconds.
        ttl: i64,
    },
    /// The puts of the `watch` and `watch-latency` workloads (stamped with their send
    /// time).
    Watch(WatchTarget),
}

impl Workload {
    /// Short name of the workload, used in the JSON summary.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Workload::Put(_) => "put",
            Workload::Range(_) => "range",
            Workload::TxnPut(_) => "txn-put",
            Workload::TxnMixed(_) => "txn-mixed",
            Workload::LeaseKeepAlive { .. } => "lease-keepalive",
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
    fn unit_floats_stay_in_range() {
        let mut rng = Rng::new(9);
        let mut sum = 0.0;
        for _ in 0..100_000 {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
            sum += x;
        }
        let mean = sum / 100_000.0;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn random_keys_are_uniform_over_key_space() {
        // 100 keys, 200,000 draws: each key expects 2,000; 5 standard deviations is
        // ~220, so a biased or clumped generator fails.
        let w = PutWorkload::new(8, 8, 100, false).unwrap();
        let mut rng = Rng::new(7);
        let mut counts = [0u32; 100];
        for s in 0..200_000 {
            counts[w.key_index(s, &mut rng) as usize] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 1750 && *max < 2250, "min {min} max {max}");
        // Different clients (seeds) do not write the same key sequence.
        let mut a = Rng::new(1);
        let mut b = Rng::new(2);
        let sa: Vec<u64> = (0..20).map(|s| w.key_index(s, &mut a)).collect();
        let sb: Vec<u64> = (0..20).map(|s| w.key_index(s, &mut b)).collect();
        assert_ne!(sa, sb);
    }

    fn puts_of(txn: &TxnRequest) -> Vec<&PutRequest> {
        assert!(txn.compare.is_empty() && txn.failure.is_empty());
        txn.success
            .iter()
            .map(|op| match &op.request {
                Some(request_op::Request::RequestPut(p)) => p,
                other => panic!("expected a put, got {other:?}"),
            })
            .collect()
    }

    #[test]
    fn txn_put_has_txn_ops_distinct_puts() {
        for (ops, space) in [(1u64, 1u64), (1, 1000), (4, 10), (10, 10), (64, 100_000)] {
            let w =
                TxnPutWorkload::new(PutWorkload::new(8, 16, space, false).unwrap(), ops).unwrap();
            let mut rng = Rng::new(ops * 31 + space);
            for seq in 0..300 {
                let txn = w.request(seq, &mut rng);
                let puts = puts_of(&txn);
                assert_eq!(puts.len() as u64, ops);
                let keys: HashSet<&[u8]> = puts.iter().map(|p| p.key.as_slice()).collect();
                assert_eq!(keys.len() as u64, ops, "keys of one txn must differ");
                for p in &puts {
                    assert_eq!(p.key.len(), 8);
                    assert_eq!(p.value.len(), 16);
                    let idx = u64::from_be_bytes(p.key.as_slice().try_into().unwrap());
                    assert!(idx < space);
                }
            }
        }
    }

    #[test]
    fn txn_put_random_keys_cover_key_space_uniformly() {
        let w = TxnPutWorkload::new(PutWorkload::new(8, 8, 50, false).unwrap(), 5).unwrap();
        let mut rng = Rng::new(3);
        let mut counts = [0u32; 50];
        for seq in 0..40_000 {
            for i in w.key_indices(seq, &mut rng) {
                counts[i as usize] += 1;
            }
        }
        // 200,000 picks over 50 keys: 4,000 each expected.
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 3650 && *max < 4350, "min {min} max {max}");
    }

    #[test]
    fn txn_put_sequential_keys_follow_etcd() {
        let w = TxnPutWorkload::new(PutWorkload::new(8, 8, 10, true).unwrap(), 3).unwrap();
        let mut rng = Rng::new(0);
        assert_eq!(w.key_indices(0, &mut rng), vec![0, 1, 2]);
        assert_eq!(w.key_indices(1, &mut rng), vec![3, 4, 5]);
        assert_eq!(w.key_indices(3, &mut rng), vec![9, 0, 1]);
    }

    #[test]
    fn txn_put_rejects_bad_op_counts() {
        let put = PutWorkload::new(8, 8, 4, false).unwrap();
        assert!(TxnPutWorkload::new(put.clone(), 0).is_err());
        assert!(TxnPutWorkload::new(put.clone(), 5).is_err());
        assert!(TxnPutWorkload::new(put, 4).is_ok());
    }

    #[test]
    fn distinct_below_is_distinct_and_in_range() {
        let mut rng = Rng::new(5);
        for (n, space) in [(0u64, 0u64), (0, 5), (1, 1), (5, 5), (3, 7), (100, 1000)] {
            let v = rng.distinct_below(n, space);
            assert_eq!(v.len() as u64, n);
            assert!(v.iter().all(|&x| x < space));
            assert_eq!(v.iter().collect::<HashSet<_>>().len() as u64, n);
        }
    }

    fn mixed(rw: f64) -> TxnMixedWorkload {
        let read = RangeWorkload::new("a", Some("z"), true, 100).request;
        TxnMixedWorkload::new(PutWorkload::new(8, 8, 1000, false).unwrap(), read, rw).unwrap()
    }

    /// Fraction of reads in `n` requests of `w`, checking each request's shape.
    fn read_fraction(w: &TxnMixedWorkload, n: u64) -> f64 {
        let mut rng = Rng::new(11);
        let mut reads = 0;
        for seq in 0..n {
            let (is_read, txn) = w.request(seq, &mut rng);
            assert_eq!(txn.success.len(), 1);
            assert!(txn.compare.is_empty() && txn.failure.is_empty());
            match &txn.success[0].request {
                Some(request_op::Request::RequestRange(r)) => {
                    assert!(is_read);
                    assert_eq!(r, &w.read);
                    reads += 1;
                }
                Some(request_op::Request::RequestPut(p)) => {
                    assert!(!is_read);
                    assert_eq!(p.key.len(), 8);
                }
                other => panic!("unexpected op {other:?}"),
            }
        }
        reads as f64 / n as f64
    }

    #[test]
    fn txn_mixed_follows_rw_ratio() {
        for (rw, expected) in [(1.0, 0.5), (3.0, 0.75), (0.25, 0.2), (9.0, 0.9)] {
            let f = read_fraction(&mixed(rw), 100_000);
            assert!((f - expected).abs() < 0.01, "rw {rw}: read fraction {f}");
        }
        assert_eq!(read_fraction(&mixed(0.0), 10_000), 0.0);
    }

    #[test]
    fn txn_mixed_rejects_bad_ratios() {
        let read = RangeRequest::default();
        let put = PutWorkload::new(8, 8, 1, false).unwrap();
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(TxnMixedWorkload::new(put.clone(), read.clone(), bad).is_err());
        }
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
