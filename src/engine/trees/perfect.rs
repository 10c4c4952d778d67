//! The perfect layout of an ensemble and its walk: trees padded to one depth, splits in
//! cache-line blocks of three levels, leaves apart.
//!
//! Owns: padding linked trees into blocks ([`Perfect::from_linked`]) and walking them
//! ([`Perfect::for_each_leaf`]). Must not: allocate or panic on a walk (every index was proven
//! in range when the layout was built), or know either library's split rule (the splits
//! arrive restated as "the first child unless `input > threshold`", see `layout`).
//!
//! **Blocks.** Every tree is padded to the ensemble's depth `D`, without child pointers; a leaf
//! above depth `D` becomes pad splits whose every descendant leaf holds its value, so where a
//! pad sends a value does not matter. The levels are cut into block levels of at most three
//! (`D = 6` is 3 + 3, `D = 5` is 3 + 2, `D = 4` is 2 + 2); a block holds the splits of one
//! subtree of its block level breadth-first (children of `j` at `2j + 1` and `2j + 2`), with
//! thresholds and input slots side by side: 8 f32 thresholds and 8 u32 slots are one 64-byte
//! line, so a path through a depth-6 XGBoost tree reads two lines of splits and one of
//! leaves. A tree's blocks are its top block, then the blocks of the next block level left to
//! right, and so on.
//!
//! **Walk.** Trees are walked a chunk at a time, block level by block level: every tree of the
//! chunk takes one block step (reading the block its path has reached) before any takes the
//! next, so the steps of different trees are independent and the core overlaps their loads
//! (and, where the ensemble is out of cache, their misses). Inside a block, a step is three
//! branch-free turns `j = 2j + 1 + (x > t)`. On x86-64 the eight comparisons of an f32 block
//! are made at once and a table turns their mask into the leaf reached. Where the ensemble
//! reads at most 32 inputs they sit in registers and each split's is picked without a memory
//! read: with AVX-512 by one permute across two registers, with AVX2 by a permute within
//! each of four registers of eight and blends between them (`vpgatherdd`, much slower on
//! AMD's cores, only for more inputs). Which one is chosen once per walk
//! ([`Threshold::prepare`]). Leaves are handed over in tree order, so
//! sums round as the library's do. Measured against other layouts and walks: BENCHMARKS.md.

use super::layout::{cat_second, Linked, CAT, LEAF};

/// Bit of a block slot marking a masked categorical split (its threshold holds the mask's
/// bits). Permutes read only the slot's low bits, so it costs them nothing; a gather and the
/// scalar step clear it first.
const CAT_SLOT: u32 = 1 << 31;

/// Split slots of a block: the seven splits of three levels and a pad.
const BLOCK_SLOTS: usize = 8;

/// Most levels in one block (seven splits).
const BLOCK_LEVELS: u32 = 3;

/// Deepest ensemble given the perfect layout (2^10 leaves a tree).
const MAX_PERFECT_DEPTH: u32 = 10;

/// Most block levels (`MAX_PERFECT_DEPTH` / `BLOCK_LEVELS`, rounded up).
const MAX_BLOCK_LEVELS: usize = 4;

/// Trees walked together, block level by block level; their state sits in one small array.
const CHUNK: usize = 128;

/// Where a chunk's walk keeps each tree's progress: the leaf (or block) its path has reached.
type State = [u32; CHUNK];

/// The splits of one block: one cache line for f32 thresholds, two for f64.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, align(64))]
pub(super) struct Block<T> {
    /// Adjusted thresholds, breadth-first: the first child unless `input > t[j]`.
    pub t: [T; BLOCK_SLOTS],
    /// Index into the gathered inputs of each split (0 for pads, which read any input).
    pub s: [u32; BLOCK_SLOTS],
}

impl<T: Default + Copy> Default for Block<T> {
    fn default() -> Self {
        Self {
            t: [T::default(); BLOCK_SLOTS],
            s: [0; BLOCK_SLOTS],
        }
    }
}

