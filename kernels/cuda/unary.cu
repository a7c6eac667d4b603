// Elementwise unary ops. `op` follows focus_graph::UnaryOp::ALL order.
#include "focus_common.cuh"

template <typename T>
__device__ void unary_impl(const T* __restrict__ x, T* __restrict__ y, u64 n, int op) {
    GRID_STRIDE(i, n) { y[i] = from_f32<T>(unary_op(op, to_f32(x[i]))); }
}

// Gated linear unit over rows of 2n: y[r, j] = x[r, j] * act(x[r, n + j]), in f32, rounded once.
template <typename T>
__device__ void glu_impl(const T* __restrict__ x, T* __restrict__ y, u64 rows, u64 n, int op) {
    GRID_STRIDE(i, rows * n) {
        const u64 r = i / n, j = i % n;
        const T* xr = x + r * 2 * n;
        y[i] = from_f32<T>(to_f32(xr[j]) * unary_op(op, to_f32(xr[n + j])));
    }
}

#define UNARY(name, T)                                                                                   \
    extern "C" __global__ void unary_##name(const T* x, T* y, u64 n, int op) { unary_impl<T>(x, y, n, op); } \
    extern "C" __global__ void glu_##name(const T* x, T* y, u64 rows, u64 n, int op) {                   \
        glu_impl<T>(x, y, rows, n, op);                                                                  \
    }
FOR_FLOAT_TYPES(UNARY)
