// Shared device helpers: dtype conversion (f32 compute, f16/bf16 storage) and reductions.
#pragma once
#include <cuda_fp16.h>
#include <cuda_bf16.h>

// NVRTC has no <cmath>; define what the kernels use.
#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif

typedef unsigned long long u64;
typedef long long i64;

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float partial[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // partial[] may still be read by a previous call
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    const int nwarps = blockDim.x >> 5;
    v = lane < nwarps ? partial[lane] : 0.0f;
    return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v) {
    __shared__ float partial[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    const int nwarps = blockDim.x >> 5;
    v = lane < nwarps ? partial[lane] : -INFINITY;
    return warp_max(v);
}

// Packed variable-length sequences: cu[0..nseg] are cumulative offsets (cu[0] = 0, cu[nseg] = T).
// Sets [lo, hi) to the sequence holding token i (nseg = 0: the whole range [0, t)).
__device__ __forceinline__ void seq_bounds(const int* cu, int nseg, int i, int t, int& lo, int& hi) {
    if (nseg == 0) {
        lo = 0, hi = t;
        return;
    }
    int a = 0, b = nseg - 1;  // largest s with cu[s] <= i
    while (a < b) {
        const int m = (a + b + 1) >> 1;
        if (cu[m] <= i) a = m; else b = m - 1;
    }
    lo = cu[a], hi = cu[a + 1];
}

// Instantiate an entry point for each float storage type.
#define FOR_FLOAT_TYPES(M) M(f32, float) M(f16, __half) M(bf16, __nv_bfloat16)

#define GRID_STRIDE(i, n) \
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < (n); i += (u64)gridDim.x * blockDim.x)

// ---- Elementwise op semantics, shared by unary.cu, binary.cu, cast.cu and the generated
// fused kernels (the engine's fusion groups), so a fused chain computes what the separate
// kernels compute. Codes follow focus_graph::UnaryOp::ALL / BinaryOp::ALL / CmpOp::ALL.

enum UnaryOpCode {
    GELU, GELU_TANH, QUICK_GELU, SILU, SIGMOID, TANH, RELU, EXP, LOG,
    SQRT, RSQRT, NEG, ABS, SIN, COS, RECIP, SQUARE
};

__device__ __forceinline__ float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

__device__ __forceinline__ float unary_op(int op, float x) {
    switch (op) {
        case GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
        case GELU_TANH: return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
        case QUICK_GELU: return x * sigmoidf(1.702f * x);
        case SILU: return x * sigmoidf(x);
        case SIGMOID: return sigmoidf(x);
        case TANH: return tanhf(x);
        case RELU: return fmaxf(x, 0.0f);
        case EXP: return expf(x);
        case LOG: return logf(x);
        case SQRT: return sqrtf(x);
        case RSQRT: return rsqrtf(x);
        case NEG: return -x;
        case ABS: return fabsf(x);
        case SIN: return sinf(x);
        case COS: return cosf(x);
        case RECIP: return 1.0f / x;
        default: return x * x;  // SQUARE
    }
}

enum BinaryOpCode { ADD, SUB, MUL, DIV, MAX, MIN, POW };
enum CmpOpCode { EQ, NE, LT, LE, GT, GE };

// NaN propagates through max/min like torch.maximum / torch.minimum.
__device__ __forceinline__ float binary_op(int op, float a, float b) {
    switch (op) {
        case ADD: return a + b;
        case SUB: return a - b;
        case MUL: return a * b;
        case DIV: return a / b;
        case MAX: return (a != a || a > b) ? a : b;
        case MIN: return (a != a || a < b) ? a : b;
        default: return powf(a, b);
    }
}

