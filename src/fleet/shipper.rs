//! Ships the local event log to the fleet's streams: tails the segments from a remembered
//! position, appends each record to its customer's partition, and moves the position on only
//! after Redis took the records, so every accepted event reaches Redis at least once, also
//! across a crash of this replica or an outage of Redis.
//!
//! The position (`<data>/replication.cursor`: segment and byte offset) is written atomically
//! at most every `CURSOR_SAVE_EVERY` while batches flow, and once shipping has been idle for
//! `IDLE_POLL` (saving it after every batch cost more than shipping the batch); at worst a
//! crash ships the last second's batches again, and receivers apply each event id once. When
//! Redis answers with another run id than before (it restarted and may
//! have lost what it held), the position goes back to the start of the log. The run id is asked
//! on every reconnect and, while there is nothing to ship, every [`RUN_ID_CHECK`]: an idle
//! replica notices a restarted Redis within about a second, not with its next event, and a
//! dead connection is replaced before it is needed.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::{backoff, now_ms, Fleet};
use crate::contact::log::{self, Position};
use crate::contact::subject::Subject;
use crate::contact::{Contacts, Event};

/// Most records in one round trip.
const BATCH: usize = 512;
/// Most log bytes read for one batch.
const READ_BYTES: u64 = 4 << 20;
/// Longest a batch waits for the log to say it grew (a safety net; writes wake it at once).
const IDLE_POLL: Duration = Duration::from_millis(200);
/// How often an idle shipper asks Redis its run id.
pub const RUN_ID_CHECK: Duration = Duration::from_secs(1);
/// The position's file in the data folder.
const CURSOR_FILE: &str = "replication.cursor";
/// Longest the saved position trails the shipped one while batches flow.
const CURSOR_SAVE_EVERY: Duration = Duration::from_secs(1);
/// Below this backlog a batch is read on the fleet's own thread: a read of what the last
/// batches appended costs less than the hand-off to a blocking thread, and this thread never
/// runs decisions. A larger catch-up read goes to a blocking thread so the consumers keep on.
const READ_INLINE_BELOW: u64 = 256 << 10;

/// Where shipping has got to, kept in `<data>/replication.cursor`.
pub(super) fn load_cursor(dir: &Path) -> Position {
    std::fs::read_to_string(dir.join(CURSOR_FILE))
        .ok()
        .and_then(|s| Position::parse(&s))
        .unwrap_or_else(Position::start)
}

/// A record read from the log, ready to ship.
struct Outgoing {
    partition: u16,
    id: String,
    payload: Vec<u8>,
}

/// Runs until the process ends or the replica refuses to join.
pub async fn run(fleet: Arc<Fleet>, client: redis::Client, contacts: Arc<Contacts>, dir: PathBuf) {
    let cursor_path = dir.join(CURSOR_FILE);
    let mut tail = log::Tail::new(&dir);
    let mut cursor = fleet.cursor();
    let mut con = None;
    let mut run_id: Option<String> = None;
    let mut attempt = 0u32;
    let mut idle_since = tokio::time::Instant::now();
    let mut saved = Saved {
        at: Some(cursor),
        when: tokio::time::Instant::now(),
    };
    loop {
        if fleet.refused().is_some() {
            return;
        }
        let c = match &mut con {
            Some(c) => c,
            None => match connect(&client, &fleet).await {
                Ok((c, id)) => {
                    if restarted(&mut run_id, id) {
                        cursor = Position::start();
                        fleet.set_cursor(cursor);
                    }
                    idle_since = tokio::time::Instant::now();
                    con.insert(c)
                }
                Err(e) => {
                    fleet.failed("connect", &e);
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                    continue;
                }
            },
        };
        if idle_since.elapsed() >= RUN_ID_CHECK {
            idle_since = tokio::time::Instant::now();
            match server_run_id(c).await {
                Ok(id) => {
                    fleet.exchanged(now_ms());
                    if restarted(&mut run_id, id) {
                        // A Redis back empty also lost the recorded partition count.
                        if let Ok(v) = super::join::check(c, &fleet).await {
                            if !super::join::accept(&fleet, v) {
                                return;
                            }
                        }
                        cursor = Position::start();
                        fleet.set_cursor(cursor);
                    }
                }
                Err(e) => {
                    fleet.failed("check", &e);
                    con = None;
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                    continue;
                }
            }
        }
        // Never on the workers that run decisions: this is the fleet's own thread.
        let read = if fleet.backlog_bytes.load(Relaxed) < READ_INLINE_BELOW {
            Ok(read_batch(&mut tail, cursor, &fleet))
        } else {
            let (mut moved, fleet) = (
                std::mem::replace(&mut tail, log::Tail::new(&dir)),
                fleet.clone(),
            );
            tokio::task::spawn_blocking(move || {
                let read = read_batch(&mut moved, cursor, &fleet);
                (moved, read)
            })
            .await
            .map(|(moved, read)| {
                tail = moved;
                read
            })
        };
        let (batch, next) = match read {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "reading the event log to ship it failed; retrying");
                tokio::time::sleep(IDLE_POLL).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "the log reader task failed; retrying");
                tokio::time::sleep(IDLE_POLL).await;
                continue;
            }
        };
        if batch.is_empty() {
            if next != cursor {
                cursor = next;
                fleet.set_cursor(cursor);
                saved.save(&cursor_path, cursor).await;
                continue;
            }
            tokio::select! {
                _ = contacts.log_written() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {
                    // Quiet for a while: the saved position catches up with the shipped one.
                    if saved.at != Some(cursor) {
                        saved.save(&cursor_path, cursor).await;
                    }
                }
            }
            continue;
        }
        match ship(c, &fleet, &batch, contacts.state().retention_ms()).await {
            Ok(()) => {
                attempt = 0;
                idle_since = tokio::time::Instant::now();
                fleet.exchanged(now_ms());
                fleet.shipped.fetch_add(batch.len() as u64, Relaxed);
                cursor = next;
                fleet.set_cursor(cursor);
                if saved.when.elapsed() >= CURSOR_SAVE_EVERY {
                    saved.save(&cursor_path, cursor).await;
                }
            }
            Err(e) => {
                fleet.failed("ship", &e);
                con = None;
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
        }
    }
}

