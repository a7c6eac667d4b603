// Broadcasting binary ops, comparisons and where. The host collapses dims and passes per-input
// element strides (0 on broadcast dims). `op` follows focus_graph::BinaryOp::ALL / CmpOp::ALL
// order. Floats compute in f32; integers in i64 with wrapping arithmetic, like the CPU kernels.
#include "focus_common.cuh"

#define MAX_RANK 8
struct Bcast {
    int rank;
    u64 shape[MAX_RANK];
    u64 sa[MAX_RANK];
    u64 sb[MAX_RANK];
};

struct Bcast3 {
    int rank;
    u64 shape[MAX_RANK];
    u64 sc[MAX_RANK];
    u64 sa[MAX_RANK];
    u64 sb[MAX_RANK];
};

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

template <typename T>
__device__ void binary_impl(const T* a, const T* b, T* y, u64 n, int op, Bcast s) {
    GRID_STRIDE(i, n) {
        u64 ia, ib;
        offsets(s, i, ia, ib);
        y[i] = store_c<T>(binary_op(op, load_c(a[ia]), load_c(b[ib])));
    }
}

template <typename T>
__device__ void compare_impl(const T* a, const T* b, unsigned char* y, u64 n, int op, Bcast s) {
    GRID_STRIDE(i, n) {
        u64 ia, ib;
        offsets(s, i, ia, ib);
        y[i] = cmp_op(op, load_c(a[ia]), load_c(b[ib])) ? 1 : 0;
    }
}

// where(cond, a, b) on raw elements of any dtype.
template <typename E>
__device__ void where_impl(const unsigned char* c, const E* a, const E* b, E* y, u64 n, Bcast3 s) {
    GRID_STRIDE(i, n) {
        u64 r = i, ic = 0, ia = 0, ib = 0;
        for (int d = s.rank - 1; d >= 0; --d) {
            const u64 k = r % s.shape[d];
            r /= s.shape[d];
            ic += k * s.sc[d];
            ia += k * s.sa[d];
            ib += k * s.sb[d];
        }
        y[i] = c[ic] ? a[ia] : b[ib];
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
BINARY(i32, int)
BINARY(i64, i64)
BINARY(u8, unsigned char)

#define WHERE(name, E)                                                                                   \
    extern "C" __global__ void where_##name(const unsigned char* c, const E* a, const E* b, E* y, u64 n, \
                                            Bcast3 s) {                                                  \
        where_impl<E>(c, a, b, y, n, s);                                                                 \
    }
WHERE(b1, unsigned char)
WHERE(b2, unsigned short)
WHERE(b4, unsigned int)
WHERE(b8, unsigned long long)
