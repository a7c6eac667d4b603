//! The FOCUS perception path (spec §1, §3.5, §5): vanilla ViT tokens projected into the LLM
//! width and fused with the ConvNeXt res5 tokens; the gated adapter's queries over res3..res5;
//! both spliced into the prompt embeddings at the image position; one LLM prefill step that
//! fills the KV cache. Later tokens decode with `qwen2::step_graph` on the same cache.
//!
//! Sequence layout: `n_pre` text tokens, `Nv` fused image tokens, `nq` adapter tokens, `n_post`
//! text tokens (the ids at the image positions are placeholders and are not read).

use crate::common::param;
use crate::convnext::{self, ConvNextConfig};
use crate::fusion::{self, AdapterConfig, FusionConfig};
use crate::qwen2::{self, Qwen2Config, StepOptions};
use crate::qwen_vit::{self, QwenVitConfig};
use focus_graph::{BinaryOp, DType, Graph, GraphBuilder, NodeId, ResizeMode, Result, UnaryOp};

#[derive(Clone, Debug)]
pub struct PerceptionConfig {
    pub vit: QwenVitConfig,
    pub convnext: ConvNextConfig,
    pub fusion: FusionConfig,
    pub adapter: AdapterConfig,
    pub llm: Qwen2Config,
    /// Weight prefix of the ViT → LLM projector (`{p}.0`, `{p}.2`: Linear, GELU, Linear).
    pub projector: String,
}

/// Sizes the prefill graph is built for.
#[derive(Clone, Debug)]
pub struct PerceptionShape {
    pub vit_hw: [usize; 2],
    pub hr_hw: [usize; 2],
    /// With `Some(size)`, the graph takes one raw image `image [1, h, w, 3]` in [0, 1] of that
    /// size and does both branches' pre-processing itself (bicubic+antialias resize, clamp,
    /// CLIP / ImageNet normalisation); otherwise it takes the two normalised images.
    pub raw_image: Option<[usize; 2]>,
    pub n_pre: usize,
    pub n_post: usize,
    /// KV-cache capacity.
    pub capacity: usize,
    pub dtype: DType,
}

impl PerceptionConfig {
    /// Image tokens (fused ViT tokens, adapter queries) for a ViT input of `vit_hw`.
    pub fn image_tokens(&self, vit_hw: [usize; 2]) -> (usize, usize) {
        let unit = self.vit.patch_size * self.vit.merge;
        ((vit_hw[0] / unit) * (vit_hw[1] / unit), self.adapter.n_queries)
    }
}

/// Resize (bicubic with antialias, PyTorch conventions) a `[1, h, w, 3]` image in [0, 1] to
/// `hw`, optionally clamp to [0, 1] (the QwenViT recipe, spec §3.1), normalise, cast.
pub fn preprocess(
    b: &mut GraphBuilder,
    raw: NodeId,
    hw: [usize; 2],
    clamp: bool,
    mean: &[f32; 3],
    std: &[f32; 3],
    dt: DType,
) -> Result<NodeId> {
    let s = b.shape(raw).to_vec();
    let mut x = if [s[1], s[2]] == hw { raw } else { b.resize(raw, ResizeMode::Bicubic, hw, false, true)? };
    if clamp {
        let (zero, one) = (b.scalar(DType::F32, 0.0)?, b.scalar(DType::F32, 1.0)?);
        x = b.binary(BinaryOp::Min, x, one)?;
        x = b.binary(BinaryOp::Max, x, zero)?;
    }
    let m = b.constant_f32([3], mean)?;
    let inv: Vec<f32> = std.iter().map(|v| 1.0 / v).collect();
    let inv = b.constant_f32([3], &inv)?;
    let x = b.sub(x, m)?;
    let x = b.mul(x, inv)?;
    b.cast(x, dt)
}

