//! Categorical splits, restated as numeric ones on an input gathered per decision.
//!
//! Owns: how a model feature reads its snapshot column ([`Codes`]: a string column's codes
//! translated to the model's category codes, a listed numeric category's index, or the value
//! itself), the sets of categorical splits, and turning every categorical split into a
//! numeric split (the walk then knows nothing of categories). Must not: allocate or panic
//! while scoring.
//!
//! **One input per distinct (feature, set).** A categorical split sends a category in its set
//! one way and the rest the other way. Its *indicator*, gathered once per predict beside the
//! numeric inputs, is 1 when the customer's category is in the set and 0 when it is not; the
//! split becomes "the in-set child when the indicator is above 0.5", and the perfect layout's
//! block compare takes it like any split. Splits with the same feature and set share their
//! input. The libraries' own rules, reproduced exactly:
//! - XGBoost (`common::Decision`): a missing value takes the default child (the indicator is
//!   NaN); a category below 0 or at 2^24 and above is "not in the set" (left); else its
//!   truncated integer is tested, and the set goes right.
//! - LightGBM (`Tree::CategoricalDecision`): NaN and negative values go right, as do values
//!   not in the set; the set goes left. Values are truncated to `int` first.
//!
//! A category the model never saw is scored as missing (see `Codes::Table`).
//!
//! **Masked splits, when the categories are few.** When every set of an ensemble holds only
//! categories below 30 (segments, plans, regions), a categorical split stays one node: its
//! input is the feature's category *code* (0..30; 30 for every other category, 31 for a
//! missing value, see [`Categorical::code_input`]), gathered once per feature, and the node
//! holds a 32-bit mask of the codes that go to its second child; the block step tests that
//! bit where a numeric split compares (`layout::cat_second`). The ensemble then reads one
//! input per categorical feature instead of one per set, so it keeps the walk that holds its
//! inputs in registers. Other ensembles take the indicators above.

use super::layout::{CatRule, CODE_MISSING, CODE_OTHER, MASK_CODES};
use super::{Flavor, MissingType, RawNode, RawTree, TreeLoadError};
use crate::features::FeatureRow;

/// First column number of the gathered indicators: above every snapshot column (at most
/// 4,096), below the 65,536 a split's column may name.
pub(super) const VIRTUAL_BASE: u32 = 1 << 15;

/// Most distinct categorical split sets an ensemble may hold.
pub(super) const MAX_SETS: usize = (u16::MAX as u32 - VIRTUAL_BASE) as usize;

/// XGBoost's `OutOfRangeCat()`: categories at or above it are invalid (go left).
const XGB_MAX_CAT: f64 = 16_777_216.0;

/// How a model feature reads its snapshot column.
#[derive(Debug, Clone, PartialEq)]
pub enum Codes {
    /// The column's value as it is: numeric features, and a numeric column the model treats
    /// as categorical with the value as its category code.
    Value,
    /// A string column: per snapshot dictionary code, the model's category code; NaN for a
    /// value the model never saw, which is scored as missing.
    Table(Box<[f32]>),
    /// A numeric column whose values the model lists as its categories (an XGBoost category
    /// column of numbers): a value's code is its position in the list; a value not listed is
    /// missing.
    Listed(Box<[f64]>),
}

impl Codes {
    /// The model's category code for a cell, NaN when missing or unseen.
    #[inline]
    fn code(&self, x: f64) -> f64 {
        match self {
            Codes::Value => x,
            Codes::Table(t) => {
                if x.is_nan() {
                    f64::NAN
                } else {
                    t.get(x as usize).map_or(f64::NAN, |&c| f64::from(c))
                }
            }
            Codes::Listed(values) => values
                .iter()
                .position(|v| *v == x)
                .map_or(f64::NAN, |i| i as f64),
        }
    }

    /// The category code XGBoost scores for a cell: a value taken as its own code is read as
    /// f32, as XGBoost reads its input; listed numbers are matched exactly, as pandas matches
    /// a category column's values to the training categories (`2.0000000000000004` is none).
    #[inline]
    fn xgboost_code(&self, row: FeatureRow<'_>, column: usize) -> f64 {
        match self {
            Codes::Listed(_) => self.code(row.f64(column)),
            _ => self.code(f64::from(row.f32(column))),
        }
    }
}

