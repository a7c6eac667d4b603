// Dtype conversion between float storage types (f32/f16/bf16), rounding to nearest even.
#include "focus_common.cuh"

template <typename A, typename B>
__device__ void cast_impl(const A* __restrict__ x, B* __restrict__ y, u64 n) {
    GRID_STRIDE(i, n) { y[i] = from_f32<B>(to_f32(x[i])); }
}

#define CAST(an, A, bn, B) \
    extern "C" __global__ void cast_##an##_##bn(const A* x, B* y, u64 n) { cast_impl<A, B>(x, y, n); }
CAST(f32, float, f16, __half)
CAST(f32, float, bf16, __nv_bfloat16)
CAST(f16, __half, f32, float)
CAST(bf16, __nv_bfloat16, f32, float)
CAST(f16, __half, bf16, __nv_bfloat16)
CAST(bf16, __nv_bfloat16, f16, __half)
