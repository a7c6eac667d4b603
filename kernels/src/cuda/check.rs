//! Backend parity, as ggml's test-backend-ops does it: every case of `ops::cases()` runs on the
//! GPU through `ops::plan` (the executor's path) and on the CPU kernels, on the same fresh
//! random inputs, and the outputs are compared (relative L2 for floats, exact for integers).
//! Outputs are poisoned before the launch so unwritten elements show. `focus gpu-check` runs
//! it on a GPU; the tests below check without one that every case is well-formed and plans
//! into launches whose arguments match the kernels' declared parameters.

use super::case::{default_tol, draw, Case, Input, Rng};
use super::device::GpuDevice;
use super::fused::{self, FusedGroup, Operand};
use super::launch::{Call, DevTensor, Scratch};
use super::{ops, CudaError};
use crate::cpu;
use crate::tensor::{TensorMut, TensorRef};
use focus_graph::infer::{infer, In};
use focus_graph::{DType, Op};
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct CheckResult {
    pub name: String,
    /// Relative L2 error (floats) or the fraction of differing elements (integers).
    pub error: f64,
    pub tol: f64,
    pub pass: bool,
    /// Host-timed second run (launches + sync), microseconds.
    pub gpu_us: f64,
    /// Why the case did not run or failed beyond the numbers.
    pub note: String,
}

/// A case with its inputs drawn and the CPU reference computed.
pub struct Prepared {
    pub inputs: Vec<Vec<u8>>,
    pub out_dtype: DType,
    pub out_shape: Vec<usize>,
    pub want: Vec<u8>,
    /// Chained cases: the first op's output (checked too where the fused plan writes it).
    pub mid: Option<Mid>,
}

/// The first op's reference output in a chained case.
pub struct Mid {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub want: Vec<u8>,
}

/// Whether the op writes its result into its first input (the case's output buffer starts as a
/// copy of input 0 and input 0's descriptor points at it).
pub fn in_place(op: &Op) -> bool {
    matches!(op, Op::WriteSlice { .. })
}

/// The case input that the output buffer starts as a copy of and whose descriptor points at it:
/// input 0 of an in-place op, or for a chain whose second op is in place, that op's first input
/// (the first extra one).
pub fn in_place_input(case: &Case) -> Option<usize> {
    match &case.then {
        None => in_place(&case.op).then_some(0),
        Some((second, n, mid_at)) => (in_place(second) && *mid_at != 0).then_some(*n),
    }
}

/// `op` on the CPU: output shape, dtype and bytes (`init`, if given, is the output's start).
fn cpu_run(op: &Op, ins: &[TensorRef], init: Option<&[u8]>) -> Result<(Vec<usize>, DType, Vec<u8>), String> {
    let specs: Vec<In> = ins.iter().map(|t| In { shape: t.shape, dtype: t.dtype }).collect();
    let (shape, dtype) = infer(op, &specs)?;
    let mut out = match init {
        Some(b) => b.to_vec(),
        None => vec![0u8; shape.iter().product::<usize>() * dtype.size_in_bytes()],
    };
    cpu::run(op, ins, &mut TensorMut::new(dtype, &shape, &mut out)).map_err(|e| e.to_string())?;
    Ok((shape, dtype, out))
}

/// Draw inputs and run the CPU reference (both ops, one after the other, for a chained case).
pub fn reference(case: &Case, seed: u64) -> Result<Prepared, String> {
    let mut rng = Rng(seed);
    let inputs: Vec<Vec<u8>> = case.inputs.iter().map(|i| draw(i, &mut rng)).collect();
    let views: Vec<TensorRef> =
        case.inputs.iter().zip(&inputs).map(|(i, b)| TensorRef::new(i.dtype, &i.shape, b)).collect();
    let n = case.first_arity();
    let init = (case.then.is_none() && in_place(&case.op)).then(|| inputs[0].as_slice());
    let (shape, dtype, want) = cpu_run(&case.op, &views[..n], init)?;
    let Some((second, _, mid_at)) = &case.then else {
        return Ok(Prepared { inputs, out_dtype: dtype, out_shape: shape, want, mid: None });
    };
    let mut ins2 = views[n..].to_vec();
    ins2.insert(*mid_at, TensorRef::new(dtype, &shape, &want));
    let init2 = in_place_input(case).map(|k| inputs[k].as_slice());
    let (out_shape, out_dtype, want2) = cpu_run(second, &ins2, init2)?;
    let mid = Some(Mid { dtype, shape: shape.clone(), want });
    Ok(Prepared { inputs, out_dtype, out_shape, want: want2, mid })
}

