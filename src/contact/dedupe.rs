//! The event ids seen recently, so a repeat is counted once.
//!
//! Not a moka cache on purpose: an id is a 16-byte hash, and a general cache's per-entry
//! bookkeeping (~150 bytes, plus the cost of its admission and expiry machinery) would make the
//! dedupe window the largest and slowest part of the contact state; replaying 4 million ids into
//! moka took longer than replaying the events. Instead each of [`SHARDS`] shards keeps two
//! generations of plain hash sets: ids go into the current one, a lookup checks both, and when
//! the current one is a TTL old or full it becomes the previous one (the old previous is
//! dropped whole). An id is therefore remembered for at least one TTL unless more than
//! `capacity / 2` ids arrive within it, and never longer than two TTLs. Each entry keeps 96 bits
//! of the id's hash and 32 of a digest of the event that claimed it, so a client's retry is
//! told from another event sent under an id already used, at no cost in memory. Only the events path
//! takes these locks, for a hash-set operation; decisions never touch them.

use std::sync::Mutex;

/// The 128-bit key [`SeenIds`] remembers `value` by: two independent 64-bit hashes, seeded
/// `seed` and `seed + 1` (each kind of key its own seed, so kinds never collide by design).
pub fn key_of(value: impl std::hash::Hash, seed: u64) -> u128 {
    use std::hash::BuildHasher;
    let lo = foldhash::fast::FixedState::with_seed(seed).hash_one(&value);
    let hi = foldhash::fast::FixedState::with_seed(seed + 1).hash_one(&value);
    (u128::from(hi) << 64) | u128::from(lo)
}

/// Shards, so concurrent batches rarely wait on one another.
pub const SHARDS: usize = 64;

/// The bits of an entry that name its id; the rest hold a digest of the event that claimed
/// it. 96 bits of a uniform hash keep two ids apart for as many as a node can remember.
const ID: u128 = !0xFFFF_FFFF;

/// Ids are uniform hashes: the bits just above the digest are the table's hash.
fn hash(entry: &u128) -> u64 {
    (entry >> 32) as u64
}

/// What claiming an id found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Not seen: its event counts.
    New,
    /// Claimed before by the same event (a retry, or another replica's copy).
    Repeat,
    /// Claimed before by another event (its digest differs): a client reusing an id.
    Reused,
}

#[derive(Default)]
struct Generations {
    current: hashbrown::HashTable<u128>,
    previous: hashbrown::HashTable<u128>,
    started_ms: i64,
}

impl Generations {
    fn find(&self, id: u128) -> Option<u128> {
        let same = |e: &u128| e & ID == id;
        (self.previous.find(hash(&id), same))
            .or_else(|| self.current.find(hash(&id), same))
            .copied()
    }

    fn remove(&mut self, id: u128) {
        for t in [&mut self.current, &mut self.previous] {
            if let Ok(e) = t.find_entry(hash(&id), |e| e & ID == id) {
                e.remove();
            }
        }
    }
}

/// Recently seen event ids (as 128-bit hashes, see [`super::state::event_key`]).
pub struct SeenIds {
    shards: Box<[Mutex<Generations>]>,
    ttl_ms: i64,
    per_generation: usize,
}

impl SeenIds {
    /// Remembers ids for `ttl_ms`, holding at most about `capacity` of them.
    pub fn new(capacity: u64, ttl_ms: i64) -> Self {
        SeenIds {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Generations::default()))
                .collect(),
            ttl_ms: ttl_ms.max(1),
            per_generation: (capacity as usize / SHARDS / 2).max(1),
        }
    }

    fn shard(&self, key: u128) -> std::sync::MutexGuard<'_, Generations> {
        let i = (key >> 64) as usize % SHARDS;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True the first time an id is claimed, false for a repeat while it is remembered.
    pub fn claim(&self, key: u128, now_ms: i64) -> bool {
        self.claim_for(key, 0, now_ms) == Claim::New
    }

    /// Claims an id for the event whose [`digest`](super::Event::digest) is given, telling a
    /// repeat of that event from another event under the same id.
    pub fn claim_for(&self, key: u128, digest: u32, now_ms: i64) -> Claim {
        let mut g = self.shard(key);
        let age = now_ms.saturating_sub(g.started_ms);
        if g.current.len() >= self.per_generation || age >= self.ttl_ms {
            g.previous = std::mem::take(&mut g.current);
            if age >= self.ttl_ms.saturating_mul(2) {
                // After a quiet spell the current generation is two TTLs old too.
                g.previous.clear();
            }
            g.started_ms = now_ms;
        }
        let id = key & ID;
        let entry = id | u128::from(digest);
        match g.find(id) {
            Some(e) if e == entry => Claim::Repeat,
            Some(_) => Claim::Reused,
            None => {
                g.current.insert_unique(hash(&entry), entry, hash);
                Claim::New
            }
        }
    }

    /// Forgets an id (its event could not be written, so a retry must not look repeated).
    pub fn unclaim(&self, key: u128) {
        self.shard(key).remove(key & ID);
    }

    /// Ids remembered.
    pub fn len(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| {
                let g = s.lock().unwrap_or_else(|p| p.into_inner());
                (g.current.len() + g.previous.len()) as u64
            })
            .sum()
    }

    /// True when no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_for_at_least_a_ttl_and_at_most_two() {
        let s = SeenIds::new(1 << 20, 1000);
        assert!(s.claim(7, 0));
        assert!(!s.claim(7, 999));
        assert!(
            !s.claim(7, 1500),
            "moved to the previous generation, still seen"
        );
        assert!(s.claim(7, 2500), "two generations later it is forgotten");
        s.unclaim(7);
        assert!(s.claim(7, 2600));
        assert_eq!(s.len(), 1);
        assert!(
            s.claim(7, 4600),
            "after two quiet TTLs it is forgotten at once"
        );
    }

    #[test]
    fn a_repeat_is_told_from_another_event_under_the_same_id() {
        let s = SeenIds::new(1 << 20, 1000);
        let k = key_of("e1", 1);
        assert_eq!(s.claim_for(k, 5, 0), Claim::New);
        assert_eq!(s.claim_for(k, 5, 10), Claim::Repeat);
        assert_eq!(s.claim_for(k, 6, 10), Claim::Reused);
        assert_eq!(
            s.claim_for(k, 6, 1500),
            Claim::Reused,
            "in the previous generation"
        );
        assert_eq!(s.claim_for(k, 5, 1500), Claim::Repeat);
        assert_eq!(s.claim_for(key_of("e2", 1), 5, 1500), Claim::New);
        s.unclaim(k);
        assert_eq!(
            s.claim_for(k, 6, 1600),
            Claim::New,
            "given up, then claimed anew"
        );
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn memory_is_bounded_by_the_capacity() {
        let s = SeenIds::new(64 * 2 * 10, i64::MAX);
        for k in 0..100_000u128 {
            s.claim(k.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835), 0);
        }
        assert!(s.len() <= 64 * 2 * 10, "{}", s.len());
        assert!(!s.is_empty());
    }
}
