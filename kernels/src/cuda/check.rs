//! GPU checks: every CUDA kernel against the CPU kernel of the same op on fresh random inputs
//! (odd sizes, f32 and bf16), relative L2 error against the dtype's tolerance. Run on a GPU
//! machine through `focus gpu-check`; compiled everywhere.

use super::device::GpuDevice;
use super::CudaError;
use crate::cpu;
use crate::tensor::{TensorMut, TensorRef};
use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg};
use focus_graph::{BinaryOp, CmpOp, Conv2dParams, DType, Op, RopeKind, UnaryOp};
use half::bf16;
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct CheckResult {
    pub name: String,
    pub rel_l2: f64,
    pub tol: f64,
    pub pass: bool,
    /// GPU kernel time (host-timed around launch + sync), microseconds.
    pub gpu_us: f64,
}

/// `int rank; u64 shape[8]; u64 sa[8]; u64 sb[8]` (binary.cu `Bcast`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Bcast {
    rank: i32,
    shape: [u64; 8],
    sa: [u64; 8],
    sb: [u64; 8],
}
// SAFETY: plain-old-data with the C layout the kernel declares.
unsafe impl DeviceRepr for Bcast {}

/// `int rank; u64 out_shape[8]; u64 in_stride[8]` (movement.cu `Strides`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Strides {
    rank: i32,
    out_shape: [u64; 8],
    in_stride: [u64; 8],
}
// SAFETY: as above.
unsafe impl DeviceRepr for Strides {}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        // SplitMix64 → [0, 1).
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    }
    fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| lo + (hi - lo) * self.next()).collect()
    }
}

