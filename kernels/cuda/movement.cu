// Data movement on raw elements (any dtype, by element size 1/2/4/8 bytes): permute, pad,
// concat-by-slab, slice, gather along an axis, and in-place writes into state buffers.
#include "focus_common.cuh"

#define MAX_RANK 8
struct Strides {
    int rank;
    u64 out_shape[MAX_RANK];
    u64 in_stride[MAX_RANK];  // input stride (elements) for each output dim
};

// out[i] = in[sum(coord_d(i) * in_stride[d])]: covers permute and strided slices.
template <typename E>
__device__ void gather_strided(const E* __restrict__ in, E* __restrict__ out, u64 n, Strides s, u64 in_offset) {
    GRID_STRIDE(i, n) {
        u64 rem = i, src = in_offset;
        for (int d = s.rank - 1; d >= 0; --d) {
            src += (rem % s.out_shape[d]) * s.in_stride[d];
            rem /= s.out_shape[d];
        }
        out[i] = in[src];
    }
}

// Constant padding: out coordinate c maps to input c - before (outside → value).
struct PadSpec {
    int rank;
    u64 out_shape[MAX_RANK];
    u64 in_shape[MAX_RANK];
    u64 before[MAX_RANK];
};

template <typename E>
__device__ void pad_impl(const E* __restrict__ in, E* __restrict__ out, u64 n, PadSpec p, E value) {
    GRID_STRIDE(i, n) {
        u64 rem = i, src = 0, stride = 1;
        bool inside = true;
        for (int d = p.rank - 1; d >= 0; --d) {
            const u64 c = rem % p.out_shape[d];
            rem /= p.out_shape[d];
            if (c < p.before[d] || c >= p.before[d] + p.in_shape[d]) inside = false;
            src += (c - p.before[d]) * stride;
            stride *= p.in_shape[d];
        }
        out[i] = inside ? in[src] : value;
    }
}

// Copy a [outer, len, inner] slab into [outer, cap, inner] at `offset` along the middle axis
// (concat pieces, KV-cache appends). `offset` is read on the device so a captured graph can
// replay with a new position; an offset that does not fit sets *error and writes nothing.
template <typename E>
__device__ void write_slab(const E* __restrict__ src, E* __restrict__ dst, u64 outer, u64 len, u64 inner, u64 cap,
                          const void* __restrict__ dev_offset, int offset_i64, u64 host_offset, int* error) {
    const long long off = !dev_offset ? (long long)host_offset
                          : offset_i64 ? ((const long long*)dev_offset)[0]
                                       : (long long)((const int*)dev_offset)[0];
    if (off < 0 || (u64)off + len > cap) {
        if (blockIdx.x == 0 && threadIdx.x == 0) *error = 1;
        return;
    }
    const u64 n = outer * len * inner;
    GRID_STRIDE(i, n) {
        const u64 o = i / (len * inner), r = i % (len * inner);
        dst[o * cap * inner + (u64)off * inner + r] = src[i];
    }
}

// NumPy take along one axis: x [outer, len, inner], idx [count] → out [outer, count, inner].
// Out-of-range indices set *error (checked by the host after the run) and write zeros.
template <typename E, typename I>
__device__ void take_impl(const E* __restrict__ x, const I* __restrict__ idx, E* __restrict__ out, u64 outer,
                          u64 len, u64 inner, u64 count, int* error) {
    const u64 n = outer * count * inner;
    GRID_STRIDE(i, n) {
        const u64 o = i / (count * inner), k = (i / inner) % count, r = i % inner;
        const long long j = (long long)idx[k];
        if (j < 0 || (u64)j >= len) {
            *error = 1;
            out[i] = E(0);
        } else {
            out[i] = x[(o * len + (u64)j) * inner + r];
        }
    }
}

#define MOVE(name, E)                                                                                      \
    extern "C" __global__ void gather_strided_##name(const E* in, E* out, u64 n, Strides s, u64 in_offset) { \
        gather_strided<E>(in, out, n, s, in_offset);                                                      \
    }                                                                                                     \
    extern "C" __global__ void pad_##name(const E* in, E* out, u64 n, PadSpec p, E value) {                 \
        pad_impl<E>(in, out, n, p, value);                                                                \
    }                                                                                                     \
    extern "C" __global__ void write_slab_##name(const E* src, E* dst, u64 outer, u64 len, u64 inner, u64 cap, \
                                                 const void* dev_offset, int offset_i64, u64 host_offset,  \
                                                 int* error) {                                            \
        write_slab<E>(src, dst, outer, len, inner, cap, dev_offset, offset_i64, host_offset, error);      \
    }                                                                                                     \
    extern "C" __global__ void take_i32_##name(const E* x, const int* idx, E* out, u64 outer, u64 len,      \
                                               u64 inner, u64 count, int* error) {                        \
        take_impl<E, int>(x, idx, out, outer, len, inner, count, error);                                  \
    }                                                                                                     \
    extern "C" __global__ void take_i64_##name(const E* x, const long long* idx, E* out, u64 outer, u64 len, \
                                               u64 inner, u64 count, int* error) {                        \
        take_impl<E, long long>(x, idx, out, outer, len, inner, count, error);                            \
    }
MOVE(b1, unsigned char)
MOVE(b2, unsigned short)
MOVE(b4, unsigned int)
MOVE(b8, unsigned long long)
