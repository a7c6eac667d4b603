//! `focus gpu-bench`: our CUDA ops at the shapes (and under the names) of
//! `tools/torch_ref/gpu_bench.py`, plus the copy-bandwidth ceiling; a table and a JSON report
//! that `tools/gpu_report.py` joins with PyTorch's.

use focus_kernels::cuda::{bench, device::GpuDevice};
use std::path::Path;

pub fn run(ordinal: usize, quick: bool, out: Option<&Path>) -> Result<(), String> {
    let dev = GpuDevice::open(ordinal).map_err(|e| e.to_string())?;
    let copy_bytes = if quick { 16 << 20 } else { 1 << 30 };
    let copy = bench::copy_bandwidth(&dev, copy_bytes).map_err(|e| e.to_string())?;
    println!("{} ({}): device-to-device copy {copy:.0} GB/s (read + write)", dev.name, dev.arch);
    let cases = bench::cases(quick);
    let results = bench::run(&dev, &cases, 7);
    println!(
        "{:<10} {:<18} {:<58} {:>9} {:>8} {:>8} {:>6}",
        "section", "name", "params", "ms", "TFLOP/s", "GB/s", "%copy"
    );
    let mut json =
        vec![serde_json::json!({"section": "copy", "name": "d2d_copy", "params": {"bytes": copy_bytes},
        "gbps": copy})];
    for r in &results {
        let f = |x: Option<f64>, p: usize| x.map_or("-".to_string(), |v| format!("{v:.p$}"));
        match &r.error {
            Some(e) => println!("{:<10} {:<18} {:<58} ERROR {e}", r.section, r.name, r.params),
            None => println!(
                "{:<10} {:<18} {:<58} {:>9.4} {:>8} {:>8} {:>6}",
                r.section,
                r.name,
                r.params,
                r.ms,
                f(r.tflops, 1),
                f(r.gbps, 0),
                f(r.gbps.map(|g| 100.0 * g / copy), 0)
            ),
        }
        let params: serde_json::Value = serde_json::from_str(&r.params).map_err(|e| e.to_string())?;
        json.push(serde_json::json!({"section": r.section, "name": r.name, "params": params,
            "median_ms": r.ms, "tflops": r.tflops, "gbps": r.gbps, "error": r.error}));
    }
    if let Some(p) = out {
        let doc =
            serde_json::json!({"device": dev.name, "arch": dev.arch, "copy_gbps": copy, "results": json});
        std::fs::write(p, doc.to_string()).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    if failed > 0 {
        Err(format!("{failed} benchmark(s) failed"))
    } else {
        Ok(())
    }
}
