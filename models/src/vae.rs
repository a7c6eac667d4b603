//! The SDXL VAE decoder (spec §8.4; diffusers `AutoencoderKL.decode`, checkpoint names
//! `post_quant_conv.*`, `decoder.*`): latents → RGB in about [-1, 1], 2^(levels-1)× larger.
//! Channels-last inside. On CUDA the engine runs each GroupNorm → SiLU as one kernel and each
//! upsampler's nearest ×2 inside the conv that reads it.

use crate::common::{conv, group_norm, linear};
use focus_graph::{DType, Graph, GraphBuilder, NodeId, ResizeMode, Result, UnaryOp};

#[derive(Clone, Debug, PartialEq)]
pub struct VaeConfig {
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub latent_channels: usize,
    pub norm_num_groups: usize,
    /// Latents are divided by this before decoding.
    pub scaling_factor: f32,
    pub dtype: DType,
}

const EPS: f32 = 1e-6;

impl VaeConfig {
    /// SDXL's VAE (`madebyollin/sdxl-vae-fp16-fix` has the same shapes).
    pub fn sdxl() -> Self {
        VaeConfig {
            block_out_channels: vec![128, 256, 512, 512],
            layers_per_block: 2,
            latent_channels: 4,
            norm_num_groups: 32,
            scaling_factor: 0.13025,
            dtype: DType::F32,
        }
    }

    /// The reference's `tiny` config.
    pub fn tiny() -> Self {
        VaeConfig { block_out_channels: vec![16, 32], norm_num_groups: 8, ..Self::sdxl() }
    }

    /// Spatial factor between the latents and the image.
    pub fn factor(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        let g = self.norm_num_groups;
        if self.block_out_channels.is_empty() || self.latent_channels == 0 {
            return Err("block_out_channels and latent_channels must be non-empty / positive".into());
        }
        if g == 0 || self.block_out_channels.iter().any(|c| *c == 0 || c % g != 0) {
            return Err(format!("norm_num_groups {g} must divide every width {:?}", self.block_out_channels));
        }
        if !self.scaling_factor.is_finite() || self.scaling_factor == 0.0 {
            return Err(format!("scaling_factor {} must be finite and non-zero", self.scaling_factor));
        }
        Ok(())
    }
}

/// diffusers `ResnetBlock2D` without a time embedding.
pub(crate) fn resnet(b: &mut GraphBuilder, c: &VaeConfig, p: &str, x: NodeId, cout: usize) -> Result<NodeId> {
    let cin = b.last_dim(x)?;
    let h = group_norm(b, c.dtype, &format!("{p}.norm1"), x, c.norm_num_groups, EPS)?;
    let h = b.unary(UnaryOp::Silu, h)?;
    let h = conv(b, c.dtype, &format!("{p}.conv1"), h, (cout, 3, 1), true)?;
    let h = group_norm(b, c.dtype, &format!("{p}.norm2"), h, c.norm_num_groups, EPS)?;
    let h = b.unary(UnaryOp::Silu, h)?;
    let h = conv(b, c.dtype, &format!("{p}.conv2"), h, (cout, 3, 1), true)?;
    let short =
        if cin != cout { conv(b, c.dtype, &format!("{p}.conv_shortcut"), x, (cout, 1, 1), true)? } else { x };
    b.add(short, h)
}

/// The mid block's single-head attention (`group_norm`, `to_q/k/v`, `to_out.0`; scale 1/√C,
/// residual).
pub(crate) fn attention(b: &mut GraphBuilder, c: &VaeConfig, p: &str, x: NodeId) -> Result<NodeId> {
    let nx = group_norm(b, c.dtype, &format!("{p}.group_norm"), x, c.norm_num_groups, EPS)?;
    attention_on(b, c.dtype, p, x, nx)
}

