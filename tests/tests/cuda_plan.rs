//! Without a GPU: every node of every model graph the engine builds plans into CUDA launches
//! (`focus_kernels::cuda::ops::plan` against fake, aligned device addresses), in f32 and bf16
//! — so compiling these models for `cuda` cannot fail with "no CUDA kernel" on a GPU machine.
//! Nodes folded at compile time (weight layout conversions) run on the CPU and are skipped.

use focus_graph::passes::{eliminate_dead_code, static_nodes};
use focus_graph::{DType, Graph};
use focus_kernels::cuda::launch::{DevTensor, Scratch};
use focus_kernels::cuda::ops;
use focus_models::perception::{prefill_graph, PerceptionConfig, PerceptionShape};
use focus_models::registry::build_named;

/// (nodes planned, problems)
fn unplannable(g: &Graph) -> (usize, Vec<String>) {
    let (g, _) = eliminate_dead_code(g);
    let is_static = static_nodes(&g);
    let addr = |i: usize| ((i as u64) + 1) << 20;
    let (mut planned, mut bad) = (0, Vec::new());
    for id in g.ids() {
        let n = g.node(id);
        if n.op.is_leaf()
            || is_static[id.0]
            || (n.op.is_alias() && !matches!(n.op, focus_graph::Op::WriteSlice { .. }))
        {
            continue;
        }
        let ins: Vec<DevTensor> = n
            .inputs
            .iter()
            .map(|i| DevTensor { dtype: g.node(*i).dtype, shape: g.node(*i).shape.dims(), ptr: addr(i.0) })
            .collect();
        let out = DevTensor { dtype: n.dtype, shape: n.shape.dims(), ptr: addr(id.0) };
        let s = Scratch { ptr: 1 << 40, bytes: ops::scratch_bytes(&n.op, &ins, &out), flag: 1 << 41 };
        match ops::plan(&n.op, &ins, &out, s) {
            Ok(_) => planned += 1,
            Err(e) => bad.push(format!("node #{} '{}': {e}", id.0, n.name)),
        }
    }
    (planned, bad)
}

#[test]
fn every_model_graph_plans_on_cuda() {
    let (mut planned, mut bad) = (0, Vec::new());
    let mut add = |(n, b): (usize, Vec<String>), what: String| {
        planned += n;
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
        };
        let g = prefill_graph(&c, &s).unwrap();
        add(unplannable(&g), format!("perception {dt}"));
    }
    // ConvNeXt-L alone has ~36 blocks of ~10 steps; a silent skip would plan far fewer.
    assert!(planned > 3000, "only {planned} nodes planned");
    assert!(bad.is_empty(), "{} node(s) without a CUDA plan:\n{}", bad.len(), bad.join("\n"));
}
