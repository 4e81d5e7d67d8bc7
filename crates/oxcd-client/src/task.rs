//! Background tasks that end with their owner.

use std::time::Duration;

use tokio::task::JoinHandle;

/// A spawned task aborted when this guard is dropped.
#[derive(Debug)]
pub(crate) struct TaskGuard(JoinHandle<()>);

impl TaskGuard {
    /// Spawns `future` on the current tokio runtime.
    pub(crate) fn spawn(future: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        TaskGuard(tokio::spawn(future))
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Exponential backoff between reconnection attempts of a long-lived stream.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

/// First pause after a stream broke.
const FIRST: Duration = Duration::from_millis(100);
/// Longest pause between two reconnection attempts.
const MAX: Duration = Duration::from_secs(2);

impl Backoff {
    /// A backoff starting at its shortest pause.
    pub(crate) fn new() -> Self {
        Backoff { next: FIRST }
    }
    /// Back to the shortest pause (after a success).
    pub(crate) fn reset(&mut self) {
        self.next = FIRST;
    }
    /// Sleeps for the current pause and doubles it.
    pub(crate) async fn wait(&mut self) {
        tokio::time::sleep(self.next_pause()).await;
    }
    /// The current pause; the next one is twice as long, up to the cap.
    fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(MAX);
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut backoff = Backoff::new();
        for expected in [100, 200, 400, 800, 1600, 2000, 2000] {
            assert_eq!(backoff.next_pause(), Duration::from_millis(expected));
        }
        backoff.reset();
        assert_eq!(backoff.next_pause(), FIRST);
    }

    #[tokio::test]
    async fn dropping_the_guard_aborts_the_task() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let guard = TaskGuard::spawn(async move {
            let _keep = tx;
            std::future::pending::<()>().await;
        });
        drop(guard);
        // The sender is dropped with the aborted task.
        assert!(rx.await.is_err());
    }
}
