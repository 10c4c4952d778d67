//! The status page in a real browser: Debian's headless Chromium opens `/admin/status` (with
//! the admin token in its address), runs its script against the live server, and the DOM it
//! renders must name the model, show the funnel numbers `/admin/stats` gives, and hold no
//! script error. The same browser takes the README's screenshot.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nextbest::registry::{Registry, RegistryConfig};
use nextbest::server::AppState;
use serde_json::{json, Value};
use support::*;

const TOKEN: &str = "status-token";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs headless Chromium on `url` with `extra` arguments; its stdout. Fails the test (never
/// skips it) when Chromium is missing.
fn chromium(profile: &Path, url: &str, extra: &[&str]) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install it with `apt-get install -y chromium` (.ci/run does)"
    );
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1440,1500",
            "--virtual-time-budget=8000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).map(|_| s)
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium exited with {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap().expect("chromium's output is text")
}

/// Serves the demo with a challenger on half of the customers, behind an admin token.
async fn start(models: &Path) -> TestServer {
    let registry = Arc::new(Registry::new(RegistryConfig {
        models_path: Some(models.to_owned()),
        features_path: Some(models.join("features.csv")),
        ..RegistryConfig::default()
    }));
    registry.reload_from_disk().expect("the models load");
    // The same model with a warning (a complaint-hold category no offer has), for the page's
    // model history.
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(models.join("model.json")).unwrap()).unwrap();
    doc["policies"]["complaint_hold"]["categories"] = json!(["sales", "Retention"]);
    let warned = registry
        .install_document(
            serde_json::to_vec(&doc).unwrap(),
            Some(models.to_owned()),
            "admin".into(),
        )
        .expect("a model with a warning loads");
    assert_eq!(warned.warnings.len(), 1, "{:?}", warned.warnings);
    // A refused load, for the page's load history.
    let refused = registry.install_document(
        br#"{"name": "broken", "version": "x", "offers": 3}"#.to_vec(),
        None,
        "admin".into(),
    );
    assert!(refused.is_err());
    start_state(AppState::new(registry, with_token(TOKEN))).await
}

/// Decisions for 60 customers and outcomes for most of them.
async fn traffic(srv: &TestServer) {
    let mut events = Vec::new();
    for i in 1..=60 {
        let (customer, channel, a) = decide_demo_customer(srv.public, i).await;
        let Some(offer) = a["offers"][0]["offer_id"].as_str() else {
            continue;
        };
        let e = |kind: &str| {
            json!({"type": kind, "customer_id": customer, "offer_id": offer, "channel": channel,
                   "decision_id": a["decision_id"], "event_id": format!("{kind}-{i}")})
        };
        events.push(e("impression"));
        if i % 3 == 0 {
            events.push(e("click"));
        }
        if i % 4 == 0 {
            events.push(e("conversion"));
        }
        // The adaptive offer is shown on a channel's e-bill page, not decided here: its
        // impressions and conversions give its model health a minute to chart.
        if i <= 20 {
            events.push(json!({"type": "impression", "customer_id": customer,
                "offer_id": "ebill_switch", "channel": channel, "event_id": format!("eb-{i}")}));
            if i % 5 == 0 {
                events.push(json!({"type": "conversion", "customer_id": customer,
                    "offer_id": "ebill_switch", "channel": channel,
                    "event_id": format!("ebc-{i}")}));
            }
        }
    }
    post_events(srv.public, json!(events)).await;
    // Seven anonymous visitors on the web home banner: five from the spring campaign on the
    // deals page (decided from context), two on a page no offer for visitors targets.
    for i in 0..7 {
        let page = if i < 5 { "deals" } else { "account" };
        let a = decide(
            srv.public,
            json!({"visitor_id": format!("web-{i}"), "channel": "web", "placement": "home_hero",
                   "context": {"page": page, "utm_campaign": "spring_switch"}}),
        )
        .await;
        assert_eq!(a["anonymous"], true, "{a}");
    }
}

async fn admin_stats(srv: &TestServer) -> Value {
    let auth = format!("Bearer {TOKEN}");
    request(
        srv.admin,
        "GET",
        "/admin/stats",
        &[("authorization", &auth)],
        b"",
    )
    .await
    .json()
}

