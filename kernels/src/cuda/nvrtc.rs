//! Run-time compilation with NVRTC to cubin for one architecture, with ptxas statistics
//! (registers, shared memory, spills) parsed from `--ptxas-options=-v`, and an on-disk cache
//! keyed by source hash, architecture and NVRTC version.

use super::sources::COMMON_HEADER;
use super::CudaError;
use cudarc::nvrtc::sys;
use std::ffi::{c_char, CStr, CString};
use std::path::{Path, PathBuf};

pub const ARCHS: &[&str] = &["sm_80", "sm_86", "sm_89", "sm_90", "sm_90a", "sm_100", "sm_120"];

/// Per-kernel resource usage reported by ptxas.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    pub name: String,
    pub registers: u32,
    pub shared_bytes: u32,
    pub spill_stores: u32,
    pub spill_loads: u32,
    pub stack_bytes: u32,
}

#[derive(Clone, Debug)]
pub struct Compiled {
    pub file: String,
    pub arch: String,
    pub cubin: Vec<u8>,
    pub log: String,
    pub kernels: Vec<KernelStats>,
}

/// True when libnvrtc can be loaded (checked first: cudarc panics on a missing library).
pub fn available() -> bool {
    // SAFETY: only tries to dlopen candidate library names.
    unsafe { sys::is_culib_present() }
}

/// NVRTC (major, minor).
pub fn version() -> Result<(i32, i32), CudaError> {
    if !available() {
        return Err(CudaError::Unavailable("libnvrtc"));
    }
    let (mut a, mut b) = (0, 0);
    // SAFETY: the library is present; out-pointers are valid.
    unsafe { sys::nvrtcVersion(&mut a, &mut b) };
    Ok((a, b))
}

/// Include directories for cuda_fp16.h / cuda_bf16.h: $FOCUS_CUDA_INCLUDE, $CUDA_HOME/include,
/// the project-local pip install (.cuda/), then /usr/local/cuda/include.
pub fn include_dirs() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os("FOCUS_CUDA_INCLUDE") {
        v.push(PathBuf::from(p));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(p) = std::env::var_os(var) {
            v.push(PathBuf::from(p).join("include"));
        }
    }
    v.push(PathBuf::from(".cuda/nvidia/cu13/include"));
    v.push(PathBuf::from("/usr/local/cuda/include"));
    v.into_iter().filter(|p| p.join("cuda_fp16.h").exists()).collect()
}

fn program_log(prog: sys::nvrtcProgram) -> String {
    let mut n = 0usize;
    // SAFETY: prog is a live program; the buffer has the size NVRTC reported.
    unsafe {
        sys::nvrtcGetProgramLogSize(prog, &mut n);
        let mut buf = vec![0 as c_char; n.max(1)];
        sys::nvrtcGetProgramLog(prog, buf.as_mut_ptr());
        CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
    }
}

/// Parse ptxas `-v` lines: "Compiling entry function 'X'", "N bytes stack frame, N bytes spill
/// stores, N bytes spill loads", "Used N registers, ... N bytes smem".
pub fn parse_ptxas(log: &str) -> Vec<KernelStats> {
    let num_before = |line: &str, key: &str| -> Option<u32> {
        let i = line.find(key)?;
        line[..i].split_whitespace().last()?.parse().ok()
    };
    let mut out: Vec<KernelStats> = Vec::new();
    for line in log.lines() {
        if let Some(i) = line.find("entry function '") {
            let rest = &line[i + 16..];
            let name = rest.split('\'').next().unwrap_or_default().to_string();
            out.push(KernelStats { name, ..Default::default() });
        } else if let Some(k) = out.last_mut() {
            if line.contains("spill stores") {
                k.stack_bytes = num_before(line, "bytes stack frame").unwrap_or(0);
                k.spill_stores = num_before(line, "bytes spill stores").unwrap_or(0);
                k.spill_loads = num_before(line, "bytes spill loads").unwrap_or(0);
            } else if line.contains("Used") && line.contains("registers") {
                k.registers = num_before(line, "registers").unwrap_or(0);
                k.shared_bytes = num_before(line, "bytes smem").unwrap_or(0);
            }
        }
    }
    out
}

/// Compile one source file to cubin for `arch`.
pub fn compile(file: &str, src: &str, arch: &str) -> Result<Compiled, CudaError> {
    compile_with_header(file, src, COMMON_HEADER.1, arch)
}

