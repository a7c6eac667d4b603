//! GEMMs through cuBLASLt. A row-major `C = alpha·op(A)·op(B) + beta·C (+ bias)` is the
//! column-major `Cᵀ = op(B)ᵀ·op(A)ᵀ`, so B is cuBLASLt's first operand; the Linear bias is the
//! BIAS epilogue (a vector over Cᵀ's rows, i.e. C's columns) instead of a pre-filled C. Layouts,
//! the operation descriptor and the heuristic's algorithm are built once when a call is
//! prepared. cuBLASLt's GELU epilogue is the tanh approximation, which no model here uses, so
//! only the bias epilogue is wired.

use super::launch::{GemmCall, GemmType};
use super::CudaError;
use cudarc::cublaslt::{result as lt, sys};
use std::ffi::c_void;
use std::mem::size_of;

fn lt_err(e: lt::CublasError) -> CudaError {
    CudaError::Driver(format!("cuBLASLt: {e:?}"))
}

/// A cuBLASLt library handle.
pub(crate) struct LtHandle(sys::cublasLtHandle_t);

// SAFETY: a cuBLASLt handle holds no per-thread state; every use is ordered on the device's
// one stream by the caller.
unsafe impl Send for LtHandle {}
unsafe impl Sync for LtHandle {}

impl LtHandle {
    /// None where libcublasLt is absent (GEMMs then use cuBLAS).
    pub fn open() -> Result<Option<Self>, CudaError> {
        // SAFETY: only probes for the library.
        if !unsafe { sys::is_culib_present() } {
            return Ok(None);
        }
        lt::create_handle().map(|h| Some(LtHandle(h))).map_err(lt_err)
    }
}

impl Drop for LtHandle {
    fn drop(&mut self) {
        // SAFETY: created by `open`, destroyed once.
        let _ = unsafe { lt::destroy_handle(self.0) };
    }
}

/// One prepared matmul: descriptors, the chosen algorithm and the operands.
pub(crate) struct LtMatmul {
    desc: sys::cublasLtMatmulDesc_t,
    /// cuBLASLt's A (our B), B (our A) and C = D.
    layouts: [sys::cublasLtMatrixLayout_t; 3],
    algo: sys::cublasLtMatmulAlgo_t,
    g: GemmCall,
}

// SAFETY: the descriptors are plain host objects, read-only after construction.
unsafe impl Send for LtMatmul {}
unsafe impl Sync for LtMatmul {}

/// The largest power of two (at most 256) dividing every address a batched operand starts at.
fn alignment(ptr: u64, stride_elems: usize, batch: usize, elem: usize) -> u32 {
    let stride = if batch > 1 { (stride_elems * elem) as u64 } else { 0 };
    let v = ptr | stride | 256;
    1 << v.trailing_zeros()
}

