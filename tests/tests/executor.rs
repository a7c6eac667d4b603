//! Executor: planned runs equal unplanned runs on random graphs; inputs, outputs and weights
//! are validated with clear errors; constant subgraphs are folded at compile time.

use focus_engine::{compile, Device, EngineError, MemoryWeights, Tensor};
use focus_graph::{DType, Graph, GraphBuilder, NodeId, Op, UnaryOp};
use focus_kernels::{cpu, TensorMut, TensorRef};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::sync::Arc;

/// Run every node into its own buffer: no planning, no aliasing, no folding.
fn run_unplanned(g: &Graph, inputs: &[(&str, &Tensor)], w: &MemoryWeights) -> Vec<Vec<u8>> {
    use focus_engine::WeightSource;
    let mut vals: Vec<Vec<u8>> = Vec::with_capacity(g.len());
    for id in g.ids() {
        let n = g.node(id);
        let bytes = match &n.op {
            Op::Input { name } => inputs.iter().find(|(k, _)| k == name).unwrap().1.bytes().to_vec(),
            Op::Param { name } => w.tensor(name).unwrap().2.to_vec(),
            Op::Constant { data } => data.to_vec(),
            op => {
                let mut out = vec![0u8; n.bytes()];
                let ins: Vec<TensorRef> = n
                    .inputs
                    .iter()
                    .map(|i| TensorRef::new(g.node(*i).dtype, g.node(*i).shape.dims(), &vals[i.0]))
                    .collect();
                cpu::run(op, &ins, &mut TensorMut::new(n.dtype, n.shape.dims(), &mut out)).unwrap();
                out
            }
        };
        vals.push(bytes);
    }
    vals
}

fn rand_tensor(rng: &mut StdRng, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
    Tensor::from_f32(DType::F32, shape.to_vec(), &v).unwrap()
}

/// A random graph over [rows, cols] values mixing compute, aliases and data movement.
fn random_graph(rng: &mut StdRng) -> (Graph, Vec<(String, Vec<usize>)>) {
    let (r, c) = (rng.gen_range(1..6), rng.gen_range(1..9));
    let mut b = GraphBuilder::new();
    let mut vals: Vec<NodeId> = Vec::new();
    let mut ins = Vec::new();
    for i in 0..rng.gen_range(1..4) {
        let name = format!("in{i}");
        vals.push(b.input(&name, DType::F32, [r, c]).unwrap());
        ins.push((name, vec![r, c]));
    }
    vals.push(b.param("w", DType::F32, [c, c]).unwrap());
    vals.push(b.param("bias", DType::F32, [c]).unwrap());
    let square = vals[vals.len() - 2];
    let bias = vals[vals.len() - 1];
    for _ in 0..rng.gen_range(2..30) {
        let pick = |rng: &mut StdRng, v: &Vec<NodeId>, b: &GraphBuilder| loop {
            let x = v[rng.gen_range(0..v.len())];
            if b.shape(x) == [r, c] {
                return x;
            }
        };
        let x = pick(rng, &vals, &b);
        let y = pick(rng, &vals, &b);
        let v = match rng.gen_range(0..10) {
            0 => b.unary(UnaryOp::Tanh, x).unwrap(),
            1 => b.add(x, y).unwrap(),
            2 => b.mul(x, bias).unwrap(),
            3 => b.matmul(x, square).unwrap(),
            4 => b.softmax(x, -1).unwrap(),
            5 => {
                let t = b.reshape(x, [r * c]).unwrap();
                b.reshape(t, [r, c]).unwrap()
            }
            6 => {
                let t = b.permute(x, &[1, 0]).unwrap();
                b.permute(t, &[1, 0]).unwrap()
            }
            7 => {
                let t = b.concat(&[x, y], 1).unwrap();
                b.slice(t, 1, c, 2 * c).unwrap()
            }
            8 => {
                // A view 64 bytes in (or, when r·c < 16, a copy unless it happens to align).
                let t = b.concat(&[x, y], 0).unwrap();
                let f = b.reshape(t, [2 * r * c]).unwrap();
                let at = (r * c).min(16);
                let s = b.slice(f, 0, at, at + r * c).unwrap();
                b.reshape(s, [r, c]).unwrap()
            }
            _ => b.linear(x, square, Some(bias)).unwrap(),
        };
        vals.push(v);
    }
    let n_out = rng.gen_range(1..4);
    for (k, v) in vals.iter().rev().take(n_out).enumerate() {
        b.output(&format!("out{k}"), *v).unwrap();
    }
    (b.finish().unwrap(), ins)
}

