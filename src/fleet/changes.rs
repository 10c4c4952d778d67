//! The entries of the fleet's stream of admin changes as a replica reads them: their fields,
//! whether a holder of the fleet's admin token signed them and when, and which are copies of a
//! change seen before (a signed entry appended again).
//!
//! Owns: [`Entry`], [`Seen`], reading replies. Must not: apply a change or talk to Redis.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use redis::Value;

use super::{signing, Fleet};

/// Signatures remembered: four times the entries the stream keeps.
const REMEMBERED: usize = 400;

/// Longest time between a change's signing and Redis taking it: a signed entry appended
/// again later is a replay, and refused.
const MAX_SIGNED_AGE: Duration = Duration::from_secs(300);

/// One entry of the stream, as read.
pub(super) struct Entry {
    pub(super) id: String,
    pub(super) fields: HashMap<String, Vec<u8>>,
}

impl Entry {
    pub(super) fn text(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Whether a replica holding this fleet's admin token made the change, now: its signature
    /// fits (taken as is when this replica has no token to check with), and Redis took it
    /// within [`MAX_SIGNED_AGE`] of its signing (an old signed entry appended again gets a new
    /// stream id, which Redis stamps with its own clock).
    pub(super) fn signed(&self, fleet: &Fleet) -> bool {
        let Some(signer) = &fleet.signer else {
            return true;
        };
        let signed_at = self.text("a").and_then(|a| a.parse::<i64>().ok());
        let taken_at = self
            .id
            .split('-')
            .next()
            .and_then(|t| t.parse::<i64>().ok());
        let fresh = matches!((signed_at, taken_at), (Some(a), Some(t))
            if (t - a).abs() <= MAX_SIGNED_AGE.as_millis() as i64);
        let field = |name: &str| self.fields.get(name).map(Vec::as_slice);
        fresh && self.signature().is_some_and(|s| signer.verify(field, s))
    }

    /// The entry's signature, which tells a change from a copy of it appended again.
    pub(super) fn signature(&self) -> Option<&[u8]> {
        self.fields.get(signing::FIELD).map(Vec::as_slice)
    }
}

/// The signatures of the changes seen on the stream (at most [`REMEMBERED`], the
/// oldest forgotten first): a signed change appended again soon after is refused by this, a
/// later one by [`MAX_SIGNED_AGE`].
#[derive(Default)]
pub(super) struct Seen {
    order: VecDeque<Vec<u8>>,
    set: HashSet<Vec<u8>>,
}

impl Seen {
    /// Remembers a signature; false when it was seen before.
    pub(super) fn first_time(&mut self, signature: &[u8]) -> bool {
        if self.set.contains(signature) {
            return false;
        }
        if self.order.len() == REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.order.push_back(signature.to_vec());
        self.set.insert(signature.to_vec());
        true
    }
}

pub(super) fn entries(list: &Value) -> Vec<Entry> {
    let Value::Array(items) = list else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|e| match e {
            Value::Array(pair) => match pair.as_slice() {
                [Value::BulkString(id), Value::Array(kv)] => Some(Entry {
                    id: String::from_utf8_lossy(id).into_owned(),
                    fields: kv
                        .chunks_exact(2)
                        .filter_map(|kv| match kv {
                            [Value::BulkString(k), Value::BulkString(v)] => {
                                Some((String::from_utf8_lossy(k).into_owned(), v.clone()))
                            }
                            _ => None,
                        })
                        .collect(),
                }),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The entries of an `XREAD` reply for one stream (RESP2 or RESP3 form).
pub(super) fn read_reply(reply: &Value) -> Vec<Entry> {
    match reply {
        Value::Array(streams) => streams
            .iter()
            .flat_map(|s| match s {
                Value::Array(kv) if kv.len() == 2 => entries(&kv[1]),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(m) => m.iter().flat_map(|(_, v)| entries(v)).collect(),
        _ => Vec::new(),
    }
}
