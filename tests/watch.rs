//! The watched models folder: what a publisher's files start, in whatever order they arrive
//! and wherever in the folder a scorer file lies.

mod support;

use nextbest::registry::{Part, Registry};
use serde_json::Value;
use support::*;

/// The demo document at `version`, its LightGBM offer reading `path` instead.
fn with_lightgbm_at(version: &str, path: &str) -> Value {
    let mut doc = TempModels::demo_doc(version);
    let offers = doc["offers"].as_array_mut().unwrap();
    let scorer = offers
        .iter_mut()
        .map(|o| &mut o["scorer"])
        .find(|s| s["path"] == "streaming_bundle.lgb.txt")
        .expect("the demo reads streaming_bundle.lgb.txt");
    scorer["path"] = path.into();
    doc
}

/// Writes `bytes` to `rel` (a subfolder allowed) as a publisher should: a temporary name in the
/// same folder, then a rename.
fn publish_at(dir: &std::path::Path, rel: &str, bytes: &[u8]) {
    let to = dir.join(rel);
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let tmp = to.with_file_name(".publishing.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, &to).unwrap();
}

fn rejected(r: &Registry) -> u64 {
    r.loads.rejected(Part::Model)
}

/// A retrain shipped under a new file name, its document published first: refused for the
/// missing file, then served once the file arrives (the old model serving in between).
#[tokio::test]
async fn a_document_refused_for_a_missing_scorer_file_loads_when_the_file_arrives() {
    let models = TempModels::new("watch-awaited");
    let registry = models.registry();
    let _watcher = nextbest::watch::watch_models(registry.clone()).unwrap();
    let doc = with_lightgbm_at("9", "streaming_bundle_v2.lgb.txt");
    models.publish("model.json", &serde_json::to_vec(&doc).unwrap());
    eventually("the refusal", || rejected(&registry) == 1).await;
    assert_eq!(version_of(&registry), "1");
    // The fault names the folder the file was looked for in.
    let faults = registry.reload_models(true).unwrap_err().faults();
    let looked_in = format!(
        "`streaming_bundle_v2.lgb.txt`: no such file in the model's folder {} ",
        models.dir.display()
    );
    assert!(faults[0].message.contains(&looked_in), "{faults:?}");
    let tree = std::fs::read(models.dir.join("streaming_bundle.lgb.txt")).unwrap();
    models.publish("streaming_bundle_v2.lgb.txt", &tree);
    eventually("version 9", || version_of(&registry) == "9").await;
    assert_eq!(rejected(&registry), 2, "tried once more, and served");
}

/// A new version copied in document first, its scorer files after under the names the serving
/// model reads too (`rm -rf models; mkdir models; cp` file by file): refused while a file is
/// missing, then served once the last arrives, not the serving document rebuilt with them.
#[tokio::test]
async fn a_document_refused_until_its_files_arrive_under_the_serving_names_loads_then() {
    let models = TempModels::new("watch-same-names");
    let registry = models.registry();
    let _watcher = nextbest::watch::watch_models(registry.clone()).unwrap();
    let tree = std::fs::read(models.dir.join("streaming_bundle.lgb.txt")).unwrap();
    std::fs::remove_file(models.dir.join("streaming_bundle.lgb.txt")).unwrap();
    let doc = TempModels::demo_doc("9");
    models.publish("model.json", &serde_json::to_vec(&doc).unwrap());
    eventually("the refusal", || rejected(&registry) >= 1).await;
    assert_eq!(version_of(&registry), "1");
    models.publish("streaming_bundle.lgb.txt", &tree);
    eventually("version 9", || version_of(&registry) == "9").await;
}

/// A scorer file in a subfolder of the models folder is watched as one beside model.json.
#[tokio::test]
async fn a_scorer_file_in_a_subfolder_is_watched() {
    let models = TempModels::new("watch-subfolder");
    let tree = std::fs::read(models.dir.join("streaming_bundle.lgb.txt")).unwrap();
    publish_at(&models.dir, "trees/streaming_bundle.lgb.txt", &tree);
    let doc = with_lightgbm_at("4", "trees/streaming_bundle.lgb.txt");
    models.publish("model.json", &serde_json::to_vec(&doc).unwrap());
    let registry = models.registry();
    assert_eq!(version_of(&registry), "4");
    let _watcher = nextbest::watch::watch_models(registry.clone()).unwrap();
    let before = registry.history().len();
    // A retrained tree: here the same one with a line more at its end.
    let mut retrained = tree.clone();
    retrained.extend_from_slice(b"\n");
    publish_at(&models.dir, "trees/streaming_bundle.lgb.txt", &retrained);
    eventually("the rebuild", || registry.history().len() > before).await;
    let source = registry.history()[0].source.clone();
    assert!(source.ends_with(" (scorer files)"), "{source}");
}