/// The perfect layout (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Perfect<T, L> {
    /// `stride` blocks per tree, tree after tree; block `q` of block level `k` of a tree is
    /// its block `offsets[k] + q`.
    blocks: Vec<Block<T>>,
    /// `2^depth` leaves per tree, tree after tree, left to right.
    leaves: Vec<L>,
    stride: usize,
    /// Levels of each block level (1 to 3).
    heights: [u32; MAX_BLOCK_LEVELS],
    offsets: [usize; MAX_BLOCK_LEVELS],
    block_levels: usize,
    depth: u32,
    n_trees: usize,
    /// Gathered inputs every walk is handed (slots are below it).
    n_inputs: usize,
    /// Whether any block holds a masked categorical split: only then do the steps test for
    /// one, so numeric ensembles walk as if categorical splits did not exist.
    masked: bool,
}

/// One block step of a chunk's walk: which trees, which block level.
#[derive(Clone, Copy)]
pub(super) struct Step<'a, T> {
    blocks: &'a [Block<T>],
    /// Block index of the first tree's first block of this block level.
    first: usize,
    /// Blocks per tree.
    stride: usize,
    /// Levels in this block level's blocks.
    h: u32,
    /// Trees in the chunk.
    n: usize,
    /// Whether the blocks may hold masked categorical splits ([`Perfect`]'s `masked`).
    masked: bool,
}

/// What a block step compares: f32 (XGBoost) or f64 (LightGBM) thresholds and inputs.
pub(super) trait Threshold: Copy + Default + PartialOrd + Into<f64> {
    /// A categorical split's mask held where a threshold goes (bit for bit).
    fn from_mask(mask: u32) -> Self;

    /// The mask [`Threshold::from_mask`] holds.
    fn mask(self) -> u32;

    /// The gathered inputs as the block steps read them, prepared once per walk.
    type Inputs<'x>;

    /// Readies the inputs for [`Threshold::descend`], choosing how the steps read them.
    fn prepare(xs: &[Self]) -> Self::Inputs<'_>;

    /// One block step for the first `n` trees of a chunk: tree `i` reads block
    /// `first + i * stride + q[i]` and `q[i]` gains the `h` turns taken in it.
    fn descend(step: Step<'_, Self>, q: &mut State, xs: &Self::Inputs<'_>);
}

/// A [`Threshold`] whose steps read the inputs as they are, one turn at a time.
macro_rules! scalar_threshold {
    ($t:ty) => {
        impl Threshold for $t {
            type Inputs<'x> = &'x [$t];

            fn from_mask(mask: u32) -> Self {
                <$t>::from_bits(mask.into())
            }

            fn mask(self) -> u32 {
                self.to_bits() as u32
            }

            fn prepare(xs: &[$t]) -> &[$t] {
                xs
            }

            #[inline(always)]
            fn descend(step: Step<'_, $t>, q: &mut State, xs: &&[$t]) {
                descend_scalar(step, q, xs);
            }
        }
    };
}

scalar_threshold!(f64);

#[cfg(target_arch = "x86_64")]
impl Threshold for f32 {
    type Inputs<'x> = simd::Inputs<'x>;

    fn from_mask(mask: u32) -> Self {
        f32::from_bits(mask)
    }

    fn mask(self) -> u32 {
        self.to_bits()
    }

    #[inline(always)]
    fn prepare(xs: &[f32]) -> simd::Inputs<'_> {
        simd::Inputs::new(xs)
    }

    #[inline(always)]
    fn descend(step: Step<'_, f32>, q: &mut State, xs: &simd::Inputs<'_>) {
        simd::descend(step, q, xs);
    }
}

#[cfg(not(target_arch = "x86_64"))]
scalar_threshold!(f32);

/// [`Threshold::descend`] one turn at a time.
#[inline(always)]
fn descend_scalar<T: Threshold>(step: Step<'_, T>, q: &mut State, xs: &[T]) {
    if step.masked {
        descend_scalar_as::<T, true>(step, q, xs);
    } else {
        descend_scalar_as::<T, false>(step, q, xs);
    }
}

/// [`descend_scalar`], testing for masked categorical splits only when `MASKED`.
#[inline(always)]
fn descend_scalar_as<T: Threshold, const MASKED: bool>(step: Step<'_, T>, q: &mut State, xs: &[T]) {
    let Step {
        blocks,
        first,
        stride,
        h,
        n,
        ..
    } = step;
    for i in 0..n.min(CHUNK) {
        let b = &blocks[first + i * stride + q[i] as usize];
        let mut j = 0;
        for _ in 0..h {
            let (slot, t) = (b.s[j], b.t[j]);
            let x = xs[(slot & !CAT_SLOT) as usize];
            let second = if MASKED && slot & CAT_SLOT != 0 {
                cat_second(x.into(), t.mask())
            } else {
                x > t
            };
            j = 2 * j + 1 + usize::from(second);
        }
        q[i] = (q[i] << h) | (j + 1 - (1 << h)) as u32;
    }
}

