//! What the contact side shows operators: one [`ContactStats`] snapshot of its numbers, which
//! both `/admin/stats` (JSON) and `/metrics` (Prometheus) render. Reads counters only; changes
//! nothing (no settling of caches on a GET).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use super::log::ReplayReport;
use super::Contacts;
use crate::metrics::prom::{Collect, Exposition, Kind};

/// Events handed to the contact side, by outcome.
#[derive(Debug, Default)]
pub(super) struct IngestStats {
    pub(super) accepted: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) rejected: AtomicU64,
}

/// Events posted to `/v1/events`, by outcome.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EventCounts {
    /// New events made durable and applied.
    pub accepted: u64,
    /// Repeats of an event id seen before: acknowledged, not counted again.
    pub duplicates: u64,
    /// Events refused by validation.
    pub rejected: u64,
}

/// The contact state's size against its budget.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StateStats {
    /// Customers with history in memory.
    pub customers: u64,
    /// Bytes of history, as weighed against the budget.
    pub bytes: u64,
    /// The budget.
    pub memory_budget_bytes: u64,
    /// Customers dropped to stay within the budget (shown offers as if new).
    pub evicted_for_budget: u64,
    /// Customers dropped past the horizon.
    pub expired: u64,
    /// Event ids remembered for de-duplication.
    pub event_ids_remembered: u64,
    /// How far back history reaches.
    pub horizon_days: f64,
}

/// The event log's figures.
#[derive(Debug, Clone, Serialize)]
pub struct LogFigures {
    /// The data folder.
    pub dir: Option<String>,
    /// The fsync policy's name.
    pub fsync: &'static str,
    /// Segments on disk.
    pub segments: u64,
    /// Segments deleted by retention.
    pub segments_deleted: u64,
    /// Group commits written.
    pub groups: u64,
    /// Batches written.
    pub batches: u64,
    /// `fdatasync` calls.
    pub fsyncs: u64,
    /// Bytes appended.
    pub bytes_written: u64,
    /// Failed writes or syncs.
    pub errors: u64,
    /// Bytes the segments take on disk now.
    pub disk_bytes: u64,
    /// Size of the file system holding the data folder.
    pub volume_bytes: Option<u64>,
    /// Bytes of it still free for nextbest (as `df` shows available).
    pub volume_available_bytes: Option<u64>,
    /// What replay found at start.
    pub replay: Option<ReplayReport>,
}

/// One snapshot of the contact side's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct ContactStats {
    /// Events by outcome.
    pub events: EventCounts,
    /// The contact state.
    pub contact_state: StateStats,
    /// The event log, when there is one.
    pub log: Option<LogFigures>,
}

impl Contacts {
    /// The contact side's numbers now.
    pub fn stats(&self) -> ContactStats {
        let s = &self.stats;
        let state = self.state();
        let log = self.log.as_ref().map(|l| {
            let st = &l.stats;
            let dir = self.data_dir.as_deref();
            let volume = dir.and_then(|d| rustix::fs::statvfs(d).ok());
            LogFigures {
                dir: self.data_dir.as_ref().map(|d| d.display().to_string()),
                fsync: l.fsync().as_str(),
                segments: st.segments.load(Relaxed),
                segments_deleted: st.segments_deleted.load(Relaxed),
                groups: st.groups.load(Relaxed),
                batches: st.batches.load(Relaxed),
                fsyncs: st.fsyncs.load(Relaxed),
                bytes_written: st.bytes.load(Relaxed),
                errors: st.errors.load(Relaxed),
                disk_bytes: dir
                    .and_then(|d| super::log::disk_bytes(d).ok())
                    .unwrap_or(0),
                volume_bytes: volume
                    .as_ref()
                    .map(|v| v.f_blocks.saturating_mul(v.f_frsize)),
                volume_available_bytes: volume.map(|v| v.f_bavail.saturating_mul(v.f_frsize)),
                replay: self.replay.clone(),
            }
        });
        ContactStats {
            events: EventCounts {
                accepted: s.accepted.load(Relaxed),
                duplicates: s.duplicates.load(Relaxed),
                rejected: s.rejected.load(Relaxed),
            },
            contact_state: StateStats {
                customers: state.customers(),
                bytes: state.weighted_bytes(),
                memory_budget_bytes: self.memory_budget,
                evicted_for_budget: state.evictions().0,
                expired: state.evictions().1,
                event_ids_remembered: state.seen_ids(),
                horizon_days: state.horizon_ms() as f64 / 86_400_000.0,
            },
            log,
        }
    }

