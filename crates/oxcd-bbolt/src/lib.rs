//! oxcd-bbolt: a small, read-only reader of bbolt files — the format of etcd's backend
//! (`member/snap/db`) and of the snapshots `etcdctl snapshot save` writes — so that oxcd
//! can import what etcd stored. Written from the format's description; it never writes.
//!
//! # The format
//!
//! A bbolt file is an array of fixed-size pages (the page size is recorded in the meta
//! pages; 4096 on x86-64 Linux). Every integer is little-endian. Each page starts with a
//! 16-byte header:
//!
//! ```text
//! id: u64 | flags: u16 | count: u16 | overflow: u32
//! ```
//!
//! `flags` is one of branch (0x01), leaf (0x02), meta (0x04) or freelist (0x10); `overflow`
//! is the number of further pages the page spans (a large value or a long freelist);
//! `count` is the number of elements.
//!
//! * **Meta pages** 0 and 1 (written alternately by commits) hold, after the header:
//!   `magic: u32 (0xED0CDAED) | version: u32 (2) | page_size: u32 | flags: u32 |
//!   root bucket: (root page: u64, sequence: u64) | freelist page: u64 |
//!   high-water page id: u64 | txid: u64 | checksum: u64`, where the checksum is FNV-1a
//!   (64-bit) over the 56 bytes before it. A reader takes the valid meta with the higher
//!   txid: the other may be a torn write.
//! * **Branch pages** hold `count` elements of `(pos: u32, ksize: u32, page: u64)`, each
//!   the first key of a child page; `pos` is the key's offset from its element.
//! * **Leaf pages** hold `count` elements of `(flags: u32, pos: u32, ksize: u32,
//!   vsize: u32)`; key and value follow each other at `pos` from the element. An element
//!   with flag 0x01 is a nested bucket, its value a bucket header.
//! * **Buckets** are B+trees of branch and leaf pages. A bucket header is
//!   `(root page: u64, sequence: u64)`; a root of 0 means an *inline* bucket, whose single
//!   leaf page (header included) follows the header in the value itself. The meta's root
//!   bucket holds the top-level buckets (etcd's `key`, `meta`, `lease`, `auth`, ...).
//! * **Freelist page**: `count` page ids (u64); a count of 0xFFFF means the real count is
//!   the first u64. A freelist page id of `u64::MAX` means the freelist was not written
//!   (bbolt's `NoFreelistSync`).
//!
//! bbolt has no checksums on data pages; this reader checks everything that it can instead:
//! the meta checksums, magic and version, that every page it reads is inside the file and
//! below the high-water mark, names itself in its header and has the type its parent
//! expects, that every element lies inside its page, that keys ascend, and (in
//! [`Db::check`]) that no page is reachable twice or both reachable and free. A damaged
//! file gives an [`Error`] naming the page, never a panic.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};

/// bbolt's magic number, in both meta pages.
pub const MAGIC: u32 = 0xED0C_DAED;
/// The file format version this reader understands (bbolt's only one).
pub const VERSION: u32 = 2;
/// Page header size.
const PAGE_HEADER: usize = 16;
/// Size of a branch or a leaf element.
const ELEMENT: usize = 16;
/// Size of a bucket header (root page, sequence).
const BUCKET_HEADER: usize = 16;
/// Bytes of a meta covered by its checksum.
const META_SUMMED: usize = 56;
/// Branch page flag.
const BRANCH_PAGE: u16 = 0x01;
/// Leaf page flag.
const LEAF_PAGE: u16 = 0x02;
/// Meta page flag.
const META_PAGE: u16 = 0x04;
/// Freelist page flag.
const FREELIST_PAGE: u16 = 0x10;
/// Leaf element flag of a nested bucket.
const BUCKET_LEAF: u32 = 0x01;
/// The freelist page id meaning "not written".
const NO_FREELIST: u64 = u64::MAX;
/// Deeper than any real tree: a corrupt file must not make us recurse for ever.
const MAX_DEPTH: usize = 64;

