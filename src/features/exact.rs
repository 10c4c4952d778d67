//! The exact values behind the f32 row: what a column held that f32 could not.
//!
//! A snapshot keeps every value as the f32 nearest to it (what logistic scorers and XGBoost
//! read; XGBoost itself casts its input to f32). LightGBM and eligibility rules compare in
//! f64, so a value given with more precision than f32 holds (an `arpu_30d` of 85.21, a
//! `loyalty_points` of 2710.2932) can land on the other side of a threshold lying between the
//! f32 and the f64 (a rule `arpu_30d le 85.21` on the customer whose value it is).
//!
//! For such values the store keeps, beside the f32, its *residual*: how many f64 steps (ULPs)
//! the source's f64 lies from that f32 (`f64 bits = bits of (f32 as f64) + residual`). Half an
//! f32 step is 2^28 f64 steps, so the residual fits an i32 and the pair reproduces the f64 bit
//! for bit: 8 bytes for a value that needs them, as much as an f64, with the f32 row every
//! other reader uses left as it is. Only columns holding at least one such value carry
//! residuals (row-major, `rows x exact columns`); integer-valued and f32-exact columns cost
//! nothing more than before. Values below f32's normal range (|v| < 1.2e-38) keep only their
//! f32: LightGBM reads every |x| <= 1e-35 as 0, and XGBoost reads the f32.
//!
//! Must not: change the f32 values, allocate on lookups, or accept a residual that does not
//! round back to its f32 (a damaged binary snapshot is refused, not misread).

use super::section::Section;

/// `slot_of` entry of a column without residuals.
const NO_SLOT: u32 = u32::MAX;

/// The f32 kept for `v` and its residual (0 when the f32 is `v`, or `v` is below f32's normal
/// range); the f32 is infinite when `v` is beyond f32's range, which loaders refuse.
#[inline]
pub fn split_f64(v: f64) -> (f32, i32) {
    let x = v as f32;
    if !x.is_finite() || v.abs() < f64::from(f32::MIN_POSITIVE) {
        return (x, 0);
    }
    let k = v.to_bits() as i64 - f64::from(x).to_bits() as i64;
    // |k| <= 2^29 for every normal f32 (half an f32 step, in the finer f64 steps below it).
    (x, i32::try_from(k).unwrap_or(0))
}

/// The f64 a kept f32 and its residual stand for (the inverse of [`split_f64`]).
///
/// Wrapping: no pair [`split_f64`] makes comes near the ends of the bit range, but a damaged
/// binary snapshot may hand in any pair (say -0.0 with a negative residual), and
/// `ExactColumns::check` must refuse it, not overflow on it.
#[inline]
pub fn join_f64(x: f32, residual: i32) -> f64 {
    let bits = (f64::from(x).to_bits() as i64).wrapping_add(i64::from(residual));
    f64::from_bits(bits as u64)
}

/// The residuals of a snapshot's inexact columns, row-major; empty when every value is exact
/// in f32.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExactColumns {
    /// Snapshot columns that carry residuals, ascending.
    columns: Box<[u32]>,
    /// `rows x columns.len()` residuals, row-major (owned, or in a mapped file).
    residuals: Section<i32>,
}

impl ExactColumns {
    /// Builds from parts (the binary reader); [`ExactColumns::check`] validates them against
    /// the store.
    pub(super) fn from_parts(columns: Vec<u32>, residuals: impl Into<Section<i32>>) -> Self {
        Self {
            columns: columns.into_boxed_slice(),
            residuals: residuals.into(),
        }
    }

    /// Columns that carry residuals, ascending.
    pub fn columns(&self) -> &[u32] {
        &self.columns
    }

    /// All residuals, row-major (the binary writer).
    pub(super) fn residuals(&self) -> &[i32] {
        &self.residuals
    }

    /// True when every value is exact in f32.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Heap bytes held.
    pub fn bytes_held(&self) -> usize {
        self.residuals.heap_bytes() + self.columns.len() * 4
    }

