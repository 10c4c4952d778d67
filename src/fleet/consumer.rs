//! Reads the partitions' streams and applies the other replicas' events to the local contact
//! state. On start each stream is read from as far back as events are kept (the catch-up: a
//! policy window's events, the ids remembered against repeats, what adaptive offers learnt),
//! then all of them are read together, blocking for new entries. Its own
//! replica's entries are skipped: they are in the local log. The replica is caught up after a
//! read of every stream to its end that began once Redis held the fleet's events
//! ([`super::refill`]).
//!
//! One `XREAD` covers every partition, and a caught-up reader asks again no sooner than
//! [`PACE`] after its last read began: a read per event (what one blocking reader per stream
//! did at a few thousand events a second) costs a round trip, reply parsing and two thread
//! wake-ups each, while a read every [`PACE`] carries all that arrived in between for the
//! same cost, and adds at most [`PACE`] to the replication lag (the target is 10 ms at p50).
//! One `XREAD` over several keys needs them on one Redis node, which is what a
//! `redis::Client` talks to.
//!
//! The lag of each event applied is measured from the time its origin accepted it (stamped in
//! the record; the time it was shipped for records of older builds), once its partition's
//! catch-up is over: the catch-up reads history from before this replica ran, which is no
//! measure of how fast the fleet replicates.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use redis::Value;

use super::{backoff, now_ms, redis_time_ms, Fleet};
use crate::contact::{Contacts, Event};

/// Entries per read and stream, shared out over the partitions (a catch-up reply stays a few
/// megabytes however many partitions there are).
const ENTRIES_PER_READ: usize = 8_000;
/// Fewest entries a read asks of each stream.
const MIN_COUNT: usize = 16;
/// How long a read blocks waiting for new entries.
const BLOCK_MS: usize = 1_000;
/// How often a replica that has read every stream to its end looks again while it waits to
/// say it is caught up.
const SETTLE_POLL: Duration = Duration::from_millis(10);
/// Shortest time from one caught-up read to the next (see the module's doc).
pub const PACE: Duration = Duration::from_millis(2);

/// One partition's stream: where reading goes on from, and whether its catch-up is over.
struct Stream {
    key: String,
    last: String,
    caught_up: bool,
}

