//! The diffusion decoder's UNet (spec §8.1-8.3): diffusers' `UNet2DConditionModel` in SDXL's
//! layout (ResNet blocks with a time embedding, linear-projection transformers with GEGLU
//! feed-forwards, text-time additional embedding), its input being the latent concatenated with
//! ILLUME+'s quantised map (nearest-upsampled), and FOCUS's mask injection: a patch-embedded mask
//! sequence appended to the cross-attention context of the mid and up blocks. Channels-last;
//! diffusers' checkpoint names (`down_blocks.{i}.resnets.{j}.conv1`, …; the mask embedder under
//! `mask_embedder.`).

use crate::common::{conv, group_norm, layer_norm, linear, param, Intermediates};
use focus_graph::{DType, Graph, GraphBuilder, NodeId, ResizeMode, Result, UnaryOp};

#[derive(Clone, Debug, PartialEq)]
pub struct UnetConfig {
    pub block_out_channels: Vec<usize>,
    /// Per down block: a `CrossAttnDownBlock2D` (else `DownBlock2D`); up blocks mirror it.
    pub cross_attention: Vec<bool>,
    pub layers_per_block: usize,
    pub transformer_layers_per_block: Vec<usize>,
    /// Attention heads per level (diffusers' `attention_head_dim` config field means heads).
    pub num_attention_heads: Vec<usize>,
    pub cross_attention_dim: usize,
    pub norm_num_groups: usize,
    pub norm_eps: f32,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f32,
    pub addition_time_embed_dim: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub dtype: DType,
}

/// FOCUS's mask conditioning (spec §8.3): the mask is average-pooled to the latent grid,
/// cut into `patch`² patches, projected to the context width and position-embedded.
#[derive(Clone, Debug, PartialEq)]
pub struct MaskConfig {
    pub patch: usize,
    /// Mask pixels per latent pixel.
    pub image_scale: usize,
    /// Where attn2 sees the mask sequence: the mid block and/or the up blocks.
    pub mid: bool,
    pub up: bool,
}

impl UnetConfig {
    /// SDXL's UNet with ILLUME+'s 64 extra input channels.
    pub fn sdxl() -> Self {
        UnetConfig {
            block_out_channels: vec![320, 640, 1280],
            cross_attention: vec![false, true, true],
            layers_per_block: 2,
            transformer_layers_per_block: vec![1, 2, 10],
            num_attention_heads: vec![5, 10, 20],
            cross_attention_dim: 2048,
            norm_num_groups: 32,
            norm_eps: 1e-5,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            addition_time_embed_dim: 256,
            in_channels: 68,
            out_channels: 4,
            dtype: DType::F32,
        }
    }

    /// The reference's `tiny` config.
    pub fn tiny() -> Self {
        UnetConfig {
            block_out_channels: vec![16, 32],
            cross_attention: vec![false, true],
            layers_per_block: 1,
            transformer_layers_per_block: vec![1, 2],
            num_attention_heads: vec![1, 2],
            cross_attention_dim: 16,
            norm_num_groups: 8,
            addition_time_embed_dim: 8,
            ..Self::sdxl()
        }
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        let n = self.block_out_channels.len();
        if n == 0
            || [
                self.cross_attention.len(),
                self.transformer_layers_per_block.len(),
                self.num_attention_heads.len(),
            ]
            .iter()
            .any(|&l| l != n)
        {
            return Err(format!("{n} levels but per-level lists of other lengths in {self:?}"));
        }
        let g = self.norm_num_groups;
        for (&c, &h) in self.block_out_channels.iter().zip(&self.num_attention_heads) {
            if g == 0 || c == 0 || !c.is_multiple_of(g) || h == 0 || !c.is_multiple_of(h) {
                return Err(format!("width {c} must split into {g} groups and {h} heads"));
            }
        }
        if self.addition_time_embed_dim < 2 || self.in_channels == 0 || self.out_channels == 0 {
            return Err("addition_time_embed_dim >= 2 and positive in/out channels required".into());
        }
        Ok(())
    }