impl<T: Threshold, L: Copy> Perfect<T, L> {
    /// Pads the linked trees to their deepest depth, or `None` when that depth or the padding
    /// (more than `growth` times the linked nodes) is beyond what pays.
    ///
    /// `n_inputs` is how many gathered inputs the splits read (every node's `column` is below).
    pub fn from_linked(
        linked: &Linked,
        depth: u32,
        n_inputs: usize,
        growth: usize,
        threshold: impl Fn(f64) -> T,
        leaf: impl Fn(f64) -> L,
    ) -> Option<Self> {
        if depth > MAX_PERFECT_DEPTH {
            return None;
        }
        let n_trees = linked.roots.len();
        let inner = (1_usize << depth) - 1;
        let block_levels = depth.div_ceil(BLOCK_LEVELS) as usize;
        let (mut heights, mut offsets, mut starts) = (
            [0; MAX_BLOCK_LEVELS],
            [0; MAX_BLOCK_LEVELS],
            [0; MAX_BLOCK_LEVELS],
        );
        let mut stride = 0;
        let mut above = 0;
        for k in 0..block_levels {
            // Levels spread evenly, the top block levels taking the remainder.
            let (base, extra) = (depth / block_levels as u32, depth % block_levels as u32);
            heights[k] = base + u32::from((k as u32) < extra);
            offsets[k] = stride;
            starts[k] = above;
            stride += 1 << above;
            above += heights[k];
        }
        // One block a tree (depth <= 3) is small whatever the padding.
        let padded = n_trees * (stride * BLOCK_SLOTS + inner + 1);
        if block_levels > 1 && padded > growth.saturating_mul(linked.nodes.len()) {
            return None;
        }
        // Where breadth-first position `pos` at depth `d` lives in a tree's blocks.
        let place = |pos: usize, d: u32| {
            let k = (0..block_levels)
                .rev()
                .find(|&k| starts[k] <= d)
                .unwrap_or(0);
            let r = d - starts[k];
            let in_level = pos + 1 - (1 << d);
            let block = in_level >> r;
            (
                offsets[k] + block,
                (1 << r) - 1 + (in_level & ((1 << r) - 1)),
            )
        };
        let mut blocks = vec![Block::default(); n_trees * stride];
        let mut leaves = Vec::with_capacity(n_trees * (inner + 1));
        let mut stack = Vec::new();
        for (t, &root) in linked.roots.iter().enumerate() {
            let base = leaves.len();
            leaves.resize(base + inner + 1, leaf(0.0));
            let tree_blocks = &mut blocks[t * stride..(t + 1) * stride];
            // (linked index, breadth-first position, depth)
            stack.push((root as usize, 0_usize, 0_u32));
            while let Some((i, pos, d)) = stack.pop() {
                let n = linked.nodes[i];
                if n.flags & LEAF != 0 {
                    // Every leaf position under `pos` holds this value; pads above stay
                    // default (their direction cannot change the leaf reached).
                    let span = 1_usize << (depth - d);
                    let first = (pos + 1) * span - 1 - inner;
                    leaves[base + first..base + first + span].fill(leaf(n.value));
                } else {
                    let (b, j) = place(pos, d);
                    if n.flags & CAT != 0 {
                        tree_blocks[b].t[j] = T::from_mask(n.value.to_bits() as u32);
                        tree_blocks[b].s[j] = u32::from(n.column) | CAT_SLOT;
                    } else {
                        tree_blocks[b].t[j] = threshold(n.value);
                        tree_blocks[b].s[j] = u32::from(n.column);
                    }
                    stack.push((n.right as usize, 2 * pos + 2, d + 1));
                    stack.push((i + 1, 2 * pos + 1, d + 1));
                }
            }
        }
        let masked = blocks.iter().any(|b| b.s.iter().any(|s| s & CAT_SLOT != 0));
        Some(Self {
            blocks,
            leaves,
            stride,
            heights,
            offsets,
            block_levels,
            depth,
            n_trees,
            n_inputs,
            masked,
        })
    }

