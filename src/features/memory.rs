//! What a feature snapshot costs in memory, as operators size nodes by it: the bytes mapped
//! from the snapshot store (shared by every replica mapping the same file), how many of those
//! are resident now, the heap the store holds itself, and the process's anonymous memory
//! (what no other process can share).
//!
//! Read from `/proc/self/smaps` (the mapping's own entry) and `/proc/self/smaps_rollup` on
//! request, off the decision path; on a system without `/proc` the figures read 0 or `None`.
//! It reads and keeps no state.

use super::FeatureStore;
use crate::metrics::prom::{Collect, Exposition, Kind};

/// A snapshot's memory, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotMemory {
    /// Bytes of the snapshot-store file mapped (0 when the snapshot is held on the heap).
    pub mapped_bytes: u64,
    /// Of those, bytes resident in this process's map now (page cache, shared).
    pub resident_bytes: u64,
    /// This process's proportional share of the resident bytes (PSS: resident / sharers).
    pub proportional_bytes: u64,
    /// Heap the store holds (all of it when loaded into memory; dictionaries and names when
    /// mapped).
    pub heap_bytes: u64,
    /// The whole process's anonymous memory (`Anonymous` of `/proc/self/smaps_rollup`).
    pub anonymous_bytes: Option<u64>,
}

impl SnapshotMemory {
    /// The figures of `store` in this process now.
    pub fn of(store: &FeatureStore) -> Self {
        let (resident, pss) = store
            .mapping
            .as_ref()
            .and_then(|m| {
                let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
                mapping_rss(&smaps, m.map.as_ptr() as usize)
            })
            .unwrap_or_default();
        SnapshotMemory {
            mapped_bytes: store.mapped_bytes() as u64,
            resident_bytes: resident,
            proportional_bytes: pss,
            heap_bytes: store.bytes_held() as u64,
            anonymous_bytes: std::fs::read_to_string("/proc/self/smaps_rollup")
                .ok()
                .and_then(|r| kb_field(&r, "Anonymous:")),
        }
    }
}

impl Collect for SnapshotMemory {
    fn collect(&self, out: &mut Exposition) {
        out.family(
            "nextbest_feature_snapshot_bytes",
            Kind::Gauge,
            "The serving feature snapshot's memory: mapped (file bytes mapped from the snapshot \
             store, shared by the replicas mapping it), resident (of those, in memory now), \
             proportional (this process's share of resident), heap (held by this process).",
        )
        .sample(&[("kind", "mapped")], self.mapped_bytes)
        .sample(&[("kind", "resident")], self.resident_bytes)
        .sample(&[("kind", "proportional")], self.proportional_bytes)
        .sample(&[("kind", "heap")], self.heap_bytes);
        if let Some(anon) = self.anonymous_bytes {
            out.family(
                "nextbest_process_anonymous_bytes",
                Kind::Gauge,
                "Anonymous memory of the whole process (no other process can share it).",
            )
            .sample(&[], anon);
        }
    }
}

/// `Rss` and `Pss` of the mapping starting at `start` in an smaps listing, in bytes.
fn mapping_rss(smaps: &str, start: usize) -> Option<(u64, u64)> {
    let head = format!("{start:x}-");
    let at = smaps
        .lines()
        .position(|l| l.starts_with(&head) || l.starts_with(&format!("{start:08x}-")))?;
    let body: String = smaps
        .lines()
        .skip(at + 1)
        .take_while(|l| !l.split_whitespace().next().is_some_and(is_range))
        .collect::<Vec<_>>()
        .join("\n");
    Some((
        kb_field(&body, "Rss:")?,
        kb_field(&body, "Pss:").unwrap_or(0),
    ))
}

/// True for the address range that starts an smaps entry (`7f00-7f80`).
fn is_range(word: &str) -> bool {
    word.split_once('-').is_some_and(|(a, b)| {
        !a.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_hexdigit())
    })
}

/// A `Name:   123 kB` field, in bytes.
fn kb_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kb: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_mapping_entry_and_not_its_neighbours() {
        let smaps = "\
55d0-55e0 r--p 00000000 fd:01 1 /bin/x
Rss:                   8 kB
Pss:                   8 kB
7f00-7f80 r--s 00000000 fd:01 2 /data/snapshots/0a0b0c0d-1024.nbf
Size:                512 kB
Rss:                 256 kB
Pss:                  64 kB
7f80-7f90 rw-p 00000000 00:00 0
Rss:                  12 kB
Pss:                  12 kB
";
        assert_eq!(mapping_rss(smaps, 0x7f00), Some((256 * 1024, 64 * 1024)));
        assert_eq!(mapping_rss(smaps, 0x1234), None);
        assert_eq!(
            kb_field("Rss: 1 kB\nAnonymous:   300 kB\n", "Anonymous:"),
            Some(300 * 1024)
        );
    }

    #[test]
    fn an_owned_store_reports_its_heap_and_maps_nothing() {
        let s = FeatureStore::from_csv_bytes(b"customer_id,a\nC1,1\nC2,2\n", "x.csv").unwrap();
        let m = SnapshotMemory::of(&s);
        assert_eq!((m.mapped_bytes, m.resident_bytes), (0, 0));
        assert_eq!(m.heap_bytes, s.bytes_held() as u64);
        assert!(m.heap_bytes > 0);
    }
}