impl LtMatmul {
    /// Describe `g` and pick an algorithm that fits `workspace` bytes and the operands' actual
    /// alignment. Err where cuBLASLt has none (the caller then uses cuBLAS).
    pub fn new(h: &LtHandle, g: &GemmCall, workspace: usize) -> Result<Self, CudaError> {
        let (ty, es) = match g.dtype {
            GemmType::F32 => (sys::cudaDataType::CUDA_R_32F, 4),
            GemmType::F16 => (sys::cudaDataType::CUDA_R_16F, 2),
            GemmType::BF16 => (sys::cudaDataType::CUDA_R_16BF, 2),
        };
        if g.bias != 0 && g.batch != 1 {
            return Err(CudaError::Driver("a GEMM bias needs batch 1".into()));
        }
        let (m, n, k) = (g.m as u64, g.n as u64, g.k as u64);
        // Stored (column-major) shapes: our row-major [r, c] is column-major [c, r], ld c.
        let a_dims = if g.trans_b { (k, n, k) } else { (n, k, n) };
        let b_dims = if g.trans_a { (m, k, m) } else { (k, m, k) };
        let mut me = LtMatmul {
            desc: lt::create_matmul_desc(
                sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                sys::cudaDataType::CUDA_R_32F,
            )
            .map_err(lt_err)?,
            layouts: [std::ptr::null_mut(); 3],
            algo: sys::cublasLtMatmulAlgo_t { data: [0; 8] },
            g: g.clone(),
        };
        let batch = g.batch as i32;
        for (slot, (rows, cols, ld), stride) in
            [(0, a_dims, g.stride_b), (1, b_dims, g.stride_a), (2, (n, m, n), g.stride_c)]
        {
            me.layouts[slot] = lt::create_matrix_layout(ty, rows, cols, ld as i64).map_err(lt_err)?;
            let stride = stride as i64;
            // SAFETY: the layout was just created; the buffers are the sizes given.
            unsafe {
                lt::set_matrix_layout_attribute(
                    me.layouts[slot],
                    sys::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                    &batch as *const i32 as *const c_void,
                    size_of::<i32>(),
                )
                .map_err(lt_err)?;
                lt::set_matrix_layout_attribute(
                    me.layouts[slot],
                    sys::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                    &stride as *const i64 as *const c_void,
                    size_of::<i64>(),
                )
                .map_err(lt_err)?;
            }
        }
        let (ta, tb) = (g.trans_b as i32, g.trans_a as i32);
        type D = sys::cublasLtMatmulDescAttributes_t;
        // SAFETY: the descriptor was just created; each buffer matches its attribute's type.
        unsafe {
            let set = |attr: D, p: *const c_void, len: usize| {
                lt::set_matmul_desc_attribute(me.desc, attr, p, len).map_err(lt_err)
            };
            set(D::CUBLASLT_MATMUL_DESC_TRANSA, &ta as *const i32 as *const c_void, size_of::<i32>())?;
            set(D::CUBLASLT_MATMUL_DESC_TRANSB, &tb as *const i32 as *const c_void, size_of::<i32>())?;
            if g.bias != 0 {
                let epi = sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS;
                set(D::CUBLASLT_MATMUL_DESC_EPILOGUE, &epi as *const _ as *const c_void, size_of_val(&epi))?;
                set(D::CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias as *const u64 as *const c_void, 8)?;
            }
        }
        let pref = lt::create_matmul_pref().map_err(lt_err)?;
        type P = sys::cublasLtMatmulPreferenceAttributes_t;
        let aligns = [
            (P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, alignment(g.b, g.stride_b, g.batch, es)),
            (P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alignment(g.a, g.stride_a, g.batch, es)),
            (P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, alignment(g.c, g.stride_c, g.batch, es)),
            (P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, alignment(g.c, g.stride_c, g.batch, es)),
        ];
        let ws = workspace as u64;
        // SAFETY: `pref` was just created and is destroyed below; the descriptors are complete.
        let found = unsafe {
            let r = (|| {
                lt::set_matmul_pref_attribute(
                    pref,
                    P::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                    &ws as *const u64 as *const c_void,
                    size_of::<u64>(),
                )?;
                for (attr, a) in aligns {
                    lt::set_matmul_pref_attribute(
                        pref,
                        attr,
                        &a as *const u32 as *const c_void,
                        size_of::<u32>(),
                    )?;
                }
                let [la, lb, lc] = me.layouts;
                lt::get_matmul_algo_heuristic(h.0, me.desc, la, lb, lc, lc, pref)
            })();
            let _ = lt::destroy_matmul_pref(pref);
            r
        };
        me.algo = found.map_err(lt_err)?.algo;
        Ok(me)
    }

    /// Enqueue on `stream` with `workspace` (the bytes given to `new`, or more).
    ///
    /// # Safety
    /// The operands' device buffers must be live and sized for the call; `workspace` must be
    /// a device buffer of at least the bytes `new` was given, not used concurrently.
    pub unsafe fn run(
        &self,
        h: &LtHandle,
        workspace: (u64, usize),
        stream: sys::cudaStream_t,
    ) -> Result<(), CudaError> {
        let g = &self.g;
        let [la, lb, lc] = self.layouts;
        lt::matmul(
            h.0,
            self.desc,
            &g.alpha as *const f32 as *const c_void,
            &g.beta as *const f32 as *const c_void,
            g.b as *const c_void,
            la,
            g.a as *const c_void,
            lb,
            g.c as *const c_void,
            lc,
            g.c as *mut c_void,
            lc,
            &self.algo,
            workspace.0 as *mut c_void,
            workspace.1,
            stream,
        )
        .map_err(lt_err)
    }
}

impl Drop for LtMatmul {
    fn drop(&mut self) {
        // SAFETY: created in `new` (null layouts were never created), destroyed once.
        unsafe {
            for l in self.layouts {
                if !l.is_null() {
                    let _ = lt::destroy_matrix_layout(l);
                }
            }
            let _ = lt::destroy_matmul_desc(self.desc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::alignment;

    #[test]
    fn alignment_is_the_weakest_start_address() {
        assert_eq!(alignment(0x1000, 0, 1, 2), 256);
        assert_eq!(alignment(0x1040, 0, 1, 2), 64);
        // Batches start stride·elem bytes apart: 100 f16 elements = 200 bytes → 8.
        assert_eq!(alignment(0x1000, 100, 3, 2), 8);
        assert_eq!(alignment(0x1000, 100, 1, 2), 256);
        assert_eq!(alignment(0x1002, 128, 4, 4), 2);
    }
}