/// Notes the run id Redis answered with; true when it differs from the one before (Redis
/// restarted and may have lost what it held).
fn restarted(known: &mut Option<String>, id: String) -> bool {
    let changed = known.as_ref().is_some_and(|old| *old != id);
    if changed {
        tracing::warn!("redis restarted (new run id); shipping the whole local log again");
    }
    *known = Some(id);
    changed
}

/// A connection and the server's run id, the partition count checked (a refusal stops the
/// link, and the connection is then never used).
async fn connect(
    client: &redis::Client,
    fleet: &Fleet,
) -> redis::RedisResult<(redis::aio::MultiplexedConnection, String)> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    let mut c = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let id = server_run_id(&mut c).await?;
    let verdict = super::join::check(&mut c, fleet).await?;
    super::join::accept(fleet, verdict);
    Ok((c, id))
}

/// The run id Redis answers `INFO server` with (new at every start of the server).
async fn server_run_id(c: &mut redis::aio::MultiplexedConnection) -> redis::RedisResult<String> {
    let info: String = redis::cmd("INFO").arg("server").query_async(c).await?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .unwrap_or("")
        .trim()
        .to_owned())
}

/// Appends a batch, each record to its partition's stream, trimming what is older than the
/// events' retention (never the horizon alone: with no policy windows that is zero, and every
/// append would trim what the other replicas had not read yet).
async fn ship(
    c: &mut redis::aio::MultiplexedConnection,
    fleet: &Fleet,
    batch: &[Outgoing],
    retention_ms: i64,
) -> redis::RedisResult<()> {
    let written = now_ms().to_string();
    let min_id = format!("{}-0", now_ms().saturating_sub(retention_ms).max(0));
    let mut pipe = redis::pipe();
    for o in batch {
        pipe.cmd("XADD")
            .arg(fleet.config.key(o.partition))
            .arg("MINID")
            .arg("~")
            .arg(&min_id)
            .arg("*")
            .arg("o")
            .arg(&fleet.origin)
            .arg("i")
            .arg(&o.id)
            .arg("t")
            .arg(&written)
            .arg("e")
            .arg(&o.payload[..])
            .ignore();
    }
    pipe.query_async::<()>(c).await
}

/// The position last written to the cursor file, and when.
struct Saved {
    at: Option<Position>,
    when: tokio::time::Instant,
}

impl Saved {
    /// Saves the replication position (at worst a crash ships what came after it again). A
    /// failed write is retried at the next save.
    async fn save(&mut self, path: &Path, at: Position) {
        let path = path.to_owned();
        let written = tokio::task::spawn_blocking(move || {
            crate::durable::write_atomic(&path, at.to_text().as_bytes(), false)
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

/// Reads up to [`BATCH`] records from the cursor on; also returns where reading stopped.
fn read_batch(
    tail: &mut log::Tail,
    cursor: Position,
    fleet: &Fleet,
) -> Result<(Vec<Outgoing>, Position), log::LogError> {
    let mut out = Vec::new();
    let progress = tail.read_from(cursor, READ_BYTES, |payload, at| {
        if out.len() >= BATCH {
            return false;
        }
        // A record that does not decode is passed over, as replay passes over it.
        if let Ok(e) = Event::decode(payload) {
            // Spread by whom it is about: a visitor-only event has no customer id.
            let who = match e.subject() {
                Subject::Customer(id) | Subject::Visitor(id) => id,
                Subject::Nobody => "",
            };
            out.push(Outgoing {
                partition: fleet.config.partition(who),
                id: e.event_id.map_or_else(
                    || format!("{}:{}:{}", fleet.origin, at.seq, at.offset),
                    str::to_owned,
                ),
                payload: payload.to_vec(),
            });
        }
        true
    })?;
    fleet.backlog_bytes.store(progress.backlog_bytes, Relaxed);
    Ok((out, progress.next))
}
