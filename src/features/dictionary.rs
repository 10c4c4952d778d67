//! String columns: the distinct values of one column, and the codes the rows hold instead.
//!
//! A string column costs what a numeric one does: each cell holds its value's *code* (the
//! value's position in the column's dictionary) as an f32 in the same row-major values, NaN
//! when missing, so a row stays one `&[f32]` for every reader. Codes are below
//! [`MAX_DISTINCT`] (65,536), which f32 holds exactly. The dictionary is sorted by bytes, so
//! the same values give the same codes whatever the row order and a name is found by binary
//! search when a model is compiled (never on a request).
//!
//! Owns: [`Dictionary`], the load-time [`DictBuilder`] and the cardinality limit. Must not:
//! look strings up per request (rules and trees compare codes resolved at compile time).

use std::collections::HashMap;

/// Most distinct values a string column may hold: ids and free text do not belong in a
/// snapshot, and every code stays exact in f32 (and fits 16 bits).
pub const MAX_DISTINCT: usize = 65_536;

/// The distinct values of one string column, sorted by bytes; a code is an index into it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dictionary {
    /// The values back to back.
    arena: Box<[u8]>,
    /// End offset of each value in `arena`.
    ends: Box<[u32]>,
}

impl Dictionary {
    /// Builds from sorted, distinct, non-empty UTF-8 values laid out back to back (the binary
    /// reader), checking all of that.
    pub(super) fn from_parts(arena: Vec<u8>, ends: Vec<u32>) -> Result<Self, String> {
        if ends.len() > MAX_DISTINCT {
            return Err(format!(
                "{} distinct values, more than {MAX_DISTINCT}",
                ends.len()
            ));
        }
        if ends.last().map_or(0, |e| *e as usize) != arena.len() {
            return Err("dictionary offsets do not cover its bytes".into());
        }
        std::str::from_utf8(&arena).map_err(|_| "dictionary is not UTF-8".to_string())?;
        let d = Self {
            arena: arena.into_boxed_slice(),
            ends: ends.into_boxed_slice(),
        };
        let mut prev: Option<&[u8]> = None;
        let mut start = 0u32;
        for (i, &end) in d.ends.iter().enumerate() {
            if end <= start || end as usize > d.arena.len() {
                return Err(format!("dictionary value {i} is empty or misplaced"));
            }
            let v = &d.arena[start as usize..end as usize];
            if std::str::from_utf8(v).is_err() {
                return Err(format!("dictionary value {i} splits a character"));
            }
            if prev.is_some_and(|p| p >= v) {
                return Err(format!("dictionary value {i} is out of order or repeated"));
            }
            prev = Some(v);
            start = end;
        }
        Ok(d)
    }

    /// Number of distinct values.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when the column holds no value at all (every cell missing).
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The value of a code.
    pub fn get(&self, code: u32) -> Option<&str> {
        let end = *self.ends.get(code as usize)? as usize;
        let start = match code {
            0 => 0,
            c => self.ends[c as usize - 1] as usize,
        };
        // Checked UTF-8 on every path that builds a dictionary, cut at value boundaries.
        std::str::from_utf8(&self.arena[start..end]).ok()
    }

    /// The code of a value, if the column holds it (binary search; compile time only).
    pub fn code(&self, value: &str) -> Option<u32> {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.get(mid as u32)?.as_bytes().cmp(value.as_bytes()) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid as u32),
            }
        }
        None
    }

    /// The value a cell holds: `None` when missing (NaN) or not a code of this dictionary.
    #[inline]
    pub fn value_of(&self, cell: f32) -> Option<&str> {
        if cell >= 0.0 && cell.fract() == 0.0 {
            self.get(cell as u32)
        } else {
            None
        }
    }

    /// Values in code order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len() as u32).filter_map(|c| self.get(c))
    }

    /// The raw parts (the binary writer).
    pub(super) fn raw(&self) -> (&[u8], &[u32]) {
        (&self.arena, &self.ends)
    }

    /// Heap bytes held.
    pub fn bytes_held(&self) -> usize {
        self.arena.len() + self.ends.len() * 4
    }
}

/// Refused by [`DictBuilder::push`]: the column would hold more than [`MAX_DISTINCT`] values.
#[derive(Debug, PartialEq, Eq)]
pub struct TooManyValues;

impl std::fmt::Display for TooManyValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "more than {MAX_DISTINCT} distinct values: ids and free text do not belong in a \
             snapshot (keep categories such as a segment, a plan or a region; mark such a \
             column `name:skip`, in a CSV header or as a Parquet column's name, to leave it \
             out)"
        )
    }
}

/// Collects a string column's values while a loader reads rows, coding them in first-seen
/// order; [`DictBuilder::finish`] sorts them and says how to renumber the cells.
#[derive(Debug, Default)]
pub struct DictBuilder {
    codes: HashMap<Box<str>, u32, foldhash::fast::RandomState>,
    values: Vec<Box<str>>,
}