#[test]
fn planned_equals_unplanned_on_random_graphs() {
    let mut rng = StdRng::seed_from_u64(0xC0FFEE);
    let mut views = 0;
    for case in 0..60 {
        let (g, ins) = random_graph(&mut rng);
        views += g.ids().filter(|id| g.view_offset(*id).is_some_and(|o| o > 0)).count();
        let w = MemoryWeights::random_for(&g, case);
        let tensors: Vec<(String, Tensor)> =
            ins.iter().map(|(n, s)| (n.clone(), rand_tensor(&mut rng, s))).collect();
        let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let want = run_unplanned(&g, &refs, &w);
        let mut plan = compile(&g, Some(Arc::new(w)), Device::Cpu).unwrap();
        // Poison the arena contents from a previous run with other inputs first.
        let other: Vec<(String, Tensor)> =
            ins.iter().map(|(n, s)| (n.clone(), rand_tensor(&mut rng, s))).collect();
        let other_refs: Vec<(&str, &Tensor)> = other.iter().map(|(n, t)| (n.as_str(), t)).collect();
        plan.run(&other_refs).unwrap();
        let got = plan.run(&refs).unwrap();
        for (name, id) in &g.outputs {
            assert_eq!(got[name].bytes(), want[id.0].as_slice(), "case {case} output {name}");
        }
        assert!(plan.memory().arena_bytes <= plan.memory().naive_bytes);
    }
    assert!(views > 0, "no slice was a view at a nonzero offset");
}

fn small_graph() -> Graph {
    let mut b = GraphBuilder::new();
    let x = b.input("x", DType::F32, [2, 3]).unwrap();
    let w = b.param("lin.weight", DType::F32, [4, 3]).unwrap();
    let bias = b.param("lin.bias", DType::F32, [4]).unwrap();
    let y = b.linear(x, w, Some(bias)).unwrap();
    b.output("y", y).unwrap();
    b.finish().unwrap()
}

#[test]
fn input_errors_are_clear() {
    let g = small_graph();
    let w = MemoryWeights::random_for(&g, 1);
    let mut plan = compile(&g, Some(Arc::new(w)), Device::Cpu).unwrap();
    let e = plan.execute().unwrap_err();
    assert!(matches!(e, EngineError::MissingInput(ref n) if n == "x"), "{e}");
    let bad = Tensor::zeros(DType::F32, [3, 2]);
    let e = plan.set_input("x", &bad.view()).unwrap_err().to_string();
    assert!(e.contains("[2,3]") && e.contains("[3,2]"), "{e}");
    let e = plan.set_input("nope", &bad.view()).unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("x"), "{e}");
    assert!(matches!(plan.output("zzz"), Err(EngineError::UnknownOutput(_))));
}

#[test]
fn weight_problems_are_all_reported() {
    let g = small_graph();
    let mut w = MemoryWeights::new();
    w.insert("lin.weight", DType::F32, vec![3, 4], vec![0; 48]);
    let e = compile(&g, Some(Arc::new(w)), Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("lin.bias") && e.contains("missing"), "{e}");
    assert!(e.contains("lin.weight") && e.contains("[4,3]") && e.contains("[3,4]"), "{e}");
    let e = compile(&g, None, Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("2 problem"), "{e}");
    // Extra tensors are not an error, but the plan names them.
    let mut w = MemoryWeights::random_for(&g, 2);
    w.insert("head.fc.weight", DType::F32, vec![1], vec![0; 4]);
    let plan = compile(&g, Some(Arc::new(w)), Device::Cpu).unwrap();
    assert_eq!(plan.unused_weights(), ["head.fc.weight".to_string()]);
}

