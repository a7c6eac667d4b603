//! ConvNeXt (timm layout), the FOCUS hierarchical encoder (spec §4). Channels-last inside;
//! checkpoint conv weights (OIHW) are permuted to OHWI by constant subgraphs, folded at load.

use crate::common::{conv_weight, param};
use focus_graph::{Conv2dParams, DType, Graph, GraphBuilder, NodeId, Result, UnaryOp};

#[derive(Clone, Debug, PartialEq)]
pub struct ConvNextConfig {
    pub depths: Vec<usize>,
    pub dims: Vec<usize>,
    pub in_chans: usize,
    pub eps: f32,
    /// Blocks carry a per-channel layer-scale `gamma`.
    pub layer_scale: bool,
    /// Weight-name prefix, e.g. "" for timm, "visual.trunk." for OpenCLIP.
    pub prefix: String,
    pub naming: ConvNextNaming,
    pub dtype: DType,
}

/// Checkpoint naming schemes of the same weights (spec §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvNextNaming {
    /// timm / OpenCLIP trunk: `stem.0`, `stages.{s}.blocks.{b}.conv_dw`, `.gamma`.
    Timm,
    /// transformers ConvNextModel: `convnext.embeddings.*`, `convnext.encoder.stages.{s}.layers.{b}.dwconv`, …
    Hf,
}

impl ConvNextConfig {
    /// Checkpoint name of a weight given by its timm name.
    pub fn name(&self, timm: &str) -> String {
        let n = match self.naming {
            ConvNextNaming::Timm => timm.to_string(),
            ConvNextNaming::Hf => {
                let n = timm
                    .replace("stem.0.", "embeddings.patch_embeddings.")
                    .replace("stem.1.", "embeddings.layernorm.")
                    .replace(".downsample.", ".downsampling_layer.")
                    .replace(".blocks.", ".layers.")
                    .replace(".conv_dw.", ".dwconv.")
                    .replace(".norm.", ".layernorm.")
                    .replace(".mlp.fc1.", ".pwconv1.")
                    .replace(".mlp.fc2.", ".pwconv2.")
                    .replace(".gamma", ".layer_scale_parameter");
                let n = if n.starts_with("stages.") { format!("encoder.{n}") } else { n };
                format!("convnext.{n}")
            }
        };
        format!("{}{n}", self.prefix)
    }

    /// ConvNeXt-L as FOCUS uses it (spec §4.1).
    pub fn large() -> Self {
        ConvNextConfig {
            depths: vec![3, 3, 27, 3],
            dims: vec![192, 384, 768, 1536],
            in_chans: 3,
            eps: 1e-6,
            layer_scale: true,
            prefix: String::new(),
            naming: ConvNextNaming::Timm,
            dtype: DType::F32,
        }
    }

    /// A small network of the same structure, for the demo and tests.
    pub fn tiny() -> Self {
        ConvNextConfig { depths: vec![1, 1, 2, 1], dims: vec![16, 32, 64, 128], ..Self::large() }
    }
}

fn block(b: &mut GraphBuilder, c: &ConvNextConfig, x: NodeId, dim: usize, p: &str) -> Result<NodeId> {
    let dt = c.dtype;
    let w = conv_weight(b, &c.name(&format!("{p}conv_dw.weight")), dt, [dim, 1, 7, 7])?;
    let bias = param(b, &c.name(&format!("{p}conv_dw.bias")), dt, [dim])?;
    let cp = Conv2dParams { padding: [3, 3], groups: dim, ..Default::default() };
    let y = b.scoped("conv_dw", |b| b.conv2d(x, w, Some(bias), cp))?;
    let nw = param(b, &c.name(&format!("{p}norm.weight")), dt, [dim])?;
    let nb = param(b, &c.name(&format!("{p}norm.bias")), dt, [dim])?;
    let y = b.scoped("norm", |b| b.layer_norm(y, Some(nw), Some(nb), c.eps))?;
    let w1 = param(b, &c.name(&format!("{p}mlp.fc1.weight")), dt, [4 * dim, dim])?;
    let b1 = param(b, &c.name(&format!("{p}mlp.fc1.bias")), dt, [4 * dim])?;
    let w2 = param(b, &c.name(&format!("{p}mlp.fc2.weight")), dt, [dim, 4 * dim])?;
    let b2 = param(b, &c.name(&format!("{p}mlp.fc2.bias")), dt, [dim])?;
    let y = b.scoped("mlp", |b| {
        let h = b.linear(y, w1, Some(b1))?;
        let h = b.unary(UnaryOp::Gelu, h)?;
        b.linear(h, w2, Some(b2))
    })?;
    let y = if c.layer_scale {
        let g = param(b, &c.name(&format!("{p}gamma")), dt, [dim])?;
        b.mul(y, g)?
    } else {
        y
    };
    b.add(x, y)
}