impl DictBuilder {
    /// The provisional code of `value`, adding it when new.
    #[inline]
    pub fn push(&mut self, value: &str) -> Result<u32, TooManyValues> {
        if let Some(&c) = self.codes.get(value) {
            return Ok(c);
        }
        if self.values.len() == MAX_DISTINCT {
            return Err(TooManyValues);
        }
        let c = self.values.len() as u32;
        self.values.push(value.into());
        self.codes.insert(value.into(), c);
        Ok(c)
    }

    /// The sorted dictionary, and per provisional code its final one.
    pub fn finish(self) -> (Dictionary, Vec<u32>) {
        let mut order: Vec<u32> = (0..self.values.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| {
            self.values[a as usize]
                .as_bytes()
                .cmp(self.values[b as usize].as_bytes())
        });
        let mut remap = vec![0u32; order.len()];
        let mut arena = Vec::new();
        let mut ends = Vec::with_capacity(order.len());
        for (code, &first_seen) in order.iter().enumerate() {
            remap[first_seen as usize] = code as u32;
            arena.extend_from_slice(self.values[first_seen as usize].as_bytes());
            ends.push(arena.len() as u32);
        }
        let dict = Dictionary {
            arena: arena.into_boxed_slice(),
            ends: ends.into_boxed_slice(),
        };
        (dict, remap)
    }
}

/// Finishes each text column's builder (numeric columns are `None`) and renumbers that column
/// of row-major `values` (`width` columns) to the sorted dictionary's codes: the last step of
/// every loader that codes text as it reads.
pub(super) fn finish_columns(
    builders: Vec<Option<DictBuilder>>,
    values: &mut [f32],
    width: usize,
) -> Vec<Option<Dictionary>> {
    builders
        .into_iter()
        .enumerate()
        .map(|(c, b)| {
            b.map(|b| {
                let (d, remap) = b.finish();
                renumber(values, width, c, &remap);
                d
            })
        })
        .collect()
}

/// Renumbers column `column` of row-major `values` (`width` columns) from provisional codes
/// to final ones; missing cells stay NaN.
fn renumber(values: &mut [f32], width: usize, column: usize, remap: &[u32]) {
    for cell in values.iter_mut().skip(column).step_by(width.max(1)) {
        if !cell.is_nan() {
            *cell = remap.get(*cell as usize).map_or(f32::NAN, |&c| c as f32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sorts_and_renumbers() {
        let mut b = DictBuilder::default();
        let cells: Vec<f32> = ["gold", "bronze", "gold", "silver"]
            .iter()
            .map(|v| b.push(v).unwrap() as f32)
            .collect();
        let (d, remap) = b.finish();
        assert_eq!(d.iter().collect::<Vec<_>>(), ["bronze", "gold", "silver"]);
        let mut values = vec![0.0, cells[0], 0.0, cells[1], 0.0, f32::NAN, 0.0, cells[3]];
        renumber(&mut values, 2, 1, &remap);
        assert_eq!(values[1], 1.0);
        assert_eq!(values[3], 0.0);
        assert!(values[5].is_nan());
        assert_eq!(values[7], 2.0);
        assert_eq!(d.code("gold"), Some(1));
        assert_eq!(d.code("gold "), None);
        assert_eq!(d.code(""), None);
        assert_eq!(d.value_of(2.0), Some("silver"));
        assert_eq!(d.value_of(f32::NAN), None);
        assert_eq!(d.value_of(0.5), None);
        assert_eq!(d.value_of(3.0), None);
        let (arena, ends) = d.raw();
        assert_eq!(
            Dictionary::from_parts(arena.to_vec(), ends.to_vec()).unwrap(),
            d
        );
    }

    #[test]
    fn refuses_too_many_values_and_bad_parts() {
        let mut b = DictBuilder::default();
        for i in 0..MAX_DISTINCT {
            b.push(&i.to_string()).unwrap();
        }
        assert_eq!(b.push("0"), Ok(0));
        assert_eq!(b.push("one more"), Err(TooManyValues));
        assert!(TooManyValues.to_string().contains("ids and free text"));
        assert!(Dictionary::from_parts(b"ba".to_vec(), vec![1, 2]).is_err());
        assert!(Dictionary::from_parts(b"aa".to_vec(), vec![1, 2]).is_err());
        assert!(Dictionary::from_parts(b"ab".to_vec(), vec![0, 2]).is_err());
        assert!(Dictionary::from_parts(b"ab".to_vec(), vec![1, 3]).is_err());
        assert!(Dictionary::from_parts("é".as_bytes().to_vec(), vec![1, 2]).is_err());
        assert!(Dictionary::from_parts(b"ab".to_vec(), vec![1, 2]).is_ok());
    }
}
