//! The `nextbest model check`, `model score` and `replay` commands: what they print, and when
//! they end in an error.

use std::path::Path;

use anyhow::bail;
use nextbest::decision_log::replay as decision_replay;
use nextbest::features::NullWords;
use nextbest::model::{self, AnySchema, Limits};
use nextbest::registry::load_challenger;

use crate::features_cli::{column_warning_lines, load_features};

/// `nextbest model check`: the model (and its challenger) compiled as an upload would be,
/// against a snapshot when one is given; every fault printed with its place.
pub fn check_model(file: &Path, features: Option<&Path>, nulls: &NullWords) -> anyhow::Result<()> {
    readable(file)?;
    let store = features.map(|f| load_features(f, nulls)).transpose()?;
    if let (Some(path), Some(store)) = (features, &store) {
        for line in column_warning_lines(path, store) {
            println!("{line}");
        }
    }
    let limits = Limits::default();
    let any = AnySchema::default();
    let schema: &dyn model::Schema = match &store {
        Some(s) => s,
        None => &any,
    };
    // The challenger is judged as an upload or a reload judges it.
    // A challenger's faults are printed under its own file.
    let mut challenger_file = None;
    let result = model::load_with_warnings(file, schema, &limits).and_then(|m| {
        challenger_file = m.challenger.as_ref().map(|c| c.path.clone());
        load_challenger(&m, schema, &limits)
            .map(|c| (m, c))
            .map_err(|e| (e, Vec::new()))
    });
    match result {
        Ok((m, challenger)) => {
            for w in &m.warnings {
                println!("{}: warning: {w}", model::model_file(file).display());
            }
            let counted =
                |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
            println!(
                "ok: {} version {}: {}, {}, {} used{}",
                m.compiled.name,
                m.compiled.version,
                counted(m.compiled.offers.len(), "offer"),
                counted(m.compiled.channels.len(), "channel"),
                counted(m.compiled.features_used.len(), "feature"),
                if store.is_some() {
                    ""
                } else {
                    " (not checked against a snapshot)"
                }
            );
            if let (Some(c), Some(spec)) = (challenger, &m.challenger) {
                for w in &c.warnings {
                    println!("{}: warning: challenger: {w}", spec.path.display());
                }
                println!(
                    "ok: challenger {} version {}: {}, {} % of customers",
                    c.compiled.name,
                    c.compiled.version,
                    counted(c.compiled.offers.len(), "offer"),
                    spec.share * 100.0
                );
            }
            Ok(())
        }
        // A file that cannot be read is one line, which names it already.
        Err((e @ model::ModelError::Io { .. }, _)) => bail!("{e}"),
        Err((e, warnings)) => {
            let faults = e.faults();
            let shown = model::model_file(file);
            for f in &faults {
                match (f.path.strip_prefix("challenger:"), &challenger_file) {
                    (Some(path), Some(c)) => println!("{}: {path}: {}", c.display(), f.message),
                    _ => println!("{}: {f}", shown.display()),
                }
            }
            // What is likely a mistake too, so the next round does not find it.
            for w in &warnings {
                println!("{}: warning: {w}", shown.display());
            }
            bail!("{} fault(s) in {}", faults.len(), file.display())
        }
    }
}

/// `nextbest model score`: one CSV line per customer, the propensity of every offer the
/// snapshot alone scores (shortest digits that read back as the same f64), so a data scientist
/// holds a whole snapshot against the library's `predict` in one command. Offers whose score
/// needs a request (context terms) or learning (adaptive) are left out, and named on stderr.
pub fn score(
    file: &Path,
    features: &Path,
    customers: &[String],
    nulls: &NullWords,
) -> anyhow::Result<()> {
    use nextbest::engine::scorer::Scorer;
    readable(file)?;
    let store = load_features(features, nulls)?;
    // What `model check` warns of explains the differences from the library a user would see
    // (a category list the file lacks, early stopping's trees): said here too, on stderr.
    for line in column_warning_lines(features, &store) {
        eprintln!("{line}");
    }
    let m =
        model::load_with_warnings(file, &store, &Limits::default()).map_err(|(e, _)| match e {
            model::ModelError::Io { .. } => anyhow::anyhow!("{e}"),
            e => anyhow::anyhow!("{}: {e}", file.display()),
        })?;
    for w in &m.warnings {
        eprintln!("{}: warning: {w}", model::model_file(file).display());
    }
    let offers = &m.compiled.offers;
    let (scored, left): (Vec<_>, Vec<_>) = offers.iter().partition(|o| match &o.scorer {
        Scorer::Adaptive(_) => false,
        Scorer::Logistic(l) => l.context_terms.is_empty() && l.context_categories.is_empty(),
        _ => true,
    });
    for o in &left {
        eprintln!(
            "{}: left out: its score needs a request's context or learnt counts",
            o.id
        );
    }
    for c in customers {
        if store.exact_row(c).is_none() {
            bail!("customer {c:?} is not in {}", features.display());
        }
    }
    let rows: Box<dyn Iterator<Item = (&str, _)>> = if customers.is_empty() {
        Box::new((0..store.len()).filter_map(|r| Some((store.id_at(r)?, store.exact_row_at(r)?))))
    } else {
        Box::new(
            customers
                .iter()
                .filter_map(|c| Some((c.as_str(), store.exact_row(c)?))),
        )
    };
    let mut out = csv::Writer::from_writer(std::io::stdout().lock());
    let header = std::iter::once("customer_id").chain(scored.iter().map(|o| &*o.id));
    let mut line: Vec<String> = Vec::with_capacity(scored.len() + 1);
    let written = out.write_record(header).and_then(|()| {
        for (id, row) in rows {
            line.clear();
            line.push(id.to_owned());
            line.extend(scored.iter().map(|o| o.scorer.predict(row).to_string()));
            out.write_record(&line)?;
        }
        out.flush().map_err(csv::Error::from)
    });
    match written {
        // A reader that went away (`| head`) ends the listing, not in an error.
        Err(e) if matches!(e.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe) => {
            Ok(())
        }
        r => Ok(r?),
    }
}

/// `nextbest replay --estimate`: prints the estimate, or says in one line why there is none.
pub fn estimate(log: &Path, candidate: &Path, data_dir: &Path, json: bool) -> anyhow::Result<()> {
    let report = nextbest::decision_log::estimate::run(log, candidate, data_dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

/// `nextbest replay`: prints the report; a log the original models do not reproduce exactly is
/// an error (non-zero exit) after the report.
pub fn replay(log: &Path, candidate: &Path, json: bool) -> anyhow::Result<()> {
    let report = decision_replay::run(log, candidate)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    if !report.reproduces() {
        bail!(
            "{} of {} logged decisions did not reproduce with the model that made them",
            report.decisions - report.reproduced,
            report.decisions
        );
    }
    Ok(())
}

/// Refuses a model file that cannot be opened before a snapshot, which may take a while,
/// loads for it.
fn readable(file: &Path) -> anyhow::Result<()> {
    let path = model::model_file(file);
    std::fs::File::open(&path)
        .map(drop)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), model::missing_document(file, e)))
}
