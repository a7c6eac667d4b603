//! `focus kernels --check`: compile every CUDA kernel with NVRTC and print ptxas statistics.

use focus_kernels::cuda::{nvrtc, sources};

pub fn run(check: bool, archs: &[String]) -> Result<(), String> {
    if !check {
        for (file, src) in sources::SOURCES {
            println!("{file}: {}", sources::entry_points(src).join(" "));
        }
        return Ok(());
    }
    let (ma, mi) = nvrtc::version().map_err(|e| e.to_string())?;
    let includes = nvrtc::include_dirs();
    if includes.is_empty() {
        return Err(
            "no CUDA include directory with cuda_fp16.h found (set FOCUS_CUDA_INCLUDE or CUDA_HOME, \
                    or run tools/setup-nvrtc.sh)"
                .into(),
        );
    }
    println!("NVRTC {ma}.{mi}, headers from {}", includes[0].display());
    let mut failures = Vec::new();
    let mut spills = 0;
    for arch in archs {
        println!(
            "\n{arch}\n{:<12} {:<24} {:>5} {:>10} {:>12} {:>11} {:>7}",
            "file", "kernel", "regs", "smem (B)", "spill st (B)", "spill ld (B)", "stack"
        );
        for (file, src) in sources::SOURCES {
            match nvrtc::compile(file, src, arch) {
                Ok(c) => {
                    // Every entry point the source declares must come out of ptxas.
                    let built: Vec<&str> = c.kernels.iter().map(|k| k.name.as_str()).collect();
                    for e in sources::entry_points(src) {
                        if !built.contains(&e.as_str()) {
                            failures.push(format!("{file} ({arch}): entry point {e} missing from the cubin"));
                        }
                    }
                    for k in &c.kernels {
                        spills += k.spill_stores + k.spill_loads;
                        println!(
                            "{:<12} {:<24} {:>5} {:>10} {:>12} {:>11} {:>7}",
                            file,
                            k.name,
                            k.registers,
                            k.shared_bytes,
                            k.spill_stores,
                            k.spill_loads,
                            k.stack_bytes
                        );
                    }
                }
                Err(e) => {
                    println!("{file:<12} FAILED");
                    failures.push(e.to_string());
                }
            }
        }
    }
    println!("\nspill bytes in total: {spills}");
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} kernel file(s) failed to compile:\n{}", failures.len(), failures.join("\n")))
    }
}
