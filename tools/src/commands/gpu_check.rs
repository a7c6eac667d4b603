//! `focus gpu-check`: every CUDA kernel against the CPU kernels on a GPU; a table, a JSON
//! report, non-zero exit on any failure. Without a GPU it fails with a clear message.

use focus_kernels::cuda::{check, device::GpuDevice, ops};
use std::path::Path;

pub fn run(ordinal: usize, seed: u64, filter: Option<&str>, out: Option<&Path>) -> Result<(), String> {
    let dev = GpuDevice::open(ordinal).map_err(|e| e.to_string())?;
    println!("{} ({}), kernels compiled for {}", dev.name, ordinal, dev.arch);
    let cases: Vec<_> =
        ops::cases().into_iter().filter(|c| filter.is_none_or(|f| c.name.contains(f))).collect();
    println!("{} cases (each CUDA op vs the CPU kernel on the same random inputs)", cases.len());
    let mut results = check::run_cases(&dev, &cases, seed);
    if filter.is_none_or(|f| "fused".contains(f)) {
        results.extend(check::run_fused(&dev, seed));
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