#[test]
fn weights_are_converted_on_load() {
    // The graph wants bf16; the checkpoint holds f32.
    let mut b = GraphBuilder::new();
    let x = b.input("x", DType::BF16, [1, 2]).unwrap();
    let w = b.param("w", DType::BF16, [2, 2]).unwrap();
    let y = b.linear(x, w, None).unwrap();
    b.output("y", y).unwrap();
    let g = b.finish().unwrap();
    let mut src = MemoryWeights::new();
    let vals = [1.0f32, 2.0, 3.0, 4.0];
    src.insert("w", DType::F32, vec![2, 2], vals.iter().flat_map(|v| v.to_le_bytes()).collect());
    let mut plan = compile(&g, Some(Arc::new(src)), Device::Cpu).unwrap();
    let xt = Tensor::from_f32(DType::BF16, [1, 2], &[0.5, -1.0]).unwrap();
    let out = plan.run(&[("x", &xt)]).unwrap();
    // y = x · wᵀ = [0.5·1 − 1·2, 0.5·3 − 1·4]
    assert_eq!(out["y"].to_f32(), vec![-1.5, -2.5]);
    assert_eq!(plan.stats().resident_bytes, 8);
}

#[test]
fn constant_subgraphs_fold_at_compile_time() {
    let mut b = GraphBuilder::new();
    let x = b.input("x", DType::F32, [1, 5, 5, 2]).unwrap();
    let w = b.param("conv.weight", DType::F32, [3, 2, 3, 3]).unwrap();
    let wt = b.permute(w, &[0, 2, 3, 1]).unwrap();
    let y = b.conv2d(x, wt, None, Default::default()).unwrap();
    b.output("y", y).unwrap();
    let g = b.finish().unwrap();
    let src = MemoryWeights::random_for(&g, 3);
    let plan = compile(&g, Some(Arc::new(src)), Device::Cpu).unwrap();
    let st = plan.stats();
    assert_eq!(st.steps, 1, "only the conv runs per step");
    assert_eq!(st.resident_bytes, 3 * 2 * 3 * 3 * 4);
}

#[test]
fn device_names_parse() {
    assert_eq!(Device::parse("cuda:1").unwrap(), Device::Cuda(1));
    assert_eq!(Device::parse("cuda").unwrap(), Device::Cuda(0));
    assert_eq!(Device::parse("cpu").unwrap(), Device::Cpu);
    for bad in ["tpu", "cuda:", "cuda:x", "cuda:-1"] {
        assert!(matches!(Device::parse(bad), Err(EngineError::UnknownDevice(_))), "{bad}");
    }
}

/// Without a GPU driver, compiling for CUDA is a clear error naming the device, not a panic.
#[test]
fn cuda_without_a_driver_is_a_clean_error() {
    if focus_kernels::cuda::driver_present() {
        return; // a GPU machine: `focus gpu-check` covers this path
    }
    let mut b = GraphBuilder::new();
    let x = b.input("x", DType::F32, [2, 3]).unwrap();
    let y = b.unary(UnaryOp::Exp, x).unwrap();
    b.output("y", y).unwrap();
    let e = compile(&b.finish().unwrap(), None, Device::Cuda(0)).err().expect("no GPU here").to_string();
    assert!(e.contains("cuda:0") && e.contains("libcuda"), "{e}");
}

/// A cache-append graph: writes `x [1, t, 2]` into the state `cache [1, 4, 2]` at `pos`, and
/// outputs the updated cache summed over the sequence.
fn append_graph(t: usize) -> Graph {
    let mut b = GraphBuilder::new();
    let cache = b.state("cache", DType::F32, [1, 4, 2]).unwrap();
    let x = b.input("x", DType::F32, [1, t, 2]).unwrap();
    let pos = b.input("pos", DType::I32, [1]).unwrap();
    let updated = b.write_slice(cache, x, pos, 1).unwrap();
    let s = b.reduce(focus_graph::ReduceOp::Sum, updated, &[1], false).unwrap();
    b.output("sum", s).unwrap();
    b.output("cache", updated).unwrap();
    b.finish().unwrap()
}

