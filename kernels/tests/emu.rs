//! Every CUDA parity case run on the CPU by the emulator of `tools/cuda-emu`, without a GPU.
//!
//! The real kernel sources (`sources::SOURCES`, the text NVRTC compiles, and each generated fusion
//! kernel) are compiled by the host C++ compiler against stub CUDA headers, after two rewrites
//! below (`extern __shared__` arrays and inline PTX `asm`). Each case then runs exactly as
//! `focus gpu-check` runs it: inputs drawn with the same seed, the CPU reference, host buffers
//! standing in for device memory (allocated in the emulator process, so the `DevTensor.ptr` given
//! to `ops::plan` / `FusedGroup::plan` are the real addresses the kernels dereference), outputs
//! poisoned, every planned `Call` executed — kernels with their planned grid, block, dynamic
//! shared memory and argument bytes, GEMMs by a host GEMM of `GemmCall`'s documented semantics,
//! memsets and copies — and the result compared with `check::compare` at the case's tolerance.
//!
//! `#[ignore]`d so `cargo test --workspace` stays quick: the first build of the emulator takes a
//! minute or two (it is cached under target/tmp/cuda-emu). `tools/test.sh` runs it:
//! `cargo test -p focus-kernels --test emu -- --ignored --nocapture`. Without a C++ compiler (g++,
//! clang++ or $CXX) it prints `skipped: no C++ compiler` and passes. Every case runs twice, under
//! the emulator's default and adversarial schedules (tools/cuda-emu/README.md; the adversarial
//! run also expands GEMM bias epilogues into the cuBLAS fallback). Environment:
//! EMU_FILTER (substring of case names), EMU_SEED (default 1, as gpu-check), EMU_JOBS (cases in
//! parallel), EMU_CXXFLAGS (extra compiler flags), EMU_TIMEOUT (seconds per emulator process).

mod emu_support;
use emu_support::{build, find_compiler, rewrite, Emu, Io};

use focus_kernels::cuda::case::{default_tol, draw, Case, Input, Rng};
use focus_kernels::cuda::check::{
    case_scratch, compare, fused_reference, in_place_input, plan_case, reference, Mid, Prepared,
};
use focus_kernels::cuda::fused::{self, FusedGroup};
use focus_kernels::cuda::launch::{Call, DevTensor, Scratch};
use focus_kernels::cuda::ops;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

// ---------------------------------------------------------------------------------------------
// Cases.

/// What one run of a case produced: the output bytes, whether the index-error flag was raised,
/// and the emulator's warnings.
struct Run {
    got: Vec<u8>,
    /// A chained case's first output, where the fused plan writes it.
    mid: Option<Vec<u8>>,
    flagged: bool,
    warnings: String,
}

/// An op case exactly as check.rs `run_one` runs it on a GPU: buffers for the inputs, the
/// (poisoned, or for in-place ops pre-filled) output and zeroed scratch with the flag first.
fn run_op(bin: &Path, case: &Case, p: &Prepared, adversarial: bool) -> Result<Run, String> {
    let mut emu = Emu::spawn(bin, adversarial).map_err(|e| e.to_string())?;
    let (mut got, mut flag, mut mid) = (Vec::new(), Vec::new(), None);
    let mut plan_error = None;
    let io = (|| -> Io<()> {
        let mut lens: Vec<usize> = p.inputs.iter().map(Vec::len).collect();
        lens.push(p.want.len());
        lens.extend(p.mid.as_ref().map(|m| m.want.len()));
        let idx = emu.alloc(&lens)?;
        let out = idx[p.inputs.len()];
        let mid_buf = p.mid.as_ref().map(|m| (m, idx[p.inputs.len() + 1]));
        if let Some((m, b)) = mid_buf {
            emu.write(b, &vec![0xFF; m.want.len()])?;
        }
        for (k, data) in p.inputs.iter().enumerate() {
            emu.write(idx[k], data)?;
        }
        let aliased = in_place_input(case);
        let init = match aliased {
            Some(k) => p.inputs[k].clone(),
            None => vec![0xFF; p.want.len()],
        };
        emu.write(out, &init)?;
        let descs: Vec<DevTensor> = case
            .inputs
            .iter()
            .enumerate()
            .map(|(k, i)| DevTensor {
                dtype: i.dtype,
                shape: &i.shape,
                ptr: emu.addr(if Some(k) == aliased { out } else { idx[k] }),
            })
            .collect();
        let out_desc = DevTensor { dtype: p.out_dtype, shape: &p.out_shape, ptr: emu.addr(out) };
        let mid_desc = mid_buf.map(|(m, b)| DevTensor { dtype: m.dtype, shape: &m.shape, ptr: emu.addr(b) });
        let scratch_len = case_scratch(case, &descs, mid_desc.as_ref(), &out_desc);
        let s = emu.alloc(&[scratch_len + 256])?[0];
        emu.write(s, &vec![0u8; scratch_len + 256])?;
        let base = emu.addr(s);
        let scratch = Scratch { ptr: base + 256, bytes: scratch_len, flag: base };
        match plan_case(case, &descs, mid_desc.as_ref(), &out_desc, scratch) {
            Ok((calls, writes_mid)) => {
                // The adversarial schedule also takes the cuBLAS fallback of GEMM epilogues.
                let calls: Vec<Call> = if adversarial {
                    let mut v = Vec::new();
                    for c in calls {
                        match c {
                            Call::Gemm(g) => match ops::without_epilogue(&g) {
                                Ok(x) => v.extend(x),
                                Err(e) => {
                                    plan_error = Some(format!("fallback: {e}"));
                                    v.push(Call::Gemm(g));
                                }
                            },
                            c => v.push(c),
                        }
                    }
                    v
                } else {
                    calls
                };
                calls.iter().try_for_each(|c| emu.call(c))?;
                if let (true, Some((_, b))) = (writes_mid, mid_buf) {
                    mid = Some(emu.read(b)?);
                }
            }
            Err(e) => plan_error = Some(format!("plan: {e}")),
        }
        got = emu.read(out)?;
        flag = emu.read(s)?;
        Ok(())
    })();
    let warnings = emu.finish(io)?;
    if let Some(e) = plan_error {
        return Err(e);
    }
    Ok(Run { got, mid, flagged: flag[..4] != [0, 0, 0, 0], warnings })
}

