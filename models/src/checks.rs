//! Small graphs of every model family and of each pattern the CUDA backend fuses, with seeded
//! inputs: what the whole-plan checks run on the CUDA path and on the CPU (the emulator test
//! `kernels/tests/emu_plan.rs` without a GPU, `focus gpu-check` on one).

use crate::perception::{prefill_graph, PerceptionConfig, PerceptionShape};
use crate::qwen2::{self, StepOptions};
use crate::qwen_vit::{self, QwenVitConfig, VitVariant};
use crate::registry::build_named;
use focus_graph::{
    Conv2dParams, DType, Graph, GraphBuilder, GraphError, NodeId, ResizeMode, Result, UnaryOp,
};

/// (name, compute dtype, graph): one small graph of every model family and fused pattern, in
/// f32 and bf16 (the whole-plan checks run each on CUDA and on the CPU and compare).
pub fn check_graphs() -> Result<Vec<(String, DType, Graph)>> {
    let mut v = Vec::new();
    for dt in [DType::F32, DType::BF16] {
        for (model, config, size) in [
            ("qwen2", "tiny", 5),
            ("qwen2", "tiny", 1),
            ("convnext", "tiny", 32),
            ("movq_encoder", "tiny", 32),
            ("movq_decoder", "tiny", 40),
            ("vae_decoder", "tiny", 32),
            ("m2f_pixel_decoder", "tiny", 64),
            ("m2f_transformer_decoder", "tiny", 64),
            ("unet", "tiny", 64),
            ("semantic_decoder", "tiny", 112),
            ("movq_kandinsky", "tiny", 16),
        ] {
            // A VQ round trip is discontinuous: bf16 rounding of the encoder output (1.3e-2
            // between backends) changes nearest codes, so it is checked in f32 only.
            if model == "movq_kandinsky" && dt != DType::F32 {
                continue;
            }
            let g = build_named(model, config, size, dt).map_err(|e| GraphError::InvalidOp {
                op: model.into(),
                node: 0,
                name: config.into(),
                detail: e,
            })?;
            v.push((format!("{model}/{config}@{size} {dt}"), dt, g));
        }
        // Small ViTs at head dims the flash kernels take (64, 80): Qwen2.5-VL's windows are
        // packed variable-length attention (partial windows at 40x56), Qwen2-VL attends fully.
        let vit = |variant, embed_dim, act| QwenVitConfig {
            variant,
            depth: 3,
            embed_dim,
            num_heads: 2,
            mlp_dim: 96,
            out_dim: 40,
            patch_size: 4,
            merge: 2,
            act,
            dtype: dt,
            ..QwenVitConfig::qwen2vl_600m()
        };
        let windows = VitVariant::Qwen25Vl { window: 32, full_attention_blocks: vec![1] };
        for (name, c) in [
            ("qwen25vl_vit/small", vit(windows, 128, UnaryOp::Silu)),
            ("qwen2vl_vit/small", vit(VitVariant::Qwen2Vl, 160, UnaryOp::QuickGelu)),
        ] {
            v.push((format!("{name}@40x56 {dt}"), dt, qwen_vit::graph(&c, 40, 56)?));
        }
        v.push((format!("unet-style upsample block {dt}"), dt, upsample_block(dt)?));
        let c = PerceptionConfig::demo();
        let s = PerceptionShape {
            vit_hw: [56, 56],
            hr_hw: [64, 64],
            raw_image: Some([40, 60]),
            n_pre: 3,
            n_post: 2,
            capacity: 48,
            dtype: dt,
            seg_queries: 4,
        };
        // With FOCUS's mask tokens: the segmentation decoder's inputs written to states too.
        v.push((format!("perception prefill {dt}"), dt, prefill_graph(&c, &s)?));
        // The pipeline's decode step, with the greedy head that picks the token on the device.
        let o = StepOptions::decode(s.capacity, dt);
        v.push((format!("perception decode {dt}"), dt, qwen2::step_graph(&c.llm, &o)?));
        // A decode step at a flash head dim (64) over a 300-position cache: the q RoPE folds into
        // the split-K decode kernel, k's RoPE into the cache append (the fused paths of bf16).
        let llm = qwen2::Qwen2Config {
            vocab_size: 256,
            hidden_size: 128,
            intermediate_size: 192,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: Some(64),
            ..qwen2::Qwen2Config::qwen25_3b()
        };
        let o = StepOptions { capacity: 300, ..o };
        v.push((format!("qwen2 decode hd64 cache 300 {dt}"), dt, qwen2::step_graph(&llm, &o)?));
    }
    Ok(v)
}

