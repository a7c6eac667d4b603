//! The FOCUS perception path (spec §1, §2.4, §3.5, §5): vanilla ViT tokens projected into the
//! LLM width and fused with the ConvNeXt res5 tokens; the gated adapter's queries over
//! res3..res5; both spliced into the prompt embeddings at the image position in ILLUME+'s
//! understanding layout; one LLM prefill step that fills the KV cache. Later tokens decode with
//! `qwen2::step_graph` on the same cache.
//!
//! Sequence layout ([`ImageLayout`]): `n_pre` text tokens, the image span, `n_post` text tokens.
//! The image span is ILLUME+'s image block (`illume/model/illume_arch.py`
//! `_reformat_image_sequence` / `encode_images`, `anyres_dualvitok`) filled with continuous
//! features, followed by the adapter queries:
//!
//! ```text
//! <start_of_image> <start_of_level0> h × (w fused features, <end_of_line>) <end_of_level0>
//! <end_of_image> nq adapter queries
//! ```
//!
//! Level 0 holds the fused semantic tokens as an `h × w` grid (the ViT's merged 2×2 units in
//! row-major order, `h = Hv / 28`, `w = Wv / 28`). The structure tokens are ordinary token ids of
//! `input_ids` (ILLUME+ embeds them with `embed_tokens` too); at feature and query positions the
//! ids are placeholders and are not read. ILLUME+ has a level 1 block (`<start_of_level1>`,
//! pixel-encoder rows, `<end_of_level1>`) before `<end_of_image>`; the engine's perception path
//! has no pixel-encoder branch yet, so its layout carries level 0 only ([`ImageLayout`] and the
//! splice handle any number of levels). Where FOCUS puts the adapter queries is not published:
//! right after the block is an inference (HyperSeg puts its perceiver queries in their own slot
//! right after the image, `<image>\n<temporal>`).

use crate::common::param;
use crate::convnext::{self, ConvNextConfig};
use crate::fusion::{self, AdapterConfig, FusionConfig};
use crate::qwen2::{self, Qwen2Config, StepOptions};
use crate::qwen_vit::{self, QwenVitConfig};
use focus_graph::{
    BinaryOp, DType, Graph, GraphBuilder, GraphError, NodeId, ReduceOp, ResizeMode, Result, UnaryOp,
};
use serde::Deserialize;

/// Token ids that structure an image block (spec §2.4; ILLUME+ `special_tokens_ids`, in the
/// order `<start_of_image>`, `<end_of_image>`, `<end_of_line>`, `<start_of_level0>`,
/// `<end_of_level0>`, `<start_of_level1>`, `<end_of_level1>`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ImageTokenIds {
    pub start_of_image: u32,
    pub end_of_image: u32,
    pub end_of_line: u32,
    pub start_of_level: [u32; 2],
    pub end_of_level: [u32; 2],
}

impl ImageTokenIds {
    /// Seven consecutive ids from `first`, in ILLUME+'s order.
    pub fn consecutive(first: u32) -> Self {
        ImageTokenIds {
            start_of_image: first,
            end_of_image: first + 1,
            end_of_line: first + 2,
            start_of_level: [first + 3, first + 5],
            end_of_level: [first + 4, first + 6],
        }
    }

    /// The ids ILLUME+ assigns on Qwen2.5 (151665..=151671, right after the text vocabulary).
    pub fn illume_plus() -> Self {
        Self::consecutive(151665)
    }
}

/// What one position of the image span holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageSlot {
    /// A structure token, embedded from its id.
    Token(u32),
    /// Feature `(row, col)` of level `level`'s grid.
    Feature { level: usize, row: usize, col: usize },
    /// Adapter query `k`.
    Query(usize),
}

/// The image span's geometry: one feature grid per level and the adapter queries after the
/// block. Static for a given image size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageLayout {
    /// `[rows, cols]` of each level's grid (level 0: semantic, level 1: pixel; at most 2).
    pub grids: Vec<[usize; 2]>,
    /// Adapter queries right after `<end_of_image>`.
    pub queries: usize,
}

/// The id the image span carries at feature and query positions (never read).
pub const FEATURE_PLACEHOLDER: u32 = 0;

impl ImageLayout {
    /// Positions of the image block: `<soi>`, per level `<sol_k>` + rows of `w + 1` + `<eol_k>`,
    /// `<eoi>`.
    pub fn block_len(&self) -> usize {
        2 + self.grids.iter().map(|&[h, w]| 2 + h * (w + 1)).sum::<usize>()
    }

