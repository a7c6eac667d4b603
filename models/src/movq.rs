//! ILLUME+'s pixel tokenizer branch (spec §6.2): the MoVQ-style encoder with DC down blocks and
//! the decoder with DC up blocks, whose norms are SpatialNorms of the quantised map. Channels-last
//! inside; checkpoint names `pixel_encoder.*`, `pixel_quant_conv`, `pixel_post_quant_conv`,
//! `pixel_decoder.*`. 1×1 convs run as linears on the channel axis.

use crate::common::{conv, conv1x1, group_norm, param, Intermediates};
use focus_graph::{DType, Graph, GraphBuilder, NodeId, ReduceOp, ResizeMode, Result, UnaryOp};

#[derive(Clone, Debug, PartialEq)]
pub struct MovqConfig {
    /// Base width; level `i` has `ch · ch_mult[i]` channels.
    pub ch: usize,
    pub ch_mult: Vec<usize>,
    pub num_res_blocks: usize,
    /// Levels whose res blocks are each followed by an attention block.
    pub attn_levels: Vec<usize>,
    /// Encoder output / decoder input channels.
    pub z_channels: usize,
    /// Channels of the quantised map that modulates the decoder's SpatialNorms (decoder only).
    pub zq_channels: usize,
    pub groups: usize,
    pub dtype: DType,
}

const EPS: f32 = 1e-6;

impl MovqConfig {
    /// ILLUME+ DualViTok pixel encoder: 256² → 16² × 32.
    pub fn illume_encoder() -> Self {
        MovqConfig {
            ch: 128,
            ch_mult: vec![1, 1, 2, 2, 4],
            num_res_blocks: 2,
            attn_levels: vec![4],
            z_channels: 32,
            zq_channels: 0,
            groups: 32,
            dtype: DType::F32,
        }
    }

    /// ILLUME+ DualViTok pixel decoder: merged 64-channel quant at h2² → 16·h2² RGB.
    pub fn illume_decoder() -> Self {
        MovqConfig {
            ch: 384,
            ch_mult: vec![1, 1, 2, 2, 4],
            num_res_blocks: 3,
            attn_levels: vec![4],
            z_channels: 64,
            zq_channels: 64,
            groups: 32,
            dtype: DType::F32,
        }
    }

    /// A network of the same structure at test size (the reference's `tiny` config).
    pub fn tiny_decoder() -> Self {
        MovqConfig {
            ch: 16,
            ch_mult: vec![1, 1, 2],
            num_res_blocks: 2,
            attn_levels: vec![2],
            z_channels: 16,
            zq_channels: 16,
            groups: 8,
            dtype: DType::F32,
        }
    }

    pub fn tiny_encoder() -> Self {
        MovqConfig { num_res_blocks: 1, z_channels: 8, zq_channels: 0, ..Self::tiny_decoder() }
    }

    /// What the builders assume of the widths (they would otherwise fail on a reshape or a
    /// conv deep inside the graph).
    pub fn validate(&self) -> std::result::Result<(), String> {
        let widths: Vec<usize> = self.ch_mult.iter().map(|m| self.ch * m).collect();
        let top = *widths.last().ok_or("ch_mult is empty")?;
        if widths.iter().any(|&w| w == 0 || self.groups == 0 || w % self.groups != 0) {
            return Err(format!("groups {} must divide every level width {widths:?}", self.groups));
        }
        if widths.iter().any(|w| w % 4 != 0) {
            return Err(format!("level widths {widths:?} must be multiples of 4 (DC blocks)"));
        }
        if self.z_channels == 0 || top % self.z_channels != 0 {
            return Err(format!("top width {top} must be a multiple of z_channels {}", self.z_channels));
        }
        if let Some(l) = self.attn_levels.iter().find(|&&l| l >= widths.len()) {
            return Err(format!("attention level {l} is beyond the {} levels", widths.len()));
        }
        Ok(())
    }

    /// Spatial factor between the image and the latent grid.
    pub fn factor(&self) -> usize {
        1 << (self.ch_mult.len() - 1)
    }
}

/// The encoder's GroupNorm, or the decoder's SpatialNorm modulated by `zq` (its 1×1 convs run
/// at zq's resolution; the norm reads them at the nearest pixel).
fn norm(b: &mut GraphBuilder, c: &MovqConfig, name: &str, x: NodeId, zq: Option<NodeId>) -> Result<NodeId> {
    b.scoped(name.rsplit('.').next().unwrap_or(name), |b| match zq {
        None => group_norm(b, c.dtype, name, x, c.groups, EPS),
        Some(zq) => spatial_norm(b, c.dtype, name, (x, zq), c.groups),
    })
}

