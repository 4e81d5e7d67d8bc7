//! Tests: a small bbolt *writer* for tests only (leaf and branch pages, overflow pages,
//! inline buckets), property tests that what it writes reads back, damage that must give
//! errors and never panics, and a file written by a real etcd when one is installed.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

type Tree = BTreeMap<Vec<u8>, Vec<u8>>;

/// A test-only bbolt writer.
struct Writer {
    ps: usize,
    pages: Vec<u8>,
    next: u64,
}

impl Writer {
    fn new(ps: usize) -> Writer {
        // Pages 0 and 1: metas (written last); page 2: an empty freelist.
        let mut w = Writer {
            ps,
            pages: vec![0; 3 * ps],
            next: 3,
        };
        let hdr = w.header(2, FREELIST_PAGE, 0, 0);
        w.pages[2 * ps..2 * ps + PAGE_HEADER].copy_from_slice(&hdr);
        w
    }

    fn header(&self, id: u64, flags: u16, count: u16, overflow: u32) -> [u8; 16] {
        let mut h = [0u8; 16];
        h[..8].copy_from_slice(&id.to_le_bytes());
        h[8..10].copy_from_slice(&flags.to_le_bytes());
        h[10..12].copy_from_slice(&count.to_le_bytes());
        h[12..16].copy_from_slice(&overflow.to_le_bytes());
        h
    }

    /// A page body: header (id filled by the caller) then elements then keys/values.
    fn leaf_body(entries: &[(Vec<u8>, Vec<u8>, u32)]) -> Vec<u8> {
        let mut b = vec![0u8; PAGE_HEADER + entries.len() * ELEMENT];
        b[8..10].copy_from_slice(&LEAF_PAGE.to_le_bytes());
        b[10..12].copy_from_slice(&(entries.len() as u16).to_le_bytes());
        for (i, (k, v, flags)) in entries.iter().enumerate() {
            let at = PAGE_HEADER + i * ELEMENT;
            let pos = (b.len() - at) as u32;
            b[at..at + 4].copy_from_slice(&flags.to_le_bytes());
            b[at + 4..at + 8].copy_from_slice(&pos.to_le_bytes());
            b[at + 8..at + 12].copy_from_slice(&(k.len() as u32).to_le_bytes());
            b[at + 12..at + 16].copy_from_slice(&(v.len() as u32).to_le_bytes());
            b.extend_from_slice(k);
            b.extend_from_slice(v);
        }
        b
    }

    /// Stores a page body at the next free ids (with overflow pages as needed).
    fn store(&mut self, mut body: Vec<u8>) -> u64 {
        let id = self.next;
        let span = body.len().div_ceil(self.ps).max(1);
        body.resize(span * self.ps, 0);
        body[..8].copy_from_slice(&id.to_le_bytes());
        body[12..16].copy_from_slice(&((span - 1) as u32).to_le_bytes());
        self.pages.extend_from_slice(&body);
        self.next += span as u64;
        id
    }

    /// Writes a tree of `entries` with `per_leaf` entries per leaf and `fanout` children
    /// per branch; returns its root page.
    fn tree(&mut self, entries: &[(Vec<u8>, Vec<u8>, u32)], per_leaf: usize, fanout: usize) -> u64 {
        let mut level: Vec<(Vec<u8>, u64)> = Vec::new();
        if entries.is_empty() {
            level.push((Vec::new(), self.store(Writer::leaf_body(&[]))));
        }
        for chunk in entries.chunks(per_leaf.max(1)) {
            let id = self.store(Writer::leaf_body(chunk));
            level.push((chunk[0].0.clone(), id));
        }
        while level.len() > 1 {
            let mut up = Vec::new();
            for chunk in level.chunks(fanout.max(2)) {
                let mut b = vec![0u8; PAGE_HEADER + chunk.len() * ELEMENT];
                b[8..10].copy_from_slice(&BRANCH_PAGE.to_le_bytes());
                b[10..12].copy_from_slice(&(chunk.len() as u16).to_le_bytes());
                for (i, (k, child)) in chunk.iter().enumerate() {
                    let at = PAGE_HEADER + i * ELEMENT;
                    let pos = (b.len() - at) as u32;
                    b[at..at + 4].copy_from_slice(&pos.to_le_bytes());
                    b[at + 4..at + 8].copy_from_slice(&(k.len() as u32).to_le_bytes());
                    b[at + 8..at + 16].copy_from_slice(&child.to_le_bytes());
                    b.extend_from_slice(k);
                }
                let id = self.store(b);
                up.push((chunk[0].0.clone(), id));
            }
            level = up;
        }
        level[0].1
    }

