//! Ships the local event log to the fleet's streams: tails the segments from a remembered
//! position, appends each record to its customer's partition, and moves the position on only
//! after Redis took the records, so every accepted event reaches Redis at least once, also
//! across a crash of this replica or an outage of Redis. What Redis refused of a batch goes
//! again, before anything after it is read; what it took is not sent again.
//!
//! The position (`<data>/replication.cursor`: segment and byte offset, with the Redis run id
//! and the partition count it was shipped to) is written atomically
//! at most every `CURSOR_SAVE_EVERY` while batches flow, and once shipping has been idle for
//! `IDLE_POLL` (saving it after every batch cost more than shipping the batch); at worst a
//! crash ships the last second's batches again, and receivers apply each event id once. When
//! Redis answers with another run id than before (it restarted, also across a stop of this
//! replica), the stream entry of the last record shipped is looked for: a Redis that kept its
//! data (AOF, a snapshot, a failover to its replica) holds it and every entry before it, and
//! shipping goes on; one that lost it gets the whole log again from its start, as do streams
//! laid out with another partition count than the position was shipped with. The run id is
//! asked
//! on every reconnect and, while there is nothing to ship, every [`RUN_ID_CHECK`]: an idle
//! replica notices a restarted Redis within about a second, not with its next event, and a
//! dead connection is replaced before it is needed.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::cursor::{Cursor, Saved, Shipped, CURSOR_SAVE_EVERY};
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
/// How often shipping looks whether this replica's id is known to be its own alone.
const IDENTITY_POLL: Duration = Duration::from_millis(50);
/// Below this backlog a batch is read on the fleet's own thread: a read of what the last
/// batches appended costs less than the hand-off to a blocking thread, and this thread never
/// runs decisions. A larger catch-up read goes to a blocking thread so the consumers keep on.
const READ_INLINE_BELOW: u64 = 256 << 10;

/// A record read from the log, ready to ship.
struct Outgoing {
    partition: u16,
    id: String,
    payload: Vec<u8>,
}

