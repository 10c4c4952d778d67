//! Decision counts beside the event log: the one part of the funnel no log holds.
//!
//! Outcomes are rebuilt from the event log at start; decisions are counted, not logged (a log
//! record per decision would put I/O on the decision path). So the funnel's tables (their
//! layout and decision counts) are written to one small file in the data folder, `funnel.counts`,
//! every few seconds by a thread of their own and once more at shutdown, atomically (a temporary
//! file, synced, renamed over the old one, the folder synced). At start it is read back before
//! the log is replayed, so outcomes of older model versions find their tables again. A crash
//! loses at most the decisions of the last interval; a file that does not parse is set aside
//! (`funnel.counts.bad`) and counting starts again. This module reads and writes that file and
//! nothing else; it never touches the decision path.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Weak;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Funnel, FunnelTable, Stage, VARIANTS};
use crate::contact::Contacts;

/// The file's name in the data folder.
pub const FILE: &str = "funnel.counts";

/// How often the counts are saved while serving.
pub const INTERVAL: Duration = Duration::from_secs(5);

#[derive(Serialize, Deserialize)]
struct Saved {
    format: u32,
    tables: Vec<SavedTable>,
}

#[derive(Serialize, Deserialize)]
struct SavedTable {
    key: u32,
    name: Box<str>,
    version: Box<str>,
    offers: Box<[Box<str>]>,
    categories: Box<[Box<str>]>,
    values: Box<[f64]>,
    channels: Box<[Box<str>]>,
    /// Decisions per offer × channel × variant, in the table's cell order.
    decisions: Vec<u64>,
    /// The same for decisions that explored (absent in files written before exploration).
    #[serde(default)]
    explored_decisions: Vec<u64>,
    /// Each placement's exploration share by channel and slot, so events of an explored
    /// decision find their cells when the model is gone.
    #[serde(default)]
    exploration: Vec<Vec<f64>>,
    /// Placement names by channel and slot, so an event contradicting its decision's placement
    /// is refused after a restart too (absent in files written before them, and for a table
    /// that never knew them).
    #[serde(default)]
    placements: Vec<Vec<Box<str>>>,
    /// The offers each placement shows, by channel and slot, so an outcome no placement of its
    /// decision shows stays out of the funnel after a restart too.
    #[serde(default)]
    shown: Vec<Vec<Box<[u32]>>>,
}

/// Why the saved counts could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not what this module writes.
    #[error("{path}: {detail}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The funnel's tables and decision counts as the file holds them.
fn snapshot(funnel: &Funnel) -> Saved {
    let tables = funnel
        .tables()
        .iter()
        .map(|t| SavedTable {
            key: t.key,
            name: t.name.clone(),
            version: t.version.clone(),
            offers: t.offers.clone(),
            categories: t.categories.clone(),
            values: t.values.clone(),
            channels: t.channels.clone(),
            decisions: t
                .cells
                .iter()
                .map(|c| c.0[Stage::Decision as usize].load(Relaxed))
                .collect(),
            explored_decisions: t
                .explored
                .iter()
                .map(|c| c.0[Stage::Decision as usize].load(Relaxed))
                .collect(),
            exploration: t
                .exploration
                .get()
                .map(|e| e.iter().map(|c| c.to_vec()).collect())
                .unwrap_or_default(),
            placements: t
                .placements
                .get()
                .map(|p| p.iter().map(|c| c.to_vec()).collect())
                .unwrap_or_default(),
            shown: t
                .shown
                .get()
                .map(|p| p.iter().map(|c| c.to_vec()).collect())
                .unwrap_or_default(),
        })
        .collect();
    Saved { format: 1, tables }
}