    /// The header of a bucket holding `tree`: inline when asked, else its own pages.
    fn bucket(&mut self, tree: &Tree, inline: bool, per_leaf: usize, fanout: usize) -> Vec<u8> {
        let entries: Vec<_> = tree
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), 0))
            .collect();
        let mut h = vec![0u8; BUCKET_HEADER];
        h[8..16].copy_from_slice(&7u64.to_le_bytes());
        if inline {
            h.extend_from_slice(&Writer::leaf_body(&entries));
        } else {
            let root = self.tree(&entries, per_leaf, fanout);
            h[..8].copy_from_slice(&root.to_le_bytes());
        }
        h
    }

    /// Finishes the file: the root bucket over `buckets`, and both metas (page 1 newer).
    fn finish(
        mut self,
        buckets: Vec<(Vec<u8>, Vec<u8>)>,
        per_leaf: usize,
        fanout: usize,
    ) -> Vec<u8> {
        let entries: Vec<_> = buckets
            .into_iter()
            .map(|(k, v)| (k, v, BUCKET_LEAF))
            .collect();
        let root = self.tree(&entries, per_leaf, fanout);
        for (page, txid) in [(0u64, 4u64), (1, 5)] {
            let mut m = Vec::new();
            m.extend_from_slice(&MAGIC.to_le_bytes());
            m.extend_from_slice(&VERSION.to_le_bytes());
            m.extend_from_slice(&(self.ps as u32).to_le_bytes());
            m.extend_from_slice(&0u32.to_le_bytes());
            m.extend_from_slice(&root.to_le_bytes());
            m.extend_from_slice(&0u64.to_le_bytes());
            m.extend_from_slice(&2u64.to_le_bytes());
            m.extend_from_slice(&self.next.to_le_bytes());
            m.extend_from_slice(&txid.to_le_bytes());
            let sum = fnv1a64(&m);
            m.extend_from_slice(&sum.to_le_bytes());
            let at = page as usize * self.ps;
            let hdr = self.header(page, META_PAGE, 0, 0);
            self.pages[at..at + PAGE_HEADER].copy_from_slice(&hdr);
            self.pages[at + PAGE_HEADER..at + PAGE_HEADER + m.len()].copy_from_slice(&m);
        }
        self.pages
    }
}

fn read_all(b: &Bucket<'_>) -> Result<Tree, Error> {
    let mut out = Tree::new();
    for e in b.iter() {
        match e? {
            (k, Value::Data(v)) => {
                out.insert(k.to_vec(), v.to_vec());
            }
            (_, Value::Bucket(_)) => panic!("unexpected nested bucket"),
        }
    }
    Ok(out)
}

fn sample() -> (Vec<u8>, Tree) {
    let mut w = Writer::new(512);
    let tree: Tree = (0..200u32)
        .map(|i| {
            (
                format!("k{i:05}").into_bytes(),
                vec![i as u8; (i % 7) as usize * 50],
            )
        })
        .collect();
    let key = w.bucket(&tree, false, 5, 3);
    let mut small = Tree::new();
    small.insert(b"consistent_index".to_vec(), 9u64.to_be_bytes().to_vec());
    let meta = w.bucket(&small, true, 1, 2);
    let file = w.finish(vec![(b"key".to_vec(), key), (b"meta".to_vec(), meta)], 8, 4);
    (file, tree)
}

