//! SimVQ quantiser (spec §7, ILLUME+ form): the codebook is `frozen_codebook · Wᵀ`, computed
//! once at load (a constant subgraph); lookup is the nearest row by L2, ties to the lowest id.

use crate::common::param;
use focus_graph::{DType, GraphBuilder, NodeId, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct SimVqConfig {
    pub codebook_size: usize,
    pub dim: usize,
    pub prefix: String,
}

impl SimVqConfig {
    /// DualViTok semantic codebook (spec §7).
    pub fn semantic() -> Self {
        SimVqConfig { codebook_size: 32768, dim: 32, prefix: "semantic_quantizer.".into() }
    }
    /// DualViTok pixel codebook.
    pub fn pixel() -> Self {
        SimVqConfig { codebook_size: 98304, dim: 32, prefix: "pixel_quantizer.".into() }
    }
}

/// The effective codebook `[K, dim]` (f32: VQ distances are computed in f32).
pub fn codebook(b: &mut GraphBuilder, c: &SimVqConfig) -> Result<NodeId> {
    let p = &c.prefix;
    let frozen = param(b, &format!("{p}frozen_codebook"), DType::F32, [c.codebook_size, c.dim])?;
    let w = param(b, &format!("{p}code_transform.weight"), DType::F32, [c.dim, c.dim])?;
    b.linear(frozen, w, None)
}

/// Quantise channels-last codes `z [..., dim]`: (ids `[...]` i64, quantised `[..., dim]`).
pub fn quantize(b: &mut GraphBuilder, c: &SimVqConfig, z: NodeId) -> Result<(NodeId, NodeId)> {
    let cb = codebook(b, c)?;
    let z = b.cast(z, DType::F32)?;
    let ids = b.vq_nearest(z, cb)?;
    let q = b.embedding(cb, ids)?;
    Ok((ids, q))
}

/// Code ids (any shape) to embeddings `[..., dim]`.
pub fn lookup(b: &mut GraphBuilder, c: &SimVqConfig, ids: NodeId) -> Result<NodeId> {
    let cb = codebook(b, c)?;
    b.embedding(cb, ids)
}
