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