/// Why a file cannot be read as a bbolt database.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not a bbolt file at all (no magic, too short, nonsensical page size).
    #[error("not a bbolt database: {0}")]
    Invalid(String),
    /// A bbolt file of another format version.
    #[error("unsupported bbolt format version {0} (this reader knows version 2)")]
    Version(u32),
    /// Both meta pages are unusable.
    #[error("no valid meta page: {0}")]
    Meta(String),
    /// The file is shorter than its meta page says it is.
    #[error(
        "truncated bbolt database: its meta page says {needed} bytes ({pages} pages of \
         {page_size}), the file has {len}"
    )]
    Truncated {
        /// Bytes the meta page says the file has at least.
        needed: u64,
        /// Pages in use.
        pages: u64,
        /// Page size.
        page_size: usize,
        /// Bytes the file has.
        len: u64,
    },
    /// Damage found on a page.
    #[error("corrupt bbolt database: page {page}: {what}")]
    Corrupt {
        /// The page (0 for an inline bucket's page).
        page: u64,
        /// What is wrong.
        what: String,
    },
}

fn corrupt(page: u64, what: impl Into<String>) -> Error {
    Error::Corrupt {
        page,
        what: what.into(),
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// FNV-1a, 64 bits: bbolt's meta checksum.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A decoded meta page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Which meta page it is (0 or 1).
    pub page: u64,
    /// Page size in bytes.
    pub page_size: usize,
    /// Meta flags (unused by bbolt, kept).
    pub flags: u32,
    /// Root page of the root bucket.
    pub root: u64,
    /// Sequence of the root bucket.
    pub root_sequence: u64,
    /// Freelist page, `None` if the freelist was not written.
    pub freelist: Option<u64>,
    /// High-water mark: the number of pages in use (ids below it are valid).
    pub high_water: u64,
    /// Id of the transaction that wrote it.
    pub txid: u64,
}

impl Meta {
    /// Decodes and checks the meta at byte `offset` of `data` (page `page`).
    fn read(data: &[u8], offset: usize, page: u64) -> Result<Meta, Error> {
        let hdr = data
            .get(offset..offset + PAGE_HEADER)
            .ok_or_else(|| Error::Invalid(format!("file too short for meta page {page}")))?;
        let m = offset + PAGE_HEADER;
        let field32 = |at: usize| {
            u32_at(data, m + at)
                .ok_or_else(|| Error::Invalid(format!("file too short for meta page {page}")))
        };
        let field64 = |at: usize| {
            u64_at(data, m + at)
                .ok_or_else(|| Error::Invalid(format!("file too short for meta page {page}")))
        };
        if field32(0)? != MAGIC {
            return Err(Error::Invalid(format!(
                "no magic number in meta page {page}"
            )));
        }
        let version = field32(4)?;
        if version != VERSION {
            return Err(Error::Version(version));
        }
        let checksum = field64(56)?;
        let summed = &data[m..m + META_SUMMED];
        if checksum != fnv1a64(summed) {
            return Err(Error::Meta(format!("meta page {page}: checksum mismatch")));
        }
        // The header's flags are checked after the checksum: the checksum only covers the
        // meta itself.
        if u16_at(hdr, 8) != Some(META_PAGE) {
            return Err(corrupt(page, "meta page without the meta flag"));
        }
        let page_size = field32(8)? as usize;
        if !page_size.is_power_of_two() || !(512..=1 << 20).contains(&page_size) {
            return Err(Error::Invalid(format!(
                "meta page {page}: page size {page_size} is not a power of two in 512..=1MiB"
            )));
        }
        let root = field64(16)?;
        let freelist = field64(32)?;
        let high_water = field64(40)?;
        let meta = Meta {
            page,
            page_size,
            flags: field32(12)?,
            root,
            root_sequence: field64(24)?,
            freelist: (freelist != NO_FREELIST).then_some(freelist),
            high_water,
            txid: field64(48)?,
        };
        if high_water < 3 {
            return Err(corrupt(
                page,
                format!("high-water mark {high_water} leaves no page for the root"),
            ));
        }
        if root < 2 || root >= high_water {
            return Err(corrupt(
                page,
                format!("root page {root} outside 2..{high_water}"),
            ));
        }
        if let Some(f) = meta.freelist {
            if f < 2 || f >= high_water {
                return Err(corrupt(
                    page,
                    format!("freelist page {f} outside 2..{high_water}"),
                ));
            }
        }
        let needed = high_water.saturating_mul(page_size as u64);
        if needed > data.len() as u64 {
            return Err(Error::Truncated {
                needed,
                pages: high_water,
                page_size,
                len: data.len() as u64,
            });
        }
        Ok(meta)
    }
}

/// An open bbolt file, held in memory.
#[derive(Debug)]
pub struct Db {
    data: Vec<u8>,
    meta: Meta,
}

/// A page as read: its id (0 for an inline bucket's page), flags, element count and bytes
/// (all the pages it spans).
#[derive(Debug, Clone, Copy)]
struct Page<'a> {
    id: u64,
    flags: u16,
    count: usize,
    data: &'a [u8],
}

