//! FOCUS-only perception modules (spec §5, dimensions are config fields until weights exist):
//! the dual-branch fusion cross-attention (vanilla-ViT tokens attend over ConvNeXt tokens) and
//! the gated cross-attention adapter (learnable queries over several ConvNeXt scales).

use crate::common::{conv_weight, param};
use focus_graph::{Conv2dParams, DType, GraphBuilder, NodeId, Result, UnaryOp};

/// Multi-head attention with separate q/k/v/o projections (`{p}.q_proj` …) on `[B, N, C]`.
#[allow(clippy::too_many_arguments)]
pub fn cross_attention(
    b: &mut GraphBuilder,
    p: &str,
    dt: DType,
    x: NodeId,
    ctx: NodeId,
    (d_q, d_kv, d, heads): (usize, usize, usize, usize),
    bias: bool,
) -> Result<NodeId> {
    let lin = |b: &mut GraphBuilder, name: &str, x: NodeId, inp: usize, out: usize| -> Result<NodeId> {
        let w = param(b, &format!("{p}.{name}.weight"), dt, [out, inp])?;
        let bias = if bias { Some(param(b, &format!("{p}.{name}.bias"), dt, [out])?) } else { None };
        b.linear(x, w, bias)
    };
    let (xs, cs) = (b.shape(x).to_vec(), b.shape(ctx).to_vec());
    let (bn, n, m, dh) = (xs[0], xs[1], cs[1], d / heads);
    let q = lin(b, "q_proj", x, d_q, d)?;
    let k = lin(b, "k_proj", ctx, d_kv, d)?;
    let v = lin(b, "v_proj", ctx, d_kv, d)?;
    let q = b.reshape(q, [bn, n, heads, dh])?;
    let k = b.reshape(k, [bn, m, heads, dh])?;
    let v = b.reshape(v, [bn, m, heads, dh])?;
    let o = b.attention(q, k, v, None, false, 1.0 / (dh as f32).sqrt())?;
    let o = b.reshape(o, [bn, n, d])?;
    lin(b, "o_proj", o, d, d)
}

fn layer_norm(b: &mut GraphBuilder, p: &str, dt: DType, x: NodeId, dim: usize, eps: f32) -> Result<NodeId> {
    let w = param(b, &format!("{p}.weight"), dt, [dim])?;
    let bias = param(b, &format!("{p}.bias"), dt, [dim])?;
    b.layer_norm(x, Some(w), Some(bias), eps)
}

/// `[B, H, W, C]` → `[B, H·W, C]` (row-major tokens; free in channels-last).
fn tokens(b: &mut GraphBuilder, x: NodeId) -> Result<NodeId> {
    let s = b.shape(x).to_vec();
    b.reshape(x, [s[0], s[1] * s[2], s[3]])
}

#[derive(Clone, Debug, PartialEq)]
pub struct FusionConfig {
    pub d_q: usize,
    pub d_kv: usize,
    pub d: usize,
    pub heads: usize,
    pub mlp_ratio: usize,
    pub query_residual: bool,
    pub prefix: String,
    pub dtype: DType,
}

impl FusionConfig {
    /// The spec's recommended form at d = 2048 over the res5 map (spec §5.1, inferred).
    pub fn paper() -> Self {
        FusionConfig {
            d_q: 2048,
            d_kv: 1536,
            d: 2048,
            heads: 16,
            mlp_ratio: 4,
            query_residual: false,
            prefix: "fusion.".into(),
            dtype: DType::F32,
        }
    }
}

/// `E' = o(MHA(q(LN(x_low)), kv(LN(x_high))))` (+ `x_low` with `query_residual`), then
/// `E = E' + fc2(GELU(fc1(LN(E'))))`. `x_low [B, Nq, d_q]`, `x_high [B, h, w, d_kv]`.
pub fn fusion(b: &mut GraphBuilder, c: &FusionConfig, x_low: NodeId, x_high: NodeId) -> Result<NodeId> {
    let (p, dt) = (c.prefix.trim_end_matches('.'), c.dtype);
    b.scoped("fusion", |b| {
        let kv = tokens(b, x_high)?;
        let q = layer_norm(b, &format!("{p}.norm_q"), dt, x_low, c.d_q, 1e-6)?;
        let kv = layer_norm(b, &format!("{p}.norm_kv"), dt, kv, c.d_kv, 1e-6)?;
        let mut e = cross_attention(b, &format!("{p}.attn"), dt, q, kv, (c.d_q, c.d_kv, c.d, c.heads), true)?;
        if c.query_residual {
            e = b.add(e, x_low)?;
        }
        let h = layer_norm(b, &format!("{p}.norm_mlp"), dt, e, c.d, 1e-6)?;
        let hid = c.mlp_ratio * c.d;
        let w1 = param(b, &format!("{p}.fc1.weight"), dt, [hid, c.d])?;
        let b1 = param(b, &format!("{p}.fc1.bias"), dt, [hid])?;
        let w2 = param(b, &format!("{p}.fc2.weight"), dt, [c.d, hid])?;
        let b2 = param(b, &format!("{p}.fc2.bias"), dt, [c.d])?;
        let h = b.linear(h, w1, Some(b1))?;
        let h = b.unary(UnaryOp::Gelu, h)?;
        let h = b.linear(h, w2, Some(b2))?;
        b.add(e, h)
    })
}