/// As `compile`, with the shared header's text given (sources read from disk while editing).
pub fn compile_with_header(file: &str, src: &str, header: &str, arch: &str) -> Result<Compiled, CudaError> {
    if !ARCHS.contains(&arch) {
        return Err(CudaError::Arch(arch.into()));
    }
    if !available() {
        return Err(CudaError::Unavailable("libnvrtc"));
    }
    let err = |call: &'static str, code: sys::nvrtcResult, log: String| CudaError::Compile {
        file: file.into(),
        arch: arch.into(),
        call,
        code: code as i32,
        log,
    };
    let c = |s: &str| CString::new(s).expect("no NUL in sources or options");
    let (csrc, cname) = (c(src), c(file));
    let (hsrc, hname) = (c(header), c(COMMON_HEADER.0));
    let mut opts = vec![
        format!("--gpu-architecture={arch}"),
        "--std=c++17".into(),
        "--ptxas-options=-v".into(),
        "-default-device".into(),
    ];
    opts.extend(include_dirs().iter().map(|d| format!("--include-path={}", d.display())));
    let copts: Vec<CString> = opts.iter().map(|o| c(o)).collect();
    let popts: Vec<*const c_char> = copts.iter().map(|o| o.as_ptr()).collect();
    let mut prog: sys::nvrtcProgram = std::ptr::null_mut();
    // SAFETY: every pointer refers to a live CString for the duration of the calls; the
    // program is destroyed on every path below.
    unsafe {
        let r = sys::nvrtcCreateProgram(
            &mut prog,
            csrc.as_ptr(),
            cname.as_ptr(),
            1,
            &hsrc.as_ptr(),
            &hname.as_ptr(),
        );
        if r != sys::nvrtcResult::NVRTC_SUCCESS {
            return Err(err("nvrtcCreateProgram", r, String::new()));
        }
        let r = sys::nvrtcCompileProgram(prog, popts.len() as i32, popts.as_ptr());
        let log = program_log(prog);
        if r != sys::nvrtcResult::NVRTC_SUCCESS {
            sys::nvrtcDestroyProgram(&mut prog);
            return Err(err("nvrtcCompileProgram", r, log));
        }
        let mut n = 0usize;
        sys::nvrtcGetCUBINSize(prog, &mut n);
        let mut cubin = vec![0u8; n];
        let r = sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr() as *mut c_char);
        sys::nvrtcDestroyProgram(&mut prog);
        if r != sys::nvrtcResult::NVRTC_SUCCESS {
            return Err(err("nvrtcGetCUBIN", r, log));
        }
        let kernels = parse_ptxas(&log);
        Ok(Compiled { file: file.into(), arch: arch.into(), cubin, log, kernels })
    }
}

/// FNV-1a, stable across builds, for cache keys.
fn hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for p in parts {
        for b in *p {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Compile through an on-disk cache: a second start with the same sources, arch and NVRTC
/// version compiles nothing.
pub fn compile_cached(file: &str, src: &str, arch: &str, dir: &Path) -> Result<Vec<u8>, CudaError> {
    let (ma, mi) = version()?;
    let key =
        hash(&[src.as_bytes(), COMMON_HEADER.1.as_bytes(), arch.as_bytes(), format!("{ma}.{mi}").as_bytes()]);
    let path = dir.join(format!("{}-{arch}-{key:016x}.cubin", file.trim_end_matches(".cu")));
    if let Ok(b) = std::fs::read(&path) {
        return Ok(b);
    }
    let c = compile(file, src, arch)?;
    let io = |source| CudaError::Cache { path: path.display().to_string(), source };
    std::fs::create_dir_all(dir).map_err(io)?;
    // Write then rename, so a concurrent reader never sees a partial file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &c.cubin).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(c.cubin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ptxas_verbose_output() {
        let log = "ptxas info    : 0 bytes gmem\n\
ptxas info    : Compiling entry function 'rms_norm_f32' for 'sm_90a'\n\
ptxas info    : Function properties for rms_norm_f32\n\
    16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads\n\
ptxas info    : Used 24 registers, used 1 barriers, 128 bytes smem, 380 bytes cmem[0]\n";
        let k = parse_ptxas(log);
        assert_eq!(
            k,
            vec![KernelStats {
                name: "rms_norm_f32".into(),
                registers: 24,
                shared_bytes: 128,
                spill_stores: 8,
                spill_loads: 4,
                stack_bytes: 16
            }]
        );
    }

    #[test]
    fn missing_nvrtc_or_bad_arch_is_an_error_not_a_panic() {
        assert!(matches!(compile("x.cu", "", "sm_10"), Err(CudaError::Arch(_))));
        if !available() {
            assert!(matches!(compile("x.cu", "", "sm_90a"), Err(CudaError::Unavailable(_))));
        }
    }
}
