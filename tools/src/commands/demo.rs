//! `focus demo`: the main job on the embedded default: the FOCUS perception path (QwenViT +
//! ConvNeXt branches with their pre-processing in the graph, projector, fusion
//! cross-attention, gated adapter, spliced into the prompt of a Qwen2 LLM; prefill, then
//! greedy decoding over the KV cache) with seeded random weights on the bundled image.
//! Prints the plan, a per-node profile of the prefill, decode timings and the tokens.

use crate::commands::graph::mib;
use crate::image_io;
use focus_engine::sampling::SamplingParams;
use focus_engine::{Device, MemoryWeights, Plan, Tensor, WeightSource};
use focus_graph::DType;
use focus_models::perception::{self, PerceptionConfig, PerceptionShape};
use focus_pipeline::perception::Image;
use focus_pipeline::{Perception, Runtime};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Everything `run` needs from the command line.
pub struct DemoArgs<'a> {
    pub image: Option<&'a Path>,
    pub seed: u64,
    pub device: &'a str,
    pub profile: Option<&'a Path>,
    pub out: Option<&'a Path>,
    pub tokens: usize,
    pub dtype: &'a str,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn summary(name: &str, plan: &Plan, compile_ms: f64) {
    let st = plan.stats();
    println!(
        "{name}: {} nodes, {} steps, {:.3} GFLOP; arena {:.2} MiB (naive {:.2} MiB); KV cache {:.2} MiB; \
         weights {:.2} MiB in place + {:.2} MiB folded at load; compiled in {compile_ms:.1} ms",
        st.nodes,
        st.steps,
        st.flops as f64 / 1e9,
        mib(st.arena_bytes),
        mib(st.naive_bytes),
        mib(st.state_bytes),
        mib(st.mapped_weight_bytes),
        mib(st.resident_bytes),
    );
}

pub fn run(a: DemoArgs) -> Result<(), String> {
    let device = Device::parse(a.device).map_err(err)?;
    let dtype = super::float_dtype(a.dtype)?;
    if a.tokens == 0 || a.tokens > 256 {
        return Err(format!("--tokens must be in 1..=256, got {}", a.tokens));
    }
    let img = image_io::load(a.image)?;
    let cfg = PerceptionConfig::demo();
    let (n_pre, n_post) = (4, 4);
    let layout = cfg.image_layout([112, 112]);
    let ([gh, gw], nq) = (layout.grids[0], layout.queries);
    let len = n_pre + layout.len() + n_post;
    let shape = PerceptionShape {
        vit_hw: [112, 112],
        hr_hw: [224, 224],
        raw_image: Some([img.h, img.w]),
        n_pre,
        n_post,
        capacity: len + a.tokens,
        dtype,
        seg_queries: 0,
    };
    let graph = perception::prefill_graph(&cfg, &shape).map_err(err)?;
    let weights: Arc<dyn WeightSource> = Arc::new(MemoryWeights::random_for(&graph, a.seed));
    println!(
        "focus demo: FOCUS perception path, seeded random weights (seed {}), {dtype} on {device}\n\
         image {}x{} -> ViT {}x{} ({gh}x{gw} tokens) + ConvNeXt {}x{} (adapter {nq} queries); image span {} \
         positions (ILLUME+ block + queries); prompt {len} tokens; LLM {} layers x {} wide",
        a.seed,
        img.w,
        img.h,
        shape.vit_hw[0],
        shape.vit_hw[1],
        shape.hr_hw[0],
        shape.hr_hw[1],
        layout.len(),
        cfg.llm.num_hidden_layers,
        cfg.llm.hidden_size
    );
    let t = Instant::now();
    let mut runner = Perception::new(
        cfg.clone(),
        Runtime::new(weights, device),
        dtype,
        shape.vit_hw,
        shape.hr_hw,
        shape.capacity,
    )
    .map_err(err)?;
    summary("decode", runner.decode_plan(), ms(t));
    let t = Instant::now();
    runner.prefill_plan([img.h, img.w], n_pre, n_post).map_err(err)?;
    let compile_ms = ms(t);
    summary("prefill", runner.prefill_plan([img.h, img.w], n_pre, n_post).map_err(err)?, compile_ms);

    // Prompt: text ids around the image span (the runner writes the span's structure tokens).
    let v = cfg.llm.vocab_size as u32;
    let before: Vec<u32> = (0..n_pre as u32).map(|i| (i * 37 + 11) % v).collect();
    let after: Vec<u32> = (0..n_post as u32).map(|i| (i * 53 + 7) % v).collect();
    let image = Image { h: img.h, w: img.w, data: &img.data };
    let params = SamplingParams::default();
    let first = runner.generate(&image, &before, &after, &params, a.tokens, None, None, true).map_err(err)?;
    let prof = first.prefill_profile.clone().expect("profile requested");
    println!("\nprefill profile (first run):\n{}", prof.table(8));
    let g = runner.generate(&image, &before, &after, &params, a.tokens, None, None, false).map_err(err)?;
    let mut times = g.decode_ms.clone();
    times.sort_by(f64::total_cmp);
    println!("prefill of {len} tokens (image encoders + LLM): {:.2} ms (second run)", g.prefill_ms);
    if !times.is_empty() {
        let med = times[times.len() / 2];
        println!("decode: median {med:.3} ms/token ({:.0} tokens/s) over {} steps", 1e3 / med, times.len());
    }
    println!("greedy tokens: {:?}", g.tokens);
    let tokens: Vec<i64> = g.tokens.iter().map(|&t| t as i64).collect();

    if let Some(p) = a.profile {
        std::fs::write(p, prof.chrome_trace()).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
        println!("wrote Chrome/Perfetto trace of the prefill to {}", p.display());
    }
    if let Some(p) = a.out {
        let prefill = runner.prefill_plan([img.h, img.w], n_pre, n_post).map_err(err)?;
        let hidden = prefill.output("hidden").map_err(err)?;
        let tok = Tensor::from_i64(DType::I64, [tokens.len()], &tokens).map_err(err)?;
        crate::commands::inspect::save_outputs(
            p,
            &[
                ("hidden".into(), hidden.dtype, hidden.shape.to_vec(), hidden.data.to_vec()),
                ("tokens".into(), DType::I64, vec![tokens.len()], tok.bytes().to_vec()),
            ],
        )?;
        println!("wrote prefill hidden states and tokens to {}", p.display());
    }
    Ok(())
}
