//! Small helpers shared by model builders.

use focus_graph::{Conv2dParams, DType, GraphBuilder, NodeId, Result, Shape};

/// Named intermediate activations (for parity against the reference's).
pub type Intermediates = Vec<(String, NodeId)>;

/// A weight by checkpoint name.
pub fn param(b: &mut GraphBuilder, name: &str, dt: DType, shape: impl Into<Shape>) -> Result<NodeId> {
    b.param(name, dt, shape)
}

/// A conv weight declared in the checkpoint's OIHW layout and permuted to the engine's OHWI;
/// the permute depends only on the weight, so it is folded once at load time.
pub fn conv_weight(b: &mut GraphBuilder, name: &str, dt: DType, oihw: [usize; 4]) -> Result<NodeId> {
    let w = b.param(name, dt, oihw)?;
    b.permute(w, &[0, 2, 3, 1])
}

/// `x · {name}.weightᵀ (+ {name}.bias)`, the weight `[out, in]` as checkpoints store it.
pub fn linear(
    b: &mut GraphBuilder,
    dt: DType,
    name: &str,
    x: NodeId,
    out: usize,
    bias: bool,
) -> Result<NodeId> {
    let inp = b.last_dim(x)?;
    let w = param(b, &format!("{name}.weight"), dt, [out, inp])?;
    let bias = if bias { Some(param(b, &format!("{name}.bias"), dt, [out])?) } else { None };
    b.linear(x, w, bias)
}

/// A 1×1 conv (OIHW weight `[out, in, 1, 1]`, bias) as a linear over the channel axis.
pub fn conv1x1(b: &mut GraphBuilder, dt: DType, name: &str, x: NodeId, out: usize) -> Result<NodeId> {
    let inp = b.last_dim(x)?;
    let w = param(b, &format!("{name}.weight"), dt, [out, inp, 1, 1])?;
    let w = b.reshape(w, [out, inp])?;
    let bias = param(b, &format!("{name}.bias"), dt, [out])?;
    b.linear(x, w, Some(bias))
}

/// A `k`×`k` conv with same padding on a channels-last map, the checkpoint's OIHW
/// `{name}.weight` (and `{name}.bias`).
pub fn conv(
    b: &mut GraphBuilder,
    dt: DType,
    name: &str,
    x: NodeId,
    (cout, k, stride): (usize, usize, usize),
    bias: bool,
) -> Result<NodeId> {
    let cin = b.last_dim(x)?;
    let w = conv_weight(b, &format!("{name}.weight"), dt, [cout, cin, k, k])?;
    let bias = if bias { Some(param(b, &format!("{name}.bias"), dt, [cout])?) } else { None };
    let p = Conv2dParams { stride: [stride, stride], padding: [k / 2, k / 2], ..Default::default() };
    b.conv2d(x, w, bias, p)
}

/// Channels-last GroupNorm with `{name}.weight` and `{name}.bias`.
pub fn group_norm(
    b: &mut GraphBuilder,
    dt: DType,
    name: &str,
    x: NodeId,
    groups: usize,
    eps: f32,
) -> Result<NodeId> {
    let ch = b.last_dim(x)?;
    let w = param(b, &format!("{name}.weight"), dt, [ch])?;
    let bias = param(b, &format!("{name}.bias"), dt, [ch])?;
    b.group_norm(x, w, bias, groups, eps)
}

/// LayerNorm over the last axis with `{name}.weight` and `{name}.bias`.
pub fn layer_norm(b: &mut GraphBuilder, dt: DType, name: &str, x: NodeId, eps: f32) -> Result<NodeId> {
    let d = b.last_dim(x)?;
    let w = param(b, &format!("{name}.weight"), dt, [d])?;
    let bias = param(b, &format!("{name}.bias"), dt, [d])?;
    b.layer_norm(x, Some(w), Some(bias), eps)
}
