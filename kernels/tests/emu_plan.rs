//! Whole model graphs on the CUDA path, on the CPU emulator of tools/cuda-emu: the engine's own
//! CUDA planning without a device (`focus_engine::executor::cuda_offline`: the memory plan with
//! fused spans, steps, generated fusion kernels, fused pairs, folded constants) runs step by step
//! on emulator buffers laid out as a device plan's (one arena poisoned before the run, one buffer
//! per weight or constant, zeroed states, scratch with the error flag first), and every output
//! is compared with the CPU plan of the same graph on the same inputs and weights. This checks
//! what per-op cases cannot: aliasing in the arena, spans across fused kernels, reshapes, state
//! writes and the planner on real model shapes.
//!
//! `#[ignore]`d like emu.rs (tools/test.sh runs both). EMU_FILTER selects models by name.

#[allow(dead_code)]
mod emu_support;

use emu_support::{build, find_compiler, Emu, Io};
use focus_engine::executor::{compile, cuda_offline};
use focus_engine::{Device, MemoryWeights, Tensor, WeightSource};
use focus_graph::{Conv2dParams, DType, Graph, GraphBuilder, NodeId, ResizeMode, UnaryOp};
use focus_kernels::cuda::case::default_tol;
use focus_kernels::cuda::check::compare;
use focus_kernels::cuda::launch::Scratch;
use focus_models::perception::{prefill_graph, PerceptionConfig, PerceptionShape};
use focus_models::qwen2::{self, StepOptions};
use focus_models::qwen_vit::{self, QwenVitConfig, VitVariant};
use focus_models::registry::build_named;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Seeded inputs: floats in [-1, 1], integers (token ids, positions) small, so every index is
/// in range for any config.
fn inputs(g: &Graph, seed: u64) -> Vec<(String, Tensor)> {
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 33) as u32
    };
    g.inputs()
        .into_iter()
        .map(|(name, id)| {
            let n = g.node(id);
            let len = n.shape.numel();
            // The token head's controls: every id but 0 allowed, top-k 50 / top-p 0.9 sampling.
            let t = if name == "allowed" {
                Tensor::from_i64(n.dtype, n.shape.clone(), &[1, 1 << 30])
            } else if name == "sampling" {
                Tensor::from_f32(n.dtype, n.shape.clone(), &[1.0, 50.0, 0.9, 0.37, 0.0])
            } else if n.dtype.is_float() {
                let v: Vec<f32> = (0..len).map(|_| next() as f32 / (1u64 << 31) as f32 - 1.0).collect();
                Tensor::from_f32(n.dtype, n.shape.clone(), &v)
            } else {
                let v: Vec<i64> = (0..len).map(|i| ((next() % 4) as usize + i) as i64 % 8).collect();
                Tensor::from_i64(n.dtype, n.shape.clone(), &v)
            };
            (name.to_string(), t.expect("input tensor"))
        })
        .collect()
}