    /// Checks the parts against the f32 values they belong to (`rows x width`, row-major):
    /// columns ascending and in range, one residual per row and column, and every residual
    /// rounding back to its own f32 as a finite value. Returns `slot_of` (per snapshot column,
    /// its position among the exact columns).
    pub(super) fn check(&self, values: &[f32], width: usize) -> Result<Box<[u32]>, String> {
        let slot_of = self.slot_of(values.len(), width)?;
        let n = self.columns.len();
        for (r, ks) in self.residuals.chunks_exact(n.max(1)).enumerate() {
            for (&k, &c) in ks.iter().zip(self.columns.iter()) {
                let x = values[r * width + c as usize];
                if k == 0 {
                    continue;
                }
                let v = join_f64(x, k);
                if !(x.is_finite() && v.is_finite() && (v as f32).to_bits() == x.to_bits()) {
                    return Err(format!(
                        "row {r}, column {c}: residual {k} does not belong to the value {x}"
                    ));
                }
            }
        }
        Ok(slot_of)
    }

    /// The shape half of [`ExactColumns::check`] (columns ascending and in range, one residual
    /// per row and column) without reading the residuals: what a mapped file, whose residuals
    /// its checksum vouches for, is checked for at load.
    pub(super) fn slot_of(&self, cells: usize, width: usize) -> Result<Box<[u32]>, String> {
        let n = self.columns.len();
        if n == 0 {
            return if self.residuals.is_empty() {
                Ok(Box::default())
            } else {
                Err("residuals without exact columns".into())
            };
        }
        let rows = cells.checked_div(width).unwrap_or(0);
        if self.residuals.len() != rows * n {
            return Err(format!(
                "{rows} rows x {n} exact columns needs {} residuals, got {}",
                rows * n,
                self.residuals.len()
            ));
        }
        let mut slot_of = vec![NO_SLOT; width];
        for (slot, w) in self.columns.iter().enumerate() {
            if self.columns.get(slot + 1).is_some_and(|next| next <= w) {
                return Err("exact columns are not ascending".into());
            }
            match slot_of.get_mut(*w as usize) {
                Some(s) => *s = slot as u32,
                None => return Err(format!("exact column {w} is out of range ({width})")),
            }
        }
        Ok(slot_of.into_boxed_slice())
    }
}

/// Collects residuals while a loader pushes values row by row, keeping only the columns that
/// turn out to need them; what a loader of f64 data uses beside its `Vec<f32>`.
#[derive(Debug)]
pub struct ExactBuilder {
    /// Per column: its residuals so far, from the first row on, once one was non-zero.
    columns: Vec<Option<Vec<i32>>>,
    /// Rows completed before the current one.
    rows: usize,
}

impl ExactBuilder {
    /// A builder for rows of `width` columns.
    pub fn new(width: usize) -> Self {
        Self {
            columns: vec![None; width],
            rows: 0,
        }
    }

    /// Splits `v` (the value of `column` in the current row) and records its residual;
    /// returns the f32 to keep. Columns are pushed in order, then [`ExactBuilder::end_row`].
    #[inline]
    pub fn push(&mut self, column: usize, v: f64) -> f32 {
        let (x, k) = split_f64(v);
        match self.columns.get_mut(column) {
            Some(Some(ks)) => ks.push(k),
            Some(slot @ None) if k != 0 => {
                let mut ks = Vec::with_capacity(self.rows * 2 + 16);
                ks.resize(self.rows, 0);
                ks.push(k);
                *slot = Some(ks);
            }
            _ => {}
        }
        x
    }

    /// Closes the current row.
    pub fn end_row(&mut self) {
        self.rows += 1;
    }

    /// The residuals of the columns that need them, row-major.
    pub fn finish(self) -> ExactColumns {
        let rows = self.rows;
        let kept: Vec<(u32, Vec<i32>)> = self
            .columns
            .into_iter()
            .enumerate()
            .filter_map(|(c, ks)| Some((c as u32, ks?)))
            .collect();
        let mut residuals = Vec::with_capacity(rows * kept.len());
        for r in 0..rows {
            residuals.extend(kept.iter().map(|(_, ks)| ks.get(r).copied().unwrap_or(0)));
        }
        ExactColumns {
            columns: kept.iter().map(|(c, _)| *c).collect(),
            residuals: residuals.into(),
        }
    }
}

/// One customer's features: the f32 row, and the exact f64 of any value f32 does not hold.
///
/// Copy, two slices and an index table: passing it costs what passing `&[f32]` did. Built from
/// a bare `&[f32]` it reads every value as exact.
#[derive(Debug, Clone, Copy)]
pub struct FeatureRow<'a> {
    values: &'a [f32],
    /// Per snapshot column, its slot in `residuals` or `NO_SLOT`; empty when none has one.
    slot_of: &'a [u32],
    residuals: &'a [i32],
}