/// A case's calls on device buffers (`descs`: all its inputs; `mid`: the first op's output in a
/// chained case) and whether they write `mid`.
pub fn plan_case(
    case: &Case,
    descs: &[DevTensor],
    mid: Option<&DevTensor>,
    out: &DevTensor,
    scratch: Scratch,
) -> Result<(Vec<Call>, bool), CudaError> {
    match (&case.then, mid) {
        (Some((second, n, _)), Some(mid)) => {
            ops::plan_chain(&case.op, second, &descs[..*n], &descs[*n..], mid, out, scratch)
        }
        (None, None) => Ok((ops::plan(&case.op, descs, out, scratch)?, false)),
        _ => Err(CudaError::Driver(format!("{}: a chained case needs its middle buffer", case.name))),
    }
}

/// Scratch bytes `plan_case` needs.
pub fn case_scratch(case: &Case, descs: &[DevTensor], mid: Option<&DevTensor>, out: &DevTensor) -> usize {
    match (&case.then, mid) {
        (Some((second, n, mid_at)), Some(mid)) => {
            ops::chain_scratch_bytes((&case.op, second, *mid_at), &descs[..*n], &descs[*n..], mid, out)
        }
        _ => ops::scratch_bytes(&case.op, descs, out),
    }
}

/// Relative L2 error for floats, fraction of differing elements otherwise; NaN/inf anywhere
/// in `got` where `want` is finite counts as infinite error.
pub fn compare(got: &[u8], want: &[u8], dt: DType, shape: &[usize]) -> f64 {
    if !dt.is_float() {
        let es = dt.size_in_bytes();
        let n = want.len() / es.max(1);
        let bad = got.chunks(es).zip(want.chunks(es)).filter(|(a, b)| a != b).count();
        return if n == 0 { 0.0 } else { bad as f64 / n as f64 };
    }
    let f = |b: &[u8]| cpu::common::f32_in(&TensorRef::new(dt, shape, b)).into_owned();
    let (g, w) = (f(got), f(want));
    let (mut num, mut den) = (0f64, 0f64);
    for (a, b) in g.iter().zip(&w) {
        if b.is_nan() && a.is_nan() {
            continue;
        }
        if !a.is_finite() && a != b {
            return f64::INFINITY;
        }
        num += (*a as f64 - *b as f64).powi(2);
        den += (*b as f64).powi(2);
    }
    if num == 0.0 {
        0.0
    } else {
        num.sqrt() / den.sqrt().max(1e-30)
    }
}

