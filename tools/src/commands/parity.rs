//! `focus parity FIXTURE`: print rel-L2 and max-abs per output; fail beyond tolerance.

use focus_cli::parity::run_fixture_on;
use focus_engine::Device;
use std::path::Path;

pub fn run(path: &Path, tol: Option<f64>, dtype: &str, device: &str) -> Result<(), String> {
    let device = Device::parse(device).map_err(|e| e.to_string())?;
    let dt = super::float_dtype(dtype)?;
    let r = run_fixture_on(path, tol, dt, device)?;
    println!("{} ({}) in {dt} on {device}, tolerance {:.1e}", r.component, path.display(), r.tolerance);
    println!("  config {}", r.config);
    for c in &r.comparisons {
        println!(
            "  {:<4} {:<40} rel-L2 {:.3e}  max-abs {:.3e}  ({} values)",
            if c.pass { "ok" } else { "FAIL" },
            c.name,
            c.rel_l2,
            c.max_abs,
            c.numel
        );
    }
    if r.passed() {
        Ok(())
    } else {
        Err(format!("{}: parity beyond tolerance", r.component))
    }
}
