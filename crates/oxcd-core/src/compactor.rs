//! Auto-compaction: etcd's `--auto-compaction-mode` and `--auto-compaction-retention`
//! (etcd's `v3compactor` package, 3.4 and 3.5), run on every member but acting only on the
//! raft leader, whose compactions go through raft like `etcdctl compact`.
//!
//! * **periodic**, retention `T` (hours as an integer, or a Go duration): every tenth of
//!   `min(T, 1h)` the current revision is recorded (the last `T / that + 1` kept); once `T`
//!   has passed since the start, the leader compacts to the oldest recorded revision — the
//!   one seen `T` ago — and then again every `min(T, 1h)`. A failed compaction is retried
//!   a tenth later.
//! * **revision**, retention `N`: every 5 minutes the leader compacts to the current
//!   revision minus `N`, unless that is not positive or was compacted to last time.
//!
//! Loops and timings follow etcd's exactly, including its quirks (a revision retention
//! written as a duration is that many nanoseconds' worth of revisions). Time comes from a
//! [`Clock`], so tests drive the compactor with a fake one; black-box tests speed the real
//! one up through the `OXCD_TEST_COMPACTOR_SPEEDUP` test knob ([`clock_from_env`]), since
//! revision mode looks only every 5 minutes.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxcd_proto::etcdserverpb::CompactionRequest;
use tokio::sync::watch;

use crate::error::ServerError;
use crate::server::EtcdServer;

/// etcd's revision-mode interval (`revInterval`).
pub const REVISION_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// etcd's cap on the periodic compaction interval.
const MAX_PERIODIC_INTERVAL: Duration = Duration::from_secs(3600);
/// etcd's `retryDivisor`: the periodic compactor looks every tenth of its interval.
const RETRY_DIVISOR: u32 = 10;

/// An auto-compaction policy: `--auto-compaction-mode` with its retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    /// `periodic`: keep history for this long.
    Periodic(Duration),
    /// `revision`: keep this many revisions.
    Revision(i64),
}

impl AutoCompaction {
    /// etcd's `parseCompactionRetention`: an integer is hours (periodic) or revisions
    /// (revision); anything else must be a Go duration (a duration in revision mode counts
    /// its nanoseconds, as etcd does). `Ok(None)` for a retention of zero: no
    /// auto-compaction.
    pub fn parse(mode: &str, retention: &str) -> Result<Option<AutoCompaction>, String> {
        let policy = match go_atoi(retention).filter(|h| *h >= 0) {
            Some(h) => match mode {
                "revision" => AutoCompaction::Revision(h),
                "periodic" => {
                    let secs = u64::try_from(h)
                        .ok()
                        .and_then(|h| h.checked_mul(3600))
                        .ok_or_else(|| format!("retention of {h} hours is too long"))?;
                    AutoCompaction::Periodic(Duration::from_secs(secs))
                }
                m => return Err(format!("unsupported compaction mode {m}")),
            },
            None => {
                let d = oxcd_godur::parse(retention)
                    .map_err(|e| format!("error parsing CompactionRetention: {e}"))?;
                match mode {
                    "revision" => {
                        AutoCompaction::Revision(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
                    }
                    "periodic" => AutoCompaction::Periodic(d),
                    m => return Err(format!("unsupported compaction mode {m}")),
                }
            }
        };
        Ok(match policy {
            AutoCompaction::Periodic(d) if d.is_zero() => None,
            AutoCompaction::Revision(0) => None,
            p => Some(p),
        })
    }
}

/// Go's `strconv.Atoi`: an optional sign and decimal digits, fitting an i64.
fn go_atoi(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A source of time the compactor waits on.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Instant;
    /// Completes once `d` has passed.
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// The real clock (tokio's timers).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// The real clock running `factor` times faster: sleeps last `1/factor` of what is asked
/// and time seems to pass `factor` times as fast, so every period of etcd's loops shrinks
/// by that much.
#[derive(Debug, Clone, Copy)]
pub struct ScaledClock {
    start: Instant,
    factor: u32,
}

impl ScaledClock {
    /// The real clock sped up `factor` times (`factor` >= 1).
    pub fn new(factor: u32) -> ScaledClock {
        ScaledClock {
            start: Instant::now(),
            factor: factor.max(1),
        }
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> Instant {
        let real = self.start.elapsed();
        self.start + real.saturating_mul(self.factor)
    }

    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep(d / self.factor))
    }
}

/// The test knob that speeds the compactor's clock up: a whole factor > 1.
pub const SPEEDUP_ENV: &str = "OXCD_TEST_COMPACTOR_SPEEDUP";

/// The compactor's clock: [`TokioClock`], or a [`ScaledClock`] when [`SPEEDUP_ENV`] holds a
/// factor above 1 (a test knob, not one of etcd's settings; logged as a warning).
pub fn clock_from_env() -> Arc<dyn Clock> {
    match std::env::var(SPEEDUP_ENV)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|f| *f > 1)
    {
        Some(factor) => {
            tracing::warn!(
                factor,
                knob = SPEEDUP_ENV,
                "auto-compaction clock sped up (a test knob)"
            );
            Arc::new(ScaledClock::new(factor))
        }
        None => Arc::new(TokioClock),
    }
}