    /// Event, state and log figures for `/admin/stats`.
    pub fn stats_json(&self) -> serde_json::Value {
        serde_json::to_value(self.stats()).unwrap_or_default()
    }
}

impl Collect for ContactStats {
    fn collect(&self, out: &mut Exposition) {
        let e = &self.events;
        out.family(
            "nextbest_events_total",
            Kind::Counter,
            "Events posted to /v1/events, by outcome.",
        )
        .sample(&[("outcome", "accepted")], e.accepted)
        .sample(&[("outcome", "duplicate")], e.duplicates)
        .sample(&[("outcome", "rejected")], e.rejected);
        out.family(
            "nextbest_contact_customers",
            Kind::Gauge,
            "Customers with contact history in memory.",
        )
        .sample(&[], self.contact_state.customers);
        out.family(
            "nextbest_contact_bytes",
            Kind::Gauge,
            "Bytes of contact history, as weighed against the budget.",
        )
        .sample(&[], self.contact_state.bytes);
        out.family(
            "nextbest_contact_memory_budget_bytes",
            Kind::Gauge,
            "The contact history's memory budget (three quarters of --contact-memory-mb).",
        )
        .sample(&[], self.contact_state.memory_budget_bytes);
        out.family(
            "nextbest_contact_evictions_total",
            Kind::Counter,
            "Customers whose history was dropped: `budget` to stay within it (they are then shown offers as if new), `expired` past the horizon.",
        )
        .sample(&[("cause", "budget")], self.contact_state.evicted_for_budget)
        .sample(&[("cause", "expired")], self.contact_state.expired);
        let Some(l) = &self.log else { return };
        for (name, help, v) in [
            (
                "nextbest_event_log_groups_total",
                "Group commits written.",
                l.groups,
            ),
            (
                "nextbest_event_log_fsyncs_total",
                "fdatasync calls on the event log.",
                l.fsyncs,
            ),
            (
                "nextbest_event_log_bytes_total",
                "Bytes appended to the event log.",
                l.bytes_written,
            ),
            (
                "nextbest_event_log_errors_total",
                "Failed event log writes or syncs.",
                l.errors,
            ),
        ] {
            out.family(name, Kind::Counter, help).sample(&[], v);
        }
        out.family(
            "nextbest_event_log_segments",
            Kind::Gauge,
            "Event log segments on disk.",
        )
        .sample(&[], l.segments);
        out.family(
            "nextbest_event_log_disk_bytes",
            Kind::Gauge,
            "Bytes the event log's segments take on disk.",
        )
        .sample(&[], l.disk_bytes);
        if let (Some(size), Some(free)) = (l.volume_bytes, l.volume_available_bytes) {
            out.family(
                "nextbest_data_volume_bytes",
                Kind::Gauge,
                "Size of the file system holding the data folder (the event log's volume).",
            )
            .sample(&[], size);
            out.family(
                "nextbest_data_volume_available_bytes",
                Kind::Gauge,
                "Bytes still available on the data folder's file system; at 0, events answer 503.",
            )
            .sample(&[], free);
        }
        out.family(
            "nextbest_event_log_damaged_segments",
            Kind::Gauge,
            "Segments replay found damaged at start (kept, and copied into damaged/).",
        )
        .sample(&[], l.replay.as_ref().map_or(0, |r| r.corrupt_segments));
    }
}

impl Collect for Contacts {
    fn collect(&self, out: &mut Exposition) {
        self.stats().collect(out);
        self.funnel().collect(out);
    }
}
