//! diffusers' `VQModel` with `norm_type="spatial"` (Kandinsky 2.2's MoVQ, spec §6.3): the
//! library implementation FOCUS's own MoVQ blocks are cross-checked against. Encoder (GroupNorm
//! resnets, asymmetric-pad stride-2 downsamplers, single-head attention), `quant_conv`, a
//! nearest-codebook quantiser, `post_quant_conv`, and the decoder whose norms are SpatialNorms
//! (32 groups) of the quantised map. diffusers' names (`encoder.*`, `quantize.embedding.weight`,
//! `decoder.*`).

use crate::common::{conv, group_norm, param};
use crate::movq;
use crate::vae::{self, VaeConfig};
use focus_graph::{DType, Graph, GraphBuilder, NodeId, ResizeMode, Result, UnaryOp};

#[derive(Clone, Debug, PartialEq)]
pub struct KandinskyVqConfig {
    pub block_out_channels: Vec<usize>,
    /// Per level: the encoder's down block and the decoder's mirrored up block have attention.
    pub attention: Vec<bool>,
    pub layers_per_block: usize,
    pub norm_num_groups: usize,
    pub latent_channels: usize,
    pub vq_embed_dim: usize,
    pub num_vq_embeddings: usize,
    pub dtype: DType,
}

/// diffusers' SpatialNorm always has 32 groups.
const SPATIAL_GROUPS: usize = 32;

impl KandinskyVqConfig {
    /// Kandinsky 2.2's MoVQ.
    pub fn kandinsky22() -> Self {
        KandinskyVqConfig {
            block_out_channels: vec![128, 256, 256, 512],
            attention: vec![false, false, false, true],
            layers_per_block: 2,
            norm_num_groups: 32,
            latent_channels: 4,
            vq_embed_dim: 4,
            num_vq_embeddings: 16384,
            dtype: DType::F32,
        }
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        let n = self.block_out_channels.len();
        if n == 0 || self.attention.len() != n {
            return Err(format!("{n} levels but {} attention flags", self.attention.len()));
        }
        for &c in &self.block_out_channels {
            if c == 0 || !c.is_multiple_of(self.norm_num_groups.max(1)) || !c.is_multiple_of(SPATIAL_GROUPS) {
                return Err(format!("width {c} must split into {} and 32 groups", self.norm_num_groups));
            }
        }
        if self.latent_channels == 0 || self.vq_embed_dim == 0 || self.num_vq_embeddings == 0 {
            return Err("latent_channels, vq_embed_dim and num_vq_embeddings must be positive".into());
        }
        Ok(())
    }

    fn vae(&self) -> VaeConfig {
        VaeConfig {
            block_out_channels: self.block_out_channels.clone(),
            layers_per_block: self.layers_per_block,
            latent_channels: self.latent_channels,
            norm_num_groups: self.norm_num_groups,
            scaling_factor: 1.0,
            dtype: self.dtype,
        }
    }
}

/// Encoder + `quant_conv`: the pre-quantisation latents `[B, H/f, W/f, vq_embed_dim]`.
pub fn encode(b: &mut GraphBuilder, c: &KandinskyVqConfig, image: NodeId) -> Result<NodeId> {
    let v = c.vae();
    b.push_scope("encoder");
    let mut h = conv(b, c.dtype, "encoder.conv_in", image, (c.block_out_channels[0], 3, 1), true)?;
    let levels = c.block_out_channels.len();
    for (i, &cout) in c.block_out_channels.iter().enumerate() {
        let p = format!("encoder.down_blocks.{i}");
        for j in 0..c.layers_per_block {
            h = vae::resnet(b, &v, &format!("{p}.resnets.{j}"), h, cout)?;
            if c.attention[i] {
                h = vae::attention(b, &v, &format!("{p}.attentions.{j}"), h)?;
            }
        }
        if i + 1 < levels {
            // Downsample2D with padding 0: pad right and bottom by one, 3×3 stride 2.
            let padded = b.pad(h, &[(0, 0), (0, 1), (0, 1), (0, 0)], 0.0)?;
            let w = crate::common::conv_weight(
                b,
                &format!("{p}.downsamplers.0.conv.weight"),
                c.dtype,
                [cout, cout, 3, 3],
            )?;
            let bias = param(b, &format!("{p}.downsamplers.0.conv.bias"), c.dtype, [cout])?;
            let cp = focus_graph::Conv2dParams { stride: [2, 2], ..Default::default() };
            h = b.conv2d(padded, w, Some(bias), cp)?;
        }
    }
    let top = c.block_out_channels[levels - 1];
    h = vae::resnet(b, &v, "encoder.mid_block.resnets.0", h, top)?;
    h = vae::attention(b, &v, "encoder.mid_block.attentions.0", h)?;
    h = vae::resnet(b, &v, "encoder.mid_block.resnets.1", h, top)?;
    let h = group_norm(b, c.dtype, "encoder.conv_norm_out", h, c.norm_num_groups, 1e-6)?;
    let h = b.unary(UnaryOp::Silu, h)?;
    let h = conv(b, c.dtype, "encoder.conv_out", h, (c.latent_channels, 3, 1), true)?;
    b.pop_scope();
    conv(b, c.dtype, "quant_conv", h, (c.vq_embed_dim, 1, 1), true)
}