#[test]
fn state_persists_across_runs_and_moves_between_plans() {
    let mut prefill = compile(&append_graph(3), None, Device::Cpu).unwrap();
    let mut decode = compile(&append_graph(1), None, Device::Cpu).unwrap();
    let x = Tensor::from_f32(DType::F32, [1, 3, 2], &[1., 2., 3., 4., 5., 6.]).unwrap();
    let p0 = Tensor::from_i64(DType::I32, [1], &[0]).unwrap();
    let out = prefill.run(&[("x", &x), ("pos", &p0)]).unwrap();
    assert_eq!(out["sum"].to_f32(), vec![9., 12.]);
    // Hand the cache to the decode plan and append one row at position 3.
    decode.swap_state(&mut prefill, "cache").unwrap();
    let y = Tensor::from_f32(DType::F32, [1, 1, 2], &[10., 20.]).unwrap();
    let p3 = Tensor::from_i64(DType::I32, [1], &[3]).unwrap();
    let out = decode.run(&[("x", &y), ("pos", &p3)]).unwrap();
    assert_eq!(out["cache"].to_f32(), vec![1., 2., 3., 4., 5., 6., 10., 20.]);
    assert_eq!(out["sum"].to_f32(), vec![19., 32.]);
    assert_eq!(decode.stats().state_bytes, 32);
    // Writing past the capacity is an error, and leaves the cache untouched.
    let p4 = Tensor::from_i64(DType::I32, [1], &[4]).unwrap();
    let e = decode.run(&[("x", &y), ("pos", &p4)]).unwrap_err().to_string();
    assert!(e.contains("write_slice") && e.contains("out of range"), "{e}");
    let c = Tensor::from_bytes(DType::F32, [1, 4, 2], decode.state("cache").unwrap().data).unwrap();
    assert_eq!(c.to_f32(), vec![1., 2., 3., 4., 5., 6., 10., 20.]);
}

#[test]
fn a_state_copies_between_plans_and_both_keep_their_own() {
    let mut a = compile(&append_graph(3), None, Device::Cpu).unwrap();
    let mut b = compile(&append_graph(1), None, Device::Cpu).unwrap();
    let x = Tensor::from_f32(DType::F32, [1, 3, 2], &[1., 2., 3., 4., 5., 6.]).unwrap();
    let p0 = Tensor::from_i64(DType::I32, [1], &[0]).unwrap();
    a.run(&[("x", &x), ("pos", &p0)]).unwrap();
    b.copy_state_from(&a, "cache").unwrap();
    let y = Tensor::from_f32(DType::F32, [1, 1, 2], &[10., 20.]).unwrap();
    let p3 = Tensor::from_i64(DType::I32, [1], &[3]).unwrap();
    let out = b.run(&[("x", &y), ("pos", &p3)]).unwrap();
    assert_eq!(out["cache"].to_f32(), vec![1., 2., 3., 4., 5., 6., 10., 20.]);
    // A copy, not a move: the source still holds what it had.
    let c = Tensor::from_bytes(DType::F32, [1, 4, 2], a.state("cache").unwrap().data).unwrap();
    assert_eq!(c.to_f32(), vec![1., 2., 3., 4., 5., 6., 0., 0.]);
    // A differently shaped or missing state is an error naming it.
    let mut other = GraphBuilder::new();
    let s = other.state("cache", DType::F32, [1, 5, 2]).unwrap();
    other.output("cache", s).unwrap();
    let other = compile(&other.finish().unwrap(), None, Device::Cpu).unwrap();
    assert!(b.copy_state_from(&other, "cache").unwrap_err().to_string().contains("cache"));
    assert!(b.copy_state_from(&a, "nope").unwrap_err().to_string().contains("nope"));
}

