//! `focus gpu-check`: every CUDA kernel against the CPU kernels on a GPU; a table, a JSON
//! report, non-zero exit on any failure. Without a GPU it fails with a clear message.

use focus_kernels::cuda::{check, device::GpuDevice};
use std::path::Path;

pub fn run(ordinal: usize, seed: u64, out: Option<&Path>) -> Result<(), String> {
    let dev = GpuDevice::open(ordinal).map_err(|e| e.to_string())?;
    println!("{} ({}), kernels compiled for {}", dev.name, ordinal, dev.arch);
    let results = check::run_all(&dev, seed).map_err(|e| e.to_string())?;
    println!("{:<36} {:>11} {:>9} {:>10}  result", "check", "rel-L2", "tol", "gpu (us)");
    let mut json = Vec::new();
    for r in &results {
        println!(
            "{:<36} {:>11.3e} {:>9.1e} {:>10.1}  {}",
            r.name,
            r.rel_l2,
            r.tol,
            r.gpu_us,
            if r.pass { "ok" } else { "FAIL" }
        );
        json.push(serde_json::json!({"check": r.name, "rel_l2": r.rel_l2, "tol": r.tol, "pass": r.pass, "gpu_us": r.gpu_us}));
    }
    let failed = results.iter().filter(|r| !r.pass).count();
    println!("{} checks, {failed} failed", results.len());
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
