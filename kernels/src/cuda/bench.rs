//! GPU micro-benchmarks of our ops, through `ops::plan` as the executor runs them, at the shapes
//! and under the names `tools/torch_ref/gpu_bench.py` uses for PyTorch, so `tools/gpu_report.py`
//! can put the two side by side. Each case cycles through enough copies of its buffers that
//! reads come from HBM rather than L2 (as the PyTorch side does by default), and is timed with
//! CUDA events over a run of launches.

use super::case::{draw, Input, Rng};
use super::device::{driver, GpuDevice};
use super::launch::{Call, DevTensor, Scratch};
use super::{ops, CudaError};
use focus_graph::infer::{infer, In};
use focus_graph::{BinaryOp, Conv2dParams, DType, Op, UnaryOp};

/// Buffers rotated per case: at least this many bytes in all, so L2 (50 MB on H100) is cold.
const ROTATE_BYTES: usize = 256 << 20;
const MAX_COPIES: usize = 64;

/// One benchmark: a chain of ops (each reading the previous output as its first input, e.g.
/// GroupNorm then SiLU), with FLOPs and bytes for throughput.
pub struct BenchCase {
    pub section: &'static str,
    pub name: String,
    /// JSON object text matching the PyTorch side's `params`.
    pub params: String,
    pub ops: Vec<Op>,
    pub inputs: Vec<Input>,
    pub flops: f64,
    pub bytes: f64,
}

#[derive(Clone, Debug)]
pub struct BenchResult {
    pub section: &'static str,
    pub name: String,
    pub params: String,
    pub ms: f64,
    pub tflops: Option<f64>,
    pub gbps: Option<f64>,
    pub error: Option<String>,
}

fn case(
    section: &'static str,
    name: &str,
    params: String,
    ops: Vec<Op>,
    inputs: Vec<Input>,
    flops: f64,
    bytes: f64,
) -> BenchCase {
    BenchCase { section, name: name.to_string(), params, ops, inputs, flops, bytes }
}

