//! Graphs by name, for the CLI (`focus graph`, `focus demo`).

use crate::convnext::{self, ConvNextConfig};
use focus_graph::{Graph, GraphError};

/// A buildable model: name, configs, default input size.
pub struct ModelSpec {
    pub name: &'static str,
    pub configs: &'static [&'static str],
    pub about: &'static str,
}

pub const MODELS: &[ModelSpec] = &[ModelSpec {
    name: "convnext",
    configs: &["tiny", "large"],
    about: "ConvNeXt hierarchical encoder (timm names); input pixel_values [N,H,W,3], outputs res2..res5",
}];

/// Build `model` at `config` for a `size`×`size` input.
pub fn build_named(model: &str, config: &str, size: usize) -> Result<Graph, String> {
    match model {
        "convnext" => {
            let c = match config {
                "tiny" => ConvNextConfig::tiny(),
                "large" => ConvNextConfig::large(),
                other => return Err(format!("unknown convnext config '{other}' (tiny, large)")),
            };
            if size < 32 || !size.is_multiple_of(32) {
                return Err(format!("convnext input size must be a positive multiple of 32, got {size}"));
            }
            convnext::graph(&c, 1, size, size).map_err(|e: GraphError| e.to_string())
        }
        other => {
            let known: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
            Err(format!("unknown model '{other}' (known: {})", known.join(", ")))
        }
    }
}
