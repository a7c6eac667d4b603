//! A CUDA device for our kernels: context and stream through cudarc (libraries loaded at run
//! time; absence is an error, never a panic), every kernel file compiled by NVRTC for the
//! device's architecture through the on-disk cubin cache, cuBLAS for GEMMs, and the execution
//! of planned calls (`launch::Call`): `prepare` resolves them once (functions, packed
//! parameters, uploaded constants), `launch` replays them on the stream.

use super::launch::{Arg, Call, GemmCall, GemmType, KernelCall};
use super::lt::{LtHandle, LtMatmul};
use super::{nvrtc, sources, CudaError};
use cudarc::cublas::{sys as blas, CudaBlas};
use cudarc::driver::sys::{CUdeviceptr, CUfunction_attribute};
use cudarc::driver::{
    result as drv, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DriverError,
};
use std::collections::HashMap;
use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// cuBLAS workspace: set explicitly so GEMMs can be captured in CUDA graphs.
const BLAS_WORKSPACE: usize = 32 << 20;
/// Dynamic shared memory a kernel may use without opting in.
const SMEM_DEFAULT: u32 = 48 * 1024;

pub struct GpuDevice {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub arch: String,
    pub name: String,
    modules: HashMap<String, Arc<CudaModule>>,
    blas: Option<CudaBlas>,
    /// cuBLASLt, which takes every GEMM it has an algorithm for (cuBLAS the rest).
    lt: Option<LtHandle>,
    /// The GEMM workspace, shared by cuBLAS and cuBLASLt (one stream orders them).
    blas_workspace: Option<CudaSlice<u8>>,
    /// GEMMs prepared on cuBLAS because cuBLASLt had no algorithm for them.
    lt_fallbacks: std::sync::atomic::AtomicUsize,
    /// `Arg::Const` data uploaded once per device, by content.
    consts: Mutex<HashMap<Vec<u8>, CudaSlice<u8>>>,
    /// Generated kernels (fusion groups) by entry name.
    generated: Mutex<HashMap<String, Arc<CudaModule>>>,
}