/// Run the CUDA plan of `graph` on the emulator; returns (output name, bytes) and the number
/// of steps that launched something.
fn run_on_emulator(
    bin: &Path,
    graph: &Graph,
    weights: Arc<dyn WeightSource>,
    ins: &[(String, Tensor)],
) -> Result<(HashMap<String, Vec<u8>>, usize), String> {
    let off = cuda_offline(graph, Some(weights)).map_err(|e| e.to_string())?;
    let g = &off.graph;
    let mut emu = Emu::spawn(bin, false).map_err(|e| e.to_string())?;
    let mut outs = HashMap::new();
    let mut launched = 0;
    let mut failure = None;
    let io = (|| -> Io<()> {
        // Buffers: the arena, each constant, each state.
        let mut lens = vec![off.arena_bytes];
        lens.extend(off.consts.iter().map(|(_, b)| b.len()));
        lens.extend(off.states.iter().map(|id| g.node(*id).bytes()));
        let idx = emu.alloc(&lens)?;
        let (arena, const_idx, state_idx) =
            (idx[0], &idx[1..1 + off.consts.len()], &idx[1 + off.consts.len()..]);
        let mut loc: HashMap<NodeId, u64> = HashMap::new();
        for ((id, bytes), &k) in off.consts.iter().zip(const_idx) {
            emu.write(k, bytes)?;
            loc.insert(*id, emu.addr(k));
        }
        for (id, &k) in off.states.iter().zip(state_idx) {
            emu.write(k, &vec![0u8; g.node(*id).bytes()])?;
            loc.insert(*id, emu.addr(k));
        }
        // The arena starts poisoned except for the inputs.
        let mut image = vec![0xFFu8; off.arena_bytes];
        for (name, t) in ins {
            let (_, id) = g.inputs().into_iter().find(|(n, _)| n == name).expect("graph input");
            let at = off.arena_offsets[g.storage_root(id).0].expect("inputs live in the arena");
            image[at..at + t.bytes().len()].copy_from_slice(t.bytes());
        }
        emu.write(arena, &image)?;
        let base = emu.addr(arena);
        let addr = |id: NodeId| {
            let root = g.storage_root(id);
            match off.arena_offsets[root.0] {
                Some(at) => base + at as u64,
                None => loc.get(&root).copied().unwrap_or(0),
            }
        };
        let need = off.schedule.scratch_bytes(g, &off.steps, &addr);
        let s = emu.alloc(&[need + 256])?[0];
        emu.write(s, &vec![0u8; need + 256])?;
        let scratch = Scratch { ptr: emu.addr(s) + 256, bytes: need, flag: emu.addr(s) };
        match off.schedule.calls(g, &off.steps, &addr, scratch) {
            Ok(steps) => {
                for calls in &steps {
                    launched += !calls.is_empty() as usize;
                    calls.iter().try_for_each(|c| emu.call(c))?;
                }
            }
            Err(e) => failure = Some(format!("plan: {e}")),
        }
        let flag = emu.read(s)?;
        if flag[..4] != [0, 0, 0, 0] {
            failure = Some("a kernel raised the index-error flag".into());
        }
        let arena_bytes = emu.read(arena)?;
        for (name, id) in &g.outputs {
            let root = g.storage_root(*id);
            let n = g.node(*id).bytes();
            let bytes = match off.arena_offsets[root.0] {
                Some(at) => arena_bytes[at..at + n].to_vec(),
                None => {
                    let k = off.states.iter().position(|s| *s == root).map(|p| state_idx[p]);
                    let k = k.or_else(|| off.consts.iter().position(|c| c.0 == root).map(|p| const_idx[p]));
                    emu.read(k.expect("outputs live somewhere"))?[..n].to_vec()
                }
            };
            outs.insert(name.clone(), bytes);
        }
        Ok(())
    })();
    emu.finish(io)?;
    match failure {
        Some(f) => Err(f),
        None => Ok((outs, launched)),
    }
}

/// A UNet/VAE decoder upsample block: nearest ×2 → conv 3x3 (fused: the conv reads the small
/// image) → GroupNorm → SiLU (fused) → conv 3x3, plus a residual through a 1x1 conv.
fn upsample_block(dt: DType) -> Graph {
    let mut b = GraphBuilder::new();
    let x = b.input("x", dt, [1, 8, 10, 32]).unwrap();
    let up = b.resize(x, ResizeMode::Nearest, [16, 20], false, false).unwrap();
    let conv = |b: &mut GraphBuilder, x, name: &str, cin: usize, cout: usize, k: usize| {
        let w = b.param(&format!("{name}.weight"), dt, [cout, k, k, cin]).unwrap();
        let bias = b.param(&format!("{name}.bias"), dt, [cout]).unwrap();
        let pad = k / 2;
        let p = Conv2dParams { padding: [pad, pad], ..Conv2dParams::default() };
        b.conv2d(x, w, Some(bias), p).unwrap()
    };
    let h = conv(&mut b, up, "up.conv", 32, 64, 3);
    let gw = b.param("norm.weight", dt, [64]).unwrap();
    let gb = b.param("norm.bias", dt, [64]).unwrap();
    let h = b.group_norm(h, gw, gb, 32, 1e-6).unwrap();
    let h = b.unary(UnaryOp::Silu, h).unwrap();
    let h = conv(&mut b, h, "conv2", 64, 64, 3);
    let skip = b.resize(x, ResizeMode::Nearest, [16, 20], false, false).unwrap();
    let skip = conv(&mut b, skip, "skip", 32, 64, 1);
    let y = b.add(h, skip).unwrap();
    b.output("y", y).unwrap();
    b.finish().unwrap()
}

