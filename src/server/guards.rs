//! SLA guards on the decision path: the deadline a decision must meet, and admission control
//! that sheds load with fallback content instead of queueing it.
//!
//! Both are cheap by design: the deadline is one `Instant` compared every few offers, and
//! admission is one atomic add and subtract per request.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::error::ApiError;
use crate::engine::Budget;

/// A decision's deadline, checked by the engine between offers.
pub struct Deadline {
    end: Instant,
    /// A budget of zero: spent before the first offer, with no clock to read.
    zero: bool,
}

impl Deadline {
    /// The deadline `budget` after `start`.
    pub fn after(start: Instant, budget: Duration) -> Self {
        Deadline {
            end: start + budget,
            zero: budget.is_zero(),
        }
    }
}

impl Budget for Deadline {
    #[inline]
    fn expired(&self) -> bool {
        Instant::now() >= self.end
    }

    #[inline]
    fn spent_at_start(&self) -> bool {
        self.zero
    }
}

/// The largest `X-Deadline-Us` a client may send: one minute, far beyond any decision budget
/// (a larger value is a client bug, such as milliseconds sent as seconds).
pub const MAX_DEADLINE_US: u64 = 60_000_000;

/// One request's budget, and the longer one its client asked for in vain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asked {
    /// What the decision gets.
    pub budget: Duration,
    /// `X-Deadline-Us` when it asked for more than the server's budget: a client may only
    /// shorten it, and one that expects more is told so.
    pub above: Option<u64>,
}

/// The budget for one request: the configured one, or a shorter one the client asks for with
/// `X-Deadline-Us` (a client may only shorten it). A header that is not a whole number of
/// microseconds from 0 to [`MAX_DEADLINE_US`] is refused, naming the header.
pub fn budget(configured: Duration, header: Option<&[u8]>) -> Result<Asked, ApiError> {
    let Some(h) = header else {
        return Ok(Asked {
            budget: configured,
            above: None,
        });
    };
    let text = std::str::from_utf8(h).unwrap_or("").trim();
    // Digits only (`+5`, `1e3` are no whole numbers as the contract writes them), or
    // `2.0`: JSON Schema's integer, as some generated clients write it.
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) if !f.is_empty() => (w, f),
        Some(_) => ("", ""),
        None => (text, ""),
    };
    let plain = !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b == b'0');
    let us = plain
        .then(|| whole.parse::<u64>().ok())
        .flatten()
        .filter(|us| *us <= MAX_DEADLINE_US)
        .ok_or_else(|| {
            ApiError::InvalidRequest(format!(
                "X-Deadline-Us: `{}` is not a whole number of microseconds from 0 to {MAX_DEADLINE_US}",
                String::from_utf8_lossy(h).chars().take(32).collect::<String>()
            ))
        })?;
    let asked = Duration::from_micros(us);
    Ok(Asked {
        budget: configured.min(asked),
        above: (asked > configured).then_some(us),
    })
}

/// Counts decide requests in flight and decides which to admit.
pub struct Admission {
    inflight: AtomicUsize,
    reading: AtomicUsize,
    max: usize,
}

/// A decide request whose body is still arriving: counted apart from the decisions in flight,
/// so clients that never finish a body cannot take the slots of those being decided.
pub struct Reading<'a>(&'a Admission);

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0.reading.fetch_sub(1, Relaxed);
    }
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
            reading: AtomicUsize::new(0),
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

    /// Counts a decide body being read until the guard drops.
    #[inline]
    pub fn reading(&self) -> Reading<'_> {
        self.reading.fetch_add(1, Relaxed);
        Reading(self)
    }

    /// Decide bodies being read now.
    pub fn bodies_reading(&self) -> usize {
        self.reading.load(Relaxed)
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
        let shorter = |us| Asked {
            budget: Duration::from_micros(us),
            above: None,
        };
        assert_eq!(budget(five, None).unwrap(), shorter(5_000));
        assert_eq!(budget(five, Some(b"200")).unwrap(), shorter(200));
        assert_eq!(budget(five, Some(b"200.0")).unwrap(), shorter(200));
        assert_eq!(budget(five, Some(b"5000")).unwrap(), shorter(5_000));
        assert_eq!(
            budget(five, Some(b"60000000")).unwrap(),
            Asked {
                budget: five,
                above: Some(60_000_000)
            }
        );
        for bad in [
            &b"soon"[..],
            b"-1",
            b"1.5",
            b"abc",
            b"60000001",
            b"",
            b"1e3x",
            b"1e3",
            b"+5",
            b"5.",
        ] {
            let e = budget(five, Some(bad)).unwrap_err();
            assert!(e.to_string().starts_with("X-Deadline-Us: "), "{e}");
            assert_eq!(e.status(), hyper::StatusCode::BAD_REQUEST);
        }
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
