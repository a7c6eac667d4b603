//! The segmentation decoder (spec §9): Mask2Former's multi-scale deformable-attention pixel
//! decoder and PSALM's masked-attention transformer decoder, whose queries are the LLM's
//! mask-token states and whose classes are dot products with class-name embeddings. detectron2 /
//! PSALM names under a prefix (`sem_seg_head.pixel_decoder.`, `sem_seg_head.predictor.`).
//! Feature maps are channels-last; the sine positions and reference points are constants.

use crate::common::{conv, group_norm, layer_norm, linear, param, Intermediates};
use focus_graph::{CmpOp, DType, Graph, GraphBuilder, NodeId, ReduceOp, ResizeMode, Result, UnaryOp};

/// PyTorch's LayerNorm / GroupNorm default.
const EPS: f32 = 1e-5;

#[derive(Clone, Debug, PartialEq)]
pub struct PixelDecoderConfig {
    /// Channels of res2..res5.
    pub in_channels: Vec<usize>,
    pub conv_dim: usize,
    pub mask_dim: usize,
    pub heads: usize,
    pub points: usize,
    pub enc_layers: usize,
    pub ffn_dim: usize,
    pub groups: usize,
    /// Subtracted from the 1-based sine-position coordinates before normalising (0 in
    /// transformers' implementation, 0.5 in detectron2's).
    pub pe_offset: f64,
    pub prefix: String,
    pub dtype: DType,
}

impl PixelDecoderConfig {
    /// Mask2Former's decoder over ConvNeXt-L's stages (spec §9.1).
    pub fn paper() -> Self {
        PixelDecoderConfig {
            in_channels: vec![192, 384, 768, 1536],
            conv_dim: 256,
            mask_dim: 256,
            heads: 8,
            points: 4,
            enc_layers: 6,
            ffn_dim: 1024,
            groups: 32,
            pe_offset: 0.0,
            prefix: "sem_seg_head.pixel_decoder.".into(),
            dtype: DType::F32,
        }
    }

