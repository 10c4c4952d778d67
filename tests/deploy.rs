//! The Kubernetes manifests in `deploy/k8s/` against the real binary and the Kubernetes
//! schemas: every manifest passes `kubernetes-validate --strict` (pinned, installed by
//! `.ci/run`; the ServiceMonitor, a CRD it has no schema for, is checked here against the
//! Service it scrapes), every flag and `NEXTBEST_*` variable they use is one `nextbest --help`
//! lists, the numbers that must agree do (probes, shutdown timings, mount paths, the event
//! log's claim against the model's horizon), the fleet's URL, password and admin token come
//! from Secrets, the admin listener stays on loopback, and the model the ConfigMap carries
//! loads. Also: the models watcher follows a ConfigMap update, which the kubelet makes by
//! swapping a hidden `..data` link, and a read-only models folder (what a ConfigMap is) answers
//! admin changes with 409.
//!
//! YAML is read with `serde_norway`, the maintained fork of `serde_yaml` (archived and marked
//! deprecated by its author in 2024) with the same API and the same libyaml-based parser.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize as _;
use serde_json::Value;

fn k8s_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s")
}

/// Every document of a YAML file, as JSON values.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn kustomization() -> Value {
    let mut docs = documents(&k8s_dir().join("kustomization.yaml"));
    assert_eq!(docs.len(), 1);
    docs.remove(0)
}

/// Every object kustomize would apply, from the files the kustomization lists.
fn objects() -> Vec<Value> {
    let k = kustomization();
    let files = k["resources"].as_array().expect("resources");
    assert!(!files.is_empty());
    let objects: Vec<Value> = files
        .iter()
        .flat_map(|f| documents(&k8s_dir().join(f.as_str().expect("a file name"))))
        .collect();
    for o in &objects {
        for key in ["apiVersion", "kind"] {
            assert!(o[key].is_string(), "{key} missing: {o}");
        }
        assert!(o["metadata"]["name"].is_string(), "unnamed: {o}");
    }
    objects
}

/// The channel backend's pods: the StatefulSet.
fn deployment() -> Value {
    objects()
        .into_iter()
        .find(|o| o["kind"] == "StatefulSet")
        .expect("a StatefulSet")
}

/// Every manifest file under `deploy/k8s` and the try-out overlay `deploy/tryout`
/// (kustomizations excepted).
fn manifest_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "yaml")
                && path.file_name().is_some_and(|n| n != "kustomization.yaml")
                && !path.starts_with(k8s_dir().join("models"))
            {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&k8s_dir(), &mut out);
    walk(&k8s_dir().join("../tryout"), &mut out);
    out.sort();
    out
}

/// Every `kustomization.yaml` under `deploy/`.
fn kustomizations() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.file_name().is_some_and(|n| n == "kustomization.yaml") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&k8s_dir().join(".."), &mut out);
    out
}

#[test]
fn every_kustomization_builds_without_a_cycle_and_names_what_exists() {
    let all = kustomizations();
    assert!(all.len() >= 2, "{all:?}");
    for k in all {
        let root = k.parent().unwrap().canonicalize().unwrap();
        let doc = documents(&k).remove(0);
        for r in doc["resources"].as_array().expect("resources") {
            let target = root.join(r.as_str().unwrap());
            let target = target
                .canonicalize()
                .unwrap_or_else(|e| panic!("{}: {}: {e}", k.display(), target.display()));
            if target.is_dir() {
                // kustomize refuses a folder holding the kustomization that lists it.
                assert!(
                    !root.starts_with(&target),
                    "{}: `{r}` contains this kustomization (kustomize: cycle detected)",
                    k.display()
                );
                assert!(
                    target.join("kustomization.yaml").is_file(),
                    "{}: {r}",
                    k.display()
                );
            } else {
                // and a file outside its own folder.
                assert!(
                    target.starts_with(&root),
                    "{}: `{r}` is outside its folder (kustomize refuses it)",
                    k.display()
                );
            }
        }
    }
}

/// Every object of every manifest file.
fn all_objects() -> Vec<Value> {
    manifest_files().iter().flat_map(|f| documents(f)).collect()
}

fn containers(deployment: &Value) -> Vec<Value> {
    let spec = &deployment["spec"]["template"]["spec"];
    ["initContainers", "containers"]
        .iter()
        .filter_map(|k| spec[k].as_array())
        .flatten()
        .cloned()
        .collect()
}

fn nextbest(deployment: &Value) -> Value {
    containers(deployment)
        .into_iter()
        .find(|c| c["name"] == "nextbest")
        .expect("a container named nextbest")
}