/// Writes the counts file atomically.
pub fn save(dir: &Path, funnel: &Funnel) -> Result<(), StoreError> {
    let path = dir.join(FILE);
    let bytes = serde_json::to_vec(&snapshot(funnel)).map_err(|e| StoreError::Invalid {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    crate::durable::write_atomic(&path, &bytes, true).map_err(io(&path))?;
    Ok(())
}

/// Reads the counts file into an empty funnel (before any table is bound and before the log
/// is replayed). Returns how many tables it held; none when there is no file.
pub fn load(dir: &Path, funnel: &Funnel) -> Result<usize, StoreError> {
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(&path)(e)),
    };
    let invalid = |detail: String| StoreError::Invalid {
        path: path.clone(),
        detail,
    };
    let saved: Saved = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    if saved.format != 1 {
        return Err(invalid(format!("unknown format {}", saved.format)));
    }
    let mut tables = Vec::with_capacity(saved.tables.len());
    for s in saved.tables {
        let cells = s.offers.len() * s.channels.len() * VARIANTS;
        let offers = s.offers.len();
        if s.decisions.len() != cells || s.categories.len() != offers || s.values.len() != offers {
            return Err(invalid(format!(
                "table {} {}: {} decision counts for {cells} cells",
                s.name,
                s.version,
                s.decisions.len()
            )));
        }
        let t = FunnelTable::from_parts(
            s.key,
            s.name,
            s.version,
            s.offers,
            s.categories,
            s.values,
            s.channels,
        );
        for (c, n) in t.cells.iter().zip(s.decisions) {
            c.0[Stage::Decision as usize].store(n, Relaxed);
        }
        if s.explored_decisions.len() == cells {
            for (c, n) in t.explored.iter().zip(s.explored_decisions) {
                c.0[Stage::Decision as usize].store(n, Relaxed);
            }
        }
        set_saved(&t.placements, s.placements);
        set_saved(&t.exploration, s.exploration);
        set_saved(&t.shown, s.shown);
        tables.push(t);
    }
    let n = tables.len();
    funnel.restore(tables);
    Ok(n)
}

/// Takes a per-slot table the file kept (absent in files written before it).
fn set_saved<T>(cell: &std::sync::OnceLock<Box<[Box<[T]>]>>, saved: Vec<Vec<T>>) {
    if !saved.is_empty() {
        let _ = cell.set(saved.into_iter().map(Vec::into_boxed_slice).collect());
    }
}

/// Reads the counts file as [`load`] does; a file that does not parse is renamed
/// `funnel.counts.bad` (kept for a look, not overwritten by the next save) and logged.
pub fn load_or_set_aside(dir: &Path, funnel: &Funnel) -> usize {
    match load(dir, funnel) {
        Ok(n) => n,
        Err(e) => {
            let path = dir.join(FILE);
            let aside = dir.join(format!("{FILE}.bad"));
            let _ = std::fs::rename(&path, &aside);
            tracing::error!(error = %e, set_aside = %aside.display(),
                "saved decision counts unreadable; decisions count from zero");
            0
        }
    }
}

/// The thread that saves the counts every [`INTERVAL`] and once more when stopped.
pub struct Saver(crate::durable::Periodic);

impl Saver {
    /// Starts saving the funnel of `contacts` into `dir` (held weakly: the saver does not keep
    /// the contact side alive).
    pub fn start(
        dir: PathBuf,
        contacts: Weak<Contacts>,
        interval: Duration,
    ) -> std::io::Result<Self> {
        // Each failure is counted; the log tells only when an episode starts and ends.
        let save = move || {
            let c = contacts.upgrade()?;
            let saved = save(&dir, c.funnel()).map_err(|e| e.to_string());
            if saved.is_err() {
                c.funnel().save_failures.fetch_add(1, Relaxed);
            }
            Some(saved)
        };
        crate::durable::Periodic::start("funnel-saver", "decision counts", interval, save)
            .map(Saver)
    }

