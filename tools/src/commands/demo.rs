//! `focus demo`: the main job on the embedded default. Until the full pipeline lands this is
//! the FOCUS hierarchical encoder (ConvNeXt, tiny config, seeded random weights) with its
//! pre-processing in the graph, on the bundled image: plan summary, per-node profile, outputs.

use crate::commands::graph::mib;
use crate::image_io;
use focus_engine::{compile, Device, MemoryWeights, Tensor};
use focus_graph::DType;
use focus_models::convnext::{self, ConvNextConfig};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

pub fn run(
    image: Option<&Path>,
    size: usize,
    seed: u64,
    device: &str,
    profile: Option<&Path>,
    out: Option<&Path>,
    reps: usize,
) -> Result<(), String> {
    if size < 32 || !size.is_multiple_of(32) || size > 2048 {
        return Err(format!("--size must be a multiple of 32 in 32..=2048, got {size}"));
    }
    let device = Device::parse(device).map_err(|e| e.to_string())?;
    let img = image_io::load(image)?;
    let cfg = ConvNextConfig::tiny();
    let graph = convnext::graph_with_preprocess(&cfg, img.h, img.w, size).map_err(|e| e.to_string())?;
    let weights = MemoryWeights::random_for(&graph, seed);
    let t = Instant::now();
    let mut plan = compile(&graph, Some(Arc::new(weights)), device).map_err(|e| e.to_string())?;
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    let st = plan.stats();
    println!(
        "focus demo: ConvNeXt (tiny: depths {:?}, dims {:?}), seeded random weights (seed {seed}), on {device}",
        cfg.depths, cfg.dims
    );
    println!(
        "image {}x{} -> bicubic+antialias {size}x{size}; graph {} nodes, {} steps, {:.3} GFLOP",
        img.w,
        img.h,
        st.nodes,
        st.steps,
        st.flops as f64 / 1e9
    );
    println!(
        "plan: arena {:.2} MiB (naive {:.2} MiB), weights {:.2} MiB in place + {:.2} MiB folded at load, compiled in {compile_ms:.1} ms",
        mib(st.arena_bytes),
        mib(st.naive_bytes),
        mib(st.mapped_weight_bytes),
        mib(st.resident_bytes)
    );
    let input = Tensor::from_f32(DType::F32, [1, img.h, img.w, 3], &img.data).map_err(|e| e.to_string())?;
    plan.set_input("image", &input.view()).map_err(|e| e.to_string())?;
    let prof = plan.execute_profiled().map_err(|e| e.to_string())?;
    println!("\n{}", prof.table(8));
    let mut times = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        plan.execute().map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    if !times.is_empty() {
        times.sort_by(f64::total_cmp);
        let med = times[times.len() / 2];
        println!("{reps} timed runs: median {med:.2} ms ({:.2} GFLOP/s)", st.flops as f64 / (med * 1e6));
    }
    println!("\noutputs:");
    let mut saved = Vec::new();
    for name in ["res2", "res3", "res4", "res5"] {
        let v = plan.output(name).map_err(|e| e.to_string())?;
        let x = focus_kernels::cpu::common::f32_in(&v);
        let n = x.len() as f64;
        let mean = x.iter().map(|&a| a as f64).sum::<f64>() / n;
        let std = (x.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        let finite = x.iter().all(|a| a.is_finite());
        println!(
            "  {name} {:?} mean {mean:+.4} std {std:.4} {}",
            v.shape,
            if finite { "all finite" } else { "NON-FINITE VALUES" }
        );
        if !finite {
            return Err(format!("output {name} has non-finite values"));
        }
        saved.push((name.to_string(), v.dtype, v.shape.to_vec(), v.data.to_vec()));
    }
    if let Some(p) = profile {
        std::fs::write(p, prof.chrome_trace()).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
        println!("\nwrote Chrome/Perfetto trace to {}", p.display());
    }
    if let Some(p) = out {
        crate::commands::inspect::save_outputs(p, &saved)?;
        println!("wrote outputs to {}", p.display());
    }
    Ok(())
}
