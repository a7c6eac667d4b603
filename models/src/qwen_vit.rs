//! QwenViT (spec §3): the Qwen2-VL ViT (ILLUME+ 600M: LayerNorm, QuickGELU MLP, full
//! attention) and the Qwen2.5-VL ViT (RMSNorm, SwiGLU MLP with bias, window attention with a
//! few full-attention blocks). Both patchify a channels-last image in 2×2 merge-group order,
//! use 2-D RoPE and end with the PatchMerger.
//!
//! The graph takes the normalised image `[1, H, W, C]` at the ViT resolution (a multiple of
//! `patch_size × spatial_merge_size`). The Conv3d patch embedding over two identical frames
//! is a linear map with the weight summed over time, folded once at load.

use crate::common::param;
use focus_graph::{DType, Graph, GraphBuilder, NodeId, ReduceOp, Result, RopeKind, UnaryOp};

/// CLIP normalisation of the ViT input (spec §3.1), digits as published.
#[allow(clippy::excessive_precision)]
pub const CLIP_MEAN: [f32; 3] = [0.48145466, 0.4578275, 0.40821073];
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.26862954, 0.26130258, 0.27577711];

#[derive(Clone, Debug, PartialEq)]
pub enum VitVariant {
    /// Qwen2-VL: LayerNorm, fc1/fc2 MLP with `act`, full attention everywhere.
    Qwen2Vl,
    /// Qwen2.5-VL: RMSNorm, gate/up/down MLP, attention within `window` pixel squares except
    /// in `full_attention_blocks`.
    Qwen25Vl { window: usize, full_attention_blocks: Vec<usize> },
}

#[derive(Clone, Debug, PartialEq)]
pub struct QwenVitConfig {
    pub variant: VitVariant,
    pub depth: usize,
    pub embed_dim: usize,
    pub num_heads: usize,
    pub mlp_dim: usize,
    /// Merger output width (the LLM or projector input).
    pub out_dim: usize,
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub merge: usize,
    pub in_channels: usize,
    pub act: UnaryOp,
    pub prefix: String,
    pub dtype: DType,
}

impl QwenVitConfig {
    /// Qwen2-VL ViT-600M as ILLUME+ uses it (spec §3.4).
    pub fn qwen2vl_600m() -> Self {
        QwenVitConfig {
            variant: VitVariant::Qwen2Vl,
            depth: 32,
            embed_dim: 1280,
            num_heads: 16,
            mlp_dim: 5120,
            out_dim: 3584,
            patch_size: 14,
            temporal_patch_size: 2,
            merge: 2,
            in_channels: 3,
            act: UnaryOp::QuickGelu,
            prefix: "visual.".into(),
            dtype: DType::F32,
        }
    }

    /// Qwen2.5-VL-3B vision tower (spec §3.3).
    pub fn qwen25vl_3b() -> Self {
        QwenVitConfig {
            variant: VitVariant::Qwen25Vl { window: 112, full_attention_blocks: vec![7, 15, 23, 31] },
            mlp_dim: 3420,
            out_dim: 2048,
            act: UnaryOp::Silu,
            ..Self::qwen2vl_600m()
        }
    }
}

/// Merge units in window-major order (Qwen2.5-VL `get_window_index`): windows of `ws × ws`
/// units tile the `uh × uw` unit grid from the top-left (the last row/column of windows may be
/// partial); returns the unit permutation and each permuted unit's window id.
pub fn window_order(uh: usize, uw: usize, ws: usize) -> (Vec<usize>, Vec<usize>) {
    let (nh, nw) = (uh.div_ceil(ws), uw.div_ceil(ws));
    let (mut order, mut window) = (Vec::new(), Vec::new());
    for wy in 0..nh {
        for wx in 0..nw {
            for y in wy * ws..((wy + 1) * ws).min(uh) {
                for x in wx * ws..((wx + 1) * ws).min(uw) {
                    order.push(y * uw + x);
                    window.push(wy * nw + wx);
                }
            }
        }
    }
    (order, window)
}

fn norm(b: &mut GraphBuilder, c: &QwenVitConfig, x: NodeId, p: &str) -> Result<NodeId> {
    let w = param(b, &format!("{p}.weight"), c.dtype, [c.embed_dim])?;
    match c.variant {
        VitVariant::Qwen2Vl => {
            let bias = param(b, &format!("{p}.bias"), c.dtype, [c.embed_dim])?;
            b.layer_norm(x, Some(w), Some(bias), 1e-6)
        }
        VitVariant::Qwen25Vl { .. } => b.rms_norm(x, w, 1e-6),
    }
}