/// A UNet/VAE decoder upsample block: nearest ×2 → conv 3x3 (fused: the conv reads the small
/// image) → GroupNorm → SiLU (fused) → conv 3x3, plus a residual through a 1x1 conv.
fn upsample_block(dt: DType) -> Result<Graph> {
    let mut b = GraphBuilder::new();
    let x = b.input("x", dt, [1, 8, 10, 32])?;
    let up = b.resize(x, ResizeMode::Nearest, [16, 20], false, false)?;
    let conv = |b: &mut GraphBuilder, x, name: &str, cin: usize, cout: usize, k: usize| {
        let w = b.param(&format!("{name}.weight"), dt, [cout, k, k, cin])?;
        let bias = b.param(&format!("{name}.bias"), dt, [cout])?;
        let pad = k / 2;
        let p = Conv2dParams { padding: [pad, pad], ..Conv2dParams::default() };
        b.conv2d(x, w, Some(bias), p)
    };
    let h = conv(&mut b, up, "up.conv", 32, 64, 3)?;
    let gw = b.param("norm.weight", dt, [64])?;
    let gb = b.param("norm.bias", dt, [64])?;
    let h = b.group_norm(h, gw, gb, 32, 1e-6)?;
    let h = b.unary(UnaryOp::Silu, h)?;
    let h = conv(&mut b, h, "conv2", 64, 64, 3)?;
    let skip = b.resize(x, ResizeMode::Nearest, [16, 20], false, false)?;
    let skip = conv(&mut b, skip, "skip", 32, 64, 1)?;
    let y = b.add(h, skip)?;
    b.output("y", y)?;
    b.finish()
}

/// Whole-plan tolerance as a multiple of the per-op one of the model's dtype (f32 1e-5, bf16
/// 1e-2): a whole model rounds differently along the way on another backend (fused kernels keep
/// f32 where the CPU stores, GEMMs accumulate in another order); the random-weight tiny models'
/// logits reach 1.6e-2 in bf16 between the CPU and the emulated CUDA path.
pub const PLAN_TOL_FACTOR: f64 = 3.0;

/// A check input: floats, or integers (token ids, positions, allowed ranges).
pub enum CheckInput {
    Float(Vec<f32>),
    Int(Vec<i64>),
}

/// Seeded inputs for a check graph: floats in [-1, 1], integers small so every index is in
/// range for any config; the token head's controls allow every id but 0 and draw with top-k 50,
/// top-p 0.9.
pub fn check_inputs(g: &Graph, seed: u64) -> Vec<(String, CheckInput)> {
    seeded_values(g, g.inputs(), seed)
}

/// Seeded contents for a check graph's state buffers (KV caches, latents, masks), as
/// `check_inputs` draws them, so a check never runs on zeroed state. Set before every run: a
/// step that rewrites its state in place would otherwise read its own previous output.
pub fn check_states(g: &Graph, seed: u64) -> Vec<(String, CheckInput)> {
    seeded_values(g, g.states(), seed ^ 0x5747_4e53)
}

fn seeded_values(g: &Graph, nodes: Vec<(&str, NodeId)>, seed: u64) -> Vec<(String, CheckInput)> {
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 33) as u32
    };
    nodes
        .into_iter()
        .map(|(name, id)| {
            let n = g.node(id);
            let len = n.shape.numel();
            let v = match name {
                "allowed" => CheckInput::Int(vec![1, 1 << 30]),
                "sampling" => CheckInput::Float(vec![1.0, 50.0, 0.9, 0.37, 0.0]),
                _ if n.dtype.is_float() => {
                    CheckInput::Float((0..len).map(|_| next() as f32 / (1u64 << 31) as f32 - 1.0).collect())
                }
                _ => CheckInput::Int((0..len).map(|i| ((next() % 4) as usize + i) as i64 % 8).collect()),
            };
            (name.to_string(), v)
        })
        .collect()
}