/// Runs until the process ends.
pub async fn run(fleet: Arc<Fleet>, contacts: Arc<Contacts>) {
    let retention = contacts.state().retention_ms();
    let mut streams: Vec<Stream> = (0..fleet.config.partitions)
        .map(|p| Stream {
            key: fleet.config.key(p),
            last: String::new(),
            caught_up: false,
        })
        .collect();
    let index: HashMap<Vec<u8>, usize> = streams
        .iter()
        .enumerate()
        .map(|(i, s)| (s.key.as_bytes().to_vec(), i))
        .collect();
    let count = (ENTRIES_PER_READ / streams.len().max(1)).max(MIN_COUNT);
    let mut attempt = 0u32;
    let mut con = None;
    loop {
        if fleet.refused().is_some() {
            return;
        }
        let c = match &mut con {
            Some(c) => c,
            None => {
                let response = Duration::from_millis(BLOCK_MS as u64 + 5_000);
                match fleet.connect(response).await {
                    Ok(c) => con.insert(c),
                    Err(e) => {
                        fleet.failed("connect", &e);
                        tokio::time::sleep(backoff(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                }
            }
        };
        let began = tokio::time::Instant::now();
        let all_caught_up = streams.iter().all(|s| s.caught_up);
        // Until the replica may say it is caught up (see `refill`), reads look and come back,
        // so the moment it may is not missed inside a blocking read.
        let block = all_caught_up && fleet.caught_up();
        // Known before the read begins: a read of every stream to its end after Redis holds
        // the fleet's events holds them too. Looked at during the catch-up as well, so
        // `/readyz` names whom it waits for while it reads.
        let settled = !fleet.caught_up() && fleet.redis_settled() && fleet.others_shipped(c).await;
        let reply = match read(c, &mut streams, retention, count, block).await {
            Ok(r) => r,
            Err(e) => {
                fleet.failed("read", &e);
                con = None;
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
                continue;
            }
        };
        attempt = 0;
        let now = now_ms();
        fleet.exchanged("read", now);
        let mut counts = vec![0usize; streams.len()];
        for (key, list) in streams_of(&reply) {
            let Some(&i) = index.get(key) else {
                continue;
            };
            let mut newest: &[u8] = &[];
            for (entry_id, fields) in list {
                counts[i] += 1;
                newest = entry_id;
                apply_entry(&fleet, &contacts, (entry_id, fields), streams[i].caught_up);
            }
            if let Ok(id) = std::str::from_utf8(newest) {
                if !id.is_empty() {
                    streams[i].last.clear();
                    streams[i].last.push_str(id);
                }
            }
        }
        for (s, &n) in streams.iter_mut().zip(&counts) {
            s.caught_up |= n < count;
        }
        if settled && counts.iter().all(|&n| n < count) {
            fleet.caught_up.store(true, Relaxed);
            tracing::info!(
                waited_ms = fleet.started.elapsed().as_millis() as u64,
                "caught up with the fleet's events"
            );
        }
        // A read that brought something and filled no stream's count: let the next batch
        // gather. A full stream (a burst) is read again at once; an empty reply already waited,
        // unless it did not block.
        let empty = counts.iter().all(|&n| n == 0);
        if all_caught_up && !empty && counts.iter().all(|&n| n < count) {
            tokio::time::sleep_until(began + PACE).await;
        } else if all_caught_up && !block && empty {
            tokio::time::sleep_until(began + SETTLE_POLL).await;
        }
    }
}

/// One `XREAD` over every stream, from where each got to. The first read starts a retention
/// back on Redis's clock (`TIME`), which stamped the entries: on this host's, a clock running
/// ahead would skip the fleet's kept events. The raw reply is walked in place by the caller
/// (no map per entry, each payload borrowed); while any stream is catching up, the read takes
/// what is there without waiting for more.
async fn read(
    c: &mut redis::aio::MultiplexedConnection,
    streams: &mut [Stream],
    retention: i64,
    count: usize,
    block: bool,
) -> redis::RedisResult<Value> {
    if streams.iter().any(|s| s.last.is_empty()) {
        let from = format!(
            "{}-0",
            redis_time_ms(c).await?.saturating_sub(retention).max(0)
        );
        for s in streams.iter_mut() {
            s.last.clone_from(&from);
        }
    }
    let mut read_cmd = redis::cmd("XREAD");
    read_cmd.arg("COUNT").arg(count);
    if block {
        read_cmd.arg("BLOCK").arg(BLOCK_MS);
    }
    read_cmd.arg("STREAMS");
    for s in streams.iter() {
        read_cmd.arg(&s.key);
    }
    for s in streams.iter() {
        read_cmd.arg(&s.last);
    }
    read_cmd.query_async(c).await
}

/// Applies one stream entry unless this replica wrote it; counts it and its lag.
fn apply_entry(
    fleet: &Fleet,
    contacts: &Contacts,
    (entry_id, fields): (&[u8], &[Value]),
    caught_up: bool,
) {
    let field = |name: &[u8]| {
        fields.chunks_exact(2).find_map(|kv| match kv {
            [Value::BulkString(k), Value::BulkString(v)] if k == name => Some(v.as_slice()),
            _ => None,
        })
    };
    if field(b"o") == Some(fleet.origin.as_bytes()) {
        return;
    }
    let (Some(payload), Some(id)) = (field(b"e"), field(b"i")) else {
        return;
    };
    let id = String::from_utf8_lossy(id);
    match contacts.apply_remote(payload, &id) {
        Ok(true) => {
            fleet.applied.fetch_add(1, Relaxed);
            let accepted = Event::decode_accepted(payload)
                .ok()
                .and_then(|(_, t)| t)
                .or_else(|| {
                    field(b"t")
                        .and_then(|t| std::str::from_utf8(t).ok())
                        .and_then(|t| t.parse::<i64>().ok())
                });
            if let Some(t) = accepted.filter(|_| caught_up) {
                fleet.observe_lag(fleet.fleet_now_ms() - lag_start(t, entry_id));
            }
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "a fleet event did not decode; skipped"),
    }
}

/// When an event's replication began: its acceptance on the origin's clock, or the time Redis
/// took it (the entry id's, on Redis's clock) when that is earlier, as from an origin whose
/// clock runs ahead: its events were not accepted after Redis stored them.
fn lag_start(accepted_ms: i64, entry_id: &[u8]) -> i64 {
    let stored = std::str::from_utf8(entry_id)
        .ok()
        .and_then(|id| id.split_once('-'))
        .and_then(|(ms, _)| ms.parse::<i64>().ok());
    stored.map_or(accepted_ms, |s| accepted_ms.min(s))
}

/// The streams of an `XREAD` reply, each as its key and its entries (id, flat field-value
/// list) in order. Takes the RESP2 form (`[[key, [[id, [f, v, ...]], ...]], ...]`) and the
/// RESP3 map form alike; a nil reply (the block timed out) has none.
fn streams_of(reply: &Value) -> impl Iterator<Item = (&[u8], Entries<'_>)> {
    let listed: &[Value] = match reply {
        Value::Array(streams) => streams,
        _ => &[],
    };
    let from_map = match reply {
        Value::Map(m) => m.as_slice(),
        _ => &[],
    };
    listed
        .iter()
        .filter_map(|s| match s {
            Value::Array(kv) => match kv.as_slice() {
                [k, v] => Some((k, v)),
                _ => None,
            },
            _ => None,
        })
        .chain(from_map.iter().map(|(k, v)| (k, v)))
        .filter_map(|(k, v)| match (k, v) {
            (Value::BulkString(key), Value::Array(entries)) => Some((
                key.as_slice(),
                Entries {
                    rest: entries.as_slice(),
                },
            )),
            _ => None,
        })
}

/// The entries of one stream in an `XREAD` reply.
struct Entries<'a> {
    rest: &'a [Value],
}

impl<'a> Iterator for Entries<'a> {
    type Item = (&'a [u8], &'a [Value]);

    fn next(&mut self) -> Option<Self::Item> {
        while let Some((e, rest)) = self.rest.split_first() {
            self.rest = rest;
            if let Value::Array(pair) = e {
                if let [Value::BulkString(id), Value::Array(fields)] = pair.as_slice() {
                    return Some((id.as_slice(), fields.as_slice()));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn the_lag_starts_no_later_than_redis_stored_the_entry() {
        // An origin on time: its acceptance, before Redis stored it.
        assert_eq!(super::lag_start(1_000, b"1003-0"), 1_000);
        // An origin a year ahead: Redis's time.
        assert_eq!(super::lag_start(31_536_001_000, b"1003-7"), 1_003);
        // An id that is no entry id: the acceptance as given.
        assert_eq!(super::lag_start(1_000, b"x"), 1_000);
    }

    #[test]
    fn entries_are_read_in_order_per_stream_from_either_reply_form() {
        let entry = |id: &str, e: &str| {
            Value::Array(vec![
                bulk(id),
                Value::Array(vec![bulk("o"), bulk("r1"), bulk("e"), bulk(e)]),
            ])
        };
        let list = Value::Array(vec![entry("1-0", "a"), entry("2-0", "b")]);
        let other = Value::Array(vec![entry("3-0", "c")]);
        let resp2 = Value::Array(vec![
            Value::Array(vec![bulk("k"), list.clone()]),
            Value::Array(vec![bulk("j"), other.clone()]),
        ]);
        let resp3 = Value::Map(vec![(bulk("k"), list), (bulk("j"), other)]);
        for reply in [resp2, resp3] {
            let got: Vec<_> = streams_of(&reply)
                .map(|(key, list)| {
                    let ids: Vec<_> = list.map(|(id, f)| (id.to_vec(), f.len())).collect();
                    (key.to_vec(), ids)
                })
                .collect();
            assert_eq!(
                got,
                [
                    (
                        b"k".to_vec(),
                        vec![(b"1-0".to_vec(), 4), (b"2-0".to_vec(), 4)]
                    ),
                    (b"j".to_vec(), vec![(b"3-0".to_vec(), 4)]),
                ]
            );
        }
        assert_eq!(streams_of(&Value::Nil).count(), 0);
    }
}