/// `--flag=value` and `--flag value` of the nextbest container, in order.
fn flags(container: &Value) -> Vec<(String, Option<String>)> {
    let words: Vec<String> = ["command", "args"]
        .iter()
        .filter_map(|k| container[k].as_array())
        .flatten()
        .map(|w| w.as_str().expect("args are strings").to_owned())
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        if let Some(flag) = words[i].strip_prefix("--") {
            match flag.split_once('=') {
                Some((f, v)) => out.push((format!("--{f}"), Some(v.to_owned()))),
                None => {
                    let value = words.get(i + 1).filter(|w| !w.starts_with("--")).cloned();
                    i += usize::from(value.is_some());
                    out.push((format!("--{flag}"), value));
                }
            }
        }
        i += 1;
    }
    out
}

fn flag(container: &Value, name: &str) -> String {
    flags(container)
        .into_iter()
        .find(|(f, _)| f == name)
        .and_then(|(_, v)| v)
        .unwrap_or_else(|| panic!("{name} is not set"))
}

/// The flags and environment variables `nextbest --help` lists.
fn help() -> (BTreeSet<String>, BTreeSet<String>) {
    help_of(&["--help"])
}

/// The flags and environment variables `nextbest ARGS` (ending in `--help`) lists.
fn help_of(args: &[&str]) -> (BTreeSet<String>, BTreeSet<String>) {
    let out = Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .args(args)
        .output()
        .expect("nextbest --help runs");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("UTF-8 help");
    let flags = text
        .split_whitespace()
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.trim_end_matches(',').to_owned())
        .collect();
    let envs = text
        .split("[env: ")
        .skip(1)
        .map(|rest| {
            rest.split(['=', ']'])
                .next()
                .expect("a variable name")
                .to_owned()
        })
        .collect();
    (flags, envs)
}

fn millis(s: &str) -> u64 {
    s.parse()
        .unwrap_or_else(|_| panic!("{s} is not milliseconds"))
}

#[test]
fn every_flag_and_variable_the_manifests_use_exists() {
    let (known_flags, known_envs) = help();
    assert!(known_flags.contains("--listen") && known_envs.contains("NEXTBEST_LISTEN"));
    let d = deployment();
    let used = flags(&nextbest(&d));
    assert!(used.len() > 5, "{used:?}");
    for (f, _) in &used {
        assert!(known_flags.contains(f), "{f} is not in nextbest --help");
    }
    let mut seen_env = 0;
    for c in containers(&d) {
        for e in c["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().expect("env names are strings");
            if name.starts_with("NEXTBEST_") {
                seen_env += 1;
                assert!(
                    known_envs.contains(name),
                    "{name} is not in nextbest --help"
                );
            }
        }
    }
    assert!(seen_env > 0);
}

#[test]
fn probes_shutdown_and_listeners_agree() {
    let d = deployment();
    let nb = nextbest(&d);
    let port = |c: &Value, name: &str| -> u64 {
        c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no port {name}"))
    };
    // The probes reach the public listener, on the paths the server answers.
    let listen = flag(&nb, "--listen");
    let public_port: u64 = listen.rsplit(':').next().unwrap().parse().unwrap();
    let ports: Vec<&Value> = nb["ports"].as_array().expect("ports").iter().collect();
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        let get = &nb[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        let name = get["port"].as_str().expect("a named port");
        assert_eq!(port(&nb, name), public_port, "{probe} targets --listen");
    }
    // The admin listener stays on loopback and is neither a container port nor a Service's.
    let admin = flag(&nb, "--admin-listen");
    assert!(admin.starts_with("127.0.0.1:"), "{admin}");
    let admin_port: u64 = admin.rsplit(':').next().unwrap().parse().unwrap();
    for c in containers(&d) {
        for p in c["ports"].as_array().into_iter().flatten() {
            assert_ne!(p["containerPort"].as_u64(), Some(admin_port), "{p}");
        }
    }
    assert_eq!(ports.len(), 1, "nextbest publishes its public port only");
    for s in objects().iter().filter(|o| o["kind"] == "Service") {
        for p in s["spec"]["ports"].as_array().expect("service ports") {
            assert_ne!(p["targetPort"].as_u64(), Some(admin_port));
            assert_ne!(p["targetPort"].as_u64(), Some(public_port));
        }
    }
    // Shutdown: the kubelet waits for preStop + drain + grace before it kills.
    let pre_stop = nb["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .expect("a preStop sleep");
    let drain = millis(&flag(&nb, "--drain-delay-ms"));
    let grace = millis(&flag(&nb, "--grace-ms"));
    assert!(drain > 0 && grace > 0);
    let period = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        period * 1000 >= pre_stop * 1000 + drain + grace,
        "terminationGracePeriodSeconds {period} s < preStop {pre_stop} s + drain {drain} ms + grace {grace} ms"
    );
    // nextbest never stops before the backend beside it has started draining.
    for c in containers(&d).iter().filter(|c| c["name"] != "nextbest") {
        if let Some(s) = c["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64() {
            assert!(pre_stop >= s, "{} stops after nextbest", c["name"]);
        }
    }
    // Sized resources: requests for CPU and memory, a memory limit, no CPU limit.
    let res = &nb["resources"];
    assert!(res["requests"]["cpu"].is_string() && res["requests"]["memory"].is_string());
    assert!(res["limits"]["memory"].is_string());
    assert!(
        res["limits"]["cpu"].is_null(),
        "a CPU limit throttles the deadline"
    );
}