fn run_one(dev: &GpuDevice, case: &Case, seed: u64) -> Result<CheckResult, CudaError> {
    let p = reference(case, seed).map_err(|e| CudaError::Driver(format!("reference: {e}")))?;
    let bufs = p.inputs.iter().map(|b| dev.upload(b)).collect::<Result<Vec<_>, _>>()?;
    let out_bytes = p.want.len();
    let aliased = in_place_input(case);
    let out = dev.upload(&match aliased {
        Some(k) => p.inputs[k].clone(),
        None => vec![0xFF; out_bytes.max(1)],
    })?;
    let mid = p.mid.as_ref().map(|m| dev.upload(&vec![0xFF; m.want.len().max(1)])).transpose()?;
    let descs: Vec<DevTensor> = case
        .inputs
        .iter()
        .zip(&bufs)
        .enumerate()
        .map(|(k, (i, b))| DevTensor {
            dtype: i.dtype,
            shape: &i.shape,
            ptr: if Some(k) == aliased { dev.ptr(&out) } else { dev.ptr(b) },
        })
        .collect();
    let out_desc = DevTensor { dtype: p.out_dtype, shape: &p.out_shape, ptr: dev.ptr(&out) };
    let mid_desc = p.mid.as_ref().zip(mid.as_ref()).map(|(m, b)| DevTensor {
        dtype: m.dtype,
        shape: &m.shape,
        ptr: dev.ptr(b),
    });
    let scratch_len = case_scratch(case, &descs, mid_desc.as_ref(), &out_desc);
    let scratch = dev.zeros(scratch_len + 256)?;
    let base = dev.ptr(&scratch);
    let s = Scratch { ptr: base + 256, bytes: scratch_len, flag: base };
    let (calls, writes_mid) = plan_case(case, &descs, mid_desc.as_ref(), &out_desc, s)?;
    let prepared = dev.prepare(&calls)?;
    dev.launch(&prepared)?;
    dev.sync()?;
    let got = dev.download(&out)?;
    let mut error = compare(&got[..out_bytes], &p.want, p.out_dtype, &p.out_shape);
    if let (true, Some(m), Some(b)) = (writes_mid, &p.mid, &mid) {
        let got = dev.download(b)?;
        error = error.max(compare(&got[..m.want.len()], &m.want, m.dtype, &m.shape));
    }
    let mut flag = [0u8; 4];
    // SAFETY: the first 4 bytes of `scratch` are the flag.
    unsafe { dev.read(base, &mut flag)? };
    let t = Instant::now();
    dev.launch(&prepared)?;
    dev.sync()?;
    let gpu_us = t.elapsed().as_secs_f64() * 1e6;
    let tol = case.tol.unwrap_or_else(|| default_tol(p.out_dtype));
    let flagged = i32::from_le_bytes(flag) != 0;
    Ok(CheckResult {
        name: case.name.clone(),
        error,
        tol,
        pass: error <= tol && !flagged,
        gpu_us,
        note: if flagged { "kernel raised its index-error flag".into() } else { String::new() },
    })
}

/// Run every case; a case that cannot run is a failed result with the reason, not an abort.
pub fn run_cases(dev: &GpuDevice, cases: &[Case], seed: u64) -> Vec<CheckResult> {
    cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            run_one(dev, c, seed.wrapping_add(i as u64)).unwrap_or_else(|e| CheckResult {
                name: c.name.clone(),
                error: f64::INFINITY,
                tol: 0.0,
                pass: false,
                gpu_us: 0.0,
                note: e.to_string(),
            })
        })
        .collect()
}

/// CPU reference of a fused group: its ops one by one with the CPU kernels (each intermediate
/// rounded to its dtype, as unfused execution does).
pub fn fused_reference(g: &FusedGroup, inputs: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    let mut values: Vec<Vec<u8>> = Vec::new();
    for f in &g.ops {
        let shapes: Vec<Vec<usize>> = f
            .args
            .iter()
            .map(|a| match a {
                Operand::Input(i) => g.inputs[*i].1.clone(),
                Operand::Value(_) => g.shape.clone(),
            })
            .collect();
        let views: Vec<TensorRef> = f
            .args
            .iter()
            .zip(&shapes)
            .map(|(a, s)| match a {
                Operand::Input(i) => TensorRef::new(g.inputs[*i].0, s, &inputs[*i]),
                Operand::Value(j) => TensorRef::new(g.ops[*j].dtype, s, &values[*j]),
            })
            .collect();
        let mut out = vec![0u8; g.shape.iter().product::<usize>() * f.dtype.size_in_bytes()];
        cpu::run(&f.op, &views, &mut TensorMut::new(f.dtype, &g.shape, &mut out))
            .map_err(|e| e.to_string())?;
        values.push(out);
    }
    values.pop().ok_or_else(|| "empty group".to_string())
}

