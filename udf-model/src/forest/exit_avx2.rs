//! A block's exit for one row with AVX2: one permute brings the row's input of each of the seven
//! nodes into place (two and a blend for a row of sixteen slots), one compare decides them all, and
//! the mask of nodes going right picks the exit from a table. Chosen at run time
//! (`is_x86_feature_detected!`); `exit_scalar` is the fallback.

use std::arch::x86_64::{
    _CMP_NLE_UQ, _mm256_blendv_ps, _mm256_castsi256_ps, _mm256_cmp_ps, _mm256_load_ps, _mm256_movemask_ps,
    _mm256_permutevar8x32_ps, _mm256_set1_epi32, _mm256_setr_epi32, _mm256_slli_epi32, _mm256_srlv_epi32,
};

use super::layout::{Block, EXIT_OF_MASK, Row, SLOT_BITS};

/// The exit of `block` that `row` takes; `WIDE` when the block may read slots 8 to 15.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn exit<const WIDE: bool>(block: &Block, row: &Row) -> usize {
    let s = SLOT_BITS as i32;
    // Each lane shifts node `i`'s slot to the bottom; the permute reads only its low three bits.
    let slots = _mm256_srlv_epi32(
        _mm256_set1_epi32(block.features as i32),
        _mm256_setr_epi32(0, s, 2 * s, 3 * s, 4 * s, 5 * s, 6 * s, 7 * s),
    );
    // SAFETY: `Row` and `Block` (64 bytes each) are 64-byte aligned, so a row's halves are 32-byte
    // aligned; a block's first 32 bytes (`repr(C)`) are its seven thresholds and its slots, read as an
    // eighth lane whose result the table ignores, through a pointer to the whole block.
    unsafe {
        let low = _mm256_permutevar8x32_ps(_mm256_load_ps(row.0.as_ptr()), slots);
        let values = if WIDE {
            let high = _mm256_permutevar8x32_ps(_mm256_load_ps(row.0.as_ptr().add(8)), slots);
            // Bit 3 of a lane's slot picks the upper half: shifted to the sign bit, which the blend reads.
            _mm256_blendv_ps(low, high, _mm256_castsi256_ps(_mm256_slli_epi32::<28>(slots)))
        } else {
            low
        };
        let thresholds = _mm256_load_ps(std::ptr::from_ref(block).cast::<f32>());
        // Not-less-or-equal, unordered: a NaN input goes right, as in scikit-learn.
        let right = _mm256_cmp_ps::<_CMP_NLE_UQ>(values, thresholds);
        usize::from(EXIT_OF_MASK[(_mm256_movemask_ps(right) & 0xff) as usize])
    }
}
