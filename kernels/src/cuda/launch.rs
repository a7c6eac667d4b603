//! Launches as data. Turning an op into kernel launches is a pure function of the op, the
//! tensors' dtypes/shapes and their device addresses (`ops::plan`), so it runs — and is tested —
//! without a GPU: entry points exist, arguments match the kernels' signatures, grids fit the
//! hardware limits. The executor plans every step once at compile time and replays the calls
//! (or a CUDA graph of them) on every run.

use focus_graph::DType;

/// A contiguous tensor in device memory.
#[derive(Clone, Copy, Debug)]
pub struct DevTensor<'a> {
    pub dtype: DType,
    pub shape: &'a [usize],
    /// Device address (`CUdeviceptr`); 0 only for an absent optional input.
    pub ptr: u64,
}

impl DevTensor<'_> {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn bytes(&self) -> usize {
        self.numel() * self.dtype.size_in_bytes()
    }
}

/// One kernel parameter, in the kernel's declared order.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    /// A device pointer (any `T*` parameter); 0 is a null pointer.
    Ptr(u64),
    I32(i32),
    U64(u64),
    F32(f32),
    /// A by-value struct or element-typed scalar (e.g. a pad value of the tensor's dtype),
    /// as the little-endian bytes of its C layout.
    Bytes(Vec<u8>),
    /// Constant data the kernel reads through a pointer (e.g. a RoPE frequency table computed
    /// exactly as the CPU computes it): uploaded once when the call is prepared.
    Const(Vec<u8>),
}

/// A launch of one of our kernels.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelCall {
    /// Source file in `kernels/cuda/` (a key of `sources::SOURCES`).
    pub file: &'static str,
    /// `extern "C"` entry point.
    pub entry: String,
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    /// Dynamic shared memory in bytes (above 48 KiB the launcher opts the kernel in).
    pub smem: u32,
    pub args: Vec<Arg>,
}

/// Storage type of a GEMM operand / the compute mode (f32 accumulation always).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmType {
    F32,
    F16,
    BF16,
}

/// Row-major batched GEMM `C[b] = alpha · op(A[b]) · op(B[b]) + beta · C[b] (+ bias)` through
/// cuBLASLt (cuBLAS where it has no algorithm), `op(A)` is `[m, k]`, `op(B)` is `[k, n]`, C is
/// `[m, n]` contiguous. A batch stride of 0 broadcasts an operand. `trans_a` means A is stored
/// `[k, m]` (row-major); likewise B `[n, k]`. `bias` (0: none; batch 1 only) points at `[n]`
/// values of the GEMM's dtype added to every row.
#[derive(Clone, Debug, PartialEq)]
pub struct GemmCall {
    pub dtype: GemmType,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch: usize,
    pub a: u64,
    pub b: u64,
    pub c: u64,
    pub trans_a: bool,
    pub trans_b: bool,
    /// Element strides between consecutive batch matrices.
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
    pub alpha: f32,
    pub beta: f32,
    pub bias: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    Kernel(KernelCall),
    Gemm(GemmCall),
    /// Set `bytes` bytes at `ptr` to `value` (error flags, accumulators).
    Memset {
        ptr: u64,
        bytes: usize,
        value: u8,
    },
    /// Device-to-device copy.
    Copy {
        src: u64,
        dst: u64,
        bytes: usize,
    },
}

/// Device memory the planner may use for temporaries: `ptr..ptr+bytes` (at least what
/// `ops::scratch_bytes` asked for, 256-byte aligned; split-K partials and the like, valid only
/// within one step) and `flag`, one i32 that index-checking kernels set to 1 on an
/// out-of-range index (zeroed before a run, read back after it).
#[derive(Clone, Copy, Debug)]
pub struct Scratch {
    pub ptr: u64,
    pub bytes: usize,
    pub flag: u64,
}

/// The hardware limits every call is checked against before launch (sm_80 and later).
pub const MAX_BLOCK_THREADS: u32 = 1024;
pub const MAX_GRID_YZ: u32 = 65535;
/// Dynamic shared memory per block with opt-in (sm_80: 163 KiB; sm_90: 227 KiB).
pub const MAX_SMEM_OPT_IN: u32 = 163 * 1024;

/// Grid-stride elementwise launch: 256 threads, at most 65535·8 blocks.
pub fn grid_1d(n: usize) -> ((u32, u32, u32), (u32, u32, u32)) {
    let blocks = n.div_ceil(256).clamp(1, 65535 * 8) as u32;
    ((blocks, 1, 1), (256, 1, 1))
}

impl KernelCall {
    /// Grid-stride kernel over `n` elements.
    pub fn elementwise(file: &'static str, entry: String, n: usize, args: Vec<Arg>) -> Self {
        let (grid, block) = grid_1d(n);
        KernelCall { file, entry, grid, block, smem: 0, args }
    }

    /// Check the launch shape against hardware limits.
    pub fn validate(&self) -> Result<(), String> {
        let (b, g) = (self.block, self.grid);
        let threads = b.0 as u64 * b.1 as u64 * b.2 as u64;
        if threads == 0 || threads > MAX_BLOCK_THREADS as u64 {
            return Err(format!("{}: block {b:?} has {threads} threads", self.entry));
        }
        if g.0 == 0 || g.1 == 0 || g.2 == 0 || g.1 > MAX_GRID_YZ || g.2 > MAX_GRID_YZ {
            return Err(format!("{}: grid {g:?} out of range", self.entry));
        }
        if self.smem > MAX_SMEM_OPT_IN {
            return Err(format!("{}: {} bytes of shared memory", self.entry, self.smem));
        }
        Ok(())
    }
}

/// The `_f32` / `_f16` / `_bf16` suffix of a float kernel, or None for other dtypes.
pub fn float_suffix(dt: DType) -> Option<&'static str> {
    match dt {
        DType::F32 => Some("f32"),
        DType::F16 => Some("f16"),
        DType::BF16 => Some("bf16"),
        _ => None,
    }
}

/// Element-size suffix of the data-movement kernels (`b1`, `b2`, `b4`, `b8`).
pub fn elem_suffix(dt: DType) -> &'static str {
    match dt.size_in_bytes() {
        1 => "b1",
        2 => "b2",
        4 => "b4",
        _ => "b8",
    }
}