#[test]
fn write_slice_needs_a_state_destination() {
    let mut b = GraphBuilder::new();
    let x = b.input("x", DType::F32, [4, 2]).unwrap();
    let y = b.input("y", DType::F32, [1, 2]).unwrap();
    let p = b.input("p", DType::I32, [1]).unwrap();
    let e = b.write_slice(x, y, p, 0).unwrap_err().to_string();
    assert!(e.contains("not a state"), "{e}");
}

#[test]
fn plans_sharing_an_arena_equal_plans_with_their_own() {
    use focus_engine::{compile_shared, SharedArena};
    let mut rng = StdRng::seed_from_u64(0xA2E4A);
    let arena = SharedArena::new();
    let mut cases = Vec::new();
    for case in 0..8 {
        let (g, ins) = random_graph(&mut rng);
        let w = Arc::new(MemoryWeights::random_for(&g, case));
        let own = compile(&g, Some(w.clone()), Device::Cpu).unwrap();
        // Compiled one after another, so the arena grows while earlier plans hold it.
        let shared = compile_shared(&g, Some(w), Device::Cpu, &arena).unwrap();
        // Inputs and outputs moved out of the arena into buffers of the plan's own.
        assert!(shared.stats().arena_bytes <= own.stats().arena_bytes);
        let tensors: Vec<(String, Tensor)> =
            ins.iter().map(|(n, s)| (n.clone(), rand_tensor(&mut rng, s))).collect();
        cases.push((g, own, shared, tensors));
    }
    let largest = cases.iter().map(|c| c.2.stats().arena_bytes).max().unwrap();
    assert_eq!(arena.host_bytes(), largest, "the shared arena is the largest plan's, not the sum");
    // Inputs are set once; the plans then run interleaved, each over the others' leftovers.
    for (_, own, shared, tensors) in &mut cases {
        for (name, t) in tensors.iter() {
            own.set_input(name, &t.view()).unwrap();
            shared.set_input(name, &t.view()).unwrap();
        }
        own.execute().unwrap();
        shared.execute().unwrap();
    }
    for round in 0..2 {
        for k in (0..cases.len()).rev().chain(0..cases.len()) {
            cases[k].2.execute().unwrap();
            // An earlier plan's outputs stay readable after a later plan has run.
            let j = (k + 3) % cases.len();
            let (g, own, shared, _) = &cases[j];
            for (name, _) in &g.outputs {
                assert_eq!(
                    shared.output(name).unwrap().data,
                    own.output(name).unwrap().data,
                    "round {round}: plan {j} output {name} after plan {k} ran"
                );
            }
        }
    }
}

#[test]
fn a_rebuilt_graph_gets_its_compiled_plan_back() {
    let mut cache = focus_engine::PlanCache::new(None).with_arena(focus_engine::SharedArena::new());
    let x = Tensor::from_f32(DType::F32, [1, 3, 2], &[1., 2., 3., 4., 5., 6.]).unwrap();
    let p0 = Tensor::from_i64(DType::I32, [1], &[0]).unwrap();
    cache.plan(&append_graph(3), Device::Cpu).unwrap().run(&[("x", &x), ("pos", &p0)]).unwrap();
    // The same graph, built again: the same plan, its cache state still there.
    let again = cache.plan(&append_graph(3), Device::Cpu).unwrap();
    let c = Tensor::from_bytes(DType::F32, [1, 4, 2], again.state("cache").unwrap().data).unwrap();
    assert_eq!(c.to_f32(), vec![1., 2., 3., 4., 5., 6., 0., 0.]);
    assert_eq!(cache.stats(), (1, 1));
    // Another shape is another plan.
    cache.plan(&append_graph(1), Device::Cpu).unwrap();
    assert_eq!((cache.len(), cache.stats()), (2, (1, 2)));
    // A graph that does not compile (a missing weight) is an error, and nothing is cached.
    let mut b = GraphBuilder::new();
    let xi = b.input("x", DType::F32, [2, 3]).unwrap();
    let w = b.param("w", DType::F32, [4, 3]).unwrap();
    let y = b.linear(xi, w, None).unwrap();
    b.output("y", y).unwrap();
    assert!(cache.plan(&b.finish().unwrap(), Device::Cpu).is_err());
    assert_eq!(cache.len(), 2);
}
