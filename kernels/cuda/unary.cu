// Elementwise unary ops. `op` follows focus_graph::UnaryOp::ALL order.
#include "focus_common.cuh"

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

template <typename T>
__device__ void unary_impl(const T* __restrict__ x, T* __restrict__ y, u64 n, int op) {
    GRID_STRIDE(i, n) { y[i] = from_f32<T>(unary_op(op, to_f32(x[i]))); }
}

#define UNARY(name, T) \
    extern "C" __global__ void unary_##name(const T* x, T* y, u64 n, int op) { unary_impl<T>(x, y, n, op); }
FOR_FLOAT_TYPES(UNARY)
