//! CPU op benchmarks (criterion). Throughput is reported in elements = FLOPs where the op is
//! compute-bound, so criterion's "elem/s" reads as FLOP/s; bytes are given in the names' notes.
//! `executor_overhead` compares a one-node plan against calling the GEMM crate directly.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use focus_engine::{compile, Device, MemoryWeights, Plan, Tensor};
use focus_graph::{Conv2dParams, DType, Graph, GraphBuilder};
use rand::{Rng, SeedableRng};
use std::sync::Arc;

fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| r.gen_range(-1.0..1.0)).collect()
}

/// Compile `g` with random weights and random inputs set.
fn prepared(g: &Graph) -> Plan {
    let w = MemoryWeights::random_for(g, 1);
    let mut p = compile(g, Some(Arc::new(w)), Device::Cpu).unwrap();
    for (i, (name, id)) in g.inputs().into_iter().enumerate() {
        let n = g.node(id);
        let t = Tensor::from_f32(n.dtype, n.shape.clone(), &rand_vec(n.shape.numel(), i as u64)).unwrap();
        p.set_input(name, &t.view()).unwrap();
    }
    p
}

fn bench_plan(c: &mut Criterion, group: &str, id: &str, g: Graph) {
    let flops = g.total_cost().flops;
    let mut p = prepared(&g);
    let mut grp = c.benchmark_group(group);
    grp.throughput(Throughput::Elements(flops));
    grp.sample_size(10);
    grp.bench_function(BenchmarkId::from_parameter(id), |b| b.iter(|| p.execute().unwrap()));
    grp.finish();
}

fn matmul_graph(m: usize, k: usize, n: usize) -> Graph {
    let mut b = GraphBuilder::new();
    let x = b.input("a", DType::F32, [m, k]).unwrap();
    let y = b.input("b", DType::F32, [k, n]).unwrap();
    let o = b.matmul(x, y).unwrap();
    b.output("o", o).unwrap();
    b.finish().unwrap()
}

fn conv_graph(c: usize, h: usize, k: usize, groups: usize, cout: usize) -> Graph {
    let mut b = GraphBuilder::new();
    let x = b.input("x", DType::F32, [1, h, h, c]).unwrap();
    let w = b.param("w", DType::F32, [cout, k, k, c / groups]).unwrap();
    let bias = b.param("b", DType::F32, [cout]).unwrap();
    let p = Conv2dParams { padding: [k / 2, k / 2], groups, ..Default::default() };
    let o = b.conv2d(x, w, Some(bias), p).unwrap();
    b.output("o", o).unwrap();
    b.finish().unwrap()
}

/// `x [m, k] · w [n, k]ᵀ` with `w` a weight (a decode step's projection at m = 1).
fn linear_graph(dt: DType, m: usize, k: usize, n: usize) -> Graph {
    let mut b = GraphBuilder::new();
    let x = b.input("x", dt, [m, k]).unwrap();
    let w = b.param("w", dt, [n, k]).unwrap();
    let o = b.linear(x, w, None).unwrap();
    b.output("o", o).unwrap();
    b.finish().unwrap()
}

fn ops(c: &mut Criterion) {
    bench_plan(c, "matmul_f32", "1024x2048x2048", matmul_graph(1024, 2048, 2048));
    // Memory-bound: 90 MB of weight per run, so time × bandwidth is the floor to compare.
    bench_plan(c, "linear_f32", "decode_1x2048x11008", linear_graph(DType::F32, 1, 2048, 11008));
    // Half the bytes: bf16 weights read in place, widened in registers.
    bench_plan(c, "linear_bf16", "decode_1x2048x11008", linear_graph(DType::BF16, 1, 2048, 11008));
    bench_plan(c, "conv2d_f32", "dw7x7_192x56x56", conv_graph(192, 56, 7, 192, 192));
    bench_plan(c, "conv2d_f32", "3x3_320x64x64", conv_graph(320, 64, 3, 1, 320));

    let mut b = GraphBuilder::new();
    let x = b.input("x", DType::F32, [1, 64, 64, 320]).unwrap();
    let w = b.param("w", DType::F32, [320]).unwrap();
    let bb = b.param("b", DType::F32, [320]).unwrap();
    let o = b.group_norm(x, w, bb, 32, 1e-5).unwrap();
    b.output("o", o).unwrap();
    bench_plan(c, "group_norm_f32", "32g_320x64x64", b.finish().unwrap());

    let mut b = GraphBuilder::new();
    let q = b.input("q", DType::F32, [1, 1024, 16, 64]).unwrap();
    let k = b.input("k", DType::F32, [1, 1024, 16, 64]).unwrap();
    let v = b.input("v", DType::F32, [1, 1024, 16, 64]).unwrap();
    let o = b.attention(q, k, v, None, false, 0.125).unwrap();
    b.output("o", o).unwrap();
    bench_plan(c, "attention_f32", "seq1024_16x64", b.finish().unwrap());
}

/// The same GEMM through a plan and through the gemm crate directly.
fn executor_overhead(c: &mut Criterion) {
    let (m, k, n) = (256, 512, 512);
    let a = rand_vec(m * k, 1);
    let bm = rand_vec(k * n, 2);
    let mut out = vec![0f32; m * n];
    let mut grp = c.benchmark_group("executor_overhead");
    grp.throughput(Throughput::Elements((2 * m * k * n) as u64));
    grp.bench_function("gemm_direct_256x512x512", |bch| {
        bch.iter(|| unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                k as isize,
                bm.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(rayon_threads()),
            )
        })
    });
    let mut p = prepared(&matmul_graph(m, k, n));
    grp.bench_function("plan_256x512x512", |bch| bch.iter(|| p.execute().unwrap()));
    grp.finish();
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Host sampling over the Qwen2.5 vocabulary (151,936 logits), per token.
fn sampling(c: &mut Criterion) {
    use focus_engine::sampling::{Allowed, Sampler, SamplingParams};
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let logits: Vec<f32> = (0..151_936).map(|_| rng.gen_range(-10.0..10.0)).collect();
    let mut grp = c.benchmark_group("sampling_151936");
    for (name, temperature, top_k, top_p) in
        [("greedy", 0.0, 0, 1.0), ("top_k50_p0.9", 0.8, 50, 0.9), ("top_p0.9", 0.8, 0, 0.9)]
    {
        let mut s = Sampler::new(SamplingParams { temperature, top_k, top_p, seed: 1 }).unwrap();
        grp.bench_function(name, |b| b.iter(|| s.sample(&logits, &Allowed::All).unwrap()));
    }
    grp.finish();
}

criterion_group!(benches, ops, executor_overhead, sampling);
criterion_main!(benches);