/// Runs until the process ends or the replica refuses to join, from `before`, the cursor the
/// last run saved ([`load_cursor`]).
pub(super) async fn run(fleet: Arc<Fleet>, contacts: Arc<Contacts>, dir: PathBuf, before: Cursor) {
    let mut tail = log::Tail::new(&dir);
    let mut cursor = before.at;
    let mut con = None;
    // The Redis shipped to before this start: another run id at the first connection means it
    // restarted (and may have lost what it held) while this replica was stopped.
    if before.reset {
        tracing::warn!(
            partitions = fleet.config.partitions,
            "the stream partition count changed since this log was last shipped; shipping the whole local log again"
        );
    }
    let mut run_id: Option<String> = before.run_id;
    let mut last: Option<Shipped> = before.last;
    if last.is_some() {
        fleet.shipped_an_event();
    }
    // A batch Redis did not take all of, with where reading goes on once it has gone.
    let mut pending: Option<(Vec<Outgoing>, Position)> = None;
    let mut attempt = 0u32;
    let mut idle_since = tokio::time::Instant::now();
    let mut saved = Saved::new(&dir, fleet.config.partitions, cursor);
    loop {
        if fleet.refused().is_some() {
            return;
        }
        let c = match &mut con {
            Some(c) => c,
            None => match connect(&fleet).await {
                Ok((mut c, (id, uptime_s))) => {
                    let restart = restarted(&mut run_id, id.clone());
                    let kept = if restart {
                        kept(&mut c, &fleet, last.as_ref()).await
                    } else {
                        // The same run as before, or none known: no loss to tell of, unless
                        // nothing shipped to it could tell.
                        last.as_ref().map(|_| true)
                    };
                    if restart && kept != Some(true) {
                        from_log_start(&fleet, &mut cursor, &mut last, &mut pending);
                    }
                    fleet.redis_kept(kept, uptime_s);
                    fleet.redis_run_checked(&id);
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
                Ok((id, uptime_s)) => {
                    fleet.exchanged("check", now_ms());
                    fleet.redis_run_checked(&id);
                    let lost = if restarted(&mut run_id, id) {
                        let kept = kept(c, &fleet, last.as_ref()).await;
                        fleet.redis_kept(kept, uptime_s);
                        kept != Some(true)
                    } else {
                        let retention = contacts.state().retention_ms();
                        flushed(c, &fleet, last.as_ref(), retention).await
                    };
                    if lost {
                        // A Redis back empty also lost the recorded partition count.
                        if let Ok(v) = super::join::check(c, &fleet).await {
                            if !super::join::accept(&fleet, v) {
                                return;
                            }
                        }
                        from_log_start(&fleet, &mut cursor, &mut last, &mut pending);
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
        // Nothing goes out under this replica's id before it is known to be its own alone.
        if !fleet.identity().known_alone() {
            tokio::time::sleep(IDENTITY_POLL).await;
            continue;
        }
        // What Redis refused of the last batch goes first, before anything after it is read.
        let ((batch, next), fresh) = match pending.take() {
            Some(p) => (p, false),
            None => match read(&mut tail, &dir, cursor, &fleet).await {
                Some(b) => (b, true),
                None => {
                    tokio::time::sleep(IDLE_POLL).await;
                    continue;
                }
            },
        };
        if batch.is_empty() {
            // Nothing held back: a refusal of shipping is over.
            fleet.nothing_to_ship(now_ms());
            if next != cursor {
                cursor = next;
                fleet.set_cursor(cursor);
                saved.save(cursor, run_id.as_deref(), last.as_ref()).await;
                continue;
            }
            fleet.shipped_whole_log(run_id.as_deref());
            tokio::select! {
                _ = contacts.log_written() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {
                    // Quiet for a while: the saved position catches up with the shipped one.
                    if saved.at != Some(cursor) {
                        saved.save(cursor, run_id.as_deref(), last.as_ref()).await;
                    }
                }
            }
            continue;
        }
        let written = now_ms();
        let trim = last.as_ref().and_then(|l| {
            let redis_ms = l.entry_ms()?;
            Some(
                redis_ms
                    .saturating_sub(contacts.state().retention_ms())
                    .max(0),
            )
        });
        // Read to the log's end just now: once this batch has gone, nothing waits (a batch
        // that goes again was read before what came while Redis refused it).
        let drained = fresh && fleet.backlog_bytes.load(Relaxed) == 0;
        let answers = match ship(c, &fleet, &batch, written, trim).await {
            Ok(answers) => answers,
            Err(e) => {
                // Nothing is known to be taken: the whole batch goes again.
                pending = Some((batch, next));
                fleet.failed("ship", &e);
                con = None;
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
                continue;
            }
        };
        idle_since = tokio::time::Instant::now();
        let (taken, rest, refused) = sort_answers(batch, answers);
        if let Some(shipped) = taken.last {
            if let Some(redis_ms) = shipped.entry_ms() {
                fleet.observe_skew(redis_ms, written);
            }
            last = Some(shipped);
            fleet.shipped_an_event();
            fleet.shipped.fetch_add(taken.count as u64, Relaxed);
        }
        if let Some(e) = refused {
            // Redis answered on this connection: what it refused goes again on it, after the
            // backoff; the position stays before the batch until all of it has gone.
            pending = Some((rest, next));
            fleet.failed("ship", &e);
            fleet.shipping_again();
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
            continue;
        }
        attempt = 0;
        cursor = next;
        fleet.set_cursor(cursor);
        if saved.when.elapsed() >= CURSOR_SAVE_EVERY {
            saved.save(cursor, run_id.as_deref(), last.as_ref()).await;
        }
        // A refusal ends when what it held back has gone, not with the first batch Redis
        // takes while it is still at its limit.
        if drained {
            fleet.exchanged("ship", now_ms());
        } else {
            fleet.answered(now_ms());
        }
    }
}

/// Reads the next batch from `cursor` (`None`: the read failed, and was said). Never on the
/// workers that run decisions: a small read on the fleet's own thread, a catch-up on a
/// blocking one so the consumers keep on.
async fn read(
    tail: &mut log::Tail,
    dir: &Path,
    cursor: Position,
    fleet: &Arc<Fleet>,
) -> Option<(Vec<Outgoing>, Position)> {
    let read = if fleet.backlog_bytes.load(Relaxed) < READ_INLINE_BELOW {
        Ok(read_batch(tail, cursor, fleet))
    } else {
        let (mut moved, fleet) = (std::mem::replace(tail, log::Tail::new(dir)), fleet.clone());
        tokio::task::spawn_blocking(move || {
            let read = read_batch(&mut moved, cursor, &fleet);
            (moved, read)
        })
        .await
        .map(|(moved, read)| {
            *tail = moved;
            read
        })
    };
    match read {
        Ok(Ok(b)) => Some(b),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "reading the event log to ship it failed; retrying");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "the log reader task failed; retrying");
            None
        }
    }
}

/// What Redis took of a batch: how many records, and the entry of the last one taken.
struct Taken {
    count: usize,
    last: Option<Shipped>,
}

/// Splits a batch by Redis's answers into what it took and what goes again, with the first
/// refusal (an `OOM` at `maxmemory`, a key of another type). What Redis took is done, even
/// after a record it refused: a Redis at its limit refuses the commands of a shipment while
/// the shipment fills its input buffer and takes the later ones as it drains, and sending those
/// again would put them in twice. A partition's stream may then hold an event before an
/// earlier one of this replica, as it holds other replicas' events in the order they were
/// shipped: histories keep their events by time, not by arrival.
fn sort_answers(
    batch: Vec<Outgoing>,
    answers: Vec<redis::RedisResult<String>>,
) -> (Taken, Vec<Outgoing>, Option<redis::RedisError>) {
    let mut taken = Taken {
        count: 0,
        last: None,
    };
    let mut rest = Vec::new();
    let mut refused: Option<redis::RedisError> = None;
    let mut answers = answers.into_iter();
    for o in batch {
        match answers.next() {
            Some(Ok(entry)) => {
                taken.count += 1;
                // The last entry's id is what a restarted Redis is asked for (see `kept`): the
                // newest, as Redis runs a shipment's commands in order.
                taken.last = Some(Shipped {
                    partition: o.partition,
                    entry,
                });
            }
            answer => {
                if let Some(Err(e)) = answer {
                    refused.get_or_insert(e);
                }
                rest.push(o);
            }
        }
    }
    if refused.is_none() && !rest.is_empty() {
        // Fewer answers than commands: no refusal Redis said, but not taken either.
        refused = Some(redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "fewer answers than commands in a shipment",
        )));
    }
    (taken, rest, refused)
}