impl<'a> Page<'a> {
    fn is_leaf(&self) -> bool {
        self.flags & LEAF_PAGE != 0
    }

    /// The key of branch element `i` and the child it points to.
    fn branch(&self, i: usize) -> Result<(&'a [u8], u64), Error> {
        let at = PAGE_HEADER + i * ELEMENT;
        let bad = || corrupt(self.id, format!("branch element {i} out of the page"));
        let pos = u32_at(self.data, at).ok_or_else(bad)? as usize;
        let ksize = u32_at(self.data, at + 4).ok_or_else(bad)? as usize;
        let child = u64_at(self.data, at + 8).ok_or_else(bad)?;
        let key = at
            .checked_add(pos)
            .and_then(|k| self.data.get(k..k.checked_add(ksize)?))
            .ok_or_else(|| {
                corrupt(
                    self.id,
                    format!("key of branch element {i} out of the page"),
                )
            })?;
        Ok((key, child))
    }

    /// Leaf element `i`: flags, key, value.
    fn leaf(&self, i: usize) -> Result<(u32, &'a [u8], &'a [u8]), Error> {
        let at = PAGE_HEADER + i * ELEMENT;
        let bad = || corrupt(self.id, format!("leaf element {i} out of the page"));
        let flags = u32_at(self.data, at).ok_or_else(bad)?;
        let pos = u32_at(self.data, at + 4).ok_or_else(bad)? as usize;
        let ksize = u32_at(self.data, at + 8).ok_or_else(bad)? as usize;
        let vsize = u32_at(self.data, at + 12).ok_or_else(bad)? as usize;
        let out = || {
            corrupt(
                self.id,
                format!("key or value of leaf element {i} out of the page"),
            )
        };
        let k = at.checked_add(pos).ok_or_else(out)?;
        let v = k.checked_add(ksize).ok_or_else(out)?;
        let end = v.checked_add(vsize).ok_or_else(out)?;
        let key = self.data.get(k..v).ok_or_else(out)?;
        let value = self.data.get(v..end).ok_or_else(out)?;
        Ok((flags, key, value))
    }
}

impl Db {
    /// Reads and opens the file at `path`.
    pub fn open(path: &Path) -> Result<Db, Error> {
        let data = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Db::from_bytes(data)
    }

    /// Opens a database held in memory: picks the valid meta page with the newer
    /// transaction, as bbolt does.
    pub fn from_bytes(data: Vec<u8>) -> Result<Db, Error> {
        if data.len() < 2 * 512 {
            return Err(Error::Invalid(format!(
                "{} bytes is too short for a database",
                data.len()
            )));
        }
        let first = Meta::read(&data, 0, 0);
        // The second meta page sits one page in: take the size from the first meta, or
        // (if that one is damaged) from the raw field, or try every plausible size.
        let sizes: Vec<usize> = match &first {
            Ok(m) => vec![m.page_size],
            Err(_) => {
                let raw = u32_at(&data, PAGE_HEADER + 8).map_or(0, |v| v as usize);
                let mut s = vec![raw];
                s.extend((9..=20).map(|b| 1usize << b).filter(|&v| v != raw));
                s
            }
        };
        let second = sizes
            .iter()
            .filter(|&&s| s.is_power_of_two() && (512..=1 << 20).contains(&s))
            .map(|&s| Meta::read(&data, s, 1))
            .find(|m| m.is_ok())
            .unwrap_or_else(|| Err(Error::Meta("meta page 1 not found".into())));
        let meta = match (first, second) {
            (Ok(a), Ok(b)) if a.page_size == b.page_size => {
                if b.txid > a.txid {
                    b
                } else {
                    a
                }
            }
            (Ok(a), _) => a,
            (Err(_), Ok(b)) => b,
            (Err(e), Err(_)) => return Err(e),
        };
        Ok(Db { data, meta })
    }

