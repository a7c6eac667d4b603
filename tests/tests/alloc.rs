//! Re-running a compiled plan allocates no memory: activations live in the planned arena and
//! kernel scratch comes from per-thread pools that stop growing after the first run.
//! (One test in this binary: the counting allocator is global to the process.)

use focus_engine::{compile, Device, MemoryWeights, Tensor};
use focus_graph::{Conv2dParams, DType, GraphBuilder, NodeId, Op, ResizeMode, RopeKind, UnaryOp};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

type Case = (&'static str, fn(&mut GraphBuilder, NodeId) -> NodeId);

/// One small f32 graph per op family on `x [6, 32]`.
const CASES: &[Case] = &[
    ("unary", |b, x| b.unary(UnaryOp::Gelu, x).unwrap()),
    ("binary broadcast", |b, x| {
        let r = b.slice(x, 0, 0, 1).unwrap();
        b.add(x, r).unwrap()
    }),
    ("linear", |b, x| {
        let w = b.param("w", DType::F32, [32, 32]).unwrap();
        b.linear(x, w, None).unwrap()
    }),
    ("softmax", |b, x| b.softmax(x, -1).unwrap()),
    ("softmax axis 0", |b, x| b.softmax(x, 0).unwrap()),
    ("layer_norm", |b, x| b.layer_norm(x, None, None, 1e-5).unwrap()),
    ("rms_norm", |b, x| {
        let w = b.param("w", DType::F32, [32]).unwrap();
        b.rms_norm(x, w, 1e-6).unwrap()
    }),
    ("group_norm", |b, x| {
        let r = b.reshape(x, [1, 6, 32]).unwrap();
        b.op(Op::GroupNorm { groups: 4, eps: 1e-5 }, &[r]).unwrap()
    }),
    ("spatial_norm", |b, x| {
        let r = b.reshape(x, [1, 2, 3, 32]).unwrap();
        let w = b.param("w", DType::F32, [32]).unwrap();
        let m = b.slice(r, 1, 0, 1).unwrap();
        b.spatial_norm(r, (w, w), (m, m), 4, 1e-6).unwrap()
    }),
    ("gated_linear", |b, x| {
        let (wg, wu) =
            (b.param("wg", DType::F32, [16, 32]).unwrap(), b.param("wu", DType::F32, [16, 32]).unwrap());
        b.gated_linear(x, (wg, wu), None, UnaryOp::Silu).unwrap()
    }),
    ("glu", |b, x| b.glu(x, UnaryOp::Gelu).unwrap()),
    ("top_k", |b, x| b.top_k(x, 5, -1).unwrap()),
    ("varlen attention", |b, x| {
        let r = b.reshape(x, [1, 6, 2, 16]).unwrap();
        b.varlen_attention(r, r, r, &[2, 4], false, 0.25).unwrap()
    }),
    ("timestep embedding", |b, x| {
        let t = b.slice(x, 1, 0, 1).unwrap();
        let t = b.reshape(t, [6]).unwrap();
        b.timestep_embedding(t, 16, true, 0.0).unwrap()
    }),
    ("avg_pool + pixel shuffle", |b, x| {
        let r = b.reshape(x, [1, 2, 3, 32]).unwrap();
        let p = b.avg_pool2d(r, [2, 1], [2, 1], [0, 0]).unwrap();
        b.pixel_shuffle(p, 2).unwrap()
    }),
    ("pad", |b, x| b.pad(x, &[(1, 2), (0, 3)], 0.5).unwrap()),
    ("reduce sum keepdim", |b, x| {
        let s = b.reduce(focus_graph::ReduceOp::Sum, x, &[1], true).unwrap();
        b.add(x, s).unwrap()
    }),
    ("argmax, casts", |b, x| {
        let a = b.argmax(x, 1, true).unwrap();
        let a = b.cast(a, DType::I32).unwrap();
        b.cast(a, DType::F32).unwrap()
    }),
    ("rope", |b, x| {
        let p = b.input("pos", DType::I32, [6]).unwrap();
        let r = b.reshape(x, [1, 6, 2, 16]).unwrap();
        b.rope(r, p, RopeKind::OneD, 1e4).unwrap()
    }),
    ("attention", |b, x| {
        let r = b.reshape(x, [1, 6, 2, 16]).unwrap();
        b.attention(r, r, r, None, true, 0.25).unwrap()
    }),
    ("embedding", |b, x| {
        let ids = b.input("pos", DType::I32, [6]).unwrap();
        b.embedding(x, ids).unwrap()
    }),
    ("depthwise conv", |b, x| {
        let w = b.param("w", DType::F32, [32, 3, 3, 1]).unwrap();
        let r = b.reshape(x, [1, 2, 3, 32]).unwrap();
        b.conv2d(r, w, None, Conv2dParams { padding: [1, 1], groups: 32, ..Default::default() }).unwrap()
    }),
    ("conv 3x3", |b, x| {
        let w = b.param("w", DType::F32, [8, 3, 3, 32]).unwrap();
        let r = b.reshape(x, [1, 2, 3, 32]).unwrap();
        b.conv2d(r, w, None, Conv2dParams { padding: [1, 1], ..Default::default() }).unwrap()
    }),
    ("resize: antialiased bicubic down, bilinear and nearest up", |b, x| {
        let r = b.reshape(x, [1, 4, 6, 8]).unwrap();
        let d = b.resize(r, ResizeMode::Bicubic, [3, 4], false, true).unwrap();
        let u = b.resize(d, ResizeMode::Bilinear, [5, 7], true, false).unwrap();
        b.resize(u, ResizeMode::Nearest, [8, 9], false, false).unwrap()
    }),
    ("vq nearest", |b, x| {
        let cb = b.param("cb", DType::F32, [40, 32]).unwrap();
        b.vq_nearest(x, cb).unwrap()
    }),
    ("bf16: linear, rms_norm, attention, gelu", |b, x| {
        let h = b.cast(x, DType::BF16).unwrap();
        let w = b.param("w", DType::BF16, [32, 32]).unwrap();
        let g = b.param("g", DType::BF16, [32]).unwrap();
        let h = b.linear(h, w, None).unwrap();
        let h = b.rms_norm(h, g, 1e-6).unwrap();
        let r = b.reshape(h, [1, 6, 2, 16]).unwrap();
        let a = b.attention(r, r, r, None, true, 0.25).unwrap();
        let a = b.unary(UnaryOp::Gelu, a).unwrap();
        b.cast(a, DType::F32).unwrap()
    }),
    ("permute, reshape, slice, concat", |b, x| {
        let t = b.permute(x, &[1, 0]).unwrap();
        let t = b.reshape(t, [64, 3]).unwrap();
        let t = b.slice(t, 0, 0, 32).unwrap();
        b.concat(&[t, t], 1).unwrap()
    }),
];

/// A case's graph on `x [6, 32]`.
fn case_graph(build: fn(&mut GraphBuilder, NodeId) -> NodeId) -> focus_graph::Graph {
    let mut b = GraphBuilder::new();
    let xi = b.input("x", DType::F32, [6, 32]).unwrap();
    let y = build(&mut b, xi);
    b.output("y", y).unwrap();
    b.finish().unwrap()
}

#[test]
fn rerunning_a_plan_allocates_nothing() {
    let v: Vec<f32> = (0..192).map(|i| (i as f32 * 0.1).sin()).collect();
    let x = Tensor::from_f32(DType::F32, [6, 32], &v).unwrap();
    let pos = Tensor::from_i64(DType::I32, [6], &[0, 1, 2, 3, 4, 5]).unwrap();
    let mut failures = Vec::new();
    for (name, build) in CASES {
        let g = case_graph(*build);
        let w = MemoryWeights::random_for(&g, 0);
        let mut plan = compile(&g, Some(Arc::new(w)), Device::Cpu).unwrap();
        plan.set_input("x", &x.view()).unwrap();
        if g.inputs().len() > 1 {
            plan.set_input("pos", &pos.view()).unwrap();
        }
        plan.execute().unwrap(); // warm-up: thread pools, lazy statics, scratch pools
        let before = ALLOCS.load(Ordering::SeqCst);
        for _ in 0..3 {
            plan.execute().unwrap();
        }
        let n = ALLOCS.load(Ordering::SeqCst) - before;
        if n > 0 {
            failures.push(format!("{name}: {n}"));
        }
    }
    // Plans sharing one arena, run in turn.
    let arena = focus_engine::SharedArena::new();
    let mut plans = Vec::new();
    for (_, build) in &CASES[..4] {
        let g = case_graph(*build);
        let w = MemoryWeights::random_for(&g, 0);
        let mut plan = focus_engine::compile_shared(&g, Some(Arc::new(w)), Device::Cpu, &arena).unwrap();
        plan.set_input("x", &x.view()).unwrap();
        plan.execute().unwrap();
        plans.push(plan);
    }
    let before = ALLOCS.load(Ordering::SeqCst);
    for _ in 0..3 {
        plans.iter_mut().try_for_each(|p| p.execute()).unwrap();
    }
    let n = ALLOCS.load(Ordering::SeqCst) - before;
    if n > 0 {
        failures.push(format!("plans sharing an arena: {n}"));
    }
    assert!(failures.is_empty(), "allocations in 3 re-runs: {failures:?}");
}
