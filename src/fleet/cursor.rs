//! Where shipping has got to, kept in `<data>/replication.cursor` across restarts: the log
//! position, the Redis run id and partition count it was shipped to, and the stream entry of
//! the last record shipped (what a restarted Redis is asked for).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::contact::log::Position;

/// The position's file in the data folder.
const CURSOR_FILE: &str = "replication.cursor";
/// Longest the saved position trails the shipped one while batches flow.
pub(super) const CURSOR_SAVE_EVERY: Duration = Duration::from_secs(1);

/// What `<data>/replication.cursor` keeps: how far shipping got, and to which Redis (its run
/// id) and stream layout (the partition count). A position means nothing against a Redis that
/// lost its data while this replica was stopped, or streams made again with another count.
#[derive(Debug)]
pub(super) struct Cursor {
    /// The next record to ship.
    pub at: Position,
    /// The run id of the Redis the records before `at` went to.
    pub run_id: Option<String>,
    /// The partition count they were spread over.
    pub partitions: Option<u16>,
    /// The stream entry of the last record before `at` (its partition and entry id): a Redis
    /// that still holds it holds everything shipped before it.
    pub last: Option<Shipped>,
    /// True when the file's position was dropped for another partition count.
    pub reset: bool,
}

impl Cursor {
    /// The first line is the position (all older builds wrote); `key=value` lines follow.
    fn parse(text: &str) -> Option<Cursor> {
        let mut lines = text.lines();
        let at = Position::parse(lines.next()?)?;
        let (mut run_id, mut partitions, mut last) = (None, None, None);
        for line in lines {
            match line.trim().split_once('=') {
                Some(("run_id", v)) if !v.is_empty() => run_id = Some(v.to_owned()),
                Some(("partitions", v)) => partitions = v.parse().ok(),
                Some(("last", v)) => {
                    last = v.split_once(':').and_then(|(p, id)| {
                        Some(Shipped {
                            partition: p.parse().ok()?,
                            entry: id.to_owned(),
                        })
                    })
                }
                _ => {}
            }
        }
        Some(Cursor {
            at,
            run_id,
            partitions,
            last,
            reset: false,
        })
    }

    fn to_text(
        at: Position,
        run_id: Option<&str>,
        partitions: u16,
        last: Option<&Shipped>,
    ) -> String {
        let mut text = format!("{}\npartitions={partitions}\n", at.to_text());
        if let Some(id) = run_id {
            text.push_str(&format!("run_id={id}\n"));
        }
        if let Some(l) = last {
            text.push_str(&format!("last={}:{}\n", l.partition, l.entry));
        }
        text
    }
}

/// Where a shipped record went: its partition and the entry id Redis gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Shipped {
    pub partition: u16,
    pub entry: String,
}

impl Shipped {
    /// The entry's time: Unix ms on Redis's clock.
    pub fn entry_ms(&self) -> Option<i64> {
        self.entry.split_once('-')?.0.parse().ok()
    }
}

/// Where shipping has got to; the start of the log when the file was written for another
/// partition count (a file without one, from an older build, is taken as it is).
pub(super) fn load_cursor(dir: &Path, partitions: u16) -> Cursor {
    let saved = std::fs::read_to_string(dir.join(CURSOR_FILE))
        .ok()
        .and_then(|s| Cursor::parse(&s));
    match saved {
        Some(c) if c.partitions.is_none_or(|p| p == partitions) => c,
        other => Cursor {
            at: Position::start(),
            run_id: None,
            partitions: None,
            last: None,
            reset: other.is_some(),
        },
    }
}

/// The cursor file, the position last written to it, and when.
pub(super) struct Saved {
    path: PathBuf,
    partitions: u16,
    /// The position the file holds (`None` after a failed write).
    pub at: Option<Position>,
    /// When it was last written.
    pub when: tokio::time::Instant,
}

impl Saved {
    /// The cursor file of the data folder `dir`, holding `at` as loaded at start.
    pub fn new(dir: &Path, partitions: u16, at: Position) -> Self {
        Saved {
            path: dir.join(CURSOR_FILE),
            partitions,
            at: Some(at),
            when: tokio::time::Instant::now(),
        }
    }

    /// Saves the replication position (at worst a crash ships what came after it again). A
    /// failed write is retried at the next save.
    pub async fn save(&mut self, at: Position, run_id: Option<&str>, last: Option<&Shipped>) {
        let path = self.path.clone();
        let text = Cursor::to_text(at, run_id, self.partitions, last);
        let written = tokio::task::spawn_blocking(move || {
            crate::durable::write_atomic(&path, text.as_bytes(), false)
        })
        .await;
        self.when = tokio::time::Instant::now();
        if matches!(written, Ok(Ok(()))) {
            self.at = Some(at);
        } else {
            self.at = None;
            tracing::warn!("could not save the replication position");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_keeps_its_redis_and_layout_and_reads_an_older_builds_file() {
        let at = Position::parse("3:4096").unwrap();
        let last = Shipped {
            partition: 5,
            entry: "1795000000000-3".into(),
        };
        let text = Cursor::to_text(at, Some("abc123"), 8, Some(&last));
        let c = Cursor::parse(&text).unwrap();
        assert_eq!(
            (c.at, c.run_id.as_deref(), c.partitions, c.last),
            (at, Some("abc123"), Some(8), Some(last))
        );
        let old = Cursor::parse("3:4096").unwrap();
        assert_eq!((old.at, old.run_id, old.partitions), (at, None, None));
        let dir = std::env::temp_dir().join(format!("nextbest-cursor-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(CURSOR_FILE), &text).unwrap();
        assert_eq!(load_cursor(&dir, 8).at, at);
        let other = load_cursor(&dir, 4);
        assert!(other.reset && other.at == Position::start() && other.run_id.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
