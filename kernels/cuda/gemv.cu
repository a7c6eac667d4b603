// The gated MLP half (Op::GatedLinear): y[r, c] = act(x[r]·wg[c] + bg[c]) · (x[r]·wu[c] + bu[c]).
// gated_gemv: few rows of x (a decode step): one warp per output column reads both weight rows
// once (16-byte loads when K is a multiple of 8), x staged in shared memory as f32, warp-shuffle
// sums, one launch for what is otherwise two GEMMs and an activation kernel.
// glu_pair: the many-row path's last step after two GEMMs, act(g) · u in f32.
// multi_gemv: Op::MultiLinear for few rows (q, k and v of a decode step in one launch).
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

// acc[j][r] = x[r] · w[j] (warp-reduced, valid in every lane) for NW weight rows of one output
// column; the rows are loaded in the same loop so their reads are in flight together.
template <typename T, int NW>
__device__ __forceinline__ void dot_rows(const float* xs, const T* const (&w)[NW], int m, int k, int lane, int vec8,
                                         float (&acc)[NW][GV_MAX_M]) {
#pragma unroll
    for (int j = 0; j < NW; ++j)
#pragma unroll
        for (int r = 0; r < GV_MAX_M; ++r) acc[j][r] = 0.0f;
    if (vec8) {
        for (int kk = lane * 8; kk < k; kk += 256) {
            float v[NW][8];
#pragma unroll
            for (int j = 0; j < NW; ++j) load8(w[j] + kk, v[j]);
#pragma unroll
            for (int r = 0; r < GV_MAX_M; ++r) {
                if (r < m) {
                    const float* xr = xs + r * k + kk;
#pragma unroll
                    for (int i = 0; i < 8; ++i)
#pragma unroll
                        for (int j = 0; j < NW; ++j) acc[j][r] = fmaf(xr[i], v[j][i], acc[j][r]);
                }
            }
        }
    } else {
        for (int kk = lane; kk < k; kk += 32) {
            float v[NW];
#pragma unroll
            for (int j = 0; j < NW; ++j) v[j] = to_f32(w[j][kk]);
#pragma unroll
            for (int r = 0; r < GV_MAX_M; ++r) {
                if (r < m) {
#pragma unroll
                    for (int j = 0; j < NW; ++j) acc[j][r] = fmaf(xs[r * k + kk], v[j], acc[j][r]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < GV_MAX_M; ++r) {
        if (r < m) {
#pragma unroll
            for (int j = 0; j < NW; ++j)
                for (int off = 16; off > 0; off >>= 1) acc[j][r] += __shfl_xor_sync(0xffffffffu, acc[j][r], off);
        }
    }
}

// x [m, k] into shared memory as f32; returns this warp's output column.
template <typename T>
__device__ __forceinline__ int stage_x(const T* __restrict__ x, float* xs, int m, int k) {
    for (int i = threadIdx.x; i < m * k; i += blockDim.x) xs[i] = to_f32(x[i]);
    __syncthreads();
    return blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
}

template <typename T>
__device__ void gated_gemv_impl(const T* __restrict__ x, const T* __restrict__ wg, const T* __restrict__ wu,
                                const T* __restrict__ bg, const T* __restrict__ bu, T* __restrict__ y, int m, int k,
                                int n, int act, int vec8) {
    extern __shared__ float xs[];  // [m, k]
    const int lane = threadIdx.x & 31, col = stage_x(x, xs, m, k);
    if (col >= n) return;
    const T* const w[2] = {wg + (u64)col * k, wu + (u64)col * k};
    float acc[2][GV_MAX_M];
    dot_rows<T, 2>(xs, w, m, k, lane, vec8, acc);
    if (lane != 0) return;
#pragma unroll
    for (int r = 0; r < GV_MAX_M; ++r) {
        if (r < m) {
            const float g = acc[0][r] + (bg ? to_f32(bg[col]) : 0.0f), u = acc[1][r] + (bu ? to_f32(bu[col]) : 0.0f);
            y[(u64)r * n + col] = from_f32<T>(unary_op(act, g) * u);
        }
    }
}

// Op::MultiLinear for a few rows: up to 4 projections of x, one warp per output column across
// all of them; part p's output is the block [m, n_p] after the earlier parts' blocks.
template <typename T>
__device__ void multi_gemv_impl(const T* __restrict__ x, const T* const (&w)[4], const T* const (&b)[4],
                                T* __restrict__ y, int m, int k, const int (&n)[4], int vec8) {
    extern __shared__ float xs[];  // [m, k]
    const int lane = threadIdx.x & 31;
    int col = stage_x(x, xs, m, k), start = 0, p = 0;
    while (p < 4 && col >= n[p]) col -= n[p], start += n[p++];
    if (p == 4) return;
    const T* const row[1] = {w[p] + (u64)col * k};
    float acc[1][GV_MAX_M];
    dot_rows<T, 1>(xs, row, m, k, lane, vec8, acc);
    if (lane != 0) return;
    const float bias = b[p] ? to_f32(b[p][col]) : 0.0f;
    T* out = y + (u64)m * start;
#pragma unroll
    for (int r = 0; r < GV_MAX_M; ++r)
        if (r < m) out[(u64)r * n[p] + col] = from_f32<T>(acc[0][r] + bias);
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
    }                                                                                                        \
    extern "C" __global__ void multi_gemv_##name(const T* x, const T* w0, const T* w1, const T* w2, const T* w3, \
                                                 const T* b0, const T* b1, const T* b2, const T* b3, T* y, int m, \
                                                 int k, int n0, int n1, int n2, int n3, int vec8) {            \
        const T* const w[4] = {w0, w1, w2, w3};                                                              \
        const T* const b[4] = {b0, b1, b2, b3};                                                              \
        const int n[4] = {n0, n1, n2, n3};                                                                   \
        multi_gemv_impl<T>(x, w, b, y, m, k, n, vec8);                                                       \
    }
FOR_FLOAT_TYPES(GEMV)
