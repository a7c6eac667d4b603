//! Fused elementwise kernels generated from the graph's fusion groups: a chain of unary,
//! binary, compare, where and cast ops over one index space becomes one CUDA kernel (NVRTC,
//! cached by source hash like the hand-written files), reading each external input once
//! (broadcast by strides) and writing only the group's result. The op semantics are the shared
//! ones in focus_common.cuh, so a fused chain computes what the separate kernels compute —
//! except that float intermediates stay f32 instead of being rounded to a half type between
//! ops (explicit casts are still applied exactly).

use super::launch::{float_suffix, Arg, Call, DevTensor, KernelCall};
use super::ops::{broadcast_layout, rank_struct};
use super::CudaError;
use focus_graph::{BinaryOp, CmpOp, DType, Graph, NodeId, Op, UnaryOp};
use std::fmt::Write;

/// Pseudo source file of generated kernels (`GpuDevice::add_generated`).
pub const GENERATED: &str = "generated";
/// Most external inputs / ops a generated kernel takes.
pub const MAX_INPUTS: usize = 8;
pub const MAX_OPS: usize = 64;
const MAX_RANK: usize = 8;

/// An operand of a fused op: an external input or the value of an earlier op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    Input(usize),
    Value(usize),
}

#[derive(Clone, Debug)]
pub struct FusedOp {
    pub op: Op,
    pub args: Vec<Operand>,
    /// The op's output dtype.
    pub dtype: DType,
}

/// A fusion group: external inputs (dtype, shape; broadcast to `shape`) and ops in order; the
/// last op's value is the output.
#[derive(Clone, Debug)]
pub struct FusedGroup {
    pub inputs: Vec<(DType, Vec<usize>)>,
    pub ops: Vec<FusedOp>,
    pub shape: Vec<usize>,
}

fn storage(dt: DType) -> &'static str {
    match dt {
        DType::F32 => "float",
        DType::F16 => "__half",
        DType::BF16 => "__nv_bfloat16",
        DType::I32 => "int",
        DType::I64 => "i64",
        DType::U8 | DType::Bool => "unsigned char",
    }
}

/// The type a value is computed in: f32 for floats, i64 for integers, int (0/1) for bool.
fn compute(dt: DType) -> &'static str {
    match dt {
        DType::F32 | DType::F16 | DType::BF16 => "float",
        DType::Bool => "int",
        _ => "i64",
    }
}

fn load(dt: DType, expr: &str) -> String {
    match dt {
        DType::Bool => format!("(int)({expr} != 0)"),
        _ => format!("load_c({expr})"),
    }
}

/// `Val` of a computed value of dtype `dt` (for casts).
fn val(dt: DType, v: &str) -> String {
    if dt.is_float() {
        format!("Val{{true, {v}, 0}}")
    } else {
        format!("Val{{false, 0.0f, (i64){v}}}")
    }
}

fn unsupported(why: String) -> CudaError {
    CudaError::Unsupported { op: "fused".into(), why }
}