/// The Secret (name, key) a file flag's path is mounted from.
fn secret_file(d: &Value, container: &Value, path: &str) -> (String, String) {
    let mount = container["volumeMounts"]
        .as_array()
        .expect("volume mounts")
        .iter()
        .find(|m| Path::new(path).starts_with(m["mountPath"].as_str().unwrap()))
        .unwrap_or_else(|| panic!("{path} is on no volume"));
    let volume = d["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mount's volume");
    let secret = &volume["secret"];
    let file = Path::new(path)
        .strip_prefix(mount["mountPath"].as_str().unwrap())
        .unwrap();
    let item = secret["items"]
        .as_array()
        .expect("the Secret's items named")
        .iter()
        .find(|i| Path::new(i["path"].as_str().unwrap()) == file)
        .unwrap_or_else(|| panic!("{path}: no item of {volume}"));
    (
        secret["secretName"]
            .as_str()
            .expect("a Secret volume")
            .to_owned(),
        item["key"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn the_token_and_the_fleet_come_from_secrets() {
    let d = deployment();
    for c in containers(&d) {
        for e in c["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().unwrap();
            if name == "NEXTBEST_ADMIN_TOKEN" || name == "NEXTBEST_REDIS" {
                assert!(
                    e.get("value").is_none(),
                    "a literal {name} in {}",
                    c["name"]
                );
                assert!(e["valueFrom"]["secretKeyRef"]["name"].is_string());
            }
        }
    }
    let nb = nextbest(&d);
    // The admin token and the Redis password as files of Secrets: out of `ps` and the
    // environment; the URL (a Secret too: managed Redis URLs name a user) from the environment.
    let token = flag(&nb, "--admin-token-file");
    assert_eq!(
        secret_file(&d, &nb, &token),
        ("nextbest-admin".into(), "token".into())
    );
    let password = flag(&nb, "--redis-password-file");
    let (secret, key) = secret_file(&d, &nb, &password);
    assert_eq!(key, "password");
    let url = nb["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "NEXTBEST_REDIS")
        .expect("NEXTBEST_REDIS");
    assert_eq!(url["valueFrom"]["secretKeyRef"]["name"], secret.as_str());
    let used = flags(&nb);
    for forbidden in [
        "--admin-token",
        "--redis",
        "--ready-when-behind",
        "--admin-insecure",
    ] {
        assert!(
            used.iter().all(|(f, _)| f != forbidden),
            "{forbidden} in the manifest"
        );
    }
    assert_eq!(flag(&nb, "--redis-partitions"), "8");
    // The try-out Redis reads the same Secret's password.
    let redis = all_objects()
        .into_iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "nextbest-redis")
        .expect("the try-out Redis");
    let env = redis["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(env.contains(&format!("\"name\":\"{secret}\"")), "{env}");
}

#[test]
fn every_manifest_passes_the_kubernetes_schemas() {
    let files = manifest_files();
    assert!(files.len() >= 7, "{files:?}");
    // The oldest Kubernetes the manifests claim (the preStop sleep action), and the newest the
    // pinned tool knows.
    for version in ["1.30.0", "1.37.0"] {
        let out = Command::new("kubernetes-validate")
            .args(["--strict", "-k", version])
            .args(&files)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run kubernetes-validate ({e}): this test needs it; install it with \
                     `pip install kubernetes-validate==1.37.0` (.ci/run does)"
                )
            });
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "kubernetes {version}:\n{text}");
        // Each object passed, except custom resources the tool has no schema for, which are
        // checked against what they refer to in the_servicemonitor_scrapes_the_metrics_proxy.
        let objects = all_objects();
        let passed = text.matches(" passed for resource ").count();
        let custom: Vec<&Value> = objects
            .iter()
            .filter(|o| o["apiVersion"] == "monitoring.coreos.com/v1")
            .collect();
        assert_eq!(passed + custom.len(), objects.len(), "{text}");
        for c in custom {
            assert!(
                text.contains(&format!(
                    "Couldn't find schema for kind {}",
                    c["kind"].as_str().unwrap()
                )),
                "{text}"
            );
        }
    }
}