fn linear(
    b: &mut GraphBuilder,
    c: &QwenVitConfig,
    x: NodeId,
    p: &str,
    out: usize,
    inp: usize,
) -> Result<NodeId> {
    let w = param(b, &format!("{p}.weight"), c.dtype, [out, inp])?;
    let bias = param(b, &format!("{p}.bias"), c.dtype, [out])?;
    b.linear(x, w, Some(bias))
}

/// One pre-norm ViT block on `x [t, d]` with 2-D RoPE positions `pos [t, 2]` (θ = 10000):
/// attention over all tokens, or within the packed sequences of `windows` tokens each.
pub fn block(
    b: &mut GraphBuilder,
    c: &QwenVitConfig,
    x: NodeId,
    pos: NodeId,
    bp: &str,
    windows: Option<&[usize]>,
) -> Result<NodeId> {
    let d = c.embed_dim;
    let t = b.shape(x)[0];
    let (nh, hd) = (c.num_heads, d / c.num_heads);
    let scale = 1.0 / (hd as f32).sqrt();
    let hn = norm(b, c, x, &format!("{bp}.norm1"))?;
    // The checkpoint's fused qkv weight read as three row blocks (views of the weight), so the
    // projections land as three contiguous blocks that q, k and v read in place.
    let w = param(b, &format!("{bp}.attn.qkv.weight"), c.dtype, [3 * d, d])?;
    let bias = param(b, &format!("{bp}.attn.qkv.bias"), c.dtype, [3 * d])?;
    let (mut ws, mut bs) = (Vec::with_capacity(3), Vec::with_capacity(3));
    for i in 0..3 {
        ws.push(b.slice(w, 0, i * d, (i + 1) * d)?);
        bs.push(b.slice(bias, 0, i * d, (i + 1) * d)?);
    }
    let qkv = b.scoped("attn.qkv", |b| b.multi_linear(hn, &ws, Some(&bs)))?;
    let mut qkv4 = Vec::with_capacity(3);
    for i in 0..3 {
        let part = b.slice(qkv, 0, i * t * d, (i + 1) * t * d)?;
        qkv4.push(b.reshape(part, [1, t, nh, hd])?);
    }
    let q = b.rope(qkv4[0], pos, RopeKind::TwoD, 10000.0)?;
    let k = b.rope(qkv4[1], pos, RopeKind::TwoD, 10000.0)?;
    let a = match windows {
        None => b.attention(q, k, qkv4[2], None, false, scale)?,
        Some(lens) => b.varlen_attention(q, k, qkv4[2], lens, false, scale)?,
    };
    let a = b.reshape(a, [t, d])?;
    let a = linear(b, c, a, &format!("{bp}.attn.proj"), d, d)?;
    let x = b.add(x, a)?;
    let hn = norm(b, c, x, &format!("{bp}.norm2"))?;
    let y = match c.variant {
        VitVariant::Qwen2Vl => {
            let y = linear(b, c, hn, &format!("{bp}.mlp.fc1"), c.mlp_dim, d)?;
            let y = b.unary(c.act, y)?;
            linear(b, c, y, &format!("{bp}.mlp.fc2"), d, c.mlp_dim)?
        }
        VitVariant::Qwen25Vl { .. } => {
            let p = |b: &mut GraphBuilder, name: &str, shape: &[usize]| {
                param(b, &format!("{bp}.mlp.{name}"), c.dtype, shape.to_vec())
            };
            let (wg, bg) =
                (p(b, "gate_proj.weight", &[c.mlp_dim, d])?, p(b, "gate_proj.bias", &[c.mlp_dim])?);
            let (wu, bu) = (p(b, "up_proj.weight", &[c.mlp_dim, d])?, p(b, "up_proj.bias", &[c.mlp_dim])?);
            let gu = b.gated_linear(hn, (wg, wu), Some((bg, bu)), c.act)?;
            linear(b, c, gu, &format!("{bp}.mlp.down_proj"), d, c.mlp_dim)?
        }
    };
    b.add(x, y)
}