/// MoVQ's SpatialNorm (`{name}.norm_layer`, `.conv_y`, `.conv_b`; eps 1e-6) of `x` modulated by
/// `zq`: the 1×1 convs run at zq's resolution, the norm reads them at the nearest pixel.
pub fn spatial_norm(
    b: &mut GraphBuilder,
    dt: DType,
    name: &str,
    (x, zq): (NodeId, NodeId),
    groups: usize,
) -> Result<NodeId> {
    let ch = b.last_dim(x)?;
    let w = param(b, &format!("{name}.norm_layer.weight"), dt, [ch])?;
    let bias = param(b, &format!("{name}.norm_layer.bias"), dt, [ch])?;
    let scale = conv1x1(b, dt, &format!("{name}.conv_y"), zq, ch)?;
    let shift = conv1x1(b, dt, &format!("{name}.conv_b"), zq, ch)?;
    b.spatial_norm(x, (w, bias), (scale, shift), groups, EPS)
}

fn res_block(
    b: &mut GraphBuilder,
    c: &MovqConfig,
    p: &str,
    x: NodeId,
    cout: usize,
    zq: Option<NodeId>,
) -> Result<NodeId> {
    let cin = b.last_dim(x)?;
    let h = norm(b, c, &format!("{p}.norm1"), x, zq)?;
    let h = b.unary(UnaryOp::Silu, h)?;
    let h = conv(b, c.dtype, &format!("{p}.conv1"), h, (cout, 3, 1), true)?;
    let h = norm(b, c, &format!("{p}.norm2"), h, zq)?;
    let h = b.unary(UnaryOp::Silu, h)?;
    let h = conv(b, c.dtype, &format!("{p}.conv2"), h, (cout, 3, 1), true)?;
    let short = if cin != cout { conv1x1(b, c.dtype, &format!("{p}.nin_shortcut"), x, cout)? } else { x };
    b.add(short, h)
}

/// Single-head self-attention over all positions, scale 1/√C.
fn attn_block(
    b: &mut GraphBuilder,
    c: &MovqConfig,
    p: &str,
    x: NodeId,
    zq: Option<NodeId>,
) -> Result<NodeId> {
    let [n, h, w, ch] = b.dims(x, "[N, H, W, C]")?;
    let nx = norm(b, c, &format!("{p}.norm"), x, zq)?;
    let mut qkv = Vec::new();
    for name in ["q", "k", "v"] {
        let y = conv1x1(b, c.dtype, &format!("{p}.{name}"), nx, ch)?;
        qkv.push(b.reshape(y, [n, h * w, 1, ch])?);
    }
    let o = b.attention(qkv[0], qkv[1], qkv[2], None, false, 1.0 / (ch as f32).sqrt())?;
    let o = b.reshape(o, [n, h, w, ch])?;
    let o = conv1x1(b, c.dtype, &format!("{p}.proj_out"), o, ch)?;
    b.add(x, o)
}

/// `pixel_unshuffle₂(conv3×3(C→C/4)(x)) + avgpool₂(x)`.
fn dc_down(b: &mut GraphBuilder, c: &MovqConfig, p: &str, x: NodeId) -> Result<NodeId> {
    let ch = b.last_dim(x)?;
    let y = conv(b, c.dtype, &format!("{p}.conv"), x, (ch / 4, 3, 1), true)?;
    let y = b.pixel_unshuffle(y, 2)?;
    let s = b.avg_pool2d(x, [2, 2], [2, 2], [0, 0])?;
    b.add(y, s)
}

/// `pixel_shuffle₂(conv3×3(C→4C)(x)) + nearest_up₂(x)`.
fn dc_up(b: &mut GraphBuilder, c: &MovqConfig, p: &str, x: NodeId) -> Result<NodeId> {
    let [_, h, w, ch] = b.dims(x, "[N, H, W, C]")?;
    let y = conv(b, c.dtype, &format!("{p}.conv"), x, (4 * ch, 3, 1), true)?;
    let y = b.pixel_shuffle(y, 2)?;
    let s = b.resize(x, ResizeMode::Nearest, [2 * h, 2 * w], false, false)?;
    b.add(y, s)
}

/// Encoder on an image `x [N, H, W, 3]` in [-1, 1]: returns (`h` [N, H/f, W/f, z], the SimVQ
/// input `pixel_quant_conv(h)`, intermediates `down.{i}` and `mid`).
pub fn encoder(b: &mut GraphBuilder, c: &MovqConfig, x: NodeId) -> Result<(NodeId, NodeId, Intermediates)> {
    let mut inter = Vec::new();
    b.push_scope("pixel_encoder");
    let p = "pixel_encoder";
    let mut h = conv(b, c.dtype, &format!("{p}.conv_in"), x, (c.ch, 3, 1), true)?;
    let levels = c.ch_mult.len();
    for (i, &m) in c.ch_mult.iter().enumerate() {
        b.push_scope(format!("down.{i}"));
        for j in 0..c.num_res_blocks {
            h = b.scoped(format!("block.{j}"), |b| {
                res_block(b, c, &format!("{p}.down.{i}.block.{j}"), h, c.ch * m, None)
            })?;
            if c.attn_levels.contains(&i) {
                h = b.scoped(format!("attn.{j}"), |b| {
                    attn_block(b, c, &format!("{p}.down.{i}.attn.{j}"), h, None)
                })?;
            }
        }
        if i + 1 != levels {
            h = b.scoped("downsample", |b| dc_down(b, c, &format!("{p}.down.{i}.downsample"), h))?;
        }
        b.pop_scope();
        inter.push((format!("down.{i}"), h));
    }
    h = b.scoped("mid", |b| {
        let h = res_block(b, c, &format!("{p}.mid.block_1"), h, *b.shape(h).last().unwrap(), None)?;
        let h = attn_block(b, c, &format!("{p}.mid.attn_1"), h, None)?;
        res_block(b, c, &format!("{p}.mid.block_2"), h, *b.shape(h).last().unwrap(), None)
    })?;
    inter.push(("mid".into(), h));
    let h = norm(b, c, &format!("{p}.norm_out"), h, None)?;
    let h = b.unary(UnaryOp::Silu, h)?;
    // Shortcut: the mean over consecutive channel groups of C/z.
    let [n, hh, ww, ch] = b.dims(h, "[N, H, W, C]")?;
    let grouped = b.reshape(h, [n, hh, ww, c.z_channels, ch / c.z_channels])?;
    let short = b.reduce(ReduceOp::Mean, grouped, &[4], false)?;
    let out = conv(b, c.dtype, &format!("{p}.conv_out"), h, (c.z_channels, 3, 1), true)?;
    let out = b.add(out, short)?;
    b.pop_scope();
    let quant_in = conv1x1(b, c.dtype, "pixel_quant_conv", out, c.z_channels)?;
    Ok((out, quant_in, inter))
}