    fn time_dim(&self) -> usize {
        4 * self.block_out_channels[0]
    }
}

/// Where the cross-attention layers read their context.
#[derive(Clone, Copy)]
pub struct Contexts {
    pub down: NodeId,
    pub mid: NodeId,
    pub up: NodeId,
}

/// The UNet's conditioning inputs.
#[derive(Clone, Copy)]
pub struct Conditioning {
    /// `[1]` f32 (diffusers' scalar timestep, broadcast over the batch).
    pub timestep: NodeId,
    /// `[B, T]` pooled text embedding and `[B, 6]` f32 size/crop ids.
    pub text_embeds: NodeId,
    pub time_ids: NodeId,
    pub contexts: Contexts,
}

/// `ResnetBlock2D` with the time embedding (`temb_act` = SiLU of the embedding) added after
/// conv1.
fn resnet(
    b: &mut GraphBuilder,
    c: &UnetConfig,
    p: &str,
    x: NodeId,
    temb_act: NodeId,
    cout: usize,
) -> Result<NodeId> {
    let [bn, _, _, cin] = b.dims(x, "[N, H, W, C]")?;
    let h = group_norm(b, c.dtype, &format!("{p}.norm1"), x, c.norm_num_groups, c.norm_eps)?;
    let h = b.unary(UnaryOp::Silu, h)?;
    let h = conv(b, c.dtype, &format!("{p}.conv1"), h, (cout, 3, 1), true)?;
    let t = linear(b, c.dtype, &format!("{p}.time_emb_proj"), temb_act, cout, true)?;
    let t = b.reshape(t, [bn, 1, 1, cout])?;
    let h = b.add(h, t)?;
    let h = group_norm(b, c.dtype, &format!("{p}.norm2"), h, c.norm_num_groups, c.norm_eps)?;
    let h = b.unary(UnaryOp::Silu, h)?;
    let h = conv(b, c.dtype, &format!("{p}.conv2"), h, (cout, 3, 1), true)?;
    let short =
        if cin != cout { conv(b, c.dtype, &format!("{p}.conv_shortcut"), x, (cout, 1, 1), true)? } else { x };
    b.add(short, h)
}

/// diffusers `Attention` without q/k/v biases: `x [B, N, d]` over `ctx [B, M, *]`.
fn attention(
    b: &mut GraphBuilder,
    c: &UnetConfig,
    p: &str,
    x: NodeId,
    ctx: NodeId,
    heads: usize,
) -> Result<NodeId> {
    let dt = c.dtype;
    let [bn, n, d] = b.dims(x, "[B, N, d]")?;
    let m = b.shape(ctx)[1];
    let q = linear(b, dt, &format!("{p}.to_q"), x, d, false)?;
    let k = linear(b, dt, &format!("{p}.to_k"), ctx, d, false)?;
    let v = linear(b, dt, &format!("{p}.to_v"), ctx, d, false)?;
    let q = b.reshape(q, [bn, n, heads, d / heads])?;
    let k = b.reshape(k, [bn, m, heads, d / heads])?;
    let v = b.reshape(v, [bn, m, heads, d / heads])?;
    let o = b.attention(q, k, v, None, false, 1.0 / ((d / heads) as f32).sqrt())?;
    let o = b.reshape(o, [bn, n, d])?;
    linear(b, dt, &format!("{p}.to_out.0"), o, d, true)
}