/// Build the tower on `image [1, H, W, C]`; returns the merged tokens `[units, out_dim]` in
/// row-major unit order.
pub fn build(b: &mut GraphBuilder, c: &QwenVitConfig, image: NodeId) -> Result<NodeId> {
    let s = b.shape(image).to_vec();
    let (h, w, ch) = (s[1], s[2], s[3]);
    let (p, m, d) = (c.patch_size, c.merge, c.embed_dim);
    let (gh, gw) = (h / p, w / p);
    let (uh, uw) = (gh / m, gw / m);
    let t = gh * gw;
    let pre = &c.prefix;
    // Patches in merge-group order (unit row, unit col, r, c), each vector ordered (py, px, ch).
    let x = b.scoped("patchify", |b| {
        let x = b.reshape(image, [uh, m, p, uw, m, p, ch])?;
        let x = b.permute(x, &[0, 3, 1, 4, 2, 5, 6])?;
        b.reshape(x, [t, p * p * ch])
    })?;
    // Conv3d weight [D, C, T, P, P] → sum over T → [D, P, P, C] → [D, P·P·C].
    let w =
        param(b, &format!("{pre}patch_embed.proj.weight"), c.dtype, [d, ch, c.temporal_patch_size, p, p])?;
    let w = b.reduce(ReduceOp::Sum, w, &[2], false)?;
    let w = b.permute(w, &[0, 2, 3, 1])?;
    let w = b.reshape(w, [d, p * p * ch])?;
    let mut x = b.scoped("patch_embed", |b| b.linear(x, w, None))?;

    // Per-token (row, col) for 2-D RoPE, in merge-group order; windowed variants permute
    // whole merge units window-major and attend within each window.
    let mut units: Vec<usize> = (0..uh * uw).collect();
    let mut unit_window = vec![0; uh * uw];
    if let VitVariant::Qwen25Vl { window, .. } = &c.variant {
        let ws = (window / m / p).max(1);
        (units, unit_window) = window_order(uh, uw, ws);
    }
    let mut pos = Vec::with_capacity(2 * t);
    for &u in &units {
        let (uy, ux) = (u / uw, u % uw);
        for r in 0..m {
            for cc in 0..m {
                pos.extend([(uy * m + r) as i32, (ux * m + cc) as i32]);
            }
        }
    }
    let pos = b.constant_i32([t, 2], &pos)?;
    let unit_perm: Vec<i32> = units.iter().map(|&u| u as i32).collect();
    let windowed = matches!(c.variant, VitVariant::Qwen25Vl { .. });
    // Windows are contiguous runs of the permuted tokens: packed sequences, no T × T mask.
    let mut window_lens: Vec<usize> = Vec::new();
    if windowed {
        let idx = b.constant_i32([uh * uw], &unit_perm)?;
        let xu = b.reshape(x, [uh * uw, m * m * d])?;
        let xu = b.index_select(xu, idx, 0)?;
        x = b.reshape(xu, [t, d])?;
        for (k, &wi) in unit_window.iter().enumerate() {
            match window_lens.last_mut() {
                Some(len) if unit_window[k - 1] == wi => *len += m * m,
                _ => window_lens.push(m * m),
            }
        }
    }

    for i in 0..c.depth {
        let full = match &c.variant {
            VitVariant::Qwen2Vl => true,
            VitVariant::Qwen25Vl { full_attention_blocks, .. } => full_attention_blocks.contains(&i),
        };
        let windows = (!full).then_some(window_lens.as_slice());
        x = b.scoped(format!("blocks.{i}"), |b| block(b, c, x, pos, &format!("{pre}blocks.{i}"), windows))?;
    }

    b.scoped("merger", |b| {
        let x = norm(b, c, x, &format!("{pre}merger.ln_q"))?;
        let md = m * m * d;
        let x = b.reshape(x, [uh * uw, md])?;
        let x = linear(b, c, x, &format!("{pre}merger.mlp.0"), md, md)?;
        let x = b.unary(UnaryOp::Gelu, x)?;
        let x = linear(b, c, x, &format!("{pre}merger.mlp.2"), c.out_dim, md)?;
        if windowed {
            // Undo the window permutation: row-major unit order out.
            let mut inv = vec![0i32; units.len()];
            for (k, &u) in units.iter().enumerate() {
                inv[u] = k as i32;
            }
            let inv = b.constant_i32([uh * uw], &inv)?;
            b.index_select(x, inv, 0)
        } else {
            Ok(x)
        }
    })
}

/// A graph with input `image [1, h, w, in_channels]` and output `embeds [units, out_dim]`.
pub fn graph(c: &QwenVitConfig, h: usize, w: usize) -> Result<Graph> {
    let mut b = GraphBuilder::new();
    let unit = c.patch_size * c.merge;
    if h == 0 || w == 0 || !h.is_multiple_of(unit) || !w.is_multiple_of(unit) {
        return Err(focus_graph::GraphError::InvalidOp {
            op: "qwen_vit".into(),
            node: 0,
            name: "image".into(),
            detail: format!(
                "image {h}x{w} must be a positive multiple of {unit} (patch × merge) on each side"
            ),
        });
    }
    let img = b.input("image", c.dtype, [1, h, w, c.in_channels])?;
    let out = build(&mut b, c, img)?;
    b.output("embeds", out)?;
    b.finish()
}

