//! The forest's memory layout, built once when the model loads: every tree cut into blocks of three
//! levels (up to seven nodes), each block one 64-byte cache line.
//!
//! A block holds its nodes' `f32` thresholds and input slots in breadth-first order, so that one AVX2
//! permute fetches the seven inputs and one compare decides all seven nodes (`exit_avx2`), or three
//! dependent comparisons walk the path (`exit_scalar`); either gives one of the block's eight exits,
//! and the exit's child is the next block: one load. A branch that ends above the block's third level
//! fills every exit below it with the same child, so the comparisons under it (padding) never matter.
//! A tree's blocks are in breadth-first order, so the levels every row visits share cache lines.
//!
//! Leaves are blocks too: one per distinct class-fraction vector of the forest (deep trees end in pure
//! leaves, so there are few), at the start of the array, each leading back to itself. A row that has
//! reached its leaf can so keep stepping without a branch, and a block index below the leaf count
//! says which fractions it reached.
//!
//! Nothing here depends on the six vitals: a node names one of [`ROW_SLOTS`] row slots (a nibble).
//! A forest whose nodes read only the first eight (the six-vital model) is `narrow`: its rows' first
//! half fills one AVX2 register; a wider one (the trend model) takes two and a blend. Missing-value
//! routing needs no other node format: a missing input holds a value below every threshold
//! (`inputs::MISSING`).

use std::collections::HashMap;
use std::collections::VecDeque;

use super::TreeArrays;

/// Tree levels in one block: seven comparisons fill one AVX2 register of eight `f32`.
const LEVELS: usize = 3;
/// Nodes of a block.
const NODES: usize = (1 << LEVELS) - 1;
/// Exits of a block (children slots at its fourth level).
pub(super) const EXITS: usize = 1 << LEVELS;
/// Input slots of a row: two AVX2 registers of `f32`, all a node's four bits can name.
pub(crate) const ROW_SLOTS: usize = 16;
/// Slots of a narrow forest's rows: one AVX2 register.
pub(super) const NARROW_SLOTS: usize = 8;
/// Bits of a node's slot in [`Block::features`].
pub(super) const SLOT_BITS: u32 = 4;
/// Marks a leaf child while trees are laid out, before leaf blocks get their final place.
const LEAF_TAG: u32 = 1 << 31;

/// Up to seven nodes of one tree: three levels, breadth-first (slot `s` has children `2s+1`, `2s+2`).
/// Its thresholds and slots share the first 32 bytes, so one load brings them into an AVX2 register
/// (the eighth lane, the slots' bits, is compared too and ignored).
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct Block {
    /// `x <= threshold` goes left; the file's threshold rounded down to `f32` (see [`threshold_f32`]).
    pub(super) thresholds: [f32; NODES],
    /// Row slot of node `s` in bits `4s..4s+4`.
    pub(super) features: u32,
    /// Block index of the child at each exit (a leaf's block for a leaf).
    pub(super) children: [u32; EXITS],
}

impl Block {
    /// A block of padding whose exits all lead to `child`.
    const fn leading_to(child: u32) -> Block {
        Block { thresholds: [0.0; NODES], features: 0, children: [child; EXITS] }
    }

    /// The row slot node `slot` tests.
    #[inline(always)]
    pub(super) fn slot(&self, node: usize) -> usize {
        (self.features >> (SLOT_BITS * node as u32)) as usize % ROW_SLOTS
    }
}

/// One row gathered for scoring: its inputs as `f32` in their slots, each half aligned for one AVX2 load.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct Row(pub(super) [f32; ROW_SLOTS]);

/// Exit of a block given the bit mask of its nodes that go right (bit `s` for slot `s`; bit 7, the
/// eighth lane, ignored): the path from slot 0 reads three of the seven bits.
pub(super) const EXIT_OF_MASK: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut mask = 0;
    while mask < 256 {
        let mut slot = 0;
        let mut level = 0;
        while level < LEVELS {
            slot = 2 * slot + 1 + ((mask >> slot) & 1);
            level += 1;
        }
        table[mask] = (slot - NODES) as u8;
        mask += 1;
    }
    table
};

/// The largest `f32` not above `t`: with it, `(x as f32) <= t32` decides as `(x as f32) as f64 <= t`,
/// scikit-learn's comparison of a float32 input with a float64 threshold.
pub(super) fn threshold_f32(t: f64) -> f32 {
    let f = t as f32;
    if f as f64 > t { f.next_down() } else { f }
}