/// Add ConvNeXt to `b` on a channels-last image `x [N, H, W, in_chans]`; returns the stage
/// outputs (strides 4, 8, 16, 32).
pub fn build(b: &mut GraphBuilder, c: &ConvNextConfig, x: NodeId) -> Result<Vec<NodeId>> {
    let dt = c.dtype;
    let d0 = c.dims[0];
    let mut x = b.scoped("stem", |b| {
        let w = conv_weight(b, &c.name("stem.0.weight"), dt, [d0, c.in_chans, 4, 4])?;
        let bias = param(b, &c.name("stem.0.bias"), dt, [d0])?;
        let y = b.conv2d(x, w, Some(bias), Conv2dParams { stride: [4, 4], ..Default::default() })?;
        let nw = param(b, &c.name("stem.1.weight"), dt, [d0])?;
        let nb = param(b, &c.name("stem.1.bias"), dt, [d0])?;
        b.layer_norm(y, Some(nw), Some(nb), c.eps)
    })?;
    let mut outs = Vec::new();
    for (s, (&depth, &dim)) in c.depths.iter().zip(&c.dims).enumerate() {
        b.push_scope(format!("stages.{s}"));
        if s > 0 {
            let prev = c.dims[s - 1];
            let p = format!("stages.{s}.downsample.");
            x = b.scoped("downsample", |b| {
                let nw = param(b, &c.name(&format!("{p}0.weight")), dt, [prev])?;
                let nb = param(b, &c.name(&format!("{p}0.bias")), dt, [prev])?;
                let y = b.layer_norm(x, Some(nw), Some(nb), c.eps)?;
                let w = conv_weight(b, &c.name(&format!("{p}1.weight")), dt, [dim, prev, 2, 2])?;
                let bias = param(b, &c.name(&format!("{p}1.bias")), dt, [dim])?;
                b.conv2d(y, w, Some(bias), Conv2dParams { stride: [2, 2], ..Default::default() })
            })?;
        }
        for j in 0..depth {
            let p = format!("stages.{s}.blocks.{j}.");
            x = b.scoped(format!("blocks.{j}"), |b| block(b, c, x, dim, &p))?;
        }
        b.pop_scope();
        outs.push(x);
    }
    Ok(outs)
}

/// A graph with input `pixel_values [batch, h, w, in_chans]` and outputs `res2`..`res5`.
pub fn graph(c: &ConvNextConfig, batch: usize, h: usize, w: usize) -> Result<Graph> {
    let mut b = GraphBuilder::new();
    let x = b.input("pixel_values", c.dtype, [batch, h, w, c.in_chans])?;
    let outs = build(&mut b, c, x)?;
    for (i, o) in outs.into_iter().enumerate() {
        b.output(&format!("res{}", i + 2), o)?;
    }
    b.finish()
}

