//! Starts the real server on ephemeral loopback ports and speaks raw HTTP/1.1 to it, so tests
//! see exactly the bytes a channel backend would (hostile tests need raw sockets anyway).
#![allow(dead_code)]

pub mod binary;
#[cfg(feature = "offline")]
pub mod campaign;
pub mod clock_shim;
pub mod outcomes;
pub mod redis;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nextbest::features::FeatureStore;
use nextbest::model::{self, Limits};
use nextbest::registry::Registry;
use nextbest::secrets::AdminToken;
use nextbest::server::{self, AppState, RunningServer, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A running server and its state.
pub struct TestServer {
    pub public: SocketAddr,
    pub admin: SocketAddr,
    pub state: Arc<AppState>,
    running: RunningServer,
}

impl TestServer {
    pub async fn stop(self) {
        self.running.shutdown().await;
    }

    /// Drains and stops; the number of connections the grace period had to cut.
    pub async fn shutdown(self) -> usize {
        self.running.shutdown().await
    }
}

/// Builds the demo registry (model and snapshot) without serving it.
pub fn demo_registry() -> Arc<Registry> {
    let features = Arc::new(FeatureStore::load(&demo_dir().join("features.csv")).unwrap());
    let model = model::load(&demo_dir(), &*features, &Limits::default()).unwrap();
    let registry = Arc::new(Registry::default());
    registry.install(features, model).unwrap();
    registry
}

/// The version of the champion a registry serves.
pub fn version_of(registry: &Registry) -> String {
    registry
        .load()
        .models
        .as_ref()
        .unwrap()
        .champion
        .compiled
        .version
        .to_string()
}

/// Registry for an inline model document over the demo snapshot.
pub fn registry_for(doc: &serde_json::Value) -> Arc<Registry> {
    let features = Arc::new(FeatureStore::load(&demo_dir().join("features.csv")).unwrap());
    // Scorer files (the demo's tree ensembles) resolve against the demo folder.
    let model = model::from_bytes(
        serde_json::to_vec(doc).unwrap(),
        Some(demo_dir()),
        "test".into(),
        &*features,
        &Limits::default(),
    )
    .unwrap();
    let registry = Arc::new(Registry::default());
    registry.install(features, model).unwrap();
    registry
}

/// A request whose headers are sent but whose body is held back: it stays in flight until
/// `finish` sends the rest.
pub struct HeldRequest {
    stream: TcpStream,
    rest: Vec<u8>,
}

impl HeldRequest {
    pub async fn open(addr: SocketAddr, body: &serde_json::Value) -> HeldRequest {
        let body = serde_json::to_vec(body).unwrap();
        let head = format!(
            "POST /v1/decide HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut first = head.into_bytes();
        first.extend_from_slice(&body[..1]);
        stream.write_all(&first).await.unwrap();
        HeldRequest {
            stream,
            rest: body[1..].to_vec(),
        }
    }

    pub async fn finish(mut self) -> Resp {
        self.stream.write_all(&self.rest).await.unwrap();
        let mut out = Vec::new();
        let _ = self.stream.read_to_end(&mut out).await;
        parse_response(&out)
            .unwrap_or_else(|| panic!("no complete response: {:?}", String::from_utf8_lossy(&out)))
            .0
    }
}

/// A CSV (no quoted commas) with the cell of line `line` (0: the header) and column `column`
/// written as `value`: an export's one odd cell.
pub fn with_cell(csv: &str, line: usize, column: usize, value: &str) -> String {
    csv.lines()
        .enumerate()
        .map(|(i, l)| {
            let mut f: Vec<&str> = l.split(',').collect();
            if i == line {
                f[column] = value;
            }
            f.join(",") + "\n"
        })
        .collect()
}

/// The repository's `models/` folder.
pub fn demo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// Test settings: ephemeral loopback ports.
pub fn test_config() -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        drain_delay: std::time::Duration::ZERO,
        grace: std::time::Duration::from_secs(5),
        // Tests check answers, not the machine's speed: a debug build on a busy runner must
        // not turn them into deadline fallbacks. Deadline tests shorten it per request.
        deadline: std::time::Duration::from_secs(1),
        ..ServerConfig::default()
    }
}

