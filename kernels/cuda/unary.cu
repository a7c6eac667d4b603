// Elementwise unary ops. `op` follows focus_graph::UnaryOp::ALL order.
#include "focus_common.cuh"

template <typename T>
__device__ void unary_impl(const T* __restrict__ x, T* __restrict__ y, u64 n, int op) {
    GRID_STRIDE(i, n) { y[i] = from_f32<T>(unary_op(op, to_f32(x[i]))); }
}

#define UNARY(name, T) \
    extern "C" __global__ void unary_##name(const T* x, T* y, u64 n, int op) { unary_impl<T>(x, y, n, op); }
FOR_FLOAT_TYPES(UNARY)
