//! Customer id → row index, built once per snapshot.
//!
//! Ids are stored back to back in one arena with their end offsets; the hash table holds only
//! row numbers (4 bytes each) and compares against the arena, so the index costs about
//! `id bytes + 9 bytes` per customer and a lookup by `&str` never allocates.

use std::hash::BuildHasher;

use hashbrown::HashTable;

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
        let (arena, ends) = (&self.arena, &self.ends);
        if let Some(&row) = self
            .table
            .find(hash, |&r| slice(arena, ends, r as usize) == id.as_bytes())
        {
            return Err(DuplicateId(row as usize));
        }
        let row = self.ends.len();
        self.arena.extend_from_slice(id.as_bytes());
        // The arena is bounded by the loaders (ids ≤ 255 bytes, rows < 2^32), so this fits.
        self.ends.push(self.arena.len() as u32);
        let (arena, ends, hasher) = (&self.arena, &self.ends, &self.hasher);
        self.table.insert_unique(hash, row as u32, |&r| {
            hasher.hash_one(slice(arena, ends, r as usize))
        });
        Ok(row)
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
