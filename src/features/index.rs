//! Customer id → row index: built once per snapshot ([`IdIndex`]), or stored in a mapped
//! `.nbf` file and used in place ([`StoredIndex`]).
//!
//! Ids are stored back to back in one arena with their end offsets; the hash table holds only
//! row numbers (4 bytes each) and compares against the arena, so the index costs about
//! `id bytes + 9 bytes` per customer and a lookup by `&str` never allocates.
//!
//! The stored index is an open-addressing table of `u64` slots, a power of two of them at most
//! 3/4 full: a slot holds the high 32 bits of the id's XXH3-64 hash over the row number + 1 in
//! the low 32 bits (0: empty), probed linearly from `hash & (slots - 1)`. The tag lets a probe
//! skip every other id without reading the arena, so a lookup reads one slot's cache line and
//! the matching id, as the built table does. XXH3 has a fixed specification: a file hashed by
//! one build looks up the same in every other, which a seeded in-memory hasher cannot promise.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::section::Section;

/// The ids of a store: an index built at load, or one stored in a mapped file.
pub(super) enum Ids {
    /// Built from the ids on load (CSV, Parquet, `.nbf` read into memory).
    Built(IdIndex),
    /// Read in place from a mapped `.nbf` file.
    Stored(StoredIndex),
}

impl Ids {
    #[inline]
    pub(super) fn get(&self, id: &str) -> Option<u32> {
        match self {
            Ids::Built(i) => i.get(id),
            Ids::Stored(i) => i.get(id),
        }
    }

    pub(super) fn id_at(&self, row: usize) -> Option<&str> {
        match self {
            Ids::Built(i) => i.id_at(row),
            Ids::Stored(i) => std::str::from_utf8(slice_checked(&i.arena, &i.ends, row)?).ok(),
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Ids::Built(i) => i.len(),
            Ids::Stored(i) => i.ends.len(),
        }
    }

    pub(super) fn bytes_held(&self) -> usize {
        match self {
            Ids::Built(i) => i.bytes_held(),
            Ids::Stored(i) => i.arena.heap_bytes() + i.ends.heap_bytes() + i.slots.heap_bytes(),
        }
    }

    /// The arena and end offsets, for the binary writer.
    pub(super) fn raw(&self) -> (&[u8], &[u32]) {
        match self {
            Ids::Built(i) => i.raw(),
            Ids::Stored(i) => (&i.arena, &i.ends),
        }
    }
}

/// The hash the stored index is built with: XXH3-64, seed 0.
#[inline]
pub(super) fn stored_hash(id: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id)
}

/// Slots of a stored index for `rows` ids: a power of two at most 3/4 full (at least 8).
pub(super) fn stored_slots(rows: usize) -> usize {
    (rows + rows / 3 + 1).next_power_of_two().max(8)
}

/// Builds the stored table over ids laid out as the binary form holds them (writer side).
pub(super) fn build_stored(arena: &[u8], ends: &[u32]) -> Vec<u64> {
    let mut slots = vec![0u64; stored_slots(ends.len())];
    let mask = slots.len() - 1;
    for row in 0..ends.len() {
        let h = stored_hash(slice(arena, ends, row));
        let mut i = h as usize & mask;
        while slots[i] != 0 {
            i = (i + 1) & mask;
        }
        slots[i] = (h >> 32) << 32 | (row as u64 + 1);
    }
    slots
}

/// An id index read in place from a mapped `.nbf` file (layout in the module doc). Its
/// sections were bounds-checked when the file was opened; every read is checked again
/// (`get`), so a damaged table finds nothing rather than faulting.
pub(super) struct StoredIndex {
    pub(super) arena: Section<u8>,
    pub(super) ends: Section<u32>,
    pub(super) slots: Section<u64>,
}

impl StoredIndex {
    /// The row of an id, if present: at most one pass over the table.
    #[inline]
    pub(super) fn get(&self, id: &str) -> Option<u32> {
        let slots: &[u64] = &self.slots;
        let (arena, ends): (&[u8], &[u32]) = (&self.arena, &self.ends);
        let h = stored_hash(id.as_bytes());
        let tag = h >> 32;
        let mask = slots.len().checked_sub(1)?;
        let mut i = h as usize & mask;
        for _ in 0..slots.len() {
            let e = *slots.get(i)?;
            if e == 0 {
                return None;
            }
            if e >> 32 == tag {
                let row = (e as u32).wrapping_sub(1);
                if slice_checked(arena, ends, row as usize) == Some(id.as_bytes()) {
                    return Some(row);
                }
            }
            i = (i + 1) & mask;
        }
        None
    }
}

/// The id at `row`, or `None` when the offsets do not allow it.
#[inline]
fn slice_checked<'a>(arena: &'a [u8], ends: &[u32], row: usize) -> Option<&'a [u8]> {
    let start = match row {
        0 => 0,
        r => *ends.get(r - 1)? as usize,
    };
    arena.get(start..*ends.get(row)? as usize)
}

/// Maps customer ids to row numbers without a `String` per customer.
#[derive(Default)]
pub struct IdIndex {
    arena: Vec<u8>,
    ends: Vec<u32>,
    table: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
}

/// Returned by [`IdIndex::push`] when the id is already present, with its first row.
#[derive(Debug, PartialEq, Eq)]
pub struct DuplicateId(pub usize);

/// The data rows whose id a load did not take (a bad id, a repeat, a ragged row), in reading
/// order: turns an id's row in the index back into its data row, so a repeat names where its
/// first copy really was.
#[derive(Debug, Default)]
pub struct Skipped(Vec<usize>);

