//! DualViTok's semantic decoder (spec §6.1): SimVQ code maps back to Qwen2-VL-ViT-width
//! features. `proj_in` (code → E), Qwen2-VL vision blocks with 2-D RoPE over the row-major code
//! grid and full attention, then `proj_out` = Linear(E → out) + LayerNorm. Checkpoint names
//! under `semantic_decoder.`.

use crate::common::{linear, param};
use crate::qwen_vit::{self, QwenVitConfig, VitVariant};
use focus_graph::{DType, Graph, GraphBuilder, NodeId, Result, UnaryOp};

#[derive(Clone, Debug, PartialEq)]
pub struct SemanticDecoderConfig {
    pub code_dim: usize,
    pub embed_dim: usize,
    pub num_heads: usize,
    pub depth: usize,
    pub mlp_ratio: usize,
    pub out_dim: usize,
    pub prefix: String,
    pub dtype: DType,
}

impl SemanticDecoderConfig {
    /// ILLUME+'s: 32-d codes, 4 blocks of 1280, out 3584 (the ViT's merged width).
    pub fn illume() -> Self {
        SemanticDecoderConfig {
            code_dim: 32,
            embed_dim: 1280,
            num_heads: 16,
            depth: 4,
            mlp_ratio: 4,
            out_dim: 3584,
            prefix: "semantic_decoder.".into(),
            dtype: DType::F32,
        }
    }

    /// The reference's `tiny` config.
    pub fn tiny() -> Self {
        SemanticDecoderConfig {
            code_dim: 8,
            embed_dim: 32,
            num_heads: 2,
            depth: 2,
            out_dim: 48,
            ..Self::illume()
        }
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        let (e, h) = (self.embed_dim, self.num_heads);
        if h == 0 || e == 0 || !e.is_multiple_of(h) || !(e / h).is_multiple_of(4) {
            return Err(format!("embed_dim {e} must split into {h} heads of a multiple of 4 (2-D RoPE)"));
        }
        if self.code_dim == 0 || self.out_dim == 0 || self.mlp_ratio == 0 {
            return Err("code_dim, out_dim and mlp_ratio must be positive".into());
        }
        Ok(())
    }

    fn block_config(&self) -> QwenVitConfig {
        QwenVitConfig {
            variant: VitVariant::Qwen2Vl,
            depth: self.depth,
            embed_dim: self.embed_dim,
            num_heads: self.num_heads,
            mlp_dim: self.mlp_ratio * self.embed_dim,
            act: UnaryOp::QuickGelu,
            prefix: self.prefix.clone(),
            dtype: self.dtype,
            ..QwenVitConfig::qwen2vl_600m()
        }
    }
}

/// The decoder on one code map `quant [1, h, w, code_dim]`: returns (features
/// `[1, h·w, out_dim]`, each block's output).
pub fn decode(
    b: &mut GraphBuilder,
    c: &SemanticDecoderConfig,
    quant: NodeId,
) -> Result<(NodeId, Vec<NodeId>)> {
    let [n, h, w, cd] = b.dims(quant, "[N, H, W, C]")?;
    let (dt, p) = (c.dtype, c.prefix.trim_end_matches('.'));
    b.push_scope("semantic_decoder");
    let x = b.reshape(quant, [n * h * w, cd])?;
    let mut x = linear(b, dt, &format!("{p}.proj_in"), x, c.embed_dim, true)?;
    let pos: Vec<i32> = (0..h).flat_map(|y| (0..w).flat_map(move |xx| [y as i32, xx as i32])).collect();
    let pos = b.constant_i32([h * w, 2], &pos)?;
    let vc = c.block_config();
    let mut blocks = Vec::new();
    for i in 0..c.depth {
        x = b.scoped(format!("blocks.{i}"), |b| {
            qwen_vit::block(b, &vc, x, pos, &format!("{p}.blocks.{i}"), None)
        })?;
        blocks.push(b.reshape(x, [n, h * w, c.embed_dim])?);
    }
    let y = linear(b, dt, &format!("{p}.proj_out.0"), x, c.out_dim, true)?;
    let nw = param(b, &format!("{p}.proj_out.1.weight"), dt, [c.out_dim])?;
    let nb = param(b, &format!("{p}.proj_out.1.bias"), dt, [c.out_dim])?;
    let y = b.layer_norm(y, Some(nw), Some(nb), 1e-6)?;
    let y = b.reshape(y, [n, h * w, c.out_dim])?;
    b.pop_scope();
    Ok((y, blocks))
}

/// Decoder graph: input `quant [1, h, w, code_dim]`, output `features`.
pub fn graph(c: &SemanticDecoderConfig, h: usize, w: usize) -> Result<Graph> {
    let mut b = GraphBuilder::new();
    let q = b.input("quant", c.dtype, [1, h, w, c.code_dim])?;
    let (f, _) = decode(&mut b, c, q)?;
    b.output("features", f)?;
    b.finish()
}
