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

impl Clock {
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
