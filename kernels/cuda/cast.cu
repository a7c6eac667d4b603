// Dtype conversion between any two dtypes, with the CPU kernel's rules: floats go through f32
// (one rounding into a half type), float → int truncates toward zero saturating through i64
// (NaN → 0) then wraps to the width, int → float rounds once from the exact integer, anything
// → bool is `!= 0` (NaN → true).
#include "focus_common.cuh"

template <typename A, typename B>
__device__ void cast_impl(const A* __restrict__ x, B* __restrict__ y, u64 n) {
    GRID_STRIDE(i, n) { y[i] = store_v<B>(load_v(x[i])); }
}

#define CAST(an, A, bn, B) \
    extern "C" __global__ void cast_##an##_##bn(const A* x, B* y, u64 n) { cast_impl<A, B>(x, y, n); }
CAST(f32, float, f16, __half)
CAST(f32, float, bf16, __nv_bfloat16)
CAST(f32, float, i32, int)
CAST(f32, float, i64, i64)
CAST(f32, float, u8, unsigned char)
CAST(f32, float, bool, bool_t)
CAST(f16, __half, f32, float)
CAST(f16, __half, bf16, __nv_bfloat16)
CAST(f16, __half, i32, int)
CAST(f16, __half, i64, i64)
CAST(f16, __half, u8, unsigned char)
CAST(f16, __half, bool, bool_t)
CAST(bf16, __nv_bfloat16, f32, float)
CAST(bf16, __nv_bfloat16, f16, __half)
CAST(bf16, __nv_bfloat16, i32, int)
CAST(bf16, __nv_bfloat16, i64, i64)
CAST(bf16, __nv_bfloat16, u8, unsigned char)
CAST(bf16, __nv_bfloat16, bool, bool_t)
CAST(i32, int, f32, float)
CAST(i32, int, f16, __half)
CAST(i32, int, bf16, __nv_bfloat16)
CAST(i32, int, i64, i64)
CAST(i32, int, u8, unsigned char)
CAST(i32, int, bool, bool_t)
CAST(i64, i64, f32, float)
CAST(i64, i64, f16, __half)
CAST(i64, i64, bf16, __nv_bfloat16)
CAST(i64, i64, i32, int)
CAST(i64, i64, u8, unsigned char)
CAST(i64, i64, bool, bool_t)
CAST(u8, unsigned char, f32, float)
CAST(u8, unsigned char, f16, __half)
CAST(u8, unsigned char, bf16, __nv_bfloat16)
CAST(u8, unsigned char, i32, int)
CAST(u8, unsigned char, i64, i64)
CAST(u8, unsigned char, bool, bool_t)
CAST(bool, bool_t, f32, float)
CAST(bool, bool_t, f16, __half)
CAST(bool, bool_t, bf16, __nv_bfloat16)
CAST(bool, bool_t, i32, int)
CAST(bool, bool_t, i64, i64)
CAST(bool, bool_t, u8, unsigned char)