impl QwenVitConfig {
    /// From a HF `vision_config` (Qwen2-VL or Qwen2.5-VL; the variant is recognised by its
    /// window fields). Missing fields take the matching paper default; an optional `prefix`
    /// field sets the weight-name prefix.
    pub fn from_hf_json(json: &str) -> std::result::Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_str(json).map_err(|e| format!("invalid vision config JSON: {e}"))?;
        let get = |k: &str| v.get(k).filter(|x| !x.is_null());
        let num = |k: &str, d: usize| -> std::result::Result<usize, String> {
            get(k).map_or(Ok(d), |x| {
                x.as_u64().map(|n| n as usize).ok_or(format!("vision config '{k}' must be an integer"))
            })
        };
        let windowed = get("window_size").is_some() || get("fullatt_block_indexes").is_some();
        let base = if windowed { Self::qwen25vl_3b() } else { Self::qwen2vl_600m() };
        let act = match get("hidden_act").and_then(|a| a.as_str()) {
            None => base.act,
            Some("quick_gelu") => UnaryOp::QuickGelu,
            Some("silu") => UnaryOp::Silu,
            Some("gelu") => UnaryOp::Gelu,
            Some("gelu_pytorch_tanh") => UnaryOp::GeluTanh,
            Some(other) => return Err(format!("unsupported hidden_act '{other}'")),
        };
        let in_channels = num("in_channels", num("in_chans", base.in_channels)?)?;
        let prefix = get("prefix").and_then(|p| p.as_str()).map_or(base.prefix.clone(), String::from);
        let c = if windowed {
            let full = match get("fullatt_block_indexes") {
                Some(x) => {
                    serde_json::from_value(x.clone()).map_err(|e| format!("fullatt_block_indexes: {e}"))?
                }
                None => vec![7, 15, 23, 31],
            };
            QwenVitConfig {
                variant: VitVariant::Qwen25Vl {
                    window: num("window_size", 112)?,
                    full_attention_blocks: full,
                },
                embed_dim: num("hidden_size", base.embed_dim)?,
                mlp_dim: num("intermediate_size", base.mlp_dim)?,
                out_dim: num("out_hidden_size", base.out_dim)?,
                ..base.clone()
            }
        } else {
            let embed = num("embed_dim", base.embed_dim)?;
            QwenVitConfig {
                embed_dim: embed,
                mlp_dim: embed * num("mlp_ratio", 4)?,
                out_dim: num("hidden_size", base.out_dim)?,
                ..base.clone()
            }
        };
        let c = QwenVitConfig {
            depth: num("depth", base.depth)?,
            num_heads: num("num_heads", base.num_heads)?,
            patch_size: num("patch_size", base.patch_size)?,
            temporal_patch_size: num("temporal_patch_size", base.temporal_patch_size)?,
            merge: num("spatial_merge_size", base.merge)?,
            in_channels,
            act,
            prefix,
            ..c
        };
        if c.num_heads == 0
            || !c.embed_dim.is_multiple_of(c.num_heads)
            || !(c.embed_dim / c.num_heads).is_multiple_of(4)
        {
            return Err(format!(
                "embed dim {} must split into heads of a multiple of 4 ({} heads)",
                c.embed_dim, c.num_heads
            ));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_tile_from_the_top_left() {
        // 3×5 units, windows of 2×2: [0,1,5,6] [2,3,7,8] [4,9] [10,11] [12,13] [14].
        let (order, win) = window_order(3, 5, 2);
        assert_eq!(order, vec![0, 1, 5, 6, 2, 3, 7, 8, 4, 9, 10, 11, 12, 13, 14]);
        assert_eq!(win, vec![0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5]);
    }

    #[test]
    fn hf_vision_configs() {
        let a = QwenVitConfig::from_hf_json(
            r#"{"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "in_chans": 3,
                "out_hidden_size": 2048, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31],
                "hidden_act": "silu", "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}"#,
        )
        .unwrap();
        assert_eq!(a, QwenVitConfig::qwen25vl_3b());
        let b = QwenVitConfig::from_hf_json(r#"{"embed_dim": 1280, "hidden_size": 3584, "mlp_ratio": 4}"#)
            .unwrap();
        assert_eq!(b, QwenVitConfig::qwen2vl_600m());
        assert!(QwenVitConfig::from_hf_json(r#"{"hidden_act": "swish"}"#).unwrap_err().contains("swish"));
        assert!(QwenVitConfig::from_hf_json(r#"{"embed_dim": 100, "num_heads": 3}"#).is_err());
        assert!(QwenVitConfig::from_hf_json("[1,").is_err());
    }
}