/// `Transformer2DModel` with linear projections: GroupNorm (eps 1e-6), proj_in, `layers` ×
/// (self-attention, cross-attention over `ctx`, GEGLU feed-forward, each pre-LayerNorm with a
/// residual), proj_out, residual.
fn transformer(
    b: &mut GraphBuilder,
    c: &UnetConfig,
    p: &str,
    x: NodeId,
    ctx: NodeId,
    (heads, layers): (usize, usize),
) -> Result<NodeId> {
    let dt = c.dtype;
    let [bn, h, w, d] = b.dims(x, "[N, H, W, C]")?;
    let n = group_norm(b, c.dtype, &format!("{p}.norm"), x, c.norm_num_groups, 1e-6)?;
    let n = b.reshape(n, [bn, h * w, d])?;
    let mut t = linear(b, dt, &format!("{p}.proj_in"), n, d, true)?;
    for l in 0..layers {
        let tp = format!("{p}.transformer_blocks.{l}");
        t = b.scoped(format!("transformer_blocks.{l}"), |b| {
            let y = layer_norm(b, c.dtype, &format!("{tp}.norm1"), t, 1e-5)?;
            let a = attention(b, c, &format!("{tp}.attn1"), y, y, heads)?;
            let t = b.add(a, t)?;
            let y = layer_norm(b, c.dtype, &format!("{tp}.norm2"), t, 1e-5)?;
            let a = attention(b, c, &format!("{tp}.attn2"), y, ctx, heads)?;
            let t = b.add(a, t)?;
            let y = layer_norm(b, c.dtype, &format!("{tp}.norm3"), t, 1e-5)?;
            let f = linear(b, dt, &format!("{tp}.ff.net.0.proj"), y, 8 * d, true)?;
            let f = b.glu(f, UnaryOp::Gelu)?;
            let f = linear(b, dt, &format!("{tp}.ff.net.2"), f, d, true)?;
            b.add(f, t)
        })?;
    }
    let t = linear(b, dt, &format!("{p}.proj_out"), t, d, true)?;
    let t = b.reshape(t, [bn, h, w, d])?;
    b.add(t, x)
}

/// Time embedding + text-time additional embedding, then SiLU (what every resnet's
/// `time_emb_proj` reads).
fn time_embedding(b: &mut GraphBuilder, c: &UnetConfig, cond: &Conditioning, batch: usize) -> Result<NodeId> {
    let dt = c.dtype;
    let td = c.time_dim();
    let t = b.timestep_embedding(cond.timestep, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift)?;
    let t = b.cast(t, dt)?;
    let emb = linear(b, dt, "time_embedding.linear_1", t, td, true)?;
    let emb = b.unary(UnaryOp::Silu, emb)?;
    let emb = linear(b, dt, "time_embedding.linear_2", emb, td, true)?;
    // One timestep for the whole batch.
    let emb = if batch > 1 { b.concat(&vec![emb; batch], 0)? } else { emb };
    let ids = b.shape(cond.time_ids).to_vec();
    let flat = b.reshape(cond.time_ids, [ids.iter().product::<usize>()])?;
    let te = b.timestep_embedding(flat, c.addition_time_embed_dim, c.flip_sin_to_cos, c.freq_shift)?;
    let te = b.reshape(te, [batch, ids[1] * c.addition_time_embed_dim])?;
    let te = b.cast(te, dt)?;
    let add = b.concat(&[cond.text_embeds, te], 1)?;
    let aug = linear(b, dt, "add_embedding.linear_1", add, td, true)?;
    let aug = b.unary(UnaryOp::Silu, aug)?;
    let aug = linear(b, dt, "add_embedding.linear_2", aug, td, true)?;
    let emb = b.add(emb, aug)?;
    b.unary(UnaryOp::Silu, emb)
}