/// Every tree of a forest in blocks.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    /// The leaves' blocks (one per entry of `leaf_values`), then each tree's blocks.
    pub(super) blocks: Vec<Block>,
    /// Root block of each tree, in the file's tree order.
    pub(super) roots: Vec<u32>,
    /// Distinct class fractions of the leaves, in [`crate::rubric::RiskLevel::ALL`] order; block `i`
    /// below their count is the leaf of fractions `i`.
    pub(super) leaf_values: Vec<[f64; 3]>,
    /// Every node reads one of the first [`NARROW_SLOTS`] slots.
    pub(super) narrow: bool,
}

/// Distinct leaf fractions, numbered as they are met.
#[derive(Default)]
struct LeafValues {
    index: HashMap<[u64; 3], u32>,
    values: Vec<[f64; 3]>,
}

impl LeafValues {
    /// The number of `fractions`, new or not.
    fn number(&mut self, fractions: [f64; 3]) -> u32 {
        let values = &mut self.values;
        *self.index.entry(fractions.map(f64::to_bits)).or_insert_with(|| {
            values.push(fractions);
            (values.len() - 1) as u32
        })
    }
}

impl Layout {
    /// Lays out `trees`, which the caller has validated (children in range, every node reached once,
    /// leaves with three fractions, inner features below [`ROW_SLOTS`]). `class_slot[i]` is the
    /// position in `RiskLevel::ALL` of the file's class `i`.
    pub(super) fn build(trees: &[TreeArrays], class_slot: &[usize]) -> Layout {
        let mut leaves = LeafValues::default();
        // Tree blocks from 0, leaves tagged; both move to their final numbers below.
        let mut blocks: Vec<Block> = Vec::new();
        let mut roots = Vec::with_capacity(trees.len());
        for tree in trees {
            let mut leaf_of = |node: usize| {
                let mut fractions = [0.0; 3];
                for (file_pos, p) in tree.value[node].iter().enumerate() {
                    fractions[class_slot[file_pos]] = *p;
                }
                LEAF_TAG | leaves.number(fractions)
            };
            roots.push(blocks.len() as u32);
            blocks.push(Block::leading_to(0));
            let mut queue = VecDeque::from([(blocks.len() - 1, 0usize)]);
            while let Some((at, node)) = queue.pop_front() {
                let mut block = Block::leading_to(0);
                fill(tree, &mut block, 0, 0, node);
                for child in block.children.iter_mut() {
                    let node = *child as usize;
                    *child = if tree.feature[node] < 0 {
                        leaf_of(node)
                    } else {
                        queue.push_back((blocks.len(), node));
                        blocks.push(Block::leading_to(0));
                        (blocks.len() - 1) as u32
                    };
                }
                blocks[at] = block;
            }
        }
        let first_tree_block = leaves.values.len() as u32;
        let mut all: Vec<Block> = (0..first_tree_block).map(Block::leading_to).collect();
        all.extend(blocks.into_iter().map(|mut block| {
            for child in block.children.iter_mut() {
                *child = if *child & LEAF_TAG != 0 { *child & !LEAF_TAG } else { *child + first_tree_block };
            }
            block
        }));
        let narrow = trees.iter().all(|t| t.feature.iter().all(|f| (*f as i64) < NARROW_SLOTS as i64));
        Layout {
            narrow,
            blocks: all,
            roots: roots.into_iter().map(|r| r + first_tree_block).collect(),
            leaf_values: leaves.values,
        }
    }

    /// Bytes of blocks and leaf fractions.
    pub(super) fn bytes(&self) -> usize {
        self.blocks.len() * size_of::<Block>() + self.leaf_values.len() * size_of::<[f64; 3]>()
    }

    /// Block indices below this are leaves.
    #[inline(always)]
    pub(super) fn leaf_count(&self) -> u32 {
        self.leaf_values.len() as u32
    }
}

/// Puts file node `node` at `slot` (on `level`) of `block` with its descendants down to the block's
/// last level; the exits get the file node of their child (a leaf above the last level fills every
/// exit under it, the only way two exits share a child).
fn fill(tree: &TreeArrays, block: &mut Block, slot: usize, level: usize, node: usize) {
    let first_on_level = (1 << level) - 1;
    if tree.feature[node] < 0 {
        let width = EXITS >> level;
        let first_exit = (slot - first_on_level) * width;
        block.children[first_exit..first_exit + width].fill(node as u32);
        return;
    }
    block.thresholds[slot] = threshold_f32(tree.threshold[node]);
    block.features |= (tree.feature[node] as u32) << (SLOT_BITS * slot as u32);
    let (left, right) = (tree.left[node] as usize, tree.right[node] as usize);
    if level + 1 < LEVELS {
        fill(tree, block, 2 * slot + 1, level + 1, left);
        fill(tree, block, 2 * slot + 2, level + 1, right);
        return;
    }
    let first_exit = 2 * (slot - first_on_level);
    block.children[first_exit] = left as u32;
    block.children[first_exit + 1] = right as u32;
}