/// A model feature bound to the snapshot: its column and how it reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    /// Snapshot column.
    pub column: u32,
    /// How the column's cells become what the model compares.
    pub codes: Codes,
}

impl Feature {
    /// A numeric feature.
    pub fn value(column: u32) -> Self {
        Self {
            column,
            codes: Codes::Value,
        }
    }
}

/// One distinct categorical split set: the feature it reads and its categories as a bitset.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct CatSet {
    /// Model feature index.
    feature: u32,
    /// Bit `c` set when category `c` is in the set.
    bits: Box<[u64]>,
}

impl CatSet {
    #[inline]
    fn has(&self, c: i64) -> bool {
        usize::try_from(c).ok().is_some_and(|c| {
            self.bits
                .get(c / 64)
                .is_some_and(|w| (w >> (c % 64)) & 1 == 1)
        })
    }
}

/// The categorical side of an ensemble: the features' code maps and the split sets.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Categorical {
    /// Per model feature (empty when no split is categorical).
    features: Vec<Feature>,
    sets: Vec<CatSet>,
}

impl Categorical {
    /// See [`super::TreeEnsemble::unseen_codes`]: `(model feature, column, snapshot codes)`
    /// for each feature with at least one such code.
    pub(super) fn unseen_codes(&self) -> Vec<(usize, u32, Vec<u32>)> {
        self.features
            .iter()
            .enumerate()
            .filter_map(|(i, f)| match &f.codes {
                Codes::Table(t) => {
                    let codes: Vec<u32> = (0..t.len() as u32)
                        .filter(|&c| t[c as usize].is_nan())
                        .collect();
                    (!codes.is_empty()).then_some((i, f.column, codes))
                }
                Codes::Value | Codes::Listed(_) => None,
            })
            .collect()
    }

    /// See [`super::TreeEnsemble::listed_categories`]: `(model feature, column, the listed
    /// numbers)` for each feature whose model lists its numeric categories.
    pub(super) fn listed_categories(&self) -> Vec<(usize, u32, &[f64])> {
        self.features
            .iter()
            .enumerate()
            .filter_map(|(i, f)| match &f.codes {
                Codes::Listed(values) => Some((i, f.column, &values[..])),
                Codes::Value | Codes::Table(_) => None,
            })
            .collect()
    }

    /// The model features whose snapshot values become other category codes here than in
    /// `other` (the same file bound with other `categories`).
    pub(super) fn codes_differ(&self, other: &Categorical) -> Vec<usize> {
        // Bit for bit: a table's NaN (a value the model never saw) is the same NaN in both.
        fn same(a: &Codes, b: &Codes) -> bool {
            match (a, b) {
                (Codes::Value, Codes::Value) => true,
                (Codes::Table(x), Codes::Table(y)) => x
                    .iter()
                    .map(|v| v.to_bits())
                    .eq(y.iter().map(|v| v.to_bits())),
                (Codes::Listed(x), Codes::Listed(y)) => x
                    .iter()
                    .map(|v| v.to_bits())
                    .eq(y.iter().map(|v| v.to_bits())),
                _ => false,
            }
        }
        let n = self.features.len().max(other.features.len());
        (0..n)
            .filter(|&i| match (self.features.get(i), other.features.get(i)) {
                (Some(a), Some(b)) => !same(&a.codes, &b.codes),
                (None, None) => false,
                _ => true,
            })
            .collect()
    }

    /// Whether the ensemble has no categorical split: its inputs are then read without
    /// asking, per input, whether one is a category code or an indicator.
    pub(super) fn is_empty(&self) -> bool {
        self.features.is_empty() && self.sets.is_empty()
    }

    /// Whether every categorical split's set fits a mask (categories below 30).
    pub(super) fn fits_masks(trees: &[RawTree]) -> bool {
        trees.iter().flat_map(|t| &t.nodes).all(|n| match n {
            RawNode::Categorical { categories, .. } => categories.iter().all(|&c| c < MASK_CODES),
            _ => true,
        })
    }