pub(crate) fn driver(e: DriverError) -> CudaError {
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

/// A call resolved for launching.
enum Step {
    Kernel {
        func: CudaFunction,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        smem: u32,
        /// One 8-byte-aligned box per parameter; `ptrs` points into them (boxes never move).
        _params: Vec<Box<[u64]>>,
        ptrs: Vec<*mut c_void>,
    },
    Gemm(GemmCall),
    Lt(Box<LtMatmul>),
    Memset {
        ptr: u64,
        bytes: usize,
        value: u8,
    },
    Copy {
        src: u64,
        dst: u64,
        bytes: usize,
    },
}

/// Calls resolved against one device, ready to launch any number of times.
pub struct Prepared {
    steps: Vec<Step>,
}

// SAFETY: the raw parameter pointers point into boxes owned by the same `Step`; nothing else
// aliases them, and launching only reads them.
unsafe impl Send for Prepared {}

impl Prepared {
    pub fn len(&self) -> usize {
        self.steps.len()
    }
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

fn pack(bytes: &[u8]) -> Box<[u64]> {
    let mut b = vec![0u64; bytes.len().div_ceil(8).max(1)].into_boxed_slice();
    bytemuck::cast_slice_mut::<u64, u8>(&mut b)[..bytes.len()].copy_from_slice(bytes);
    b
}

fn blas_err(e: cudarc::cublas::result::CublasError) -> CudaError {
    CudaError::Driver(format!("cuBLAS: {e:?}"))
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
        // A created stream, not the legacy default one: CUDA graphs cannot capture that.
        let stream = ctx.new_stream().map_err(driver)?;
        let dir = cache_dir();
        let mut modules = HashMap::new();
        for (file, src) in sources::SOURCES {
            let cubin = nvrtc::compile_cached(file, src, &arch, &dir)?;
            let m = ctx.load_module(cudarc::nvrtc::Ptx::from_binary(cubin)).map_err(driver)?;
            modules.insert(file.to_string(), m);
        }
        // cuBLAS is optional until a GEMM needs it (a clear error then).
        // SAFETY: only probes for the library.
        let (blas, ws) = if unsafe { blas::is_culib_present() } {
            let b = CudaBlas::new(stream.clone()).map_err(blas_err)?;
            let ws = stream.alloc_zeros::<u8>(BLAS_WORKSPACE).map_err(driver)?;
            let p = cudarc::driver::DevicePtr::device_ptr(&ws, &stream).0;
            // SAFETY: the workspace outlives the handle (both owned by this device).
            unsafe { blas::cublasSetWorkspace_v2(*b.handle(), p as *mut c_void, BLAS_WORKSPACE) }
                .result()
                .map_err(blas_err)?;
            (Some(b), Some(ws))
        } else {
            (None, None)
        };
        Ok(GpuDevice {
            ctx,
            stream,
            arch,
            name,
            modules,
            blas,
            lt: if ws.is_some() { LtHandle::open()? } else { None },
            blas_workspace: ws,
            lt_fallbacks: Default::default(),
            consts: Mutex::new(HashMap::new()),
            generated: Mutex::new(HashMap::new()),
        })
    }

    /// Compile (or load from the cubin cache) a generated kernel, once per device.
    pub fn add_generated(&self, entry: &str, src: &str) -> Result<(), CudaError> {
        let mut g =
            self.generated.lock().map_err(|_| CudaError::Driver("kernel registry poisoned".into()))?;
        if g.contains_key(entry) {
            return Ok(());
        }
        let cubin = nvrtc::compile_cached(&format!("{entry}.cu"), src, &self.arch, &cache_dir())?;
        let m = self.ctx.load_module(cudarc::nvrtc::Ptx::from_binary(cubin)).map_err(driver)?;
        g.insert(entry.to_string(), m);
        Ok(())
    }

    /// A kernel by file and entry-point name (`fused::GENERATED` for generated kernels).
    pub fn function(&self, file: &str, name: &str) -> Result<CudaFunction, CudaError> {
        if file == super::fused::GENERATED {
            let g =
                self.generated.lock().map_err(|_| CudaError::Driver("kernel registry poisoned".into()))?;
            let m = g
                .get(name)
                .ok_or_else(|| CudaError::Driver(format!("generated kernel {name} not compiled")))?;
            return m.load_function(name).map_err(|e| CudaError::Driver(format!("{name}: {e}")));
        }
        let m = self.modules.get(file).ok_or_else(|| CudaError::Driver(format!("no kernel file {file}")))?;
        m.load_function(name).map_err(|e| CudaError::Driver(format!("{file}:{name}: {e}")))
    }

    /// Device memory, uninitialised.
    pub fn alloc(&self, n: usize) -> Result<CudaSlice<u8>, CudaError> {
        let free = self.ctx.mem_get_info().map(|(f, _)| f).unwrap_or(usize::MAX);
        if n > free {
            return Err(CudaError::OutOfMemory { want: n, free });
        }
        // SAFETY: u8 has no invalid bit patterns; callers write before reading.
        unsafe { self.stream.alloc::<u8>(n.max(1)) }.map_err(driver)
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

    /// The device address of a buffer (valid while the buffer lives).
    pub fn ptr(&self, s: &CudaSlice<u8>) -> u64 {
        cudarc::driver::DevicePtr::device_ptr(s, &self.stream).0
    }

    /// Copy host bytes to a device address (stream-ordered; `src` must stay alive and unchanged
    /// until the stream is synchronised).
    ///
    /// # Safety
    /// `dst..dst+src.len()` must be device memory owned by the caller.
    pub unsafe fn write(&self, dst: u64, src: &[u8]) -> Result<(), CudaError> {
        self.bind()?;
        drv::memcpy_htod_async(dst, src, self.stream.cu_stream()).map_err(driver)
    }

    /// Copy device bytes to host (synchronises the stream first).
    ///
    /// # Safety
    /// `src..src+dst.len()` must be live device memory.
    pub unsafe fn read(&self, src: u64, dst: &mut [u8]) -> Result<(), CudaError> {
        self.bind()?;
        drv::memcpy_dtoh_async(dst, src, self.stream.cu_stream()).map_err(driver)?;
        self.sync()
    }

    /// Make the device's context current on this thread: the raw driver calls below need it,
    /// and a plan may run on another thread than the one that opened the device.
    pub fn bind(&self) -> Result<(), CudaError> {
        self.ctx.bind_to_thread().map_err(driver)
    }

    pub fn sync(&self) -> Result<(), CudaError> {
        self.stream.synchronize().map_err(driver)
    }

    /// Copy `src` (e.g. a memory-mapped checkpoint) to device address `dst` through two pinned
    /// staging buffers in turn, so reading the source overlaps the transfers. Synchronous.
    ///
    /// # Safety
    /// `dst..dst+src.len()` must be device memory owned by the caller.
    pub unsafe fn upload_staged(&self, dst: u64, src: &[u8]) -> Result<(), CudaError> {
        const CHUNK: usize = 16 << 20;
        if src.len() <= CHUNK {
            self.write(dst, src)?;
            return self.sync();
        }
        self.bind()?;
        let s = self.stream.cu_stream();
        let mut stage = [std::ptr::null_mut::<c_void>(); 2];
        let mut done = [std::ptr::null_mut(); 2];
        let result = (|| -> Result<(), CudaError> {
            for k in 0..2 {
                stage[k] = drv::malloc_host(CHUNK, 0).map_err(driver)?;
                done[k] = drv::event::create(cudarc::driver::sys::CUevent_flags::CU_EVENT_DISABLE_TIMING)
                    .map_err(driver)?;
            }
            for (i, chunk) in src.chunks(CHUNK).enumerate() {
                let k = i % 2;
                if i >= 2 {
                    // The transfer that last used this buffer must be finished.
                    drv::event::synchronize(done[k]).map_err(driver)?;
                }
                let buf = std::slice::from_raw_parts_mut(stage[k] as *mut u8, chunk.len());
                buf.copy_from_slice(chunk);
                drv::memcpy_htod_async(dst + (i * CHUNK) as u64, buf, s).map_err(driver)?;
                drv::event::record(done[k], s).map_err(driver)?;
            }
            self.sync()
        })();
        if result.is_err() {
            // No transfer may still read the staging buffers when they are freed.
            let _ = self.sync();
        }
        for k in 0..2 {
            if !done[k].is_null() {
                let _ = drv::event::destroy(done[k]);
            }
            if !stage[k].is_null() {
                let _ = drv::free_host(stage[k]);
            }
        }
        result
    }

    fn const_ptr(&self, data: &[u8]) -> Result<u64, CudaError> {
        let mut consts =
            self.consts.lock().map_err(|_| CudaError::Driver("constant cache poisoned".into()))?;
        if let Some(s) = consts.get(data) {
            return Ok(self.ptr(s));
        }
        let s = self.upload(data)?;
        let p = self.ptr(&s);
        consts.insert(data.to_vec(), s);
        Ok(p)
    }

    fn prepare_kernel(&self, k: &KernelCall) -> Result<Step, CudaError> {
        k.validate().map_err(CudaError::Driver)?;
        let func = self.function(k.file, &k.entry)?;
        if k.smem > SMEM_DEFAULT {
            // SAFETY: the function exists (just loaded).
            unsafe {
                drv::function::set_function_attribute(
                    func.cu_function(),
                    CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    k.smem as i32,
                )
            }
            .map_err(|e| CudaError::Driver(format!("{}: {} bytes of shared memory: {e}", k.entry, k.smem)))?;
        }
        let mut params: Vec<Box<[u64]>> = Vec::with_capacity(k.args.len());
        for a in &k.args {
            params.push(match a {
                Arg::Ptr(p) | Arg::U64(p) => pack(&p.to_le_bytes()),
                Arg::I32(v) => pack(&v.to_le_bytes()),
                Arg::F32(v) => pack(&v.to_le_bytes()),
                Arg::Bytes(b) => pack(b),
                Arg::Const(d) => pack(&self.const_ptr(d)?.to_le_bytes()),
            });
        }
        let ptrs = params.iter_mut().map(|b| b.as_mut_ptr() as *mut c_void).collect();
        Ok(Step::Kernel { func, grid: k.grid, block: k.block, smem: k.smem, _params: params, ptrs })
    }

    /// How many GEMMs were prepared on cuBLAS because cuBLASLt had no algorithm for them.
    pub fn lt_fallbacks(&self) -> usize {
        self.lt_fallbacks.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A GEMM on cuBLASLt, or where it has no algorithm on cuBLAS (a bias then pre-fills C).
    fn prepare_gemm(&self, g: &GemmCall, steps: &mut Vec<Step>) -> Result<(), CudaError> {
        if self.blas.is_none() {
            return Err(CudaError::Unavailable("libcublas"));
        }
        for (v, what) in [(g.m, "m"), (g.n, "n"), (g.k, "k"), (g.batch, "batch")] {
            if i32::try_from(v).is_err() {
                return Err(CudaError::Driver(format!("GEMM {what} = {v} exceeds i32")));
            }
        }
        if let Some(lt) = &self.lt {
            if let Ok(m) = LtMatmul::new(lt, g, BLAS_WORKSPACE) {
                steps.push(Step::Lt(Box::new(m)));
                return Ok(());
            }
        }
        self.lt_fallbacks.fetch_add(self.lt.is_some() as usize, std::sync::atomic::Ordering::Relaxed);
        for c in super::ops::without_epilogue(g)? {
            steps.push(match c {
                Call::Kernel(k) => self.prepare_kernel(&k)?,
                Call::Gemm(g) => Step::Gemm(g),
                _ => unreachable!("a GEMM expands to kernels and GEMMs"),
            });
        }
        Ok(())
    }

    /// Resolve calls for launching: load functions, pack parameters, upload constants.
    pub fn prepare(&self, calls: &[Call]) -> Result<Prepared, CudaError> {
        let mut steps = Vec::with_capacity(calls.len());
        for c in calls {
            steps.push(match c {
                Call::Kernel(k) => self.prepare_kernel(k)?,
                Call::Gemm(g) => {
                    self.prepare_gemm(g, &mut steps)?;
                    continue;
                }
                Call::Memset { ptr, bytes, value } => {
                    Step::Memset { ptr: *ptr, bytes: *bytes, value: *value }
                }
                Call::Copy { src, dst, bytes } => Step::Copy { src: *src, dst: *dst, bytes: *bytes },
            });
        }
        Ok(Prepared { steps })
    }

    /// Launch prepared calls in order on the stream (asynchronous).
    pub fn launch(&self, p: &Prepared) -> Result<(), CudaError> {
        self.launch_range(p, 0..p.steps.len())
    }

    /// Launch the prepared calls `range` (the profiler times them one by one).
    pub fn launch_range(&self, p: &Prepared, range: std::ops::Range<usize>) -> Result<(), CudaError> {
        self.bind()?;
        let s = self.stream.cu_stream();
        for step in &p.steps[range] {
            match step {
                Step::Kernel { func, grid, block, smem, ptrs, .. } => {
                    // SAFETY: the parameters match the kernel's signature (checked by the planner
                    // tests) and point at live device memory owned by the caller's plan; the
                    // driver only reads the parameter array.
                    unsafe {
                        cudarc::driver::sys::cuLaunchKernel(
                            func.cu_function(),
                            grid.0,
                            grid.1,
                            grid.2,
                            block.0,
                            block.1,
                            block.2,
                            *smem,
                            s,
                            ptrs.as_ptr() as *mut *mut c_void,
                            std::ptr::null_mut(),
                        )
                    }
                    .result()
                    .map_err(driver)?
                }
                Step::Gemm(g) => self.gemm(g)?,
                Step::Lt(m) => {
                    let lt = self.lt.as_ref().ok_or(CudaError::Unavailable("libcublasLt"))?;
                    let ws = self.blas_workspace.as_ref().ok_or(CudaError::Unavailable("libcublas"))?;
                    // SAFETY: the operands are the caller's live plan buffers (the planner's
                    // contract), the workspace is this device's, used only on this stream.
                    unsafe { m.run(lt, (self.ptr(ws), BLAS_WORKSPACE), s as _) }?
                }
                // SAFETY: the planner gives ranges inside the plan's device buffers.
                Step::Memset { ptr, bytes, value } => {
                    unsafe { drv::memset_d8_async(*ptr, *value, *bytes, s) }.map_err(driver)?
                }
                Step::Copy { src, dst, bytes } => {
                    unsafe { drv::memcpy_dtod_async(*dst, *src, *bytes, s) }.map_err(driver)?
                }
            }
        }
        Ok(())
    }

    /// Row-major `C = op(A)·op(B)` as column-major `Cᵀ = op(B)ᵀ·op(A)ᵀ`: B goes first; a
    /// row-major [r, c] matrix is a column-major [c, r] one with leading dimension c.
    fn gemm(&self, g: &GemmCall) -> Result<(), CudaError> {
        let blas_h = *self.blas.as_ref().ok_or(CudaError::Unavailable("libcublas"))?.handle();
        let ty = match g.dtype {
            GemmType::F32 => blas::cudaDataType::CUDA_R_32F,
            GemmType::F16 => blas::cudaDataType::CUDA_R_16F,
            GemmType::BF16 => blas::cudaDataType::CUDA_R_16BF,
        };
        let op = |t: bool| {
            if t {
                blas::cublasOperation_t::CUBLAS_OP_T
            } else {
                blas::cublasOperation_t::CUBLAS_OP_N
            }
        };
        let (m, n, k) = (g.m as i32, g.n as i32, g.k as i32);
        let lda = if g.trans_b { k } else { n };
        let ldb = if g.trans_a { m } else { k };
        // SAFETY: pointers are device addresses of buffers sized for these dims (the planner's
        // contract); alpha/beta are host f32 read during the call.
        unsafe {
            cudarc::cublas::result::gemm_strided_batched_ex(
                blas_h,
                op(g.trans_b),
                op(g.trans_a),
                n,
                m,
                k,
                &g.alpha as *const f32 as *const c_void,
                g.b as CUdeviceptr as *const c_void,
                ty,
                lda,
                g.stride_b as i64,
                g.a as *const c_void,
                ty,
                ldb,
                g.stride_a as i64,
                &g.beta as *const f32 as *const c_void,
                g.c as *mut c_void,
                ty,
                n,
                g.stride_c as i64,
                g.batch as i32,
                blas::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                blas::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(blas_err)
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

    #[test]
    fn parameters_pack_into_aligned_words() {
        let b = pack(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(b.len(), 2);
        assert_eq!(bytemuck::cast_slice::<u64, u8>(&b)[..9], [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(pack(&[]).len(), 1);
    }
}
