//! The oxcd flavour's peer routing, checked without oxcd: a stand-in server records its
//! command line and `OXCD_PEER_DIAL_OVERRIDE`, and the test plays the peer listeners, so
//! each member's override is seen to reach the right peer through the right link's proxy.

// A test binary: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use oxcd_testkit::{Cluster, ClusterConfig, Flavor, LinkMode};

/// A shell script that writes its arguments and the override into its data dir, then waits.
fn stand_in(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("fake-oxcd");
    std::fs::write(
        &path,
        "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in --data-dir=*) d=\"${a#--data-dir=}\";; esac; done\n\
         printf '%s\\n' \"$@\" > \"$d/args.tmp\" && mv \"$d/args.tmp\" \"$d/args\"\n\
         printf '%s' \"$OXCD_PEER_DIAL_OVERRIDE\" > \"$d/override\"\nexec sleep 60\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn wait_for(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::read_to_string(path).unwrap()
}

/// Sends `msg` to `addr` and returns what comes back (the test's peer listener echoes).
fn echo_through(addr: &str, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut c = TcpStream::connect(addr)?;
    c.set_read_timeout(Some(Duration::from_millis(500)))?;
    c.write_all(msg)?;
    let mut got = vec![0u8; msg.len()];
    c.read_exact(&mut got)?;
    Ok(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_reaches_every_peer_through_its_own_link() {
    let scratch = tempfile::tempdir().unwrap();
    let cfg = ClusterConfig::new(Flavor::Oxcd, stand_in(scratch.path()), 3);
    let cluster = Cluster::spawn(cfg).unwrap();
    let members = cluster.members();
    let initial_cluster: String = (0..3)
        .map(|i| format!("m{i}={}", members[i].peer_url))
        .collect::<Vec<_>>()
        .join(",");

    // Play every member's peer listener: echo, prefixed by the member's index.
    for (i, m) in members.iter().enumerate() {
        let listener = TcpListener::bind(m.listen_peer_url.trim_start_matches("http://")).unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 || conn.write_all(&[b'0' + i as u8]).is_err() {
                            return;
                        }
                        let _ = conn.write_all(&buf[..n - 1]);
                    }
                });
            }
        });
    }

    let mut routes: HashMap<(usize, usize), String> = HashMap::new();
    for (from, m) in members.iter().enumerate() {
        let args = wait_for(&m.data_dir.join("args"));
        assert!(
            args.contains(&format!("--initial-cluster={initial_cluster}")),
            "{args}"
        );
        assert!(args.contains("--initial-cluster-state=new"), "{args}");
        assert!(args.contains(&format!("--name=m{from}")), "{args}");
        let overrides = wait_for(&m.data_dir.join("override"));
        let entries: Vec<&str> = overrides.split(',').collect();
        assert_eq!(entries.len(), 2, "{overrides}");
        for entry in entries {
            let (url, addr) = entry.split_once('=').unwrap();
            let to = members.iter().position(|p| p.peer_url == url).unwrap();
            assert_ne!(to, from);
            routes.insert((from, to), addr.to_string());
        }
    }
    assert_eq!(routes.len(), 6);
    for (&(_, to), addr) in &routes {
        let got = echo_through(addr, b"hix").unwrap();
        assert_eq!(got, format!("{to}hi").as_bytes(), "via {addr}");
    }

    // Dropping 0->1 cuts exactly that link.
    let net = cluster.net().unwrap();
    net.link(0, 1).set(LinkMode::Drop);
    assert!(echo_through(&routes[&(0, 1)], b"hix").is_err());
    assert!(echo_through(&routes[&(1, 0)], b"hix").is_ok());
    assert!(echo_through(&routes[&(2, 1)], b"hix").is_ok());
    net.heal();
    assert!(echo_through(&routes[&(0, 1)], b"hix").is_ok());
}
