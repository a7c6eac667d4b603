//! A CUDA device for our kernels: context and stream through cudarc (libraries loaded at run
//! time; absence is an error, never a panic), every kernel file compiled by NVRTC for the
//! device's architecture through the on-disk cubin cache, and typed launches.

use super::{nvrtc, sources, CudaError};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DriverError};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

pub struct GpuDevice {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub arch: String,
    pub name: String,
    modules: HashMap<String, Arc<CudaModule>>,
}

fn driver(e: DriverError) -> CudaError {
    CudaError::Driver(e.to_string())
}

/// Where compiled cubins are kept: $FOCUS_KERNEL_CACHE or ~/.cache/focus-engine/kernels.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("FOCUS_KERNEL_CACHE") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache/focus-engine/kernels")
}

impl GpuDevice {
    /// Open device `ordinal` and compile (or load from the cache) every kernel file.
    pub fn open(ordinal: usize) -> Result<Self, CudaError> {
        // SAFETY: only tries to dlopen candidate library names.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(CudaError::Unavailable("libcuda (the NVIDIA driver)"));
        }
        let ctx = CudaContext::new(ordinal).map_err(driver)?;
        let (major, minor) = ctx.compute_capability().map_err(driver)?;
        let arch = match (major, minor) {
            (9, 0) => "sm_90a".to_string(),
            (m, n) => format!("sm_{m}{n}"),
        };
        let name = ctx.name().map_err(driver)?;
        let stream = ctx.default_stream();
        let dir = cache_dir();
        let mut modules = HashMap::new();
        for (file, src) in sources::SOURCES {
            let cubin = nvrtc::compile_cached(file, src, &arch, &dir)?;
            let m = ctx.load_module(cudarc::nvrtc::Ptx::from_binary(cubin)).map_err(driver)?;
            modules.insert(file.to_string(), m);
        }
        Ok(GpuDevice { ctx, stream, arch, name, modules })
    }

    /// A kernel by file and entry-point name.
    pub fn function(&self, file: &str, name: &str) -> Result<CudaFunction, CudaError> {
        let m = self.modules.get(file).ok_or_else(|| CudaError::Driver(format!("no kernel file {file}")))?;
        m.load_function(name).map_err(|e| CudaError::Driver(format!("{file}:{name}: {e}")))
    }

    pub fn upload(&self, bytes: &[u8]) -> Result<CudaSlice<u8>, CudaError> {
        self.stream.clone_htod(bytes).map_err(driver)
    }

    pub fn zeros(&self, n: usize) -> Result<CudaSlice<u8>, CudaError> {
        self.stream.alloc_zeros::<u8>(n.max(1)).map_err(driver)
    }

    pub fn download(&self, s: &CudaSlice<u8>) -> Result<Vec<u8>, CudaError> {
        self.stream.clone_dtoh(s).map_err(driver)
    }

    pub fn sync(&self) -> Result<(), CudaError> {
        self.stream.synchronize().map_err(driver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_driver_is_an_error_not_a_panic() {
        // SAFETY: only probes for the library.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            let e = GpuDevice::open(0).err().unwrap();
            assert!(matches!(e, CudaError::Unavailable(_)), "{e}");
        }
    }
}