/// Goes back to the start of the log: a Redis that lost what was shipped gets all of it again,
/// and no entry shipped so far says what it holds.
fn from_log_start(
    fleet: &Fleet,
    cursor: &mut Position,
    last: &mut Option<Shipped>,
    pending: &mut Option<(Vec<Outgoing>, Position)>,
) {
    *cursor = Position::start();
    *last = None;
    *pending = None;
    fleet.set_cursor(*cursor);
    fleet.shipping_again();
}

/// Notes the run id Redis answered with; true when it differs from the one before (Redis
/// restarted, and may have lost what it held).
fn restarted(known: &mut Option<String>, id: String) -> bool {
    let changed = known.as_ref().is_some_and(|old| *old != id);
    *known = Some(id);
    changed
}

/// Whether a restarted Redis kept what was shipped to it: the entry of the last record shipped
/// is there (Redis restores a prefix of its writes: an append-only file, a snapshot, what its
/// replica had), so the position stands; `None` when nothing shipped says (then the log, if
/// any of it was shipped before the position remembered its last record, goes again). Says
/// which it is; a failed look counts as lost, and the whole log is shipped again (receivers
/// apply each id once).
async fn kept(
    c: &mut redis::aio::MultiplexedConnection,
    fleet: &Fleet,
    last: Option<&Shipped>,
) -> Option<bool> {
    let redis = super::redact(&fleet.config.url);
    let Some(l) = last else {
        tracing::info!(%redis, "redis restarted (new run id); this replica has shipped it nothing that tells whether it kept the fleet's events");
        return None;
    };
    let found = holds(c, fleet, l).await.unwrap_or(false);
    if found {
        tracing::info!(%redis, "redis restarted (new run id) and kept this replica's shipped events; shipping goes on");
    } else {
        tracing::warn!(%redis, "redis restarted (new run id) without this replica's last shipped event; shipping the whole local log again");
    }
    Some(found)
}

/// Whether a Redis that did not restart lost what was shipped to it all the same (`FLUSHALL`,
/// keys evicted under an `allkeys-*` policy, streams deleted): it answers without the entry of
/// the last record shipped, while that entry is young enough not to have been trimmed. Says
/// so; a failed look is no answer, and changes nothing.
async fn flushed(
    c: &mut redis::aio::MultiplexedConnection,
    fleet: &Fleet,
    last: Option<&Shipped>,
    retention_ms: i64,
) -> bool {
    let Some(l) = last else { return false };
    // Entries older than the retention (less an hour's margin) may have been trimmed.
    let young = l
        .entry_ms()
        .is_some_and(|ms| ms > now_ms() - retention_ms + 3_600_000);
    if !young || !matches!(holds(c, fleet, l).await, Ok(false)) {
        return false;
    }
    tracing::warn!(redis = %super::redact(&fleet.config.url), "the fleet's Redis no longer holds this replica's last shipped event (flushed, evicted or deleted) although it did not restart; shipping the whole local log again");
    true
}