/// ImageNet normalisation used by the FB/timm ConvNeXt checkpoints.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// ConvNeXt with its pre-processing in the graph: input `image [1, src_h, src_w, 3]` in [0, 1]
/// is resized (bicubic, antialias, as PyTorch) to `size`², normalised, and encoded.
pub fn graph_with_preprocess(c: &ConvNextConfig, src_h: usize, src_w: usize, size: usize) -> Result<Graph> {
    let mut b = GraphBuilder::new();
    let img = b.input("image", DType::F32, [1, src_h, src_w, 3])?;
    let x = b.scoped("preprocess", |b| {
        let x = if (src_h, src_w) == (size, size) {
            img
        } else {
            b.resize(img, focus_graph::ResizeMode::Bicubic, [size, size], false, true)?
        };
        let mean = b.constant_f32([3], &IMAGENET_MEAN)?;
        let inv_std: Vec<f32> = IMAGENET_STD.iter().map(|s| 1.0 / s).collect();
        let inv_std = b.constant_f32([3], &inv_std)?;
        let x = b.sub(x, mean)?;
        let x = b.mul(x, inv_std)?;
        b.cast(x, c.dtype)
    })?;
    let outs = build(&mut b, c, x)?;
    for (i, o) in outs.into_iter().enumerate() {
        b.output(&format!("res{}", i + 2), o)?;
    }
    b.finish()
}

impl ConvNextConfig {
    /// From a config JSON: transformers `ConvNextConfig` (`hidden_sizes`, `depths`,
    /// `layer_scale_init_value`, `num_channels`) or timm-style arguments (`dims`, `depths`,
    /// `ls_init_value`, `in_chans`). The naming scheme follows the format.
    pub fn from_json(json: &str) -> std::result::Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_str(json).map_err(|e| format!("invalid ConvNeXt config JSON: {e}"))?;
        let list = |k: &str| -> Option<std::result::Result<Vec<usize>, String>> {
            v.get(k)
                .map(|x| serde_json::from_value(x.clone()).map_err(|e| format!("ConvNeXt config '{k}': {e}")))
        };
        let hf = v.get("hidden_sizes").is_some();
        let dims = list(if hf { "hidden_sizes" } else { "dims" })
            .ok_or("ConvNeXt config needs dims or hidden_sizes")??;
        let depths = list("depths").ok_or("ConvNeXt config needs depths")??;
        if dims.len() != depths.len() || dims.is_empty() || dims.contains(&0) {
            return Err(format!(
                "ConvNeXt depths {depths:?} and dims {dims:?} must be non-empty, positive and match"
            ));
        }
        let ls = v.get(if hf { "layer_scale_init_value" } else { "ls_init_value" });
        let in_chans =
            v.get(if hf { "num_channels" } else { "in_chans" }).and_then(|x| x.as_u64()).unwrap_or(3)
                as usize;
        Ok(ConvNextConfig {
            depths,
            dims,
            in_chans,
            // HF builds no layer scale when the init value is <= 0; timm when it is null.
            layer_scale: ls.is_none_or(|x| x.as_f64().is_some_and(|f| f > 0.0)),
            naming: if hf { ConvNextNaming::Hf } else { ConvNextNaming::Timm },
            ..ConvNextConfig::large()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_from_hf_and_timm_json() {
        let hf = ConvNextConfig::from_json(
            r#"{"hidden_sizes": [192, 384, 768, 1536], "depths": [3, 3, 27, 3], "layer_scale_init_value": 1e-6}"#,
        )
        .unwrap();
        assert_eq!(hf, ConvNextConfig { naming: ConvNextNaming::Hf, ..ConvNextConfig::large() });
        let timm = ConvNextConfig::from_json(r#"{"dims": [8, 16], "depths": [1, 2], "ls_init_value": null}"#)
            .unwrap();
        assert!(!timm.layer_scale && timm.naming == ConvNextNaming::Timm);
        assert!(ConvNextConfig::from_json(r#"{"dims": [8], "depths": [1, 2]}"#).is_err());
        assert!(ConvNextConfig::from_json(r#"{"depths": [1]}"#).is_err());
    }
}
