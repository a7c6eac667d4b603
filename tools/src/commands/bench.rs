//! `focus bench`: time a named model's graph (random inputs; checkpoint or seeded random
//! weights) and print median latency, achieved GFLOP/s and the per-op profile. `focus profile`
//! is the same run centred on the profile: every node's time, FLOPs and bytes, the roofline
//! table against the card's measured ceilings (CUDA) and a Chrome/Perfetto trace.

use crate::commands::graph::mib;
use focus_engine::weights::WeightStore;
use focus_engine::{compile, Device, MemoryWeights, Tensor, WeightSource};
use focus_models::build_named;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Which model graph to run, on what (shared by `focus bench` and `focus profile`).
#[derive(clap::Args, Debug)]
pub struct Target {
    pub model: String,
    #[arg(long, default_value = "tiny")]
    pub config: String,
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// Checkpoint (safetensors file, index or directory); default: seeded random weights.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Storage dtype: f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

pub struct BenchArgs<'a> {
    pub target: &'a Target,
    pub graph: bool,
    pub profile: Option<&'a Path>,
    pub json: Option<&'a Path>,
    pub reps: usize,
    pub warmup: usize,
    /// Slowest nodes listed under the per-op table.
    pub top: usize,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

pub fn run(a: BenchArgs) -> Result<(), String> {
    if a.reps == 0 {
        return Err("--reps must be at least 1".into());
    }
    let tg = a.target;
    let device = Device::parse(&tg.device).map_err(err)?;
    let dtype = super::float_dtype(&tg.dtype)?;
    let g = build_named(&tg.model, &tg.config, tg.size, dtype)?;
    let src: Arc<dyn WeightSource> = match &tg.weights {
        Some(p) => Arc::new(WeightStore::open(p).map_err(err)?),
        None => Arc::new(MemoryWeights::random_for(&g, 0)),
    };
    let t = Instant::now();
    let mut plan = compile(&g, Some(src), device).map_err(err)?;
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    for (i, (name, id)) in g.inputs().into_iter().enumerate() {
        let n = g.node(id);
        let t = if n.dtype.is_float() {
            let v: Vec<f32> =
                (0..n.shape.numel()).map(|k| ((k * 7919 + i * 31) % 1000) as f32 / 500.0 - 1.0).collect();
            Tensor::from_f32(n.dtype, n.shape.clone(), &v).map_err(err)?
        } else {
            // Token ids / positions: 0..len, within any vocabulary and cache.
            let v: Vec<i64> = (0..n.shape.numel() as i64).collect();
            Tensor::from_i64(n.dtype, n.shape.clone(), &v).map_err(err)?
        };
        plan.set_input(name, &t.view()).map_err(err)?;
    }
    for _ in 0..a.warmup {
        plan.execute().map_err(err)?;
    }
    plan.wait().map_err(err)?;
    let prof = plan.execute_profiled().map_err(err)?;
    if let Some(p) = a.profile {
        std::fs::write(p, prof.chrome_trace()).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let time = |plan: &mut focus_engine::Plan| -> Result<Vec<f64>, String> {
        let mut times = Vec::with_capacity(a.reps);
        for _ in 0..a.reps {
            let t = Instant::now();
            plan.execute().map_err(err)?;
            plan.wait().map_err(err)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        Ok(times)
    };
    let mut times = time(&mut plan)?;
    let mut plain_ms = None;
    if a.graph {
        if !plan.capture_graph().map_err(err)? {
            return Err("--graph needs a CUDA device".into());
        }
        plain_ms = Some(times[times.len() / 2]);
        times = time(&mut plan)?;
    }
    let st = plan.stats();
    let med = times[times.len() / 2];
    println!("{}", prof.table(a.top));
    if let Some(p) = plain_ms {
        println!("without the CUDA graph: median {p:.3} ms");
    }
    if let Some(dev) = plan.gpu() {
        let (peak, bw) = focus_kernels::cuda::bench::ceilings(dev).map_err(err)?;
        println!("{}", prof.roofline(peak, bw));
    }
    println!(
        "{}/{} @{} {dtype} on {device}{}: median {med:.3} ms (min {:.3}, max {:.3}, {} reps), {:.2} GFLOP/s; \
         {:.3} GFLOP, weights {:.1} MiB, arena {:.1} MiB, compile {compile_ms:.0} ms",
        tg.model,
        tg.config,
        tg.size,
        if a.graph { " (CUDA graph)" } else { "" },
        times[0],
        times[times.len() - 1],
        a.reps,
        st.flops as f64 / (med * 1e6),
        st.flops as f64 / 1e9,
        mib(st.mapped_weight_bytes + st.resident_bytes),
        mib(st.arena_bytes),
    );
    if let Some(p) = a.json {
        let doc = serde_json::json!({"model": tg.model, "config": tg.config, "size": tg.size,
            "dtype": dtype.short_name(), "device": device.to_string(), "cuda_graph": a.graph,
            "median_ms": med, "min_ms": times[0], "plain_median_ms": plain_ms, "gflop": st.flops as f64 / 1e9, "compile_ms": compile_ms});
        std::fs::write(p, doc.to_string()).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}