/// Nearest codebook rows (f32 distances, ties to the lowest id): (ids `[B, h, w]`, the
/// quantised map in the model dtype).
pub fn quantize(b: &mut GraphBuilder, c: &KandinskyVqConfig, h: NodeId) -> Result<(NodeId, NodeId)> {
    let cb = param(b, "quantize.embedding.weight", DType::F32, [c.num_vq_embeddings, c.vq_embed_dim])?;
    let z = b.cast(h, DType::F32)?;
    let ids = b.vq_nearest(z, cb)?;
    let q = b.embedding(cb, ids)?;
    Ok((ids, b.cast(q, c.dtype)?))
}

/// `ResnetBlockCondNorm2D` with SpatialNorms of `zq`.
fn resnet_cond(
    b: &mut GraphBuilder,
    c: &KandinskyVqConfig,
    p: &str,
    (x, zq): (NodeId, NodeId),
    cout: usize,
) -> Result<NodeId> {
    let cin = b.last_dim(x)?;
    let h = movq::spatial_norm(b, c.dtype, &format!("{p}.norm1"), (x, zq), SPATIAL_GROUPS)?;
    let h = b.unary(UnaryOp::Silu, h)?;
    let h = conv(b, c.dtype, &format!("{p}.conv1"), h, (cout, 3, 1), true)?;
    let h = movq::spatial_norm(b, c.dtype, &format!("{p}.norm2"), (h, zq), SPATIAL_GROUPS)?;
    let h = b.unary(UnaryOp::Silu, h)?;
    let h = conv(b, c.dtype, &format!("{p}.conv2"), h, (cout, 3, 1), true)?;
    let short =
        if cin != cout { conv(b, c.dtype, &format!("{p}.conv_shortcut"), x, (cout, 1, 1), true)? } else { x };
    b.add(short, h)
}

fn attention_cond(
    b: &mut GraphBuilder,
    c: &KandinskyVqConfig,
    p: &str,
    (x, zq): (NodeId, NodeId),
) -> Result<NodeId> {
    let nx = movq::spatial_norm(b, c.dtype, &format!("{p}.spatial_norm"), (x, zq), SPATIAL_GROUPS)?;
    vae::attention_on(b, c.dtype, p, x, nx)
}

/// `post_quant_conv` and the SpatialNorm decoder on the quantised map `quant [B, h, w, e]`.
pub fn decode(b: &mut GraphBuilder, c: &KandinskyVqConfig, quant: NodeId) -> Result<NodeId> {
    let z = conv(b, c.dtype, "post_quant_conv", quant, (c.latent_channels, 1, 1), true)?;
    b.push_scope("decoder");
    let chans: Vec<usize> = c.block_out_channels.iter().rev().copied().collect();
    let mut h = conv(b, c.dtype, "decoder.conv_in", z, (chans[0], 3, 1), true)?;
    h = resnet_cond(b, c, "decoder.mid_block.resnets.0", (h, quant), chans[0])?;
    h = attention_cond(b, c, "decoder.mid_block.attentions.0", (h, quant))?;
    h = resnet_cond(b, c, "decoder.mid_block.resnets.1", (h, quant), chans[0])?;
    let levels = chans.len();
    for (i, &cout) in chans.iter().enumerate() {
        let p = format!("decoder.up_blocks.{i}");
        for j in 0..=c.layers_per_block {
            h = resnet_cond(b, c, &format!("{p}.resnets.{j}"), (h, quant), cout)?;
            if c.attention[levels - 1 - i] {
                h = attention_cond(b, c, &format!("{p}.attentions.{j}"), (h, quant))?;
            }
        }
        if i + 1 < levels {
            let [_, hh, ww, _] = b.dims(h, "[N, H, W, C]")?;
            let up = b.resize(h, ResizeMode::Nearest, [2 * hh, 2 * ww], false, false)?;
            h = conv(b, c.dtype, &format!("{p}.upsamplers.0.conv"), up, (cout, 3, 1), true)?;
        }
    }
    let h = movq::spatial_norm(b, c.dtype, "decoder.conv_norm_out", (h, quant), SPATIAL_GROUPS)?;
    let h = b.unary(UnaryOp::Silu, h)?;
    let image = conv(b, c.dtype, "decoder.conv_out", h, (3, 3, 1), true)?;
    b.pop_scope();
    Ok(image)
}

/// Round trip graph: input `image [1, size, size, 3]`, outputs `h`, `indices`, `image` (decoded).
pub fn graph(c: &KandinskyVqConfig, size: usize) -> Result<Graph> {
    let mut b = GraphBuilder::new();
    let x = b.input("image", c.dtype, [1, size, size, 3])?;
    let h = encode(&mut b, c, x)?;
    let (ids, q) = quantize(&mut b, c, h)?;
    let image = decode(&mut b, c, q)?;
    b.output("h", h)?;
    b.output("indices", ids)?;
    b.output("image", image)?;
    b.finish()
}
