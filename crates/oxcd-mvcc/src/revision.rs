//! Revisions and their on-disk key encoding.

use crate::MvccError;

/// Length of an encoded revision: 8-byte big-endian main, `_`, 8-byte big-endian sub.
pub const REV_BYTES_LEN: usize = 17;
/// Marker byte appended to the key of a tombstone revision (as etcd does).
pub const TOMBSTONE_MARK: u8 = b't';

/// A revision: `main` is bumped once per write request (or txn), `sub` orders the
/// changes inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    /// Main revision (the store revision of the write request).
    pub main: i64,
    /// Sub revision: index of the change inside the write request.
    pub sub: i64,
}

impl Revision {
    /// Creates a revision.
    pub const fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }

    /// Encodes as the 17-byte backend key, plus the tombstone marker if `tombstone`.
    /// Encoded keys sort like revisions because main/sub are never negative.
    pub fn to_bytes(self, tombstone: bool) -> Vec<u8> {
        let mut b = Vec::with_capacity(REV_BYTES_LEN + 1);
        b.extend_from_slice(&self.main.to_be_bytes());
        b.push(b'_');
        b.extend_from_slice(&self.sub.to_be_bytes());
        if tombstone {
            b.push(TOMBSTONE_MARK);
        }
        b
    }

    /// Decodes a backend key; returns the revision and whether it is a tombstone.
    pub fn from_bytes(b: &[u8]) -> Result<(Revision, bool), MvccError> {
        let tombstone = match b.len() {
            REV_BYTES_LEN => false,
            n if n == REV_BYTES_LEN + 1 && b[REV_BYTES_LEN] == TOMBSTONE_MARK => true,
            _ => return Err(MvccError::corrupt(format!("bad revision key {b:?}"))),
        };
        if b[8] != b'_' {
            return Err(MvccError::corrupt(format!("bad revision key {b:?}")));
        }
        let mut main = [0u8; 8];
        let mut sub = [0u8; 8];
        main.copy_from_slice(&b[0..8]);
        sub.copy_from_slice(&b[9..17]);
        Ok((
            Revision::new(i64::from_be_bytes(main), i64::from_be_bytes(sub)),
            tombstone,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_order() {
        let revs = [
            Revision::new(0, 0),
            Revision::new(1, 0),
            Revision::new(1, 1),
            Revision::new(2, 0),
            Revision::new(256, 3),
            Revision::new(i64::MAX, i64::MAX),
        ];
        for w in revs.windows(2) {
            assert!(w[0].to_bytes(false) < w[1].to_bytes(true));
            assert!(w[0].to_bytes(true) < w[1].to_bytes(false));
        }
        for r in revs {
            assert_eq!(
                Revision::from_bytes(&r.to_bytes(false)).unwrap(),
                (r, false)
            );
            assert_eq!(Revision::from_bytes(&r.to_bytes(true)).unwrap(), (r, true));
        }
        assert!(Revision::from_bytes(b"short").is_err());
        let mut bad = Revision::new(1, 1).to_bytes(false);
        bad.push(b'x');
        assert!(Revision::from_bytes(&bad).is_err());
    }
}