/// The attention of `nx` (x normalised) with `x` as the residual.
pub(crate) fn attention_on(
    b: &mut GraphBuilder,
    dt: DType,
    p: &str,
    x: NodeId,
    nx: NodeId,
) -> Result<NodeId> {
    let [n, h, w, ch] = b.dims(x, "[N, H, W, C]")?;
    let mut qkv = Vec::new();
    for name in ["to_q", "to_k", "to_v"] {
        let y = b.scoped(name, |b| linear(b, dt, &format!("{p}.{name}"), nx, ch, true))?;
        qkv.push(b.reshape(y, [n, h * w, 1, ch])?);
    }
    let o = b.attention(qkv[0], qkv[1], qkv[2], None, false, 1.0 / (ch as f32).sqrt())?;
    let o = b.reshape(o, [n, h, w, ch])?;
    let o = b.scoped("to_out", |b| linear(b, dt, &format!("{p}.to_out.0"), o, ch, true))?;
    b.add(x, o)
}

/// The decoder on scaled `latents [N, h, w, latent]`: returns (image `[N, f·h, f·w, 3]`,
/// `post_quant_conv` output).
pub fn decode(b: &mut GraphBuilder, c: &VaeConfig, latents: NodeId) -> Result<(NodeId, NodeId)> {
    let z = b.scale(latents, 1.0 / c.scaling_factor)?;
    let post = b.scoped("post_quant_conv", |b| {
        conv(b, c.dtype, "post_quant_conv", z, (c.latent_channels, 1, 1), true)
    })?;
    b.push_scope("decoder");
    let chans: Vec<usize> = c.block_out_channels.iter().rev().copied().collect();
    let mut h = b.scoped("conv_in", |b| conv(b, c.dtype, "decoder.conv_in", post, (chans[0], 3, 1), true))?;
    h = b.scoped("mid_block", |b| {
        let p = "decoder.mid_block";
        let h = resnet(b, c, &format!("{p}.resnets.0"), h, chans[0])?;
        let h = attention(b, c, &format!("{p}.attentions.0"), h)?;
        resnet(b, c, &format!("{p}.resnets.1"), h, chans[0])
    })?;
    for (i, &cout) in chans.iter().enumerate() {
        b.push_scope(format!("up_blocks.{i}"));
        let p = format!("decoder.up_blocks.{i}");
        for j in 0..=c.layers_per_block {
            h = b.scoped(format!("resnets.{j}"), |b| resnet(b, c, &format!("{p}.resnets.{j}"), h, cout))?;
        }
        if i + 1 < chans.len() {
            let [_, hh, ww, _] = b.dims(h, "[N, H, W, C]")?;
            h = b.scoped("upsamplers.0", |b| {
                let up = b.resize(h, ResizeMode::Nearest, [2 * hh, 2 * ww], false, false)?;
                conv(b, c.dtype, &format!("{p}.upsamplers.0.conv"), up, (cout, 3, 1), true)
            })?;
        }
        b.pop_scope();
    }
    let h = b.scoped("conv_norm_out", |b| {
        group_norm(b, c.dtype, "decoder.conv_norm_out", h, c.norm_num_groups, EPS)
    })?;
    let h = b.unary(UnaryOp::Silu, h)?;
    let image = b.scoped("conv_out", |b| conv(b, c.dtype, "decoder.conv_out", h, (3, 3, 1), true))?;
    b.pop_scope();
    Ok((image, post))
}

/// Decoder graph: input `latents [batch, h, w, latent]`, output `image`.
pub fn decoder_graph(c: &VaeConfig, batch: usize, h: usize, w: usize) -> Result<Graph> {
    let mut b = GraphBuilder::new();
    let x = b.input("latents", c.dtype, [batch, h, w, c.latent_channels])?;
    let (image, _) = decode(&mut b, c, x)?;
    b.output("image", image)?;
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_without_the_channels_last_rank_is_an_error_not_a_panic() {
        let mut b = GraphBuilder::new();
        let x = b.input("latents", DType::F32, [8, 8, 4]).unwrap();
        let e = decode(&mut b, &VaeConfig::tiny(), x).unwrap_err().to_string();
        assert!(e.contains("must have rank 4, got [8,8,4]"), "{e}");
        let vq = b.input("vq", DType::F32, [1, 4, 4, 64]).unwrap();
        let e = crate::unet::unet_input(&mut b, x, vq).unwrap_err().to_string();
        assert!(e.contains("'latents'") && e.contains("expected [N, H, W, C], got [8,8,4]"), "{e}");
    }
}
