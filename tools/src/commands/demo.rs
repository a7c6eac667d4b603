//! `focus demo`: the main job on the embedded default: the FOCUS perception path (QwenViT +
//! ConvNeXt branches with their pre-processing in the graph, projector, fusion
//! cross-attention, gated adapter, spliced into the prompt of a Qwen2 LLM; prefill, then
//! greedy decoding over the KV cache) with seeded random weights on the bundled image.
//! Prints the plan, a per-node profile of the prefill, decode timings and the tokens.

use crate::commands::graph::mib;
use crate::image_io;
use focus_engine::sampling::{Allowed, Sampler, SamplingParams};
use focus_engine::{compile, Device, MemoryWeights, Plan, Tensor, WeightSource};
use focus_graph::DType;
use focus_models::perception::{self, PerceptionConfig, PerceptionShape};
use focus_models::qwen2::{self, StepOptions};
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

fn ids_tensor(v: &[i64]) -> Result<Tensor, String> {
    Tensor::from_i64(DType::I32, [v.len()], v).map_err(err)
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
    let dtype = match a.dtype {
        "f32" => DType::F32,
        "bf16" => DType::BF16,
        "f16" => DType::F16,
        other => return Err(format!("unknown --dtype '{other}' (f32, bf16, f16)")),
    };
    if a.tokens == 0 || a.tokens > 256 {
        return Err(format!("--tokens must be in 1..=256, got {}", a.tokens));
    }
    let img = image_io::load(a.image)?;
    let cfg = PerceptionConfig::demo();
    let (n_pre, n_post) = (4, 4);
    let (nv, nq) = cfg.image_tokens([112, 112]);
    let len = n_pre + nv + nq + n_post;
    let shape = PerceptionShape {
        vit_hw: [112, 112],
        hr_hw: [224, 224],
        raw_image: Some([img.h, img.w]),
        n_pre,
        n_post,
        capacity: len + a.tokens,
        dtype,
    };
    let graph = perception::prefill_graph(&cfg, &shape).map_err(err)?;
    let weights: Arc<dyn WeightSource> = Arc::new(MemoryWeights::random_for(&graph, a.seed));
    println!(
        "focus demo: FOCUS perception path, seeded random weights (seed {}), {dtype} on {device}\n\
         image {}x{} -> ViT {}x{} ({nv} tokens) + ConvNeXt {}x{} (adapter {nq} queries); prompt {len} tokens; \
         LLM {} layers x {} wide",
        a.seed,
        img.w,
        img.h,
        shape.vit_hw[0],
        shape.vit_hw[1],
        shape.hr_hw[0],
        shape.hr_hw[1],
        cfg.llm.num_hidden_layers,
        cfg.llm.hidden_size
    );
    let t = Instant::now();
    let mut prefill = compile(&graph, Some(weights.clone()), device).map_err(err)?;
    summary("prefill", &prefill, ms(t));
    let step =
        StepOptions { tokens: 1, capacity: shape.capacity, dtype, all_logits: false, embeds_input: false };
    let t = Instant::now();
    let mut decode =
        compile(&qwen2::step_graph(&cfg.llm, &step).map_err(err)?, Some(weights), device).map_err(err)?;
    summary("decode", &decode, ms(t));

    // Prompt: text ids around the image span (placeholders there are not read).
    let v = cfg.llm.vocab_size as i64;
    let ids: Vec<i64> = (0..len as i64).map(|i| (i * 37 + 11) % v).collect();
    let pos: Vec<i64> = (0..len as i64).collect();
    let image = Tensor::from_f32(DType::F32, [1, img.h, img.w, 3], &img.data).map_err(err)?;
    prefill.set_input("image", &image.view()).map_err(err)?;
    prefill.set_input("input_ids", &ids_tensor(&ids)?.view()).map_err(err)?;
    prefill.set_input("positions", &ids_tensor(&pos)?.view()).map_err(err)?;
    let prof = prefill.execute_profiled().map_err(err)?;
    println!("\nprefill profile (first run):\n{}", prof.table(8));
    let t = Instant::now();
    prefill.execute().map_err(err)?;
    let prefill_ms = ms(t);

    for l in 0..cfg.llm.num_hidden_layers {
        decode.swap_state(&mut prefill, &qwen2::k_cache_name(l)).map_err(err)?;
        decode.swap_state(&mut prefill, &qwen2::v_cache_name(l)).map_err(err)?;
    }
    let logits = prefill.output("logits").map_err(err)?;
    let last = focus_kernels::cpu::common::f32_in(&logits)[(len - 1) * v as usize..].to_vec();
    let mut sampler = Sampler::new(SamplingParams::default()).map_err(err)?;
    let mut tokens = vec![sampler.sample(&last, &Allowed::All).map_err(err)? as i64];
    let mut times = Vec::new();
    for p in len..len + a.tokens - 1 {
        decode.set_input("input_ids", &ids_tensor(&tokens[tokens.len() - 1..])?.view()).map_err(err)?;
        decode.set_input("positions", &ids_tensor(&[p as i64])?.view()).map_err(err)?;
        let t = Instant::now();
        decode.execute().map_err(err)?;
        times.push(ms(t));
        let l = focus_kernels::cpu::common::f32_in(&decode.output("logits").map_err(err)?).into_owned();
        tokens.push(sampler.sample(&l, &Allowed::All).map_err(err)? as i64);
    }
    times.sort_by(f64::total_cmp);
    println!("prefill of {len} tokens (image encoders + LLM): {prefill_ms:.2} ms (second run)");
    if !times.is_empty() {
        let med = times[times.len() / 2];
        println!("decode: median {med:.3} ms/token ({:.0} tokens/s) over {} steps", 1e3 / med, times.len());
    }
    println!("greedy tokens: {tokens:?}");

    if let Some(p) = a.profile {
        std::fs::write(p, prof.chrome_trace()).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
        println!("wrote Chrome/Perfetto trace of the prefill to {}", p.display());
    }
    if let Some(p) = a.out {
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
