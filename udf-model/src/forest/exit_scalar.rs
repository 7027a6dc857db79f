//! A block's exit for one row without SIMD: the three comparisons on the row's path, one after the
//! other. The fallback where AVX2 is missing, and tested against the AVX2 kernel.

use super::layout::{Block, EXITS, Row};

/// The exit of `block` that `row` takes.
#[inline(always)]
pub(super) fn exit(block: &Block, row: &Row) -> usize {
    let mut node = 0;
    while node < EXITS - 1 {
        // Left only when `x <= t` holds: a NaN input goes right, as in scikit-learn.
        let left = row.0[block.slot(node)] <= block.thresholds[node];
        node = 2 * node + 2 - usize::from(left);
    }
    node - (EXITS - 1)
}