// Wrapping i64 arithmetic through u64 (signed overflow is undefined in C++); division by zero
// and INT64_MIN / -1 give 0, negative exponents count as 0 (the CPU kernel's rules).
__device__ __forceinline__ i64 binary_op(int op, i64 a, i64 b) {
    const u64 ua = (u64)a, ub = (u64)b;
    switch (op) {
        case ADD: return (i64)(ua + ub);
        case SUB: return (i64)(ua - ub);
        case MUL: return (i64)(ua * ub);
        case DIV: return (b == 0 || (a == (i64)0x8000000000000000ull && b == -1)) ? 0 : a / b;
        case MAX: return a > b ? a : b;
        case MIN: return a < b ? a : b;
        default: {
            u64 r = 1, base = ua;
            for (u64 e = b < 0 ? 0 : (b > 0xffffffffll ? 0xffffffffull : (u64)b); e; e >>= 1) {
                if (e & 1) r *= base;
                base *= base;
            }
            return (i64)r;
        }
    }
}

template <typename C>
__device__ __forceinline__ bool cmp_op(int op, C a, C b) {
    switch (op) {
        case EQ: return a == b;
        case NE: return a != b;
        case LT: return a < b;
        case LE: return a <= b;
        case GT: return a > b;
        default: return a >= b;
    }
}

// Compute type per storage type: f32 for floats, i64 for integers.
__device__ __forceinline__ float load_c(float x) { return x; }
__device__ __forceinline__ float load_c(__half x) { return __half2float(x); }
__device__ __forceinline__ float load_c(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ i64 load_c(int x) { return x; }
__device__ __forceinline__ i64 load_c(i64 x) { return x; }
__device__ __forceinline__ i64 load_c(unsigned char x) { return x; }

template <typename T> __device__ __forceinline__ T store_c(float x) { return from_f32<T>(x); }
template <typename T> __device__ __forceinline__ T store_c(i64 x) { return (T)x; }

// ---- Dtype conversion rules (the CPU cast kernel's).

// Bool storage: one byte, 0 or 1 (a distinct type so conversions into it test != 0).
struct bool_t {
    unsigned char v;
};

// A value in flight: floats as f32, integers as i64.
struct Val {
    bool is_float;
    float f;
    i64 i;
};

__device__ __forceinline__ Val load_v(float x) { return {true, x, 0}; }
__device__ __forceinline__ Val load_v(__half x) { return {true, __half2float(x), 0}; }
__device__ __forceinline__ Val load_v(__nv_bfloat16 x) { return {true, __bfloat162float(x), 0}; }
__device__ __forceinline__ Val load_v(int x) { return {false, 0.0f, x}; }
__device__ __forceinline__ Val load_v(i64 x) { return {false, 0.0f, x}; }
__device__ __forceinline__ Val load_v(unsigned char x) { return {false, 0.0f, x}; }
__device__ __forceinline__ Val load_v(bool_t x) { return {false, 0.0f, x.v}; }

// Rust's `f as i64`: truncation toward zero, saturating, NaN → 0.
__device__ __forceinline__ i64 to_i64(const Val& v) {
    if (!v.is_float) return v.i;
    const float f = v.f;
    if (f != f) return 0;
    if (f >= 9.2233720368547758e18f) return (i64)0x7fffffffffffffffll;
    if (f <= -9.2233720368547758e18f) return (i64)0x8000000000000000ull;
    return (i64)f;
}

template <typename B> __device__ __forceinline__ B store_v(const Val& v);
template <> __device__ __forceinline__ float store_v<float>(const Val& v) { return v.is_float ? v.f : (float)v.i; }
template <> __device__ __forceinline__ __half store_v<__half>(const Val& v) {
    return v.is_float ? __float2half_rn(v.f) : __double2half((double)v.i);
}
template <> __device__ __forceinline__ __nv_bfloat16 store_v<__nv_bfloat16>(const Val& v) {
    return v.is_float ? __float2bfloat16_rn(v.f) : __double2bfloat16((double)v.i);
}
template <> __device__ __forceinline__ int store_v<int>(const Val& v) { return (int)to_i64(v); }
template <> __device__ __forceinline__ i64 store_v<i64>(const Val& v) { return to_i64(v); }
template <> __device__ __forceinline__ unsigned char store_v<unsigned char>(const Val& v) {
    return (unsigned char)to_i64(v);
}
template <> __device__ __forceinline__ bool_t store_v<bool_t>(const Val& v) {
    return {(unsigned char)(v.is_float ? (v.f != 0.0f || v.f != v.f) : v.i != 0)};
}
