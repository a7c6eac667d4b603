// The gated MLP half (Op::GatedLinear): y[r, c] = act(x[r]·wg[c] + bg[c]) · (x[r]·wu[c] + bu[c]).
// gated_gemv: few rows of x (a decode step): one warp per output column reads both weight rows
// once (16-byte loads when K is a multiple of 8), x staged in shared memory as f32, warp-shuffle
// sums, one launch for what is otherwise two GEMMs and an activation kernel.
// glu_pair: the many-row path's last step after two GEMMs, act(g) · u in f32.
#include "focus_common.cuh"

#define GV_MAX_M 8

template <typename T>
__device__ __forceinline__ void load8(const T* p, float* o) {
    if constexpr (sizeof(T) == 4) {
        const float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
        o[0] = a.x, o[1] = a.y, o[2] = a.z, o[3] = a.w, o[4] = b.x, o[5] = b.y, o[6] = b.z, o[7] = b.w;
    } else {
        const uint4 v = *reinterpret_cast<const uint4*>(p);
        const T* h = reinterpret_cast<const T*>(&v);
#pragma unroll
        for (int i = 0; i < 8; ++i) o[i] = to_f32(h[i]);
    }
}

template <typename T>
__device__ void gated_gemv_impl(const T* __restrict__ x, const T* __restrict__ wg, const T* __restrict__ wu,
                                const T* __restrict__ bg, const T* __restrict__ bu, T* __restrict__ y, int m, int k,
                                int n, int act, int vec8) {
    extern __shared__ float xs[];  // [m, k]
    for (int i = threadIdx.x; i < m * k; i += blockDim.x) xs[i] = to_f32(x[i]);
    __syncthreads();
    const int lane = threadIdx.x & 31, col = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (col >= n) return;
    float ag[GV_MAX_M], au[GV_MAX_M];
#pragma unroll
    for (int r = 0; r < GV_MAX_M; ++r) ag[r] = au[r] = 0.0f;
    const T* rg = wg + (u64)col * k;
    const T* ru = wu + (u64)col * k;
    if (vec8) {
        for (int kk = lane * 8; kk < k; kk += 256) {
            float g[8], u[8];
            load8(rg + kk, g);
            load8(ru + kk, u);
#pragma unroll
            for (int r = 0; r < GV_MAX_M; ++r) {
                if (r < m) {
                    const float* xr = xs + r * k + kk;
#pragma unroll
                    for (int i = 0; i < 8; ++i) {
                        ag[r] = fmaf(xr[i], g[i], ag[r]);
                        au[r] = fmaf(xr[i], u[i], au[r]);
                    }
                }
            }
        }
    } else {
        for (int kk = lane; kk < k; kk += 32) {
            const float g = to_f32(rg[kk]), u = to_f32(ru[kk]);
#pragma unroll
            for (int r = 0; r < GV_MAX_M; ++r) {
                if (r < m) {
                    ag[r] = fmaf(xs[r * k + kk], g, ag[r]);
                    au[r] = fmaf(xs[r * k + kk], u, au[r]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < GV_MAX_M; ++r) {
        if (r < m) {
            float g = ag[r], u = au[r];
            for (int off = 16; off > 0; off >>= 1) {
                g += __shfl_xor_sync(0xffffffffu, g, off);
                u += __shfl_xor_sync(0xffffffffu, u, off);
            }
            if (lane == 0) {
                if (bg) g += to_f32(bg[col]);
                if (bu) u += to_f32(bu[col]);
                y[(u64)r * n + col] = from_f32<T>(unary_op(act, g) * u);
            }
        }
    }
}

template <typename T>
__device__ void glu_pair_impl(const T* __restrict__ g, const T* __restrict__ u, T* __restrict__ y, u64 n, int act) {
    GRID_STRIDE(i, n) { y[i] = from_f32<T>(unary_op(act, to_f32(g[i])) * to_f32(u[i])); }
}

#define GEMV(name, T)                                                                                        \
    extern "C" __global__ void gated_gemv_##name(const T* x, const T* wg, const T* wu, const T* bg, const T* bu, \
                                                 T* y, int m, int k, int n, int act, int vec8) {               \
        gated_gemv_impl<T>(x, wg, wu, bg, bu, y, m, k, n, act, vec8);                                        \
    }                                                                                                        \
    extern "C" __global__ void glu_pair_##name(const T* g, const T* u, T* y, u64 n, int act) {                \
        glu_pair_impl<T>(g, u, y, n, act);                                                                   \
    }
FOR_FLOAT_TYPES(GEMV)
