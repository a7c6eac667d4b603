//! Graphs by name, for the CLI (`focus graph`, `focus demo`).

use crate::convnext::{self, ConvNextConfig};
use crate::kandinsky::{self, KandinskyVqConfig};
use crate::mask2former::{self, PixelDecoderConfig, TransformerDecoderConfig};
use crate::movq::{self, MovqConfig};
use crate::qwen2::{self, Qwen2Config, StepOptions};
use crate::qwen_vit::{self, QwenVitConfig};
use crate::semantic::{self, SemanticDecoderConfig};
use crate::unet::{self, MaskConfig, UnetConfig};
use crate::vae::{self, VaeConfig};
use focus_graph::{DType, Graph, GraphError};

/// A buildable model: name, configs, default input size.
pub struct ModelSpec {
    pub name: &'static str,
    pub configs: &'static [&'static str],
    pub about: &'static str,
}

pub const MODELS: &[ModelSpec] = &[
    ModelSpec {
        name: "convnext",
        configs: &["tiny", "large"],
        about: "ConvNeXt hierarchical encoder (timm names); input pixel_values [N,H,W,3], outputs res2..res5",
    },
    ModelSpec {
        name: "qwen2vl_vit",
        configs: &["600m"],
        about: "Qwen2-VL ViT-600M (ILLUME+ semantic encoder); --size = square ViT input (multiple of 28)",
    },
    ModelSpec {
        name: "qwen25vl_vit",
        configs: &["3b"],
        about: "Qwen2.5-VL-3B vision tower with window attention; --size = square ViT input (multiple of 28)",
    },
    ModelSpec {
        name: "movq_kandinsky",
        configs: &["tiny", "kandinsky22"],
        about: "diffusers spatial-norm VQModel round trip (encode, quantise, decode); --size = image side",
    },
    ModelSpec {
        name: "movq_encoder",
        configs: &["tiny", "illume"],
        about: "ILLUME+ pixel tokenizer encoder (DC down blocks); --size = square image side (multiple of 16)",
    },
    ModelSpec {
        name: "movq_decoder",
        configs: &["tiny", "illume"],
        about: "ILLUME+ pixel decoder (SpatialNorm of the quant map, DC up blocks); --size = square output side",
    },
    ModelSpec {
        name: "m2f_pixel_decoder",
        configs: &["tiny", "paper"],
        about: "Mask2Former MSDeformAttn pixel decoder over ConvNeXt stages; --size = image side (multiple of 32)",
    },
    ModelSpec {
        name: "m2f_transformer_decoder",
        configs: &["tiny", "paper"],
        about: "PSALM masked-attention decoder (LLM mask-token queries, 80 class names); --size = image side",
    },
    ModelSpec {
        name: "semantic_decoder",
        configs: &["tiny", "illume"],
        about: "DualViTok semantic decoder (codes → ViT features); --size = image side (multiple of 28; grid size/28)",
    },
    ModelSpec {
        name: "unet",
        configs: &["tiny", "sdxl", "sdxl_mask"],
        about: "SDXL-layout UNet denoising step, ILLUME+ VQ input (sdxl_mask: FOCUS mask injection); --size = image side",
    },
    ModelSpec {
        name: "vae_decoder",
        configs: &["tiny", "sdxl"],
        about: "SDXL VAE decoder (diffusers names); --size = square output side (multiple of 8 for sdxl)",
    },
    ModelSpec {
        name: "qwen2",
        configs: &["tiny", "3b"],
        about: "Qwen2.5 LLM step with a static KV cache; --size = tokens in the step (capacity 2x, min 1024 for 3b)",
    },
];

