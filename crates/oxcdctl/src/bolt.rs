//! A read-only walk over a bbolt file (etcd's backend and snapshot format), enough for
//! `snapshot status`: every bucket in order, and every key and value in each.

use std::fmt;

const MAGIC: u32 = 0xED0C_DAED;
const PAGE_HEADER: usize = 16;
const BRANCH_PAGE: u16 = 0x01;
const LEAF_PAGE: u16 = 0x02;
const BUCKET_LEAF: u32 = 0x01;
/// Deeper B+tree than any real file has.
const MAX_DEPTH: usize = 64;

/// Why a file is not a readable bbolt database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BoltError(pub String);

impl fmt::Display for BoltError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BoltError {}

fn err<T>(text: &str) -> Result<T, BoltError> {
    Err(BoltError(text.to_string()))
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, BoltError> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| BoltError("truncated page".into()))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, BoltError> {
    let s = b
        .get(at..at + 4)
        .ok_or_else(|| BoltError("truncated page".into()))?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, BoltError> {
    let s = b
        .get(at..at + 8)
        .ok_or_else(|| BoltError("truncated page".into()))?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

/// An open (in-memory) bbolt file.
#[derive(Debug)]
pub(crate) struct Db<'a> {
    data: &'a [u8],
    page_size: usize,
    root: u64,
    /// The high-water page id (bbolt's `tx.Size()` is this times the page size).
    pub high_water: u64,
}

/// FNV-1a 64 of a meta page's fields, bbolt's meta checksum.
fn fnv64a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl<'a> Db<'a> {
    /// Reads the newer valid meta page.
    pub(crate) fn open(data: &'a [u8]) -> Result<Db<'a>, BoltError> {
        let meta_at = |offset: usize| -> Result<(u64, u64, u64, usize), BoltError> {
            let m = offset + PAGE_HEADER;
            if u32_at(data, m)? != MAGIC {
                return err("invalid database");
            }
            let page_size = u32_at(data, m + 8)? as usize;
            let root = u64_at(data, m + 16)?;
            let high_water = u64_at(data, m + 40)?;
            let txid = u64_at(data, m + 48)?;
            let checksum = u64_at(data, m + 56)?;
            if fnv64a(data.get(m..m + 56).unwrap_or_default()) != checksum {
                return err("checksum error");
            }
            Ok((txid, root, high_water, page_size))
        };
        let first = meta_at(0);
        let page_size = match &first {
            Ok(m) => m.3,
            Err(_) => u32_at(data, PAGE_HEADER + 8)? as usize,
        };
        let second = if page_size >= 1024 {
            meta_at(page_size)
        } else {
            err("invalid page size")
        };
        let (_, root, high_water, page_size) = match (first, second) {
            (Ok(a), Ok(b)) => {
                if a.0 >= b.0 {
                    a
                } else {
                    b
                }
            }
            (Ok(a), Err(_)) | (Err(_), Ok(a)) => a,
            (Err(e), Err(_)) => return Err(e),
        };
        Ok(Db {
            data,
            page_size,
            root,
            high_water,
        })
    }

    /// The page size.
    pub(crate) fn page_size(&self) -> usize {
        self.page_size
    }

    fn page(&self, id: u64) -> Result<&'a [u8], BoltError> {
        usize::try_from(id)
            .ok()
            .and_then(|id| id.checked_mul(self.page_size))
            .and_then(|start| self.data.get(start..))
            .ok_or_else(|| BoltError(format!("page {id} is beyond the end of the file")))
    }

    /// Calls `visit(key, value, is_bucket)` for each element under the page, in key order.
    fn walk(
        &self,
        page: &'a [u8],
        visit: &mut dyn FnMut(&'a [u8], &'a [u8], bool) -> Result<(), BoltError>,
    ) -> Result<(), BoltError> {
        self.walk_at(page, visit, 0)
    }

    /// [`Db::walk`] at a tree depth (a corrupt file must not recurse for ever).
    fn walk_at(
        &self,
        page: &'a [u8],
        visit: &mut dyn FnMut(&'a [u8], &'a [u8], bool) -> Result<(), BoltError>,
        depth: usize,
    ) -> Result<(), BoltError> {
        if depth > MAX_DEPTH {
            return err("page tree too deep (corrupt file?)");
        }
        let flags = u16_at(page, 8)?;
        let count = u16_at(page, 10)? as usize;
        for i in 0..count {
            let elem = PAGE_HEADER + i * 16;
            if flags & BRANCH_PAGE != 0 {
                let child = u64_at(page, elem + 8)?;
                let child_page = self.page(child)?;
                self.walk_at(child_page, visit, depth + 1)?;
            } else if flags & LEAF_PAGE != 0 {
                let elem_flags = u32_at(page, elem)?;
                let pos = u32_at(page, elem + 4)? as usize;
                let ksize = u32_at(page, elem + 8)? as usize;
                let vsize = u32_at(page, elem + 12)? as usize;
                let k_at = elem + pos;
                let key = page
                    .get(k_at..k_at + ksize)
                    .ok_or_else(|| BoltError("truncated leaf".into()))?;
                let value = page
                    .get(k_at + ksize..k_at + ksize + vsize)
                    .ok_or_else(|| BoltError("truncated leaf".into()))?;
                visit(key, value, elem_flags & BUCKET_LEAF != 0)?;
            } else {
                return err("unexpected page type");
            }
        }
        Ok(())
    }

    /// Every key and value of the bucket whose header is `header`.
    fn each_in_bucket(
        &self,
        header: &'a [u8],
        visit: &mut dyn FnMut(&'a [u8], &'a [u8]) -> Result<(), BoltError>,
    ) -> Result<(), BoltError> {
        let root = u64_at(header, 0)?;
        let page: &'a [u8] = if root == 0 {
            header
                .get(16..)
                .ok_or_else(|| BoltError("truncated inline bucket".into()))?
        } else {
            self.page(root)?
        };
        self.walk(page, &mut |k, v, _| visit(k, v))
    }

    /// Every bucket (name, then its keys and values), in order.
    pub(crate) fn for_each_bucket(
        &self,
        mut visit: impl FnMut(
            &'a [u8],
            &mut dyn FnMut(
                &mut dyn FnMut(&'a [u8], &'a [u8]) -> Result<(), BoltError>,
            ) -> Result<(), BoltError>,
        ) -> Result<(), BoltError>,
    ) -> Result<(), BoltError> {
        let root = self.page(self.root)?;
        let mut buckets: Vec<(&'a [u8], &'a [u8])> = Vec::new();
        self.walk(root, &mut |k, v, is_bucket| {
            if is_bucket {
                buckets.push((k, v));
            }
            Ok(())
        })?;
        for (name, header) in buckets {
            visit(name, &mut |f| self.each_in_bucket(header, f))?;
        }
        Ok(())
    }
}

/// CRC-32 with the Castagnoli polynomial (Go's `crc32.MakeTable(crc32.Castagnoli)`).
#[derive(Debug, Clone)]
pub(crate) struct Crc32c {
    table: [u32; 256],
    crc: u32,
}

impl Default for Crc32c {
    fn default() -> Self {
        let mut table = [0u32; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0x82F6_3B78 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        Crc32c { table, crc: 0 }
    }
}

impl Crc32c {
    /// Adds bytes.
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        let mut c = !self.crc;
        for b in bytes {
            c = self.table[((c ^ u32::from(*b)) & 0xff) as usize] ^ (c >> 8);
        }
        self.crc = !c;
    }

    /// The checksum so far.
    pub(crate) fn sum(&self) -> u32 {
        self.crc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        let mut h = Crc32c::default();
        h.write(b"123456789");
        assert_eq!(h.sum(), 0xE306_9283);
    }

    #[test]
    fn garbage_is_not_a_database() {
        assert!(Db::open(&[0u8; 8192]).is_err());
    }
}