/// Serves the bundled demo model and snapshot.
pub async fn start_demo() -> TestServer {
    start_demo_with(test_config()).await
}

/// Serves the bundled demo with the given settings.
pub async fn start_demo_with(config: ServerConfig) -> TestServer {
    let features = Arc::new(FeatureStore::load(&demo_dir().join("features.csv")).unwrap());
    let model = model::load(&demo_dir(), &*features, &Limits::default()).unwrap();
    let registry = Arc::new(Registry::default());
    registry.install(features, model).unwrap();
    start_registry(registry, config).await
}

/// Serves a model document over a CSV snapshot, both given inline.
pub async fn start_with(model_doc: &serde_json::Value, csv: &str) -> TestServer {
    let features = Arc::new(FeatureStore::from_csv_bytes(csv.as_bytes(), "test.csv").unwrap());
    let model = model::from_bytes(
        serde_json::to_vec(model_doc).unwrap(),
        None,
        "test".into(),
        &*features,
        &Limits::default(),
    )
    .unwrap();
    let registry = Arc::new(Registry::default());
    registry.install(features, model).unwrap();
    start_registry(registry, test_config()).await
}

/// Serves whatever the registry holds (possibly nothing).
pub async fn start_registry(registry: Arc<Registry>, config: ServerConfig) -> TestServer {
    start_state(AppState::new(registry, config)).await
}

/// Serves a prepared state.
pub async fn start_state(state: AppState) -> TestServer {
    let state = Arc::new(state);
    let running = server::start(state.clone()).await.unwrap();
    TestServer {
        public: running.public_addr,
        admin: running.admin_addr,
        state,
        running,
    }
}

/// A private copy of the demo models folder, removed on drop.
pub struct TempModels {
    pub dir: PathBuf,
}

impl TempModels {
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "nextbest-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        // The whole folder: model.json, its scorer files and the snapshot.
        for entry in std::fs::read_dir(demo_dir()).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
            }
        }
        TempModels { dir }
    }

    /// The demo model document with another version (and optional changes).
    pub fn demo_doc(version: &str) -> serde_json::Value {
        let mut doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(demo_dir().join("model.json")).unwrap()).unwrap();
        doc["version"] = version.into();
        doc
    }

    /// Publishes a file the safe way: write a temporary file, then rename it into place.
    pub fn publish(&self, name: &str, bytes: &[u8]) {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, self.dir.join(name)).unwrap();
    }

    /// A registry reading from this folder, loaded.
    pub fn registry(&self) -> Arc<Registry> {
        let registry = Arc::new(Registry::new(nextbest::registry::RegistryConfig {
            models_path: Some(self.dir.clone()),
            features_path: Some(self.dir.join("features.csv")),
            ..Default::default()
        }));
        registry.reload_from_disk().unwrap();
        registry
    }
}

impl Drop for TempModels {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls an async condition for up to 20 s (what runs beside the test is asynchronous).
pub async fn within<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !cond().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Polls a condition until it holds or the time runs out (a wait for an asynchronous effect
/// such as a file-watcher reload, not a sleep that hides a race).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A settings change: an admin token.
pub fn with_token(token: &str) -> ServerConfig {
    ServerConfig {
        admin_token: AdminToken::new(token.into()),
        ..test_config()
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts an error answer: the status and a JSON body naming the error.
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        let j = self.json();
        assert_eq!(j["error"], code, "{j}");
        let detail = j["detail"].as_str().expect("detail is a string").to_owned();
        assert!(!detail.is_empty());
        detail
    }
}

/// Parses one response from the front of `buf`; returns it and the bytes it used.
pub fn parse_response(buf: &[u8]) -> Option<(Resp, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap_or(0));
    let start = end + 4;
    if buf.len() < start + len {
        return None;
    }
    let body = buf[start..start + len].to_vec();
    Some((
        Resp {
            status,
            headers,
            body,
        },
        start + len,
    ))
}

/// Sends raw bytes and reads until the server closes.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may answer (413, 431) and close before reading everything: keep what it said.
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// One request on its own connection.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        req.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    let out = raw(addr, &bytes).await;
    parse_response(&out)
        .unwrap_or_else(|| panic!("no complete response: {:?}", String::from_utf8_lossy(&out)))
        .0
}

