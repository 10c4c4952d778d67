//! The Grafana dashboard against the real server's `/metrics`: every metric a panel or a
//! variable queries is one the server exposes, with the labels and label values the query
//! selects and groups by. A renamed metric or label fails here, not on an operator's empty
//! panel.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{json, Value};

/// Metrics the dashboard may query although a server in this test does not expose them, and
/// why. Keep it explicit and short.
const NOT_EXPOSED_HERE: [(&str, &str); 10] = [
    ("nextbest_replication_lag_seconds", WITH_REDIS),
    ("nextbest_replication_apply_lag_seconds_bucket", WITH_REDIS),
    ("nextbest_replication_backlog_bytes", WITH_REDIS),
    ("nextbest_replication_backlog_age_seconds", WITH_REDIS),
    ("nextbest_replication_connected", WITH_REDIS),
    ("nextbest_replication_caught_up", WITH_REDIS),
    ("nextbest_replication_refused", WITH_REDIS),
    ("nextbest_fleet_model_versions", WITH_REDIS),
    ("nextbest_fleet_snapshot_versions", WITH_REDIS),
    ("nextbest_fleet_replicas", WITH_REDIS),
];

/// Why the fleet's metrics are exempt here (tests/alerts.rs checks them on a replica with Redis).
const WITH_REDIS: &str = "exposed only when the fleet shares events through Redis (--redis)";

/// Labels Prometheus adds at scrape time.
const SCRAPE_LABELS: [&str; 2] = ["instance", "job"];

/// Exposed series: metric name to the label sets it has.
type Exposed = BTreeMap<String, Vec<BTreeMap<String, String>>>;

fn parse_exposition(text: &str) -> Exposed {
    let mut out = Exposed::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, _value) = line.rsplit_once(' ').expect("a sample line");
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split("\",")
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once('=').expect("label=value");
                (k.to_owned(), v.trim_matches('"').to_owned())
            })
            .collect();
        out.entry(name.to_owned()).or_default().push(labels);
    }
    out
}

/// Every PromQL string of the dashboard: panel targets and variable queries.
fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr" | "definition", Value::String(q)) => out.push(q.clone()),
                    ("query", Value::String(q)) if q.contains("nextbest_") => out.push(q.clone()),
                    _ => queries(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| queries(x, out)),
        _ => {}
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// One metric reference in a query: its name and its `label="value"` matchers.
struct Reference {
    name: String,
    equals: Vec<(String, String)>,
    grouped_by: Vec<String>,
}

fn references(q: &str) -> Vec<Reference> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = q[at..].find("nextbest_") {
        let start = at + i;
        let end = q[start..]
            .find(|c: char| !is_ident(c))
            .map_or(q.len(), |e| start + e);
        let name = q[start..end].to_owned();
        let mut equals = Vec::new();
        if q[end..].starts_with('{') {
            let close = end + q[end..].find('}').expect("closed matchers");
            for m in q[end + 1..close].split(',') {
                if let Some((label, value)) = m.split_once('=') {
                    let value = value.trim();
                    // `=~` and `!=` select patterns; only exact matches must exist.
                    if !label.ends_with('!') && !value.starts_with('~') && !value.contains('$') {
                        equals.push((label.trim().to_owned(), value.trim_matches('"').to_owned()));
                    }
                }
            }
        }
        // `sum by (a, b) (rate(NAME...` groups NAME by a and b.
        let before = &q[..start];
        let grouped_by = before
            .rfind("by (")
            .filter(|b| !before[*b..].contains("nextbest_"))
            .map(|b| {
                let list = &before[b + 4..];
                list[..list.find(')').expect("closed by")]
                    .split(',')
                    .map(|l| l.trim().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        out.push(Reference {
            name,
            equals,
            grouped_by,
        });
        at = end;
    }
    out
}

#[tokio::test]
async fn every_queried_metric_is_exposed() {
    let data = support::TempDir::new("grafana");
    let (srv, _clock) = support::start_demo_contacts(Some(&data.0)).await;
    // Labelled series appear once something happened: a decision, its impression and click.
    let d = support::decide(
        srv.public,
        json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page"}),
    )
    .await;
    let offer = d["offers"][0]["offer_id"].clone();
    let event = |kind: &str| {
        json!({"type": kind, "customer_id": "C0000042", "offer_id": offer,
               "channel": "web", "placement": "plans_page", "decision_id": d["decision_id"]})
    };
    support::post_events(srv.public, json!([event("impression"), event("click")])).await;
    let r = support::get(srv.admin, "/metrics").await;
    assert_eq!(r.status, 200);
    let exposed = parse_exposition(&String::from_utf8(r.body).expect("UTF-8"));

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/nextbest.json");
    let dashboard: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("the dashboard")).expect("JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() > 5));
    let mut qs = Vec::new();
    queries(&dashboard, &mut qs);
    assert!(qs.len() > 10, "{qs:?}");

    let mut used = BTreeSet::new();
    for q in &qs {
        for r in references(q) {
            used.insert(r.name.clone());
            if NOT_EXPOSED_HERE.iter().any(|(n, _)| *n == r.name) {
                continue;
            }
            let series = exposed
                .get(&r.name)
                .unwrap_or_else(|| panic!("{} is not exposed by /metrics (query: {q})", r.name));
            for (label, value) in &r.equals {
                assert!(
                    series.iter().any(|s| s.get(label) == Some(value)),
                    "no {}{{{label}=\"{value}\"}} series (query: {q})",
                    r.name
                );
            }
            for label in &r.grouped_by {
                assert!(
                    SCRAPE_LABELS.contains(&label.as_str())
                        || series.iter().any(|s| s.contains_key(label)),
                    "{} has no label {label} to group by (query: {q})",
                    r.name
                );
            }
        }
    }
    for (name, why) in NOT_EXPOSED_HERE {
        assert!(used.contains(name), "{name} is exempt ({why}) but unused");
    }
    // The panels the operator needs are there.
    for needle in [
        "histogram_quantile(",
        "nextbest_decisions_total",
        "reason=\"overload\"",
        "nextbest_inflight_decisions",
        "nextbest_model_loads_total",
        "nextbest_funnel_total",
        "nextbest_events_total",
        "nextbest_event_log_fsyncs_total",
    ] {
        assert!(
            qs.iter().any(|q| q.contains(needle)),
            "no query uses {needle}"
        );
    }
    srv.stop_and_close().await;
}

#[test]
fn the_reference_parser_reads_matchers_and_groupings() {
    let refs = references(
        r#"sum by (offer, stage) (rate(nextbest_funnel_total{stage="clicks",instance=~"$instance"}[5m])) / sum(nextbest_x)"#,
    );
    assert_eq!(refs.len(), 2);
    assert_eq!(refs[0].name, "nextbest_funnel_total");
    assert_eq!(refs[0].equals, vec![("stage".into(), "clicks".into())]);
    assert_eq!(refs[0].grouped_by, vec!["offer", "stage"]);
    assert_eq!(refs[1].name, "nextbest_x");
    assert!(refs[1].grouped_by.is_empty() && refs[1].equals.is_empty());
}