impl<'a> FeatureRow<'a> {
    /// A row with its residuals (the store's lookups).
    pub(super) fn new(values: &'a [f32], slot_of: &'a [u32], residuals: &'a [i32]) -> Self {
        Self {
            values,
            slot_of,
            residuals,
        }
    }

    /// The f32 values, NaN for missing: what logistic scorers read.
    #[inline]
    pub fn values(&self) -> &'a [f32] {
        self.values
    }

    /// The f32 of a column; NaN when missing or out of range.
    #[inline]
    pub fn f32(&self, column: usize) -> f32 {
        self.values.get(column).copied().unwrap_or(f32::NAN)
    }

    /// The value of a column exactly as the source gave it; NaN when missing or out of range.
    #[inline]
    pub fn f64(&self, column: usize) -> f64 {
        let x = self.f32(column);
        match self.slot_of.get(column) {
            Some(&s) if s != NO_SLOT => {
                join_f64(x, self.residuals.get(s as usize).map_or(0, |k| *k))
            }
            _ => f64::from(x),
        }
    }
}

impl<'a> From<&'a [f32]> for FeatureRow<'a> {
    fn from(values: &'a [f32]) -> Self {
        Self::new(values, &[], &[])
    }
}

impl<'a> From<&'a Vec<f32>> for FeatureRow<'a> {
    fn from(values: &'a Vec<f32>) -> Self {
        Self::new(values, &[], &[])
    }
}

impl<'a, const N: usize> From<&'a [f32; N]> for FeatureRow<'a> {
    fn from(values: &'a [f32; N]) -> Self {
        Self::new(values, &[], &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_join_reproduce_every_f64_bit_for_bit() {
        let cases = [
            85.21,
            -85.21,
            0.133151,
            2710.2932,
            1e-35,
            1.0000000180025096e-35,
            f64::from(f32::MAX) * 0.999_999_9,
            3.4e38,
            1.0,
            0.0,
            -0.0,
            16_777_217.0,
            1.5e-38,
        ];
        for v in cases {
            let (x, k) = split_f64(v);
            assert_eq!(x, v as f32);
            assert_eq!(join_f64(x, k).to_bits(), v.to_bits(), "{v:e}");
        }
        // Below f32's normal range the f32 is kept alone.
        assert_eq!(split_f64(1e-40), (1e-40_f64 as f32, 0));
        assert_eq!(split_f64(1e-300), (0.0, 0));
        // A value exact in f32 needs no residual.
        assert_eq!(split_f64(0.5).1, 0);
        assert!(split_f64(f64::NAN).0.is_nan());
    }

    #[test]
    fn builder_keeps_only_columns_that_need_residuals() {
        let mut b = ExactBuilder::new(3);
        let mut values = Vec::new();
        for row in [[1.0, 2.0, 0.5], [3.0, 85.21, 7.0], [4.0, 1.0, 0.1]] {
            for (c, v) in row.into_iter().enumerate() {
                values.push(b.push(c, v));
            }
            b.end_row();
        }
        let exact = b.finish();
        assert_eq!(exact.columns(), &[1, 2]);
        assert_eq!(exact.residuals().len(), 6);
        let slot_of = exact.check(&values, 3).expect("consistent");
        let rows: Vec<FeatureRow<'_>> = (0..3)
            .map(|r| {
                FeatureRow::new(
                    &values[r * 3..r * 3 + 3],
                    &slot_of,
                    &exact.residuals()[r * 2..r * 2 + 2],
                )
            })
            .collect();
        assert_eq!(rows[1].f64(1), 85.21);
        assert_eq!(rows[2].f64(2), 0.1);
        assert_eq!(rows[2].f64(0), 4.0);
        assert!(rows[0].f64(9).is_nan());
        assert_eq!(rows[1].f32(1), 85.21_f32);
        // A residual that does not round back to its f32 is refused.
        let bad = ExactColumns::from_parts(vec![1], vec![0, 1 << 30, 0]);
        assert!(bad
            .check(&values, 3)
            .unwrap_err()
            .contains("row 1, column 1"));
        let unordered = ExactColumns::from_parts(vec![2, 1], vec![0; 6]);
        assert!(unordered.check(&values, 3).is_err());
    }
}
