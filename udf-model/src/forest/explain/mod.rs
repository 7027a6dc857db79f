//! Exact explanations of the forest's P(High): each input's Shapley value by TreeSHAP
//! (Lundberg et al., "Consistent individualized feature attribution for tree ensembles", Algorithm 2,
//! path-dependent), so that `base + Σ contributions = P(High)` of the reading.
//!
//! The value of a set of known inputs is the tree's expected output when the others are unknown: at a
//! split on an unknown input both branches count, weighted by the training rows that went each way (the
//! node `cover` of the model file). `base` is that expectation with nothing known. The forest's values
//! are the trees' values averaged, as its probabilities are. Rows follow exactly the branches scoring
//! takes (`f32` input against the threshold rounded down), so the sum is the scored P(High).
//!
//! The cost per row is the trees' leaves times the square of the distinct inputs on a path (at most
//! eight here); each row takes one small scratch buffer, sized once when the forest loads.

use super::TreeArrays;
use super::layout::threshold_f32;

#[cfg(test)]
mod tests;

/// One explained reading: P(High) split into a base value and one contribution per model input.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The forest's expected P(High) over its training rows (the same for every reading).
    pub base: f64,
    /// Each model input's contribution to P(High), in the model file's feature order.
    pub contributions: Vec<f64>,
}

/// A tree ready for explaining: the file's nodes with `f32` thresholds, covers and the leaves' P(High).
#[derive(Debug, Clone)]
struct ExplainedTree {
    feature: Vec<i32>,
    threshold: Vec<f32>,
    left: Vec<u32>,
    right: Vec<u32>,
    cover: Vec<f64>,
    /// P(High) at leaves (0 at inner nodes).
    high: Vec<f64>,
    /// The tree's cover-weighted mean P(High).
    expected: f64,
}

/// The forest's trees in the form TreeSHAP walks.
#[derive(Debug, Clone)]
pub struct Explainer {
    trees: Vec<ExplainedTree>,
    inputs: usize,
    base: f64,
    /// Path elements one row needs: each level of the recursion keeps a path of at most `inputs + 1`.
    scratch_len: usize,
}

/// One input on the current root-to-node path: the share of cover that went this way where it was
/// unknown (`zero`), whether the row went this way (`one`), and the path's permutation weight.
#[derive(Debug, Clone, Copy, Default)]
struct PathElement {
    feature: i32,
    zero: f64,
    one: f64,
    weight: f64,
}

impl Explainer {
    /// The explainer of validated `trees` whose leaves hold class fractions with High at `high_class`;
    /// `None` when a tree carries no node covers (model files written before covers were recorded).
    /// `max_depth` is the depth of the deepest leaf of any tree, which sizes each row's scratch.
    pub(super) fn build(trees: &[TreeArrays], high_class: usize, inputs: usize, max_depth: usize) -> Option<Explainer> {
        let trees: Option<Vec<ExplainedTree>> = trees
            .iter()
            .map(|t| {
                if t.cover.len() != t.feature.len() {
                    return None;
                }
                let leaf = |i: usize| t.feature[i] < 0;
                let high: Vec<f64> =
                    (0..t.feature.len()).map(|i| if leaf(i) { t.value[i][high_class] } else { 0.0 }).collect();
                let expected =
                    (0..t.feature.len()).filter(|&i| leaf(i)).map(|i| t.cover[i] * high[i]).sum::<f64>() / t.cover[0];
                Some(ExplainedTree {
                    feature: t.feature.clone(),
                    threshold: t.threshold.iter().map(|&x| threshold_f32(x)).collect(),
                    left: t.left.iter().map(|&c| c.max(0) as u32).collect(),
                    right: t.right.iter().map(|&c| c.max(0) as u32).collect(),
                    cover: t.cover.clone(),
                    high,
                    expected,
                })
            })
            .collect();
        let trees = trees?;
        let base = trees.iter().map(|t| t.expected).sum::<f64>() / trees.len() as f64;
        Some(Explainer { trees, inputs, base, scratch_len: (max_depth + 2) * (inputs + 2) })
    }

    /// Explains one row of `inputs` values (the model inputs in file order, all finite).
    pub fn explain(&self, row: &[f64]) -> Explanation {
        let x: Vec<f32> = row.iter().map(|&v| v as f32).collect();
        let mut phi = vec![0.0; self.inputs];
        let mut scratch = vec![PathElement::default(); self.scratch_len];
        for tree in &self.trees {
            tree.recurse(&x, &mut phi, &mut scratch, 0, 0, 1.0, 1.0, -1);
        }
        let n = self.trees.len() as f64;
        Explanation { base: self.base, contributions: phi.into_iter().map(|p| p / n).collect() }
    }

