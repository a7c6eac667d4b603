//! `focus kernels --check`: compile every CUDA kernel with NVRTC and print ptxas statistics.

use focus_kernels::cuda::{nvrtc, sources};
use std::path::Path;

/// The embedded sources, or with `dir` every `*.cu` there and its `focus_common.cuh` (so a
/// kernel being edited compiles without rebuilding the binary).
fn load(dir: Option<&Path>) -> Result<(String, Vec<(String, String)>), String> {
    let Some(dir) = dir else {
        let files = sources::SOURCES.iter().map(|(f, s)| (f.to_string(), s.to_string())).collect();
        return Ok((sources::COMMON_HEADER.1.to_string(), files));
    };
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let header = read(&dir.join(sources::COMMON_HEADER.0))?;
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let p = e.map_err(|e| e.to_string())?.path();
        if p.extension().is_some_and(|x| x == "cu") {
            files.push((p.file_name().unwrap_or_default().to_string_lossy().into_owned(), read(&p)?));
        }
    }
    files.sort();
    Ok((header, files))
}

/// Generated kernels of the registry models' fusion groups (f32 and bf16), deduplicated: CI
/// compiles them like the hand-written files.
fn generated() -> Result<Vec<(String, String)>, String> {
    use focus_graph::passes::{eliminate_dead_code, fusion_groups};
    use focus_kernels::cuda::fused;
    let mut out: Vec<(String, String)> = Vec::new();
    for (model, config, size) in [
        ("convnext", "tiny", 64),
        ("qwen2vl_vit", "600m", 56),
        ("qwen25vl_vit", "3b", 112),
        ("qwen2", "tiny", 4),
    ] {
        for dt in [focus_graph::DType::F32, focus_graph::DType::BF16] {
            let (g, _) = eliminate_dead_code(&focus_models::build_named(model, config, size, dt)?);
            for group in fusion_groups(&g) {
                let Some((fg, _)) = fused::from_graph(&g, &group.nodes) else { continue };
                let (entry, src) = fg.source().map_err(|e| e.to_string())?;
                if !out.iter().any(|(e, _)| *e == entry) {
                    out.push((entry, src));
                }
            }
        }
    }
    Ok(out)
}

pub fn run(check: bool, archs: &[String], dir: Option<&Path>) -> Result<(), String> {
    let (header, mut files) = load(dir)?;
    if check {
        let gen = generated()?;
        println!("{} generated fusion kernels from the registry models", gen.len());
        files.extend(gen.into_iter().map(|(e, s)| (format!("{e}.cu"), s)));
    }
    if !check {
        for (file, src) in &files {
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
        for (file, src) in &files {
            match nvrtc::compile_with_header(file, src, &header, arch) {
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