fn attr_number(dom: &str, name: &str) -> u64 {
    let at = dom
        .find(&format!("{name}=\""))
        .unwrap_or_else(|| panic!("no {name} in the DOM"));
    let rest = &dom[at + name.len() + 2..];
    rest[..rest.find('"').unwrap()].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_renders_the_live_figures_in_a_real_browser() {
    let dir = TempDir::new("status-page");
    let models = dir.0.join("models");
    models_with_challenger(&models);
    let srv = start(&models).await;
    let auth = format!("Bearer {TOKEN}");
    // The champion itself as a shadow on every decision: the page's shadow section.
    let mut shadow: Value =
        serde_json::from_slice(&std::fs::read(models.join("model.json")).unwrap()).unwrap();
    shadow["version"] = json!("shadow-page");
    shadow["share"] = json!(1.0);
    shadow["estimate_share"] = json!(1.0);
    let put = request(
        srv.admin,
        "PUT",
        "/admin/models/shadow",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        &serde_json::to_vec(&shadow).unwrap(),
    )
    .await;
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    traffic(&srv).await;
    // Every sampled decision is shadowed before the page is read (polled, with a limit).
    let mut tries = 0;
    loop {
        let stats = admin_stats(&srv).await;
        let s = &stats["shadow"];
        if s["decisions"].as_u64().is_some() && s["decisions"] == s["sampled"] {
            break;
        }
        tries += 1;
        assert!(tries < 2000, "the shadow decisions were not made: {s}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Behind the token: refused without it, served with it (header or, for a browser, query).
    assert_eq!(get(srv.admin, "/admin/status").await.status, 401);
    assert_eq!(get(srv.admin, "/admin/status.json").await.status, 401);
    assert_eq!(
        get(srv.admin, "/admin/status?token=wrong").await.status,
        401
    );
    let page = request(
        srv.admin,
        "GET",
        "/admin/status",
        &[("authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    // Never framed by another page, never sniffed as anything but HTML.
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let policy = page.header("content-security-policy").unwrap_or("");
    assert!(policy.ends_with("frame-ancestors 'none'"), "{policy}");
    // Only the page's own script runs (named by its hash); the browser below runs it.
    assert!(
        policy.contains("script-src 'sha256-") && !policy.contains("script-src 'unsafe-inline'"),
        "{policy}"
    );
    let html = String::from_utf8(page.body).unwrap();
    for outside in ["http://", "https://", "//cdn", "<link", "src="] {
        assert!(
            !html.contains(outside),
            "the page loads nothing from elsewhere: {outside}"
        );
    }

    let url = format!("http://{}/admin/status?token={TOKEN}", srv.admin);
    let profile = TempDir::new("chromium-profile");
    let dom = tokio::task::spawn_blocking({
        let (p, url) = (profile.0.clone(), url.clone());
        move || chromium(&p, &url, &["--dump-dom"])
    })
    .await
    .unwrap();

    assert!(
        dom.contains("<pre id=\"errors\"></pre>"),
        "script errors on the page:\n{dom}"
    );
    assert!(
        attr_number(&dom, "data-rendered") >= 1,
        "the page never rendered:\n{dom}"
    );
    assert!(dom.contains("<span id=\"model-name\">demo</span>"), "{dom}");
    assert!(dom.contains("challenger demo challenger-1 on 50 % of customers"));
    assert!(dom.contains("refused"), "the refused load is listed");
    assert!(
        dom.contains("1 warning</span>")
            && dom.contains("policies.complaint_hold.categories[1]: no offer has category"),
        "the active model's warning is shown:\n{dom}"
    );

    // The funnel as the page shows it is the funnel /admin/stats gives (nothing decided since).
    let stats = admin_stats(&srv).await;
    let rows = stats["funnel"].as_array().unwrap();
    assert!(rows.len() >= 4, "{stats}");
    for r in rows {
        let s = |k: &str| r[k].as_str().unwrap().to_owned();
        let expected = format!(
            "data-row=\"{}|{}|{}|{}|{}\" data-decisions=\"{}\" data-impressions=\"{}\" data-clicks=\"{}\" data-conversions=\"{}\" data-dismisses=\"{}\"",
            s("model"), s("version"), s("offer_id"), s("channel"), s("variant"),
            r["decisions"], r["impressions"], r["clicks"], r["conversions"], r["dismisses"]
        );
        assert!(
            dom.contains(&expected),
            "no `{expected}` in the page:\n{dom}"
        );
    }
    for r in stats["lift"]["rows"].as_array().unwrap() {
        let key = format!(
            "data-lift=\"{}|{}\"",
            r["offer_id"].as_str().unwrap(),
            r["channel"].as_str().unwrap()
        );
        assert!(dom.contains(&key), "no lift row {key}");
    }
    // The demo serves a challenger, so lift has rows and the page its overall row.
    assert!(
        !stats["lift"]["rows"].as_array().unwrap().is_empty(),
        "{stats}"
    );
    assert!(
        dom.contains("data-lift-overall=\"1\""),
        "no overall lift row:\n{dom}"
    );
    // Model health: a row per adaptive offer with its verdict and charts drawn inline.
    let adaptive = stats["adaptive"].as_array().unwrap();
    assert!(
        !adaptive.is_empty(),
        "the demo serves an adaptive offer: {stats}"
    );
    for a in adaptive {
        let key = format!(
            "data-adaptive=\"{}|{}\"",
            a["offer_id"].as_str().unwrap(),
            a["variant"].as_str().unwrap()
        );
        assert!(dom.contains(&key), "no model health row {key}:\n{dom}");
        let verdict = a["health"]["verdict"].as_str().unwrap();
        assert!(dom.contains(verdict), "no verdict `{verdict}` in the page");
    }
    // The per-minute chart is drawn (one minute of traffic: 20 impressions, 4 conversions).
    assert!(
        dom.contains("data-minutes=\"1\""),
        "no per-minute chart:\n{dom}"
    );
    let ebill = adaptive
        .iter()
        .find(|a| a["offer_id"] == "ebill_switch")
        .unwrap();
    assert_eq!(ebill["health"]["recent"]["impressions"], 20, "{ebill}");
    assert_eq!(ebill["health"]["recent"]["responders"], 4, "{ebill}");
    // The shadow: its figures and a row per placement of its estimate against the champion.
    let sh = &stats["shadow"];
    assert!(
        dom.contains(&format!(
            "id=\"shadow-decisions\">{} of {} sampled<",
            fmt_thousands(sh["decisions"].as_u64().unwrap()),
            fmt_thousands(sh["sampled"].as_u64().unwrap())
        )),
        "{sh}\n{dom}"
    );
    let placements = sh["off_policy"]["placements"].as_array().unwrap();
    assert!(!placements.is_empty(), "{sh}");
    for p in placements {
        let key = format!(
            "data-shadow-estimate=\"{}|{}\"",
            p["channel"].as_str().unwrap(),
            p["placement"].as_str().unwrap()
        );
        assert!(dom.contains(&key), "no shadow estimate row {key}:\n{dom}");
        // An estimable row whose shadow shows some of what the log never could says so; one
        // that is not estimable says why instead of a figure.
        let at = dom.find(&key).unwrap();
        let row = &dom[at..at + dom[at..].find("</tr>").unwrap()];
        if p["estimable"] == true {
            let unsupported = p["unsupported_share"].as_f64().unwrap() > 0.0;
            assert_eq!(row.contains("unsupported"), unsupported, "{p}\n{row}");
        } else {
            assert!(row.contains(p["why"].as_str().unwrap()), "{p}\n{row}");
        }
    }
    // Conversions named shadowed decisions: those placements have figures.
    assert!(
        placements.iter().any(|p| p["estimable"] == true),
        "{placements:?}"
    );
    let status = request(
        srv.admin,
        "GET",
        "/admin/status.json",
        &[("authorization", &auth)],
        b"",
    )
    .await
    .json();
    let total = status["decisions"]["total"].as_u64().unwrap();
    assert!(total >= 60);
    let anonymous = &status["decisions"]["anonymous"];
    assert_eq!(
        (&anonymous["total"], &anonymous["personalised"]),
        (&json!(7), &json!(5)),
        "{status}"
    );
    let known = total - 7;
    assert!(
        dom.contains(&format!(
            "id=\"decisions-anonymous\">{} / 7<",
            fmt_thousands(known)
        )),
        "{dom}"
    );
    assert!(
        dom.contains(&format!("id=\"decisions-total\">{}<", fmt_thousands(total))),
        "{dom}"
    );

    // The README's screenshot, from the same browser.
    let shot: PathBuf = dir.0.join("status.png");
    let arg = format!("--screenshot={}", shot.display());
    let profile = TempDir::new("chromium-profile-shot");
    tokio::task::spawn_blocking({
        let p = profile.0.clone();
        move || chromium(&p, &url, &[&arg])
    })
    .await
    .unwrap();
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join("status.png"), &png).unwrap();
    }
}

/// A count as the page writes it (`toLocaleString("en-US")`).
fn fmt_thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
