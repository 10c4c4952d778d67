//! What a replica checks before it takes part in the fleet, and again on every reconnect: that
//! it splits customers into as many stream partitions as the fleet does. The first replica to
//! reach a Redis records its count there (`<prefix>:partitions`, set only when absent); one
//! with another count would read and write other streams than the fleet's for most customers,
//! so it refuses to join, naming both counts, and stays unready until restarted with the
//! fleet's count. Its own log keeps every event it accepted, shipped once it joins.
//!
//! This module only reads and sets that key; it ships and applies nothing.

use std::time::Duration;

use super::{backoff, now_ms, Fleet};

/// What the recorded count says about this replica's.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The same count (or this replica recorded it first).
    Agrees,
    /// The fleet uses another count.
    Differs {
        /// The count recorded in Redis.
        fleet: String,
    },
}

/// Records this replica's partition count if none is, and compares it with the recorded one.
pub async fn check<C: redis::aio::ConnectionLike>(
    con: &mut C,
    fleet: &Fleet,
) -> redis::RedisResult<Verdict> {
    let key = fleet.config.partitions_key();
    let ours = fleet.config.partitions.to_string();
    let (recorded,): (Option<String>,) = redis::pipe()
        .cmd("SET")
        .arg(&key)
        .arg(&ours)
        .arg("NX")
        .ignore()
        .cmd("GET")
        .arg(&key)
        .query_async(con)
        .await?;
    Ok(match recorded {
        Some(r) if r.trim() != ours => Verdict::Differs { fleet: r },
        _ => Verdict::Agrees,
    })
}

/// Stops the link when the verdict is against this replica; true when it may go on.
pub fn accept(fleet: &Fleet, verdict: Verdict) -> bool {
    match verdict {
        Verdict::Agrees => true,
        Verdict::Differs { fleet: theirs } => {
            fleet.refuse(format!(
                "--redis-partitions {} but the fleet at {} uses {theirs}: every replica must use \
                 the same count; restart this one with --redis-partitions {theirs}",
                fleet.config.partitions,
                super::redact(&fleet.config.url),
            ));
            false
        }
    }
}

/// Waits (retrying with backoff while Redis is away) until the partition count is checked;
/// false when this replica refused to join.
pub async fn join(fleet: &Fleet) -> bool {
    let mut attempt = 0u32;
    loop {
        let checked = match fleet.connect(Duration::from_secs(5)).await {
            Ok(mut con) => check(&mut con, fleet).await,
            Err(e) => Err(e),
        };
        match checked {
            Ok(verdict) => {
                fleet.exchanged("join", now_ms());
                return accept(fleet, verdict);
            }
            Err(e) => {
                fleet.identity().unreachable();
                fleet.failed("join", &e);
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
        }
    }
}