/// A generated-kernel case as check.rs `run_fused_one` runs it.
fn run_fused(
    bin: &Path,
    g: &FusedGroup,
    inputs: &[Input],
    data: &[Vec<u8>],
    out_len: usize,
    adv: bool,
) -> Result<Run, String> {
    let out_dt = g.ops.last().expect("non-empty").dtype;
    let (entry, _) = g.source().map_err(|e| e.to_string())?;
    let mut emu = Emu::spawn(bin, adv).map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    let mut plan_error = None;
    let io = (|| -> Io<()> {
        let mut lens: Vec<usize> = data.iter().map(Vec::len).collect();
        lens.push(out_len);
        let idx = emu.alloc(&lens)?;
        for (k, d) in data.iter().enumerate() {
            emu.write(idx[k], d)?;
        }
        let out = idx[data.len()];
        emu.write(out, &vec![0xFF; out_len])?;
        let descs: Vec<DevTensor> = inputs
            .iter()
            .zip(&idx)
            .map(|(i, k)| DevTensor { dtype: i.dtype, shape: &i.shape, ptr: emu.addr(*k) })
            .collect();
        let od = DevTensor { dtype: out_dt, shape: &g.shape, ptr: emu.addr(out) };
        match g.plan(&entry, &descs, &od) {
            Ok(call) => emu.call(&call)?,
            Err(e) => plan_error = Some(format!("plan: {e}")),
        }
        got = emu.read(out)?;
        Ok(())
    })();
    let warnings = emu.finish(io)?;
    if let Some(e) = plan_error {
        return Err(e);
    }
    Ok(Run { got, mid: None, flagged: false, warnings })
}

enum Job {
    Op(Case, u64),
    Fused(String, FusedGroup, Vec<Input>, u64),
}

struct Outcome {
    name: String,
    /// The worse error of the two schedules.
    error: f64,
    tol: f64,
    pass: bool,
    note: String,
    secs: f64,
}

const SCHEDULES: [(bool, &str); 2] = [(false, "default"), (true, "adversarial")];

impl Job {
    fn name(&self) -> &str {
        match self {
            Job::Op(c, _) => &c.name,
            Job::Fused(n, ..) => n,
        }
    }

    /// The reference once, then the case under both schedules.
    fn run(&self, bin: &Path) -> Outcome {
        let t = Instant::now();
        let name = self.name().to_string();
        let fail = |note: String| Outcome {
            name: name.clone(),
            error: f64::INFINITY,
            tol: 0.0,
            pass: false,
            note,
            secs: 0.0,
        };
        let mut runs = Vec::new();
        let mut mid_want: Option<Mid> = None;
        let (want, dtype, shape, tol) = match self {
            Job::Op(case, seed) => {
                let p = match reference(case, *seed) {
                    Ok(p) => p,
                    Err(e) => return fail(format!("reference: {e}")),
                };
                for (adv, _) in SCHEDULES {
                    runs.push(run_op(bin, case, &p, adv));
                }
                let tol = case.tol.unwrap_or_else(|| default_tol(p.out_dtype));
                mid_want = p.mid;
                (p.want, p.out_dtype, p.out_shape, tol)
            }
            Job::Fused(_, g, inputs, seed) => {
                let mut rng = Rng(*seed);
                let data: Vec<Vec<u8>> = inputs.iter().map(|i| draw(i, &mut rng)).collect();
                let want = match fused_reference(g, &data) {
                    Ok(w) => w,
                    Err(e) => return fail(format!("reference: {e}")),
                };
                for (adv, _) in SCHEDULES {
                    runs.push(run_fused(bin, g, inputs, &data, want.len(), adv));
                }
                let dt = g.ops.last().expect("non-empty").dtype;
                (want, dt, g.shape.clone(), default_tol(dt))
            }
        };
        let (mut error, mut notes) = (0f64, Vec::new());
        for (r, (_, sched)) in runs.into_iter().zip(SCHEDULES) {
            let e = match r {
                Ok(r) => {
                    if !r.warnings.is_empty() {
                        notes.push(format!("[{sched}] {}", r.warnings));
                    }
                    let mut e = compare(&r.got, &want, dtype, &shape);
                    if let (Some(got), Some(m)) = (&r.mid, &mid_want) {
                        e = e.max(compare(got, &m.want, m.dtype, &m.shape));
                    }
                    if r.flagged {
                        notes.push(format!("[{sched}] kernel raised its index-error flag"));
                        f64::INFINITY
                    } else {
                        if e > tol {
                            notes.push(format!("[{sched}] error {e:.3e}"));
                        }
                        e
                    }
                }
                Err(e) => {
                    notes.push(format!("[{sched}] {e}"));
                    f64::INFINITY
                }
            };
            error = error.max(e);
        }
        Outcome {
            name,
            error,
            tol,
            pass: error <= tol,
            note: notes.join("\n"),
            secs: t.elapsed().as_secs_f64(),
        }
    }
}