    /// The meta page in use.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The page size.
    pub fn page_size(&self) -> usize {
        self.meta.page_size
    }

    /// Bytes in use: high-water mark times page size (bbolt's `Tx.Size`, what a snapshot of
    /// the file holds).
    pub fn size(&self) -> u64 {
        self.meta.high_water * self.meta.page_size as u64
    }

    /// Page `id` with all the pages it spans, checked: inside the high-water mark, its
    /// header naming it.
    fn page(&self, id: u64) -> Result<Page<'_>, Error> {
        if id < 2 || id >= self.meta.high_water {
            return Err(corrupt(
                id,
                format!("page id outside 2..{}", self.meta.high_water),
            ));
        }
        let ps = self.meta.page_size;
        let start = id as usize * ps;
        let hdr = self
            .data
            .get(start..start + PAGE_HEADER)
            .ok_or_else(|| corrupt(id, "beyond the end of the file"))?;
        let named = u64_at(hdr, 0).unwrap_or(0);
        if named != id {
            return Err(corrupt(id, format!("its header names page {named}")));
        }
        let flags = u16_at(hdr, 8).unwrap_or(0);
        let count = u16_at(hdr, 10).unwrap_or(0) as usize;
        let overflow = u64::from(u32_at(hdr, 12).unwrap_or(0));
        let last = id + overflow;
        if last >= self.meta.high_water {
            return Err(corrupt(
                id,
                format!("its {overflow} overflow pages pass the high-water mark"),
            ));
        }
        let end = (last as usize + 1) * ps;
        let data = self
            .data
            .get(start..end)
            .ok_or_else(|| corrupt(id, "beyond the end of the file"))?;
        Ok(Page {
            id,
            flags,
            count,
            data,
        })
    }

    /// A tree page (branch or leaf) of a bucket.
    fn tree_page(&self, id: u64) -> Result<Page<'_>, Error> {
        let p = self.page(id)?;
        if p.flags != BRANCH_PAGE && p.flags != LEAF_PAGE {
            return Err(corrupt(
                id,
                format!("expected a branch or leaf page, found flags {:#x}", p.flags),
            ));
        }
        if p.flags == BRANCH_PAGE && p.count == 0 {
            return Err(corrupt(id, "empty branch page"));
        }
        if PAGE_HEADER + p.count * ELEMENT > p.data.len() {
            return Err(corrupt(id, format!("{} elements do not fit", p.count)));
        }
        Ok(p)
    }

    /// The root bucket: its entries are the top-level buckets.
    pub fn root(&self) -> Bucket<'_> {
        Bucket {
            db: self,
            root: self.meta.root,
            inline: None,
            sequence: self.meta.root_sequence,
        }
    }

    /// The top-level bucket `name`, if there is one.
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket<'_>>, Error> {
        self.root().bucket(name)
    }

    /// The names of the top-level buckets, in order.
    pub fn bucket_names(&self) -> Result<Vec<&[u8]>, Error> {
        let mut names = Vec::new();
        for entry in self.root().iter() {
            let (name, value) = entry?;
            if let Value::Bucket(_) = value {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// The free page ids (sorted), or `None` if the freelist was not written.
    pub fn freelist(&self) -> Result<Option<Vec<u64>>, Error> {
        let Some(id) = self.meta.freelist else {
            return Ok(None);
        };
        let p = self.page(id)?;
        if p.flags != FREELIST_PAGE {
            return Err(corrupt(
                id,
                format!("expected the freelist, found flags {:#x}", p.flags),
            ));
        }
        let (first, count) = if p.count == 0xFFFF {
            let n = u64_at(p.data, PAGE_HEADER).ok_or_else(|| corrupt(id, "truncated"))?;
            (1, n)
        } else {
            (0, p.count as u64)
        };
        let count = usize::try_from(count).map_err(|_| corrupt(id, "count overflows"))?;
        if (first + count).saturating_mul(8) > p.data.len() - PAGE_HEADER {
            return Err(corrupt(id, format!("{count} free ids do not fit")));
        }
        let mut ids: Vec<u64> = (0..count)
            .filter_map(|i| u64_at(p.data, PAGE_HEADER + (first + i) * 8))
            .collect();
        ids.sort_unstable();
        Ok(Some(ids))
    }

    /// Checks the whole file's structure (as `bbolt check` does): every bucket's tree is
    /// readable, its keys ascend, no page is reachable twice, and no reachable page is on
    /// the freelist. Returns the figures found.
    pub fn check(&self) -> Result<CheckStats, Error> {
        let hw = usize::try_from(self.meta.high_water)
            .map_err(|_| corrupt(self.meta.page, "high-water mark overflows"))?;
        let mut seen = vec![false; hw];
        let mut stats = CheckStats::default();
        let mut mark = |id: u64, span: u64, what: &str| -> Result<(), Error> {
            for p in id..id + span {
                let slot = seen
                    .get_mut(p as usize)
                    .ok_or_else(|| corrupt(p, "past the high-water mark"))?;
                if *slot {
                    return Err(corrupt(p, format!("reachable twice (as {what})")));
                }
                *slot = true;
            }
            Ok(())
        };
        mark(0, 2, "meta")?;
        let free = self.freelist()?;
        if let Some(id) = self.meta.freelist {
            let p = self.page(id)?;
            mark(id, (p.data.len() / self.meta.page_size) as u64, "freelist")?;
        }
        if let Some(free) = &free {
            for &id in free {
                mark(id, 1, "a free page")?;
            }
            stats.free_pages = free.len() as u64;
        }
        self.check_bucket(&self.root(), &mut mark, &mut stats, 0)?;
        Ok(stats)
    }

    fn check_bucket(
        &self,
        b: &Bucket<'_>,
        mark: &mut dyn FnMut(u64, u64, &str) -> Result<(), Error>,
        stats: &mut CheckStats,
        depth: usize,
    ) -> Result<(), Error> {
        if depth > MAX_DEPTH {
            return Err(corrupt(b.root, "buckets nested too deep"));
        }
        stats.buckets += 1;
        if b.inline.is_none() {
            self.check_tree(b.root, mark, 0)?;
        }
        for entry in b.iter() {
            match entry? {
                (_, Value::Bucket(child)) => self.check_bucket(&child, mark, stats, depth + 1)?,
                (_, Value::Data(_)) => stats.keys += 1,
            }
        }
        Ok(())
    }

    fn check_tree(
        &self,
        id: u64,
        mark: &mut dyn FnMut(u64, u64, &str) -> Result<(), Error>,
        depth: usize,
    ) -> Result<(), Error> {
        if depth > MAX_DEPTH {
            return Err(corrupt(id, "tree too deep"));
        }
        let p = self.tree_page(id)?;
        mark(
            id,
            (p.data.len() / self.meta.page_size) as u64,
            "a tree page",
        )?;
        if !p.is_leaf() {
            for i in 0..p.count {
                let (_, child) = p.branch(i)?;
                self.check_tree(child, mark, depth + 1)?;
            }
        }
        Ok(())
    }
}

/// What [`Db::check`] counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckStats {
    /// Buckets, the root bucket included.
    pub buckets: u64,
    /// Keys that are not buckets.
    pub keys: u64,
    /// Pages on the freelist.
    pub free_pages: u64,
}

/// A bucket: a B+tree of keys and values (and nested buckets).
#[derive(Debug, Clone, Copy)]
pub struct Bucket<'a> {
    db: &'a Db,
    root: u64,
    /// The bucket's page, when it is inline.
    inline: Option<&'a [u8]>,
    sequence: u64,
}