/// The UNet on `sample [B, h, w, in_channels]`: returns (the noise prediction
/// `[B, h, w, out_channels]`, intermediates `down.{i}`, `mid`, `up.{i}`).
pub fn unet(
    b: &mut GraphBuilder,
    c: &UnetConfig,
    sample: NodeId,
    cond: &Conditioning,
) -> Result<(NodeId, Intermediates)> {
    let batch = b.shape(sample)[0];
    let levels = c.block_out_channels.len();
    let mut inter = Vec::new();
    let temb = b.scoped("time_embedding", |b| time_embedding(b, c, cond, batch))?;
    let mut h =
        b.scoped("conv_in", |b| conv(b, c.dtype, "conv_in", sample, (c.block_out_channels[0], 3, 1), true))?;
    let mut skips = vec![h];
    for (i, &cout) in c.block_out_channels.iter().enumerate() {
        b.push_scope(format!("down_blocks.{i}"));
        let p = format!("down_blocks.{i}");
        for j in 0..c.layers_per_block {
            h = b.scoped(format!("resnets.{j}"), |b| {
                resnet(b, c, &format!("{p}.resnets.{j}"), h, temb, cout)
            })?;
            if c.cross_attention[i] {
                let shape = (c.num_attention_heads[i], c.transformer_layers_per_block[i]);
                let ap = format!("{p}.attentions.{j}");
                h = b.scoped(format!("attentions.{j}"), |b| {
                    transformer(b, c, &ap, h, cond.contexts.down, shape)
                })?;
            }
            skips.push(h);
        }
        if i + 1 < levels {
            h = b.scoped("downsamplers.0", |b| {
                conv(b, c.dtype, &format!("{p}.downsamplers.0.conv"), h, (cout, 3, 2), true)
            })?;
            skips.push(h);
        }
        b.pop_scope();
        inter.push((format!("down.{i}"), h));
    }
    let top = c.block_out_channels[levels - 1];
    h = b.scoped("mid_block", |b| {
        let h = resnet(b, c, "mid_block.resnets.0", h, temb, top)?;
        let shape = (c.num_attention_heads[levels - 1], c.transformer_layers_per_block[levels - 1]);
        let h = transformer(b, c, "mid_block.attentions.0", h, cond.contexts.mid, shape)?;
        resnet(b, c, "mid_block.resnets.1", h, temb, top)
    })?;
    inter.push(("mid".into(), h));
    for i in 0..levels {
        let lvl = levels - 1 - i;
        let cout = c.block_out_channels[lvl];
        b.push_scope(format!("up_blocks.{i}"));
        let p = format!("up_blocks.{i}");
        for j in 0..=c.layers_per_block {
            let skip = skips.pop().expect("one skip per up-block layer");
            h = b.concat(&[h, skip], 3)?;
            h = b.scoped(format!("resnets.{j}"), |b| {
                resnet(b, c, &format!("{p}.resnets.{j}"), h, temb, cout)
            })?;
            if c.cross_attention[lvl] {
                let shape = (c.num_attention_heads[lvl], c.transformer_layers_per_block[lvl]);
                let ap = format!("{p}.attentions.{j}");
                h = b.scoped(format!("attentions.{j}"), |b| {
                    transformer(b, c, &ap, h, cond.contexts.up, shape)
                })?;
            }
        }
        if i + 1 < levels {
            let [_, hh, ww, _] = b.dims(h, "[N, H, W, C]")?;
            h = b.scoped("upsamplers.0", |b| {
                let up = b.resize(h, ResizeMode::Nearest, [2 * hh, 2 * ww], false, false)?;
                conv(b, c.dtype, &format!("{p}.upsamplers.0.conv"), up, (cout, 3, 1), true)
            })?;
        }
        b.pop_scope();
        inter.push((format!("up.{i}"), h));
    }
    let h = group_norm(b, c.dtype, "conv_norm_out", h, c.norm_num_groups, c.norm_eps)?;
    let h = b.unary(UnaryOp::Silu, h)?;
    let out = b.scoped("conv_out", |b| conv(b, c.dtype, "conv_out", h, (c.out_channels, 3, 1), true))?;
    Ok((out, inter))
}