/// What the compactor compacts: etcd's `RevGetter` and `Compactable`, plus whether this
/// member leads (etcd pauses the compactor on followers).
pub trait Compactable: Send + Sync + 'static {
    /// The current revision.
    fn revision(&self) -> i64;
    /// Whether this member is the raft leader now.
    fn is_leader(&self) -> bool;
    /// Compacts to `rev` (through raft).
    fn compact(
        &self,
        rev: i64,
    ) -> Pin<Box<dyn Future<Output = Result<(), ServerError>> + Send + '_>>;
}

impl Compactable for EtcdServer {
    fn revision(&self) -> i64 {
        self.current_revision()
    }

    fn is_leader(&self) -> bool {
        self.raft.leadership().borrow().is_leader()
    }

    fn compact(
        &self,
        rev: i64,
    ) -> Pin<Box<dyn Future<Output = Result<(), ServerError>> + Send + '_>> {
        Box::pin(async move {
            EtcdServer::compact(
                self,
                &crate::auth::Credentials::server(),
                CompactionRequest {
                    revision: rev,
                    physical: false,
                },
            )
            .await
            .map(|_| ())
        })
    }
}

/// Runs the compactor of `policy` until `stop` turns true (or its sender is dropped).
pub async fn run<T: Compactable + ?Sized>(
    policy: AutoCompaction,
    target: Arc<T>,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) {
    match policy {
        AutoCompaction::Periodic(period) => {
            tracing::info!(compact_period = ?period, "auto periodic compaction enabled");
            periodic(period, &*target, &*clock, &mut stop).await
        }
        AutoCompaction::Revision(retention) => {
            tracing::info!(retention, "auto revision compaction enabled");
            revision(retention, &*target, &*clock, &mut stop).await
        }
    }
}