    /// Positions of the whole span (block and adapter queries).
    pub fn len(&self) -> usize {
        self.block_len() + self.queries
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Offset in the span of level `level`'s first row (after its `<start_of_level>`).
    pub fn grid_start(&self, level: usize) -> usize {
        2 + self.grids[..level].iter().map(|&[h, w]| 2 + h * (w + 1)).sum::<usize>()
    }

    /// Every position of the span, in order.
    pub fn slots(&self, t: &ImageTokenIds) -> Vec<ImageSlot> {
        let mut v = vec![ImageSlot::Token(t.start_of_image)];
        for (level, &[h, w]) in self.grids.iter().enumerate() {
            v.push(ImageSlot::Token(t.start_of_level[level]));
            for row in 0..h {
                v.extend((0..w).map(|col| ImageSlot::Feature { level, row, col }));
                v.push(ImageSlot::Token(t.end_of_line));
            }
            v.push(ImageSlot::Token(t.end_of_level[level]));
        }
        v.push(ImageSlot::Token(t.end_of_image));
        v.extend((0..self.queries).map(ImageSlot::Query));
        v
    }

    /// The span's token ids: structure tokens, [`FEATURE_PLACEHOLDER`] elsewhere.
    pub fn token_ids(&self, t: &ImageTokenIds) -> Vec<u32> {
        let id = |s: ImageSlot| if let ImageSlot::Token(id) = s { id } else { FEATURE_PLACEHOLDER };
        self.slots(t).into_iter().map(id).collect()
    }
}

#[derive(Clone, Debug)]
pub struct PerceptionConfig {
    pub vit: QwenVitConfig,
    pub convnext: ConvNextConfig,
    pub fusion: FusionConfig,
    pub adapter: AdapterConfig,
    pub llm: Qwen2Config,
    /// Weight prefix of the ViT → LLM projector (`{p}.0`, `{p}.2`: Linear, GELU, Linear).
    pub projector: String,
    /// Structure-token ids of the image block (the runner writes them into the prompt).
    pub image_token_ids: ImageTokenIds,
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
    /// FOCUS's mask tokens (spec §9.3): this many learnable embeddings (`seg_query [N,
    /// hidden]`) follow the prompt; their last-layer states leave as `seg_hidden [N, hidden]`,
    /// and ConvNeXt's stages as `res2`..`res5` for the segmentation decoder. 0: none.
    pub seg_queries: usize,
}

impl PerceptionConfig {
    /// The image span for a ViT input of `vit_hw`: the fused tokens' `Hv/28 × Wv/28` grid
    /// (patch × merge) as level 0, then the adapter queries.
    pub fn image_layout(&self, vit_hw: [usize; 2]) -> ImageLayout {
        let unit = self.vit.patch_size * self.vit.merge;
        ImageLayout { grids: vec![[vit_hw[0] / unit, vit_hw[1] / unit]], queries: self.adapter.n_queries }
    }

