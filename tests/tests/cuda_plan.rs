//! Without a GPU: every node of every model graph the engine builds plans into CUDA launches
//! (`focus_kernels::cuda::ops::plan` against fake, aligned device addresses), in f32 and bf16
//! — so compiling these models for `cuda` cannot fail with "no CUDA kernel" on a GPU machine.
//! Nodes folded at compile time (weight layout conversions) run on the CPU and are skipped;
//! the pairs a CUDA plan fuses (residual add + norm, GroupNorm + SiLU) plan as one.

use focus_engine::Fusions;
use focus_graph::passes::{eliminate_dead_code, static_nodes};
use focus_graph::{DType, Graph, NodeId};
use focus_kernels::cuda::launch::{DevTensor, Scratch};
use focus_kernels::cuda::ops;
use focus_models::perception::{prefill_graph, PerceptionConfig, PerceptionShape};
use focus_models::registry::build_named;
use std::collections::{HashMap, HashSet};

/// (nodes planned, fused pairs, problems), stepping and pairing nodes as a CUDA plan does.
fn unplannable(g: &Graph) -> (usize, usize, Vec<String>) {
    let (g, _) = eliminate_dead_code(g);
    let is_static = static_nodes(&g);
    let steps = focus_engine::executor::steps(&g, &is_static);
    let fusions = Fusions::of(&g, &steps);
    let pairs: HashMap<NodeId, NodeId> = fusions.pairs().into_iter().collect();
    let seconds: HashSet<NodeId> = pairs.values().copied().collect();
    let addr = |i: usize| ((i as u64) + 1) << 20;
    let desc =
        |i: NodeId| DevTensor { dtype: g.node(i).dtype, shape: g.node(i).shape.dims(), ptr: addr(i.0) };
    let (mut planned, mut bad) = (0, Vec::new());
    for &id in &steps {
        if seconds.contains(&id) {
            continue;
        }
        let n = g.node(id);
        let ins: Vec<DevTensor> = n.inputs.iter().map(|i| desc(*i)).collect();
        let out = desc(id);
        let s = Scratch { ptr: 1 << 40, bytes: ops::scratch_bytes(&n.op, &ins, &out), flag: 1 << 41 };
        let r = match pairs.get(&id) {
            Some(&second) => {
                let sn = g.node(second);
                let extra: Vec<DevTensor> =
                    sn.inputs.iter().filter(|i| **i != id).map(|i| desc(*i)).collect();
                ops::plan_chain(&n.op, &sn.op, &ins, &extra, &out, &desc(second), s).map(|_| ())
            }
            None => ops::plan(&n.op, &ins, &out, s).map(|_| ()),
        };
        match r {
            Ok(()) => planned += 1 + pairs.contains_key(&id) as usize,
            Err(e) => bad.push(format!("node #{} '{}': {e}", id.0, n.name)),
        }
    }
    (planned, pairs.len(), bad)
}

#[test]
fn every_model_graph_plans_on_cuda() {
    let (mut planned, mut bad) = (0, Vec::new());
    let mut pairs = HashMap::new();
    let mut add = |(n, p, b): (usize, usize, Vec<String>), what: String| {
        planned += n;
        *pairs.entry(what.split(' ').next().unwrap_or_default().to_string()).or_insert(0) += p;
        bad.extend(b.into_iter().map(|b| format!("{what}: {b}")));
    };
    for dt in [DType::F32, DType::BF16] {
        for (model, config, size) in [
            ("convnext", "tiny", 64),
            ("convnext", "large", 64),
            ("qwen2vl_vit", "600m", 56),
            ("qwen25vl_vit", "3b", 112),
            ("qwen2", "tiny", 5),
            ("qwen2", "tiny", 1),
        ] {
            let g = build_named(model, config, size, dt).unwrap();
            add(unplannable(&g), format!("{model}/{config} {dt}"));
        }
        let c = PerceptionConfig::demo();
        let s = PerceptionShape {
            vit_hw: [112, 112],
            hr_hw: [224, 224],
            raw_image: Some([200, 300]),
            n_pre: 5,
            n_post: 7,
            capacity: 64,
            dtype: dt,
            seg_queries: 0,
        };
        let g = prefill_graph(&c, &s).unwrap();
        add(unplannable(&g), format!("perception {dt}"));
    }
    // ConvNeXt-L alone has ~36 blocks of ~10 steps, in two dtypes; a silent skip would plan far
    // fewer (2,643 when contiguous slices became views and q/k/v one op).
    assert!(planned > 2400, "only {planned} nodes planned");
    // Every transformer block fuses its residual adds into the next norm.
    for model in ["qwen2/tiny", "qwen25vl_vit/3b", "qwen2vl_vit/600m", "perception"] {
        assert!(pairs.get(model).copied().unwrap_or(0) > 0, "no fused add + norm in {model}: {pairs:?}");
    }
    assert!(bad.is_empty(), "{} node(s) without a CUDA plan:\n{}", bad.len(), bad.join("\n"));
}

/// A decode step projects q, k and v in one launch and reads them back in place (no slice
/// copies); a prefill step beyond the GEMV's 8 rows runs one GEMM per projection into its block.
#[test]
fn qkv_projection_is_one_launch_per_decode_step() {
    for dt in [DType::F32, DType::BF16] {
        for (tokens, per_proj) in [(1, 1), (12, 3)] {
            let g = build_named("qwen2", "tiny", tokens, dt).unwrap();
            let launches = focus_engine::executor::cuda_launches(&g).unwrap();
            let count = |kind: &str| -> Vec<usize> {
                launches.iter().filter(|(id, _)| g.node(*id).op.kind() == kind).map(|s| s.1).collect()
            };
            // The registry's tiny config has two layers.
            assert_eq!(count("multi_linear"), vec![per_proj; 2], "{dt} tokens {tokens}");
            assert!(count("slice").is_empty(), "{dt} tokens {tokens}: q/k/v copied out of their blocks");
        }
    }
}
