// Broadcasting binary ops and comparisons. The host collapses dims and passes per-input
// strides (0 on broadcast dims). `op` follows focus_graph::BinaryOp::ALL / CmpOp::ALL order.
#include "focus_common.cuh"

#define MAX_RANK 8
struct Bcast {
    int rank;
    u64 shape[MAX_RANK];
    u64 sa[MAX_RANK];
    u64 sb[MAX_RANK];
};

enum BinaryOpCode { ADD, SUB, MUL, DIV, MAX, MIN, POW };
enum CmpOpCode { EQ, NE, LT, LE, GT, GE };

__device__ __forceinline__ void offsets(const Bcast& s, u64 i, u64& ia, u64& ib) {
    ia = 0;
    ib = 0;
    for (int d = s.rank - 1; d >= 0; --d) {
        const u64 c = i % s.shape[d];
        i /= s.shape[d];
        ia += c * s.sa[d];
        ib += c * s.sb[d];
    }
}

__device__ __forceinline__ float binary_op(int op, float a, float b) {
    switch (op) {
        case ADD: return a + b;
        case SUB: return a - b;
        case MUL: return a * b;
        case DIV: return a / b;
        case MAX: return fmaxf(a, b);
        case MIN: return fminf(a, b);
        default: return powf(a, b);
    }
}

__device__ __forceinline__ bool cmp_op(int op, float a, float b) {
    switch (op) {
        case EQ: return a == b;
        case NE: return a != b;
        case LT: return a < b;
        case LE: return a <= b;
        case GT: return a > b;
        default: return a >= b;
    }
}

template <typename T>
__device__ void binary_impl(const T* a, const T* b, T* y, u64 n, int op, Bcast s) {
    GRID_STRIDE(i, n) {
        u64 ia, ib;
        offsets(s, i, ia, ib);
        y[i] = from_f32<T>(binary_op(op, to_f32(a[ia]), to_f32(b[ib])));
    }
}

template <typename T>
__device__ void compare_impl(const T* a, const T* b, unsigned char* y, u64 n, int op, Bcast s) {
    GRID_STRIDE(i, n) {
        u64 ia, ib;
        offsets(s, i, ia, ib);
        y[i] = cmp_op(op, to_f32(a[ia]), to_f32(b[ib])) ? 1 : 0;
    }
}

#define BINARY(name, T)                                                                        \
    extern "C" __global__ void binary_##name(const T* a, const T* b, T* y, u64 n, int op, Bcast s) { \
        binary_impl<T>(a, b, y, n, op, s);                                                     \
    }                                                                                          \
    extern "C" __global__ void compare_##name(const T* a, const T* b, unsigned char* y, u64 n, int op, \
                                              Bcast s) {                                       \
        compare_impl<T>(a, b, y, n, op, s);                                                    \
    }
FOR_FLOAT_TYPES(BINARY)