impl FusedGroup {
    /// Kernel source and entry name (`fused_<hash of the body>`).
    pub fn source(&self) -> Result<(String, String), CudaError> {
        let nin = self.inputs.len();
        if nin == 0 || nin > MAX_INPUTS || self.ops.is_empty() || self.ops.len() > MAX_OPS {
            return Err(unsupported(format!("{nin} inputs, {} ops", self.ops.len())));
        }
        let dt_of = |o: &Operand| match o {
            Operand::Input(i) => self.inputs[*i].0,
            Operand::Value(j) => self.ops[*j].dtype,
        };
        let name = |o: &Operand| match o {
            Operand::Input(i) => format!("x{i}"),
            Operand::Value(j) => format!("v{j}"),
        };
        let mut body = String::new();
        for (i, (dt, _)) in self.inputs.iter().enumerate() {
            let _ = writeln!(
                body,
                "        const {} x{i} = {};",
                compute(*dt),
                load(*dt, &format!("in{i}[o[{i}]]"))
            );
        }
        for (j, f) in self.ops.iter().enumerate() {
            for a in &f.args {
                if matches!(a, Operand::Value(k) if *k >= j) || matches!(a, Operand::Input(i) if *i >= nin) {
                    return Err(unsupported(format!("op {j} reads a later value")));
                }
            }
            let a: Vec<String> = f.args.iter().map(name).collect();
            let expr = match &f.op {
                Op::Unary(u) if f.dtype.is_float() => {
                    format!(
                        "unary_op({}, {})",
                        UnaryOp::ALL.iter().position(|x| x == u).expect("listed"),
                        a[0]
                    )
                }
                Op::Binary(b) => {
                    let code = BinaryOp::ALL.iter().position(|x| x == b).expect("listed");
                    format!("binary_op({code}, {}, {})", a[0], a[1])
                }
                Op::Compare(c) => {
                    let code = CmpOp::ALL.iter().position(|x| x == c).expect("listed");
                    format!("(int)cmp_op({code}, {}, {})", a[0], a[1])
                }
                Op::Where => format!("{} ? {} : {}", a[0], a[1], a[2]),
                Op::Cast { to } => {
                    let from = dt_of(&f.args[0]);
                    let v = val(from, &a[0]);
                    match to {
                        DType::Bool => format!("(int)store_v<bool_t>({v}).v"),
                        _ => format!("load_c(store_v<{}>({v}))", storage(*to)),
                    }
                }
                other => return Err(unsupported(format!("{} is not fusable", other.kind()))),
            };
            let _ = writeln!(body, "        const {} v{j} = {expr};", compute(f.dtype));
        }
        let last = self.ops.len() - 1;
        let out_dt = self.ops[last].dtype;
        let store = match out_dt {
            DType::Bool => format!("(unsigned char)(v{last} != 0)"),
            d if d.is_float() => format!("from_f32<{}>(v{last})", storage(d)),
            d => format!("({})v{last}", storage(d)),
        };
        let params: Vec<String> = self
            .inputs
            .iter()
            .enumerate()
            .map(|(i, (dt, _))| format!("const {}* in{i}", storage(*dt)))
            .collect();
        let kernel = format!(
            "extern \"C\" __global__ void NAME({}, {}* y, u64 n, FusedIdx s) {{\n    GRID_STRIDE(i, n) {{\n        \
             u64 o[{nin}] = {{0}};\n        u64 r = i;\n        for (int d = s.rank - 1; d >= 0; --d) {{\n            \
             const u64 c = r % s.shape[d];\n            r /= s.shape[d];\n            \
             for (int k = 0; k < {nin}; ++k) o[k] += c * s.st[k][d];\n        }}\n{body}        y[i] = {store};\n    \
             }}\n}}\n",
            params.join(", "),
            storage(out_dt),
        );
        let header = format!(
            "// Generated by focus-engine from a fusion group of {} ops.\n#include \"focus_common.cuh\"\n\n\
             struct FusedIdx {{\n    int rank;\n    u64 shape[{MAX_RANK}];\n    u64 st[{nin}][{MAX_RANK}];\n}};\n\n",
            self.ops.len()
        );
        // FNV-1a of the text: the same group always gets the same entry (and cache key).
        let text = format!("{header}{kernel}");
        let hash =
            text.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
        let entry = format!("fused_{hash:016x}");
        Ok((entry.clone(), text.replace("NAME", &entry)))
    }

    /// The launch of the generated kernel `entry` on device tensors.
    pub fn plan(&self, entry: &str, ins: &[DevTensor], out: &DevTensor) -> Result<Call, CudaError> {
        let shapes: Vec<&[usize]> = ins.iter().map(|t| t.shape).collect();
        let (shape, st) = broadcast_layout(out.shape, &shapes);
        if shape.len() > MAX_RANK {
            return Err(unsupported("more than 8 non-contiguous dims".into()));
        }
        let n = out.numel();
        let mut arrays: Vec<&[usize]> = vec![&shape];
        arrays.extend(st.iter().map(|s| s.as_slice()));
        let mut args: Vec<Arg> = ins.iter().map(|t| Arg::Ptr(t.ptr)).collect();
        args.extend([Arg::Ptr(out.ptr), Arg::U64(n as u64), Arg::Bytes(rank_struct(shape.len(), &arrays))]);
        Ok(Call::Kernel(KernelCall::elementwise(GENERATED, entry.to_string(), n, args)))
    }
}

