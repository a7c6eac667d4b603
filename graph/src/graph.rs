//! The graph: nodes in topological order (a node's inputs always precede it).

use crate::cost::{cost, Cost};
use crate::dtype::DType;
use crate::op::Op;
use crate::passes::memory::ARENA_ALIGN;
use crate::shape::Shape;

/// Index of a node in its graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

/// FNV-1a, 64-bit: a stable hash (std's `DefaultHasher` may change between releases).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

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

    /// A 64-bit FNV-1a hash of everything that defines the graph: every node's op (a
    /// constant's bytes included), inputs, shape, dtype and name, and the named outputs. Equal
    /// graphs hash alike in any process, so it keys plan caches and names dumps.
    pub fn fingerprint(&self) -> u64 {
        let mut h = Fnv::default();
        for n in &self.nodes {
            match &n.op {
                Op::Constant { data } => {
                    h.write(b"constant");
                    h.write(data);
                }
                op => h.write(format!("{op:?}").as_bytes()),
            }
            for i in &n.inputs {
                h.write(&i.0.to_le_bytes());
            }
            for d in n.shape.dims() {
                h.write(&d.to_le_bytes());
            }
            h.write(n.dtype.short_name().as_bytes());
            h.write(n.name.as_bytes());
            h.write(&[0xff]);
        }
        for (name, id) in &self.outputs {
            h.write(name.as_bytes());
            h.write(&id.0.to_le_bytes());
        }
        h.0
    }

    /// Whether `id` shares its first input's storage instead of owning any: a reshape, an
    /// in-place write, or a slice that is a [view](Self::view_offset).
    pub fn is_alias(&self, id: NodeId) -> bool {
        self.node(id).op.is_alias() || self.view_offset(id).is_some()
    }

    /// Byte offset of a slice's output inside its input's storage, when the slice needs no
    /// copy: step 1 (or one element) and every axis before the sliced one of extent 1, so it
    /// selects one contiguous range; starting on an arena-aligned byte, so every kernel sees
    /// the alignment it would see on its own buffer; and not of a state, which changes during
    /// a run while a slice keeps the value it read.
    pub fn view_offset(&self, id: NodeId) -> Option<usize> {
        let n = self.node(id);
        let Op::Slice { axis, start, end, step } = n.op else {
            return None;
        };
        let src = self.node(n.inputs[0]);
        let dims = src.shape.dims();
        let contiguous = (step == 1 || end - start <= 1) && dims[..axis].iter().all(|&d| d == 1);
        let offset = start * dims[axis + 1..].iter().product::<usize>() * n.dtype.size_in_bytes();
        let root = self.storage_root(n.inputs[0]);
        let fixed = !matches!(self.node(root).op, Op::State { .. });
        (contiguous && fixed && offset.is_multiple_of(ARENA_ALIGN)).then_some(offset)
    }

    /// The node whose storage `id` shares (follows aliases).
    pub fn storage_root(&self, mut id: NodeId) -> NodeId {
        while self.is_alias(id) {
            id = self.node(id).inputs[0];
        }
        id
    }

    /// Byte offset of `id`'s data inside its storage root's (non-zero only through views).
    pub fn storage_offset(&self, mut id: NodeId) -> usize {
        let mut off = 0;
        while self.is_alias(id) {
            off += self.view_offset(id).unwrap_or(0);
            id = self.node(id).inputs[0];
        }
        off
    }

    pub fn node_cost(&self, id: NodeId) -> Cost {
        let n = self.node(id);
        if self.view_offset(id).is_some() {
            return Cost::default();
        }
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

#[cfg(test)]
mod tests {
    use crate::{DType, GraphBuilder};

    #[test]
    fn contiguous_aligned_slices_are_views() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::F32, [1, 3, 64]).unwrap();
        let rows = b.slice(x, 1, 1, 3).unwrap(); // one range from byte 256
        let cols = b.slice(x, 2, 16, 32).unwrap(); // 3 separate ranges
        let row = b.slice(x, 1, 2, 3).unwrap();
        let part = b.slice(row, 2, 32, 48).unwrap(); // one range inside a view
        let odd = b.slice(row, 2, 4, 20).unwrap(); // starts 16 bytes into an arena line
        let strided = b.slice_step(x, 1, 0, 3, 2).unwrap();
        let one = b.slice_step(x, 1, 1, 2, 2).unwrap(); // one element of a strided slice
        let s = b.state("s", DType::F32, [1, 3, 64]).unwrap();
        let of_state = b.slice(s, 1, 1, 2).unwrap();
        for (i, id) in [rows, cols, row, part, odd, strided, one, of_state].into_iter().enumerate() {
            b.output(&format!("o{i}"), id).unwrap();
        }
        let g = b.finish().unwrap();
        let views: Vec<_> = [rows, cols, row, part, odd, strided, one, of_state]
            .into_iter()
            .map(|id| (g.view_offset(id), g.storage_offset(id), g.storage_root(id)))
            .collect();
        assert_eq!(
            views,
            vec![
                (Some(256), 256, x),
                (None, 0, cols),
                (Some(512), 512, x),
                (Some(128), 640, x),
                (None, 0, odd),
                (None, 0, strided),
                (Some(256), 256, x),
                (None, 0, of_state),
            ]
        );
        assert_eq!(g.node_cost(part), Default::default());
        assert!(g.node_cost(cols).bytes > 0);
    }

    #[test]
    fn fingerprints_tell_graphs_apart() {
        let build = |n: usize, eps: f32, c: f32, out: &str| {
            let mut b = GraphBuilder::new();
            let x = b.input("x", DType::F32, [2, n]).unwrap();
            let k = b.constant_f32([n], &vec![c; n]).unwrap();
            let y = b.add(x, k).unwrap();
            let y = b.layer_norm(y, None, None, eps).unwrap();
            b.output(out, y).unwrap();
            b.finish().unwrap()
        };
        let base = build(8, 1e-5, 1.0, "y");
        assert_eq!(base.fingerprint(), build(8, 1e-5, 1.0, "y").fingerprint());
        for other in [
            build(9, 1e-5, 1.0, "y"),
            build(8, 1e-6, 1.0, "y"),
            build(8, 1e-5, 2.0, "y"),
            build(8, 1e-5, 1.0, "z"),
        ] {
            assert_ne!(base.fingerprint(), other.fingerprint());
        }
    }
}
