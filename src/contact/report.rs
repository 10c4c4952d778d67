//! What the contact side shows operators: the `/admin/stats` figures and its Prometheus
//! families. Reads counters only; changes nothing.

use std::sync::atomic::Ordering::Relaxed;

use super::Contacts;
use crate::metrics::prom::{Collect, Exposition, Kind};

impl Contacts {
    /// Event, state and log figures for `/admin/stats`.
    pub fn stats_json(&self) -> serde_json::Value {
        let s = &self.shared;
        let log = self.log.as_ref().map(|l| {
            let st = &l.stats;
            serde_json::json!({
                "dir": self.data_dir.as_ref().map(|d| d.display().to_string()),
                "fsync": l.fsync().as_str(),
                "segments": st.segments.load(Relaxed),
                "segments_deleted": st.segments_deleted.load(Relaxed),
                "groups": st.groups.load(Relaxed),
                "batches": st.batches.load(Relaxed),
                "fsyncs": st.fsyncs.load(Relaxed),
                "bytes_written": st.bytes.load(Relaxed),
                "errors": st.errors.load(Relaxed),
                "replay": self.replay,
            })
        });
        serde_json::json!({
            "events": {
                "accepted": s.accepted.load(Relaxed),
                "duplicates": s.duplicates.load(Relaxed),
                "rejected": s.rejected.load(Relaxed),
            },
            "contact_state": {
                "customers": s.state.customers(),
                "bytes": s.state.weighted_bytes(),
                "memory_budget_bytes": self.memory_budget,
                "event_ids_remembered": s.state.seen_ids(),
                "horizon_days": s.state.horizon_ms() as f64 / 86_400_000.0,
            },
            "log": log,
        })
    }
}

impl Collect for Contacts {
    fn collect(&self, out: &mut Exposition) {
        let s = &self.shared;
        let mut f = out.family(
            "nextbest_events_total",
            Kind::Counter,
            "Events posted to /v1/events, by outcome.",
        );
        for (outcome, n) in [
            ("accepted", &s.accepted),
            ("duplicate", &s.duplicates),
            ("rejected", &s.rejected),
        ] {
            f.sample(&[("outcome", outcome)], n.load(Relaxed));
        }
        out.family(
            "nextbest_contact_customers",
            Kind::Gauge,
            "Customers with contact history in memory.",
        )
        .sample(&[], s.state.customers());
        out.family(
            "nextbest_contact_bytes",
            Kind::Gauge,
            "Bytes of contact history, as weighed against the budget.",
        )
        .sample(&[], s.state.weighted_bytes());
        if let Some(l) = &self.log {
            let st = &l.stats;
            for (name, help, v) in [
                (
                    "nextbest_event_log_groups_total",
                    "Group commits written.",
                    &st.groups,
                ),
                (
                    "nextbest_event_log_fsyncs_total",
                    "fdatasync calls on the event log.",
                    &st.fsyncs,
                ),
                (
                    "nextbest_event_log_bytes_total",
                    "Bytes appended to the event log.",
                    &st.bytes,
                ),
                (
                    "nextbest_event_log_errors_total",
                    "Failed event log writes or syncs.",
                    &st.errors,
                ),
            ] {
                out.family(name, Kind::Counter, help)
                    .sample(&[], v.load(Relaxed));
            }
            out.family(
                "nextbest_event_log_segments",
                Kind::Gauge,
                "Event log segments on disk.",
            )
            .sample(&[], st.segments.load(Relaxed));
            out.family(
                "nextbest_event_log_damaged_segments",
                Kind::Gauge,
                "Segments replay found damaged at start (kept, and copied into damaged/).",
            )
            .sample(&[], self.replay.as_ref().map_or(0, |r| r.corrupt_segments));
        }
        s.funnel.collect(out);
    }
}