#[test]
fn the_servicemonitor_scrapes_the_metrics_proxy() {
    let objects = all_objects();
    let monitor = objects
        .iter()
        .find(|o| o["kind"] == "ServiceMonitor")
        .expect("a ServiceMonitor");
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels");
    let services: Vec<&Value> = objects
        .iter()
        .filter(|o| {
            o["kind"] == "Service"
                && selector
                    .iter()
                    .all(|(k, v)| o["metadata"]["labels"][k] == *v)
        })
        .collect();
    assert_eq!(services.len(), 1, "the ServiceMonitor selects one Service");
    let service = services[0];
    let d = deployment();
    assert_eq!(d["spec"]["serviceName"], service["metadata"]["name"]);
    for endpoint in monitor["spec"]["endpoints"].as_array().unwrap() {
        assert_eq!(endpoint["path"], "/metrics");
        let port = service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == endpoint["port"])
            .expect("the endpoint's port on the Service");
        let target = port["targetPort"].as_str().expect("a named target port");
        let proxy = containers(&d)
            .into_iter()
            .find(|c| c["name"] == "metrics-proxy")
            .expect("the metrics proxy");
        assert!(proxy["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == target));
    }
    // The Service and the PodDisruptionBudget select the StatefulSet's pods.
    let pod_labels = &d["spec"]["template"]["metadata"]["labels"];
    for o in objects.iter().filter(|o| {
        o["kind"] == "PodDisruptionBudget" || o["metadata"]["name"] == "channel-web-pods"
    }) {
        let sel = o["spec"]["selector"]
            .get("matchLabels")
            .unwrap_or(&o["spec"]["selector"]);
        for (k, v) in sel.as_object().unwrap() {
            assert_eq!(pod_labels[k], *v, "{} selects other pods", o["kind"]);
        }
    }
}

#[test]
fn every_container_has_probes_and_pods_spread() {
    for o in all_objects()
        .iter()
        .filter(|o| ["StatefulSet", "Deployment"].contains(&o["kind"].as_str().unwrap()))
    {
        for c in containers(o) {
            for probe in ["livenessProbe", "readinessProbe"] {
                assert!(c[probe].is_object(), "{} has no {probe}", c["name"]);
            }
        }
    }
    let d = deployment();
    let keys: Vec<&str> = d["spec"]["template"]["spec"]["topologySpreadConstraints"]
        .as_array()
        .expect("topology spread")
        .iter()
        .map(|t| t["topologyKey"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    );
    assert!(all_objects()
        .iter()
        .any(|o| o["kind"] == "PodDisruptionBudget"));
}

/// A Kubernetes quantity in bytes (`20Gi`, `512Mi`).
fn quantity(q: &str) -> u64 {
    let (n, unit) = q.split_at(q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len()));
    let n: u64 = n.parse().unwrap();
    n * match unit {
        "Gi" => 1 << 30,
        "Mi" => 1 << 20,
        "" => 1,
        other => panic!("unit {other}"),
    }
}

#[test]
fn the_event_log_claim_holds_the_models_horizon_so_the_kubelet_never_evicts() {
    let d = deployment();
    let nb = nextbest(&d);
    let data = flag(&nb, "--data-dir");
    let mount = nb["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == data.as_str())
        .expect("the data folder is a mount")
        .clone();
    // Not an emptyDir (whose sizeLimit evicts the whole pod): a claim of the pod's own.
    let volumes = d["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
    assert!(volumes.iter().all(|v| v["name"] != mount["name"]));
    let claim = d["spec"]["volumeClaimTemplates"]
        .as_array()
        .expect("volumeClaimTemplates")
        .iter()
        .find(|c| c["metadata"]["name"] == mount["name"])
        .expect("the data folder's claim")
        .clone();
    assert_eq!(
        d["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"],
        "Retain"
    );
    // The sizing the manifest states: 5 events/s per pod, 120 bytes each on disk, for the
    // longest policy window of the model the ConfigMap carries, plus one 64 MiB segment.
    let store = nextbest::features::FeatureStore::load(&support::demo_dir().join("features.csv"))
        .expect("the demo snapshot");
    let model = nextbest::model::load(
        &k8s_dir().join("models"),
        &store,
        &nextbest::model::Limits::default(),
    )
    .expect("the ConfigMap's model");
    let horizon_s = model.compiled.policies.horizon_ms as u64 / 1000;
    assert!(
        horizon_s >= 365 * 86_400,
        "the window the comment sizes for"
    );
    let needed = 5 * horizon_s * 120 + (64 << 20);
    let size = quantity(
        claim["spec"]["resources"]["requests"]["storage"]
            .as_str()
            .unwrap(),
    );
    assert!(
        size >= needed,
        "a {size}-byte claim for {needed} bytes of log"
    );
    // The listeners open once the log is replayed: the startup probe waits for a full claim
    // of the smallest records (100 bytes) at the slowest replay measured (0.15 M events/s
    // under load, BENCHMARKS.md has 0.2 to 0.65), or a restart after months crash-loops.
    let startup = &nb["startupProbe"];
    let allowed_s = startup["periodSeconds"].as_u64().unwrap()
        * startup["failureThreshold"].as_u64().unwrap()
        + startup["initialDelaySeconds"].as_u64().unwrap_or(0);
    let replay_s = size / 100 / 150_000;
    assert!(
        allowed_s >= replay_s,
        "the startup probe allows {allowed_s} s; replaying a full claim takes up to {replay_s} s"
    );
}

#[test]
fn volumes_are_where_the_flags_point_and_the_model_loads() {
    let d = deployment();
    let nb = nextbest(&d);
    let volumes = d["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes");
    let volume = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    let mount_of = |path: &str| {
        nb["volumeMounts"]
            .as_array()
            .expect("volume mounts")
            .iter()
            .find(|m| Path::new(path).starts_with(m["mountPath"].as_str().unwrap()))
            .unwrap_or_else(|| panic!("{path} is on no volume"))
            .clone()
    };
    // The models folder is a whole ConfigMap volume (a subPath would never update) from the
    // generator, whose name keeps no hash suffix so updates land in place.
    let models = flag(&nb, "--models");
    let m = mount_of(&models);
    assert_eq!(m["mountPath"], models.as_str());
    assert!(m.get("subPath").is_none());
    let cm = volume(m["name"].as_str().unwrap())["configMap"]["name"].clone();
    let k = kustomization();
    let generator = k["configMapGenerator"]
        .as_array()
        .expect("configMapGenerator")
        .iter()
        .find(|g| g["name"] == cm)
        .unwrap_or_else(|| panic!("no generator for {cm}"))
        .clone();
    assert_eq!(generator["options"]["disableNameSuffixHash"], true);
    for g in k["configMapGenerator"].as_array().unwrap() {
        for f in g["files"].as_array().into_iter().flatten() {
            let f = f.as_str().unwrap();
            let file = f.rsplit('=').next().unwrap();
            assert!(k8s_dir().join(file).is_file(), "{f} is missing");
        }
    }
    // The snapshot is the node's snapshot store (a hostPath mounted read-only), the event log
    // on a volume of its own.
    let features = flag(&nb, "--features");
    let store = flag(&nb, "--snapshot-store");
    assert_eq!(Path::new(&features).parent(), Some(Path::new(&store)));
    assert_eq!(
        Path::new(&features).file_name().unwrap(),
        nextbest::features::snapshots::CURRENT
    );
    let f = mount_of(&features);
    assert_eq!(f["mountPath"], store.as_str());
    assert_eq!(f["readOnly"], true);
    assert!(volume(f["name"].as_str().unwrap())["hostPath"]["path"].is_string());
    let data = flag(&nb, "--data-dir");
    assert_eq!(mount_of(&data)["readOnly"].as_bool(), None);
    // The model the ConfigMap carries loads against the demo snapshot's features.
    let store = nextbest::features::FeatureStore::load(&support::demo_dir().join("features.csv"))
        .expect("the demo snapshot");
    let model = nextbest::model::load(
        &k8s_dir().join("models"),
        &store,
        &nextbest::model::Limits::default(),
    )
    .unwrap_or_else(|e| panic!("deploy/k8s/models is refused: {e}"));
    assert_eq!(&*model.compiled.name, "starter");
}

#[test]
fn the_node_snapshot_store_is_published_where_the_pods_map_it() {
    let objects = objects();
    let publisher = objects
        .iter()
        .find(|o| o["kind"] == "DaemonSet")
        .expect("a DaemonSet publishing snapshots");
    let pods = deployment();
    let host_path = |workload: &Value, mount: &Value| -> String {
        workload["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .and_then(|v| v["hostPath"]["path"].as_str())
            .unwrap_or_else(|| panic!("{mount} is no hostPath"))
            .to_owned()
    };
    let mount_in = |c: &Value, path: &str| -> Value {
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| Path::new(path).starts_with(m["mountPath"].as_str().unwrap()))
            .unwrap_or_else(|| panic!("{path} is on no volume"))
            .clone()
    };
    let nb = nextbest(&pods);
    let store = flag(&nb, "--snapshot-store");
    let served = host_path(&pods, &mount_in(&nb, &store));
    // The publisher runs `nextbest features publish SOURCE --store DIR` with flags the binary
    // has, writes the same node folder the pods read, and reads the data team's volume.
    let c = containers(publisher)
        .into_iter()
        .find(|c| c["image"] == "registry.example.com/nextbest")
        .expect("the publisher runs nextbest");
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(&args[..2], ["features", "publish"]);
    let out = Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .args(["features", "publish", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for (f, _) in flags(&c) {
        assert!(
            help.contains(&f),
            "{f} is not in nextbest features publish --help"
        );
    }
    let dir = flag(&c, "--store");
    let m = mount_in(&c, &dir);
    assert_ne!(m["readOnly"], true, "the publisher writes the store");
    assert_eq!(host_path(publisher, &m), served);
    let source = args[2];
    let src_mount = mount_in(&c, source);
    let src_volume = publisher["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == src_mount["name"])
        .unwrap()
        .clone();
    assert_eq!(
        src_volume["persistentVolumeClaim"]["claimName"],
        "nextbest-features"
    );
    assert!(objects
        .iter()
        .any(|o| o["kind"] == "PersistentVolumeClaim"
            && o["metadata"]["name"] == "nextbest-features"));
}

/// The kubelet's update of a ConfigMap volume, as its AtomicWriter makes it: the files are
/// links into `..data`, a link to a hidden timestamped folder; a new folder is written, a new
/// link made beside the old one and renamed over it, the old folder removed.
struct Projected {
    dir: support::TempDir,
    generation: usize,
}

impl Projected {
    fn new(files: &[(&str, &[u8])]) -> Projected {
        let mut p = Projected {
            dir: support::TempDir::new("projected"),
            generation: 0,
        };
        p.update(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), p.dir.0.join(name)).unwrap();
        }
        p
    }

    fn update(&mut self, files: &[(&str, &[u8])]) {
        self.generation += 1;
        let ts = format!(
            "..2026_12_01_00_00_{:02}.{}",
            self.generation, self.generation
        );
        let folder = self.dir.0.join(&ts);
        std::fs::create_dir(&folder).unwrap();
        for (name, bytes) in files {
            std::fs::write(folder.join(name), bytes).unwrap();
        }
        let tmp = self.dir.0.join("..data_tmp");
        std::os::unix::fs::symlink(&ts, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.0.join("..data")).unwrap();
        if self.generation > 1 {
            let old = format!(
                "..2026_12_01_00_00_{:02}.{}",
                self.generation - 1,
                self.generation - 1
            );
            std::fs::remove_dir_all(self.dir.0.join(old)).unwrap();
        }
    }
}

#[tokio::test]
async fn the_watcher_follows_a_configmap_update() {
    let doc = |version: &str| {
        let mut d: Value =
            serde_json::from_slice(&std::fs::read(k8s_dir().join("models/model.json")).unwrap())
                .unwrap();
        d["version"] = version.into();
        serde_json::to_vec(&d).unwrap()
    };
    let mut volume = Projected::new(&[("model.json", &doc("1"))]);
    let registry = std::sync::Arc::new(nextbest::registry::Registry::new(
        nextbest::registry::RegistryConfig {
            models_path: Some(volume.dir.0.clone()),
            features_path: Some(support::demo_dir().join("features.csv")),
            ..Default::default()
        },
    ));
    registry
        .reload_from_disk()
        .expect("the first projection loads");
    let _watcher = nextbest::watch::watch_models(registry.clone()).expect("watching");
    let version = || {
        registry
            .history()
            .first()
            .map(|r| r.version.clone())
            .unwrap_or_default()
    };
    assert_eq!(version(), "1");
    volume.update(&[("model.json", &doc("2"))]);
    support::eventually("the model from the swapped ConfigMap", || version() == "2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_models_folder_answers_409_and_says_where_models_change() {
    let models = support::TempModels::new("read-only");
    let data = support::TempDir::new("read-only-data");
    let server = support::binary::Binary::read_only_models(&models.dir, &data.0).spawn();
    let before = std::fs::read(models.dir.join("model.json")).unwrap();
    let r = support::put_model(server.admin, &support::TempModels::demo_doc("9")).await;
    let detail = r.assert_error(409, "models_read_only");
    for needle in ["is read-only", "ConfigMap", "kubectl apply -k"] {
        assert!(detail.contains(needle), "{needle} not in: {detail}");
    }
    // A valid model refused for where it would be kept is no refused load: the alert on
    // refused loads stays quiet.
    let m = String::from_utf8(support::get(server.admin, "/metrics").await.body).unwrap();
    assert!(
        m.lines()
            .any(|l| l == "nextbest_model_loads_total{result=\"rejected\"} 0"),
        "{m}"
    );
    let r = support::post_json(
        server.admin,
        "/admin/models/rollback",
        &serde_json::json!({}),
    )
    .await;
    assert!(r.status == 409, "{}", String::from_utf8_lossy(&r.body));
    // Nothing changed: the folder, what serves, and the refusal is counted, not a 500.
    assert_eq!(
        std::fs::read(models.dir.join("model.json")).unwrap(),
        before
    );
    let m = String::from_utf8(support::get(server.admin, "/metrics").await.body).unwrap();
    assert!(m.contains("nextbest_http_responses_total"), "{m}");
    assert!(
        !m.lines()
            .any(|l| l.contains("status=\"500\"") && !l.ends_with(" 0")),
        "{m}"
    );
}

/// A snapshot store mounted read-only (a node's store, which only its publisher writes): a
/// `.nbf` not already in it is refused with what to do, and the server serves its fallbacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_snapshot_store_refuses_a_new_snapshot_saying_how_to_publish_it() {
    let models = support::TempModels::new("read-only-store");
    let data = support::TempDir::new("read-only-store-data");
    let store = data.0.join("store");
    std::fs::create_dir_all(&store).unwrap();
    // The snapshot as the data team ships it: a `.nbf` (read by its first bytes, whatever
    // the name the test folder gives it).
    let csv = models.dir.join("features.csv");
    let nbf = data.0.join("features.nbf");
    nextbest::features::write_nbf(&nextbest::features::FeatureStore::load(&csv).unwrap(), &nbf)
        .unwrap();
    std::fs::copy(&nbf, &csv).unwrap();
    let server = support::binary::Binary::with_read_only(&store, &models.dir, &data.0.join("d"))
        .arg("--snapshot-store")
        .arg(&store)
        .spawn();
    let line = server.wait_stderr("cannot be written");
    assert!(
        line.contains(&format!(
            "the snapshot store {} cannot be written",
            store.display()
        )) && line.contains("only a snapshot already in it loads here")
            && line.contains("nextbest features publish"),
        "{line}"
    );
    assert!(
        std::fs::read_dir(&store).unwrap().next().is_none(),
        "the store was written"
    );
}

/// The shards' recipe as its comment gives it: the ConfigMap `kubectl create configmap` makes
/// from the repository's files, checked against the model the sidecar's ConfigMap serves (the
/// campaign Job mounts that one), as every shard would check it.
#[test]
fn the_campaign_recipe_fits_the_model_the_jobs_mount() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("deploy/k8s/campaign/shards.yaml")).unwrap();
    // The command, with its continuation lines.
    let mut recipe = String::new();
    for line in text
        .lines()
        .skip_while(|l| !l.contains("kubectl create configmap nextbest-campaign"))
    {
        let line = line.trim_start_matches('#').trim();
        recipe.push_str(line.trim_end_matches('\\'));
        recipe.push(' ');
        if !line.ends_with('\\') {
            break;
        }
    }
    let folder = support::TempDir::new("campaign-configmap");
    let mut keys = Vec::new();
    for file in recipe
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--from-file="))
    {
        let (key, path) = file.split_once('=').expect("--from-file=KEY=PATH");
        std::fs::copy(root.join(path), folder.0.join(key))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        keys.push(key.to_owned());
    }
    assert!(keys.contains(&"campaign.json".to_owned()), "{recipe}");
    // The model folder the Jobs mount is the sidecar's ConfigMap, built from deploy/k8s/models.
    let kustomization =
        std::fs::read_to_string(root.join("deploy/k8s/kustomization.yaml")).unwrap();
    assert!(
        kustomization.contains("models/model.json"),
        "{kustomization}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .args(["campaign", "check"])
        .arg(folder.0.join("campaign.json"))
        .arg("--models")
        .arg(root.join("deploy/k8s/models"))
        .arg("--features")
        .arg(root.join("models/features.csv"))
        .env("NEXTBEST_LOG", "error")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{recipe}\n{said}");
}

/// The campaign Jobs: the shards' Indexed Job gives each pod its shard from the completion
/// index (of as many shards as completions), writes each shard where the merge Job reads it,
/// and both use only flags and variables their subcommand's `--help` lists.
#[test]
fn the_campaign_jobs_run_every_shard_once_and_merge_them() {
    let objects = all_objects();
    let job = |name: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == "Job" && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("a Job {name}"))
            .clone()
    };
    let (shards, merge) = (
        job("nextbest-campaign-shards"),
        job("nextbest-campaign-merge"),
    );
    assert_eq!(shards["spec"]["completionMode"], "Indexed");
    let n = shards["spec"]["completions"].as_u64().expect("completions");
    assert!(n > 1);

    let run = nextbest(&shards);
    let words = |c: &Value| -> Vec<String> {
        c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(words(&run)[..2], ["campaign", "run"]);
    let (run_flags, run_envs) = help_of(&["campaign", "run", "--help"]);
    assert!(run_flags.contains("--shard") && run_envs.contains("NEXTBEST_SHARD"));
    for (f, _) in flags(&run) {
        assert!(
            run_flags.contains(&f),
            "{f} is not in nextbest campaign run --help"
        );
    }
    let env: Vec<&Value> = run["env"].as_array().expect("env").iter().collect();
    let at = |name: &str| {
        env.iter()
            .position(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not set"))
    };
    for e in &env {
        let name = e["name"].as_str().unwrap();
        if name.starts_with("NEXTBEST_") {
            assert!(
                run_envs.contains(name),
                "{name} is not in campaign run --help"
            );
        }
    }
    // The index comes from the pod's annotation and is declared before the shard uses it.
    assert_eq!(
        env[at("JOB_COMPLETION_INDEX")]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    );
    assert!(at("JOB_COMPLETION_INDEX") < at("NEXTBEST_SHARD"));
    let shard = env[at("NEXTBEST_SHARD")]["value"].as_str().unwrap();
    assert_eq!(shard, format!("$(JOB_COMPLETION_INDEX)/{n}"));
    // The last pod's shard is one the command takes (a missing campaign file is then the
    // only complaint).
    let last = shard.replace("$(JOB_COMPLETION_INDEX)", &(n - 1).to_string());
    let tried = Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .args([
            "campaign",
            "run",
            "/nonexistent/c.json",
            "--out",
            "/nonexistent/o",
            "--now",
            "2026-12-05T06:00:00Z",
        ])
        .env("NEXTBEST_SHARD", &last)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&tried.stdout) + String::from_utf8_lossy(&tried.stderr);
    assert!(!tried.status.success());
    assert!(
        text.contains("c.json") && !text.contains("--shard"),
        "{last}: {text}"
    );
    let out = flag(&run, "--out");
    let prefix = out
        .strip_suffix("$(JOB_COMPLETION_INDEX)")
        .expect("each shard writes a folder of its own");
    assert!(flags(&run).iter().any(|(f, v)| f == "--now" && v.is_some()));

    // The merge reads exactly the shards' folders, and its flags are merge's.
    let m = nextbest(&merge);
    let args = words(&m);
    assert_eq!(args[..2], ["campaign", "merge"]);
    let dirs: Vec<&String> = args[2..].iter().filter(|w| !w.starts_with("--")).collect();
    let expected: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    assert_eq!(dirs, expected.iter().collect::<Vec<_>>());
    let (merge_flags, _) = help_of(&["campaign", "merge", "--help"]);
    for (f, _) in flags(&m) {
        assert!(
            merge_flags.contains(&f),
            "{f} is not in nextbest campaign merge --help"
        );
    }
    // Both mount the same claim where the folders are.
    let claim = |job: &Value, c: &Value| {
        let mount = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| prefix.starts_with(v["mountPath"].as_str().unwrap()))
            .expect("the shards' folder is mounted")["name"]
            .clone();
        job["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount)
            .unwrap()["persistentVolumeClaim"]["claimName"]
            .clone()
    };
    assert!(claim(&shards, &run).is_string());
    assert_eq!(claim(&shards, &run), claim(&merge, &m));
}
