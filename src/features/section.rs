//! A run of plain values a store reads: its own vector, or a range of a read-only map of a
//! file in the snapshot store (see `mapped`). Both read as a slice, so lookups are the same
//! code whichever holds the bytes.
//!
//! A mapped section's offset, length and alignment are checked once when the file is opened
//! ([`Section::mapped`]); reading it after that cannot fail, and an impossible failure reads
//! as an empty slice (a lookup then finds nothing) rather than a panic on the decision path.

use std::ops::Deref;
use std::sync::Arc;

use memmap2::Mmap;

/// Values a store holds: owned, or borrowed from a shared map kept alive by the section.
pub enum Section<T> {
    /// Values on the heap.
    Owned(Vec<T>),
    /// `len` values at byte offset `off` of a map.
    Mapped {
        /// The map, shared by every section of one file; unmapped when the last one drops.
        map: Arc<Mmap>,
        /// Byte offset of the first value (a multiple of the value's alignment).
        off: usize,
        /// Number of values.
        len: usize,
    },
}

impl<T: bytemuck::Pod> Section<T> {
    /// `len` values at byte offset `off` of `map`, if they lie inside it and are aligned.
    pub fn mapped(map: &Arc<Mmap>, off: usize, len: usize) -> Option<Self> {
        let bytes = len.checked_mul(std::mem::size_of::<T>())?;
        let slice = map.get(off..off.checked_add(bytes)?)?;
        bytemuck::try_cast_slice::<u8, T>(slice).ok()?;
        Some(Section::Mapped {
            map: map.clone(),
            off,
            len,
        })
    }

    /// Heap bytes held (a mapped section holds none: its pages belong to the page cache).
    pub fn heap_bytes(&self) -> usize {
        match self {
            Section::Owned(v) => v.capacity() * std::mem::size_of::<T>(),
            Section::Mapped { .. } => 0,
        }
    }
}

impl<T> Default for Section<T> {
    fn default() -> Self {
        Section::Owned(Vec::new())
    }
}

impl<T> From<Vec<T>> for Section<T> {
    fn from(v: Vec<T>) -> Self {
        Section::Owned(v)
    }
}

impl<T: bytemuck::Pod> Deref for Section<T> {
    type Target = [T];

    #[inline]
    fn deref(&self) -> &[T] {
        match self {
            Section::Owned(v) => v,
            Section::Mapped { map, off, len } => map
                .get(*off..*off + *len * std::mem::size_of::<T>())
                .and_then(|b| bytemuck::try_cast_slice(b).ok())
                .unwrap_or_default(),
        }
    }
}

impl<T: bytemuck::Pod> Clone for Section<T> {
    fn clone(&self) -> Self {
        match self {
            Section::Owned(v) => Section::Owned(v.clone()),
            Section::Mapped { map, off, len } => Section::Mapped {
                map: map.clone(),
                off: *off,
                len: *len,
            },
        }
    }
}

impl<T: bytemuck::Pod + std::fmt::Debug> std::fmt::Debug for Section<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: bytemuck::Pod + PartialEq> PartialEq for Section<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}