/// (model, compute dtype, graph) small enough for the emulator, in f32 and bf16.
fn models() -> Vec<(String, DType, Graph)> {
    let mut v = Vec::new();
    for dt in [DType::F32, DType::BF16] {
        for (model, config, size) in [("qwen2", "tiny", 5), ("qwen2", "tiny", 1), ("convnext", "tiny", 32)] {
            let g = build_named(model, config, size, dt).expect("registry model");
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
            v.push((format!("{name}@40x56 {dt}"), dt, qwen_vit::graph(&c, 40, 56).expect("vit graph")));
        }
        v.push((format!("unet-style upsample block {dt}"), dt, upsample_block(dt)));
        let c = PerceptionConfig::demo();
        let s = PerceptionShape {
            vit_hw: [56, 56],
            hr_hw: [64, 64],
            raw_image: Some([40, 60]),
            n_pre: 3,
            n_post: 2,
            capacity: 48,
            dtype: dt,
        };
        v.push((format!("perception prefill {dt}"), dt, prefill_graph(&c, &s).expect("prefill graph")));
        // The pipeline's decode step, with the greedy head that picks the token on the device.
        let o = StepOptions {
            tokens: 1,
            capacity: s.capacity,
            dtype: dt,
            all_logits: false,
            embeds_input: false,
            next_token: true,
        };
        v.push((format!("perception decode {dt}"), dt, qwen2::step_graph(&c.llm, &o).expect("decode graph")));
    }
    v
}

#[test]
#[ignore = "builds the C++ emulator; tools/test.sh runs it"]
fn model_graphs_on_the_cuda_path_match_the_cpu() {
    let Some((cxx, version)) = find_compiler() else {
        println!("cuda-emu plans: skipped: no C++ compiler (g++, clang++ or $CXX)");
        return;
    };
    let filter = std::env::var("EMU_FILTER").unwrap_or_default();
    let models: Vec<(String, DType, Graph)> =
        models().into_iter().filter(|(n, ..)| n.contains(&filter)).collect();
    let mut generated = Vec::new();
    for (_, _, g) in &models {
        let w: Arc<dyn WeightSource> = Arc::new(MemoryWeights::random_for(g, 1));
        let off = cuda_offline(g, Some(w)).expect("offline CUDA plan");
        generated.extend(off.schedule.generated().iter().cloned());
    }
    generated.sort();
    generated.dedup();
    let bin = build(&cxx, &version, &generated).unwrap_or_else(|e| panic!("cuda-emu build: {e}"));
    let mut failed = Vec::new();
    for (k, (name, dt, g)) in models.iter().enumerate() {
        let t = Instant::now();
        let weights: Arc<dyn WeightSource> = Arc::new(MemoryWeights::random_for(g, 7 + k as u64));
        let ins = inputs(g, 100 + k as u64);
        let refs: Vec<(&str, &Tensor)> = ins.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut cpu = compile(g, Some(weights.clone()), Device::Cpu).expect("CPU plan");
        let want = cpu.run(&refs).expect("CPU run");
        let (got, launched) = match run_on_emulator(&bin, g, weights, &ins) {
            Ok(r) => r,
            Err(e) => {
                println!("FAIL {name}: {e}");
                failed.push(format!("{name}: {e}"));
                continue;
            }
        };
        let mut worst = Vec::new();
        for (out, w) in &want {
            if !w.dtype().is_float() && *dt != DType::F32 {
                // A token picked from bf16 logits may flip where two logits nearly tie.
                continue;
            }
            let err = compare(&got[out], w.bytes(), w.dtype(), w.shape().dims());
            // By the dtype the model computes in (logits leave as f32 either way); whole models
            // round differently along the way (fused kernels keep f32 where the CPU stores).
            let tol = 2.0 * default_tol(*dt);
            worst.push(format!("{out} {err:.2e}"));
            if err > tol || err.is_nan() {
                failed.push(format!("{name}: output {out} rel-L2 {err:.3e} > {tol:.0e}"));
            }
        }
        worst.sort();
        println!(
            "{:<4} {name:<34} {launched:>4} launching steps  {}  ({:.1} s)",
            if failed.iter().any(|f| f.starts_with(name.as_str())) { "FAIL" } else { "ok" },
            worst.join(", "),
            t.elapsed().as_secs_f64()
        );
    }
    println!("cuda-emu plans: {} models, {} failed", models.len(), failed.len());
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
