//! `focus gpu-check`: every CUDA kernel against the CPU kernels on a GPU, then whole plans
//! (`models::checks` graphs: every model family and fused pattern) on CUDA against CPU plans,
//! decode steps again as CUDA-graph replays; a table, a JSON report, non-zero exit on any
//! failure. Without a GPU it fails with a clear message.

use focus_engine::{compile, Device, MemoryWeights, Plan, Tensor, WeightSource};
use focus_graph::{DType, Graph};
use focus_kernels::cuda::case::default_tol;
use focus_kernels::cuda::check::{compare, CheckResult};
use focus_kernels::cuda::{check, device::GpuDevice, ops};
use focus_models::checks::{check_inputs, check_states, CheckInput, PLAN_TOL_FACTOR};
use focus_pipeline::checks::check_graphs;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Set the check inputs of `g` on `plan`.
fn set_inputs(plan: &mut Plan, g: &Graph, seed: u64) -> Result<(), String> {
    for (name, v) in check_inputs(g, seed) {
        let t = check_tensor(g, g.inputs(), &name, v)?;
        plan.set_input(&name, &t.view()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Set the check contents of `g`'s states on `plan` (before every run).
fn set_states(plan: &mut Plan, g: &Graph, seed: u64) -> Result<(), String> {
    for (name, v) in check_states(g, seed) {
        let t = check_tensor(g, g.states(), &name, v)?;
        plan.set_state(&name, &t.view()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn check_tensor(
    g: &Graph,
    nodes: Vec<(&str, focus_graph::NodeId)>,
    name: &str,
    v: CheckInput,
) -> Result<Tensor, String> {
    let id = nodes.into_iter().find(|(m, _)| *m == name).expect("graph node").1;
    let n = g.node(id);
    let t = match v {
        CheckInput::Float(v) => Tensor::from_f32(n.dtype, n.shape.clone(), &v),
        CheckInput::Int(v) => Tensor::from_i64(n.dtype, n.shape.clone(), &v),
    };
    t.map_err(|e| e.to_string())
}

/// An output's dtype, shape and bytes.
type Output = (DType, Vec<usize>, Vec<u8>);

fn outputs(plan: &mut Plan, g: &Graph) -> Result<HashMap<String, Output>, String> {
    plan.wait().map_err(|e| e.to_string())?;
    let mut m = HashMap::new();
    for (name, _) in &g.outputs {
        let t = plan.output(name).map_err(|e| e.to_string())?;
        m.insert(name.clone(), (t.dtype, t.shape.to_vec(), t.data.to_vec()));
    }
    Ok(m)
}

/// One whole-plan check: the worst output error against the CPU plan (integer outputs of
/// low-precision models are skipped: a token may flip where two logits nearly tie).
fn plan_check(
    device: Device,
    name: &str,
    dt: DType,
    g: &Graph,
    seed: u64,
    graph: bool,
) -> Result<CheckResult, String> {
    let weights: Arc<dyn WeightSource> = Arc::new(MemoryWeights::random_for(g, seed));
    let mut cpu = compile(g, Some(weights.clone()), Device::Cpu).map_err(|e| e.to_string())?;
    set_inputs(&mut cpu, g, seed)?;
    set_states(&mut cpu, g, seed)?;
    cpu.execute().map_err(|e| e.to_string())?;
    let want = outputs(&mut cpu, g)?;
    let mut gpu = compile(g, Some(weights), device).map_err(|e| e.to_string())?;
    set_inputs(&mut gpu, g, seed)?;
    if graph && !gpu.capture_graph().map_err(|e| e.to_string())? {
        return Err("no CUDA graph captured".into());
    }
    // Twice, from the same states: the second run (the replay) must agree too.
    set_states(&mut gpu, g, seed)?;
    gpu.execute().map_err(|e| e.to_string())?;
    gpu.wait().map_err(|e| e.to_string())?;
    set_states(&mut gpu, g, seed)?;
    let t = Instant::now();
    gpu.execute().map_err(|e| e.to_string())?;
    let got = outputs(&mut gpu, g)?;
    let gpu_us = t.elapsed().as_secs_f64() * 1e6;
    let tol = PLAN_TOL_FACTOR * default_tol(dt);
    let mut error = 0f64;
    let mut worst = String::new();
    for (out, (odt, shape, w)) in &want {
        if !odt.is_float() && dt != DType::F32 {
            continue;
        }
        let e = compare(&got[out].2, w, *odt, shape);
        if e > error || e.is_nan() {
            (error, worst) = (e, out.clone());
        }
    }
    let label = format!("plan {name}{}", if graph { " (CUDA graph)" } else { "" });
    let note = if error > tol { format!("worst output: {worst}") } else { String::new() };
    Ok(CheckResult { name: label, error, tol, pass: error <= tol, gpu_us, note })
}

fn plan_checks(ordinal: usize, seed: u64, filter: Option<&str>) -> Vec<CheckResult> {
    let graphs = match check_graphs() {
        Ok(g) => g,
        Err(e) => {
            let note = format!("check graphs: {e}");
            return vec![CheckResult {
                name: "plans".into(),
                error: f64::INFINITY,
                tol: 0.0,
                pass: false,
                gpu_us: 0.0,
                note,
            }];
        }
    };
    let mut v = Vec::new();
    for (k, (name, dt, g)) in graphs.iter().enumerate() {
        let stateful = g.nodes.iter().any(|n| matches!(n.op, focus_graph::Op::State { .. }));
        for graph in [false, true].into_iter().filter(|&c| !c || stateful) {
            let label = format!("plan {name}");
            if filter.is_some_and(|f| !label.contains(f)) {
                continue;
            }
            v.push(plan_check(Device::Cuda(ordinal), name, *dt, g, seed + k as u64, graph).unwrap_or_else(
                |note| CheckResult {
                    name: label.clone(),
                    error: f64::INFINITY,
                    tol: 0.0,
                    pass: false,
                    gpu_us: 0.0,
                    note,
                },
            ));
        }
    }
    v
}

pub fn run(
    ordinal: usize,
    seed: u64,
    filter: Option<&str>,
    plans: bool,
    out: Option<&Path>,
) -> Result<(), String> {
    let dev = GpuDevice::open(ordinal).map_err(|e| e.to_string())?;
    println!("{} ({}), kernels compiled for {}", dev.name, ordinal, dev.arch);
    let cases: Vec<_> =
        ops::cases().into_iter().filter(|c| filter.is_none_or(|f| c.name.contains(f))).collect();
    println!("{} cases (each CUDA op vs the CPU kernel on the same random inputs)", cases.len());
    let mut results = check::run_cases(&dev, &cases, seed);
    if filter.is_none_or(|f| "fused".contains(f)) {
        results.extend(check::run_fused(&dev, seed));
    }
    if plans {
        results.extend(plan_checks(ordinal, seed, filter));
    }
    println!("{:<60} {:>11} {:>9} {:>10}  result", "check", "error", "tol", "gpu (us)");
    let mut json = Vec::new();
    for r in &results {
        println!(
            "{:<60} {:>11.3e} {:>9.1e} {:>10.1}  {} {}",
            r.name,
            r.error,
            r.tol,
            r.gpu_us,
            if r.pass { "ok" } else { "FAIL" },
            r.note
        );
        json.push(serde_json::json!({"check": r.name, "error": r.error, "tol": r.tol, "pass": r.pass,
            "gpu_us": r.gpu_us, "note": r.note}));
    }
    let failed = results.iter().filter(|r| !r.pass).count();
    println!("{} checks, {failed} failed", results.len());
    println!("GEMMs on the cuBLAS fallback (cuBLASLt had no algorithm): {}", dev.lt_fallbacks());
    if let Some(p) = out {
        let doc = serde_json::json!({"device": dev.name, "arch": dev.arch, "checks": json});
        std::fs::write(p, doc.to_string()).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    if failed > 0 {
        Err(format!("{failed} GPU check(s) failed"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole-plan check's own plumbing (inputs, outputs, comparison), CPU against CPU.
    #[test]
    fn plan_check_passes_a_plan_against_itself() {
        for (name, dt, g) in
            check_graphs().unwrap().iter().filter(|(n, ..)| n.contains("decode") || n.contains("unet"))
        {
            let r = plan_check(Device::Cpu, name, *dt, g, 3, false).unwrap();
            assert!(r.pass && r.error == 0.0, "{name}: {r:?}");
        }
    }
}
