//! The time source handlers read "now" from: the system clock when serving, a manual clock in
//! tests, so cool-downs and windows are checked at exact instants without sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, from the system or from a test.
#[derive(Clone)]
pub struct Clock(Source);

#[derive(Clone)]
enum Source {
    System,
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock(Source::System)
    }

    /// A clock that stands still until the returned handle moves it.
    pub fn manual(start_ms: i64) -> (Self, ManualClock) {
        let t = Arc::new(AtomicI64::new(start_ms));
        (Clock(Source::Manual(t.clone())), ManualClock(t))
    }

    /// Now, in milliseconds since the Unix epoch.
    #[inline]
    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            Source::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            Source::Manual(t) => t.load(Ordering::Relaxed),
        }
    }
}

/// How far the wall clock may run ahead of the time counted since start before what the
/// contact side forgets by age stops following it (see [`Clock::steady_ms`]).
pub const STEP_TOLERANCE_MS: i64 = 10 * 60_000;

impl Clock {
    /// Now for what the contact side forgets by age (histories past the horizon): the wall
    /// clock, but never more than [`STEP_TOLERANCE_MS`] ahead of the wall clock at start plus
    /// the time the monotonic clock has counted since. A wall clock stepped forward (a host
    /// set a year ahead, then put right) would otherwise forget at once every dismiss and
    /// contact it must keep; one that moved on for real (a VM paused for hours) only keeps
    /// histories a little longer than their window until the next start. A manual clock is
    /// taken as it is.
    pub fn steady_ms(&self) -> i64 {
        match &self.0 {
            Source::System => {
                static START: std::sync::OnceLock<(i64, std::time::Instant)> =
                    std::sync::OnceLock::new();
                let wall = self.now_ms();
                let (at, since) = *START.get_or_init(|| (wall, std::time::Instant::now()));
                steady(wall, at, since.elapsed().as_millis() as i64)
            }
            Source::Manual(t) => t.load(Ordering::Relaxed),
        }
    }

    /// Now, as a wall-clock time (for records that show it).
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_millis(self.now_ms().max(0) as u64)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Source::System => f.write_str("Clock::system"),
            Source::Manual(t) => write!(f, "Clock::manual({})", t.load(Ordering::Relaxed)),
        }
    }
}

/// The wall clock `wall_ms`, held back to `STEP_TOLERANCE_MS` past `start_ms` (the wall clock
/// at start) plus `elapsed_ms` (counted by the monotonic clock since).
fn steady(wall_ms: i64, start_ms: i64, elapsed_ms: i64) -> i64 {
    wall_ms.min(
        start_ms
            .saturating_add(elapsed_ms)
            .saturating_add(STEP_TOLERANCE_MS),
    )
}

/// Moves a manual clock (tests).
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// Sets the time.
    pub fn set_ms(&self, ms: i64) {
        self.0.store(ms, Ordering::Relaxed);
    }

    /// Moves the time forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::Relaxed);
    }

    /// The time it shows.
    pub fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wall_clock_stepped_ahead_is_held_back_and_one_behind_is_followed() {
        let start = 1_800_000_000_000;
        // In step with the monotonic clock, or a little ahead of it (NTP's slew): followed.
        assert_eq!(steady(start + 5_000, start, 5_000), start + 5_000);
        assert_eq!(steady(start + 65_000, start, 5_000), start + 65_000);
        // A year ahead: held to the tolerance past the time counted.
        let year = 365 * 86_400_000;
        assert_eq!(
            steady(start + year, start, 5_000),
            start + 5_000 + STEP_TOLERANCE_MS
        );
        // Behind: followed (forgetting later is never lost history).
        assert_eq!(steady(start - year, start, 5_000), start - year);
        // The system clock's steady time is the wall clock's while it runs true.
        let c = Clock::system();
        let (a, b) = (c.steady_ms(), c.now_ms());
        assert!((b - a).abs() < 1_000, "{a} {b}");
        let (m, _) = Clock::manual(42);
        assert_eq!(m.steady_ms(), 42);
    }
}
