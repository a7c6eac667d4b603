//! Dead-code elimination: drop nodes no output depends on. Inputs are kept (they are the
//! graph's interface) even when unused.

use crate::graph::{Graph, NodeId};
use crate::op::Op;

/// Returns the pruned graph and, for each old node, its new id (None if removed).
pub fn eliminate_dead_code(g: &Graph) -> (Graph, Vec<Option<NodeId>>) {
    let mut live = vec![false; g.len()];
    for (_, o) in &g.outputs {
        live[o.0] = true;
    }
    for i in (0..g.len()).rev() {
        if matches!(g.nodes[i].op, Op::Input { .. }) {
            live[i] = true;
        }
        if live[i] {
            for inp in &g.nodes[i].inputs {
                live[inp.0] = true;
            }
        }
    }
    let mut map = vec![None; g.len()];
    let mut out = Graph::default();
    for (i, n) in g.nodes.iter().enumerate() {
        if !live[i] {
            continue;
        }
        let mut n = n.clone();
        for inp in &mut n.inputs {
            *inp = map[inp.0].expect("inputs of a live node are live");
        }
        map[i] = Some(NodeId(out.nodes.len()));
        out.nodes.push(n);
    }
    out.outputs = g.outputs.iter().map(|(name, id)| (name.clone(), map[id.0].unwrap())).collect();
    (out, map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, GraphBuilder, UnaryOp};

    #[test]
    fn removes_unused_compute() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::F32, [4]).unwrap();
        let _unused_in = b.input("y", DType::F32, [4]).unwrap();
        let dead = b.unary(UnaryOp::Exp, x).unwrap();
        let _dead2 = b.unary(UnaryOp::Neg, dead).unwrap();
        let live = b.unary(UnaryOp::Abs, x).unwrap();
        b.output("o", live).unwrap();
        let g = b.finish().unwrap();
        let (p, map) = eliminate_dead_code(&g);
        assert_eq!(p.len(), 3);
        assert_eq!(map[dead.0], None);
        assert_eq!(p.output("o"), map[live.0]);
        assert_eq!(p.inputs().len(), 2);
    }
}