/// Build `model` at `config` for a `size`×`size` input, storing activations and weights in
/// `dtype`.
pub fn build_named(model: &str, config: &str, size: usize, dtype: DType) -> Result<Graph, String> {
    match model {
        "convnext" => {
            let c = match config {
                "tiny" => ConvNextConfig::tiny(),
                "large" => ConvNextConfig::large(),
                other => return Err(format!("unknown convnext config '{other}' (tiny, large)")),
            };
            let c = ConvNextConfig { dtype, ..c };
            if size < 32 || !size.is_multiple_of(32) {
                return Err(format!("convnext input size must be a positive multiple of 32, got {size}"));
            }
            convnext::graph(&c, 1, size, size).map_err(|e: GraphError| e.to_string())
        }
        "qwen2vl_vit" | "qwen25vl_vit" => {
            let c = match (model, config) {
                ("qwen2vl_vit", "600m") => QwenVitConfig::qwen2vl_600m(),
                ("qwen25vl_vit", "3b") => QwenVitConfig::qwen25vl_3b(),
                (_, other) => return Err(format!("unknown {model} config '{other}'")),
            };
            let c = QwenVitConfig { dtype, ..c };
            qwen_vit::graph(&c, size, size).map_err(|e| e.to_string())
        }
        "movq_kandinsky" => {
            let c = match config {
                "tiny" => KandinskyVqConfig {
                    block_out_channels: vec![32, 32],
                    attention: vec![false, true],
                    layers_per_block: 1,
                    num_vq_embeddings: 32,
                    ..KandinskyVqConfig::kandinsky22()
                },
                "kandinsky22" => KandinskyVqConfig::kandinsky22(),
                other => return Err(format!("unknown movq_kandinsky config '{other}' (tiny, kandinsky22)")),
            };
            let f = 1 << (c.block_out_channels.len() - 1);
            if size < f || !size.is_multiple_of(f) {
                return Err(format!("movq_kandinsky size must be a positive multiple of {f}, got {size}"));
            }
            kandinsky::graph(&KandinskyVqConfig { dtype, ..c }, size).map_err(|e| e.to_string())
        }
        "movq_encoder" | "movq_decoder" => {
            let encoder = model == "movq_encoder";
            let c = match (config, encoder) {
                ("tiny", true) => MovqConfig::tiny_encoder(),
                ("tiny", false) => MovqConfig::tiny_decoder(),
                ("illume", true) => MovqConfig::illume_encoder(),
                ("illume", false) => MovqConfig::illume_decoder(),
                (other, _) => return Err(format!("unknown {model} config '{other}' (tiny, illume)")),
            };
            let c = MovqConfig { dtype, ..c };
            let f = c.factor();
            if size < f || !size.is_multiple_of(f) {
                return Err(format!("{model} size must be a positive multiple of {f}, got {size}"));
            }
            let g = if encoder {
                movq::encoder_graph(&c, 1, size, size)
            } else {
                movq::decoder_graph(&c, 1, size / f, size / f)
            };
            g.map_err(|e| e.to_string())
        }
        "m2f_pixel_decoder" | "m2f_transformer_decoder" => {
            if size < 32 || !size.is_multiple_of(32) {
                return Err(format!("{model} size must be a positive multiple of 32, got {size}"));
            }
            let paper = match config {
                "tiny" => false,
                "paper" => true,
                other => return Err(format!("unknown {model} config '{other}' (tiny, paper)")),
            };
            let g = if model == "m2f_pixel_decoder" {
                let c = if paper { PixelDecoderConfig::paper() } else { PixelDecoderConfig::tiny() };
                mask2former::pixel_decoder_graph(&PixelDecoderConfig { dtype, ..c }, size)
            } else {
                let c =
                    if paper { TransformerDecoderConfig::paper() } else { TransformerDecoderConfig::tiny() };
                let classes = if paper { 80 } else { 3 };
                mask2former::transformer_decoder_graph(
                    &TransformerDecoderConfig { dtype, ..c },
                    size,
                    classes,
                )
            };
            g.map_err(|e| e.to_string())
        }
        "semantic_decoder" => {
            let c = match config {
                "tiny" => SemanticDecoderConfig::tiny(),
                "illume" => SemanticDecoderConfig::illume(),
                other => return Err(format!("unknown semantic_decoder config '{other}' (tiny, illume)")),
            };
            if size < 28 || !size.is_multiple_of(28) {
                return Err(format!("semantic_decoder size must be a positive multiple of 28, got {size}"));
            }
            let c = SemanticDecoderConfig { dtype, ..c };
            semantic::graph(&c, size / 28, size / 28).map_err(|e| e.to_string())
        }
        "unet" => {
            let (c, text, ctx) = match config {
                "tiny" => (UnetConfig::tiny(), 16, 5),
                "sdxl" | "sdxl_mask" => (UnetConfig::sdxl(), 1280, 77),
                other => return Err(format!("unknown unet config '{other}' (tiny, sdxl, sdxl_mask)")),
            };
            let c = UnetConfig { dtype, ..c };
            let mask = (config == "sdxl_mask").then_some(MaskConfig {
                patch: 8,
                image_scale: 8,
                mid: true,
                up: true,
            });
            // Latents at /8 go through /2 per level, the VQ map sits at /32, mask patches cover
            // `patch` latent pixels: the size must be a multiple of each.
            let gcd = |mut a: usize, mut b: usize| {
                while b != 0 {
                    (a, b) = (b, a % b);
                }
                a
            };
            let base = (8usize << (c.block_out_channels.len() - 1)).max(32);
            let f = mask.as_ref().map_or(base, |m| base / gcd(base, 8 * m.patch) * 8 * m.patch);
            if size < f || !size.is_multiple_of(f) {
                return Err(format!("unet size must be a positive multiple of {f}, got {size}"));
            }
            unet::step_graph(&c, mask.as_ref(), size, (text, ctx)).map_err(|e| e.to_string())
        }
        "vae_decoder" => {
            let c = match config {
                "tiny" => VaeConfig::tiny(),
                "sdxl" => VaeConfig::sdxl(),
                other => return Err(format!("unknown vae_decoder config '{other}' (tiny, sdxl)")),
            };
            let c = VaeConfig { dtype, ..c };
            let f = c.factor();
            if size < f || !size.is_multiple_of(f) {
                return Err(format!("vae_decoder size must be a positive multiple of {f}, got {size}"));
            }
            vae::decoder_graph(&c, 1, size / f, size / f).map_err(|e| e.to_string())
        }
        "qwen2" => {
            let c = match config {
                "tiny" => Qwen2Config {
                    vocab_size: 128,
                    hidden_size: 64,
                    intermediate_size: 128,
                    num_hidden_layers: 2,
                    num_attention_heads: 4,
                    num_key_value_heads: 2,
                    ..Qwen2Config::qwen25_3b()
                },
                "3b" => Qwen2Config::qwen25_3b(),
                other => return Err(format!("unknown qwen2 config '{other}' (tiny, 3b)")),
            };
            if size == 0 {
                return Err("qwen2 step needs at least one token".into());
            }
            let o = StepOptions::prefill(size, (2 * size).max(if config == "3b" { 1024 } else { 16 }), dtype);
            qwen2::step_graph(&c, &o).map_err(|e| e.to_string())
        }
        other => {
            let known: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
            Err(format!("unknown model '{other}' (known: {})", known.join(", ")))
        }
    }
}
