//! Constant-subgraph marking: a node whose inputs are all weights or constants can be computed
//! once when a plan is compiled (layout conversions of checkpoint weights, weight casts, tied
//! transposes) and kept resident, never recomputed per run.

use crate::graph::Graph;
use crate::op::Op;

/// `true` for every node computable before any input is known.
pub fn static_nodes(g: &Graph) -> Vec<bool> {
    let mut s = vec![false; g.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        s[i] = match n.op {
            Op::Param { .. } | Op::Constant { .. } => true,
            Op::Input { .. } | Op::State { .. } => false,
            _ => n.inputs.iter().all(|x| s[x.0]),
        };
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, GraphBuilder};

    #[test]
    fn weight_transforms_are_static() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::F32, [1, 4, 4, 3]).unwrap();
        let w = b.param("w", DType::F32, [8, 3, 3, 3]).unwrap();
        let wt = b.permute(w, &[0, 2, 3, 1]).unwrap();
        let y = b.conv2d(x, wt, None, Default::default()).unwrap();
        b.output("y", y).unwrap();
        let g = b.finish().unwrap();
        assert_eq!(static_nodes(&g), vec![false, true, true, false]);
    }
}