/// Inputs `image_vit [1, Hv, Wv, 3]`, `image_hr [1, Hc, Wc, 3]` (normalised, channels-last),
/// `input_ids` i32 `[L]`, `positions` i32 `[L]`; outputs `logits` f32 `[L, V]` and `hidden`.
pub fn prefill_graph(c: &PerceptionConfig, s: &PerceptionShape) -> Result<Graph> {
    let dt = s.dtype;
    // Every branch stores in the shape's dtype.
    let mut c = c.clone();
    (c.vit.dtype, c.convnext.dtype, c.fusion.dtype, c.adapter.dtype) = (dt, dt, dt, dt);
    let c = &c;
    let (nv, nq) = c.image_tokens(s.vit_hw);
    let l = s.n_pre + nv + nq + s.n_post;
    let d = c.llm.hidden_size;
    let mut b = GraphBuilder::new();
    let (img_v, img_h) = match s.raw_image {
        None => (
            b.input("image_vit", dt, [1, s.vit_hw[0], s.vit_hw[1], c.vit.in_channels])?,
            b.input("image_hr", dt, [1, s.hr_hw[0], s.hr_hw[1], c.convnext.in_chans])?,
        ),
        Some([h, w]) => {
            let raw = b.input("image", DType::F32, [1, h, w, 3])?;
            let v = b.scoped("preprocess_vit", |b| {
                preprocess(b, raw, s.vit_hw, true, &qwen_vit::CLIP_MEAN, &qwen_vit::CLIP_STD, dt)
            })?;
            let hr = b.scoped("preprocess_hr", |b| {
                preprocess(b, raw, s.hr_hw, false, &convnext::IMAGENET_MEAN, &convnext::IMAGENET_STD, dt)
            })?;
            (v, hr)
        }
    };
    let ids = b.input("input_ids", DType::I32, [l])?;
    let pos = b.input("positions", DType::I32, [l])?;

    let vit = b.scoped("vit", |b| qwen_vit::build(b, &c.vit, img_v))?;
    let feats = b.scoped("convnext", |b| convnext::build(b, &c.convnext, img_h))?;
    let p = &c.projector;
    let tokens = b.scoped("projector", |b| {
        let w0 = param(b, &format!("{p}.0.weight"), dt, [d, c.vit.out_dim])?;
        let b0 = param(b, &format!("{p}.0.bias"), dt, [d])?;
        let w2 = param(b, &format!("{p}.2.weight"), dt, [d, d])?;
        let b2 = param(b, &format!("{p}.2.bias"), dt, [d])?;
        let x = b.linear(vit, w0, Some(b0))?;
        let x = b.unary(UnaryOp::Gelu, x)?;
        let x = b.linear(x, w2, Some(b2))?;
        b.reshape(x, [1, nv, d])
    })?;
    let fused = fusion::fusion(&mut b, &c.fusion, tokens, feats[3])?;
    let queries = fusion::adapter(&mut b, &c.adapter, &feats[1..4])?;

    // Splice: text embeddings around the image tokens.
    let table = qwen2::embed_table(&mut b, &c.llm, dt)?;
    let emb = b.embedding(table, ids)?;
    let mut parts = Vec::new();
    if s.n_pre > 0 {
        parts.push(b.slice(emb, 0, 0, s.n_pre)?);
    }
    parts.push(b.reshape(fused, [nv, d])?);
    parts.push(b.reshape(queries, [nq, d])?);
    if s.n_post > 0 {
        parts.push(b.slice(emb, 0, l - s.n_post, l)?);
    }
    let x = b.concat(&parts, 0)?;
    let o = StepOptions { tokens: l, capacity: s.capacity, dtype: dt, all_logits: true, embeds_input: true };
    let (hidden, logits) = b.scoped("llm", |b| qwen2::build_step(b, &c.llm, &o, x, pos))?;
    b.output("hidden", hidden)?;
    b.output("logits", logits)?;
    b.finish()
}

impl PerceptionConfig {
    /// A small network with every part of the FOCUS perception path, for the demo and tests
    /// (random weights; real checkpoints use the paper configs of each part).
    pub fn demo() -> Self {
        let d_llm = 128;
        let convnext = ConvNextConfig::tiny();
        let vit = QwenVitConfig {
            depth: 2,
            embed_dim: 64,
            num_heads: 4,
            mlp_dim: 256,
            out_dim: 96,
            ..QwenVitConfig::qwen2vl_600m()
        };
        PerceptionConfig {
            fusion: FusionConfig {
                d_q: d_llm,
                d_kv: convnext.dims[3],
                d: d_llm,
                heads: 4,
                ..FusionConfig::paper()
            },
            adapter: AdapterConfig {
                in_channels: convnext.dims[1..4].to_vec(),
                d: 64,
                heads: 4,
                n_queries: 8,
                llm_hidden: d_llm,
                ..AdapterConfig::paper()
            },
            llm: Qwen2Config {
                vocab_size: 512,
                hidden_size: d_llm,
                intermediate_size: 256,
                num_hidden_layers: 4,
                num_attention_heads: 4,
                num_key_value_heads: 2,
                ..Qwen2Config::qwen25_3b()
            },
            convnext,
            vit,
            projector: "projector_1".into(),
        }
    }
}
