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