/// Whether Redis holds the stream entry of a record shipped.
async fn holds(
    c: &mut redis::aio::MultiplexedConnection,
    fleet: &Fleet,
    l: &Shipped,
) -> redis::RedisResult<bool> {
    let entries: Vec<redis::Value> = redis::cmd("XRANGE")
        .arg(fleet.config.key(l.partition))
        .arg(&l.entry)
        .arg(&l.entry)
        .query_async(c)
        .await?;
    Ok(!entries.is_empty())
}

/// A connection and the server's run id, the partition count checked (a refusal stops the
/// link, and the connection is then never used).
async fn connect(
    fleet: &Fleet,
) -> redis::RedisResult<(redis::aio::MultiplexedConnection, (String, u64))> {
    let mut c = fleet.connect(Duration::from_secs(5)).await?;
    let id = server_run_id(&mut c).await?;
    let verdict = super::join::check(&mut c, fleet).await?;
    super::join::accept(fleet, verdict);
    Ok((c, id))
}

/// The run id Redis answers `INFO server` with (new at every start of the server), and how
/// long it has been up, in seconds.
pub(super) async fn server_run_id(
    c: &mut redis::aio::MultiplexedConnection,
) -> redis::RedisResult<(String, u64)> {
    let info: String = redis::cmd("INFO").arg("server").query_async(c).await?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    Ok((
        field("run_id:"),
        field("uptime_in_seconds:").parse().unwrap_or(u64::MAX),
    ))
}

/// Appends a batch, each record to its partition's stream, stamped `written` (this host's
/// time, for the lag), trimming entries older than `trim_before` (Unix ms on Redis's clock:
/// the last entry's time less the events' retention; never the horizon alone, which with no
/// policy windows is zero and would trim what the other replicas had not read yet).
///
/// Entry ids are Redis's time, so the trim is measured on Redis's clock too: on this host's,
/// a replica whose clock ran ahead would empty every partition it appends to.
async fn ship(
    c: &mut redis::aio::MultiplexedConnection,
    fleet: &Fleet,
    batch: &[Outgoing],
    written: i64,
    trim_before: Option<i64>,
) -> redis::RedisResult<Vec<redis::RedisResult<String>>> {
    let written = written.to_string();
    let min_id = trim_before.map(|ms| format!("{ms}-0"));
    let mut pipe = redis::pipe();
    for o in batch {
        let add = pipe.cmd("XADD").arg(fleet.config.key(o.partition));
        if let Some(min_id) = &min_id {
            add.arg("MINID").arg("~").arg(min_id);
        }
        add.arg("*")
            .arg("o")
            .arg(&fleet.origin)
            .arg("i")
            .arg(&o.id)
            .arg("t")
            .arg(&written)
            .arg("e")
            .arg(&o.payload[..]);
    }
    // Each command's answer, refusals included: what Redis took of a batch refused part way
    // is not shipped again.
    pipe.ignore_errors().query_async(c).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_refused_part_way_keeps_what_went_in_and_ships_only_the_refused_again() {
        let out = |partition: u16, id: &str| Outgoing {
            partition,
            id: id.into(),
            payload: Vec::new(),
        };
        let oom = || {
            Err(redis::RedisError::from((
                redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
                "OOM",
            )))
        };
        let batch = vec![
            out(0, "a"),
            out(1, "b"),
            out(0, "c"),
            out(1, "d"),
            out(2, "e"),
        ];
        // Redis refused b and c, then took d and e as its input buffer drained: only b and c
        // go again, d is not put in twice.
        let answers = vec![
            Ok("1-0".into()),
            oom(),
            oom(),
            Ok("1-1".into()),
            Ok("1-2".into()),
        ];
        let (taken, rest, refused) = sort_answers(batch, answers);
        assert_eq!(taken.count, 3);
        assert_eq!(
            taken.last.map(|l| (l.partition, l.entry)),
            Some((2, "1-2".into()))
        );
        let rest: Vec<&str> = rest.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(rest, ["b", "c"]);
        assert!(refused.is_some());
        // Every answer a success: nothing goes again.
        let (taken, rest, refused) = sort_answers(vec![out(0, "a")], vec![Ok("2-0".into())]);
        assert!(taken.count == 1 && rest.is_empty() && refused.is_none());
        // Fewer answers than commands: what has none goes again, as refused.
        let (taken, rest, refused) =
            sort_answers(vec![out(0, "a"), out(3, "b")], vec![Ok("3-0".into())]);
        assert!(taken.count == 1 && rest.len() == 1 && refused.is_some());
    }
}