#[test]
fn reads_what_was_written() {
    let (file, tree) = sample();
    let db = Db::from_bytes(file).unwrap();
    assert_eq!(db.meta().txid, 5, "the newer meta wins");
    assert_eq!(db.bucket_names().unwrap(), vec![&b"key"[..], &b"meta"[..]]);
    let key = db.bucket(b"key").unwrap().unwrap();
    assert_eq!(read_all(&key).unwrap(), tree);
    assert_eq!(key.sequence(), 7);
    assert_eq!(
        key.get(b"k00150").unwrap().unwrap(),
        &tree[&b"k00150".to_vec()][..]
    );
    assert_eq!(key.get(b"k0015").unwrap(), None);
    assert_eq!(key.get(b"zzz").unwrap(), None);
    assert_eq!(key.get(b"").unwrap(), None);
    let meta = db.bucket(b"meta").unwrap().unwrap();
    assert_eq!(
        meta.get(b"consistent_index").unwrap().unwrap(),
        9u64.to_be_bytes()
    );
    assert!(db.bucket(b"lease").unwrap().is_none());
    let stats = db.check().unwrap();
    assert_eq!(stats.keys, 201);
    assert_eq!(stats.buckets, 3);
    assert_eq!(db.freelist().unwrap(), Some(vec![]));
}

#[test]
fn a_torn_meta_falls_back_to_the_other() {
    let (mut file, _) = sample();
    // Damage meta page 1 (the newer): page 0 is used.
    file[512 + PAGE_HEADER + 48] ^= 1;
    let db = Db::from_bytes(file.clone()).unwrap();
    assert_eq!(db.meta().txid, 4);
    // Both damaged: refused.
    file[PAGE_HEADER + 48] ^= 1;
    let e = Db::from_bytes(file).unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");
}

#[test]
fn not_a_database_and_truncation_are_named() {
    let e = Db::from_bytes(vec![7u8; 8192]).unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e}");
    let e = Db::from_bytes(vec![0u8; 10]).unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e}");
    let (file, _) = sample();
    let e = Db::from_bytes(file[..file.len() - 512].to_vec()).unwrap_err();
    assert!(matches!(e, Error::Truncated { .. }), "{e}");
    let mut v3 = file.clone();
    v3[PAGE_HEADER + 4] = 3;
    v3[512 + PAGE_HEADER + 4] = 3;
    assert!(matches!(Db::from_bytes(v3), Err(Error::Version(3))));
}

#[test]
fn a_page_naming_another_is_corrupt() {
    let (mut file, _) = sample();
    // Page 3 is the first leaf of the `key` bucket; make its header lie.
    file[3 * 512] = 99;
    let db = Db::from_bytes(file).unwrap();
    let key = db.bucket(b"key").unwrap().unwrap();
    let e = read_all(&key).unwrap_err();
    assert!(
        e.to_string().contains("page 3: its header names page 99"),
        "{e}"
    );
    assert!(db.check().is_err());
}