/// Build the generated-kernel description of graph nodes `members` (in topological order; the
/// last is the result). Inputs from outside become external inputs, returned in order.
/// None when a member cannot be fused or an intermediate is read outside the group.
pub fn from_graph(g: &Graph, members: &[NodeId]) -> Option<(FusedGroup, Vec<NodeId>)> {
    let uses = g.use_counts();
    let (last, inner) = members.split_last()?;
    if inner.is_empty() || members.len() > MAX_OPS {
        return None;
    }
    let mut externals: Vec<NodeId> = Vec::new();
    let mut ops = Vec::with_capacity(members.len());
    for (j, &id) in members.iter().enumerate() {
        let n = g.node(id);
        if !fusable(&n.op, n.dtype) || n.shape != g.node(*last).shape {
            return None;
        }
        if id != *last && uses[id.0] != 1 {
            return None;
        }
        let mut args = Vec::with_capacity(n.inputs.len());
        for i in &n.inputs {
            args.push(match members[..j].iter().position(|m| m == i) {
                Some(k) => Operand::Value(k),
                None => {
                    if !externals.contains(i) {
                        externals.push(*i);
                    }
                    Operand::Input(externals.iter().position(|e| e == i).expect("pushed"))
                }
            });
        }
        ops.push(FusedOp { op: n.op.clone(), args, dtype: n.dtype });
    }
    if externals.len() > MAX_INPUTS {
        return None;
    }
    let inputs = externals.iter().map(|e| (g.node(*e).dtype, g.node(*e).shape.dims().to_vec())).collect();
    Some((FusedGroup { inputs, ops, shape: g.node(*last).shape.dims().to_vec() }, externals))
}

/// Whether a node with this op and dtype can join a generated kernel.
pub fn fusable(op: &Op, dtype: DType) -> bool {
    match op {
        Op::Unary(_) => float_suffix(dtype).is_some(),
        Op::Binary(_) | Op::Compare(_) | Op::Where | Op::Cast { .. } => true,
        _ => false,
    }
}

