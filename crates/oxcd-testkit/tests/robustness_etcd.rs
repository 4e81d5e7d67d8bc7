//! The short seeded robustness run (CI form) against a 3-member etcd 3.4: it must pass, or
//! the runner or its checkers are wrong. Skipped with a note when no etcd is on PATH.

// A test binary: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use oxcd_testkit::robustness::RobustnessConfig;
use oxcd_testkit::{scenarios, ClusterConfig, PortSource};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_member_etcd_survives_random_faults() {
    let Some(mut cfg) = ClusterConfig::etcd_on_path(3) else {
        eprintln!("no etcd on PATH: skipping");
        return;
    };
    cfg.ports = PortSource::range(24660, 24690);
    let report = scenarios::robustness(cfg, &RobustnessConfig::ci(1)).await;
    assert!(report.acknowledged > 1000, "too little traffic: {report}");
    assert!(!report.faults.is_empty(), "no fault struck: {report}");
    assert!(report.watches.1 > 0, "the watches saw nothing: {report}");
}

/// The run is able to fail: serializable reads are served from a member's own, possibly
/// lagging, data, and the checker must flag them as stale (no faults needed). Whether a
/// member lags while it is read is up to timing, so up to three seeded runs are made; the
/// first that flags a stale read ends the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serializable_reads_on_etcd_are_caught_as_stale() {
    let Some(mut cfg) = ClusterConfig::etcd_on_path(3) else {
        eprintln!("no etcd on PATH: skipping");
        return;
    };
    cfg.faults = false;
    let mut reports = Vec::new();
    for (seed, ports) in [(2, 24690), (3, 24700), (4, 24710)] {
        cfg.ports = PortSource::range(ports, ports + 10);
        let mut run_cfg = RobustnessConfig::ci(seed);
        run_cfg.duration = std::time::Duration::from_secs(5);
        run_cfg.faults.clear();
        run_cfg.serializable_reads = true;
        let mut cluster = oxcd_testkit::Cluster::start(cfg.clone()).await.unwrap();
        let report = oxcd_testkit::robustness::run(&mut cluster, &run_cfg).await;
        drop(cluster);
        if !report.passed() {
            assert!(
                report.problems.iter().any(|p| p.contains("ordered before")),
                "{report}"
            );
            return;
        }
        reports.push(report.to_string());
    }
    panic!(
        "stale reads went unnoticed in three runs:\n{}",
        reports.join("\n")
    );
}