    /// A categorical split as a masked one (`None` for other nodes, or categories beyond the
    /// masks): the child a missing value takes first, per the library's rules.
    pub(super) fn cat_rule(flavor: Flavor, node: &RawNode) -> Option<CatRule> {
        let RawNode::Categorical {
            categories,
            in_set,
            not_in_set,
            missing_in_set,
            ..
        } = node
        else {
            return None;
        };
        if categories.iter().any(|&c| c >= MASK_CODES) {
            return None;
        }
        let (first, second) = match flavor {
            // XGBoost: a missing value takes the default child; other categories, invalid
            // ones included, go left (not in the set).
            Flavor::XgBoost if *missing_in_set => (*in_set, *not_in_set),
            // LightGBM: NaN goes with the categories not in the set (its code is "other").
            _ => (*not_in_set, *in_set),
        };
        let mut mask = 0u32;
        for code in 0..MASK_CODES {
            let child = if categories.contains(&code) {
                *in_set
            } else {
                *not_in_set
            };
            if child == second && first != second {
                mask |= 1 << code;
            }
        }
        if *not_in_set == second && first != second {
            mask |= 1 << CODE_OTHER;
        }
        // A missing value takes the first child: bit CODE_MISSING stays clear.
        Some(CatRule {
            first,
            second,
            mask,
        })
    }

    /// The category code of `column` for masked splits: 0..30 as the library reads the
    /// category, 30 for any other (invalid, beyond every set, and LightGBM's NaN), 31 for a
    /// value XGBoost treats as missing.
    #[inline]
    pub(super) fn code_input(&self, column: usize, row: FeatureRow<'_>, flavor: Flavor) -> f64 {
        let Some(f) = self.features.iter().find(|f| f.column as usize == column) else {
            return f64::from(CODE_OTHER);
        };
        let code = |c: f64| {
            if c >= f64::from(MASK_CODES) {
                CODE_OTHER
            } else {
                c as u32
            }
        };
        f64::from(match flavor {
            Flavor::XgBoost => {
                let c = f.codes.xgboost_code(row, column);
                if c.is_nan() {
                    CODE_MISSING
                } else if !(0.0..XGB_MAX_CAT).contains(&c) {
                    CODE_OTHER
                } else {
                    code(c)
                }
            }
            Flavor::LightGbm { .. } => {
                let c = f.codes.code(row.f64(column));
                if c.is_nan() || (c as i64) < 0 {
                    CODE_OTHER
                } else {
                    code((c as i64) as f64)
                }
            }
        })
    }

    /// Snapshot column of a gathered indicator (`VIRTUAL_BASE + set`).
    pub(super) fn column_of(&self, virtual_column: u32) -> Option<u32> {
        let set = self.sets.get((virtual_column - VIRTUAL_BASE) as usize)?;
        Some(self.features.get(set.feature as usize)?.column)
    }

    /// The indicator of set `virtual_column - VIRTUAL_BASE` for a row: 1.0 in the set, 0.0
    /// not, NaN (XGBoost only) missing.
    #[inline]
    pub(super) fn indicator(
        &self,
        virtual_column: usize,
        row: FeatureRow<'_>,
        flavor: Flavor,
    ) -> f64 {
        let Some(set) = self.sets.get(virtual_column - VIRTUAL_BASE as usize) else {
            return f64::NAN;
        };
        let Some(f) = self.features.get(set.feature as usize) else {
            return f64::NAN;
        };
        let col = f.column as usize;
        match flavor {
            Flavor::XgBoost => {
                let c = f.codes.xgboost_code(row, col);
                if c.is_nan() {
                    f64::NAN
                } else if !(0.0..XGB_MAX_CAT).contains(&c) {
                    0.0
                } else {
                    f64::from(u8::from(set.has(c as i64)))
                }
            }
            Flavor::LightGbm { .. } => {
                let c = f.codes.code(row.f64(col));
                // `static_cast<int>` truncates toward zero; NaN and negatives go right.
                if c.is_nan() || (c as i64) < 0 {
                    0.0
                } else {
                    f64::from(u8::from(set.has(c as i64)))
                }
            }
        }
    }

