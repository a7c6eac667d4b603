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
use focus_graph::{DType, Graph, NodeId};
use focus_kernels::cuda::case::default_tol;
use focus_kernels::cuda::check::compare;
use focus_kernels::cuda::launch::Scratch;
use focus_models::checks::{check_inputs, check_states, CheckInput, PLAN_TOL_FACTOR};
use focus_pipeline::checks::check_graphs;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Tensors by name.
type Named = [(String, Tensor)];

/// The check inputs (`states`: the check contents of the state buffers) as tensors.
fn inputs(g: &Graph, seed: u64, states: bool) -> Vec<(String, Tensor)> {
    let (values, nodes) =
        if states { (check_states(g, seed), g.states()) } else { (check_inputs(g, seed), g.inputs()) };
    values
        .into_iter()
        .map(|(name, v)| {
            let n = g.node(nodes.iter().find(|(m, _)| *m == name).expect("graph node").1);
            let t = match v {
                CheckInput::Float(v) => Tensor::from_f32(n.dtype, n.shape.clone(), &v),
                CheckInput::Int(v) => Tensor::from_i64(n.dtype, n.shape.clone(), &v),
            };
            (name, t.expect("input tensor"))
        })
        .collect()
}

/// Run the CUDA plan of `graph` on the emulator; returns (output name, bytes) and the number
/// of steps that launched something.
fn run_on_emulator(
    bin: &Path,
    graph: &Graph,
    weights: Arc<dyn WeightSource>,
    (ins, states): (&Named, &Named),
    own_io: bool,
) -> Result<(HashMap<String, Vec<u8>>, usize), String> {
    let off = cuda_offline(graph, Some(weights), own_io).map_err(|e| e.to_string())?;
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
            // State buffers hold their check contents; buffers of a plan's own start zeroed.
            let named = match &g.node(*id).op {
                focus_graph::Op::State { name } => states.iter().find(|s| s.0 == *name),
                _ => None,
            };
            match named {
                Some((_, t)) => emu.write(k, t.bytes())?,
                None => emu.write(k, &vec![0u8; g.node(*id).bytes()])?,
            }
            loc.insert(*id, emu.addr(k));
        }
        // The arena starts poisoned except for the inputs (there, or in buffers of their own).
        let mut image = vec![0xFFu8; off.arena_bytes];
        for (name, t) in ins {
            let (_, id) = g.inputs().into_iter().find(|(n, _)| n == name).expect("graph input");
            match off.arena_offsets[g.storage_root(id).0] {
                Some(at) => image[at..at + t.bytes().len()].copy_from_slice(t.bytes()),
                None => {
                    let p = off.states.iter().position(|s| *s == id).expect("an input's own buffer");
                    emu.write(state_idx[p], t.bytes())?;
                }
            }
        }
        emu.write(arena, &image)?;
        let base = emu.addr(arena);
        let addr = |id: NodeId| {
            let root = g.storage_root(id);
            let view = g.storage_offset(id) as u64;
            match off.arena_offsets[root.0] {
                Some(at) => base + at as u64 + view,
                None => loc.get(&root).map_or(0, |a| a + view),
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
            let (n, view) = (g.node(*id).bytes(), g.storage_offset(*id));
            let bytes = match off.arena_offsets[root.0] {
                Some(at) => arena_bytes[at + view..at + view + n].to_vec(),
                None => {
                    let k = off.states.iter().position(|s| *s == root).map(|p| state_idx[p]);
                    let k = k.or_else(|| off.consts.iter().position(|c| c.0 == root).map(|p| const_idx[p]));
                    emu.read(k.expect("outputs live somewhere"))?[view..view + n].to_vec()
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

#[test]
#[ignore = "builds the C++ emulator; tools/test.sh runs it"]
fn model_graphs_on_the_cuda_path_match_the_cpu() {
    let Some((cxx, version)) = find_compiler() else {
        println!("cuda-emu plans: skipped: no C++ compiler (g++, clang++ or $CXX)");
        return;
    };
    let filter = std::env::var("EMU_FILTER").unwrap_or_default();
    let models: Vec<(String, DType, Graph)> =
        check_graphs().expect("check graphs").into_iter().filter(|(n, ..)| n.contains(&filter)).collect();
    let mut generated = Vec::new();
    for (_, _, g) in &models {
        let w: Arc<dyn WeightSource> = Arc::new(MemoryWeights::random_for(g, 1));
        let off = cuda_offline(g, Some(w), false).expect("offline CUDA plan");
        generated.extend(off.schedule.generated().iter().cloned());
    }
    generated.sort();
    generated.dedup();
    let bin = build(&cxx, &version, &generated).unwrap_or_else(|e| panic!("cuda-emu build: {e}"));
    let mut failed = Vec::new();
    for (k, (name, dt, g)) in models.iter().enumerate() {
        let t = Instant::now();
        let weights: Arc<dyn WeightSource> = Arc::new(MemoryWeights::random_for(g, 7 + k as u64));
        let (ins, states) = (inputs(g, 100 + k as u64, false), inputs(g, 100 + k as u64, true));
        let refs: Vec<(&str, &Tensor)> = ins.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut cpu = compile(g, Some(weights.clone()), Device::Cpu).expect("CPU plan");
        for (name, t) in &states {
            cpu.set_state(name, &t.view()).expect("CPU state");
        }
        let want = cpu.run(&refs).expect("CPU run");
        // Every other model as a plan in a shared arena (inputs and outputs on their own).
        let own_io = k % 2 == 1;
        let (got, launched) = match run_on_emulator(&bin, g, weights, (&ins, &states), own_io) {
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
            // By the dtype the model computes in (logits leave as f32 either way).
            let tol = PLAN_TOL_FACTOR * default_tol(*dt);
            worst.push(format!("{out} {err:.2e}"));
            if err > tol || err.is_nan() {
                failed.push(format!("{name}: output {out} rel-L2 {err:.3e} > {tol:.0e}"));
            }
        }
        worst.sort();
        println!(
            "{:<4} {name:<34} {launched:>4} launching steps  {}  ({:.1} s{})",
            if failed.iter().any(|f| f.starts_with(name.as_str())) { "FAIL" } else { "ok" },
            worst.join(", "),
            t.elapsed().as_secs_f64(),
            if own_io { ", own i/o" } else { "" }
        );
    }
    println!("cuda-emu plans: {} models, {} failed", models.len(), failed.len());
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
