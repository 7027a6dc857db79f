//! Walking rows down one tree of the [`Layout`], block by block, with the exit of each block found by
//! the [`Kernel`] chosen when the model loads.
//!
//! [`LANES`] rows are in flight at once, interleaved, so that the latency of one row's next block (a
//! load from L1 or L2, then the comparisons) hides behind the others'. A lane steps without branching:
//! a row that reaches its leaf stays on the leaf's block (it leads to itself) until its lane is
//! checked, every [`STEPS_PER_CHECK`] steps, when the leaf's fractions are added to the row's sums and
//! the lane takes the next row.

use super::layout::{Block, Layout, Row};

/// How a block's exit is computed, chosen once per machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Three comparisons per block, one after the other: any CPU.
    Scalar,
    /// Seven comparisons per block in one AVX2 compare (x86-64 with AVX2, detected at run time).
    Avx2,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            return Kernel::Avx2;
        }
        Kernel::Scalar
    }

    /// Whether this CPU can run the kernel.
    pub fn is_supported(self) -> bool {
        self == Kernel::Scalar || Kernel::detect() == Kernel::Avx2
    }

    /// The name printed by benchmarks.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Avx2 => "AVX2",
        }
    }

    /// Adds the fractions of the leaf `tree` gives each of `rows` to that row's `sums`.
    pub(super) fn walk_rows(self, layout: &Layout, tree: usize, rows: &[Row], sums: &mut [[f64; 3]]) {
        let root = layout.roots[tree];
        match self {
            // SAFETY: `Kernel::Avx2` is only used where `is_supported` holds (`RiskForest` checks).
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 if layout.narrow => unsafe { walk_rows_avx2::<false>(layout, root, rows, sums) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { walk_rows_avx2::<true>(layout, root, rows, sums) },
            _ => walk_rows::<false, false>(layout, root, rows, sums),
        }
    }

    /// The class fractions of the leaf `tree` gives `row`.
    pub(super) fn leaf_of<'a>(self, layout: &'a Layout, tree: usize, row: &Row) -> &'a [f64; 3] {
        let root = layout.roots[tree];
        let leaf: usize = match self {
            // SAFETY: as in `walk_rows`.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 if layout.narrow => unsafe { walk_one_avx2::<false>(layout, root, row) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { walk_one_avx2::<true>(layout, root, row) },
            _ => walk_one::<false, false>(layout, root, row),
        };
        &layout.leaf_values[leaf]
    }
}

/// Rows in flight through a tree at once: enough that lanes waiting for a block from L2 or L3 leave
/// others to work (32 measured 12-17% faster than 16 on a 100-tree unbounded forest); at most 32, the
/// bits of the lane masks.
pub(super) const LANES: usize = 32;
/// Steps every lane takes between two checks for leaves.
const STEPS_PER_CHECK: usize = 2;

/// The exit of `block` for `row`, by the AVX2 kernel (`WIDE`: reading all sixteen slots) or the scalar one.
#[inline(always)]
fn exit<const AVX2: bool, const WIDE: bool>(block: &Block, row: &Row) -> usize {
    #[cfg(target_arch = "x86_64")]
    if AVX2 {
        // SAFETY: `walk_rows::<true, _>` and `walk_one::<true, _>` are only instantiated inside
        // `walk_rows_avx2` and `walk_one_avx2`, which are only called where AVX2 was detected.
        return unsafe { super::exit_avx2::exit::<WIDE>(block, row) };
    }
    super::exit_scalar::exit(block, row)
}

/// [`walk_rows`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn walk_rows_avx2<const WIDE: bool>(layout: &Layout, root: u32, rows: &[Row], sums: &mut [[f64; 3]]) {
    walk_rows::<true, WIDE>(layout, root, rows, sums);
}

/// [`walk_one`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn walk_one_avx2<const WIDE: bool>(layout: &Layout, root: u32, row: &Row) -> usize {
    walk_one::<true, WIDE>(layout, root, row)
}

/// Adds one tree's leaf fractions to a row's sums.
#[inline(always)]
pub(super) fn add(sum: &mut [f64; 3], leaf: &[f64; 3]) {
    sum[0] += leaf[0];
    sum[1] += leaf[1];
    sum[2] += leaf[2];
}

/// Walks each of `rows` from block `root` to its leaf and adds the leaf's fractions to its `sums`.
#[inline(always)]
pub(super) fn walk_rows<const AVX2: bool, const WIDE: bool>(
    layout: &Layout,
    root: u32,
    rows: &[Row],
    sums: &mut [[f64; 3]],
) {
    let m = rows.len().min(sums.len());
    let Some(first) = rows.first() else { return };
    let blocks = layout.blocks.as_slice();
    let leaves = layout.leaf_count();
    // An idle lane sits on a leaf with the first row; its sums are never touched.
    let mut at = [0u32; LANES];
    let mut row_of = [0usize; LANES];
    let mut data: [&Row; LANES] = [first; LANES];
    let mut idle = 0u32;
    let mut next = 0;
    for k in 0..LANES {
        if next < m {
            (row_of[k], data[k], at[k]) = (next, &rows[next], root);
            next += 1;
        } else {
            idle |= 1 << k;
        }
    }
    const ALL: u32 = ((1u64 << LANES) - 1) as u32;
    while idle != ALL {
        for _ in 0..STEPS_PER_CHECK {
            for k in 0..LANES {
                let block = &blocks[at[k] as usize];
                at[k] = block.children[exit::<AVX2, WIDE>(block, data[k])];
            }
        }
        let mut arrived = 0u32;
        for (k, a) in at.iter().enumerate() {
            arrived |= u32::from(*a < leaves) << k;
        }
        arrived &= !idle;
        while arrived != 0 {
            let k = arrived.trailing_zeros() as usize;
            arrived &= arrived - 1;
            add(&mut sums[row_of[k]], &layout.leaf_values[at[k] as usize]);
            if next < m {
                (row_of[k], data[k], at[k]) = (next, &rows[next], root);
                next += 1;
            } else {
                idle |= 1 << k;
            }
        }
    }
}

/// Walks one row from block `root` to its leaf; returns the leaf's index in `layout.leaf_values`.
#[inline(always)]
pub(super) fn walk_one<const AVX2: bool, const WIDE: bool>(layout: &Layout, root: u32, row: &Row) -> usize {
    let leaves = layout.leaf_count();
    let mut at = root;
    while at >= leaves {
        let block = &layout.blocks[at as usize];
        at = block.children[exit::<AVX2, WIDE>(block, row)];
    }
    at as usize
}