#[derive(Clone, Debug, PartialEq)]
pub struct AdapterConfig {
    pub in_channels: Vec<usize>,
    pub d: usize,
    pub heads: usize,
    pub n_queries: usize,
    pub ff_mult: usize,
    pub llm_hidden: usize,
    /// Keys/values also include the normalised latents (Flamingo perceiver form).
    pub kv_include_latents: bool,
    pub prefix: String,
    pub dtype: DType,
}

impl AdapterConfig {
    /// Over ConvNeXt-L res3..res5 into the Qwen2.5-3B width (spec §5.2, inferred).
    pub fn paper() -> Self {
        AdapterConfig {
            in_channels: vec![384, 768, 1536],
            d: 512,
            heads: 8,
            n_queries: 128,
            ff_mult: 4,
            llm_hidden: 2048,
            kv_include_latents: false,
            prefix: "adapter.".into(),
            dtype: DType::F32,
        }
    }
}

/// Learnable queries `h` pass one gated layer per scale:
/// `h += tanh(attn_gate)·Attn(LN(h), LN(G_p(f_j)))`, `h += tanh(ff_gate)·FFN(h)`, with
/// `G_p(f_j) = conv1x1(f_j) + level_embed[j]`; out `proj_out(LN(h))`. `feats` are `[B, h, w, C_j]`.
pub fn adapter(b: &mut GraphBuilder, c: &AdapterConfig, feats: &[NodeId]) -> Result<NodeId> {
    let (p, dt, d) = (c.prefix.trim_end_matches('.'), c.dtype, c.d);
    b.scoped("adapter", |b| {
        let batch = b.shape(feats[0])[0];
        let lat = param(b, &format!("{p}.latents"), dt, [c.n_queries, d])?;
        let lat = b.reshape(lat, [1, c.n_queries, d])?;
        let mut h = if batch == 1 { lat } else { b.concat(&vec![lat; batch], 0)? };
        let level_embed = param(b, &format!("{p}.level_embed"), dt, [c.in_channels.len(), d])?;
        for (j, (&f, &cin)) in feats.iter().zip(&c.in_channels).enumerate() {
            let lp = format!("{p}.layers.{j}");
            let w = conv_weight(b, &format!("{p}.level_proj.{j}.weight"), dt, [d, cin, 1, 1])?;
            let bias = param(b, &format!("{p}.level_proj.{j}.bias"), dt, [d])?;
            let m = b.conv2d(f, w, Some(bias), Conv2dParams::default())?;
            let m = tokens(b, m)?;
            let e = b.slice(level_embed, 0, j, j + 1)?;
            let m = b.add(m, e)?;
            let q = layer_norm(b, &format!("{lp}.norm_latents"), dt, h, d, 1e-5)?;
            let kv = layer_norm(b, &format!("{lp}.norm_media"), dt, m, d, 1e-5)?;
            let kv = if c.kv_include_latents { b.concat(&[kv, q], 1)? } else { kv };
            let a = cross_attention(b, &format!("{lp}.attn"), dt, q, kv, (d, d, d, c.heads), false)?;
            let g = param(b, &format!("{lp}.attn_gate"), dt, [1])?;
            let g = b.unary(UnaryOp::Tanh, g)?;
            let a = b.mul(a, g)?;
            h = b.add(h, a)?;
            let hid = c.ff_mult * d;
            let f = layer_norm(b, &format!("{lp}.ff.0"), dt, h, d, 1e-5)?;
            let w1 = param(b, &format!("{lp}.ff.1.weight"), dt, [hid, d])?;
            let w2 = param(b, &format!("{lp}.ff.3.weight"), dt, [d, hid])?;
            let f = b.linear(f, w1, None)?;
            let f = b.unary(UnaryOp::Gelu, f)?;
            let f = b.linear(f, w2, None)?;
            let g = param(b, &format!("{lp}.ff_gate"), dt, [1])?;
            let g = b.unary(UnaryOp::Tanh, g)?;
            let f = b.mul(f, g)?;
            h = b.add(h, f)?;
        }
        let h = layer_norm(b, &format!("{p}.norm_out"), dt, h, d, 1e-5)?;
        let w = param(b, &format!("{p}.proj_out.weight"), dt, [c.llm_hidden, d])?;
        let bias = param(b, &format!("{p}.proj_out.bias"), dt, [c.llm_hidden])?;
        b.linear(h, w, Some(bias))
    })
}