pub async fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, &[], b"").await
}

pub async fn post_json(addr: SocketAddr, path: &str, body: &serde_json::Value) -> Resp {
    let bytes = serde_json::to_vec(body).unwrap();
    request(
        addr,
        "POST",
        path,
        &[("content-type", "application/json")],
        &bytes,
    )
    .await
}

/// `PUT /admin/models` with a model document.
pub async fn put_model(addr: SocketAddr, doc: &serde_json::Value) -> Resp {
    let body = serde_json::to_vec(doc).unwrap();
    request(
        addr,
        "PUT",
        "/admin/models",
        &[("content-type", "application/json")],
        &body,
    )
    .await
}

pub async fn decide(addr: SocketAddr, body: serde_json::Value) -> serde_json::Value {
    let r = post_json(addr, "/v1/decide", &body).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

// Data folders, a manual clock, events.

/// A unique, empty folder under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "nextbest-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// 2026-11-22T10:00:00Z, where manual clocks start.
pub const T0: i64 = 1_795_341_600_000;
/// One day in milliseconds.
pub const DAY: i64 = 86_400_000;

/// Serves the demo with its policies, a manual clock at [`T0`], and the event log in `data_dir`
/// (in memory when `None`).
pub async fn start_demo_contacts(
    data_dir: Option<&Path>,
) -> (TestServer, nextbest::contact::ManualClock) {
    use nextbest::contact::{Clock, ContactConfig};
    let features = Arc::new(FeatureStore::load(&demo_dir().join("features.csv")).unwrap());
    let model = model::load(&demo_dir(), &*features, &Limits::default()).unwrap();
    let (clock, hand) = Clock::manual(T0);
    let config = ContactConfig {
        data_dir: data_dir.map(Path::to_owned),
        ..ContactConfig::default()
    };
    let registry = Arc::new(Registry::default());
    registry.install(features, model).unwrap();
    let contacts = Arc::new(server::open_contacts(&registry, &config, clock).unwrap());
    let state = Arc::new(
        AppState::builder(registry, test_config())
            .contacts(contacts)
            .build(),
    );
    let running = server::start(state.clone()).await.unwrap();
    let srv = TestServer {
        public: running.public_addr,
        admin: running.admin_addr,
        state,
        running,
    };
    (srv, hand)
}

impl TestServer {
    /// Stops serving and closes the event log (as the binary does on SIGTERM).
    pub async fn stop_and_close(self) {
        let state = self.state.clone();
        self.running.shutdown().await;
        state.contacts.close();
    }
}

/// Posts `{"events": events}`; asserts a 202 and returns its body.
pub async fn post_events(addr: SocketAddr, events: serde_json::Value) -> serde_json::Value {
    let r = post_json(addr, "/v1/events", &serde_json::json!({ "events": events })).await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// What explain says of one offer: `None` when scored, else the exclusion.
pub fn verdict(answer: &serde_json::Value, offer_id: &str) -> Option<String> {
    let e = answer["explain"]
        .as_array()
        .expect("explain was asked")
        .iter()
        .find(|e| e["offer_id"] == offer_id)
        .unwrap_or_else(|| panic!("{offer_id} is not in explain"));
    e["excluded"].as_str().map(str::to_owned)
}

/// The demo's offers and their categories.
pub fn demo_categories() -> Vec<(String, String)> {
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(demo_dir().join("model.json")).unwrap()).unwrap();
    doc["offers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["id"].as_str().unwrap().to_owned(),
                o["category"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Posts a body; `None` when the connection fails (the server is gone).
pub async fn try_post(addr: SocketAddr, body: &[u8]) -> Option<(u16, serde_json::Value)> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.ok()?;
    s.write_all(body).await.ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.ok()?;
    let (resp, _) = parse_response(&out)?;
    Some((resp.status, serde_json::from_slice(&resp.body).ok()?))
}

/// The demo models folder with a challenger (the demo itself under another version) on half
/// of the customers.
pub fn models_with_challenger(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(demo_dir()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("model.json")).unwrap()).unwrap();
    let mut challenger = doc.clone();
    challenger["version"] = serde_json::json!("challenger-1");
    std::fs::write(
        dir.join("challenger.json"),
        serde_json::to_vec(&challenger).unwrap(),
    )
    .unwrap();
    doc["challenger"] =
        serde_json::json!({"path": "challenger.json", "share": 0.5, "salt": "restart"});
    std::fs::write(dir.join("model.json"), serde_json::to_vec(&doc).unwrap()).unwrap();
}

/// Asks for the demo customer number `i` (`C0000001`, ...): on the web plans page when `i` is
/// even, else on the app home screen. The customer id, the channel and the answer.
pub async fn decide_demo_customer(
    addr: SocketAddr,
    i: usize,
) -> (String, &'static str, serde_json::Value) {
    let customer = format!("C{i:07}");
    let (channel, placement) = if i.is_multiple_of(2) {
        ("web", "plans_page")
    } else {
        ("app", "app_home")
    };
    let a = decide(
        addr,
        serde_json::json!({"customer_id": customer, "channel": channel, "placement": placement}),
    )
    .await;
    (customer, channel, a)
}

/// One offer's `adaptive` explain object for customer `C{i}` on the `web` / `home` placement
/// (the contextual simulations' shape).
pub async fn adaptive_explain(addr: SocketAddr, i: usize, offer: &str) -> serde_json::Value {
    let a = decide(
        addr,
        serde_json::json!({"customer_id": format!("C{i}"), "channel": "web",
            "placement": "home", "explain": true}),
    )
    .await;
    a["explain"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["offer_id"] == offer)
        .unwrap_or_else(|| panic!("no {offer} in {a}"))["adaptive"]
        .clone()
}

/// Runs `nextbest replay --json` over a decision log with the model that made it, and requires
/// at least `at_least` decisions, every one reproduced bit for bit.
pub fn replays_exactly(log: &Path, model: &Path, at_least: u64) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .args(["replay", "--json", "--log"])
        .arg(log)
        .arg("--candidate")
        .arg(model)
        .env("NEXTBEST_LOG_FORMAT", "text")
        .output()
        .expect("the binary runs");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{report}");
    let n = report["decisions"].as_u64().unwrap();
    assert!(n >= at_least, "{report}");
    assert_eq!(report["reproduced"].as_u64(), Some(n), "{report}");
}

/// Where `value` breaks the listener's OpenAPI schema `name` (its `$ref`s resolved in the
/// same part of the document): empty when it conforms.
pub fn schema_violations(
    listener: server::openapi::Listener,
    name: &str,
    value: &serde_json::Value,
) -> Vec<String> {
    let doc = server::openapi::part(listener).expect("the document splits");
    let root = serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [{"$ref": format!("#/components/schemas/{name}")}],
    });
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&root)
        .unwrap_or_else(|e| panic!("schema {name} does not compile: {e}"));
    validator
        .iter_errors(value)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

/// Writes `batch` as one Parquet file at `path`, as a warehouse export would be.
#[cfg(feature = "offline")]
pub fn write_parquet(path: &Path, batch: &arrow_array::RecordBatch) {
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}
