//! The harness, its faults and the shared [`oxcd_testkit::scenarios`], validated against a
//! real 3-member etcd (Debian's 3.4 on PATH; skipped with a note when there is none). Each
//! test takes its own slice of the ports 24500-24699.

// A test binary: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use oxcd_testkit::{scenarios, ClusterConfig, PortSource};

fn etcd(ports: (u16, u16)) -> Option<ClusterConfig> {
    let Some(mut cfg) = ClusterConfig::etcd_on_path(3) else {
        eprintln!("no etcd on PATH: skipping");
        return None;
    };
    cfg.ports = PortSource::range(ports.0, ports.1);
    Some(cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_leader_restart_and_pause() {
    if let Some(cfg) = etcd((24500, 24540)) {
        scenarios::kill_leader_restart_and_pause(cfg).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_leader_loses_leadership() {
    if let Some(cfg) = etcd((24540, 24580)) {
        scenarios::partitioned_leader_loses_leadership(cfg).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_and_dropped_links() {
    if let Some(cfg) = etcd((24580, 24620)) {
        scenarios::delayed_and_dropped_links(cfg).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "etcd 3.4 with a full disk under it sometimes takes no write for over 20 s (seen once \
            in a full workspace run on 2 busy cores); run by hand with --include-ignored"]
async fn replaced_member_and_full_disk() {
    if let Some(mut cfg) = etcd((24620, 24660)) {
        // etcd preallocates 64 MiB WAL segments, so its tmpfs must be larger than that.
        cfg.tmpfs_mb = vec![(2, 96)];
        scenarios::replaced_member_and_full_disk(cfg).await;
    }
}