/// GPU parity cases for generated kernels: (name, group, inputs drawn like op cases).
pub fn cases() -> Vec<(String, FusedGroup, Vec<super::case::Input>)> {
    use super::case::Input;
    let op = |op: Op, args: Vec<Operand>, dtype: DType| FusedOp { op, args, dtype };
    let (i, v) = (Operand::Input, Operand::Value);
    let mut out = Vec::new();
    for dt in [DType::F32, DType::BF16] {
        // silu(gate) * up (Qwen MLP).
        let g = FusedGroup {
            inputs: vec![(dt, vec![37, 301]), (dt, vec![37, 301])],
            ops: vec![
                op(Op::Unary(UnaryOp::Silu), vec![i(0)], dt),
                op(Op::Binary(BinaryOp::Mul), vec![v(0), i(1)], dt),
            ],
            shape: vec![37, 301],
        };
        let ins = vec![Input::uniform(dt, &[37, 301], -3.0, 3.0), Input::uniform(dt, &[37, 301], -1.0, 1.0)];
        out.push((format!("fused silu*mul {dt}"), g, ins));
        // gelu(x + bias) * gamma + residual, bias and gamma broadcast over rows (ConvNeXt block tail).
        let g = FusedGroup {
            inputs: vec![(dt, vec![5, 7, 96]), (dt, vec![96]), (dt, vec![96]), (dt, vec![5, 7, 96])],
            ops: vec![
                op(Op::Binary(BinaryOp::Add), vec![i(0), i(1)], dt),
                op(Op::Unary(UnaryOp::Gelu), vec![v(0)], dt),
                op(Op::Binary(BinaryOp::Mul), vec![v(1), i(2)], dt),
                op(Op::Binary(BinaryOp::Add), vec![v(2), i(3)], dt),
            ],
            shape: vec![5, 7, 96],
        };
        let ins = vec![
            Input::uniform(dt, &[5, 7, 96], -2.0, 2.0),
            Input::uniform(dt, &[96], -0.5, 0.5),
            Input::uniform(dt, &[96], 0.05, 0.15),
            Input::uniform(dt, &[5, 7, 96], -1.0, 1.0),
        ];
        out.push((format!("fused add-gelu-scale-residual {dt}"), g, ins));
    }
    // Integer positions → mask → where, then a cast to f16: mixed dtypes in one kernel.
    let g = FusedGroup {
        inputs: vec![
            (DType::I32, vec![1, 64]),
            (DType::I32, vec![9, 1]),
            (DType::F32, vec![9, 64]),
            (DType::F32, vec![1]),
        ],
        ops: vec![
            op(Op::Compare(CmpOp::Le), vec![i(0), i(1)], DType::Bool),
            op(Op::Where, vec![v(0), i(2), i(3)], DType::F32),
            op(Op::Cast { to: DType::F16 }, vec![v(1)], DType::F16),
        ],
        shape: vec![9, 64],
    };
    let ins = vec![
        Input::ints(DType::I32, &[1, 64], 0, 63),
        Input::ints(DType::I32, &[9, 1], 0, 63),
        Input::uniform(DType::F32, &[9, 64], -100.0, 100.0),
        Input::uniform(DType::F32, &[1], -1.0, 1.0),
    ];
    out.push(("fused compare-where-cast mixed".into(), g, ins));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// silu(gate) * up, then cast to bf16: the Qwen MLP's elementwise part.
    pub(crate) fn swiglu() -> FusedGroup {
        FusedGroup {
            inputs: vec![(DType::F32, vec![4, 6]), (DType::F32, vec![4, 6])],
            ops: vec![
                FusedOp { op: Op::Unary(UnaryOp::Silu), args: vec![Operand::Input(0)], dtype: DType::F32 },
                FusedOp {
                    op: Op::Binary(BinaryOp::Mul),
                    args: vec![Operand::Value(0), Operand::Input(1)],
                    dtype: DType::F32,
                },
                FusedOp {
                    op: Op::Cast { to: DType::BF16 },
                    args: vec![Operand::Value(1)],
                    dtype: DType::BF16,
                },
            ],
            shape: vec![4, 6],
        }
    }

    #[test]
    fn generated_source_is_deterministic_and_typed() {
        let (e1, s1) = swiglu().source().unwrap();
        let (e2, s2) = swiglu().source().unwrap();
        assert_eq!((e1.clone(), s1.clone()), (e2, s2));
        assert!(
            s1.contains(&format!("void {e1}(const float* in0, const float* in1, __nv_bfloat16* y")),
            "{s1}"
        );
        assert!(s1.contains("unary_op(3, x0)") && s1.contains("binary_op(2, v0, x1)"), "{s1}");
        assert!(s1.contains("load_c(store_v<__nv_bfloat16>(Val{true, v1, 0}))"), "{s1}");
    }

    #[test]
    fn forward_references_and_non_elementwise_ops_are_refused() {
        let mut g = swiglu();
        g.ops[0].args = vec![Operand::Value(1)];
        assert!(g.source().is_err());
        let mut g = swiglu();
        g.ops[0].op = Op::Softmax { axis: 0 };
        assert!(g.source().is_err());
    }

    #[test]
    fn plan_broadcasts_inputs_by_strides() {
        let g = swiglu();
        let (a, b, o) = ([4usize, 6], [6usize], [4usize, 6]);
        let ins = [
            DevTensor { dtype: DType::F32, shape: &a, ptr: 8 },
            DevTensor { dtype: DType::F32, shape: &b, ptr: 16 },
        ];
        let out = DevTensor { dtype: DType::BF16, shape: &o, ptr: 24 };
        let Call::Kernel(k) = g.plan("fused_x", &ins, &out).unwrap() else { panic!("a kernel") };
        assert_eq!(k.args[4], Arg::Bytes(rank_struct(2, &[&[4, 6], &[6, 1], &[0, 1]])));
    }
}