    /// Calls `add` with each tree's leaf value, in tree order.
    ///
    /// `xs` holds the gathered inputs; it must be as long as the `n_inputs` the layout was
    /// built for (a shorter one is a caller's bug: every leaf is then handed over as the
    /// first leaf of its tree, with a debug assertion).
    #[inline(always)]
    pub fn for_each_leaf(&self, xs: &[T], mut add: impl FnMut(L)) {
        let n_leaves = 1_usize << self.depth;
        if self.depth == 0 || xs.len() < self.n_inputs {
            debug_assert!(
                self.depth == 0,
                "{} inputs, {} needed",
                xs.len(),
                self.n_inputs
            );
            (0..self.n_trees).for_each(|t| add(self.leaves[t * n_leaves]));
            return;
        }
        let xs = T::prepare(xs);
        let mut q: State = [0; CHUNK];
        for first in (0..self.n_trees).step_by(CHUNK) {
            let n = CHUNK.min(self.n_trees - first);
            q[..n].fill(0);
            for k in 0..self.block_levels {
                let step = Step {
                    blocks: &self.blocks,
                    first: first * self.stride + self.offsets[k],
                    stride: self.stride,
                    h: self.heights[k],
                    n,
                    masked: self.masked,
                };
                T::descend(step, &mut q, &xs);
            }
            for (i, &at) in q[..n].iter().enumerate() {
                add(self.leaves[(first + i) * n_leaves + at as usize]);
            }
        }
    }

    /// Heap bytes held.
    pub fn bytes_held(&self) -> usize {
        self.blocks.capacity() * std::mem::size_of::<Block<T>>()
            + self.leaves.capacity() * std::mem::size_of::<L>()
    }
}

