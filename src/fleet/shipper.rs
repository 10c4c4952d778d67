//! Ships the local event log to the fleet's streams: tails the segments from a remembered
//! position, appends each record to its customer's partition, and moves the position on only
//! after Redis took the records, so every accepted event reaches Redis at least once, also
//! across a crash of this replica or an outage of Redis.
//!
//! The position (`<data>/replication.cursor`: segment and byte offset) is written atomically
//! after each shipped batch; at worst a crash ships the last batch again, and receivers apply
//! each event id once. When Redis answers with another run id than before (it restarted and may
//! have lost what it held), the position goes back to the start of the log.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::{backoff, now_ms, Fleet};
use crate::contact::log::{self, Position};
use crate::contact::{Contacts, Event};

/// Most records in one round trip.
const BATCH: usize = 512;
/// Most log bytes read for one batch.
const READ_BYTES: u64 = 4 << 20;
/// Longest a batch waits for the log to say it grew (a safety net; writes wake it at once).
const IDLE_POLL: Duration = Duration::from_millis(200);

/// Where shipping has got to, kept in `<data>/replication.cursor`.
fn load_cursor(path: &Path) -> Position {
    std::fs::read_to_string(path)
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

/// Runs until the process ends.
pub async fn run(fleet: Arc<Fleet>, client: redis::Client, contacts: Arc<Contacts>, dir: PathBuf) {
    let cursor_path = dir.join("replication.cursor");
    let mut cursor = load_cursor(&cursor_path);
    let mut con = None;
    let mut run_id: Option<String> = None;
    let mut attempt = 0u32;
    loop {
        let c = match &mut con {
            Some(c) => c,
            None => match connect(&client).await {
                Ok((c, id)) => {
                    if run_id.as_ref().is_some_and(|old| *old != id) {
                        tracing::warn!(
                            "redis restarted (new run id); shipping the whole local log again"
                        );
                        cursor = Position::start();
                    }
                    run_id = Some(id);
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
        // File reads and the cursor's write block: off the workers that run decisions.
        let read = {
            let (dir, fleet) = (dir.clone(), fleet.clone());
            tokio::task::spawn_blocking(move || read_batch(&dir, cursor, &fleet)).await
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
                save_cursor(&cursor_path, cursor).await;
                continue;
            }
            tokio::select! {
                _ = contacts.log_written() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
            continue;
        }
        match ship(c, &fleet, &batch, contacts.state().horizon_ms()).await {
            Ok(()) => {
                attempt = 0;
                fleet.exchanged(now_ms());
                fleet.shipped.fetch_add(batch.len() as u64, Relaxed);
                cursor = next;
                save_cursor(&cursor_path, cursor).await;
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

/// A connection and the server's run id.
async fn connect(
    client: &redis::Client,
) -> redis::RedisResult<(redis::aio::MultiplexedConnection, String)> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    let mut c = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut c).await?;
    let id = info
        .lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .unwrap_or("")
        .trim()
        .to_owned();
    Ok((c, id))
}

/// Appends a batch, each record to its partition's stream, trimming what is past the horizon.
async fn ship(
    c: &mut redis::aio::MultiplexedConnection,
    fleet: &Fleet,
    batch: &[Outgoing],
    horizon_ms: i64,
) -> redis::RedisResult<()> {
    let written = now_ms().to_string();
    let min_id = format!("{}-0", now_ms().saturating_sub(horizon_ms).max(0));
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

/// Saves the replication position (at worst a crash ships the last batch again).
async fn save_cursor(path: &Path, at: Position) {
    let path = path.to_owned();
    let saved = tokio::task::spawn_blocking(move || {
        crate::durable::write_atomic(&path, at.to_text().as_bytes(), false)
    })
    .await;
    if !matches!(saved, Ok(Ok(()))) {
        tracing::warn!("could not save the replication position");
    }
}

/// Reads up to [`BATCH`] records from the cursor on; also returns where reading stopped.
fn read_batch(
    dir: &Path,
    cursor: Position,
    fleet: &Fleet,
) -> Result<(Vec<Outgoing>, Position), log::LogError> {
    let mut out = Vec::new();
    let progress = log::read_from(dir, cursor, READ_BYTES, |payload, at| {
        if out.len() >= BATCH {
            return false;
        }
        // A record that does not decode is passed over, as replay passes over it.
        if let Ok(e) = Event::decode(payload) {
            out.push(Outgoing {
                partition: fleet.config.partition(e.customer_id),
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