fn run_fused_one(
    dev: &GpuDevice,
    name: &str,
    g: &FusedGroup,
    inputs: &[Input],
    seed: u64,
) -> Result<CheckResult, CudaError> {
    let mut rng = Rng(seed);
    let data: Vec<Vec<u8>> = inputs.iter().map(|i| draw(i, &mut rng)).collect();
    let want = fused_reference(g, &data).map_err(CudaError::Driver)?;
    let out_dt = g.ops.last().expect("non-empty").dtype;
    let (entry, src) = g.source()?;
    dev.add_generated(&entry, &src)?;
    let bufs = data.iter().map(|b| dev.upload(b)).collect::<Result<Vec<_>, _>>()?;
    let out = dev.upload(&vec![0xFF; want.len().max(1)])?;
    let descs: Vec<DevTensor> = inputs
        .iter()
        .zip(&bufs)
        .map(|(i, b)| DevTensor { dtype: i.dtype, shape: &i.shape, ptr: dev.ptr(b) })
        .collect();
    let od = DevTensor { dtype: out_dt, shape: &g.shape, ptr: dev.ptr(&out) };
    let p = dev.prepare(&[g.plan(&entry, &descs, &od)?])?;
    let t = Instant::now();
    dev.launch(&p)?;
    dev.sync()?;
    let gpu_us = t.elapsed().as_secs_f64() * 1e6;
    let got = dev.download(&out)?;
    let error = compare(&got[..want.len()], &want, out_dt, &g.shape);
    let tol = default_tol(out_dt);
    Ok(CheckResult { name: name.into(), error, tol, pass: error <= tol, gpu_us, note: String::new() })
}

/// Every generated-kernel case of `fused::cases()`.
pub fn run_fused(dev: &GpuDevice, seed: u64) -> Vec<CheckResult> {
    fused::cases()
        .iter()
        .enumerate()
        .map(|(k, (name, g, ins))| {
            run_fused_one(dev, name, g, ins, seed.wrapping_add(k as u64)).unwrap_or_else(|e| CheckResult {
                name: name.clone(),
                error: f64::INFINITY,
                tol: 0.0,
                pass: false,
                gpu_us: 0.0,
                note: e.to_string(),
            })
        })
        .collect()
}

/// Plan a case against fake, disjoint device addresses (no GPU needed).
pub fn plan_offline(case: &Case) -> Result<Vec<Call>, String> {
    let ins: Vec<(DType, &[usize])> = case.inputs.iter().map(|i| (i.dtype, i.shape.as_slice())).collect();
    let Some((second, n, mid_at)) = &case.then else { return plan_op_offline(&case.op, &ins) };
    let descs = fake_descs(&ins);
    let specs: Vec<In> = ins[..*n].iter().map(|(dtype, shape)| In { shape, dtype: *dtype }).collect();
    let (mid_shape, mid_dtype) = infer(&case.op, &specs)?;
    let mut specs2: Vec<In> = ins[*n..].iter().map(|(dtype, shape)| In { shape, dtype: *dtype }).collect();
    specs2.insert(*mid_at, In { shape: &mid_shape, dtype: mid_dtype });
    let (out_shape, out_dtype) = infer(second, &specs2)?;
    let mid = DevTensor { dtype: mid_dtype, shape: &mid_shape, ptr: 63 << 32 };
    let out = DevTensor { dtype: out_dtype, shape: &out_shape, ptr: 64 << 32 };
    let s = Scratch { ptr: 65 << 32, bytes: case_scratch(case, &descs, Some(&mid), &out), flag: 66 << 32 };
    plan_case(case, &descs, Some(&mid), &out, s).map(|(calls, _)| calls).map_err(|e| e.to_string())
}

/// Device views of inputs at fake, disjoint, aligned addresses.
fn fake_descs<'a>(inputs: &[(DType, &'a [usize])]) -> Vec<DevTensor<'a>> {
    inputs
        .iter()
        .enumerate()
        .map(|(k, (dtype, shape))| DevTensor { dtype: *dtype, shape, ptr: (k as u64 + 1) << 32 })
        .collect()
}

