//! Thread scheduling hints for the write path's helper threads.

/// Marks the calling thread `SCHED_BATCH` (Linux): when another thread wakes it, it does
/// not preempt the waker but runs at the waker's next scheduling point.
///
/// Why: a write hops from a gRPC worker to the raft thread and then to the applier. With
/// normal wake-up preemption the raft thread takes the CPU as soon as the first proposal
/// of a burst wakes it, so on a busy core it commits tiny batches and every request pays
/// for extra context switches. Deferred, it finds the whole burst queued: fewer switches,
/// larger group commits. An idle CPU still runs it at once, so latency at low load is
/// unchanged. The server's async runtime marks its workers too, so that a worker woken by
/// a request or a peer's message does not preempt the raft thread or the applier either.
/// Failure is harmless (the default policy stays) and only logged.
pub fn prefer_batching_for_current_thread() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: plain syscall on the calling thread (pid 0) with a valid parameter.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
        if rc != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "SCHED_BATCH not available; keeping the default scheduling policy"
            );
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn marks_only_the_calling_thread_batch() {
        let policy = std::thread::spawn(|| {
            super::prefer_batching_for_current_thread();
            // SAFETY: plain syscall on the calling thread.
            unsafe { libc::sched_getscheduler(0) }
        })
        .join()
        .unwrap();
        assert_eq!(policy, libc::SCHED_BATCH);
        // SAFETY: as above.
        assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_OTHER);
    }
}