    /// The reference's `tiny` config.
    pub fn tiny() -> Self {
        PixelDecoderConfig {
            in_channels: vec![8, 16, 24, 32],
            conv_dim: 32,
            mask_dim: 32,
            heads: 4,
            points: 2,
            enc_layers: 2,
            ffn_dim: 64,
            groups: 8,
            ..Self::paper()
        }
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.in_channels.len() != 4 {
            return Err(format!("in_channels must list res2..res5, got {:?}", self.in_channels));
        }
        let d = self.conv_dim;
        if d == 0 || self.groups == 0 || !d.is_multiple_of(self.groups) || !d.is_multiple_of(2) {
            return Err(format!("conv_dim {d} must be even and a multiple of groups {}", self.groups));
        }
        if self.heads == 0 || !d.is_multiple_of(self.heads) || self.points == 0 {
            return Err(format!(
                "conv_dim {d} must split into {} heads (points {})",
                self.heads, self.points
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TransformerDecoderConfig {
    pub hidden: usize,
    pub heads: usize,
    pub ffn_dim: usize,
    pub dec_layers: usize,
    pub num_queries: usize,
    pub mask_dim: usize,
    pub llm_hidden: usize,
    pub prefix: String,
    pub dtype: DType,
}

impl TransformerDecoderConfig {
    /// PSALM's decoder as FOCUS uses it with Qwen2.5-3B (spec §9.2).
    pub fn paper() -> Self {
        TransformerDecoderConfig {
            hidden: 256,
            heads: 8,
            ffn_dim: 2048,
            dec_layers: 9,
            num_queries: 100,
            mask_dim: 256,
            llm_hidden: 2048,
            prefix: "sem_seg_head.predictor.".into(),
            dtype: DType::F32,
        }
    }

    /// The reference's `tiny` config.
    pub fn tiny() -> Self {
        TransformerDecoderConfig {
            hidden: 32,
            heads: 4,
            ffn_dim: 64,
            dec_layers: 3,
            num_queries: 6,
            mask_dim: 32,
            llm_hidden: 64,
            ..Self::paper()
        }
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        let d = self.hidden;
        if d == 0 || self.heads == 0 || !d.is_multiple_of(self.heads) || !d.is_multiple_of(2) {
            return Err(format!("hidden {d} must be even and split into {} heads", self.heads));
        }
        if self.dec_layers == 0 || self.num_queries == 0 {
            return Err("dec_layers and num_queries must be positive".into());
        }
        Ok(())
    }
}

/// DETR's normalised sine embedding of an `h`×`w` map, `[h·w, 2·feats]` row-major (y features
/// then x features; sin/cos interleaved), computed in f64.
pub fn sine_positions(h: usize, w: usize, feats: usize, offset: f64) -> Vec<f32> {
    let (scale, eps, temp) = (2.0 * std::f64::consts::PI, 1e-6, 10000f64);
    let dim_t: Vec<f64> = (0..feats).map(|j| temp.powf(2.0 * (j / 2) as f64 / feats as f64)).collect();
    let embed = |v: f64, j: usize| {
        let a = v / dim_t[j];
        if j.is_multiple_of(2) {
            a.sin()
        } else {
            a.cos()
        }
    };
    let mut out = Vec::with_capacity(h * w * 2 * feats);
    for i in 0..h {
        let y = (i as f64 + 1.0 - offset) / (h as f64 + eps) * scale;
        for k in 0..w {
            let x = (k as f64 + 1.0 - offset) / (w as f64 + eps) * scale;
            out.extend((0..feats).map(|j| embed(y, j) as f32));
            out.extend((0..feats).map(|j| embed(x, j) as f32));
        }
    }
    out
}

fn constant(b: &mut GraphBuilder, dt: DType, shape: Vec<usize>, data: &[f32]) -> Result<NodeId> {
    let c = b.constant_f32(shape, data)?;
    if dt == DType::F32 {
        Ok(c)
    } else {
        b.cast(c, dt)
    }
}

/// `[B, H, W, C]` → `[B, H·W, C]`.
fn tokens(b: &mut GraphBuilder, x: NodeId) -> Result<NodeId> {
    let s = b.shape(x).to_vec();
    b.reshape(x, [s[0], s[1] * s[2], s[3]])
}

/// Row `i` of a `[rows, d]` parameter as `[1, 1, d]`.
fn row(b: &mut GraphBuilder, table: NodeId, i: usize) -> Result<NodeId> {
    let d = b.shape(table)[1];
    let r = b.slice(table, 0, i, i + 1)?;
    b.reshape(r, [1, 1, d])
}

/// Deformable self-attention of the encoder: `query [B, S, d]` samples `value_in`'s levels
/// around each token's reference point.
fn ms_deform_attn(
    b: &mut GraphBuilder,
    c: &PixelDecoderConfig,
    p: &str,
    (query, value_in): (NodeId, NodeId),
    shapes: &[[usize; 2]],
) -> Result<NodeId> {
    let dt = c.dtype;
    let [bn, s, d] = b.dims(query, "[B, S, d]")?;
    let (h, l, pts) = (c.heads, shapes.len(), c.points);
    let value = linear(b, dt, &format!("{p}.value_proj"), value_in, d, true)?;
    let value = b.reshape(value, [bn, s, h, d / h])?;
    let off = linear(b, dt, &format!("{p}.sampling_offsets"), query, h * l * pts * 2, true)?;
    let off = b.reshape(off, [bn, s, h, l, pts, 2])?;
    let aw = linear(b, dt, &format!("{p}.attention_weights"), query, h * l * pts, true)?;
    let aw = b.reshape(aw, [bn, s, h, l * pts])?;
    let aw = b.softmax(aw, -1)?;
    let aw = b.reshape(aw, [bn, s, h, l, pts])?;
    // loc = reference + offset / (w, h) of the sampled level; the reference points are the
    // token centres, the same for every level (valid ratios 1).
    let norm: Vec<f32> = shapes.iter().flat_map(|&[hh, ww]| [ww as f32, hh as f32]).collect();
    let norm = constant(b, dt, vec![1, 1, 1, l, 1, 2], &norm)?;
    let refs: Vec<f32> = shapes
        .iter()
        .flat_map(|&[hh, ww]| {
            (0..hh).flat_map(move |i| {
                (0..ww).map(move |j| [(j as f64 + 0.5) / ww as f64, (i as f64 + 0.5) / hh as f64])
            })
        })
        .flat_map(|r| (0..l).flat_map(move |_| r.map(|v| v as f32)))
        .collect();
    let refs = constant(b, dt, vec![1, s, 1, l, 1, 2], &refs)?;
    let loc = b.div(off, norm)?;
    let loc = b.add(refs, loc)?;
    let o = b.ms_deform_attn(value, loc, aw, shapes)?;
    linear(b, dt, &format!("{p}.output_proj"), o, d, true)
}

/// The pixel decoder on `feats` = res2..res5 (`[B, h, w, C]`): returns (`mask_features`
/// `[B, H/4, W/4, mask_dim]`, the encoder's maps at 1/32, 1/16, 1/8, intermediates
/// `encoder.{i}` and `fpn`).
pub fn pixel_decoder(
    b: &mut GraphBuilder,
    c: &PixelDecoderConfig,
    feats: &[NodeId],
) -> Result<(NodeId, Vec<NodeId>, Intermediates)> {
    let (dt, d) = (c.dtype, c.conv_dim);
    let p = c.prefix.trim_end_matches('.').to_string();
    b.push_scope("pixel_decoder");
    let mut inter = Vec::new();
    let level_embed = param(b, &format!("{p}.transformer.level_embed"), dt, [3, d])?;
    let (mut srcs, mut poss, mut shapes) = (Vec::new(), Vec::new(), Vec::new());
    // Transformer levels: res5, res4, res3.
    for (lvl, &x) in feats[1..].iter().rev().enumerate() {
        let s = conv(b, dt, &format!("{p}.input_proj.{lvl}.0"), x, (d, 1, 1), true)?;
        let s = group_norm(b, dt, &format!("{p}.input_proj.{lvl}.1"), s, c.groups, EPS)?;
        let [_, hh, ww, _] = b.dims(s, "[N, H, W, C]")?;
        shapes.push([hh, ww]);
        let pos = constant(b, dt, vec![1, hh * ww, d], &sine_positions(hh, ww, d / 2, c.pe_offset))?;
        let e = row(b, level_embed, lvl)?;
        poss.push(b.add(pos, e)?);
        srcs.push(tokens(b, s)?);
    }
    let mut src = b.concat(&srcs, 1)?;
    let pos = b.concat(&poss, 1)?;
    for i in 0..c.enc_layers {
        let lp = format!("{p}.transformer.encoder.layers.{i}");
        src = b.scoped(format!("encoder.{i}"), |b| {
            let q = b.add(src, pos)?;
            let a = ms_deform_attn(b, c, &format!("{lp}.self_attn"), (q, src), &shapes)?;
            let x = b.add(src, a)?;
            let x = layer_norm(b, dt, &format!("{lp}.norm1"), x, EPS)?;
            let f = linear(b, dt, &format!("{lp}.linear1"), x, c.ffn_dim, true)?;
            let f = b.unary(UnaryOp::Relu, f)?;
            let f = linear(b, dt, &format!("{lp}.linear2"), f, d, true)?;
            let x = b.add(x, f)?;
            layer_norm(b, dt, &format!("{lp}.norm2"), x, EPS)
        })?;
        inter.push((format!("encoder.{i}"), src));
    }
    let bn = b.shape(src)[0];
    let sizes: Vec<usize> = shapes.iter().map(|[h, w]| h * w).collect();
    let outs = b.split(src, 1, &sizes)?;
    let mut maps = Vec::new();
    for (o, &[hh, ww]) in outs.into_iter().zip(&shapes) {
        maps.push(b.reshape(o, [bn, hh, ww, d])?);
    }
    // FPN on res2: adapter (1×1, no bias, GN) + bilinear-upsampled 1/8 map, then 3×3 + GN + ReLU.
    let res2 = feats[0];
    let [_, h2, w2, _] = b.dims(res2, "[N, H, W, C]")?;
    let y = conv(b, dt, &format!("{p}.adapter_1"), res2, (d, 1, 1), false)?;
    let y = group_norm(b, dt, &format!("{p}.adapter_1.norm"), y, c.groups, EPS)?;
    let up = b.resize(maps[2], ResizeMode::Bilinear, [h2, w2], false, false)?;
    let y = b.add(y, up)?;
    let y = conv(b, dt, &format!("{p}.layer_1"), y, (d, 3, 1), false)?;
    let y = group_norm(b, dt, &format!("{p}.layer_1.norm"), y, c.groups, EPS)?;
    let y = b.unary(UnaryOp::Relu, y)?;
    inter.push(("fpn".into(), y));
    let mf = conv(b, dt, &format!("{p}.mask_features"), y, (c.mask_dim, 1, 1), true)?;
    b.pop_scope();
    Ok((mf, maps, inter))
}

/// `nn.MultiheadAttention` (packed `in_proj`) on batch-first `[B, N, d]`; `mask` (bool, true =
/// attend) broadcasts to `[B, heads, N, M]`.
fn multihead(
    b: &mut GraphBuilder,
    c: &TransformerDecoderConfig,
    p: &str,
    (q, k, v): (NodeId, NodeId, NodeId),
    mask: Option<NodeId>,
) -> Result<NodeId> {
    let (dt, d, h) = (c.dtype, c.hidden, c.heads);
    let w = param(b, &format!("{p}.in_proj_weight"), dt, [3 * d, d])?;
    let bias = param(b, &format!("{p}.in_proj_bias"), dt, [3 * d])?;
    let mut proj = Vec::new();
    for (i, x) in [q, k, v].into_iter().enumerate() {
        let wi = b.slice(w, 0, i * d, (i + 1) * d)?;
        let bi = b.slice(bias, 0, i * d, (i + 1) * d)?;
        let y = b.linear(x, wi, Some(bi))?;
        let s = b.shape(y).to_vec();
        proj.push(b.reshape(y, [s[0], s[1], h, d / h])?);
    }
    let o = b.attention(proj[0], proj[1], proj[2], mask, false, 1.0 / ((d / h) as f32).sqrt())?;
    let s = b.shape(o).to_vec();
    let o = b.reshape(o, [s[0], s[1], d])?;
    linear(b, dt, &format!("{p}.out_proj"), o, d, true)
}

fn mlp(b: &mut GraphBuilder, dt: DType, p: &str, x: NodeId, dims: &[usize]) -> Result<NodeId> {
    let mut x = x;
    for (i, &o) in dims.iter().enumerate() {
        x = linear(b, dt, &format!("{p}.layers.{i}"), x, o, true)?;
        if i + 1 < dims.len() {
            x = b.unary(UnaryOp::Relu, x)?;
        }
    }
    Ok(x)
}

/// One prediction of the decoder.
pub struct Prediction {
    /// `[B, N, H/4, W/4]` mask logits.
    pub masks: NodeId,
    /// `[B, N, K]` class scores.
    pub logits: NodeId,
    /// `[B, N, hidden]` normalised query states.
    pub queries: NodeId,
}

/// Masked attention's rule on mask logits (last axis = keys): a key is blocked where
/// `sigmoid(logit) < 0.5` (compared as the reference does, after the sigmoid), and a query whose
/// keys are all blocked attends to every key. Returns bool, true = attend.
pub fn attend_mask(b: &mut GraphBuilder, logits: NodeId) -> Result<NodeId> {
    let dt = b.dtype(logits);
    let m = b.unary(UnaryOp::Sigmoid, logits)?;
    let half = b.scalar(dt, 0.5)?;
    let attend = b.compare(CmpOp::Ge, m, half)?;
    let attend = b.cast(attend, dt)?;
    // Per query: 1 if any key is attended; `attend >= any` is then `attend`, or all true.
    let any = b.reduce(ReduceOp::Max, attend, &[-1], true)?;
    b.compare(CmpOp::Ge, attend, any)
}

/// Heads on the query states, and the next layer's attention mask at `target` (bool `[B, 1, N,
/// h·w]`, true = attend; a query that would see nothing sees everything).
fn heads(
    b: &mut GraphBuilder,
    c: &TransformerDecoderConfig,
    (output, mf, cls): (NodeId, NodeId, NodeId),
    target: [usize; 2],
) -> Result<(Prediction, NodeId)> {
    let (dt, d, p) = (c.dtype, c.hidden, c.prefix.trim_end_matches('.'));
    let [bn, n, _] = b.dims(output, "[B, N, d]")?;
    let [_, hh, ww, md] = b.dims(mf, "[N, H, W, C]")?;
    let o = layer_norm(b, dt, &format!("{p}.decoder_norm"), output, EPS)?;
    let ce = mlp(b, dt, &format!("{p}.CLASS_proj"), o, &[d, d])?;
    let logits = b.matmul_t(ce, cls, false, true)?;
    let me = mlp(b, dt, &format!("{p}.mask_embed"), o, &[d, d, md])?;
    let mf_tokens = b.reshape(mf, [bn, hh * ww, md])?;
    let masks = b.matmul_t(me, mf_tokens, false, true)?;
    // The attention mask: bilinear to the level's size, one channel per (image, query).
    let m = b.reshape(masks, [bn * n, hh, ww, 1])?;
    let m = b.resize(m, ResizeMode::Bilinear, target, false, false)?;
    let m = b.reshape(m, [bn, 1, n, target[0] * target[1]])?;
    let mask = attend_mask(b, m)?;
    let masks = b.reshape(masks, [bn, n, hh, ww])?;
    Ok((Prediction { masks, logits, queries: o }, mask))
}

/// The masked-attention decoder on `mask_features [B, H/4, W/4, mask_dim]`, the pixel
/// decoder's maps at 1/32, 1/16, 1/8 (`[B, h, w, hidden]`), the LLM's mask-token states
/// `seg_query [B, N, llm_hidden]` and class-name states `class_hidden [B, K, llm_hidden]`.
/// Returns the initial prediction and one per layer (the last is the decoder's output), and
/// each layer's attention mask (bool `[B, 1, N, h·w]`, true = attend).
pub fn transformer_decoder(
    b: &mut GraphBuilder,
    c: &TransformerDecoderConfig,
    mask_features: NodeId,
    ms: &[NodeId],
    (seg_query, class_hidden): (NodeId, NodeId),
) -> Result<(Vec<Prediction>, Vec<NodeId>)> {
    let (dt, d) = (c.dtype, c.hidden);
    let p = c.prefix.trim_end_matches('.').to_string();
    b.push_scope("predictor");
    let level_embed = param(b, &format!("{p}.level_embed.weight"), dt, [ms.len(), d])?;
    let (mut srcs, mut poss, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
    for (lvl, &x) in ms.iter().enumerate() {
        let [_, hh, ww, _] = b.dims(x, "[N, H, W, C]")?;
        sizes.push([hh, ww]);
        poss.push(constant(b, dt, vec![1, hh * ww, d], &sine_positions(hh, ww, d / 2, 0.0))?);
        let t = tokens(b, x)?;
        let e = row(b, level_embed, lvl)?;
        srcs.push(b.add(t, e)?);
    }
    let n = b.shape(seg_query)[1];
    let qpos = param(b, &format!("{p}.query_embed.weight"), dt, [n, d])?;
    let qpos = b.reshape(qpos, [1, n, d])?;
    let mut output = linear(b, dt, &format!("{p}.seg_query_projector"), seg_query, d, true)?;
    let cls = linear(b, dt, &format!("{p}.class_name_projector"), class_hidden, d, true)?;
    let (first, mut mask) = heads(b, c, (output, mask_features, cls), sizes[0])?;
    let mut preds = vec![first];
    let mut masks = Vec::new();
    let keys: Vec<NodeId> = srcs.iter().zip(&poss).map(|(&s, &q)| b.add(s, q)).collect::<Result<_>>()?;
    for i in 0..c.dec_layers {
        let lvl = i % ms.len();
        masks.push(mask);
        let (pred, next) = b.scoped(format!("layers.{i}"), |b| {
            let q = b.add(output, qpos)?;
            let ca = format!("{p}.transformer_cross_attention_layers.{i}");
            let a = multihead(b, c, &format!("{ca}.multihead_attn"), (q, keys[lvl], srcs[lvl]), Some(mask))?;
            let x = b.add(output, a)?;
            let x = layer_norm(b, dt, &format!("{ca}.norm"), x, EPS)?;
            let sa = format!("{p}.transformer_self_attention_layers.{i}");
            let q = b.add(x, qpos)?;
            let a = multihead(b, c, &format!("{sa}.self_attn"), (q, q, x), None)?;
            let x = b.add(x, a)?;
            let x = layer_norm(b, dt, &format!("{sa}.norm"), x, EPS)?;
            let fp = format!("{p}.transformer_ffn_layers.{i}");
            let f = linear(b, dt, &format!("{fp}.linear1"), x, c.ffn_dim, true)?;
            let f = b.unary(UnaryOp::Relu, f)?;
            let f = linear(b, dt, &format!("{fp}.linear2"), f, d, true)?;
            let x = b.add(x, f)?;
            output = layer_norm(b, dt, &format!("{fp}.norm"), x, EPS)?;
            heads(b, c, (output, mask_features, cls), sizes[(i + 1) % ms.len()])
        })?;
        preds.push(pred);
        mask = next;
    }
    b.pop_scope();
    Ok((preds, masks))
}

/// Pixel-decoder graph for a `size`² image: inputs `res2`..`res5` at strides 4..32, outputs
/// `mask_features` and `ms.0`..`ms.2`.
pub fn pixel_decoder_graph(c: &PixelDecoderConfig, size: usize) -> Result<Graph> {
    let mut b = GraphBuilder::new();
    let mut feats = Vec::new();
    for (i, &ch) in c.in_channels.iter().enumerate() {
        let s = size >> (i + 2);
        feats.push(b.input(&format!("res{}", i + 2), c.dtype, [1, s, s, ch])?);
    }
    let (mf, maps, _) = pixel_decoder(&mut b, c, &feats)?;
    b.output("mask_features", mf)?;
    for (i, m) in maps.into_iter().enumerate() {
        b.output(&format!("ms.{i}"), m)?;
    }
    b.finish()
}

/// Transformer-decoder graph for a `size`² image and `classes` class names: inputs
/// `mask_features` (stride 4), `ms.0`..`ms.2` (strides 32, 16, 8), `seg_query_hidden`,
/// `class_hidden`; outputs the last layer's `pred_masks`, `pred_logits`, `query_features`.
pub fn transformer_decoder_graph(c: &TransformerDecoderConfig, size: usize, classes: usize) -> Result<Graph> {
    let mut b = GraphBuilder::new();
    let mf = b.input("mask_features", c.dtype, [1, size / 4, size / 4, c.mask_dim])?;
    let mut ms = Vec::new();
    for (i, stride) in [32, 16, 8].into_iter().enumerate() {
        ms.push(b.input(&format!("ms.{i}"), c.dtype, [1, size / stride, size / stride, c.hidden])?);
    }
    let q = b.input("seg_query_hidden", c.dtype, [1, c.num_queries, c.llm_hidden])?;
    let k = b.input("class_hidden", c.dtype, [1, classes, c.llm_hidden])?;
    let (preds, _) = transformer_decoder(&mut b, c, mf, &ms, (q, k))?;
    let last = preds.last().expect("the initial prediction at least");
    b.output("pred_masks", last.masks)?;
    b.output("pred_logits", last.logits)?;
    b.output("query_features", last.queries)?;
    b.finish()
}