/// A value in a bucket: data, or a nested bucket.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// A key's value.
    Data(&'a [u8]),
    /// A nested bucket.
    Bucket(Bucket<'a>),
}

impl<'a> Bucket<'a> {
    /// The bucket's sequence (bbolt's `NextSequence` counter).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Decodes a nested bucket's header (`value` of a leaf element flagged as a bucket).
    fn nested(&self, page: u64, value: &'a [u8]) -> Result<Bucket<'a>, Error> {
        let root = u64_at(value, 0).ok_or_else(|| corrupt(page, "short bucket header"))?;
        let sequence = u64_at(value, 8).ok_or_else(|| corrupt(page, "short bucket header"))?;
        let inline = if root == 0 {
            let p = &value[BUCKET_HEADER..];
            if p.len() < PAGE_HEADER {
                return Err(corrupt(page, "short inline bucket"));
            }
            Some(p)
        } else {
            None
        };
        Ok(Bucket {
            db: self.db,
            root,
            inline,
            sequence,
        })
    }

    /// The root page of the bucket's tree.
    fn root_page(&self) -> Result<Page<'a>, Error> {
        match self.inline {
            Some(data) => {
                let flags = u16_at(data, 8).unwrap_or(0);
                let count = u16_at(data, 10).unwrap_or(0) as usize;
                if flags != LEAF_PAGE {
                    return Err(corrupt(
                        0,
                        format!("inline bucket page has flags {flags:#x}"),
                    ));
                }
                Ok(Page {
                    id: 0,
                    flags,
                    count,
                    data,
                })
            }
            None => self.db.tree_page(self.root),
        }
    }

    /// Every key of the bucket in order, with its value or nested bucket.
    pub fn iter(&self) -> Iter<'a> {
        Iter {
            bucket: *self,
            stack: Vec::new(),
            started: false,
            last: None,
            failed: false,
        }
    }

    /// The value stored under `key` (`None` if absent, or if `key` names a nested bucket).
    pub fn get(&self, key: &[u8]) -> Result<Option<&'a [u8]>, Error> {
        Ok(match self.find(key)? {
            Some(Value::Data(v)) => Some(v),
            _ => None,
        })
    }

    /// The nested bucket `name`, if there is one.
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket<'a>>, Error> {
        Ok(match self.find(name)? {
            Some(Value::Bucket(b)) => Some(b),
            _ => None,
        })
    }

    /// Descends the tree to `key`.
    fn find(&self, key: &[u8]) -> Result<Option<Value<'a>>, Error> {
        let mut page = self.root_page()?;
        for _ in 0..MAX_DEPTH {
            if page.is_leaf() {
                for i in 0..page.count {
                    let (flags, k, v) = page.leaf(i)?;
                    if k == key {
                        return Ok(Some(if flags & BUCKET_LEAF != 0 {
                            Value::Bucket(self.nested(page.id, v)?)
                        } else {
                            Value::Data(v)
                        }));
                    }
                }
                return Ok(None);
            }
            // The last child whose first key is <= key (or the first child).
            let mut child = page.branch(0)?.1;
            for i in 1..page.count {
                let (k, c) = page.branch(i)?;
                if k > key {
                    break;
                }
                child = c;
            }
            page = self.db.tree_page(child)?;
        }
        Err(corrupt(self.root, "tree too deep"))
    }
}