    /// Replaces every categorical split of `trees` by a numeric split on its set's
    /// indicator; returns the trees and the columns to build them with (the features'
    /// columns, then one virtual column per set).
    pub(super) fn restate(
        flavor: Flavor,
        trees: &[RawTree],
        features: &[Feature],
        masked: bool,
    ) -> Result<(Self, Vec<RawTree>, Vec<u32>), TreeLoadError> {
        let mut cat = Categorical::default();
        let n = features.len() as u32;
        let mut any_categorical = false;
        let mut out = Vec::with_capacity(trees.len());
        for tree in trees {
            let mut nodes = Vec::with_capacity(tree.nodes.len());
            for (i, node) in tree.nodes.iter().enumerate() {
                let RawNode::Categorical {
                    feature,
                    categories,
                    in_set,
                    not_in_set,
                    missing_in_set,
                } = node
                else {
                    if let RawNode::Split { feature, .. } = node {
                        if features
                            .get(*feature as usize)
                            .is_some_and(|f| matches!(f.codes, Codes::Table(_)))
                        {
                            return Err(TreeLoadError::format(
                                format!("{} node {i}", tree.label),
                                format!(
                                    "a numeric split on feature {feature}, whose snapshot column \
                                     holds strings"
                                ),
                            ));
                        }
                    }
                    nodes.push(node.clone());
                    continue;
                };
                if *feature >= n {
                    return Err(TreeLoadError::format(
                        format!("{} node {i}", tree.label),
                        format!("feature index {feature} is out of range ({n} features)"),
                    ));
                }
                any_categorical = true;
                if masked {
                    nodes.push(node.clone());
                    continue;
                }
                let set = cat.set_of(*feature, categories, &tree.label, i)?;
                let virtual_feature = n + set;
                // The in-set child when the indicator is above 0.5.
                nodes.push(match flavor {
                    // x < 0.5 goes left: the not-in-set child is "left"; missing (NaN)
                    // takes the default.
                    Flavor::XgBoost => RawNode::Split {
                        feature: virtual_feature,
                        threshold: 0.5,
                        left: *not_in_set,
                        right: *in_set,
                        default_left: !missing_in_set,
                        missing: MissingType::NaN,
                    },
                    // x <= 0.5 goes left; the indicator is never NaN here.
                    Flavor::LightGbm { .. } => RawNode::Split {
                        feature: virtual_feature,
                        threshold: 0.5,
                        left: *not_in_set,
                        right: *in_set,
                        default_left: true,
                        missing: MissingType::None,
                    },
                });
            }
            out.push(RawTree {
                label: tree.label.clone(),
                nodes,
                allowed_unreachable: tree.allowed_unreachable,
            });
        }
        let mut columns: Vec<u32> = features.iter().map(|f| f.column).collect();
        columns.extend((0..cat.sets.len() as u32).map(|s| VIRTUAL_BASE + s));
        if any_categorical {
            cat.features = features.to_vec();
        }
        Ok((cat, out, columns))
    }

    /// The index of a (feature, categories) set, added when new.
    fn set_of(
        &mut self,
        feature: u32,
        categories: &[u32],
        label: &str,
        node: usize,
    ) -> Result<u32, TreeLoadError> {
        // Sets come from the model file: bound their size before allocating bits for them.
        const MAX_CATEGORY: u32 = 1 << 20;
        let top = categories.iter().copied().max().unwrap_or(0);
        if top >= MAX_CATEGORY {
            return Err(TreeLoadError::format(
                format!("{label} node {node}"),
                format!("category {top} is beyond {MAX_CATEGORY}"),
            ));
        }
        let mut bits = vec![0u64; top as usize / 64 + 1];
        for &c in categories {
            bits[c as usize / 64] |= 1 << (c % 64);
        }
        let set = CatSet {
            feature,
            bits: bits.into_boxed_slice(),
        };
        if let Some(i) = self.sets.iter().position(|s| *s == set) {
            return Ok(i as u32);
        }
        if self.sets.len() >= MAX_SETS {
            return Err(TreeLoadError::format(
                label,
                format!("more than {MAX_SETS} distinct categorical split sets"),
            ));
        }
        self.sets.push(set);
        Ok(self.sets.len() as u32 - 1)
    }

    /// Heap bytes held.
    pub(super) fn bytes_held(&self) -> usize {
        let codes: usize = self
            .features
            .iter()
            .map(|f| match &f.codes {
                Codes::Value => 0,
                Codes::Table(t) => t.len() * 4,
                Codes::Listed(v) => v.len() * 8,
            })
            .sum();
        codes
            + self.features.capacity() * std::mem::size_of::<Feature>()
            + self
                .sets
                .iter()
                .map(|s| s.bits.len() * 8 + 24)
                .sum::<usize>()
    }
}