    /// The expected P(High) with nothing known.
    pub fn base(&self) -> f64 {
        self.base
    }
}

impl ExplainedTree {
    /// Algorithm 2's RECURSE at `node`: `scratch[..parent_len]` is the parent's path; this node's path
    /// is built after it, extended with the branch taken into `node` (`zero`, `one`, `feature`).
    #[allow(clippy::too_many_arguments)]
    fn recurse(
        &self,
        x: &[f32],
        phi: &mut [f64],
        scratch: &mut [PathElement],
        parent_len: usize,
        node: usize,
        zero: f64,
        one: f64,
        feature: i32,
    ) {
        let (parent, rest) = scratch.split_at_mut(parent_len);
        rest[..parent_len].copy_from_slice(parent);
        let mut len = parent_len;
        extend(rest, &mut len, zero, one, feature);
        let split = self.feature[node];
        if split < 0 {
            for i in 1..len {
                let w = unwound_sum(&rest[..len], i);
                let el = rest[i];
                phi[el.feature as usize] += w * (el.one - el.zero) * self.high[node];
            }
            return;
        }
        let goes_left = x[split as usize] <= self.threshold[node];
        let (hot, cold) = if goes_left {
            (self.left[node] as usize, self.right[node] as usize)
        } else {
            (self.right[node] as usize, self.left[node] as usize)
        };
        let (mut in_zero, mut in_one) = (1.0, 1.0);
        // An input split on again: undo its earlier element, then redo it with both splits' fractions.
        if let Some(k) = rest[..len].iter().position(|e| e.feature == split) {
            in_zero = rest[k].zero;
            in_one = rest[k].one;
            unwind(&mut rest[..len], k);
            len -= 1;
        }
        let cover = self.cover[node];
        self.recurse(x, phi, rest, len, hot, self.cover[hot] / cover * in_zero, in_one, split);
        self.recurse(x, phi, rest, len, cold, self.cover[cold] / cover * in_zero, 0.0, split);
    }
}

/// Appends an element to the path `m[..len]` and updates the permutation weights.
fn extend(m: &mut [PathElement], len: &mut usize, zero: f64, one: f64, feature: i32) {
    let depth = *len;
    m[depth] = PathElement { feature, zero, one, weight: if depth == 0 { 1.0 } else { 0.0 } };
    let d1 = (depth + 1) as f64;
    for i in (0..depth).rev() {
        m[i + 1].weight += one * m[i].weight * (i + 1) as f64 / d1;
        m[i].weight = zero * m[i].weight * (depth - i) as f64 / d1;
    }
    *len += 1;
}

/// Removes element `k` from the path `m` (its last element is dropped by the caller): the weights are
/// recomputed as if `k` had never been added, the elements after it move up.
fn unwind(m: &mut [PathElement], k: usize) {
    let depth = m.len() - 1;
    let (one, zero) = (m[k].one, m[k].zero);
    let d1 = (depth + 1) as f64;
    let mut next = m[depth].weight;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let t = m[i].weight;
            m[i].weight = next * d1 / ((i + 1) as f64 * one);
            next = t - m[i].weight * zero * (depth - i) as f64 / d1;
        } else {
            m[i].weight = m[i].weight * d1 / (zero * (depth - i) as f64);
        }
    }
    for i in k..depth {
        m[i].feature = m[i + 1].feature;
        m[i].zero = m[i + 1].zero;
        m[i].one = m[i + 1].one;
    }
}

/// The sum of the weights the path `m` would have without element `k`, without changing it.
fn unwound_sum(m: &[PathElement], k: usize) -> f64 {
    let depth = m.len() - 1;
    let (one, zero) = (m[k].one, m[k].zero);
    let mut total = 0.0;
    if one != 0.0 {
        let mut next = m[depth].weight;
        for i in (0..depth).rev() {
            let t = next / ((i + 1) as f64 * one);
            total += t;
            next = m[i].weight - t * zero * (depth - i) as f64;
        }
    } else {
        for i in (0..depth).rev() {
            total += m[i].weight / (zero * (depth - i) as f64);
        }
    }
    total * (depth + 1) as f64
}