/// An iterator over a bucket's entries, in key order. It stops after the first error.
#[derive(Debug)]
pub struct Iter<'a> {
    bucket: Bucket<'a>,
    /// The path from the root: each page and the next element to visit in it.
    stack: Vec<(Page<'a>, usize)>,
    started: bool,
    last: Option<&'a [u8]>,
    failed: bool,
}

impl<'a> Iter<'a> {
    fn step(&mut self) -> Result<Option<(&'a [u8], Value<'a>)>, Error> {
        if !self.started {
            self.started = true;
            let root = self.bucket.root_page()?;
            self.stack.push((root, 0));
        }
        loop {
            let Some((page, i)) = self.stack.last_mut() else {
                return Ok(None);
            };
            let (page, idx) = (*page, *i);
            if idx >= page.count {
                self.stack.pop();
                continue;
            }
            if let Some(top) = self.stack.last_mut() {
                top.1 += 1;
            }
            if page.is_leaf() {
                let (flags, key, value) = page.leaf(idx)?;
                if let Some(last) = self.last {
                    if key <= last {
                        return Err(corrupt(page.id, "keys out of order"));
                    }
                }
                self.last = Some(key);
                let value = if flags & BUCKET_LEAF != 0 {
                    Value::Bucket(self.bucket.nested(page.id, value)?)
                } else {
                    Value::Data(value)
                };
                return Ok(Some((key, value)));
            }
            if self.stack.len() > MAX_DEPTH {
                return Err(corrupt(page.id, "tree too deep"));
            }
            let (_, child) = page.branch(idx)?;
            let child = self.bucket.db.tree_page(child)?;
            self.stack.push((child, 0));
        }
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = Result<(&'a [u8], Value<'a>), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.step() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests;
