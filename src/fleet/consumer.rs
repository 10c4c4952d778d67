//! Reads one partition's stream and applies the other replicas' events to the local contact
//! state. On start it reads from the beginning of the contact horizon (the catch-up), then
//! blocks for new entries. Its own replica's entries are skipped: they are in the local log.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;

use super::{backoff, now_ms, Fleet};
use crate::contact::Contacts;

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
        let opts = StreamReadOptions::default().count(COUNT).block(BLOCK_MS);
        let reply: redis::RedisResult<Option<StreamReadReply>> =
            c.xread_options(&[&key], &[&last], &opts).await;
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
        for entry in reply.iter().flat_map(|r| &r.keys).flat_map(|k| &k.ids) {
            read += 1;
            last.clone_from(&entry.id);
            let field = |name: &str| match entry.map.get(name) {
                Some(redis::Value::BulkString(b)) => Some(b.as_slice()),
                _ => None,
            };
            if field("o") == Some(fleet.origin.as_bytes()) {
                continue;
            }
            let (Some(payload), Some(id)) = (field("e"), field("i")) else {
                continue;
            };
            let id = String::from_utf8_lossy(id);
            match contacts.apply_remote(payload, &id) {
                Ok(true) => {
                    fleet.applied.fetch_add(1, Relaxed);
                    if let Some(t) = field("t")
                        .and_then(|t| std::str::from_utf8(t).ok())
                        .and_then(|t| t.parse::<i64>().ok())
                    {
                        let lag = (now_ms() - t).max(0);
                        fleet.lag_ms.store(lag, Relaxed);
                        fleet.lag.observe_ns(lag as u64 * 1_000_000);
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "a fleet event did not decode; skipped"),
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