    /// Positions the image span takes in the prompt for a ViT input of `vit_hw`.
    pub fn image_tokens(&self, vit_hw: [usize; 2]) -> usize {
        self.image_layout(vit_hw).len()
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

fn push_text(
    b: &mut GraphBuilder,
    parts: &mut Vec<NodeId>,
    emb: NodeId,
    from: usize,
    to: usize,
) -> Result<()> {
    if to > from {
        parts.push(b.slice(emb, 0, from, to)?);
    }
    Ok(())
}

/// Lay out the LLM input sequence: `emb [L, d]` holds the embeddings of `input_ids`; the image
/// span starts at `n_pre`. Structure positions keep their token embeddings, level `k`'s grid
/// positions take `levels[k]` (`[h·w, d]`, row-major: row `r` fills the `w` positions before
/// the `r`-th `<end_of_line>`), and `queries` (`[nq, d]`) the positions after `<end_of_image>`.
/// Static: slices and concatenations only (the `<end_of_line>` embeddings are cut from `emb` as
/// one `[h, 1, d]` column and joined to the `[h, w, d]` grid, as ILLUME+'s `_add_eol` does).
pub fn splice_image(
    b: &mut GraphBuilder,
    emb: NodeId,
    n_pre: usize,
    layout: &ImageLayout,
    levels: &[NodeId],
    queries: Option<NodeId>,
) -> Result<NodeId> {
    let (l, d) = (b.shape(emb)[0], b.shape(emb)[1]);
    let nq = queries.map_or(0, |q| b.shape(q)[0]);
    let bad = |detail: String| GraphError::InvalidOp {
        op: "image splice".into(),
        node: emb.0,
        name: "splice".into(),
        detail,
    };
    if levels.len() != layout.grids.len() || layout.grids.len() > 2 || nq != layout.queries {
        return Err(bad(format!(
            "{} feature levels and {nq} queries for a layout of {:?} grids and {} queries",
            levels.len(),
            layout.grids,
            layout.queries
        )));
    }
    if n_pre + layout.len() > l {
        return Err(bad(format!("image span of {} at {n_pre} exceeds the {l} positions", layout.len())));
    }
    let mut parts = Vec::new();
    // `emb` positions from `from` on are not laid out yet.
    let mut from = 0;
    for (k, (&[h, w], &f)) in layout.grids.iter().zip(levels).enumerate() {
        if h == 0 || w == 0 || b.shape(f) != [h * w, d] {
            return Err(bad(format!("level {k} features {:?} for a {h}x{w} grid of width {d}", b.shape(f))));
        }
        let g0 = n_pre + layout.grid_start(k);
        push_text(b, &mut parts, emb, from, g0)?;
        let rows = b.slice(emb, 0, g0, g0 + h * (w + 1))?;
        let rows = b.reshape(rows, [h, w + 1, d])?;
        let eol = b.slice(rows, 1, w, w + 1)?;
        let f = b.reshape(f, [h, w, d])?;
        let grid = b.concat(&[f, eol], 1)?;
        parts.push(b.reshape(grid, [h * (w + 1), d])?);
        from = g0 + h * (w + 1);
    }
    let q0 = n_pre + layout.block_len();
    push_text(b, &mut parts, emb, from, q0)?;
    from = q0;
    if let Some(q) = queries.filter(|_| nq > 0) {
        parts.push(q);
        from = q0 + nq;
    }
    push_text(b, &mut parts, emb, from, l)?;
    b.concat(&parts, 0)
}

/// The states a prefill with mask tokens (`PerceptionShape::seg_queries`) leaves for the
/// segmentation decoder: the mask tokens' last-layer states `[N, hidden]`, the class name's
/// (the mean over the prompt's tokens after the image) `[1, hidden]`, ConvNeXt's stages.
pub const SEG_STATES: [&str; 6] = ["seg_hidden", "class_hidden", "res2", "res3", "res4", "res5"];

/// Inputs `image_vit [1, Hv, Wv, 3]`, `image_hr [1, Hc, Wc, 3]` (normalised, channels-last),
/// `input_ids` i32 `[L]`, `positions` i32 `[L]`; outputs `logits` f32 `[L, V]` and `hidden`,
/// and with mask tokens the [`SEG_STATES`] (also as outputs of the same names).
pub fn prefill_graph(c: &PerceptionConfig, s: &PerceptionShape) -> Result<Graph> {
    let dt = s.dtype;
    // Every branch stores in the shape's dtype.
    let mut c = c.clone();
    (c.vit.dtype, c.convnext.dtype, c.fusion.dtype, c.adapter.dtype) = (dt, dt, dt, dt);
    let c = &c;
    let layout = c.image_layout(s.vit_hw);
    let nv: usize = layout.grids.iter().map(|g| g[0] * g[1]).sum();
    let l = s.n_pre + layout.len() + s.n_post;
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
    let pos = b.input("positions", DType::I32, [l + s.seg_queries])?;
    if s.seg_queries > 0 && s.n_post == 0 {
        return Err(GraphError::InvalidOp {
            op: "prefill".into(),
            node: ids.0,
            name: "input_ids".into(),
            detail: "mask tokens need the class name after the image (n_post > 0)".into(),
        });
    }

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

    // Splice: the image span (structure-token embeddings, fused rows, adapter queries) between
    // the text embeddings.
    let table = qwen2::embed_table(&mut b, &c.llm, dt)?;
    let emb = b.embedding(table, ids)?;
    let fused = b.reshape(fused, [nv, d])?;
    let queries = b.reshape(queries, [layout.queries, d])?;
    let mut x = b.scoped("splice", |b| splice_image(b, emb, s.n_pre, &layout, &[fused], Some(queries)))?;
    if s.seg_queries > 0 {
        let seg = param(&mut b, "seg_query", dt, [s.seg_queries, d])?;
        x = b.concat(&[x, seg], 0)?;
    }
    let o = StepOptions {
        all_logits: true,
        embeds_input: true,
        ..StepOptions::prefill(l + s.seg_queries, s.capacity, dt)
    };
    let (hidden, logits) = b.scoped("llm", |b| qwen2::build_step(b, &c.llm, &o, x, pos))?;
    b.output("hidden", hidden)?;
    b.output("logits", logits)?;
    if s.seg_queries > 0 {
        // The segmentation decoder's inputs stay on the device, in state buffers the segmenter
        // copies from (ARCHITECTURE decision 3).
        let seg = b.slice(hidden, 0, l, l + s.seg_queries)?;
        let cls = b.slice(hidden, 0, l - s.n_post, l)?;
        let cls = b.reduce(ReduceOp::Mean, cls, &[0], true)?;
        let zero = b.constant_i32([1], &[0])?;
        for (name, v) in SEG_STATES.iter().zip([seg, cls, feats[0], feats[1], feats[2], feats[3]]) {
            let state = b.state(name, dt, b.shape(v).to_vec())?;
            let state = b.write_slice(state, v, zero, 0)?;
            b.output(name, state)?;
        }
    }
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
            // The last seven ids of the vocabulary (ILLUME+'s follow the text tokens).
            image_token_ids: ImageTokenIds::consecutive(505),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_places_structure_tokens_rows_and_queries() {
        // A 2×3 grid (non-square, so rows and columns cannot be swapped unnoticed), 2 queries.
        let t = ImageTokenIds::consecutive(100);
        let lay = ImageLayout { grids: vec![[2, 3]], queries: 2 };
        assert_eq!((lay.block_len(), lay.len(), lay.grid_start(0)), (12, 14, 2));
        let (soi, eoi, eol, sol0, eol0) = (100, 101, 102, 103, 104);
        let f = |row, col| ImageSlot::Feature { level: 0, row, col };
        let tok = ImageSlot::Token;
        let want = vec![
            tok(soi),
            tok(sol0),
            f(0, 0),
            f(0, 1),
            f(0, 2),
            tok(eol),
            f(1, 0),
            f(1, 1),
            f(1, 2),
            tok(eol),
            tok(eol0),
            tok(eoi),
            ImageSlot::Query(0),
            ImageSlot::Query(1),
        ];
        assert_eq!(lay.slots(&t), want);
        let p = FEATURE_PLACEHOLDER;
        assert_eq!(lay.token_ids(&t), [soi, sol0, p, p, p, eol, p, p, p, eol, eol0, eoi, p, p]);
    }

    #[test]
    fn two_level_layout_matches_the_spec_table() {
        // ILLUME+ at 256×256: semantic 9×9, pixel 16×16 → 368 positions (spec §2.4).
        let t = ImageTokenIds::illume_plus();
        let lay = ImageLayout { grids: vec![[9, 9], [16, 16]], queries: 0 };
        assert_eq!(lay.len(), 368);
        assert_eq!(ImageLayout { grids: vec![[16, 12], [32, 24]], queries: 0 }.len(), 1014);
        assert_eq!(lay.grid_start(1), 2 + 90 + 2);
        let ids = lay.token_ids(&t);
        assert_eq!(ids[..2], [151665, 151668]);
        assert_eq!(ids[2 + 9], 151667);
        assert_eq!(ids[2 + 90..2 + 92], [151669, 151670]);
        assert_eq!(ids[94 + 16], 151667);
        assert_eq!(ids[365..], [151667, 151671, 151666]);
        let slots = lay.slots(&t);
        assert_eq!(slots[94 + 17 + 3], ImageSlot::Feature { level: 1, row: 1, col: 3 });
        let features = slots.iter().filter(|s| matches!(s, ImageSlot::Feature { .. })).count();
        assert_eq!(features, 81 + 256);
    }

    #[test]
    fn config_layout_follows_the_vit_grid() {
        let c = PerceptionConfig::demo();
        // 112×84 ViT input, 28-pixel units: 4 rows of 3, then the adapter's 8 queries.
        let lay = c.image_layout([112, 84]);
        assert_eq!(lay, ImageLayout { grids: vec![[4, 3]], queries: 8 });
        assert_eq!(c.image_tokens([112, 84]), 2 + 2 + 4 * 4 + 8);
        assert!(lay.token_ids(&c.image_token_ids).iter().all(|&id| (id as usize) < c.llm.vocab_size));
    }
}