impl Skipped {
    /// Data row `row` (0-based, in reading order) took no id.
    pub fn skip(&mut self, row: usize) {
        self.0.push(row);
    }

    /// The data row (0-based) of the id at `index` in the index.
    pub fn row_of(&self, index: usize) -> usize {
        let mut row = index;
        for &s in &self.0 {
            if s > row {
                break;
            }
            row += 1;
        }
        row
    }
}

/// Why ids laid out by a binary snapshot cannot form an index.
#[derive(Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// An end offset goes backwards, past the arena, or makes an empty or over-long id.
    BadOffset(usize),
    /// An id is not UTF-8.
    NotUtf8(usize),
    /// An id repeats: `(row, first row)`.
    Duplicate(usize, usize),
    /// Bytes at the end of the arena belong to no id.
    Unused(usize),
}

impl IdIndex {
    /// An empty index sized for `customers` ids of about `id_len` bytes.
    pub fn with_capacity(customers: usize, id_len: usize) -> Self {
        Self {
            arena: Vec::with_capacity(customers * id_len),
            ends: Vec::with_capacity(customers),
            table: HashTable::with_capacity(customers),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// Appends an id as the next row; refuses a repeat so every id names one customer.
    pub fn push(&mut self, id: &str) -> Result<usize, DuplicateId> {
        let hash = self.hasher.hash_one(id.as_bytes());
        let row = self.ends.len();
        let (arena, ends, hasher) = (&self.arena, &self.ends, &self.hasher);
        match self.table.entry(
            hash,
            |&r| slice(arena, ends, r as usize) == id.as_bytes(),
            |&r| hasher.hash_one(slice(arena, ends, r as usize)),
        ) {
            hashbrown::hash_table::Entry::Occupied(first) => {
                return Err(DuplicateId(*first.get() as usize))
            }
            hashbrown::hash_table::Entry::Vacant(slot) => {
                slot.insert(row as u32);
            }
        }
        self.arena.extend_from_slice(id.as_bytes());
        // The arena is bounded by the loaders (ids ≤ 255 bytes, rows < 2^32), so this fits.
        self.ends.push(self.arena.len() as u32);
        Ok(row)
    }

    /// Builds the index over an arena and end offsets as read from a binary snapshot, in place:
    /// no copy of the ids, and one probe of the table per id (its duplicate check included).
    pub fn from_layout(arena: Vec<u8>, ends: Vec<u32>, max_id: usize) -> Result<Self, LayoutError> {
        let hasher = foldhash::fast::RandomState::default();
        let mut table: HashTable<u32> = HashTable::with_capacity(ends.len());
        let mut start = 0usize;
        for (row, &end) in ends.iter().enumerate() {
            let end = end as usize;
            if end <= start || end > arena.len() || end - start > max_id {
                return Err(LayoutError::BadOffset(row));
            }
            let id = &arena[start..end];
            if std::str::from_utf8(id).is_err() {
                return Err(LayoutError::NotUtf8(row));
            }
            let hash = hasher.hash_one(id);
            match table.entry(
                hash,
                |&r| slice(&arena, &ends, r as usize) == id,
                |&r| hasher.hash_one(slice(&arena, &ends, r as usize)),
            ) {
                hashbrown::hash_table::Entry::Occupied(first) => {
                    return Err(LayoutError::Duplicate(row, *first.get() as usize));
                }
                hashbrown::hash_table::Entry::Vacant(slot) => {
                    slot.insert(row as u32);
                }
            }
            start = end;
        }
        if start != arena.len() {
            return Err(LayoutError::Unused(arena.len() - start));
        }
        Ok(Self {
            arena,
            ends,
            table,
            hasher,
        })
    }

    /// The row of an id, if present.
    #[inline]
    pub fn get(&self, id: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(id.as_bytes());
        self.table
            .find(hash, |&r| {
                slice(&self.arena, &self.ends, r as usize) == id.as_bytes()
            })
            .copied()
    }

    /// The id stored at a row.
    pub fn id_at(&self, row: usize) -> Option<&str> {
        if row >= self.ends.len() {
            return None;
        }
        std::str::from_utf8(slice(&self.arena, &self.ends, row)).ok()
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when no id is held.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Heap bytes held by arena, offsets and table.
    pub fn bytes_held(&self) -> usize {
        self.arena.capacity() + self.ends.capacity() * 4 + self.table.allocation_size()
    }

    /// The arena and end offsets, for the binary writer.
    pub(crate) fn raw(&self) -> (&[u8], &[u32]) {
        (&self.arena, &self.ends)
    }

    /// Total bytes of all ids: the arena length, so it must stay below 4 GiB.
    pub(crate) fn arena_len(&self) -> usize {
        self.arena.len()
    }
}

#[inline]
fn slice<'a>(arena: &'a [u8], ends: &[u32], row: usize) -> &'a [u8] {
    let start = if row == 0 { 0 } else { ends[row - 1] as usize };
    &arena[start..ends[row] as usize]
}

#[cfg(test)]
mod skipped_tests {
    use super::Skipped;

    #[test]
    fn an_ids_index_turns_back_into_its_data_row_past_the_rows_that_took_none() {
        let mut s = Skipped::default();
        assert_eq!(s.row_of(0), 0, "nothing skipped: the same row");
        // Rows 0 and 2 took no id: the ids are rows 1, 3, 4, ...
        s.skip(0);
        s.skip(2);
        assert_eq!((s.row_of(0), s.row_of(1), s.row_of(2)), (1, 3, 4));
        s.skip(5);
        assert_eq!((s.row_of(2), s.row_of(3)), (4, 6));
    }
}