/// The benchmark list (paper-relevant shapes; `quick` for a smoke run).
pub fn cases(quick: bool) -> Vec<BenchCase> {
    let bf = DType::BF16;
    let mut v = Vec::new();
    // GEMM: square, the Qwen2.5-3B MLP at prefill and its decode GEMV.
    let shapes: &[(usize, usize, usize)] =
        if quick { &[(256, 256, 256)] } else { &[(4096, 4096, 4096), (1024, 2048, 11008), (1, 2048, 11008)] };
    for dt in [DType::BF16, DType::F16] {
        for &(m, k, n) in shapes {
            for nt in [false, true] {
                let b = if nt { [n, k] } else { [k, n] };
                let ins = vec![Input::uniform(dt, &[m, k], -1.0, 1.0), Input::uniform(dt, &b, -1.0, 1.0)];
                let name = format!("matmul_{}_{}", dt.short_name(), if nt { "nt" } else { "nn" });
                let params = format!(r#"{{"m": {m}, "k": {k}, "n": {n}}}"#);
                let bytes = 2.0 * (m * k + k * n + m * n) as f64;
                let op = Op::MatMul { trans_a: false, trans_b: nt };
                v.push(case("gemm", &name, params, vec![op], ins, 2.0 * (m * n * k) as f64, bytes));
            }
        }
    }
    // The Qwen2.5-3B decode MLP's gated half in one launch (Op::GatedLinear's GEMV).
    let (m, k, n) = if quick { (1, 128, 512) } else { (1, 2048, 11008) };
    let w = || Input::uniform(DType::BF16, &[n, k], -0.05, 0.05);
    let ins = vec![Input::uniform(DType::BF16, &[m, k], -1.0, 1.0), w(), w()];
    let params = format!(r#"{{"m": {m}, "k": {k}, "n": {n}}}"#);
    let op = Op::GatedLinear { act: UnaryOp::Silu };
    let bytes = 2.0 * (2 * n * k + m * k + m * n) as f64;
    v.push(case("gemm", "swiglu_decode", params, vec![op], ins, 4.0 * (m * n * k) as f64, bytes));
    // The Qwen2.5-3B decode step's q, k and v projections (with biases) in one launch
    // (Op::MultiLinear's GEMV), against three F.linear calls.
    let (k, nq, nkv) = if quick { (128, 128, 32) } else { (2048, 2048, 256) };
    let w = |n: usize| Input::uniform(DType::BF16, &[n, k], -0.05, 0.05);
    let bias = |n: usize| Input::uniform(DType::BF16, &[n], -0.5, 0.5);
    let x = Input::uniform(DType::BF16, &[1, k], -1.0, 1.0);
    let ins = vec![x, w(nq), w(nkv), w(nkv), bias(nq), bias(nkv), bias(nkv)];
    let n = nq + 2 * nkv;
    let params = format!(r#"{{"k": {k}, "nq": {nq}, "nkv": {nkv}}}"#);
    let bytes = 2.0 * (n * k + k + 2 * n) as f64;
    v.push(case(
        "gemm",
        "qkv_decode",
        params,
        vec![Op::MultiLinear { parts: 3 }],
        ins,
        2.0 * (n * k) as f64,
        bytes,
    ));
    // Attention in the engine's [B, T, H, D] layout (PyTorch's "bthd" rows).
    let seqs: &[usize] = if quick { &[128] } else { &[1024, 2048, 4096, 8192] };
    for (h, d) in [(16, 128), (32, 64)] {
        for &t in seqs {
            for causal in [false, true] {
                let x = || Input::uniform(bf, &[1, t, h, d], -1.0, 1.0);
                let flops = 4.0 * (h * t * t * d) as f64 / if causal { 2.0 } else { 1.0 };
                let params = format!(r#"{{"b": 1, "h": {h}, "t": {t}, "d": {d}, "causal": {causal}}}"#);
                let op = Op::Attention { causal, scale: 1.0 / (d as f32).sqrt() };
                v.push(case("attention", "sdpa_bthd", params, vec![op], vec![x(), x(), x()], flops, 0.0));
            }
        }
    }
    // Qwen2.5-3B decode: one query over a KV cache, 16 q heads on 2 kv heads.
    for tk in if quick { vec![128] } else { vec![1024, 4096] } {
        let (hq, hkv, d) = (16, 2, 128);
        let ins = vec![
            Input::uniform(bf, &[1, 1, hq, d], -1.0, 1.0),
            Input::uniform(bf, &[1, tk, hkv, d], -1.0, 1.0),
            Input::uniform(bf, &[1, tk, hkv, d], -1.0, 1.0),
        ];
        let params = format!(r#"{{"hq": {hq}, "hkv": {hkv}, "tq": 1, "tk": {tk}, "d": {d}}}"#);
        let bytes = (2 * hkv * tk * d * 2 + 2 * hq * d * 2) as f64;
        let op = Op::Attention { causal: false, scale: 1.0 / (d as f32).sqrt() };
        v.push(case(
            "attention",
            "sdpa_decode_gqa",
            params,
            vec![op],
            ins,
            4.0 * (hq * tk * d) as f64,
            bytes,
        ));
    }
    // Convolutions: ConvNeXt-L depthwise 7×7 stages, SDXL UNet 3×3 levels (bias, NHWC).
    let dw: &[(usize, usize)] =
        if quick { &[(32, 16)] } else { &[(192, 192), (384, 96), (768, 48), (1536, 24)] };
    let dense: &[(usize, usize)] = if quick { &[(32, 16)] } else { &[(320, 128), (640, 64), (1280, 32)] };
    for (name, list, k, depthwise) in [("conv_dw7x7", dw, 7, true), ("conv3x3", dense, 3, false)] {
        for &(c, s) in list {
            let groups = if depthwise { c } else { 1 };
            let p = Conv2dParams { padding: [k / 2, k / 2], groups, ..Default::default() };
            let ins = vec![
                Input::uniform(bf, &[1, s, s, c], -1.0, 1.0),
                Input::uniform(bf, &[c, k, k, c / groups], -0.1, 0.1),
                Input::uniform(bf, &[c], -0.1, 0.1),
            ];
            let flops = 2.0 * (s * s * c * k * k * (c / groups)) as f64;
            let bytes = 2.0 * (2 * s * s * c + c * k * k * (c / groups)) as f64;
            let params = format!(r#"{{"c": {c}, "hw": {s}, "k": {k}, "groups": {groups}}}"#);
            v.push(case("conv", name, params, vec![Op::Conv2d(p)], ins, flops, bytes));
        }
    }
    // Norms: GroupNorm(32) then SiLU (two ops in our graph), Qwen RMSNorm.
    let gn: &[(usize, usize)] = if quick { &[(64, 16)] } else { &[(320, 128), (1280, 32)] };
    for &(c, s) in gn {
        let ins = vec![
            Input::uniform(bf, &[1, s, s, c], -2.0, 2.0),
            Input::uniform(bf, &[c], 0.5, 1.5),
            Input::uniform(bf, &[c], -0.5, 0.5),
        ];
        let ops = vec![Op::GroupNorm { groups: 32, eps: 1e-5 }, Op::Unary(UnaryOp::Silu)];
        let params = format!(r#"{{"c": {c}, "hw": {s}}}"#);
        v.push(case("norm", "groupnorm32_silu", params, ops, ins, 0.0, 2.0 * (2 * s * s * c + 2 * c) as f64));
    }
    let rms: &[(usize, usize)] = if quick { &[(64, 256)] } else { &[(1024, 2048), (4096, 2048)] };
    for &(n, c) in rms {
        let ins = vec![Input::uniform(bf, &[n, c], -2.0, 2.0), Input::uniform(bf, &[c], 0.5, 1.5)];
        let params = format!(r#"{{"n": {n}, "c": {c}}}"#);
        let bytes = 2.0 * (2 * n * c + c) as f64;
        v.push(case("norm", "rmsnorm_F", params, vec![Op::RmsNorm { eps: 1e-6 }], ins, 0.0, bytes));
        // A residual add of the same size: the elementwise roofline.
        let ins = vec![Input::uniform(bf, &[n, c], -2.0, 2.0), Input::uniform(bf, &[n, c], -2.0, 2.0)];
        let params = format!(r#"{{"n": {n}, "c": {c}}}"#);
        v.push(case("norm", "add", params, vec![Op::Binary(BinaryOp::Add)], ins, 0.0, 6.0 * (n * c) as f64));
    }
    // The decode token head: top-256 of one f32 logits row of the Qwen2.5 vocabulary.
    let (n, k) = if quick { (4096, 64) } else { (151936, 256) };
    let ins = vec![Input::uniform(DType::F32, &[1, n], -10.0, 10.0)];
    let params = format!(r#"{{"n": {n}, "k": {k}}}"#);
    let op = Op::TopK { k, axis: 1 };
    v.push(case("sampling", &format!("topk{k}_vocab"), params, vec![op], ins, 0.0, 4.0 * n as f64));
    // VQ: nearest of N 32-d vectors among K codes (f32).
    let vq: &[(usize, usize)] = if quick { &[(64, 1024)] } else { &[(1024, 16384), (4096, 98304)] };
    for &(n, k) in vq {
        let ins = vec![
            Input::uniform(DType::F32, &[n, 32], -1.0, 1.0),
            Input::uniform(DType::F32, &[k, 32], -1.0, 1.0),
        ];
        let params = format!(r#"{{"n": {n}, "k": {k}, "d": 32}}"#);
        v.push(case(
            "vq",
            "vq_cdist_argmin",
            params,
            vec![Op::VqNearest],
            ins,
            2.0 * (n * k * 32) as f64,
            0.0,
        ));
    }
    v
}

/// Device buffers and prepared launches of one copy of a case.
struct Copy {
    _bufs: Vec<cudarc::driver::CudaSlice<u8>>,
    prepared: Vec<super::device::Prepared>,
}

fn setup(dev: &GpuDevice, c: &BenchCase, rng: &mut Rng) -> Result<(Copy, usize), CudaError> {
    let mut bufs = Vec::new();
    let mut shapes: Vec<(DType, Vec<usize>, u64)> = Vec::new();
    let mut total = 0;
    for i in &c.inputs {
        let b = dev.upload(&draw(i, rng))?;
        total += b.len();
        shapes.push((i.dtype, i.shape.clone(), dev.ptr(&b)));
        bufs.push(b);
    }
    let mut prepared = Vec::new();
    let mut cur = shapes[0].clone();
    let mut fused_next = false;
    for (k, op) in c.ops.iter().enumerate() {
        if std::mem::take(&mut fused_next) {
            continue;
        }
        // The first op reads every input; later ones read the previous output.
        let ins: Vec<(DType, Vec<usize>, u64)> = if k == 0 { shapes.clone() } else { vec![cur.clone()] };
        let ii: Vec<In> = ins.iter().map(|t| In { shape: &t.1, dtype: t.0 }).collect();
        let (shape, dtype) = infer(op, &ii).map_err(CudaError::Driver)?;
        let out = dev.alloc(shape.iter().product::<usize>() * dtype.size_in_bytes())?;
        total += out.len();
        let o = (dtype, shape, dev.ptr(&out));
        bufs.push(out);
        let descs: Vec<DevTensor> =
            ins.iter().map(|t| DevTensor { dtype: t.0, shape: &t.1, ptr: t.2 }).collect();
        let od = DevTensor { dtype: o.0, shape: &o.1, ptr: o.2 };
        let need = ops::scratch_bytes(op, &descs, &od);
        let scratch = dev.zeros(need + 256)?;
        let sp = dev.ptr(&scratch);
        bufs.push(scratch);
        let scratch = Scratch { ptr: sp + 256, bytes: need, flag: sp };
        // GroupNorm then SiLU runs as one kernel in the engine: time it that way.
        let fuse_silu =
            matches!(op, Op::GroupNorm { .. }) && c.ops.get(k + 1) == Some(&Op::Unary(UnaryOp::Silu));
        fused_next = fuse_silu;
        let calls = if fuse_silu {
            ops::plan_chain(op, &Op::Unary(UnaryOp::Silu), &descs, &[], &od, &od, scratch)?.0
        } else {
            ops::plan(op, &descs, &od, scratch)?
        };
        prepared.push(dev.prepare(&calls)?);
        cur = o;
    }
    Ok((Copy { _bufs: bufs, prepared }, total))
}

fn time_case(dev: &GpuDevice, c: &BenchCase, seed: u64) -> Result<f64, CudaError> {
    let mut rng = Rng(seed);
    let (first, bytes) = setup(dev, c, &mut rng)?;
    let copies = (ROTATE_BYTES / bytes.max(1)).clamp(1, MAX_COPIES);
    let mut all = vec![first];
    for _ in 1..copies {
        all.push(setup(dev, c, &mut rng)?.0);
    }
    let run = |k: usize| -> Result<(), CudaError> {
        for p in &all[k % all.len()].prepared {
            dev.launch(p)?;
        }
        Ok(())
    };
    let ev = || dev.ctx.new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT)).map_err(driver);
    let (a, b) = (ev()?, ev()?);
    // Warm up (module load, cuBLAS heuristics), then size the timed run to ~20 ms.
    for k in 0..all.len().max(3) {
        run(k)?;
    }
    a.record(&dev.stream).map_err(driver)?;
    run(0)?;
    b.record(&dev.stream).map_err(driver)?;
    dev.sync()?;
    let one = a.elapsed_ms(&b).map_err(driver)? as f64;
    let reps = ((20.0 / one.max(1e-3)) as usize).clamp(3, 2000);
    a.record(&dev.stream).map_err(driver)?;
    for k in 0..reps {
        run(k)?;
    }
    b.record(&dev.stream).map_err(driver)?;
    dev.sync()?;
    Ok(a.elapsed_ms(&b).map_err(driver)? as f64 / reps as f64)
}

/// Device-to-device copy of `bytes`: the memory-bound ceiling (GB/s counts read + write).
pub fn copy_bandwidth(dev: &GpuDevice, bytes: usize) -> Result<f64, CudaError> {
    let (src, dst) = (dev.zeros(bytes)?, dev.alloc(bytes)?);
    let p = dev.prepare(&[Call::Copy { src: dev.ptr(&src), dst: dev.ptr(&dst), bytes }])?;
    let ev = || dev.ctx.new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT)).map_err(driver);
    let (a, b) = (ev()?, ev()?);
    dev.launch(&p)?;
    a.record(&dev.stream).map_err(driver)?;
    for _ in 0..10 {
        dev.launch(&p)?;
    }
    b.record(&dev.stream).map_err(driver)?;
    dev.sync()?;
    let ms = a.elapsed_ms(&b).map_err(driver)? as f64 / 10.0;
    Ok(2.0 * bytes as f64 / (ms * 1e6))
}

/// Measured ceilings of the device: (bf16 GEMM GFLOP/s at 4096³, copy GB/s).
pub fn ceilings(dev: &GpuDevice) -> Result<(f64, f64), CudaError> {
    let gemm = cases(false).into_iter().find(|c| c.name == "matmul_bf16_nt").expect("listed");
    let ms = time_case(dev, &gemm, 1)?;
    Ok((gemm.flops / (ms * 1e6), copy_bandwidth(dev, 1 << 30)?))
}

/// Run every case; a case that fails records its error.
pub fn run(dev: &GpuDevice, cases: &[BenchCase], seed: u64) -> Vec<BenchResult> {
    cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let r = time_case(dev, c, seed.wrapping_add(i as u64));
            let (ms, error) = match r {
                Ok(ms) => (ms, None),
                Err(e) => (f64::NAN, Some(e.to_string())),
            };
            let per_s = |x: f64| (x > 0.0 && ms.is_finite()).then(|| x / (ms * 1e-3));
            BenchResult {
                section: c.section,
                name: c.name.clone(),
                params: c.params.clone(),
                ms,
                tflops: per_s(c.flops).map(|f| f / 1e12),
                gbps: per_s(c.bytes).map(|b| b / 1e9),
                error,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bench_case_plans_offline() {
        for quick in [true, false] {
            for c in cases(quick) {
                let mut cur: Option<(DType, Vec<usize>)> = None;
                for (k, op) in c.ops.iter().enumerate() {
                    let ins: Vec<(DType, &[usize])> = match (&cur, k) {
                        (Some(t), k) if k > 0 => vec![(t.0, t.1.as_slice())],
                        _ => c.inputs.iter().map(|i| (i.dtype, i.shape.as_slice())).collect(),
                    };
                    let ii: Vec<In> = ins.iter().map(|t| In { shape: t.1, dtype: t.0 }).collect();
                    let (shape, dtype) = infer(op, &ii).unwrap_or_else(|e| panic!("{}: {e}", c.name));
                    super::super::check::plan_op_offline(op, &ins)
                        .unwrap_or_else(|e| panic!("{} {}: {e}", c.name, c.params));
                    cur = Some((dtype, shape));
                }
                assert!(serde_json_like(&c.params), "{}", c.params);
            }
        }
    }

    /// Params are flat JSON objects of numbers and booleans.
    fn serde_json_like(s: &str) -> bool {
        s.starts_with('{') && s.ends_with('}') && s.matches('"').count().is_multiple_of(2)
    }
}
