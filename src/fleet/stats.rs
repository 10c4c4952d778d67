//! The fleet link's figures: one snapshot ([`FleetStats`]), which `/admin/stats`, the status
//! page and `/metrics` all read.

use std::sync::atomic::Ordering::Relaxed;

use super::reports::FleetView;
use super::{now_ms, redact, Fleet};
use crate::metrics::prom::{Collect, Exposition, Kind};
use crate::metrics::HistogramSnapshot;

impl Fleet {
    /// The link's figures now: what `/admin/stats`, the status page and `/metrics` show.
    pub fn stats(&self) -> FleetStats {
        let oldest = self.backlog_oldest_ms.load(Relaxed);
        FleetStats {
            origin: self.origin.clone(),
            redis: redact(&self.config.url),
            partitions: self.config.partitions,
            connected: self.connected.load(Relaxed),
            // A replica that refused to join catches up with nothing from then on.
            caught_up: self.caught_up() && self.refused().is_none(),
            last_exchange_ms: self.last_exchange_ms.load(Relaxed),
            shipped: self.shipped.load(Relaxed),
            applied: self.applied.load(Relaxed),
            backlog_bytes: self.backlog_bytes.load(Relaxed),
            backlog_age_ms: if oldest > 0 {
                (now_ms() - oldest).max(0)
            } else {
                0
            },
            lag_ms: self.lag_ms.load(Relaxed),
            clock_skew_ms: self.clock_skew_ms.load(Relaxed),
            refused: self.refused().map(str::to_owned),
            changes_applied: self.changes_applied.load(Relaxed),
            changes_unsigned: self.changes_unsigned.load(Relaxed),
            fleet: self.view(),
            lag: self.lag.read(),
        }
    }
}

/// One snapshot of the fleet link's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetStats {
    /// This replica's id.
    pub origin: String,
    /// The Redis URL, password hidden.
    pub redis: String,
    /// Stream partitions.
    pub partitions: u16,
    /// Whether Redis answers.
    pub connected: bool,
    /// Whether the fleet's kept events are applied.
    pub caught_up: bool,
    /// When Redis last answered (Unix ms).
    pub last_exchange_ms: i64,
    /// Events shipped to the fleet.
    pub shipped: u64,
    /// Events applied from other replicas.
    pub applied: u64,
    /// Event log bytes not yet shipped.
    pub backlog_bytes: u64,
    /// How long ago the oldest event not yet shipped was accepted (ms; 0 when none).
    pub backlog_age_ms: i64,
    /// Lag of the last remote event applied, from its acceptance at the origin (ms).
    pub lag_ms: i64,
    /// Redis's clock less this host's, at the last append (ms; 0 before one).
    pub clock_skew_ms: i64,
    /// Why this replica refused to join the fleet, if it did.
    pub refused: Option<String>,
    /// Admin changes made on other replicas and applied here.
    pub changes_applied: u64,
    /// Admin changes read from the fleet's stream and refused here for their signature
    /// (missing, or not made with this replica's admin token).
    pub changes_unsigned: u64,
    /// What every live replica serves, and whether they agree.
    pub fleet: FleetView,
    #[serde(skip)]
    lag: HistogramSnapshot,
}

impl Collect for FleetStats {
    fn collect(&self, out: &mut Exposition) {
        out.family(
            "nextbest_replication_lag_seconds",
            Kind::Gauge,
            "Time from another replica's acceptance of an event to its apply here, for the last one.",
        )
        .sample(&[], self.lag_ms as f64 / 1e3);
        self.lag.write(
            out,
            "nextbest_replication_apply_lag_seconds",
            "Time from another replica's acceptance of an event to its apply here.",
        );
        out.family(
            "nextbest_replication_backlog_bytes",
            Kind::Gauge,
            "Event log bytes not yet shipped to Redis, measured from the log every second.",
        )
        .sample(&[], self.backlog_bytes);
        out.family(
            "nextbest_replication_backlog_age_seconds",
            Kind::Gauge,
            "How long ago the oldest event not yet shipped to Redis was accepted (0: none).",
        )
        .sample(&[], self.backlog_age_ms as f64 / 1e3);
        out.family(
            "nextbest_fleet_clock_skew_seconds",
            Kind::Gauge,
            "Redis's clock less this host's at the last append: past 5 s either way, the times this replica stamps and counts windows from are off for the fleet.",
        )
        .sample(&[], self.clock_skew_ms as f64 / 1e3);
        out.family(
            "nextbest_replication_refused",
            Kind::Gauge,
            "1 when this replica refused to join the fleet (see its log and /readyz).",
        )
        .sample(&[], u8::from(self.refused.is_some()));
        out.family(
            "nextbest_fleet_changes_applied_total",
            Kind::Counter,
            "Admin changes (models, rollbacks, feature reloads) made on other replicas and applied here.",
        )
        .sample(&[], self.changes_applied);
        out.family(
            "nextbest_fleet_changes_unsigned_total",
            Kind::Counter,
            "Admin changes read from the fleet's stream and refused here: not signed with this replica's admin token.",
        )
        .sample(&[], self.changes_unsigned);
        self.fleet.collect(out);
        out.family(
            "nextbest_replication_events_total",
            Kind::Counter,
            "Events shipped to the fleet, and applied from it.",
        )
        .sample(&[("direction", "shipped")], self.shipped)
        .sample(&[("direction", "applied")], self.applied);
        out.family(
            "nextbest_replication_last_exchange_timestamp_seconds",
            Kind::Gauge,
            "When Redis last answered (Unix seconds).",
        )
        .sample(&[], self.last_exchange_ms as f64 / 1e3);
        out.family(
            "nextbest_replication_connected",
            Kind::Gauge,
            "1 while Redis answers.",
        )
        .sample(&[], u8::from(self.connected));
        out.family(
            "nextbest_replication_caught_up",
            Kind::Gauge,
            "1 once the fleet's kept events are applied.",
        )
        .sample(&[], u8::from(self.caught_up));
    }
}

impl Collect for Fleet {
    fn collect(&self, out: &mut Exposition) {
        self.stats().collect(out);
    }
}