/// Plan `op` on inputs of these dtypes and shapes against fake, disjoint device addresses.
pub fn plan_op_offline(op: &Op, inputs: &[(DType, &[usize])]) -> Result<Vec<Call>, String> {
    let ins: Vec<In> = inputs.iter().map(|(dtype, shape)| In { shape, dtype: *dtype }).collect();
    let (out_shape, out_dtype) = infer(op, &ins)?;
    let descs = fake_descs(inputs);
    let out = DevTensor { dtype: out_dtype, shape: &out_shape, ptr: 64 << 32 };
    let s = Scratch { ptr: 65 << 32, bytes: ops::scratch_bytes(op, &descs, &out), flag: 66 << 32 };
    ops::plan(op, &descs, &out, s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::launch::Arg;
    use super::super::sources::{entry_signatures, ParamKind, SOURCES};
    use super::*;
    use std::collections::HashMap;

    fn signatures() -> HashMap<(String, String), Vec<ParamKind>> {
        let mut m = HashMap::new();
        for (file, src) in SOURCES {
            for (name, sig) in entry_signatures(src) {
                m.insert((file.to_string(), name), sig);
            }
        }
        m
    }

    #[test]
    fn every_case_plans_into_calls_matching_kernel_signatures() {
        let sigs = signatures();
        let mut problems = Vec::new();
        let cases = ops::cases();
        assert!(cases.len() > 250, "{} cases", cases.len());
        for case in &cases {
            let calls = match plan_offline(case) {
                Ok(c) => c,
                Err(e) => {
                    problems.push(format!("{}: {e}", case.name));
                    continue;
                }
            };
            for call in calls {
                let Call::Kernel(k) = call else { continue };
                let Some(sig) = sigs.get(&(k.file.to_string(), k.entry.clone())) else {
                    problems.push(format!("{}: no kernel {} in {}", case.name, k.entry, k.file));
                    continue;
                };
                let kinds: Vec<ParamKind> = k
                    .args
                    .iter()
                    .map(|a| match a {
                        Arg::Ptr(_) | Arg::Const(_) => ParamKind::Ptr,
                        Arg::I32(_) => ParamKind::Int,
                        Arg::U64(_) => ParamKind::U64,
                        Arg::F32(_) => ParamKind::Float,
                        Arg::Bytes(_) => ParamKind::Other,
                    })
                    .collect();
                if &kinds != sig {
                    problems.push(format!("{}: {} takes {sig:?}, planned {kinds:?}", case.name, k.entry));
                }
            }
        }
        assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
    }

    #[test]
    fn every_case_has_a_cpu_reference() {
        let mut problems = Vec::new();
        for (i, case) in ops::cases().iter().enumerate() {
            match reference(case, i as u64) {
                Ok(p)
                    if p.want.len()
                        != p.out_shape.iter().product::<usize>() * p.out_dtype.size_in_bytes() =>
                {
                    problems.push(format!("{}: reference size", case.name))
                }
                Ok(_) => {}
                Err(e) => problems.push(format!("{}: {e}", case.name)),
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn fused_cases_generate_and_have_cpu_references() {
        for (k, (name, g, ins)) in fused::cases().iter().enumerate() {
            g.source().unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut rng = Rng(k as u64);
            let data: Vec<Vec<u8>> = ins.iter().map(|i| draw(i, &mut rng)).collect();
            let want = fused_reference(g, &data).unwrap_or_else(|e| panic!("{name}: {e}"));
            let dt = g.ops.last().unwrap().dtype;
            assert_eq!(want.len(), g.shape.iter().product::<usize>() * dt.size_in_bytes(), "{name}");
        }
    }

    #[test]
    fn compare_is_exact_for_integers_and_relative_for_floats() {
        let a: Vec<u8> = [1i64, 2, 3].iter().flat_map(|v| v.to_le_bytes()).collect();
        let b: Vec<u8> = [1i64, 2, 4].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(compare(&a, &a, DType::I64, &[3]), 0.0);
        assert!((compare(&a, &b, DType::I64, &[3]) - 1.0 / 3.0).abs() < 1e-12);
        let x: Vec<u8> = [3.0f32, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let y: Vec<u8> = [3.0f32, 4.5].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert!((compare(&y, &x, DType::F32, &[2]) - 0.1).abs() < 1e-6);
        // Poison (0xFF.. is NaN) left in the output is an infinite error.
        assert_eq!(compare(&[0xFF; 8], &x, DType::F32, &[2]), f64::INFINITY);
    }
}
