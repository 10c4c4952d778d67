//! The `nextbest features` commands: compile a snapshot into its binary form, publish one into
//! a node's store, show a customer's values; and the one way the command line loads a snapshot.

use std::path::Path;
use std::time::Instant;

use anyhow::bail;
use nextbest::features::{self, FeatureStore, NullWords};

/// Loads a snapshot for a command (`model check --features`, `features compile`), refusing
/// one without customers as the server does.
pub fn load_features(path: &Path, nulls: &NullWords) -> anyhow::Result<FeatureStore> {
    let t = Instant::now();
    let store = FeatureStore::load_with(path, nulls)
        .map_err(every_fault)?
        .with_customers(path)?;
    tracing::info!(
        path = %path.display(),
        customers = store.len(),
        features = store.columns().len(),
        bytes = store.bytes_held(),
        duration_ms = t.elapsed().as_millis() as u64,
        "feature snapshot loaded"
    );
    Ok(store)
}

/// The snapshot's warnings, a line each (a column of numbers a word turned to text, with the
/// line): printed by every command that loads one, as a model's faults may follow from them.
pub fn column_warning_lines<'a>(
    path: &'a Path,
    store: &'a FeatureStore,
) -> impl Iterator<Item = String> + 'a {
    store
        .column_warnings()
        .into_iter()
        .map(move |(place, message)| format!("{}: warning: {place}: {message}", path.display()))
}

/// A refusal with several faults lists each on its own line of standard error (as `model
/// check` lists a model's; standard output is what the command writes: `show`'s JSON lines)
/// and ends in one line that counts them; one fault is that one line.
fn every_fault(e: features::FeatureError) -> anyhow::Error {
    match &e {
        features::FeatureError::Rows { path, total, .. }
        | features::FeatureError::Values { path, total, .. } => {
            for (place, detail) in e.located() {
                eprintln!("{place}: {detail}");
            }
            anyhow::anyhow!("{total} faults in {}", path.display())
        }
        _ => e.into(),
    }
}

/// `nextbest features compile`: the binary form of any snapshot, refusing to write over its
/// own input.
pub fn compile_features(input: &Path, output: &Path, nulls: &NullWords) -> anyhow::Result<()> {
    let same = |a: &Path, b: &Path| {
        a.canonicalize()
            .ok()
            .is_some_and(|a| b.canonicalize().ok() == Some(a))
    };
    if same(input, output) {
        bail!(
            "{} is the snapshot being compiled: write the .nbf to another file",
            output.display()
        );
    }
    let started = Instant::now();
    let store = load_features(input, nulls)?;
    let read_ms = started.elapsed().as_millis();
    for line in column_warning_lines(input, &store) {
        println!("{line}");
    }
    features::write_nbf(&store, output)?;
    // The whole command's time: the read is most of it for a CSV.
    println!(
        "wrote {} ({} customers x {} features) in {} ms ({read_ms} ms reading {})",
        output.display(),
        store.len(),
        store.columns().len(),
        started.elapsed().as_millis(),
        input.display()
    );
    Ok(())
}

/// `nextbest features publish`: once, or whenever the source changes (another file, length,
/// modification or change time; a refused file is logged and tried again on its next change).
pub fn publish_features(source: &Path, store: &Path, every: Option<u64>) -> anyhow::Result<()> {
    let store = features::SnapshotStore::new(store);
    let publish = || -> anyhow::Result<()> {
        let t = Instant::now();
        let entry = store.publish(source)?;
        tracing::info!(source = %source.display(), entry = %entry.display(), duration_ms = t.elapsed().as_millis() as u64, "snapshot published");
        println!("{}", entry.display());
        Ok(())
    };
    let Some(secs) = every else {
        return publish();
    };
    // The change time too: a new file renamed over the source with the same size and time
    // (`cp -p`, `rsync -t`), even one given the old file's freed inode, is a new snapshot.
    let stamp = || nextbest::files::stamp(source);
    let mut published = None;
    if stamp().is_none() {
        tracing::info!(source = %source.display(), every_s = secs, "waiting for the source to appear");
    }
    let mut gone = false;
    loop {
        let now = stamp();
        if now.is_none() && published.is_some() && !gone {
            tracing::warn!(source = %source.display(), "the source is gone: the published snapshot stays; waiting for a new one");
        }
        gone = now.is_none();
        if now.is_some() && now == published && store.current_written_over() {
            tracing::warn!(source = %source.display(), "the published entry was written over (a copy onto current.nbf?): publishing the source again; replicas that mapped it serve what was written over it until they reload");
            published = None;
        }
        if now.is_some() && now != published {
            match publish() {
                Ok(()) => {}
                // Still being written: its next state is tried, and nothing is wrong yet.
                Err(e) if stamp() != now => {
                    tracing::warn!(source = %source.display(), error = %e, "the source changed while it was read (still being written?): trying again once it settles")
                }
                Err(e) => tracing::error!(error = %e, "snapshot refused"),
            }
            published = now;
        }
        std::thread::sleep(std::time::Duration::from_secs(secs));
    }
}

/// `nextbest features show`: each customer's values as the snapshot holds them, one JSON
/// line each (numbers exactly as given, text as written, `null` for missing), so a data
/// engineer can see what a decision reads; an id the snapshot lacks is an error after them.
pub fn show_features(snapshot: &Path, ids: &[String], nulls: &NullWords) -> anyhow::Result<()> {
    let store = load_features(snapshot, nulls)?;
    // Beside the values, not among them: standard output is one JSON line a customer.
    for line in column_warning_lines(snapshot, &store) {
        eprintln!("{line}");
    }
    let mut missing = Vec::new();
    for id in ids {
        let Some(row) = store.exact_row(id) else {
            missing.push(id.as_str());
            continue;
        };
        let mut values = serde_json::Map::new();
        for (c, name) in store.columns().iter().enumerate() {
            let x = row.f32(c);
            let v = match store.dictionary(c) {
                Some(d) => d.value_of(x).map_or(serde_json::Value::Null, Into::into),
                None if x.is_nan() => serde_json::Value::Null,
                None => row.f64(c).into(),
            };
            values.insert(name.to_string(), v);
        }
        let line = serde_json::json!({"customer_id": id, "features": values});
        println!("{line}");
    }
    if !missing.is_empty() {
        bail!(
            "{} of {} ids are not in {}: {}",
            missing.len(),
            ids.len(),
            snapshot.display(),
            missing.join(", ")
        );
    }
    Ok(())
}
