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
use focus_graph::{DType, Graph, GraphBuilder, Result, UnaryOp};

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

/// Inputs `image_vit [1, Hv, Wv, 3]`, `image_hr [1, Hc, Wc, 3]` (normalised, channels-last),
/// `input_ids` i32 `[L]`, `positions` i32 `[L]`; outputs `logits` f32 `[L, V]` and `hidden`.
pub fn prefill_graph(c: &PerceptionConfig, s: &PerceptionShape) -> Result<Graph> {
    let dt = s.dtype;
    let (nv, nq) = c.image_tokens(s.vit_hw);
    let l = s.n_pre + nv + nq + s.n_post;
    let d = c.llm.hidden_size;
    let mut b = GraphBuilder::new();
    let img_v = b.input("image_vit", dt, [1, s.vit_hw[0], s.vit_hw[1], c.vit.in_channels])?;
    let img_h = b.input("image_hr", dt, [1, s.hr_hw[0], s.hr_hw[1], c.convnext.in_chans])?;
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
