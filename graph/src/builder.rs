//! The typed builder that model code uses. Every op is checked (shape and dtype inference)
//! when it is added; a bad op is rejected with an error naming the op, node and shapes.

use crate::dtype::DType;
use crate::error::{GraphError, Result};
use crate::graph::{Graph, Node, NodeId};
use crate::infer::{infer, In};
use crate::op::*;
use crate::shape::Shape;
use std::collections::HashSet;
use std::sync::Arc;

#[derive(Default)]
pub struct GraphBuilder {
    graph: Graph,
    scope: Vec<String>,
    input_names: HashSet<String>,
    param_names: HashSet<String>,
}

/// A named scope; names of nodes added inside get the prefix. Ends when dropped via `pop_scope`.
impl GraphBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push_scope(&mut self, s: impl Into<String>) {
        self.scope.push(s.into());
    }

    pub fn pop_scope(&mut self) {
        self.scope.pop();
    }

    /// Run `f` with `s` pushed as a scope.
    pub fn scoped<T>(&mut self, s: impl Into<String>, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.push_scope(s);
        let r = f(self);
        self.pop_scope();
        r
    }

    fn scoped_name(&self, leaf: &str) -> String {
        if self.scope.is_empty() {
            leaf.to_string()
        } else {
            format!("{}.{leaf}", self.scope.join("."))
        }
    }

    fn check(&self, id: NodeId) -> Result<&Node> {
        self.graph.nodes.get(id.0).ok_or(GraphError::UnknownNode(id.0))
    }

    pub fn shape(&self, id: NodeId) -> &[usize] {
        self.graph.nodes[id.0].shape.dims()
    }

    pub fn dtype(&self, id: NodeId) -> DType {
        self.graph.nodes[id.0].dtype
    }

    /// The dims of `id` as a rank-`R` array, or an error naming the node and the `layout` a
    /// model builder expected there (e.g. `"[N, H, W, C]"`).
    pub fn dims<const R: usize>(&self, id: NodeId, layout: &str) -> Result<[usize; R]> {
        let n = self.check(id)?;
        n.shape.dims().try_into().map_err(|_| GraphError::InvalidOp {
            op: "layout".into(),
            node: id.0,
            name: n.name.clone(),
            detail: format!("expected {layout}, got {}", n.shape),
        })
    }

    /// The last dim of `id` (channels, features), or an error for a scalar.
    pub fn last_dim(&self, id: NodeId) -> Result<usize> {
        let n = self.check(id)?;
        n.shape.dims().last().copied().ok_or_else(|| GraphError::InvalidOp {
            op: "layout".into(),
            node: id.0,
            name: n.name.clone(),
            detail: "expected a tensor of rank >= 1, got a scalar".into(),
        })
    }

    /// Add any op; its output shape/dtype are inferred and validated.
    pub fn op(&mut self, op: Op, inputs: &[NodeId]) -> Result<NodeId> {
        let mut ins = Vec::with_capacity(inputs.len());
        for &i in inputs {
            let n = self.check(i)?;
            ins.push(In { shape: n.shape.dims(), dtype: n.dtype });
        }
        let node = self.graph.nodes.len();
        let name = self.scoped_name(op.kind());
        let (shape, dtype) = infer(&op, &ins).map_err(|detail| {
            let shapes: Vec<String> =
                ins.iter().map(|i| format!("{}{}", i.dtype, Shape::from(i.shape))).collect();
            GraphError::InvalidOp {
                op: op.kind().to_string(),
                node,
                name: name.clone(),
                detail: format!("{detail} (inputs: {})", shapes.join(", ")),
            }
        })?;
        Ok(self.push(Node { op, inputs: inputs.to_vec(), shape: Shape(shape), dtype, name }))
    }

    fn push(&mut self, n: Node) -> NodeId {
        self.graph.nodes.push(n);
        NodeId(self.graph.nodes.len() - 1)
    }

    pub fn input(&mut self, name: &str, dtype: DType, shape: impl Into<Shape>) -> Result<NodeId> {
        if !self.input_names.insert(name.to_string()) {
            return Err(GraphError::DuplicateName { kind: "input", name: name.into() });
        }
        Ok(self.push(Node {
            op: Op::Input { name: name.into() },
            inputs: vec![],
            shape: shape.into(),
            dtype,
            name: name.into(),
        }))
    }

    /// A weight by checkpoint name. Referencing the same name twice returns the same node
    /// (tied weights), provided dtype and shape agree.
    pub fn param(&mut self, name: &str, dtype: DType, shape: impl Into<Shape>) -> Result<NodeId> {
        let shape = shape.into();
        if self.param_names.contains(name) {
            let (_, id) = *self.graph.params().iter().find(|(n, _)| *n == name).unwrap();
            let n = self.graph.node(id);
            if n.shape != shape || n.dtype != dtype {
                return Err(GraphError::InvalidOp {
                    op: "param".into(),
                    node: id.0,
                    name: name.into(),
                    detail: format!("declared again as {dtype}{shape}, first as {}{}", n.dtype, n.shape),
                });
            }
            return Ok(id);
        }
        self.param_names.insert(name.to_string());
        Ok(self.push(Node {
            op: Op::Param { name: name.into() },
            inputs: vec![],
            shape,
            dtype,
            name: name.into(),
        }))
    }

    /// A persistent buffer (see [`Op::State`]).
    pub fn state(&mut self, name: &str, dtype: DType, shape: impl Into<Shape>) -> Result<NodeId> {
        if self.graph.states().iter().any(|(n, _)| *n == name) {
            return Err(GraphError::DuplicateName { kind: "state", name: name.into() });
        }
        let shape = shape.into();
        Ok(self.push(Node {
            op: Op::State { name: name.into() },
            inputs: vec![],
            shape,
            dtype,
            name: name.into(),
        }))
    }

    /// Write `src` into the state `dst` (a state node or an earlier write to one) along `axis`
    /// at `offset [1]`; returns the updated state.
    pub fn write_slice(&mut self, dst: NodeId, src: NodeId, offset: NodeId, axis: isize) -> Result<NodeId> {
        self.check(dst)?;
        let root = self.graph.storage_root(dst);
        if !matches!(self.graph.node(root).op, Op::State { .. }) {
            return Err(GraphError::InvalidOp {
                op: "write_slice".into(),
                node: self.graph.nodes.len(),
                name: self.scoped_name("write_slice"),
                detail: format!("destination {dst} is not a state buffer"),
            });
        }
        let axis = self.axis(dst, axis)?;
        self.op(Op::WriteSlice { axis }, &[dst, src, offset])
    }

    /// A constant from raw little-endian bytes.
    pub fn constant_bytes(&mut self, dtype: DType, shape: impl Into<Shape>, data: Vec<u8>) -> Result<NodeId> {
        let shape = shape.into();
        let node = self.graph.nodes.len();
        if data.len() != shape.numel() * dtype.size_in_bytes() {
            return Err(GraphError::InvalidOp {
                op: "constant".into(),
                node,
                name: self.scoped_name("constant"),
                detail: format!("{} bytes given for {dtype}{shape}", data.len()),
            });
        }
        let name = self.scoped_name("constant");
        Ok(self.push(Node { op: Op::Constant { data: Arc::from(data) }, inputs: vec![], shape, dtype, name }))
    }

    pub fn constant_f32(&mut self, shape: impl Into<Shape>, data: &[f32]) -> Result<NodeId> {
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant_bytes(DType::F32, shape, bytes)
    }

    pub fn constant_i32(&mut self, shape: impl Into<Shape>, data: &[i32]) -> Result<NodeId> {
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant_bytes(DType::I32, shape, bytes)
    }

    /// A scalar constant of `dtype` (f32, f16 or bf16), shape `[]`, for broadcasting.
    pub fn scalar(&mut self, dtype: DType, v: f32) -> Result<NodeId> {
        let c = self.constant_f32(Vec::<usize>::new(), &[v])?;
        if dtype == DType::F32 {
            Ok(c)
        } else {
            self.cast(c, dtype)
        }
    }

    pub fn output(&mut self, name: &str, id: NodeId) -> Result<()> {
        self.check(id)?;
        if self.graph.outputs.iter().any(|(n, _)| n == name) {
            return Err(GraphError::DuplicateName { kind: "output", name: name.into() });
        }
        self.graph.outputs.push((name.into(), id));
        Ok(())
    }

    pub fn finish(self) -> Result<Graph> {
        if self.graph.outputs.is_empty() {
            return Err(GraphError::NoOutputs);
        }
        Ok(self.graph)
    }

    /// Normalise a possibly negative axis against `id`'s rank.
    pub fn axis(&self, id: NodeId, axis: isize) -> Result<usize> {
        let r = self.check(id)?.shape.rank() as isize;
        let a = if axis < 0 { axis + r } else { axis };
        if a < 0 || a >= r.max(1) {
            return Err(GraphError::InvalidOp {
                op: "axis".into(),
                node: id.0,
                name: self.graph.nodes[id.0].name.clone(),
                detail: format!("axis {axis} out of range for rank {r}"),
            });
        }
        Ok(a as usize)
    }

    // ---- contractions ----
    pub fn matmul(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.op(Op::MatMul { trans_a: false, trans_b: false }, &[a, b])
    }
    pub fn matmul_t(&mut self, a: NodeId, b: NodeId, trans_a: bool, trans_b: bool) -> Result<NodeId> {
        self.op(Op::MatMul { trans_a, trans_b }, &[a, b])
    }
    pub fn linear(&mut self, x: NodeId, w: NodeId, bias: Option<NodeId>) -> Result<NodeId> {
        let mut ins = vec![x, w];
        ins.extend(bias);
        self.op(Op::Linear, &ins)
    }
    /// `act(x·w_gateᵀ [+ b_gate]) ⊙ (x·w_upᵀ [+ b_up])` (`Op::GatedLinear`).
    pub fn gated_linear(
        &mut self,
        x: NodeId,
        (w_gate, w_up): (NodeId, NodeId),
        biases: Option<(NodeId, NodeId)>,
        act: UnaryOp,
    ) -> Result<NodeId> {
        let mut ins = vec![x, w_gate, w_up];
        if let Some((bg, bu)) = biases {
            ins.extend([bg, bu]);
        }
        self.op(Op::GatedLinear { act }, &ins)
    }
    /// Projections of `x` by each weight (and bias, all or none) as flat consecutive blocks
    /// (`Op::MultiLinear`).
    pub fn multi_linear(
        &mut self,
        x: NodeId,
        weights: &[NodeId],
        biases: Option<&[NodeId]>,
    ) -> Result<NodeId> {
        let mut ins = vec![x];
        ins.extend_from_slice(weights);
        ins.extend_from_slice(biases.unwrap_or_default());
        self.op(Op::MultiLinear { parts: weights.len() }, &ins)
    }
    pub fn conv2d(&mut self, x: NodeId, w: NodeId, bias: Option<NodeId>, p: Conv2dParams) -> Result<NodeId> {
        let mut ins = vec![x, w];
        ins.extend(bias);
        self.op(Op::Conv2d(p), &ins)
    }

    // ---- elementwise ----
    pub fn unary(&mut self, u: UnaryOp, x: NodeId) -> Result<NodeId> {
        self.op(Op::Unary(u), &[x])
    }
    /// `x[..., :n] · act(x[..., n:])` for `x [..., 2n]` (see `Op::Glu`).
    pub fn glu(&mut self, x: NodeId, act: UnaryOp) -> Result<NodeId> {
        self.op(Op::Glu { act }, &[x])
    }
    pub fn binary(&mut self, b: BinaryOp, x: NodeId, y: NodeId) -> Result<NodeId> {
        self.op(Op::Binary(b), &[x, y])
    }
    pub fn add(&mut self, x: NodeId, y: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Add, x, y)
    }
    pub fn sub(&mut self, x: NodeId, y: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Sub, x, y)
    }
    pub fn mul(&mut self, x: NodeId, y: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Mul, x, y)
    }
    pub fn div(&mut self, x: NodeId, y: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Div, x, y)
    }
    /// `x * s` for a scalar `s`.
    pub fn scale(&mut self, x: NodeId, s: f32) -> Result<NodeId> {
        let c = self.scalar(self.dtype(x), s)?;
        self.mul(x, c)
    }
    pub fn compare(&mut self, c: CmpOp, x: NodeId, y: NodeId) -> Result<NodeId> {
        self.op(Op::Compare(c), &[x, y])
    }
    pub fn where_(&mut self, cond: NodeId, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.op(Op::Where, &[cond, a, b])
    }
    pub fn cast(&mut self, x: NodeId, to: DType) -> Result<NodeId> {
        if self.dtype(x) == to {
            return Ok(x);
        }
        self.op(Op::Cast { to }, &[x])
    }

    // ---- reductions and normalisation ----
    pub fn reduce(&mut self, op: ReduceOp, x: NodeId, axes: &[isize], keepdim: bool) -> Result<NodeId> {
        let mut a: Vec<usize> = axes.iter().map(|&a| self.axis(x, a)).collect::<Result<_>>()?;
        a.sort_unstable();
        a.dedup();
        self.op(Op::Reduce { op, axes: a, keepdim }, &[x])
    }
    pub fn argmax(&mut self, x: NodeId, axis: isize, keepdim: bool) -> Result<NodeId> {
        let axis = self.axis(x, axis)?;
        self.op(Op::ArgReduce { op: ArgOp::ArgMax, axis, keepdim }, &[x])
    }
    pub fn argmin(&mut self, x: NodeId, axis: isize, keepdim: bool) -> Result<NodeId> {
        let axis = self.axis(x, axis)?;
        self.op(Op::ArgReduce { op: ArgOp::ArgMin, axis, keepdim }, &[x])
    }
    pub fn softmax(&mut self, x: NodeId, axis: isize) -> Result<NodeId> {
        let axis = self.axis(x, axis)?;
        self.op(Op::Softmax { axis }, &[x])
    }
    pub fn layer_norm(
        &mut self,
        x: NodeId,
        w: Option<NodeId>,
        b: Option<NodeId>,
        eps: f32,
    ) -> Result<NodeId> {
        let ins: Vec<NodeId> = match (w, b) {
            (Some(w), Some(b)) => vec![x, w, b],
            (Some(w), None) => vec![x, w],
            (None, None) => vec![x],
            (None, Some(_)) => {
                return Err(GraphError::InvalidOp {
                    op: "layer_norm".into(),
                    node: self.graph.nodes.len(),
                    name: self.scoped_name("layer_norm"),
                    detail: "bias without weight".into(),
                })
            }
        };
        self.op(Op::LayerNorm { eps }, &ins)
    }
    pub fn rms_norm(&mut self, x: NodeId, w: NodeId, eps: f32) -> Result<NodeId> {
        self.op(Op::RmsNorm { eps }, &[x, w])
    }
    pub fn group_norm(&mut self, x: NodeId, w: NodeId, b: NodeId, groups: usize, eps: f32) -> Result<NodeId> {
        self.op(Op::GroupNorm { groups, eps }, &[x, w, b])
    }
    /// SpatialNorm (`Op::SpatialNorm`): `scale`/`shift` at their own (lower) resolution.
    pub fn spatial_norm(
        &mut self,
        x: NodeId,
        (w, b): (NodeId, NodeId),
        (scale, shift): (NodeId, NodeId),
        groups: usize,
        eps: f32,
    ) -> Result<NodeId> {
        self.op(Op::SpatialNorm { groups, eps }, &[x, w, b, scale, shift])
    }
    pub fn rope(&mut self, x: NodeId, pos: NodeId, kind: RopeKind, theta: f32) -> Result<NodeId> {
        self.op(Op::Rope { kind, theta }, &[x, pos])
    }
    pub fn attention(
        &mut self,
        q: NodeId,
        k: NodeId,
        v: NodeId,
        mask: Option<NodeId>,
        causal: bool,
        scale: f32,
    ) -> Result<NodeId> {
        let mut ins = vec![q, k, v];
        ins.extend(mask);
        self.op(Op::Attention { causal, scale }, &ins)
    }
    /// Attention within each of the packed sequences of `seqlens` tokens (see `Op::VarlenAttention`).
    pub fn varlen_attention(
        &mut self,
        q: NodeId,
        k: NodeId,
        v: NodeId,
        seqlens: &[usize],
        causal: bool,
        scale: f32,
    ) -> Result<NodeId> {
        self.op(Op::VarlenAttention { causal, scale, seqlens: seqlens.to_vec() }, &[q, k, v])
    }

    // ---- data movement ----
    pub fn index_select(&mut self, x: NodeId, idx: NodeId, axis: isize) -> Result<NodeId> {
        let axis = self.axis(x, axis)?;
        self.op(Op::IndexSelect { axis }, &[x, idx])
    }
    /// Embedding lookup: `table [V, D]`, ids of any shape → `ids.shape ++ [D]`.
    pub fn embedding(&mut self, table: NodeId, ids: NodeId) -> Result<NodeId> {
        self.op(Op::IndexSelect { axis: 0 }, &[table, ids])
    }
    pub fn take_along_axis(&mut self, x: NodeId, idx: NodeId, axis: isize) -> Result<NodeId> {
        let axis = self.axis(x, axis)?;
        self.op(Op::TakeAlongAxis { axis }, &[x, idx])
    }
    pub fn concat(&mut self, xs: &[NodeId], axis: isize) -> Result<NodeId> {
        let first = *xs.first().ok_or_else(|| GraphError::InvalidOp {
            op: "concat".into(),
            node: self.graph.nodes.len(),
            name: self.scoped_name("concat"),
            detail: "no inputs".into(),
        })?;
        let axis = self.axis(first, axis)?;
        self.op(Op::Concat { axis }, xs)
    }
    pub fn slice(&mut self, x: NodeId, axis: isize, start: usize, end: usize) -> Result<NodeId> {
        self.slice_step(x, axis, start, end, 1)
    }
    pub fn slice_step(
        &mut self,
        x: NodeId,
        axis: isize,
        start: usize,
        end: usize,
        step: usize,
    ) -> Result<NodeId> {
        let axis = self.axis(x, axis)?;
        self.op(Op::Slice { axis, start, end, step }, &[x])
    }
    /// Split into pieces of the given sizes along `axis`.
    pub fn split(&mut self, x: NodeId, axis: isize, sizes: &[usize]) -> Result<Vec<NodeId>> {
        let mut start = 0;
        let mut out = Vec::with_capacity(sizes.len());
        for &s in sizes {
            out.push(self.slice(x, axis, start, start + s)?);
            start += s;
        }
        let a = self.axis(x, axis)?;
        if start != self.shape(x)[a] {
            return Err(GraphError::InvalidOp {
                op: "split".into(),
                node: x.0,
                name: self.graph.nodes[x.0].name.clone(),
                detail: format!("sizes {sizes:?} do not sum to axis {a} of {}", Shape::from(self.shape(x))),
            });
        }
        Ok(out)
    }
    pub fn reshape(&mut self, x: NodeId, shape: impl Into<Vec<usize>>) -> Result<NodeId> {
        let shape = shape.into();
        if self.shape(x) == shape.as_slice() {
            return Ok(x);
        }
        self.op(Op::Reshape { shape }, &[x])
    }
    pub fn permute(&mut self, x: NodeId, perm: &[usize]) -> Result<NodeId> {
        self.op(Op::Permute { perm: perm.to_vec() }, &[x])
    }
    pub fn pad(&mut self, x: NodeId, pads: &[(usize, usize)], value: f32) -> Result<NodeId> {
        self.op(Op::Pad { pads: pads.to_vec(), value }, &[x])
    }
    pub fn resize(
        &mut self,
        x: NodeId,
        mode: ResizeMode,
        out: [usize; 2],
        align_corners: bool,
        antialias: bool,
    ) -> Result<NodeId> {
        self.op(Op::Resize { mode, out, align_corners, antialias }, &[x])
    }
    pub fn avg_pool2d(
        &mut self,
        x: NodeId,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Result<NodeId> {
        self.op(Op::AvgPool2d { kernel, stride, padding, count_include_pad: true }, &[x])
    }
    pub fn pixel_shuffle(&mut self, x: NodeId, r: usize) -> Result<NodeId> {
        self.op(Op::PixelShuffle { r }, &[x])
    }
    pub fn pixel_unshuffle(&mut self, x: NodeId, r: usize) -> Result<NodeId> {
        self.op(Op::PixelUnshuffle { r }, &[x])
    }
    pub fn vq_nearest(&mut self, x: NodeId, codebook: NodeId) -> Result<NodeId> {
        self.op(Op::VqNearest, &[x, codebook])
    }
    /// One token per row from sorted candidates (see `Op::SampleSorted`).
    pub fn sample_sorted(&mut self, values: NodeId, ids: NodeId, params: NodeId) -> Result<NodeId> {
        self.op(Op::SampleSorted, &[values, ids, params])
    }
    pub fn grid_sample(&mut self, x: NodeId, grid: NodeId, align_corners: bool) -> Result<NodeId> {
        self.op(Op::GridSample { align_corners }, &[x, grid])
    }
    pub fn ms_deform_attn(
        &mut self,
        value: NodeId,
        loc: NodeId,
        w: NodeId,
        levels: &[[usize; 2]],
    ) -> Result<NodeId> {
        self.op(Op::MsDeformAttn { levels: levels.to_vec() }, &[value, loc, w])
    }
    pub fn top_k(&mut self, x: NodeId, k: usize, axis: isize) -> Result<NodeId> {
        let axis = self.axis(x, axis)?;
        self.op(Op::TopK { k, axis }, &[x])
    }
    pub fn timestep_embedding(
        &mut self,
        t: NodeId,
        dim: usize,
        flip_sin_to_cos: bool,
        downscale_freq_shift: f32,
    ) -> Result<NodeId> {
        self.op(
            Op::TimestepEmbedding { dim, flip_sin_to_cos, downscale_freq_shift, max_period: 10000.0 },
            &[t],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_node_and_shapes() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::F32, [2, 3]).unwrap();
        let y = b.input("y", DType::F32, [4, 5]).unwrap();
        b.push_scope("layer0");
        let e = b.matmul(x, y).unwrap_err().to_string();
        assert!(e.contains("matmul"), "{e}");
        assert!(e.contains("#2"), "{e}");
        assert!(e.contains("layer0.matmul"), "{e}");
        assert!(e.contains("[2,3]") && e.contains("[4,5]"), "{e}");
        let e = b.add(x, y).unwrap_err().to_string();
        assert!(e.contains("do not broadcast") && e.contains("[2,3]"), "{e}");
        let e = b.softmax(x, 2).unwrap_err().to_string();
        assert!(e.contains("axis 2"), "{e}");
        let i = b.input("i", DType::I32, [3]).unwrap();
        let e = b.unary(UnaryOp::Exp, i).unwrap_err().to_string();
        assert!(e.contains("float"), "{e}");
    }

    #[test]
    fn spatial_norm_checks_its_modulation_maps() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::F32, [1, 8, 8, 16]).unwrap();
        let w = b.param("w", DType::F32, [16]).unwrap();
        let sc = b.input("scale", DType::F32, [1, 2, 2, 16]).unwrap();
        let sh = b.input("shift", DType::F32, [1, 2, 2, 16]).unwrap();
        let y = b.spatial_norm(x, (w, w), (sc, sh), 4, 1e-6).unwrap();
        assert_eq!(b.shape(y), &[1, 8, 8, 16]);
        let e = b.spatial_norm(x, (w, w), (sc, sh), 3, 1e-6).unwrap_err().to_string();
        assert!(e.contains("groups 3 must divide channels 16"), "{e}");
        let wide = b.input("wide", DType::F32, [1, 2, 2, 8]).unwrap();
        let e = b.spatial_norm(x, (w, w), (wide, wide), 4, 1e-6).unwrap_err().to_string();
        assert!(e.contains("scale must be [1, h, w, 16]") && e.contains("[1,2,2,8]"), "{e}");
        let small = b.input("small", DType::F32, [1, 1, 1, 16]).unwrap();
        let e = b.spatial_norm(x, (w, w), (sc, small), 4, 1e-6).unwrap_err().to_string();
        assert!(e.contains("differ"), "{e}");
        let half = b.input("half", DType::BF16, [1, 2, 2, 16]).unwrap();
        let e = b.spatial_norm(x, (w, w), (half, half), 4, 1e-6).unwrap_err().to_string();
        assert!(e.contains("scale must be f32"), "{e}");
    }

    #[test]
    fn layout_helpers_name_the_node() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::F32, [2, 3]).unwrap();
        assert_eq!(b.dims::<2>(x, "[B, D]").unwrap(), [2, 3]);
        assert_eq!(b.last_dim(x).unwrap(), 3);
        let e = b.dims::<4>(x, "[N, H, W, C]").unwrap_err().to_string();
        assert!(e.contains("'x'") && e.contains("expected [N, H, W, C], got [2,3]"), "{e}");
        let s = b.scalar(DType::F32, 1.0).unwrap();
        assert!(b.last_dim(s).unwrap_err().to_string().contains("scalar"));
    }

    #[test]
    fn tied_params_share_a_node() {
        let mut b = GraphBuilder::new();
        let a = b.param("emb", DType::F32, [4, 2]).unwrap();
        assert_eq!(b.param("emb", DType::F32, [4, 2]).unwrap(), a);
        assert!(b.param("emb", DType::F32, [2, 4]).is_err());
    }
}
