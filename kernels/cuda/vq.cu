// Nearest codebook row by squared L2 in f32 (SimVQ / MoVQ lookup), ties to the lowest index.
// One block per query row; the row sits in shared memory; each thread scans a stride of
// codes, then the block reduces (distance, index) pairs.
#include "focus_common.cuh"

#define VQ_MAX_DIM 256

template <typename T>
__device__ void vq_nearest_impl(const T* __restrict__ x, const float* __restrict__ codebook, i64* __restrict__ out,
                                int codes, int dim) {
    __shared__ float q[VQ_MAX_DIM];
    __shared__ float best_d[32];
    __shared__ int best_i[32];
    const T* xr = x + (u64)blockIdx.x * dim;
    for (int d = threadIdx.x; d < dim; d += blockDim.x) q[d] = to_f32(xr[d]);
    __syncthreads();
    float bd = INFINITY;
    int bi = 0x7fffffff;
    for (int k = threadIdx.x; k < codes; k += blockDim.x) {
        const float* c = codebook + (u64)k * dim;
        float acc = 0.0f;
        for (int d = 0; d < dim; ++d) {
            const float e = q[d] - c[d];
            acc = fmaf(e, e, acc);
        }
        if (acc < bd) {  // k increases per thread, so ties keep the lower index
            bd = acc;
            bi = k;
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        const float od = __shfl_xor_sync(0xffffffffu, bd, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (od < bd || (od == bd && oi < bi)) {
            bd = od;
            bi = oi;
        }
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    if (lane == 0) {
        best_d[warp] = bd;
        best_i[warp] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < nwarps; ++w) {
            if (best_d[w] < bd || (best_d[w] == bd && best_i[w] < bi)) {
                bd = best_d[w];
                bi = best_i[w];
            }
        }
        out[blockIdx.x] = bi;
    }
}

#define VQ(name, T)                                                                                   \
    extern "C" __global__ void vq_nearest_##name(const T* x, const float* codebook, i64* out, int codes, \
                                                 int dim) {                                           \
        vq_nearest_impl<T>(x, codebook, out, codes, dim);                                             \
    }
FOR_FLOAT_TYPES(VQ)
