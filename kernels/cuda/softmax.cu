// Softmax over one axis of a tensor viewed as [outer, len, inner].
#include "focus_common.cuh"

// inner == 1: one block per row, max-subtracted, f32.
template <typename T>
__device__ void softmax_rows_impl(const T* __restrict__ x, T* __restrict__ y, int len) {
    const T* xr = x + (u64)blockIdx.x * len;
    T* yr = y + (u64)blockIdx.x * len;
    float m = -INFINITY;
    for (int i = threadIdx.x; i < len; i += blockDim.x) m = fmaxf(m, to_f32(xr[i]));
    m = block_max(m);
    float s = 0.0f;
    for (int i = threadIdx.x; i < len; i += blockDim.x) s += expf(to_f32(xr[i]) - m);
    const float inv = 1.0f / block_sum(s);
    for (int i = threadIdx.x; i < len; i += blockDim.x) yr[i] = from_f32<T>(expf(to_f32(xr[i]) - m) * inv);
}

// inner > 1: one thread per (outer, inner) column.
template <typename T>
__device__ void softmax_cols_impl(const T* __restrict__ x, T* __restrict__ y, u64 outer, int len, u64 inner) {
    GRID_STRIDE(col, outer * inner) {
        const u64 base = (col / inner) * len * inner + col % inner;
        float m = -INFINITY;
        for (int i = 0; i < len; ++i) m = fmaxf(m, to_f32(x[base + i * inner]));
        float s = 0.0f;
        for (int i = 0; i < len; ++i) s += expf(to_f32(x[base + i * inner]) - m);
        const float inv = 1.0f / s;
        for (int i = 0; i < len; ++i) y[base + i * inner] = from_f32<T>(expf(to_f32(x[base + i * inner]) - m) * inv);
    }
}

#define SOFTMAX(name, T)                                                                         \
    extern "C" __global__ void softmax_rows_##name(const T* x, T* y, int len) {                 \
        softmax_rows_impl<T>(x, y, len);                                                         \
    }                                                                                            \
    extern "C" __global__ void softmax_cols_##name(const T* x, T* y, u64 outer, int len, u64 inner) { \
        softmax_cols_impl<T>(x, y, outer, len, inner);                                           \
    }
FOR_FLOAT_TYPES(SOFTMAX)