/// Decoder on the merged quantised map `quant [N, h, w, zq]` (also the SpatialNorm modulation):
/// returns (the image `[N, f·h, f·w, 3]` before the uint8 mapping, intermediates `z`, `mid`,
/// `up.{i}`).
pub fn decoder(b: &mut GraphBuilder, c: &MovqConfig, quant: NodeId) -> Result<(NodeId, Intermediates)> {
    let mut inter = Vec::new();
    let z = conv1x1(b, c.dtype, "pixel_post_quant_conv", quant, c.z_channels)?;
    inter.push(("z".into(), z));
    let zq = Some(quant);
    b.push_scope("pixel_decoder");
    let p = "pixel_decoder";
    let top = c.ch * c.ch_mult.last().copied().unwrap_or(1);
    // conv_in(z) + repeat_interleave(z, top / z, channels): a broadcast add over a channel split.
    let [n, hh, ww, zc] = b.dims(z, "[N, H, W, C]")?;
    let y = conv(b, c.dtype, &format!("{p}.conv_in"), z, (top, 3, 1), true)?;
    let y = b.reshape(y, [n, hh, ww, zc, top / zc])?;
    let zr = b.reshape(z, [n, hh, ww, zc, 1])?;
    let y = b.add(y, zr)?;
    let mut h = b.reshape(y, [n, hh, ww, top])?;
    h = b.scoped("mid", |b| {
        let h = res_block(b, c, &format!("{p}.mid.block_1"), h, top, zq)?;
        let h = attn_block(b, c, &format!("{p}.mid.attn_1"), h, zq)?;
        res_block(b, c, &format!("{p}.mid.block_2"), h, top, zq)
    })?;
    inter.push(("mid".into(), h));
    for i in (0..c.ch_mult.len()).rev() {
        b.push_scope(format!("up.{i}"));
        for j in 0..c.num_res_blocks {
            let cout = c.ch * c.ch_mult[i];
            h = b.scoped(format!("block.{j}"), |b| {
                res_block(b, c, &format!("{p}.up.{i}.block.{j}"), h, cout, zq)
            })?;
            if c.attn_levels.contains(&i) {
                h = b.scoped(format!("attn.{j}"), |b| {
                    attn_block(b, c, &format!("{p}.up.{i}.attn.{j}"), h, zq)
                })?;
            }
        }
        if i != 0 {
            h = b.scoped("upsample", |b| dc_up(b, c, &format!("{p}.up.{i}.upsample"), h))?;
        }
        b.pop_scope();
        inter.push((format!("up.{i}"), h));
    }
    let h = norm(b, c, &format!("{p}.norm_out"), h, zq)?;
    let h = b.unary(UnaryOp::Silu, h)?;
    let image = conv(b, c.dtype, &format!("{p}.conv_out"), h, (3, 3, 1), true)?;
    b.pop_scope();
    Ok((image, inter))
}

/// Encoder graph: input `image [batch, h, w, 3]`, outputs `h` and `quant_in`.
pub fn encoder_graph(c: &MovqConfig, batch: usize, h: usize, w: usize) -> Result<Graph> {
    let mut b = GraphBuilder::new();
    let x = b.input("image", c.dtype, [batch, h, w, 3])?;
    let (out, quant_in, _) = encoder(&mut b, c, x)?;
    b.output("h", out)?;
    b.output("quant_in", quant_in)?;
    b.finish()
}

/// Decoder graph: input `quant [batch, h, w, zq]`, output `image`.
pub fn decoder_graph(c: &MovqConfig, batch: usize, h: usize, w: usize) -> Result<Graph> {
    let mut b = GraphBuilder::new();
    let q = b.input("quant", c.dtype, [batch, h, w, c.zq_channels])?;
    let (image, _) = decoder(&mut b, c, q)?;
    b.output("image", image)?;
    b.finish()
}
