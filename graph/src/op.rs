//! The op set. Each variant's shape/dtype rule is in `infer.rs`, its cost in `cost.rs`,
//! its CPU implementation in `focus-kernels`.

use crate::dtype::DType;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// GELU with the exact erf form.
    Gelu,
    /// GELU with the tanh approximation.
    GeluTanh,
    /// x * sigmoid(1.702 x) (CLIP / Qwen2-VL ViT).
    QuickGelu,
    Silu,
    Sigmoid,
    Tanh,
    Relu,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Neg,
    Abs,
    Sin,
    Cos,
    Recip,
    Square,
}

impl UnaryOp {
    pub const ALL: [UnaryOp; 17] = [
        UnaryOp::Gelu,
        UnaryOp::GeluTanh,
        UnaryOp::QuickGelu,
        UnaryOp::Silu,
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
        UnaryOp::Relu,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Rsqrt,
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Sin,
        UnaryOp::Cos,
        UnaryOp::Recip,
        UnaryOp::Square,
    ];
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Gelu => "gelu",
            UnaryOp::GeluTanh => "gelu_tanh",
            UnaryOp::QuickGelu => "quick_gelu",
            UnaryOp::Silu => "silu",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Relu => "relu",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Rsqrt => "rsqrt",
            UnaryOp::Neg => "neg",
            UnaryOp::Abs => "abs",
            UnaryOp::Sin => "sin",
            UnaryOp::Cos => "cos",
            UnaryOp::Recip => "recip",
            UnaryOp::Square => "square",
        }
    }
    /// Approximate FLOPs per element (transcendentals count as several).
    pub fn flops_per_elem(self) -> u64 {
        match self {
            UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Relu | UnaryOp::Square => 1,
            UnaryOp::Recip | UnaryOp::Sqrt | UnaryOp::Rsqrt => 2,
            UnaryOp::Exp | UnaryOp::Log | UnaryOp::Sin | UnaryOp::Cos => 4,
            UnaryOp::Sigmoid | UnaryOp::Tanh => 5,
            UnaryOp::Silu | UnaryOp::QuickGelu => 6,
            UnaryOp::Gelu | UnaryOp::GeluTanh => 8,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    Pow,
}

impl BinaryOp {
    pub const ALL: [BinaryOp; 7] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Pow,
    ];
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Max => "max",
            BinaryOp::Min => "min",
            BinaryOp::Pow => "pow",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub const ALL: [CmpOp; 6] = [CmpOp::Eq, CmpOp::Ne, CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge];
    pub fn name(self) -> &'static str {
        match self {
            CmpOp::Eq => "eq",
            CmpOp::Ne => "ne",
            CmpOp::Lt => "lt",
            CmpOp::Le => "le",
            CmpOp::Gt => "gt",
            CmpOp::Ge => "ge",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
    Min,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArgOp {
    ArgMax,
    ArgMin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RopeKind {
    /// Qwen2 text RoPE: positions `[T]` (i32), pairs dim i with i+D/2, `inv_freq[i] = theta^(-2i/D)`.
    OneD,
    /// Qwen2-VL ViT RoPE: positions `[T,2]` (row, col); D/4 frequencies `theta^(-j/(D/4))`,
    /// dims [0,D/4) rotate by row, [D/4,D/2) by col, each paired with the dim D/2 above it.
    TwoD,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResizeMode {
    /// PyTorch `nearest` (source index = floor(dst * in/out)).
    Nearest,
    Bilinear,
    /// Cubic convolution with a = -0.75 (PyTorch).
    Bicubic,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Conv2dParams {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams { stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1 }
    }
}

/// Every op a graph node can hold. Layout conventions:
/// - images and conv feature maps are channels-last `[N, H, W, C]`;
/// - conv weights are `[Cout, KH, KW, Cin/groups]` (checkpoint OIHW is permuted once, at load);
/// - linear weights keep the checkpoint layout `[out, in]`;
/// - attention tensors are `[B, T, H, D]`.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A named runtime input.
    Input {
        name: String,
    },
    /// A weight referenced by its checkpoint name; the node's dtype/shape are what loading validates.
    Param {
        name: String,
    },
    /// Constant data (little-endian bytes of the node's dtype and shape).
    Constant {
        data: Arc<[u8]>,
    },
    /// A persistent buffer owned by the plan (KV cache, latents, mask): zero at compile time,
    /// kept across runs, movable between plans.
    State {
        name: String,
    },
    /// In-place write of `src` into the state `dst` along `axis` at the position held by the
    /// integer tensor `offset [1]`. The output is `dst` itself, updated; consumers that depend
    /// on the update read this node, not the state directly.
    WriteSlice {
        axis: usize,
    },

    /// `a [..., M, K] @ b [..., K, N]`, batch dims broadcast; `trans_*` transpose the last two dims.
    MatMul {
        trans_a: bool,
        trans_b: bool,
    },
    /// `x [..., K]`, `w [N, K]`, optional `bias [N]` → `[..., N]`.
    Linear,
    /// The gated MLP half (SwiGLU): `act(x·w_gateᵀ + b_gate) ⊙ (x·w_upᵀ + b_up)` with `x [..., K]`,
    /// `w_gate`, `w_up [N, K]`, optional biases `[N]` (both or none) → `[..., N]`; in f32,
    /// rounded once. One op so a decode step reads both weights in one launch.
    GatedLinear {
        act: UnaryOp,
    },
    /// `parts` projections of one input: `x [..., K]`, weights `w_i [N_i, K]`, then optionally
    /// biases `b_i [N_i]` (all or none). The outputs `x·w_iᵀ + b_i` (`[rows, N_i]` row-major,
    /// rows = numel(x) / K) follow one another in a flat `[rows · ΣN_i]`, so each is one
    /// contiguous block a slice can view without a copy: a decode step's q, k and v from their
    /// separate checkpoint weights in one launch, with no concatenated weight copy.
    MultiLinear {
        parts: usize,
    },
    /// `x [N, H, W, Cin]`, `w [Cout, KH, KW, Cin/g]`, optional `bias [Cout]` → `[N, Ho, Wo, Cout]`.
    Conv2d(Conv2dParams),

    Unary(UnaryOp),
    /// Broadcasting binary op; both inputs share a dtype.
    Binary(BinaryOp),
    /// Broadcasting comparison → bool.
    Compare(CmpOp),
    /// `where(cond: bool, a, b)`, broadcasting.
    Where,
    Cast {
        to: DType,
    },

    /// Reduce over sorted, unique `axes`.
    Reduce {
        op: ReduceOp,
        axes: Vec<usize>,
        keepdim: bool,
    },
    /// Index (i64) of the max/min along `axis`; ties resolve to the lowest index.
    ArgReduce {
        op: ArgOp,
        axis: usize,
        keepdim: bool,
    },
    Softmax {
        axis: usize,
    },
    /// Over the last axis; inputs `x`, optional `weight`, optional `bias`.
    LayerNorm {
        eps: f32,
    },
    /// Gated linear unit over the last axis: `x [..., 2n]` → `x[..., :n] · act(x[..., n:])`, in f32
    /// rounded once (diffusers' GEGLU with `act` = GELU; SwiGLU with SiLU).
    Glu {
        act: UnaryOp,
    },
    /// Over the last axis: `x * rsqrt(mean(x²) + eps) * weight`, statistics in f32.
    RmsNorm {
        eps: f32,
    },
    /// Channels-last `x [N, ..., C]`, `groups | C`; optional `weight [C]`, `bias [C]`.
    GroupNorm {
        groups: usize,
        eps: f32,
    },
    /// MoVQ's SpatialNorm on channels-last `x [N, H, W, C]`: `GroupNorm(x) · weight + bias`, then
    /// `· scale + shift` with `scale`, `shift [N, h, w, C]` read at the nearest source pixel
    /// (PyTorch `nearest`: `floor(i · (h / H))`). A 1×1 conv commutes with nearest resizing, so
    /// the modulation convs run at the quantised map's resolution and no upsampled map exists.
    SpatialNorm {
        groups: usize,
        eps: f32,
    },
    /// `x [..., T, H, D]` and integer positions (`[T]` for 1-D, `[T, 2]` for 2-D).
    Rope {
        kind: RopeKind,
        theta: f32,
    },
    /// Scaled dot-product attention: `q [B, Tq, Hq, D]`, `k [B, Tk, Hkv, D]`, `v [B, Tk, Hkv, Dv]`,
    /// optional mask broadcastable to `[B, Hq, Tq, Tk]` (bool: true = attend; float: added to
    /// scores). `Hq % Hkv == 0` (GQA). Causal masking is bottom-right aligned (query i sits at
    /// key position `Tk - Tq + i`). Fully masked rows produce zeros. Output `[B, Tq, Hq, Dv]`.
    Attention {
        causal: bool,
        scale: f32,
    },
    /// Packed variable-length attention (FlashAttention's varlen layout): `q [B, T, Hq, D]`,
    /// `k [B, T, Hkv, D]`, `v [B, T, Hkv, Dv]` hold consecutive sequences of `seqlens` tokens
    /// (all > 0, summing to T) and a token attends only within its own sequence (causal: to
    /// itself and the tokens before it there). Windowed attention without a `T × T` mask, and
    /// with work proportional to Σ len² rather than T². Output `[B, T, Hq, Dv]`.
    VarlenAttention {
        causal: bool,
        scale: f32,
        seqlens: Vec<usize>,
    },

    /// NumPy `take`: `x`, integer `idx` of any shape → `x.shape[..axis] ++ idx.shape ++ x.shape[axis+1..]`.
    IndexSelect {
        axis: usize,
    },
    /// `torch.gather`: `idx` has `x`'s rank; output has `idx`'s shape.
    TakeAlongAxis {
        axis: usize,
    },
    Concat {
        axis: usize,
    },
    Slice {
        axis: usize,
        start: usize,
        end: usize,
        step: usize,
    },
    /// Same data, new shape (no copy: the output aliases the input).
    Reshape {
        shape: Vec<usize>,
    },
    Permute {
        perm: Vec<usize>,
    },
    /// Constant padding, `(before, after)` per axis.
    Pad {
        pads: Vec<(usize, usize)>,
        value: f32,
    },
    /// Spatial resize of `[N, H, W, C]` to `[N, out[0], out[1], C]` (PyTorch conventions).
    Resize {
        mode: ResizeMode,
        out: [usize; 2],
        align_corners: bool,
        antialias: bool,
    },
    /// `[N, H, W, C]`, PyTorch `avg_pool2d` semantics.
    AvgPool2d {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        count_include_pad: bool,
    },
    /// `[N, H, W, C·r²]` → `[N, H·r, W·r, C]`, channel `c·r² + i·r + j` goes to `(h·r+i, w·r+j, c)`.
    PixelShuffle {
        r: usize,
    },
    /// Inverse of `PixelShuffle`.
    PixelUnshuffle {
        r: usize,
    },
    /// Nearest codebook row by L2 (f32): `x [..., D]`, `codebook [K, D]` → i64 `[...]`, ties to lowest.
    VqNearest,
    /// Bilinear, zero padding: `x [N, H, W, C]`, `grid [N, Ho, Wo, 2]` (x, y in [-1, 1]) → `[N, Ho, Wo, C]`.
    GridSample {
        align_corners: bool,
    },
    /// Multi-scale deformable attention sampling (Deformable DETR / Mask2Former):
    /// `value [N, S, Hh, Dh]` with `S = Σ h_l·w_l` over `levels`, `loc [N, Q, Hh, L, P, 2]` in [0, 1],
    /// `weights [N, Q, Hh, L, P]` → `[N, Q, Hh·Dh]`. Bilinear, zero padding, align_corners=False.
    MsDeformAttn {
        levels: Vec<[usize; 2]>,
    },
    /// Indices (i64) of the `k` largest values along `axis`, descending, ties to the lowest index.
    TopK {
        k: usize,
        axis: usize,
    },
    /// One token per row drawn from sorted candidates, as the host sampler draws it:
    /// `values [B, K]` (descending; `-inf` marks no candidate), `ids [B, K]` i64 and
    /// `params [B, 5]` f32 = (temperature, top_k, top_p, u_hi, u_lo), `u = u_hi + u_lo` in
    /// [0, 1). Greedy (temperature 0 or top_k 1) takes the first; else the first `top_k` (0: all)
    /// are weighted `exp((v - v₀) / T)`, cut to the smallest prefix reaching `top_p` of the
    /// mass, and the one where `u ×` mass falls is taken. Output `[B]` i64, -1 for no candidate.
    SampleSorted,
    /// Sinusoidal timestep embedding (diffusers `get_timestep_embedding`): `t [N]` → f32 `[N, dim]`.
    TimestepEmbedding {
        dim: usize,
        flip_sin_to_cos: bool,
        downscale_freq_shift: f32,
        max_period: f32,
    },
}

impl Op {
    /// Short op-kind name used in dumps, profiles and the op table.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Param { .. } => "param",
            Op::Constant { .. } => "constant",
            Op::State { .. } => "state",
            Op::WriteSlice { .. } => "write_slice",
            Op::MatMul { .. } => "matmul",
            Op::Linear => "linear",
            Op::GatedLinear { .. } => "gated_linear",
            Op::MultiLinear { .. } => "multi_linear",
            Op::Conv2d(_) => "conv2d",
            Op::Unary(u) => u.name(),
            Op::Binary(b) => b.name(),
            Op::Compare(c) => c.name(),
            Op::Where => "where",
            Op::Cast { .. } => "cast",
            Op::Reduce { op, .. } => match op {
                ReduceOp::Sum => "sum",
                ReduceOp::Mean => "mean",
                ReduceOp::Max => "reduce_max",
                ReduceOp::Min => "reduce_min",
            },
            Op::ArgReduce { op, .. } => match op {
                ArgOp::ArgMax => "argmax",
                ArgOp::ArgMin => "argmin",
            },
            Op::Softmax { .. } => "softmax",
            Op::LayerNorm { .. } => "layer_norm",
            Op::RmsNorm { .. } => "rms_norm",
            Op::Glu { .. } => "glu",
            Op::GroupNorm { .. } => "group_norm",
            Op::SpatialNorm { .. } => "spatial_norm",
            Op::Rope { kind, .. } => match kind {
                RopeKind::OneD => "rope_1d",
                RopeKind::TwoD => "rope_2d",
            },
            Op::Attention { .. } => "attention",
            Op::VarlenAttention { .. } => "varlen_attention",
            Op::IndexSelect { .. } => "index_select",
            Op::TakeAlongAxis { .. } => "take_along_axis",
            Op::Concat { .. } => "concat",
            Op::Slice { .. } => "slice",
            Op::Reshape { .. } => "reshape",
            Op::Permute { .. } => "permute",
            Op::Pad { .. } => "pad",
            Op::Resize { mode, .. } => match mode {
                ResizeMode::Nearest => "resize_nearest",
                ResizeMode::Bilinear => "resize_bilinear",
                ResizeMode::Bicubic => "resize_bicubic",
            },
            Op::AvgPool2d { .. } => "avg_pool2d",
            Op::PixelShuffle { .. } => "pixel_shuffle",
            Op::PixelUnshuffle { .. } => "pixel_unshuffle",
            Op::VqNearest => "vq_nearest",
            Op::GridSample { .. } => "grid_sample",
            Op::MsDeformAttn { .. } => "ms_deform_attn",
            Op::TopK { .. } => "top_k",
            Op::SampleSorted => "sample_sorted",
            Op::TimestepEmbedding { .. } => "timestep_embedding",
        }
    }

    /// Nodes that hold data rather than compute it.
    pub fn is_leaf(&self) -> bool {
        matches!(self, Op::Input { .. } | Op::Param { .. } | Op::Constant { .. } | Op::State { .. })
    }

    /// Pointwise ops that a backend may fuse into one kernel.
    pub fn is_elementwise(&self) -> bool {
        matches!(self, Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Where | Op::Cast { .. })
    }

    /// Ops whose output shares the storage of their first input.
    pub fn is_alias(&self) -> bool {
        matches!(self, Op::Reshape { .. } | Op::WriteSlice { .. })
    }

    /// Every op kind with a representative (for op tables): one entry per kind name.
    pub fn catalogue() -> Vec<Op> {
        let mut v = vec![
            Op::Input { name: String::new() },
            Op::Param { name: String::new() },
            Op::Constant { data: Arc::from(Vec::new()) },
            Op::State { name: String::new() },
            Op::WriteSlice { axis: 0 },
            Op::MatMul { trans_a: false, trans_b: false },
            Op::Linear,
            Op::GatedLinear { act: UnaryOp::Silu },
            Op::MultiLinear { parts: 3 },
            Op::Conv2d(Conv2dParams::default()),
        ];
        v.extend(UnaryOp::ALL.iter().map(|&u| Op::Unary(u)));
        v.extend(BinaryOp::ALL.iter().map(|&b| Op::Binary(b)));
        v.extend(CmpOp::ALL.iter().map(|&c| Op::Compare(c)));
        v.extend([Op::Where, Op::Cast { to: DType::F32 }]);
        for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min] {
            v.push(Op::Reduce { op, axes: vec![0], keepdim: false });
        }
        for op in [ArgOp::ArgMax, ArgOp::ArgMin] {
            v.push(Op::ArgReduce { op, axis: 0, keepdim: false });
        }
        v.extend([
            Op::Softmax { axis: 0 },
            Op::LayerNorm { eps: 0.0 },
            Op::Glu { act: UnaryOp::Gelu },
            Op::RmsNorm { eps: 0.0 },
            Op::GroupNorm { groups: 1, eps: 0.0 },
            Op::SpatialNorm { groups: 1, eps: 0.0 },
            Op::Rope { kind: RopeKind::OneD, theta: 0.0 },
            Op::Rope { kind: RopeKind::TwoD, theta: 0.0 },
            Op::Attention { causal: false, scale: 1.0 },
            Op::VarlenAttention { causal: false, scale: 1.0, seqlens: vec![] },
            Op::IndexSelect { axis: 0 },
            Op::TakeAlongAxis { axis: 0 },
            Op::Concat { axis: 0 },
            Op::Slice { axis: 0, start: 0, end: 0, step: 1 },
            Op::Reshape { shape: vec![] },
            Op::Permute { perm: vec![] },
            Op::Pad { pads: vec![], value: 0.0 },
        ]);
        for mode in [ResizeMode::Nearest, ResizeMode::Bilinear, ResizeMode::Bicubic] {
            v.push(Op::Resize { mode, out: [1, 1], align_corners: false, antialias: false });
        }
        v.extend([
            Op::AvgPool2d { kernel: [1, 1], stride: [1, 1], padding: [0, 0], count_include_pad: true },
            Op::PixelShuffle { r: 1 },
            Op::PixelUnshuffle { r: 1 },
            Op::VqNearest,
            Op::GridSample { align_corners: false },
            Op::MsDeformAttn { levels: vec![] },
            Op::TopK { k: 1, axis: 0 },
            Op::SampleSorted,
            Op::TimestepEmbedding {
                dim: 2,
                flip_sin_to_cos: false,
                downscale_freq_shift: 0.0,
                max_period: 1e4,
            },
        ]);
        v
    }
}
