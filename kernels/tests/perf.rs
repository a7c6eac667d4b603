//! Quick timings of the heavy kernels; run with
//! `cargo test -p focus-kernels --release --test perf -- --ignored --nocapture`.

mod common;
use common::*;
use focus_graph::{Conv2dParams, DType, Op};
use std::time::Instant;

fn time(what: &str, op: &Op, ins: &[&Owned], flops: f64) {
    run_op(op, ins).unwrap(); // warm-up
    let reps = 3;
    let t = Instant::now();
    for _ in 0..reps {
        run_op(op, ins).unwrap();
    }
    let s = t.elapsed().as_secs_f64() / reps as f64;
    eprintln!("{what}: {:.2} ms, {:.1} GFLOP/s", s * 1e3, flops / s / 1e9);
}

fn rand(seed: u64, shape: &[usize]) -> Owned {
    let n = shape.iter().product();
    Owned::from_f32(&rand_vec(&mut rng(seed), n, -1.0, 1.0), shape, DType::F32)
}

#[test]
#[ignore]
fn perf() {
    let (a, b) = (rand(1, &[1024, 2048]), rand(2, &[2048, 2048]));
    let mm = Op::MatMul { trans_a: false, trans_b: false };
    time("matmul 1024x2048x2048 f32", &mm, &[&a, &b], 2.0 * 1024.0 * 2048.0 * 2048.0);

    let x = rand(3, &[1, 56, 56, 192]);
    let w = rand(4, &[192, 7, 7, 1]);
    let p = Conv2dParams { padding: [3, 3], groups: 192, ..Default::default() };
    time("depthwise 7x7 [1,56,56,192]", &Op::Conv2d(p), &[&x, &w], 2.0 * 56.0 * 56.0 * 192.0 * 49.0);

    let x = rand(5, &[1, 64, 64, 320]);
    let w = rand(6, &[320, 3, 3, 320]);
    let p = Conv2dParams { padding: [1, 1], ..Default::default() };
    time("conv 3x3 [1,64,64,320]->320", &Op::Conv2d(p), &[&x, &w], 2.0 * 64.0 * 64.0 * 320.0 * 9.0 * 320.0);

    let (t, h, d) = (1024, 16, 64);
    let (q, k, v) = (rand(7, &[1, t, h, d]), rand(8, &[1, t, h, d]), rand(9, &[1, t, h, d]));
    let flops = 4.0 * (t * t * h * d) as f64;
    let op = Op::Attention { causal: false, scale: 0.125 };
    time("attention 1024 16h d64", &op, &[&q, &k, &v], flops);
    let op = Op::Attention { causal: true, scale: 0.125 };
    time("attention 1024 16h d64 causal", &op, &[&q, &k, &v], flops / 2.0);
}
