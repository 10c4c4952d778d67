//! SLA guards on the decision path: the deadline a decision must meet, and admission control
//! that sheds load with fallback content instead of queueing it.
//!
//! Both are cheap by design: the deadline is one `Instant` compared every few offers, and
//! admission is one atomic add and subtract per request.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::engine::Budget;

/// A decision's deadline, checked by the engine between offers.
pub struct Deadline(pub Instant);

impl Budget for Deadline {
    #[inline]
    fn expired(&self) -> bool {
        Instant::now() >= self.0
    }
}

/// The budget for one request: the configured one, or a shorter one the client asks for with
/// `X-Deadline-Us` (a client may only shorten it).
pub fn budget(configured: Duration, header: Option<&[u8]>) -> Duration {
    let asked = header
        .and_then(|h| std::str::from_utf8(h).ok())
        .and_then(|h| h.trim().parse::<u64>().ok())
        .map(Duration::from_micros);
    match asked {
        Some(a) if a < configured => a,
        _ => configured,
    }
}

/// Counts decide requests in flight and decides which to admit.
pub struct Admission {
    inflight: AtomicUsize,
    max: usize,
}

/// A request's place in flight; leaving drops it.
pub struct Ticket<'a> {
    admission: &'a Admission,
    /// How many requests were in flight when this one arrived (itself excluded).
    pub ahead: usize,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.admission.inflight.fetch_sub(1, Relaxed);
    }
}

impl Admission {
    /// At most `max` decide requests in flight (at least 1).
    pub fn new(max: usize) -> Self {
        Admission {
            inflight: AtomicUsize::new(0),
            max: max.max(1),
        }
    }

    /// Enters a request; the ticket leaves when dropped.
    #[inline]
    pub fn enter(&self) -> Ticket<'_> {
        let ahead = self.inflight.fetch_add(1, Relaxed);
        Ticket {
            admission: self,
            ahead,
        }
    }

    /// Whether a request of this placement priority (0..=100) may be decided. Priority 100
    /// uses the whole bound, priority 0 half of it: low priorities step aside first.
    #[inline]
    pub fn admits(&self, ticket: &Ticket<'_>, priority: u8) -> bool {
        let limit = (self.max * (100 + priority.min(100) as usize) / 200).max(1);
        ticket.ahead < limit
    }

    /// Requests in flight now.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Relaxed)
    }

    /// The bound.
    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_may_only_shorten_the_budget() {
        let five = Duration::from_millis(5);
        assert_eq!(budget(five, None), five);
        assert_eq!(budget(five, Some(b"200")), Duration::from_micros(200));
        assert_eq!(budget(five, Some(b"99999999")), five);
        assert_eq!(budget(five, Some(b"soon")), five);
    }

    #[test]
    fn admission_bounds_and_priorities() {
        let a = Admission::new(4);
        let t: Vec<_> = (0..6).map(|_| a.enter()).collect();
        assert_eq!(a.inflight(), 6);
        let admitted_high = t.iter().filter(|t| a.admits(t, 100)).count();
        let admitted_low = t.iter().filter(|t| a.admits(t, 0)).count();
        assert_eq!(admitted_high, 4);
        assert_eq!(admitted_low, 2);
        drop(t);
        assert_eq!(a.inflight(), 0);
    }
}
