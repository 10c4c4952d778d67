//! The operator's status page on the admin listener: `GET /admin/status` (one self-contained
//! HTML page, its CSS and script inline, nothing loaded from elsewhere) and
//! `GET /admin/status.json`, the figures the page shows that no other admin route gives
//! (decisions by outcome, latency percentiles, the load journal, admission and connections).
//!
//! The page itself fetches `/admin/stats`, `/admin/models` and `/admin/status.json` and
//! refreshes every few seconds. This module only reads counters; it changes nothing.

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::json;

use super::error::json_response;
use super::AppState;
use crate::engine::FallbackReason;
use crate::experiment::Variant;
use crate::metrics::LATENCY_BUCKETS_US;

/// The page: one file, compiled in.
const PAGE: &str = include_str!("status.html");

/// The page's policy: nothing loaded from elsewhere, and no script but the page's own, named by
/// its hash (so markup that ever slipped past the page's escaping could run nothing).
static POLICY: std::sync::LazyLock<HeaderValue> = std::sync::LazyLock::new(|| {
    use base64::Engine;
    let script = PAGE
        .split_once("<script>")
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .map_or("", |(script, _)| script);
    let digest = ring::digest::digest(&ring::digest::SHA256, script.as_bytes());
    let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    HeaderValue::from_str(&format!(
        "default-src 'none'; connect-src 'self'; script-src 'sha256-{hash}'; \
         style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    ))
    .expect("a policy of ASCII")
});

/// `GET /admin/status`: the page. Its policy forbids loading anything from elsewhere and any
/// script but its own, and it sends no referrer (its address may carry the admin token).
pub fn page() -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("content-security-policy", POLICY.clone());
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    // Never framed by another page (clickjacking), never read as anything but HTML.
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// The `token` parameter of the status page's address (empty when absent).
pub fn query_token(query: Option<&str>) -> String {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// A latency quantile in microseconds from per-bucket counts, interpolated linearly within
/// the bucket holding it (as Prometheus' `histogram_quantile` does); `None` with no
/// observations, and the last bound when the quantile lies past it.
pub fn quantile_us(buckets: &[u64], count: u64, q: f64) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let rank = q * count as f64;
    let mut below = 0u64;
    let mut lower = 0.0;
    for (n, &upper) in buckets.iter().zip(LATENCY_BUCKETS_US.iter()) {
        if *n > 0 && (below + n) as f64 >= rank {
            let within = (rank - below as f64) / *n as f64;
            return Some(lower + (upper as f64 - lower) * within.clamp(0.0, 1.0));
        }
        below += n;
        lower = upper as f64;
    }
    Some(lower)
}

/// `GET /admin/status.json`: decisions by outcome and variant, latency percentiles, the load
/// journal, admission and connections, and the time they were read (for rates).
pub fn json(state: &AppState) -> Response<Full<Bytes>> {
    let d = state.metrics.decisions();
    let fallbacks: serde_json::Map<String, serde_json::Value> = FallbackReason::ALL
        .iter()
        .map(|r| (r.as_str().to_owned(), d.fallbacks(*r).into()))
        .collect();
    let (buckets, count) = d.latency;
    let q = |q| quantile_us(&buckets, count, q);
    let listeners = state.listener_stats();
    let body = json!({
        "now_ms": state.contacts.now_ms(),
        "ready": state.registry.load().is_ready(),
        "draining": state.draining.load(Relaxed),
        "decisions": {
            "total": d.total(),
            "personalised": d.personalised,
            "fallbacks": fallbacks,
            "variants": Variant::ALL.map(|v| json!({"variant": v.as_str(), "decisions": d.variants[v.index()]})),
            "anonymous": {"total": d.anonymous[0] + d.anonymous[1], "personalised": d.anonymous[0]},
        },
        "latency_us": {
            "count": count,
            "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999),
            "buckets_us": LATENCY_BUCKETS_US,
        },
        "admission": {"inflight": listeners.inflight, "max": listeners.max_inflight},
        "connections": {
            "open": listeners.open_connections,
            "evicted": listeners.evicted_connections,
        },
        "features": features_summary(state),
        "loads": state.registry.journal.entries(),
        "replication": state.fleet.as_ref().map(|f| f.stats()),
    });
    let mut resp = json_response(StatusCode::OK, body.to_string().into());
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Each snapshot column's name and kind, with the number of distinct values of a string
/// column: `[{"name": "segment", "kind": "str", "distinct": 4}, {"name": "arpu", "kind": "num"}]`.
pub(super) fn columns_json(f: &crate::features::FeatureStore) -> serde_json::Value {
    use crate::features::ColumnKind;
    f.column_kinds()
        .map(|(name, kind)| match kind {
            ColumnKind::Text { distinct } => {
                json!({"name": name, "kind": kind.as_str(), "distinct": distinct})
            }
            ColumnKind::Number => json!({"name": name, "kind": kind.as_str()}),
        })
        .collect()
}

/// The serving feature snapshot, as `/admin/models` and the status page show it.
pub(super) fn features_summary(state: &AppState) -> Option<serde_json::Value> {
    let snap = state.registry.load();
    let f = snap.features.as_ref()?;
    let journal = state.registry.journal.entries();
    let loaded_at = journal
        .iter()
        .find(|e| e.accepted && e.customers.is_some())
        .map(|e| e.at.clone());
    Some(serde_json::json!({
        "source": f.source(),
        "customers": f.len(),
        "features": f.columns().len(),
        "column_kinds": columns_json(f),
        "bytes": f.bytes_held(),
        "memory": crate::features::memory::SnapshotMemory::of(f),
        "loaded_at": loaded_at,
        "checksum": snapshot_checksum(&snap),
    }))
}

/// The snapshot's version (`crc32:…`), as the fleet compares replicas by, from the same load
/// as the figures beside it.
pub(super) fn snapshot_checksum(snap: &crate::registry::Snapshot) -> Option<&str> {
    snap.feature_version.as_deref().map(|v| v.checksum.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        let mut b = [0u64; LATENCY_BUCKETS_US.len()];
        assert_eq!(quantile_us(&b, 0, 0.5), None);
        // 100 observations: 50 in [10, 20) µs, 40 in [20, 35), 10 in [35, 50).
        // (Buckets: [0, 5), [5, 10), [10, 20), [20, 35), [35, 50), ...)
        b[2] = 50;
        b[3] = 40;
        b[4] = 10;
        // p50: rank 50, the end of the second bucket: 20 µs.
        assert_eq!(quantile_us(&b, 100, 0.5), Some(20.0));
        // p90: rank 90, the end of the third: 35 µs. p95: half-way through the fourth: 42.5.
        assert_eq!(quantile_us(&b, 100, 0.9), Some(35.0));
        assert_eq!(quantile_us(&b, 100, 0.95), Some(42.5));
        // p25: half-way through the second bucket: 15 µs.
        assert_eq!(quantile_us(&b, 100, 0.25), Some(15.0));
        // Observations past the last bound (counted, in no bucket): the last bound.
        assert_eq!(quantile_us(&b, 200, 0.99), Some(100_000.0));
    }
}