/// The x86-64 block steps: a block's eight comparisons at once (inputs picked from registers
/// by AVX-512 or AVX2 permutes, or gathered), the mask turned into the leaf reached by a
/// table.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd {
    use std::arch::x86_64::{
        __m256, __m256i, _mm256_and_si256, _mm256_blendv_ps, _mm256_castps_si256,
        _mm256_castsi256_ps, _mm256_cmp_ps, _mm256_cmp_ps_mask, _mm256_cvttps_epi32,
        _mm256_i32gather_ps, _mm256_load_ps, _mm256_load_si256, _mm256_loadu_ps, _mm256_min_epu32,
        _mm256_movemask_ps, _mm256_permutevar8x32_ps, _mm256_set1_epi32, _mm256_slli_epi32,
        _mm256_sllv_epi32, _mm512_castps512_ps256, _mm512_castsi256_si512, _mm512_loadu_ps,
        _mm512_permutex2var_ps, _CMP_GT_OQ,
    };
    use std::sync::OnceLock;

    use super::{Block, State, Step, CHUNK};

    /// How the block steps read the gathered inputs, chosen once per walk by what the CPU
    /// has and how many inputs there are.
    pub enum Inputs<'x> {
        /// Up to 32 inputs in two AVX-512 registers, picked by a permute.
        Wide([f32; 32]),
        /// Up to 32 inputs in four AVX2 registers (two when the flag is false: at most 16),
        /// picked by permutes within each and blends between them.
        Lanes([f32; 32], bool),
        /// Gathered from memory with AVX2; the number is the last input's index.
        Gather(&'x [f32], u32),
        /// One turn at a time.
        Scalar(&'x [f32]),
    }

    impl<'x> Inputs<'x> {
        /// Chooses the fastest way this CPU has for `xs`.
        #[inline(always)]
        pub fn new(xs: &'x [f32]) -> Self {
            static FEATURES: OnceLock<(bool, bool)> = OnceLock::new();
            let (avx512, avx2) = *FEATURES.get_or_init(|| {
                (
                    std::arch::is_x86_feature_detected!("avx512f")
                        && std::arch::is_x86_feature_detected!("avx512vl"),
                    std::arch::is_x86_feature_detected!("avx2"),
                )
            });
            let table = || {
                let mut table = [0.0; 32];
                table[..xs.len()].copy_from_slice(xs);
                table
            };
            match xs.len().checked_sub(1).map(u32::try_from) {
                Some(_) if avx512 && xs.len() <= 32 => Self::Wide(table()),
                Some(_) if avx2 && xs.len() <= 32 => Self::Lanes(table(), xs.len() > 16),
                Some(Ok(last)) if avx2 => Self::Gather(xs, last),
                _ => Self::Scalar(xs),
            }
        }
    }

    /// [`super::Threshold::descend`] for f32, as `xs` was prepared.
    #[inline(always)]
    pub fn descend(step: Step<'_, f32>, q: &mut State, xs: &Inputs<'_>) {
        if step.masked {
            descend_as::<true>(step, q, xs);
        } else {
            descend_as::<false>(step, q, xs);
        }
    }

    /// [`descend`], testing for masked categorical splits only when `MASKED`.
    #[inline(always)]
    fn descend_as<const MASKED: bool>(step: Step<'_, f32>, q: &mut State, xs: &Inputs<'_>) {
        match xs {
            // SAFETY: `Inputs::new` chose these only where the CPU has AVX-512 F and VL, or
            // AVX2.
            Inputs::Wide(table) => unsafe { descend_avx512::<MASKED>(step, q, table) },
            Inputs::Lanes(table, true) => unsafe { descend_lanes::<true, MASKED>(step, q, table) },
            Inputs::Lanes(table, false) => unsafe {
                descend_lanes::<false, MASKED>(step, q, table)
            },
            Inputs::Gather(xs, last) => unsafe { descend_avx2::<MASKED>(step, q, xs, *last) },
            Inputs::Scalar(xs) => super::descend_scalar(step, q, xs),
        }
    }

    /// Leaf reached in a block of `h` levels, by the mask of its splits' comparisons
    /// (bit `j` set when split `j` sends the input to its second child).
    const fn leaf_tables() -> [[u8; 128]; 4] {
        let mut tables = [[0; 128]; 4];
        let mut h = 1;
        while h <= 3 {
            let mut m = 0;
            while m < 128 {
                let mut j = 0;
                let mut step = 0;
                while step < h {
                    j = 2 * j + 1 + ((m >> j) & 1);
                    step += 1;
                }
                tables[h][m] = (j + 1 - (1 << h)) as u8;
                m += 1;
            }
            h += 1;
        }
        tables
    }

    static LEAF_OF_MASK: [[u8; 128]; 4] = leaf_tables();

    /// The loop both SIMD steps share: tree `i` of the chunk moves from its block to the leaf
    /// the block's comparison mask (`mask_of`) selects. Inlined into each caller, so it is
    /// compiled with the caller's target features.
    #[inline(always)]
    fn step_blocks(step: Step<'_, f32>, q: &mut State, mask_of: impl Fn(&Block<f32>) -> u32) {
        let Step {
            blocks,
            first,
            stride,
            h,
            n,
            ..
        } = step;
        let table = &LEAF_OF_MASK[h as usize & 3];
        for i in 0..n.min(CHUNK) {
            let b = &blocks[first + i * stride + q[i] as usize];
            q[i] = (q[i] << h) | u32::from(table[mask_of(b) as usize & 127]);
        }
    }

    /// The loop of [`descend`] for up to 32 inputs, held in two registers: a split's input is
    /// picked by a permute instead of a gather from memory.
    #[target_feature(enable = "avx512f,avx512vl")]
    fn descend_avx512<const MASKED: bool>(step: Step<'_, f32>, q: &mut State, xs: &[f32; 32]) {
        // SAFETY: `xs` is 32 floats, two unaligned 64-byte loads inside it.
        let (lo, hi) = unsafe {
            (
                _mm512_loadu_ps(xs.as_ptr()),
                _mm512_loadu_ps(xs.as_ptr().add(16)),
            )
        };
        step_blocks(step, q, |b| {
            let (slots, t) = block_vectors(b);
            // The permute reads registers only (the slot's low five bits pick the input).
            let x = _mm512_castps512_ps256(_mm512_permutex2var_ps(
                lo,
                _mm512_castsi256_si512(slots),
                hi,
            ));
            let above = u32::from(_mm256_cmp_ps_mask::<_CMP_GT_OQ>(x, t));
            if MASKED {
                with_masks(above, x, slots, t)
            } else {
                above
            }
        });
    }

    /// A block's comparison mask with its masked categorical splits' bits in place: where a
    /// slot carries [`super::CAT_SLOT`], bit `code` of the threshold's bits (the input holds
    /// the code, 0..=31, as a float) says whether the split sends it to its second child.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn with_masks(above: u32, x: __m256, slots: __m256i, t: __m256) -> u32 {
        // No branch on whether the block holds one: in a categorical ensemble about half
        // the blocks do, a branch the predictor would miss.
        let cat = _mm256_movemask_ps(_mm256_castsi256_ps(slots)) as u32;
        // Shifting left by 31 - code puts bit `code` in the sign, which movemask reads.
        let codes = _mm256_cvttps_epi32(x);
        let by = _mm256_and_si256(
            _mm256_set1_epi32(31),
            std::arch::x86_64::_mm256_sub_epi32(_mm256_set1_epi32(31), codes),
        );
        let bits = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_sllv_epi32(
            _mm256_castps_si256(t),
            by,
        ))) as u32;
        (above & !cat) | (bits & cat)
    }

    /// A block's slots and thresholds, one 32-byte vector each.
    #[target_feature(enable = "avx")]
    #[inline]
    fn block_vectors(b: &Block<f32>) -> (__m256i, __m256) {
        // SAFETY: `Block` is 64-byte aligned, so both 32-byte loads are aligned and inside `b`.
        unsafe {
            (
                _mm256_load_si256(b.s.as_ptr().cast::<__m256i>()),
                _mm256_load_ps(b.t.as_ptr()),
            )
        }
    }

    /// Bit `k` set when lane `k` of `x` is above that of `t` (false for NaN), as AVX2 masks.
    #[target_feature(enable = "avx")]
    #[inline]
    fn above(x: __m256, t: __m256) -> u32 {
        _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(x, t)) as u32
    }

    /// Up to 32 inputs as four AVX2 registers of eight, for [`pick`].
    #[target_feature(enable = "avx2")]
    #[inline]
    fn lanes(xs: &[f32; 32]) -> [__m256; 4] {
        // SAFETY: four unaligned 32-byte loads inside the 32 floats of `xs`.
        unsafe { [0, 8, 16, 24].map(|at| _mm256_loadu_ps(xs.as_ptr().add(at))) }
    }

    /// Input `slots[k]` of `regs` in lane `k` (only the low four bits of each slot are read
    /// unless `FOUR`, then five): a permute within each register of eight, then blends
    /// between registers on bit 3 (and bit 4) of the slot.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn pick<const FOUR: bool>(regs: &[__m256; 4], slots: __m256i) -> __m256 {
        let bit3 = _mm256_castsi256_ps(_mm256_slli_epi32::<28>(slots));
        let low = _mm256_blendv_ps(
            _mm256_permutevar8x32_ps(regs[0], slots),
            _mm256_permutevar8x32_ps(regs[1], slots),
            bit3,
        );
        if !FOUR {
            return low;
        }
        let high = _mm256_blendv_ps(
            _mm256_permutevar8x32_ps(regs[2], slots),
            _mm256_permutevar8x32_ps(regs[3], slots),
            bit3,
        );
        _mm256_blendv_ps(
            low,
            high,
            _mm256_castsi256_ps(_mm256_slli_epi32::<27>(slots)),
        )
    }

    /// The loop of [`descend`] for up to 32 inputs held in AVX2 registers ([`pick`]).
    #[target_feature(enable = "avx2")]
    fn descend_lanes<const FOUR: bool, const MASKED: bool>(
        step: Step<'_, f32>,
        q: &mut State,
        xs: &[f32; 32],
    ) {
        let regs = lanes(xs);
        step_blocks(step, q, |b| {
            let (slots, t) = block_vectors(b);
            let x = pick::<FOUR>(&regs, slots);
            if MASKED {
                with_masks(above(x, t), x, slots, t)
            } else {
                above(x, t)
            }
        });
    }

    /// The loop of [`descend`], compiled for AVX2; `last` is `xs.len() - 1`.
    #[target_feature(enable = "avx2")]
    fn descend_avx2<const MASKED: bool>(step: Step<'_, f32>, q: &mut State, xs: &[f32], last: u32) {
        let last = _mm256_set1_epi32(last as i32);
        let index = _mm256_set1_epi32(!super::CAT_SLOT as i32);
        step_blocks(step, q, |b| {
            let (slots, t) = block_vectors(b);
            let slots_only = if MASKED {
                _mm256_and_si256(slots, index)
            } else {
                slots
            };
            let at = _mm256_min_epu32(slots_only, last);
            // SAFETY: the slots are clamped to `last` (unsigned), so the gather reads inside
            // `xs`.
            let x = unsafe { _mm256_i32gather_ps::<4>(xs.as_ptr(), at) };
            if MASKED {
                with_masks(above(x, t), x, slots, t)
            } else {
                above(x, t)
            }
        });
    }
}

#[cfg(test)]
mod tests;
