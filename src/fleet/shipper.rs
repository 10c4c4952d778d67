//! Ships the local event log to the fleet's streams: tails the segments from a remembered
//! position, appends each record to its customer's partition, and moves the position on only
//! after Redis took the records, so every accepted event reaches Redis at least once, also
//! across a crash of this replica or an outage of Redis.
//!
//! The position (`<data>/replication.cursor`: segment and byte offset) is written atomically
//! after each shipped batch; at worst a crash ships the last batch again, and receivers apply
//! each event id once. When Redis answers with another run id than before (it restarted and may
//! have lost what it held), the position goes back to the start of the log.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::{backoff, now_ms, Fleet};
use crate::contact::log::{list_segments, scan_all, MAGIC, RECORD_HEADER};
use crate::contact::{Contacts, Event};

/// Most records in one round trip.
const BATCH: usize = 512;
/// Longest a batch waits for the log to say it grew (a safety net; writes wake it at once).
const IDLE_POLL: Duration = Duration::from_millis(200);

/// Where shipping has got to in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    seq: u64,
    offset: u64,
}

impl Cursor {
    fn start() -> Self {
        Cursor {
            seq: 0,
            offset: MAGIC.len() as u64,
        }
    }

    fn load(path: &Path) -> Self {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| {
                let (seq, offset) = s.trim().split_once(':')?;
                Some(Cursor {
                    seq: seq.parse().ok()?,
                    offset: offset.parse().ok()?,
                })
            })
            .unwrap_or_else(Cursor::start)
    }

    fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{}:{}", self.seq, self.offset))?;
        std::fs::rename(&tmp, path)
    }
}

/// A record read from the log, ready to ship.
struct Outgoing {
    partition: u16,
    id: String,
    payload: Vec<u8>,
    /// Offset just after it in its segment.
    end: u64,
}

/// Runs until the process ends.
pub async fn run(fleet: Arc<Fleet>, client: redis::Client, contacts: Arc<Contacts>, dir: PathBuf) {
    let cursor_path = dir.join("replication.cursor");
    let mut cursor = Cursor::load(&cursor_path);
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
                        cursor = Cursor::start();
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
        let (batch, next) = match read_batch(&dir, cursor, &fleet) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "reading the event log to ship it failed; retrying");
                tokio::time::sleep(IDLE_POLL).await;
                continue;
            }
        };
        if batch.is_empty() {
            if next != cursor {
                cursor = next;
                let _ = cursor.save(&cursor_path);
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
                cursor = Cursor {
                    seq: next.seq,
                    offset: batch.last().map_or(next.offset, |o| o.end),
                };
                if let Err(e) = cursor.save(&cursor_path) {
                    tracing::warn!(error = %e, "could not save the replication position");
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

/// Reads up to [`BATCH`] records from the cursor on; also returns where reading stopped (the
/// next segment's start when the cursor's segment is finished and a newer one exists).
fn read_batch(
    dir: &Path,
    cursor: Cursor,
    fleet: &Fleet,
) -> std::io::Result<(Vec<Outgoing>, Cursor)> {
    let segments = list_segments(dir).map_err(std::io::Error::other)?;
    let Some(pos) = segments.iter().position(|(seq, _)| *seq >= cursor.seq) else {
        fleet.backlog_bytes.store(0, Relaxed);
        return Ok((Vec::new(), cursor));
    };
    let (seq, path) = &segments[pos];
    let offset = if *seq == cursor.seq {
        cursor.offset
    } else {
        MAGIC.len() as u64
    };
    let newer = pos + 1 < segments.len();
    let backlog: u64 = segments[pos..]
        .iter()
        .filter_map(|(_, p)| std::fs::metadata(p).ok().map(|m| m.len()))
        .sum::<u64>()
        .saturating_sub(offset);
    fleet.backlog_bytes.store(backlog, Relaxed);
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    f.take(4 << 20).read_to_end(&mut bytes)?;
    let mut out = Vec::new();
    let mut at = offset;
    scan_all(&bytes, |payload| {
        at = offset + (payload.as_ptr() as usize - bytes.as_ptr() as usize + payload.len()) as u64;
        if out.len() >= BATCH {
            return;
        }
        let Ok(e) = Event::decode(payload) else {
            return;
        };
        let start = at - (payload.len() + RECORD_HEADER) as u64;
        out.push(Outgoing {
            partition: fleet.config.partition(e.customer_id),
            id: e
                .event_id
                .map_or_else(|| format!("{}:{seq}:{start}", fleet.origin), str::to_owned),
            payload: payload.to_vec(),
            end: at,
        });
    });
    // Nothing shippable left in a segment a newer one follows: go on to the next.
    if out.is_empty() && newer {
        let next = Cursor {
            seq: segments[pos + 1].0,
            offset: MAGIC.len() as u64,
        };
        return Ok((out, next));
    }
    let here = Cursor {
        seq: *seq,
        offset: out.last().map_or(offset, |o| o.end),
    };
    Ok((out, here))
}