    /// Saves once more and stops the thread (blocks until it is done).
    pub fn stop(&mut self) {
        self.0.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::table;
    use super::*;
    use crate::experiment::Variant;

    #[test]
    fn failed_saves_are_counted_and_the_saver_goes_on() {
        let dir = std::env::temp_dir().join(format!("nb-funnel-fail-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // A folder where the file goes: every save's rename fails, as on a full disk.
        let blocker = dir.join(FILE);
        std::fs::create_dir_all(blocker.join("in-the-way")).unwrap();
        let contacts = std::sync::Arc::new(Contacts::in_memory(
            &crate::contact::ContactConfig::default(),
            crate::contact::Clock::system(),
        ));
        let mut saver = Saver::start(
            dir.clone(),
            std::sync::Arc::downgrade(&contacts),
            Duration::from_millis(5),
        )
        .unwrap();
        let failures = || contacts.funnel().save_failures.load(Relaxed);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while failures() < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "no failed saves counted"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::fs::remove_dir_all(&blocker).unwrap();
        while !dir.join(FILE).is_file() {
            assert!(
                std::time::Instant::now() < deadline,
                "the saver stopped saving"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        saver.stop();
        let after = failures();
        assert!(after >= 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn explored_decisions_and_their_events_count_apart_and_survive_a_restart() {
        use crate::contact::attribution::{decision_id, Origin};
        use crate::contact::event::{Event, EventKind};
        let f = Funnel::default();
        let t = table(5);
        t.exploration
            .set(vec![vec![0.5].into_boxed_slice()].into())
            .unwrap();
        f.restore(vec![t]);
        let t = f.table(5).unwrap();
        let origin = Origin {
            channel: Some(0),
            slot: Some(0),
            customer: None,
        };
        let ids: Vec<ulid::Ulid> = (0..200)
            .map(|_| decision_id(1_795_000_000_000, 5, Variant::Champion, origin))
            .collect();
        let explored = ids.iter().filter(|id| t.explored(id.0)).count();
        assert!(
            (70..130).contains(&explored),
            "{explored} of 200 at a share of 0.5"
        );
        let ranked = [crate::engine::Ranked {
            offer: 0,
            propensity: 0.1,
            score: 0.1,
        }];
        for id in &ids {
            let e = t.explored(id.0);
            f.decided(5, 0, &ranked, Variant::Champion, e);
            f.event(&Event {
                kind: EventKind::Conversion,
                ts_ms: 1_795_000_000_000,
                customer_id: "C1",
                visitor_id: None,
                offer_id: Some("a"),
                channel: Some("web"),
                placement: None,
                decision_id: Some(id.0),
                event_id: None,
                category: None,
                request: None,
                attributed: None,
            });
        }
        let plain = t.counts("a", "web", Variant::Champion).unwrap();
        let apart = t.explored_counts("a", "web", Variant::Champion).unwrap();
        assert_eq!(
            (plain[0], plain[3]),
            ((200 - explored) as u64, (200 - explored) as u64)
        );
        assert_eq!((apart[0], apart[3]), (explored as u64, explored as u64));
        assert!(f.rows().iter().any(|r| r["explored"] == true));
        // The counts file keeps them, and the shares that tell explored events.
        let dir = std::env::temp_dir().join(format!("nb-funnel-explored-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        save(&dir, &f).unwrap();
        let g = Funnel::default();
        load(&dir, &g).unwrap();
        let back = g.table(5).unwrap();
        assert_eq!(
            back.explored_counts("a", "web", Variant::Champion).unwrap()[0],
            explored as u64
        );
        assert_eq!(back.explored(ids[0].0), t.explored(ids[0].0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn decision_counts_and_layout_round_trip_and_bad_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("nb-funnel-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let f = Funnel::default();
        f.restore(vec![table(7), table(9)]);
        let t = f.table(9).unwrap();
        t.cell(1, 0, Variant::Challenger).unwrap().0[0].store(41, Relaxed);
        t.cell(1, 0, Variant::Challenger).unwrap().0[1].store(5, Relaxed);
        let names: Box<[Box<str>]> = vec!["home".into(), "plans".into()].into();
        t.placements.set(vec![names].into()).unwrap();
        save(&dir, &f).unwrap();

        let g = Funnel::default();
        assert_eq!(load(&dir, &g).unwrap(), 2);
        let keys: Vec<u32> = g.tables().iter().map(|t| t.key).collect();
        assert_eq!(keys, [7, 9], "order kept");
        // Decisions come back; outcomes are the log's to rebuild.
        assert_eq!(
            g.table(9).unwrap().counts("b", "web", Variant::Challenger),
            Some([41, 0, 0, 0, 0])
        );
        // The placements a decision id names come back, so events are checked against them.
        assert_eq!(g.table(9).unwrap().placement(0, 1), Some("plans"));
        assert_eq!(g.table(7).unwrap().placement(0, 0), None, "never known");

        std::fs::write(dir.join(FILE), b"{\"format\":1,\"tables\":[{\"key\":1}]}").unwrap();
        assert!(matches!(
            load(&dir, &Funnel::default()),
            Err(StoreError::Invalid { .. })
        ));
        assert_eq!(load_or_set_aside(&dir, &Funnel::default()), 0);
        assert!(dir.join("funnel.counts.bad").exists());
        assert_eq!(
            load(&dir, &Funnel::default()).unwrap(),
            0,
            "no file: nothing"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