#[test]
fn page_reachable_twice_or_free_fails_the_check() {
    let mut w = Writer::new(512);
    let tree: Tree = (0..3u8).map(|i| (vec![i], vec![i])).collect();
    let a = w.bucket(&tree, false, 8, 2);
    let file = w.finish(vec![(b"a".to_vec(), a.clone()), (b"b".to_vec(), a)], 8, 2);
    let db = Db::from_bytes(file).unwrap();
    let e = db.check().unwrap_err();
    assert!(e.to_string().contains("reachable twice"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_tree_reads_back(
        entries in proptest::collection::btree_map(
            proptest::collection::vec(any::<u8>(), 1..20),
            proptest::collection::vec(any::<u8>(), 0..1500),
            0..120,
        ),
        per_leaf in 1usize..10,
        fanout in 2usize..6,
        inline in any::<bool>(),
        ps_shift in 9u32..13,
    ) {
        let mut w = Writer::new(1 << ps_shift);
        let b = w.bucket(&entries, inline, per_leaf, fanout);
        let file = w.finish(vec![(b"b".to_vec(), b)], per_leaf, fanout);
        let db = Db::from_bytes(file).unwrap();
        let bucket = db.bucket(b"b").unwrap().unwrap();
        prop_assert_eq!(&read_all(&bucket).unwrap(), &entries);
        for (k, v) in entries.iter().take(10) {
            prop_assert_eq!(bucket.get(k).unwrap(), Some(&v[..]));
        }
        prop_assert_eq!(db.check().unwrap().keys, entries.len() as u64);
    }

    #[test]
    fn damage_never_panics(at in 0usize..16384, byte in any::<u8>()) {
        let (mut file, _) = sample();
        let at = at % file.len();
        file[at] = byte;
        if let Ok(db) = Db::from_bytes(file) {
            let _ = db.check();
            for name in [&b"key"[..], b"meta"] {
                if let Ok(Some(b)) = db.bucket(name) {
                    for e in b.iter() {
                        if e.is_err() {
                            break;
                        }
                    }
                    let _ = b.get(b"k00100");
                }
            }
        }
    }
}

/// A file written by a real etcd (3.4, Debian's), when `etcd` and `etcdctl` are installed:
/// its buckets are etcd's and every key is read.
#[test]
fn reads_a_snapshot_written_by_etcd() {
    let Some(file) = etcd_snapshot() else {
        eprintln!("SKIP reads_a_snapshot_written_by_etcd: etcd/etcdctl not installed");
        return;
    };
    // etcdctl's file ends with the sha256 of the rest.
    assert_eq!(file.len() % 512, 32);
    let db = Db::from_bytes(file[..file.len() - 32].to_vec()).unwrap();
    let names = db.bucket_names().unwrap();
    for b in [&b"key"[..], b"meta", b"lease", b"members", b"auth"] {
        assert!(names.contains(&b), "{names:?}");
    }
    let stats = db.check().unwrap();
    let key = db.bucket(b"key").unwrap().unwrap();
    let rows = key.iter().count();
    // 300 puts (overflowing several pages) and a delete.
    assert_eq!(rows, 301, "{stats:?}");
    let meta = db.bucket(b"meta").unwrap().unwrap();
    assert_eq!(
        meta.get(b"consistent_index").unwrap().map(<[u8]>::len),
        Some(8)
    );
}

/// Runs an etcd in a temporary dir, writes to it and saves a snapshot with etcdctl.
fn etcd_snapshot() -> Option<Vec<u8>> {
    use std::process::{Command, Stdio};
    let have = |bin: &str| {
        Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    if !have("etcd") || !have("etcdctl") {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("oxcd-bbolt-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The project's test port range for this suite: 34100..34900.
    let port = 34100 + (std::process::id() % 400) as u16;
    let client = format!("http://127.0.0.1:{port}");
    let peer = format!("http://127.0.0.1:{}", port + 400);
    let mut etcd = Command::new("etcd")
        .args(["--data-dir", dir.join("d").to_str().unwrap()])
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &format!("default={peer}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ctl = |args: &[&str]| {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &client])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut ready = false;
    for _ in 0..100 {
        if ctl(&["put", "k0", "v"]) {
            ready = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(ready, "etcd did not start");
    let big = "x".repeat(3000);
    for i in 1..300 {
        assert!(ctl(&["put", &format!("k{i}"), &big]));
    }
    assert!(ctl(&["del", "k7"]));
    let snap = dir.join("snap.db");
    assert!(ctl(&["snapshot", "save", snap.to_str().unwrap()]));
    let _ = etcd.kill();
    let _ = etcd.wait();
    let file = std::fs::read(&snap).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    Some(file)
}
