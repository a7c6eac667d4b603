//! The graph: nodes in topological order (a node's inputs always precede it).

use crate::cost::{cost, Cost};
use crate::dtype::DType;
use crate::op::Op;
use crate::shape::Shape;

/// Index of a node in its graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "%{}", self.0)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<NodeId>,
    pub shape: Shape,
    pub dtype: DType,
    /// Scoped name (for dumps and profiles), e.g. `stages.1.blocks.0.dwconv`.
    pub name: String,
}

impl Node {
    pub fn bytes(&self) -> usize {
        self.shape.numel() * self.dtype.size_in_bytes()
    }
}

/// A static graph with named outputs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub outputs: Vec<(String, NodeId)>,
}

impl Graph {
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = NodeId> {
        (0..self.nodes.len()).map(NodeId)
    }

    /// Runtime inputs in creation order: (name, node).
    pub fn inputs(&self) -> Vec<(&str, NodeId)> {
        self.ids()
            .filter_map(|id| match &self.node(id).op {
                Op::Input { name } => Some((name.as_str(), id)),
                _ => None,
            })
            .collect()
    }

    /// Weights referenced by the graph: (checkpoint name, node).
    pub fn params(&self) -> Vec<(&str, NodeId)> {
        self.ids()
            .filter_map(|id| match &self.node(id).op {
                Op::Param { name } => Some((name.as_str(), id)),
                _ => None,
            })
            .collect()
    }

    /// Persistent buffers: (name, node).
    pub fn states(&self) -> Vec<(&str, NodeId)> {
        self.ids()
            .filter_map(|id| match &self.node(id).op {
                Op::State { name } => Some((name.as_str(), id)),
                _ => None,
            })
            .collect()
    }

    pub fn output(&self, name: &str) -> Option<NodeId> {
        self.outputs.iter().find(|(n, _)| n == name).map(|(_, id)| *id)
    }

    /// Number of consumers of each node (outputs count as consumers).
    pub fn use_counts(&self) -> Vec<usize> {
        let mut uses = vec![0; self.nodes.len()];
        for n in &self.nodes {
            for i in &n.inputs {
                uses[i.0] += 1;
            }
        }
        for (_, o) in &self.outputs {
            uses[o.0] += 1;
        }
        uses
    }

    /// The node whose storage `id` shares (follows reshape aliases).
    pub fn storage_root(&self, mut id: NodeId) -> NodeId {
        while self.node(id).op.is_alias() {
            id = self.node(id).inputs[0];
        }
        id
    }

    pub fn node_cost(&self, id: NodeId) -> Cost {
        let n = self.node(id);
        let ins: Vec<(&[usize], usize)> = n
            .inputs
            .iter()
            .map(|i| {
                let m = self.node(*i);
                (m.shape.dims(), m.dtype.size_in_bytes())
            })
            .collect();
        cost(&n.op, &ins, n.shape.dims(), n.dtype.size_in_bytes())
    }

    pub fn total_cost(&self) -> Cost {
        self.ids().fold(Cost::default(), |acc, id| {
            let c = self.node_cost(id);
            Cost { flops: acc.flops + c.flops, bytes: acc.bytes + c.bytes }
        })
    }

    /// Bytes of all parameters.
    pub fn param_bytes(&self) -> usize {
        self.params().iter().map(|(_, id)| self.node(*id).bytes()).sum()
    }

    /// A stable structural hash (ops, shapes, dtypes, wiring, outputs) for plan caches.
    pub fn structural_hash(&self) -> u64 {
        // FNV-1a over the Debug form: stable across runs, cheap for graphs of this size.
        let mut h: u64 = 0xcbf29ce484222325;
        let mut feed = |s: &str| {
            for b in s.bytes() {
                h ^= b as u64;
                h = h.wrapping_mul(0x100000001b3);
            }
        };
        for n in &self.nodes {
            feed(&format!("{:?}|{:?}|{}|{}|", n.op, n.inputs, n.shape, n.dtype));
        }
        feed(&format!("{:?}", self.outputs));
        h
    }
}
