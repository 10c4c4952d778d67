//! Reads one partition's stream and applies the other replicas' events to the local contact
//! state. On start it reads from the beginning of the contact horizon (the catch-up), then
//! blocks for new entries. Its own replica's entries are skipped: they are in the local log.
//!
//! The lag of each event applied is measured from the time its origin accepted it (stamped in
//! the record; the time it was shipped for records of older builds), once this partition's
//! catch-up is over: the catch-up reads history from before this replica ran, which is no
//! measure of how fast the fleet replicates.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use redis::Value;

use super::{backoff, now_ms, Fleet};
use crate::contact::{Contacts, Event};

/// Entries per read.
const COUNT: usize = 1_000;
/// How long a read blocks waiting for new entries.
const BLOCK_MS: usize = 1_000;

/// Runs until the process ends.
pub async fn run(
    fleet: Arc<Fleet>,
    client: redis::Client,
    contacts: Arc<Contacts>,
    partition: u16,
) {
    let key = fleet.config.key(partition);
    let horizon = contacts.state().horizon_ms();
    let mut last = format!("{}-0", now_ms().saturating_sub(horizon).max(0));
    let mut caught_up = false;
    let mut attempt = 0u32;
    let mut con = None;
    loop {
        if fleet.refused().is_some() {
            return;
        }
        let c = match &mut con {
            Some(c) => c,
            None => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_millis(BLOCK_MS as u64 + 5_000)));
                match client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                {
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
        // The raw reply, walked in place: no map per entry, and each payload borrowed. The
        // catch-up reads what is there without waiting for more.
        let mut read_cmd = redis::cmd("XREAD");
        read_cmd.arg("COUNT").arg(COUNT);
        if caught_up {
            read_cmd.arg("BLOCK").arg(BLOCK_MS);
        }
        let reply: redis::RedisResult<Value> = read_cmd
            .arg("STREAMS")
            .arg(&key)
            .arg(&last)
            .query_async(c)
            .await;
        let reply = match reply {
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
        fleet.exchanged(now);
        let mut read = 0;
        let mut newest: &[u8] = &[];
        for (entry_id, fields) in entries(&reply) {
            read += 1;
            newest = entry_id;
            let field = |name: &[u8]| {
                fields.chunks_exact(2).find_map(|kv| match kv {
                    [Value::BulkString(k), Value::BulkString(v)] if k == name => Some(v.as_slice()),
                    _ => None,
                })
            };
            if field(b"o") == Some(fleet.origin.as_bytes()) {
                continue;
            }
            let (Some(payload), Some(id)) = (field(b"e"), field(b"i")) else {
                continue;
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
                        fleet.observe_lag(now_ms() - t);
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "a fleet event did not decode; skipped"),
            }
        }
        if let Ok(id) = std::str::from_utf8(newest) {
            if !id.is_empty() {
                last.clear();
                last.push_str(id);
            }
        }
        if !caught_up && read < COUNT {
            caught_up = true;
            let done = fleet.partitions_caught_up.fetch_add(1, Relaxed) + 1;
            if done == u64::from(fleet.config.partitions) {
                fleet.caught_up.store(true, Relaxed);
                tracing::info!(
                    waited_ms = fleet.started.elapsed().as_millis() as u64,
                    "caught up with the fleet's events"
                );
            }
        }
    }
}

/// The entries of an `XREAD` reply for one stream, as (id, flat field-value list), in order.
/// Takes the RESP2 form (`[[key, [[id, [f, v, ...]], ...]]]`) and the RESP3 map form alike; a
/// nil reply (the block timed out) has none.
fn entries(reply: &Value) -> impl Iterator<Item = (&[u8], &[Value])> {
    let streams: &[Value] = match reply {
        Value::Array(streams) => streams,
        _ => &[],
    };
    let from_map = match reply {
        Value::Map(m) => m.as_slice(),
        _ => &[],
    };
    let lists = streams
        .iter()
        .filter_map(|s| match s {
            Value::Array(kv) if kv.len() == 2 => Some(&kv[1]),
            _ => None,
        })
        .chain(from_map.iter().map(|(_, v)| v));
    lists
        .filter_map(|l| match l {
            Value::Array(entries) => Some(entries.as_slice()),
            _ => None,
        })
        .flatten()
        .filter_map(|e| match e {
            Value::Array(pair) => match pair.as_slice() {
                [Value::BulkString(id), Value::Array(fields)] => {
                    Some((id.as_slice(), fields.as_slice()))
                }
                _ => None,
            },
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn entries_are_read_in_order_from_either_reply_form() {
        let entry = |id: &str, e: &str| {
            Value::Array(vec![
                bulk(id),
                Value::Array(vec![bulk("o"), bulk("r1"), bulk("e"), bulk(e)]),
            ])
        };
        let list = Value::Array(vec![entry("1-0", "a"), entry("2-0", "b")]);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("k"), list.clone()])]);
        let resp3 = Value::Map(vec![(bulk("k"), list)]);
        for reply in [resp2, resp3] {
            let got: Vec<_> = entries(&reply)
                .map(|(id, f)| (id.to_vec(), f.len()))
                .collect();
            assert_eq!(got, [(b"1-0".to_vec(), 4), (b"2-0".to_vec(), 4)]);
        }
        assert_eq!(entries(&Value::Nil).count(), 0);
    }
}