#[test]
#[ignore = "builds the C++ emulator (a minute or two the first time); tools/test.sh runs it"]
fn every_parity_case_runs_on_the_emulator() {
    let Some((cxx, version)) = find_compiler() else {
        println!("cuda-emu: skipped: no C++ compiler (g++, clang++ or $CXX)");
        return;
    };
    let start = Instant::now();
    let seed: u64 = std::env::var("EMU_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let filter = std::env::var("EMU_FILTER").unwrap_or_default();
    let fused_cases = fused::cases();
    let generated: Vec<(String, String)> =
        fused_cases.iter().map(|(_, g, _)| g.source().expect("fused cases generate")).collect();
    let bin = build(&cxx, &version, &generated).unwrap_or_else(|e| panic!("cuda-emu build: {e}"));
    let built = start.elapsed().as_secs_f64();

    // Seeds as `focus gpu-check`: op case i gets seed + i, fused case k seed + k.
    let mut jobs: Vec<Job> =
        ops::cases().into_iter().enumerate().map(|(i, c)| Job::Op(c, seed.wrapping_add(i as u64))).collect();
    jobs.extend(
        fused_cases
            .into_iter()
            .enumerate()
            .map(|(k, (n, g, ins))| Job::Fused(n, g, ins, seed.wrapping_add(k as u64))),
    );
    jobs.retain(|j| j.name().contains(&filter));
    let workers: usize = std::env::var("EMU_JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Outcome)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let o = job.run(&bin);
                results.lock().expect("no panics while held").push((i, o));
            });
        }
    });
    let mut results = results.into_inner().expect("no panics while held");
    results.sort_by_key(|r| r.0);

    let mut failed = Vec::new();
    for (_, r) in &results {
        let status = if r.pass { "ok" } else { "FAIL" };
        println!("{status:<4} {:<64} err {:>9.2e} tol {:>7.0e} {:>6.2}s", r.name, r.error, r.tol, r.secs);
        if !r.note.is_empty() {
            println!("     {}", r.note.replace('\n', "\n     "));
        }
        if !r.pass {
            failed.push(r);
        }
    }
    let ok = results.len() - failed.len();
    println!(
        "cuda-emu: {ok} cases ok, {} failed ({:.0} s: build {built:.0} s, {workers} parallel)",
        failed.len(),
        start.elapsed().as_secs_f64()
    );
    let list: Vec<String> = failed
        .iter()
        .map(|r| format!("{}: err {:.2e} (tol {:.0e}) {}", r.name, r.error, r.tol, r.note))
        .collect();
    assert!(failed.is_empty(), "{} case(s) failed on the emulator:\n{}", failed.len(), list.join("\n"));
}

#[test]
fn rewrite_turns_shared_arrays_and_inline_ptx_into_runtime_calls() {
    let src = "// asm in a comment stays\nextern \"C\" __global__ void k(int* p) {\n    extern __shared__ \
               __align__(16) unsigned char sm[];\n    asm volatile(\"cp.async.wait_group %0;\\n\" ::\"n\"(1));\n    \
               asm(\"mma {%0}, {%1, %2};\"\n        : \"+f\"(c[0])\n        : \"r\"(a ? 16 : 0), \"l\"(f(x, y)));\n}\n";
    let out = rewrite(src).unwrap();
    assert!(out.starts_with("// asm in a comment stays\n__global__ void k(int* p) {"), "{out}");
    assert!(out.contains("unsigned char* sm = reinterpret_cast<unsigned char*>(emu_dyn_smem(16));"), "{out}");
    assert!(out.contains("emu_asm(\"cp.async.wait_group %0;\\n\", {}, {emu_asm_in(\"n\", 1)});"), "{out}");
    assert!(
        out.contains(
            "emu_asm(\"mma {%0}, {%1, %2};\", {emu_asm_out(\"+f\", c[0])}, {emu_asm_in(\"r\", a ? 16 : 0), \
             emu_asm_in(\"l\", f(x, y))})\n\n;"
        ),
        "{out}"
    );
    assert_eq!(out.lines().count(), src.lines().count());
}