fn encode(v: &[f32], dt: DType) -> Vec<u8> {
    match dt {
        DType::BF16 => v.iter().flat_map(|x| bf16::from_f32(*x).to_le_bytes()).collect(),
        _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

fn decode(b: &[u8], dt: DType) -> Vec<f32> {
    let shape = [b.len() / dt.size_in_bytes()];
    cpu::common::f32_in(&TensorRef::new(dt, &shape, b)).into_owned()
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() || a.iter().chain(b).any(|x| !x.is_finite()) {
        return f64::INFINITY;
    }
    let num: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    num.sqrt() / den.sqrt().max(1e-30)
}

fn tol(dt: DType) -> f64 {
    if dt == DType::BF16 {
        1e-2
    } else {
        1e-5
    }
}

/// CPU reference: run `op` on byte tensors.
fn cpu_ref(op: &Op, ins: &[(DType, Vec<usize>, Vec<u8>)], out_dt: DType, out_shape: &[usize]) -> Vec<u8> {
    let views: Vec<TensorRef> = ins.iter().map(|(d, s, b)| TensorRef::new(*d, s, b)).collect();
    let mut out = vec![0u8; out_shape.iter().product::<usize>() * out_dt.size_in_bytes()];
    cpu::run(op, &views, &mut TensorMut::new(out_dt, out_shape, &mut out)).expect("valid reference op");
    out
}

fn grid(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(256).clamp(1, 65535) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn rows(rows: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

fn suffix(dt: DType) -> &'static str {
    if dt == DType::BF16 {
        "bf16"
    } else {
        "f32"
    }
}

/// (batch, tq, tk, hq, hkv, head dim, causal, mask kind 0/1 bool/2 additive).
type AttnCase = (usize, usize, usize, usize, usize, usize, bool, u8);

type Launch<'a> =
    Box<dyn FnOnce(&GpuDevice, &mut CudaSlice<u8>, &[CudaSlice<u8>]) -> Result<(), CudaError> + 'a>;

/// Upload `ins`, launch, download, compare with `want`.
#[allow(clippy::too_many_arguments)]
fn run_case(
    dev: &GpuDevice,
    name: String,
    ins: &[Vec<u8>],
    out_bytes: usize,
    out_dt: DType,
    want: &[u8],
    tolerance: f64,
    launch: Launch,
) -> Result<CheckResult, CudaError> {
    let bufs: Vec<CudaSlice<u8>> = ins.iter().map(|b| dev.upload(b)).collect::<Result<_, _>>()?;
    // Poison the output so unwritten elements show.
    let mut out = dev.upload(&vec![0xFFu8; out_bytes.max(1)])?;
    dev.sync()?;
    let t = Instant::now();
    launch(dev, &mut out, &bufs)?;
    dev.sync()?;
    let gpu_us = t.elapsed().as_secs_f64() * 1e6;
    let got = dev.download(&out)?;
    let e = rel_l2(&decode(&got[..out_bytes], out_dt), &decode(want, out_dt));
    Ok(CheckResult { name, rel_l2: e, tol: tolerance, pass: e <= tolerance, gpu_us })
}

fn drv(e: cudarc::driver::DriverError) -> CudaError {
    CudaError::Driver(e.to_string())
}

/// Every check, in order.
pub fn run_all(dev: &GpuDevice, seed: u64) -> Result<Vec<CheckResult>, CudaError> {
    let mut r = Rng(seed);
    let mut out = Vec::new();
    for dt in [DType::F32, DType::BF16] {
        let s = suffix(dt);
        // Unary: every op on an odd length (positive inputs where the op needs them).
        let n = 100_003;
        for (code, u) in UnaryOp::ALL.iter().enumerate() {
            let positive = matches!(u, UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt | UnaryOp::Recip);
            let x = encode(&r.vec(n, if positive { 0.1 } else { -3.0 }, 3.0), dt);
            let want = cpu_ref(&Op::Unary(*u), &[(dt, vec![n], x.clone())], dt, &[n]);
            let f = dev.function("unary.cu", &format!("unary_{s}"))?;
            let launch: Launch = Box::new(move |dev, y, b| {
                let (n64, op) = (n as u64, code as i32);
                let mut l = dev.stream.launch_builder(&f);
                l.arg(&b[0]).arg(y).arg(&n64).arg(&op);
                // SAFETY: argument types match unary.cu's signature; buffers hold n elements.
                unsafe { l.launch(grid(n)) }.map(|_| ()).map_err(drv)
            });
            out.push(run_case(
                dev,
                format!("unary {} {dt}", u.name()),
                &[x],
                n * dt.size_in_bytes(),
                dt,
                &want,
                tol(dt),
                launch,
            )?);
        }
        // Binary with broadcasting: [37,1,65] op [1,19,65].
        let (sa, sb, so) = (vec![37, 1, 65], vec![1, 19, 65], vec![37usize, 19, 65]);
        let no: usize = so.iter().product();
        let mut bc = Bcast { rank: 3, shape: [1; 8], sa: [0; 8], sb: [0; 8] };
        let (ta, tb) = (cpu::common::broadcast_strides(&sa, &so), cpu::common::broadcast_strides(&sb, &so));
        for d in 0..3 {
            (bc.shape[d], bc.sa[d], bc.sb[d]) = (so[d] as u64, ta[d] as u64, tb[d] as u64);
        }
        for (code, op) in BinaryOp::ALL.iter().enumerate() {
            let lo = if *op == BinaryOp::Pow || *op == BinaryOp::Div { 0.5 } else { -2.0 };
            let a = encode(&r.vec(37 * 65, lo, 2.0), dt);
            let b = encode(&r.vec(19 * 65, lo, 2.0), dt);
            let want = cpu_ref(
                &Op::Binary(*op),
                &[(dt, sa.clone(), a.clone()), (dt, sb.clone(), b.clone())],
                dt,
                &so,
            );
            let f = dev.function("binary.cu", &format!("binary_{s}"))?;
            let launch: Launch = Box::new(move |dev, y, bufs| {
                let (n64, c) = (no as u64, code as i32);
                let mut l = dev.stream.launch_builder(&f);
                l.arg(&bufs[0]).arg(&bufs[1]).arg(y).arg(&n64).arg(&c).arg(&bc);
                // SAFETY: matches binary.cu; strides describe the uploaded shapes.
                unsafe { l.launch(grid(no)) }.map(|_| ()).map_err(drv)
            });
            out.push(run_case(
                dev,
                format!("binary {} bcast {dt}", op.name()),
                &[a, b],
                no * dt.size_in_bytes(),
                dt,
                &want,
                tol(dt),
                launch,
            )?);
        }
        for (code, op) in CmpOp::ALL.iter().enumerate() {
            let a = encode(&r.vec(37 * 65, -1.0, 1.0), dt);
            let b = encode(&r.vec(19 * 65, -1.0, 1.0), dt);
            let want = cpu_ref(
                &Op::Compare(*op),
                &[(dt, sa.clone(), a.clone()), (dt, sb.clone(), b.clone())],
                DType::Bool,
                &so,
            );
            let f = dev.function("binary.cu", &format!("compare_{s}"))?;
            let launch: Launch = Box::new(move |dev, y, bufs| {
                let (n64, c) = (no as u64, code as i32);
                let mut l = dev.stream.launch_builder(&f);
                l.arg(&bufs[0]).arg(&bufs[1]).arg(y).arg(&n64).arg(&c).arg(&bc);
                // SAFETY: as above; the output is one byte per element.
                unsafe { l.launch(grid(no)) }.map(|_| ()).map_err(drv)
            });
            out.push(run_case(
                dev,
                format!("compare {} bcast {dt}", op.name()),
                &[a, b],
                no,
                DType::Bool,
                &want,
                0.0,
                launch,
            )?);
        }
        // Norms: rows of odd width.
        let (nr, c) = (67usize, 999usize);
        let x = encode(&r.vec(nr * c, -2.0, 3.0), dt);
        let w = encode(&r.vec(c, 0.5, 1.5), dt);
        let bias = encode(&r.vec(c, -0.5, 0.5), dt);
        let want = cpu_ref(
            &Op::RmsNorm { eps: 1e-6 },
            &[(dt, vec![nr, c], x.clone()), (dt, vec![c], w.clone())],
            dt,
            &[nr, c],
        );
        let f = dev.function("norm.cu", &format!("rms_norm_{s}"))?;
        let launch: Launch = Box::new(move |dev, y, b| {
            let (ci, eps) = (c as i32, 1e-6f32);
            let mut l = dev.stream.launch_builder(&f);
            l.arg(&b[0]).arg(&b[1]).arg(y).arg(&ci).arg(&eps);
            // SAFETY: matches norm.cu rms_norm; one block per row.
            unsafe { l.launch(rows(nr)) }.map(|_| ()).map_err(drv)
        });
        out.push(run_case(
            dev,
            format!("rms_norm {dt}"),
            &[x.clone(), w.clone()],
            nr * c * dt.size_in_bytes(),
            dt,
            &want,
            tol(dt),
            launch,
        )?);
        let want = cpu_ref(
            &Op::LayerNorm { eps: 1e-5 },
            &[(dt, vec![nr, c], x.clone()), (dt, vec![c], w.clone()), (dt, vec![c], bias.clone())],
            dt,
            &[nr, c],
        );
        let f = dev.function("norm.cu", &format!("layer_norm_{s}"))?;
        let launch: Launch = Box::new(move |dev, y, b| {
            let (ci, eps) = (c as i32, 1e-5f32);
            let mut l = dev.stream.launch_builder(&f);
            l.arg(&b[0]).arg(&b[1]).arg(&b[2]).arg(y).arg(&ci).arg(&eps);
            // SAFETY: matches norm.cu layer_norm.
            unsafe { l.launch(rows(nr)) }.map(|_| ()).map_err(drv)
        });
        out.push(run_case(
            dev,
            format!("layer_norm {dt}"),
            &[x, w, bias],
            nr * c * dt.size_in_bytes(),
            dt,
            &want,
            tol(dt),
            launch,
        )?);
        // GroupNorm channels-last [2, 221, 64], 8 groups, with and without fused SiLU.
        let (gn_n, sp, ch, groups) = (2usize, 221usize, 64usize, 8usize);
        for silu in [0i32, 1] {
            let x = encode(&r.vec(gn_n * sp * ch, -2.0, 3.0), dt);
            let w = encode(&r.vec(ch, 0.5, 1.5), dt);
            let b = encode(&r.vec(ch, -0.5, 0.5), dt);
            let shape = vec![gn_n, sp, ch];
            let mut want = cpu_ref(
                &Op::GroupNorm { groups, eps: 1e-5 },
                &[(dt, shape.clone(), x.clone()), (dt, vec![ch], w.clone()), (dt, vec![ch], b.clone())],
                dt,
                &shape,
            );
            if silu == 1 {
                want = cpu_ref(&Op::Unary(UnaryOp::Silu), &[(dt, shape.clone(), want)], dt, &shape);
            }
            let f = dev.function("norm.cu", &format!("group_norm_{s}"))?;
            let launch: Launch = Box::new(move |dev, y, bufs| {
                let (spi, chi, gi, eps) = (sp as i32, ch as i32, groups as i32, 1e-5f32);
                let mut l = dev.stream.launch_builder(&f);
                l.arg(&bufs[0])
                    .arg(&bufs[1])
                    .arg(&bufs[2])
                    .arg(y)
                    .arg(&spi)
                    .arg(&chi)
                    .arg(&gi)
                    .arg(&eps)
                    .arg(&silu);
                let cfg = LaunchConfig {
                    grid_dim: (groups as u32, gn_n as u32, 1),
                    block_dim: (256, 1, 1),
                    shared_mem_bytes: 0,
                };
                // SAFETY: matches norm.cu group_norm; grid (groups, batch).
                unsafe { l.launch(cfg) }.map(|_| ()).map_err(drv)
            });
            let bytes = gn_n * sp * ch * dt.size_in_bytes();
            out.push(run_case(
                dev,
                format!("group_norm silu={silu} {dt}"),
                &[x, w, b],
                bytes,
                dt,
                &want,
                tol(dt),
                launch,
            )?);
        }
        // Softmax over the last axis and over a middle axis.
        let (sr, sl) = (130usize, 777usize);
        let x = encode(&r.vec(sr * sl, -8.0, 8.0), dt);
        let want = cpu_ref(&Op::Softmax { axis: 1 }, &[(dt, vec![sr, sl], x.clone())], dt, &[sr, sl]);
        let f = dev.function("softmax.cu", &format!("softmax_rows_{s}"))?;
        let launch: Launch = Box::new(move |dev, y, b| {
            let len = sl as i32;
            let mut l = dev.stream.launch_builder(&f);
            l.arg(&b[0]).arg(y).arg(&len);
            // SAFETY: matches softmax.cu softmax_rows.
            unsafe { l.launch(rows(sr)) }.map(|_| ()).map_err(drv)
        });
        out.push(run_case(
            dev,
            format!("softmax rows {dt}"),
            &[x],
            sr * sl * dt.size_in_bytes(),
            dt,
            &want,
            tol(dt),
            launch,
        )?);
        let (o, len, inner) = (5usize, 33usize, 7usize);
        let x = encode(&r.vec(o * len * inner, -8.0, 8.0), dt);
        let want =
            cpu_ref(&Op::Softmax { axis: 1 }, &[(dt, vec![o, len, inner], x.clone())], dt, &[o, len, inner]);
        let f = dev.function("softmax.cu", &format!("softmax_cols_{s}"))?;
        let launch: Launch = Box::new(move |dev, y, b| {
            let (o64, l32, i64_) = (o as u64, len as i32, inner as u64);
            let mut l = dev.stream.launch_builder(&f);
            l.arg(&b[0]).arg(y).arg(&o64).arg(&l32).arg(&i64_);
            // SAFETY: matches softmax.cu softmax_cols.
            unsafe { l.launch(grid(o * inner)) }.map(|_| ()).map_err(drv)
        });
        out.push(run_case(
            dev,
            format!("softmax axis 1 {dt}"),
            &[x],
            o * len * inner * dt.size_in_bytes(),
            dt,
            &want,
            tol(dt),
            launch,
        )?);
        // RoPE 1-D (large positions) and 2-D.
        for (kind, t, h, d) in [(RopeKind::OneD, 37usize, 4usize, 64usize), (RopeKind::TwoD, 24, 2, 80)] {
            let x = encode(&r.vec(t * h * d, -2.0, 2.0), dt);
            let (pos, pshape): (Vec<i32>, Vec<usize>) = match kind {
                RopeKind::OneD => ((0..t).map(|_| (r.next() * 30000.0) as i32).collect(), vec![t]),
                RopeKind::TwoD => ((0..2 * t).map(|_| (r.next() * 40.0) as i32).collect(), vec![t, 2]),
            };
            let pb: Vec<u8> = pos.iter().flat_map(|p| p.to_le_bytes()).collect();
            let theta = if kind == RopeKind::OneD { 1e6 } else { 1e4 };
            let shape = vec![1, t, h, d];
            let want = cpu_ref(
                &Op::Rope { kind, theta },
                &[(dt, shape.clone(), x.clone()), (DType::I32, pshape, pb.clone())],
                dt,
                &shape,
            );
            let table = cpu::rope::inv_freq(theta, if kind == RopeKind::OneD { d } else { d / 2 });
            let fb: Vec<u8> = table.iter().flat_map(|v| v.to_le_bytes()).collect();
            let f = dev.function("rope.cu", &format!("rope_i32_{s}"))?;
            let two = (kind == RopeKind::TwoD) as i32;
            let launch: Launch = Box::new(move |dev, y, b| {
                let (rows64, hi, ti, di) = ((t * h) as u64, h as i32, t as i32, d as i32);
                let mut l = dev.stream.launch_builder(&f);
                l.arg(&b[0]).arg(&b[1]).arg(&b[2]).arg(y).arg(&rows64).arg(&hi).arg(&ti).arg(&di).arg(&two);
                // SAFETY: matches rope.cu; the table has the CPU kernel's frequencies.
                unsafe { l.launch(grid(t * h * d / 2)) }.map(|_| ()).map_err(drv)
            });
            out.push(run_case(
                dev,
                format!("rope {kind:?} {dt}"),
                &[x, pb, fb],
                t * h * d * dt.size_in_bytes(),
                dt,
                &want,
                tol(dt),
                launch,
            )?);
        }
        // Depthwise 7×7 conv, channels-last, odd spatial size.
        let (hh, ww, cc) = (23usize, 19usize, 48usize);
        let x = encode(&r.vec(hh * ww * cc, -1.0, 1.0), dt);
        let w = encode(&r.vec(cc * 49, -0.3, 0.3), dt);
        let b = encode(&r.vec(cc, -0.2, 0.2), dt);
        let p = Conv2dParams { padding: [3, 3], groups: cc, ..Default::default() };
        let want = cpu_ref(
            &Op::Conv2d(p),
            &[
                (dt, vec![1, hh, ww, cc], x.clone()),
                (dt, vec![cc, 7, 7, 1], w.clone()),
                (dt, vec![cc], b.clone()),
            ],
            dt,
            &[1, hh, ww, cc],
        );
        let f = dev.function("conv_dw.cu", &format!("dwconv_{s}"))?;
        let launch: Launch = Box::new(move |dev, y, bufs| {
            let z = 0u64; // no residual
            let a: [i32; 15] =
                [1, hh as i32, ww as i32, cc as i32, 7, 7, 1, 1, 3, 3, 1, 1, hh as i32, ww as i32, 0];
            let mut l = dev.stream.launch_builder(&f);
            l.arg(&bufs[0]).arg(&bufs[1]).arg(&bufs[2]).arg(&z).arg(y);
            for v in &a[..14] {
                l.arg(v);
            }
            // SAFETY: matches conv_dw.cu (n, h, w, c, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo).
            unsafe { l.launch(grid(hh * ww * cc)) }.map(|_| ()).map_err(drv)
        });
        out.push(run_case(
            dev,
            format!("dwconv 7x7 {dt}"),
            &[x, w, b],
            hh * ww * cc * dt.size_in_bytes(),
            dt,
            &want,
            tol(dt),
            launch,
        )?);
        // Attention: GQA, odd lengths, causal, bool and additive masks, ViT and decode shapes.
        let cases: [AttnCase; 6] = [
            (2, 77, 130, 6, 2, 64, false, 0),
            (2, 77, 130, 6, 2, 64, true, 0),
            (2, 77, 130, 6, 2, 64, false, 1),
            (1, 77, 130, 4, 4, 64, true, 2),
            (1, 50, 50, 16, 16, 80, false, 0),
            (1, 1, 300, 16, 2, 128, true, 0),
        ];
        for (bn, tq, tk, hq, hkv, d, causal, kind) in cases {
            let q = encode(&r.vec(bn * tq * hq * d, -1.0, 1.0), dt);
            let k = encode(&r.vec(bn * tk * hkv * d, -1.0, 1.0), dt);
            let v = encode(&r.vec(bn * tk * hkv * d, -1.0, 1.0), dt);
            let scale = 1.0 / (d as f32).sqrt();
            let mut ins = vec![
                (dt, vec![bn, tq, hq, d], q.clone()),
                (dt, vec![bn, tk, hkv, d], k.clone()),
                (dt, vec![bn, tk, hkv, d], v.clone()),
            ];
            // Mask tensor and its element strides over (b, h, q, k).
            let (mask, strides): (Vec<u8>, [u64; 4]) = match kind {
                1 => {
                    let m: Vec<u8> = (0..bn * tk).map(|_| (r.next() < 0.8) as u8).collect();
                    ins.push((DType::Bool, vec![bn, 1, 1, tk], m.clone()));
                    (m, [tk as u64, 0, 0, 1])
                }
                2 => {
                    let m: Vec<f32> = (0..tq * tk)
                        .map(|_| if r.next() < 0.1 { f32::NEG_INFINITY } else { r.next() - 0.5 })
                        .collect();
                    let b = encode(&m, DType::F32);
                    ins.push((DType::F32, vec![1, 1, tq, tk], b.clone()));
                    (b, [0, 0, tk as u64, 1])
                }
                _ => (vec![0u8; 4], [0; 4]),
            };
            let want = cpu_ref(&Op::Attention { causal, scale }, &ins, dt, &[bn, tq, hq, d]);
            let f = dev.function("attention.cu", &format!("attention_{s}"))?;
            let launch: Launch = Box::new(move |dev, y, b| {
                let ints = [tq as i32, tk as i32, hq as i32, hkv as i32, d as i32, d as i32];
                let (c, mk) = (causal as i32, kind as i32);
                let mut l = dev.stream.launch_builder(&f);
                l.arg(&b[0]).arg(&b[1]).arg(&b[2]).arg(&b[3]).arg(y);
                for x in &ints {
                    l.arg(x);
                }
                l.arg(&scale).arg(&c).arg(&mk);
                for x in &strides {
                    l.arg(x);
                }
                let cfg = LaunchConfig {
                    grid_dim: (tq.div_ceil(4) as u32, hq as u32, bn as u32),
                    block_dim: (128, 1, 1),
                    shared_mem_bytes: (32 * 2 * d * 4) as u32,
                };
                // SAFETY: matches attention.cu; smem holds one K and one V tile of 32 keys.
                unsafe { l.launch(cfg) }.map(|_| ()).map_err(drv)
            });
            let name =
                format!("attention b{bn} q{tq} k{tk} h{hq}/{hkv} d{d} causal={causal} mask={kind} {dt}");
            out.push(run_case(
                dev,
                name,
                &[q, k, v, mask],
                bn * tq * hq * d * dt.size_in_bytes(),
                dt,
                &want,
                tol(dt),
                launch,
            )?);
        }
    }
    // VQ lookup (f32 distances), exact indices.
    let (nq, k, d) = (100usize, 4096usize, 32usize);
    let x = encode(&r.vec(nq * d, -1.0, 1.0), DType::F32);
    let cb = encode(&r.vec(k * d, -1.0, 1.0), DType::F32);
    let want = cpu_ref(
        &Op::VqNearest,
        &[(DType::F32, vec![nq, d], x.clone()), (DType::F32, vec![k, d], cb.clone())],
        DType::I64,
        &[nq],
    );
    let f = dev.function("vq.cu", "vq_nearest_f32")?;
    let launch: Launch = Box::new(move |dev, y, b| {
        let (ki, di) = (k as i32, d as i32);
        let mut l = dev.stream.launch_builder(&f);
        l.arg(&b[0]).arg(&b[1]).arg(y).arg(&ki).arg(&di);
        // SAFETY: matches vq.cu; one block per query row.
        unsafe { l.launch(rows(nq)) }.map(|_| ()).map_err(drv)
    });
    out.push(run_case(
        dev,
        "vq_nearest 100x4096x32 (exact)".into(),
        &[x, cb],
        nq * 8,
        DType::I64,
        &want,
        0.0,
        launch,
    )?);
    // Permute [7,11,13] -> perm [2,0,1] through the strided gather (4-byte elements).
    let src = [7usize, 11, 13];
    let x = encode(&r.vec(7 * 11 * 13, -1.0, 1.0), DType::F32);
    let want = cpu_ref(
        &Op::Permute { perm: vec![2, 0, 1] },
        &[(DType::F32, src.to_vec(), x.clone())],
        DType::F32,
        &[13, 7, 11],
    );
    let mut st = Strides { rank: 3, out_shape: [1; 8], in_stride: [0; 8] };
    (st.out_shape[..3]).copy_from_slice(&[13, 7, 11]);
    (st.in_stride[..3]).copy_from_slice(&[1, 143, 13]);
    let f = dev.function("movement.cu", "gather_strided_b4")?;
    let launch: Launch = Box::new(move |dev, y, b| {
        let (n, off) = (1001u64, 0u64);
        let mut l = dev.stream.launch_builder(&f);
        l.arg(&b[0]).arg(y).arg(&n).arg(&st).arg(&off);
        // SAFETY: matches movement.cu gather_strided; strides stay inside the input.
        unsafe { l.launch(grid(1001)) }.map(|_| ()).map_err(drv)
    });
    out.push(run_case(
        dev,
        "permute [7,11,13]->(2,0,1)".into(),
        &[x],
        1001 * 4,
        DType::F32,
        &want,
        0.0,
        launch,
    )?);
    Ok(out)
}
