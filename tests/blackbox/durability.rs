//! Crash safety: kill -9 under concurrent writes loses no acknowledged write and invents
//! none; a clean restart keeps everything; WAL corruption stops start-up with a clear cause.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use oxcd_proto::etcdserverpb::{PutRequest, RangeRequest};
use tokio::sync::{Mutex, Notify};

use crate::harness::Server;

/// Writes unique keys from `writers` tasks until `kill_after` writes are acknowledged, then
/// kills the server while writes are still in flight. Returns key -> acknowledged revision.
async fn write_until_killed(
    s: Server,
    round: usize,
    writers: usize,
    kill_after: usize,
) -> HashMap<String, i64> {
    let acked: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let enough = Arc::new(Notify::new());
    let mut tasks = Vec::new();
    for w in 0..writers {
        let mut kv = s.kv().await;
        let acked = acked.clone();
        let enough = enough.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let key = format!("r{round}/w{w}/{i:06}");
                let req = PutRequest {
                    key: key.clone().into_bytes(),
                    value: key.clone().into_bytes(),
                    ..Default::default()
                };
                match kv.put(req).await {
                    Ok(r) => {
                        let rev = r.into_inner().header.expect("header").revision;
                        let mut a = acked.lock().await;
                        a.insert(key, rev);
                        if a.len() == kill_after {
                            enough.notify_one();
                        }
                    }
                    Err(_) => break,
                }
            }
        }));
    }
    enough.notified().await;
    s.kill9();
    for t in tasks {
        t.await.expect("writer task");
    }
    let a = acked.lock().await;
    a.clone()
}

/// Writes keys `k000`, `k001`, ... (`n` of them), each with `value`, one put each.
async fn put_keys(s: &Server, n: usize, value: &[u8]) {
    let mut kv = s.kv().await;
    for i in 0..n {
        kv.put(PutRequest {
            key: format!("k{i:03}").into_bytes(),
            value: value.to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
}

/// The newest WAL segment of the server whose data dir is `data_dir`.
fn last_wal_segment(data_dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(data_dir.join("member/wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .max()
        .expect("a wal segment")
}

async fn all_keys(s: &Server) -> (i64, Vec<oxcd_proto::mvccpb::KeyValue>) {
    let r = s
        .kv()
        .await
        .range(RangeRequest {
            key: b"\0".to_vec(),
            range_end: b"\0".to_vec(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    (r.header.expect("header").revision, r.kvs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_under_concurrent_writes_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::harness::free_port();
    let peer = crate::harness::free_port();
    let mut acked_all: HashMap<String, i64> = HashMap::new();
    for round in 0..3 {
        let s = Server::start_with(dir.path(), port, peer, &[]);
        let acked = write_until_killed(s, round, 16, 300).await;
        assert!(acked.len() >= 300);
        acked_all.extend(acked);

        let s = Server::start_with(dir.path(), port, peer, &[]);
        let (revision, kvs) = all_keys(&s).await;
        let present: HashMap<String, &oxcd_proto::mvccpb::KeyValue> = kvs
            .iter()
            .map(|kv| (String::from_utf8(kv.key.clone()).unwrap(), kv))
            .collect();
        for (key, rev) in &acked_all {
            let kv = present
                .get(key)
                .unwrap_or_else(|| panic!("acknowledged {key} at {rev} lost"));
            assert_eq!(kv.mod_revision, *rev, "{key} has another revision");
            assert_eq!(kv.value, key.as_bytes());
        }
        // Nothing appears that was not written, and no revision is used twice.
        let mut revs = HashSet::new();
        for kv in &kvs {
            assert_eq!(kv.value, kv.key, "junk value");
            assert!(
                revs.insert(kv.mod_revision),
                "revision {} twice",
                kv.mod_revision
            );
        }
        assert_eq!(revision, kvs.len() as i64 + 1, "revisions are dense");
        drop(s);
    }
}

#[tokio::test]
async fn clean_restart_keeps_data_and_revision() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    put_keys(&s, 50, b"v").await;
    let (port, peer) = (s.port, s.peer_port);
    assert!(s.terminate().success(), "clean shutdown exits 0");
    let s = Server::start_with(dir.path(), port, peer, &[]);
    let (rev, kvs) = all_keys(&s).await;
    assert_eq!(kvs.len(), 50);
    assert_eq!(rev, 51);
}

#[tokio::test]
async fn corrupt_wal_refuses_to_start_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    put_keys(&s, 200, &[b'x'; 100]).await;
    let (port, peer) = (s.port, s.peer_port);
    s.kill9();
    let seg = last_wal_segment(dir.path());
    let mut bytes = std::fs::read(&seg).unwrap();
    // The segment is preallocated: flip a bit in the middle of its data, not of its size.
    let data_end = bytes
        .iter()
        .rposition(|&b| b != 0)
        .expect("data in segment");
    let mid = data_end / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();

    let s = Server::spawn(dir.path(), port, peer, &[]);
    let (status, log) = s.wait_exit();
    assert!(!status.success());
    let name = seg.file_name().unwrap().to_string_lossy().to_string();
    assert!(log.contains(&name), "log names the file: {log}");
    assert!(log.contains("offset"), "log names the offset: {log}");
}

#[tokio::test]
async fn torn_wal_tail_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    put_keys(&s, 20, b"v").await;
    let (port, peer) = (s.port, s.peer_port);
    s.kill9();
    // Simulate a crash in the middle of appending: half a record of garbage at the end.
    let seg = last_wal_segment(dir.path());
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 9, 9]).unwrap();
    drop(f);
    let s = Server::start_with(dir.path(), port, peer, &[]);
    let (_, kvs) = all_keys(&s).await;
    assert_eq!(kvs.len(), 20);
}

/// Unmounts a tmpfs when dropped.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn full_wal_disk_stops_the_server_instead_of_lingering() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    std::fs::create_dir_all(&wal).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1M", "tmpfs"])
        .arg(&wal)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIP: cannot mount a tmpfs here (needs root)");
        return;
    }
    let _mount = Mount(wal.clone());
    let data = dir.path().join("data");
    let wal_flag = format!("--wal-dir={}", wal.display());
    let s = Server::start_with(
        &data,
        crate::harness::free_port(),
        crate::harness::free_port(),
        &[&wal_flag],
    );
    let mut kv = s.kv().await;
    let mut failed = false;
    for i in 0..40 {
        let r = kv
            .put(PutRequest {
                key: format!("k{i}").into_bytes(),
                value: vec![b'x'; 100_000],
                ..Default::default()
            })
            .await;
        if r.is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "4 MB of writes into a 1 MB WAL must fail");
    let (status, log) = s
        .wait_exit_within(std::time::Duration::from_secs(15))
        .expect("the server exits once its WAL cannot be written");
    assert!(!status.success(), "exit code says it failed");
    assert!(log.contains("raft node stopped"), "{log}");
}
