//! Elementwise fusion grouping: marks connected runs of pointwise ops over one index space
//! whose intermediates have no other consumer. A backend may run each group as one kernel;
//! the CPU backend runs them node by node.

use crate::graph::{Graph, NodeId};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FusionGroup {
    /// Members in topological order; the last one is the group's only externally visible value.
    pub nodes: Vec<NodeId>,
}

fn find(p: &mut [usize], mut i: usize) -> usize {
    while p[i] != i {
        p[i] = p[p[i]];
        i = p[i];
    }
    i
}

/// Groups of two or more fusable elementwise nodes, in topological order of their last member.
pub fn fusion_groups(g: &Graph) -> Vec<FusionGroup> {
    let uses = g.use_counts();
    let mut parent: Vec<usize> = (0..g.len()).collect();
    for (i, n) in g.nodes.iter().enumerate() {
        if !n.op.is_elementwise() {
            continue;
        }
        for inp in &n.inputs {
            let p = g.node(*inp);
            // The producer must be pointwise over the same index space and consumed only here.
            if p.op.is_elementwise() && p.shape == n.shape && uses[inp.0] == 1 {
                let (a, b) = (find(&mut parent, inp.0), find(&mut parent, i));
                parent[a] = b;
            }
        }
    }
    let mut groups: std::collections::BTreeMap<usize, Vec<NodeId>> = Default::default();
    for i in 0..g.len() {
        if g.nodes[i].op.is_elementwise() {
            let r = find(&mut parent, i);
            groups.entry(r).or_default().push(NodeId(i));
        }
    }
    let mut out: Vec<FusionGroup> =
        groups.into_values().filter(|v| v.len() > 1).map(|nodes| FusionGroup { nodes }).collect();
    out.sort_by_key(|f| *f.nodes.last().unwrap());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, GraphBuilder, UnaryOp};

    #[test]
    fn chains_fuse_and_shared_values_split() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::F32, [8]).unwrap();
        let a = b.unary(UnaryOp::Exp, x).unwrap();
        let c = b.unary(UnaryOp::Neg, a).unwrap();
        let d = b.add(c, x).unwrap();
        // `d` has two consumers, so it ends its group.
        let e = b.unary(UnaryOp::Abs, d).unwrap();
        let f = b.unary(UnaryOp::Relu, d).unwrap();
        let s = b.add(e, f).unwrap();
        b.output("s", s).unwrap();
        let g = b.finish().unwrap();
        let groups = fusion_groups(&g);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].nodes, vec![a, c, d]);
        assert_eq!(groups[1].nodes, vec![e, f, s]);
    }
}