/// Waits `d`, or returns false once `stop` says so.
async fn wait(clock: &dyn Clock, d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        _ = clock.sleep(d) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

/// A compaction's outcome: etcd counts "already compacted" as done.
fn succeeded(r: &Result<(), ServerError>) -> bool {
    matches!(r, Ok(()) | Err(ServerError::Compacted))
}

/// etcd's `Periodic.Run`.
async fn periodic<T: Compactable + ?Sized>(
    period: Duration,
    target: &T,
    clock: &dyn Clock,
    stop: &mut watch::Receiver<bool>,
) {
    let compact_interval = period.min(MAX_PERIODIC_INTERVAL);
    // Never a busy loop, even for a retention of a few nanoseconds.
    let retry = (compact_interval / RETRY_DIVISOR).max(Duration::from_millis(1));
    let retentions = (period.as_nanos() / retry.as_nanos()) as usize + 1;
    let mut revs: VecDeque<i64> = VecDeque::with_capacity(retentions + 1);
    let mut last_success = clock.now();
    let mut base = period;
    loop {
        revs.push_back(target.revision());
        if revs.len() > retentions {
            revs.pop_front(); // revs[0] is the revision seen `period` ago
        }
        if !wait(clock, retry, stop).await {
            return;
        }
        if !target.is_leader() {
            continue;
        }
        if clock.now().saturating_duration_since(last_success) < base {
            continue;
        }
        base = compact_interval;
        let Some(&rev) = revs.front() else { continue };
        tracing::info!(revision = rev, compact_period = ?period, "starting auto periodic compaction");
        let started = clock.now();
        let r = target.compact(rev).await;
        if succeeded(&r) {
            tracing::info!(
                revision = rev,
                compact_period = ?period,
                took = ?clock.now().saturating_duration_since(started),
                "completed auto periodic compaction"
            );
            last_success = clock.now();
        } else if let Err(e) = r {
            tracing::warn!(
                revision = rev,
                compact_period = ?period,
                retry_interval = ?retry,
                error = %e,
                "failed auto periodic compaction"
            );
        }
    }
}

/// etcd's `Revision.Run`.
async fn revision<T: Compactable + ?Sized>(
    retention: i64,
    target: &T,
    clock: &dyn Clock,
    stop: &mut watch::Receiver<bool>,
) {
    let mut prev = 0i64;
    loop {
        if !wait(clock, REVISION_INTERVAL, stop).await {
            return;
        }
        if !target.is_leader() {
            continue;
        }
        let rev = target.revision().saturating_sub(retention);
        if rev <= 0 || rev == prev {
            continue;
        }
        tracing::info!(
            revision = rev,
            revision_compaction_retention = retention,
            "starting auto revision compaction"
        );
        let started = clock.now();
        let r = target.compact(rev).await;
        if succeeded(&r) {
            prev = rev;
            tracing::info!(
                revision = rev,
                revision_compaction_retention = retention,
                took = ?clock.now().saturating_duration_since(started),
                "completed auto revision compaction"
            );
        } else if let Err(e) = r {
            tracing::warn!(
                revision = rev,
                revision_compaction_retention = retention,
                retry_interval = ?REVISION_INTERVAL,
                error = %e,
                "failed auto revision compaction"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

    use parking_lot::Mutex;

    use super::*;

    /// A clock that moves only when the test says: [`FakeClock::step`] jumps to the
    /// deadline of the compactor's sleep and waits until it sleeps again, so each step
    /// is one whole turn of the compactor's loop.
    struct FakeClock {
        start: Instant,
        now: Mutex<Instant>,
        tick: watch::Sender<Instant>,
        sleeping: watch::Sender<Option<Instant>>,
    }

    impl FakeClock {
        fn new() -> Arc<FakeClock> {
            let start = Instant::now();
            Arc::new(FakeClock {
                start,
                now: Mutex::new(start),
                tick: watch::Sender::new(start),
                sleeping: watch::Sender::new(None),
            })
        }

        /// Time since the start.
        fn elapsed(&self) -> Duration {
            *self.now.lock() - self.start
        }

        /// Waits for the compactor to sleep, then wakes it at its deadline and waits for
        /// its next sleep.
        async fn step(&self) {
            let mut rx = self.sleeping.subscribe();
            let Some(deadline) = rx.wait_for(Option::is_some).await.ok().and_then(|d| *d) else {
                panic!("clock gone");
            };
            self.sleeping.send_replace(None);
            *self.now.lock() = deadline;
            self.tick.send_replace(deadline);
            let mut rx = self.sleeping.subscribe();
            let _ = rx.wait_for(Option::is_some).await;
        }

        /// Steps until `elapsed() >= at`.
        async fn until(&self, at: Duration) {
            while self.elapsed() < at {
                self.step().await;
            }
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            *self.now.lock()
        }

        fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
            let deadline = *self.now.lock() + d;
            let mut rx = self.tick.subscribe();
            self.sleeping.send_replace(Some(deadline));
            Box::pin(async move {
                let _ = rx.wait_for(|now| *now >= deadline).await;
            })
        }
    }

    /// A target whose revision the test sets; it records compactions (at the fake time).
    struct Target {
        clock: Arc<FakeClock>,
        rev: AtomicI64,
        /// If not 0, the revision is `1 + rate * elapsed minutes` instead of `rev`.
        rate: AtomicI64,
        leader: AtomicBool,
        fail_next: AtomicBool,
        compactions: Mutex<Vec<(Duration, i64)>>,
    }

    impl Target {
        fn new(clock: Arc<FakeClock>) -> Arc<Target> {
            Arc::new(Target {
                clock,
                rev: AtomicI64::new(1),
                rate: AtomicI64::new(0),
                leader: AtomicBool::new(true),
                fail_next: AtomicBool::new(false),
                compactions: Mutex::new(Vec::new()),
            })
        }

        fn taken(&self) -> Vec<(Duration, i64)> {
            std::mem::take(&mut *self.compactions.lock())
        }
    }

    impl Compactable for Target {
        fn revision(&self) -> i64 {
            match self.rate.load(Ordering::SeqCst) {
                0 => self.rev.load(Ordering::SeqCst),
                r => 1 + r * (self.clock.elapsed().as_secs() / 60) as i64,
            }
        }

        fn is_leader(&self) -> bool {
            self.leader.load(Ordering::SeqCst)
        }

        fn compact(
            &self,
            rev: i64,
        ) -> Pin<Box<dyn Future<Output = Result<(), ServerError>> + Send + '_>> {
            self.compactions.lock().push((self.clock.elapsed(), rev));
            let fail = self.fail_next.swap(false, Ordering::SeqCst);
            Box::pin(async move {
                if fail {
                    Err(ServerError::Timeout)
                } else {
                    Ok(())
                }
            })
        }
    }

    type Started = (
        Arc<FakeClock>,
        Arc<Target>,
        watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    );

    /// Starts a compactor; the test runtime is single-threaded, so it first runs at the
    /// test's first wait (after the test has set the target up).
    fn start(policy: AutoCompaction) -> Started {
        let clock = FakeClock::new();
        let target = Target::new(clock.clone());
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(policy, target.clone(), clock.clone(), stop_rx));
        (clock, target, stop_tx, task)
    }

    const MIN: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn periodic_compacts_to_the_revision_seen_one_period_ago() {
        // 10 minutes: a revision recorded every minute, compactions every 10 minutes.
        let (clock, target, stop, _) = start(AutoCompaction::Periodic(10 * MIN));
        // The revision at minute m is 1 + 10m.
        target.rate.store(10, Ordering::SeqCst);
        for m in 1..=30u32 {
            clock.step().await;
            assert_eq!(clock.elapsed(), m * MIN);
        }
        // The first at 10 min, with the revision of minute 0; then every 10 minutes with
        // the oldest of the 11 recorded (the check comes a tenth after the last record).
        assert_eq!(
            target.taken(),
            vec![(10 * MIN, 1), (20 * MIN, 91), (30 * MIN, 191)]
        );
        let _ = stop.send(true);
    }

    #[tokio::test]
    async fn periodic_over_an_hour_compacts_hourly_with_a_day_of_history() {
        let day = 24 * 60 * MIN;
        let (clock, target, stop, _) = start(AutoCompaction::Periodic(day));
        // The revision at minute m is 1 + m; a record every 6 minutes (a tenth of an hour).
        target.rate.store(1, Ordering::SeqCst);
        clock.until(day + 2 * 60 * MIN).await;
        // 241 records kept: 24 h back from the last one, made 6 minutes before the check.
        assert_eq!(
            target.taken(),
            vec![(day, 1), (day + 60 * MIN, 55), (day + 120 * MIN, 115)]
        );
        let _ = stop.send(true);
    }

    #[tokio::test]
    async fn periodic_retries_a_tenth_later_and_followers_do_not_compact() {
        let (clock, target, stop, _) = start(AutoCompaction::Periodic(10 * MIN));
        target.leader.store(false, Ordering::SeqCst);
        clock.until(15 * MIN).await;
        assert!(target.taken().is_empty(), "a follower never compacts");
        target.leader.store(true, Ordering::SeqCst);
        target.fail_next.store(true, Ordering::SeqCst);
        target.rev.store(50, Ordering::SeqCst);
        clock.step().await;
        assert_eq!(target.taken(), vec![(16 * MIN, 1)], "failed");
        clock.step().await;
        assert_eq!(
            target.taken(),
            vec![(17 * MIN, 1)],
            "retried a minute later"
        );
        clock.until(26 * MIN).await;
        assert!(
            target.taken().is_empty(),
            "10 minutes after the last success"
        );
        clock.step().await;
        assert_eq!(target.taken(), vec![(27 * MIN, 50)]);
        let _ = stop.send(true);
    }

    #[tokio::test]
    async fn revision_mode_keeps_the_last_n_revisions_every_five_minutes() {
        let five = REVISION_INTERVAL;
        let (clock, target, stop, _) = start(AutoCompaction::Revision(10));
        target.rev.store(5, Ordering::SeqCst);
        clock.step().await;
        assert!(target.taken().is_empty(), "5 - 10 is not a revision");
        target.rev.store(100, Ordering::SeqCst);
        clock.step().await;
        assert_eq!(target.taken(), vec![(2 * five, 90)]);
        clock.step().await;
        assert!(target.taken().is_empty(), "nothing new");
        target.rev.store(150, Ordering::SeqCst);
        target.leader.store(false, Ordering::SeqCst);
        clock.step().await;
        assert!(target.taken().is_empty(), "a follower never compacts");
        target.leader.store(true, Ordering::SeqCst);
        clock.step().await;
        assert_eq!(target.taken(), vec![(5 * five, 140)]);
        let _ = stop.send(true);
    }

    #[tokio::test]
    async fn a_scaled_clock_sleeps_and_advances_factor_times_faster() {
        let clock = ScaledClock::new(100);
        let (real, seen) = (Instant::now(), clock.now());
        clock.sleep(Duration::from_secs(1)).await;
        assert!(real.elapsed() < Duration::from_millis(900), "slept 1/100 s");
        assert!(
            clock.now() - seen >= Duration::from_secs(1),
            "time ran 100x"
        );
    }

    #[tokio::test]
    async fn stop_ends_the_loop() {
        let (clock, _target, stop, task) = start(AutoCompaction::Periodic(MIN));
        let mut rx = clock.sleeping.subscribe();
        let _ = rx.wait_for(Option::is_some).await;
        let _ = stop.send(true);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the compactor stops")
            .unwrap();
    }

    #[test]
    fn retention_parses_as_etcd_does() {
        let p = AutoCompaction::parse;
        let h = Duration::from_secs(3600);
        assert_eq!(p("periodic", "1"), Ok(Some(AutoCompaction::Periodic(h))));
        assert_eq!(
            p("periodic", "+2"),
            Ok(Some(AutoCompaction::Periodic(2 * h)))
        );
        assert_eq!(
            p("periodic", "30m"),
            Ok(Some(AutoCompaction::Periodic(h / 2)))
        );
        assert_eq!(
            p("periodic", "1h30m"),
            Ok(Some(AutoCompaction::Periodic(h * 3 / 2)))
        );
        assert_eq!(p("periodic", "0"), Ok(None));
        assert_eq!(p("periodic", "0s"), Ok(None));
        assert_eq!(
            p("revision", "1000"),
            Ok(Some(AutoCompaction::Revision(1000)))
        );
        assert_eq!(p("revision", "0"), Ok(None));
        // etcd's quirk: a duration in revision mode counts nanoseconds.
        assert_eq!(
            p("revision", "1us"),
            Ok(Some(AutoCompaction::Revision(1000)))
        );
        // Fractional hours are not etcd 3.4's syntax (nor a Go duration); nor negatives.
        assert!(p("periodic", "0.5")
            .unwrap_err()
            .contains("CompactionRetention"));
        assert!(p("periodic", "-1").is_err());
        assert!(p("periodic", "x").is_err());
    }
}