/// The UNet's input: the latent `[B, h, w, 4]` and ILLUME+'s quantised map `[B, h2, w2, 64]`,
/// nearest-resized to the latent grid, concatenated on channels.
pub fn unet_input(b: &mut GraphBuilder, latent: NodeId, vq: NodeId) -> Result<NodeId> {
    let [_, h, w, _] = b.dims(latent, "[N, H, W, C]")?;
    let [_, vh, vw, _] = b.dims(vq, "[N, H, W, C]")?;
    let vq = if [vh, vw] != [h, w] { b.resize(vq, ResizeMode::Nearest, [h, w], false, false)? } else { vq };
    b.concat(&[latent, vq], 3)
}

/// FOCUS's mask sequence `[B, (h/p)·(w/p), ctx]` from a mask `[B, h·s, w·s, 1]` in [0, 1] at a
/// latent grid of `h`×`w`: average-pooled by `s`, `p`×`p` patches (row-major patches and pixels)
/// projected by `mask_embedder.proj`, plus `mask_embedder.pos_embed`.
pub fn mask_sequence(
    b: &mut GraphBuilder,
    c: &UnetConfig,
    m: &MaskConfig,
    mask: NodeId,
    grid: [usize; 2],
) -> Result<NodeId> {
    let (p, s) = (m.patch, m.image_scale);
    let bn = b.shape(mask)[0];
    let [h, w] = grid;
    let pooled = b.avg_pool2d(mask, [s, s], [s, s], [0, 0])?;
    let x = b.reshape(pooled, [bn, h / p, p, w / p, p])?;
    let x = b.permute(x, &[0, 1, 3, 2, 4])?;
    let tokens = (h / p) * (w / p);
    let x = b.reshape(x, [bn, tokens, p * p])?;
    let y = linear(b, c.dtype, "mask_embedder.proj", x, c.cross_attention_dim, true)?;
    let pos = param(b, "mask_embedder.pos_embed", c.dtype, [tokens, c.cross_attention_dim])?;
    let pos = b.reshape(pos, [1, tokens, c.cross_attention_dim])?;
    b.add(y, pos)
}

/// A denoising-step graph at a `size`² image: latents at `size/8`, ILLUME+'s quantised map at
/// `size/32` (it decodes at twice its tokenizer's resolution), a context of `context_len`
/// tokens. Inputs `latent`, `vq`, `timestep [1]` (f32), `encoder_hidden_states`, `text_embeds`,
/// `time_ids [1, 6]` (f32), and `mask` with mask conditioning; output `noise_pred`.
pub fn step_graph(
    c: &UnetConfig,
    mask: Option<&MaskConfig>,
    size: usize,
    (text_embeds, context_len): (usize, usize),
) -> Result<Graph> {
    let dt = c.dtype;
    let mut b = GraphBuilder::new();
    let (h, vq_ch) = (size / 8, c.in_channels.saturating_sub(4));
    let latent = b.input("latent", dt, [1, h, h, 4])?;
    let vq = b.input("vq", dt, [1, size / 32, size / 32, vq_ch])?;
    let timestep = b.input("timestep", DType::F32, [1])?;
    let ctx = b.input("encoder_hidden_states", dt, [1, context_len, c.cross_attention_dim])?;
    let text = b.input("text_embeds", dt, [1, text_embeds])?;
    let time_ids = b.input("time_ids", DType::F32, [1, 6])?;
    let contexts = match mask {
        None => Contexts { down: ctx, mid: ctx, up: ctx },
        Some(m) => {
            let mi = b.input("mask", dt, [1, h * m.image_scale, h * m.image_scale, 1])?;
            let seq = mask_sequence(&mut b, c, m, mi, [h, h])?;
            let joined = b.concat(&[ctx, seq], 1)?;
            Contexts { down: ctx, mid: if m.mid { joined } else { ctx }, up: if m.up { joined } else { ctx } }
        }
    };
    let sample = unet_input(&mut b, latent, vq)?;
    let cond = Conditioning { timestep, text_embeds: text, time_ids, contexts };
    let (out, _) = unet(&mut b, c, sample, &cond)?;
    b.output("noise_pred", out)?;
    b.finish()
}
