//! How a running member's threads are scheduled (Linux: policies read from `/proc`).

use crate::harness::Server;

/// The name and scheduling policy (field 41 of `/proc/<pid>/task/<tid>/stat`) of each
/// thread of `pid` but its main thread (which only waits for the runtime).
fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    let main = pid.to_string();
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        if task.file_name().and_then(|t| t.to_str()) == Some(main.as_str()) {
            continue;
        }
        let stat = std::fs::read_to_string(task.join("stat")).unwrap();
        // The name is in parentheses and may hold spaces; the fields after it are not.
        let (head, fields) = stat.rsplit_once(')').unwrap();
        let name = head.split_once('(').unwrap().1.to_string();
        // `fields` starts at field 3 (state): field 41 is its 39th.
        let policy = fields.split_whitespace().nth(38).unwrap().parse().unwrap();
        threads.push((name, policy));
    }
    threads
}

/// The async runtime's workers, the raft thread and the applier run `SCHED_BATCH`, so a
/// wake-up of one of them does not preempt another mid-batch (see `oxcd_raft::sched`).
#[test]
fn the_write_path_threads_run_sched_batch() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let threads = thread_policies(s.child.id());
    let batch = libc::SCHED_BATCH as u32;
    for prefix in ["oxcd-apply", "raft-"] {
        let found: Vec<_> = threads
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .collect();
        assert_eq!(found.len(), 1, "one {prefix} thread in {threads:?}");
        assert_eq!(found[0].1, batch, "{prefix}: {threads:?}");
    }
    let workers: Vec<_> = threads.iter().filter(|(n, _)| n == "oxcd").collect();
    assert!(!workers.is_empty(), "no runtime worker in {threads:?}");
    assert!(
        workers.iter().all(|(_, p)| *p == batch),
        "runtime workers not SCHED_BATCH: {threads:?}"
    );
}
