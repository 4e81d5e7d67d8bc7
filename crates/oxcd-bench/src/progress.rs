//! The progress bar on stderr: done/total, the current rate and the time left.
//!
//! Drawn only when stderr is a terminal (so `--json > file` and scripts see nothing),
//! redrawn four times a second, erased when the run ends.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Width of the bar itself, in characters.
const BAR_WIDTH: usize = 30;
/// The rate shown is measured over this much of the recent past.
const RATE_WINDOW: Duration = Duration::from_secs(2);

/// A running progress bar; [`ProgressBar::finish`] erases it.
pub(crate) struct ProgressBar {
    task: JoinHandle<()>,
}

impl ProgressBar {
    /// Starts drawing the progress of `done` (counting `unit`s) towards `total`
    /// (0 = unknown) within at most `duration`, if stderr is a terminal.
    pub(crate) fn start(
        unit: &'static str,
        done: Arc<AtomicU64>,
        total: u64,
        duration: Option<Duration>,
    ) -> Option<ProgressBar> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut samples: VecDeque<(Instant, u64)> = VecDeque::new();
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let now = Instant::now();
                let d = done.load(Ordering::Relaxed);
                samples.push_back((now, d));
                while samples.len() > 2 && now - samples[1].0 >= RATE_WINDOW {
                    samples.pop_front();
                }
                let (t0, d0) = samples[0];
                let secs = (now - t0).as_secs_f64();
                let rate = if secs > 0.0 {
                    d.saturating_sub(d0) as f64 / secs
                } else {
                    0.0
                };
                let line = render(d, total, now - start, rate, duration, unit);
                eprint!("\r\x1b[2K{line}");
                let _ = std::io::stderr().flush();
            }
        });
        Some(ProgressBar { task })
    }

    /// Stops drawing and erases the line.
    pub(crate) fn finish(self) {
        self.task.abort();
        eprint!("\r\x1b[2K");
        let _ = std::io::stderr().flush();
    }
}

/// Formats seconds as `m:ss` (or `h:mm:ss`).
fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// One line of progress: `[=====>    ] 500/1000  50%  1234 unit/s  ETA 0:01`.
///
/// With an unknown total the bar follows the duration instead, and the ETA is the time
/// left of it; with both, whichever ends first.
pub(crate) fn render(
    done: u64,
    total: u64,
    elapsed: Duration,
    rate: f64,
    duration: Option<Duration>,
    unit: &str,
) -> String {
    let by_count = (total > 0).then(|| (done as f64 / total as f64).min(1.0));
    let by_time = duration
        .filter(|d| !d.is_zero())
        .map(|d| (elapsed.as_secs_f64() / d.as_secs_f64()).min(1.0));
    let fraction = match (by_count, by_time) {
        (Some(c), Some(t)) => Some(c.max(t)),
        (c, t) => c.or(t),
    };
    let eta_count = (total > 0 && rate > 0.0).then(|| total.saturating_sub(done) as f64 / rate);
    let eta_time = duration.map(|d| d.saturating_sub(elapsed).as_secs_f64());
    let eta = match (eta_count, eta_time) {
        (Some(c), Some(t)) => Some(c.min(t)),
        (c, t) => c.or(t),
    };
    let mut out = String::new();
    if let Some(f) = fraction {
        let full = (f * BAR_WIDTH as f64) as usize;
        let head = usize::from(full < BAR_WIDTH);
        out.push('[');
        out.push_str(&"=".repeat(full));
        out.push_str(&">".repeat(head));
        out.push_str(&" ".repeat(BAR_WIDTH - full - head));
        out.push_str("] ");
    }
    if total > 0 {
        out.push_str(&format!("{done}/{total} {unit}"));
    } else {
        out.push_str(&format!("{done} {unit}"));
    }
    if let Some(f) = fraction {
        out.push_str(&format!(" {:3.0}%", f * 100.0));
    }
    out.push_str(&format!("  {rate:.0}/s  {}", clock(elapsed.as_secs_f64())));
    match eta {
        Some(e) => out.push_str(&format!("  ETA {}", clock(e))),
        None => out.push_str("  ETA ?"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_with_total() {
        let s = render(500, 1000, Duration::from_secs(2), 250.0, None, "requests");
        assert!(
            s.starts_with(&format!("[{}>{}]", "=".repeat(15), " ".repeat(14))),
            "{s}"
        );
        assert!(s.contains("500/1000 requests"), "{s}");
        assert!(s.contains(" 50%"), "{s}");
        assert!(s.contains("250/s"), "{s}");
        assert!(s.contains("ETA 0:02"), "{s}");
        let s = render(1000, 1000, Duration::from_secs(4), 0.0, None, "events");
        assert!(s.starts_with(&format!("[{}]", "=".repeat(30))), "{s}");
        assert!(s.contains("100%"), "{s}");
    }

    #[test]
    fn bar_with_duration() {
        // Unknown total: the bar follows the time.
        let s = render(
            42,
            0,
            Duration::from_secs(15),
            3.0,
            Some(Duration::from_secs(60)),
            "requests",
        );
        assert!(s.contains("42 requests"), "{s}");
        assert!(s.contains(" 25%"), "{s}");
        assert!(s.contains("ETA 0:45"), "{s}");
        // Both: the duration ends first here.
        let s = render(
            10,
            1_000_000,
            Duration::from_secs(5),
            10.0,
            Some(Duration::from_secs(10)),
            "requests",
        );
        assert!(s.contains(" 50%") && s.contains("ETA 0:05"), "{s}");
    }

    #[test]
    fn no_rate_no_eta() {
        let s = render(0, 100, Duration::ZERO, 0.0, None, "requests");
        assert!(s.contains("ETA ?"), "{s}");
        assert_eq!(clock(3725.0), "1:02:05");
        assert_eq!(clock(65.4), "1:05");
    }
}
