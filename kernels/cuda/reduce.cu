// Reductions over axes (f32 accumulation), arg-reductions and top-k (i64 indices, ties to the
// lowest index, NaN as the extreme value like the CPU kernels), and torch.gather.
#include "focus_common.cuh"

#define FULL_MASK 0xffffffffu
#define NO_INDEX 0x7fffffff

// Reduce op codes (the planner passes the same numbers).
#define RED_SUM 0
#define RED_MEAN 1
#define RED_MAX 2
#define RED_MIN 3

__device__ __forceinline__ float red_init(int op) {
    return op == RED_MAX ? -INFINITY : op == RED_MIN ? INFINITY : 0.0f;
}

// Folds v into acc. Max/min keep a NaN once seen (from either side), so this also merges partials.
__device__ __forceinline__ float red_step(int op, float acc, float v) {
    if (op == RED_MAX) return (v > acc || v != v) ? v : acc;
    if (op == RED_MIN) return (v < acc || v != v) ? v : acc;
    return acc + v;
}

__device__ __forceinline__ float red_final(int op, float acc, u64 count) {
    return op == RED_MEAN ? acc / (float)count : acc;
}

__device__ __forceinline__ float warp_red(int op, float v) {
    for (int o = 16; o > 0; o >>= 1) v = red_step(op, v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

// [rows, len] → [rows]: one block per row (blockDim.x a multiple of 32).
template <typename T>
__device__ void reduce_rows_impl(const T* __restrict__ x, T* __restrict__ y, u64 len, int op) {
    __shared__ float partial[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const T* xr = x + (u64)blockIdx.x * len;
    float acc = red_init(op);
    for (u64 i = threadIdx.x; i < len; i += blockDim.x) acc = red_step(op, acc, to_f32(xr[i]));
    acc = warp_red(op, acc);
    if (lane == 0) partial[warp] = acc;
    __syncthreads();
    if (warp == 0) {
        acc = warp_red(op, lane < (int)(blockDim.x >> 5) ? partial[lane] : red_init(op));
        if (lane == 0) y[blockIdx.x] = from_f32<T>(red_final(op, acc, len));
    }
}

// [outer, len, inner] → [outer, inner]: block (32, ys) covers 32 consecutive inner positions
// (coalesced) of one outer index, the ys rows of threads split `len`. Grid: outer * tiles.
template <typename T>
__device__ void reduce_cols_impl(const T* __restrict__ x, T* __restrict__ y, u64 len, u64 inner, u64 tiles,
                                 int op) {
    __shared__ float partial[32][33];
    const u64 o = blockIdx.x / tiles;
    const u64 j = (blockIdx.x % tiles) * 32 + threadIdx.x;
    float acc = red_init(op);
    if (j < inner) {
        const T* xc = x + o * len * inner + j;
        for (u64 r = threadIdx.y; r < len; r += blockDim.y) acc = red_step(op, acc, to_f32(xc[r * inner]));
    }
    partial[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && j < inner) {
        for (int s = 1; s < (int)blockDim.y; ++s) acc = red_step(op, acc, partial[s][threadIdx.x]);
        y[o * inner + j] = from_f32<T>(red_final(op, acc, len));
    }
}

// Axes that are not one contiguous run: the input as alternating kept/reduced dims (merged
// runs, so at most 8 of each), with their element strides in the input.
#define MAX_RANK 8
struct ReduceDims {
    int nkept;
    int nred;
    u64 kept_shape[MAX_RANK];
    u64 kept_stride[MAX_RANK];
    u64 red_shape[MAX_RANK];
    u64 red_stride[MAX_RANK];
};

// One warp per output; lanes split the reduced index space. Loops over the dims are unrolled
// with guards so the struct stays in parameter space.
template <typename T>
__device__ void reduce_strided_impl(const T* __restrict__ x, T* __restrict__ y, u64 nout, u64 nred,
                                    const ReduceDims& d, int op) {
    const int lane = threadIdx.x & 31;
    const u64 warps = (u64)gridDim.x * (blockDim.x >> 5);
    for (u64 o = (blockIdx.x * (u64)blockDim.x + threadIdx.x) >> 5; o < nout; o += warps) {
        u64 rem = o, base = 0;
#pragma unroll
        for (int k = MAX_RANK - 1; k >= 0; --k) {
            if (k < d.nkept) {
                base += (rem % d.kept_shape[k]) * d.kept_stride[k];
                rem /= d.kept_shape[k];
            }
        }
        float acc = red_init(op);
        for (u64 r = lane; r < nred; r += 32) {
            u64 rr = r, off = base;
#pragma unroll
            for (int k = MAX_RANK - 1; k >= 0; --k) {
                if (k < d.nred) {
                    off += (rr % d.red_shape[k]) * d.red_stride[k];
                    rr /= d.red_shape[k];
                }
            }
            acc = red_step(op, acc, to_f32(x[off]));
        }
        acc = warp_red(op, acc);
        if (lane == 0) y[o] = from_f32<T>(red_final(op, acc, nred));
    }
}

// Whether (v, i) comes before (bv, bi): NaN first (lowest index among NaNs), then the larger
// (argmax) or smaller (argmin) value, then the lower index. A strict total order, so merging
// partial winners in any order gives the CPU's sequential answer.
__device__ __forceinline__ bool arg_better(int is_max, float v, int i, float bv, int bi) {
    const bool n = v != v, bn = bv != bv;
    if (n || bn) return n && (!bn || i < bi);
    if (v == bv) return i < bi;
    return is_max ? v > bv : v < bv;
}

__device__ __forceinline__ void warp_arg(int is_max, float& bv, int& bi) {
    for (int o = 16; o > 0; o >>= 1) {
        const float v = __shfl_xor_sync(FULL_MASK, bv, o);
        const int i = __shfl_xor_sync(FULL_MASK, bi, o);
        if (arg_better(is_max, v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
}

// [rows, len] → i64 [rows]: one block per row (greedy sampling over a vocabulary).
template <typename T>
__device__ void argreduce_rows_impl(const T* __restrict__ x, i64* __restrict__ y, int len, int is_max) {
    __shared__ float sv[32];
    __shared__ int si[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const T* xr = x + (u64)blockIdx.x * len;
    const float init = is_max ? -INFINITY : INFINITY;
    float bv = init;
    int bi = NO_INDEX;
    for (int i = threadIdx.x; i < len; i += blockDim.x) {
        const float v = to_f32(xr[i]);
        if (arg_better(is_max, v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
    warp_arg(is_max, bv, bi);
    if (lane == 0) {
        sv[warp] = bv;
        si[warp] = bi;
    }
    __syncthreads();
    if (warp == 0) {
        const bool live = lane < (int)(blockDim.x >> 5);
        bv = live ? sv[lane] : init;
        bi = live ? si[lane] : NO_INDEX;
        warp_arg(is_max, bv, bi);
        if (lane == 0) y[blockIdx.x] = bi;
    }
}

// [outer, len, inner] → i64 [outer, inner] for inner > 1: one thread per column, in order.
template <typename T>
__device__ void argreduce_cols_impl(const T* __restrict__ x, i64* __restrict__ y, int len, u64 inner, u64 ncols,
                                    int is_max) {
    GRID_STRIDE(c, ncols) {
        const T* xc = x + (c / inner) * len * inner + c % inner;
        float bv = is_max ? -INFINITY : INFINITY;
        int bi = NO_INDEX;
        for (int i = 0; i < len; ++i) {
            const float v = to_f32(xc[(u64)i * inner]);
            if (arg_better(is_max, v, i, bv, bi)) {
                bv = v;
                bi = i;
            }
        }
        y[c] = bi;
    }
}

// Order-preserving u32 key: larger value → larger key, every NaN the largest key, -0 == +0
// (the CPU's partial_cmp order, which then breaks ties by index).
__device__ __forceinline__ unsigned order_key(float f) {
    if (f != f) return 0xffffffffu;
    const unsigned b = __float_as_uint(f == 0.0f ? 0.0f : f);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

#define TOPK_MAX 1024

// Top-k of one line of n keys `load(t)` (one block per line, blockDim.x a multiple of 32):
// radix-select the k-th largest key T over 4 byte-wide passes, collect the keys above T and the
// lowest-positioned keys equal to T (exactly k), rank those by (key desc, position asc) and
// `emit(rank, key, position)`.
template <typename Load, typename Emit>
__device__ void topk_core(int n, int k, Load load, Emit emit) {
    __shared__ unsigned hist[256];
    __shared__ unsigned cand_key[TOPK_MAX];
    __shared__ int cand_idx[TOPK_MAX];
    __shared__ unsigned warp_count[32];
    __shared__ unsigned s_prefix, s_remaining, s_gt;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;

    // Invariant: `remaining` (>= 1) of the k largest have the key bits selected so far
    // (prefix under mask), and at least that many keys match it.
    unsigned prefix = 0, mask = 0, remaining = k;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int b = threadIdx.x; b < 256; b += blockDim.x) hist[b] = 0;
        __syncthreads();
        for (int base = 0; base < n; base += blockDim.x) {  // uniform trip count for the warp vote
            const int t = base + threadIdx.x;
            unsigned bin = 256;  // not counted
            if (t < n) {
                const unsigned key = load(t);
                if ((key & mask) == prefix) bin = (key >> shift) & 255u;
            }
            const unsigned peers = __match_any_sync(FULL_MASK, bin);
            if (bin < 256 && lane == __ffs(peers) - 1) atomicAdd(&hist[bin], (unsigned)__popc(peers));
        }
        __syncthreads();
        if (warp == 0) {
            // Lane l holds bins 255-8l down to 248-8l; a scan from the top finds the bin that
            // holds the remaining-th largest.
            unsigned c[8], sum = 0;
#pragma unroll
            for (int q = 0; q < 8; ++q) {
                c[q] = hist[255 - 8 * lane - q];
                sum += c[q];
            }
            unsigned incl = sum;
            for (int off = 1; off < 32; off <<= 1) {
                const unsigned v = __shfl_up_sync(FULL_MASK, incl, off);
                if (lane >= off) incl += v;
            }
            unsigned above = incl - sum;
            if (above < remaining && remaining <= incl) {
                bool found = false;
#pragma unroll
                for (int q = 0; q < 8; ++q) {
                    if (!found && remaining <= above + c[q]) {
                        found = true;
                        s_prefix = prefix | ((unsigned)(255 - 8 * lane - q) << shift);
                        s_remaining = remaining - above;
                    }
                    above += c[q];
                }
            }
        }
        __syncthreads();
        prefix = s_prefix;
        remaining = s_remaining;
        mask |= 255u << shift;
    }

    // prefix is now the k-th largest key; k - remaining keys are above it.
    const unsigned kth = prefix, n_gt = k - remaining;
    if (threadIdx.x == 0) s_gt = 0;
    __syncthreads();
    unsigned eq_seen = 0;  // block-uniform: keys equal to kth before this chunk
    for (int base = 0; base < n; base += blockDim.x) {
        const int t = base + threadIdx.x;
        const unsigned key = t < n ? load(t) : 0u;
        const bool eq = t < n && key == kth;
        if (t < n && key > kth) {
            const unsigned p = atomicAdd(&s_gt, 1u);
            cand_key[p] = key;
            cand_idx[p] = t;
        }
        if (eq_seen < remaining) {  // ties in index order, until enough are taken
            const unsigned ball = __ballot_sync(FULL_MASK, eq);
            if (lane == 0) warp_count[warp] = __popc(ball);
            __syncthreads();
            unsigned before = eq_seen + __popc(ball & ((1u << lane) - 1u)), total = eq_seen;
            for (int w = 0; w < nwarps; ++w) {
                if (w < warp) before += warp_count[w];
                total += warp_count[w];
            }
            if (eq && before < remaining) {
                cand_key[n_gt + before] = key;
                cand_idx[n_gt + before] = t;
            }
            eq_seen = total;
            __syncthreads();  // warp_count is rewritten by the next chunk
        }
    }
    __syncthreads();
    for (int c = threadIdx.x; c < k; c += blockDim.x) {
        const unsigned key = cand_key[c];
        const int idx = cand_idx[c];
        int rank = 0;
        for (int m = 0; m < k; ++m) {
            const unsigned km = cand_key[m];
            rank += km > key || (km == key && cand_idx[m] < idx);
        }
        emit(rank, key, idx);
    }
}


template <typename T>
__device__ void topk_impl(const T* __restrict__ x, i64* __restrict__ y, int n, int k, u64 inner) {
    const u64 o = blockIdx.x / inner, j = blockIdx.x % inner;
    const T* xl = x + o * n * inner + j;
    i64* yl = y + o * k * inner + j;
    topk_core(n, k, [&](int t) { return order_key(to_f32(xl[(u64)t * inner])); },
              [&](int rank, unsigned, int idx) { yl[(u64)rank * inner] = idx; });
}

// Long rows (a vocabulary of logits) in two launches, so the whole GPU reads the row:
// 1. block (c, r) keeps the top min(k, len) of chunk c of row r as (key, index) in the row's
//    slots [c·k, (c+1)·k), ranked, the rest padded with key 0 / index INT_MAX;
// 2. one block per row takes the top k of its slots. Equal keys sit in index order there
//    (chunks in order, each ranked by index), so ties still go to the lowest index.
template <typename T>
__device__ void topk_chunks_impl(const T* __restrict__ x, unsigned* __restrict__ keys, int* __restrict__ idxs,
                                 int n, int k, int chunk) {
    const int c = blockIdx.x, r = blockIdx.y, base = c * chunk, len = min(chunk, n - base), kc = min(k, len);
    const T* xr = x + (u64)r * n + base;
    unsigned* kr = keys + ((u64)r * gridDim.x + c) * k;
    int* ir = idxs + ((u64)r * gridDim.x + c) * k;
    topk_core(len, kc, [&](int t) { return order_key(to_f32(xr[t])); },
              [&](int rank, unsigned key, int idx) {
                  kr[rank] = key;
                  ir[rank] = base + idx;
              });
    for (int p = kc + threadIdx.x; p < k; p += blockDim.x) {
        kr[p] = 0u;
        ir[p] = 0x7fffffff;
    }
}

extern "C" __global__ void topk_merge(const unsigned* __restrict__ keys, const int* __restrict__ idxs,
                                      i64* __restrict__ y, int m, int k) {
    const u64 r = blockIdx.x;
    const unsigned* kr = keys + r * m;
    const int* ir = idxs + r * m;
    topk_core(m, k, [&](int t) { return kr[t]; }, [&](int rank, unsigned, int pos) { y[r * k + rank] = ir[pos]; });
}

#define REDUCE(name, T)                                                                                      \
    extern "C" __global__ void reduce_rows_##name(const T* x, T* y, u64 len, int op) {                         \
        reduce_rows_impl<T>(x, y, len, op);                                                                  \
    }                                                                                                        \
    extern "C" __global__ void reduce_cols_##name(const T* x, T* y, u64 len, u64 inner, u64 tiles, int op) {   \
        reduce_cols_impl<T>(x, y, len, inner, tiles, op);                                                    \
    }                                                                                                        \
    extern "C" __global__ void reduce_strided_##name(const T* x, T* y, u64 nout, u64 nred, ReduceDims d,       \
                                                     int op) {                                               \
        reduce_strided_impl<T>(x, y, nout, nred, d, op);                                                     \
    }                                                                                                        \
    extern "C" __global__ void argreduce_rows_##name(const T* x, i64* y, int len, int is_max) {                \
        argreduce_rows_impl<T>(x, y, len, is_max);                                                           \
    }                                                                                                        \
    extern "C" __global__ void argreduce_cols_##name(const T* x, i64* y, int len, u64 inner, u64 ncols,        \
                                                     int is_max) {                                           \
        argreduce_cols_impl<T>(x, y, len, inner, ncols, is_max);                                             \
    }                                                                                                        \
    extern "C" __global__ void topk_##name(const T* x, i64* y, int n, int k, u64 inner) {                     \
        topk_impl<T>(x, y, n, k, inner);                                                                     \
    }                                                                                                        \
    extern "C" __global__ void topk_chunks_##name(const T* x, unsigned* keys, int* idxs, int n, int k,         \
                                                  int chunk) {                                               \
        topk_chunks_impl<T>(x, keys, idxs, n, k, chunk);                                                     \
    }
FOR_FLOAT_TYPES(REDUCE)

// torch.gather on raw elements: x [outer, n, inner], idx/out [outer, m, inner]. Out-of-range
// indices set *error (checked by the host after the run) and write zeros.
template <typename E, typename I>
__device__ void take_along_impl(const E* __restrict__ x, const I* __restrict__ idx, E* __restrict__ out, u64 total,
                                u64 n, u64 m, u64 inner, int* error) {
    GRID_STRIDE(p, total) {
        const long long t = (long long)idx[p];
        if (t < 0 || (u64)t >= n) {
            *error = 1;
            out[p] = E(0);
        } else {
            out[p] = x[((p / (m * inner)) * n + (u64)t) * inner + p % inner];
        }
    }
}

#define TAKE_ALONG(name, E)                                                                                   \
    extern "C" __global__ void take_along_i32_##name(const E* x, const int* idx, E* out, u64 total, u64 n,      \
                                                     u64 m, u64 inner, int* error) {                           \
        take_along_impl<E, int>(x, idx, out, total, n, m, inner, error);                                      \
    }                                                                                                         \
    extern "C" __global__ void take_along_i64_##name(const E* x, const long long* idx, E* out, u64 total,       \
                                                     u64 n, u64 m, u64 inner, int* error) {                    \
        take_along_impl<E, long long>(x, idx, out, total, n, m, inner, error);                                \
    }
TAKE_ALONG(b1, unsigned char)
TAKE_ALONG(b2, unsigned short)
TAKE_ALONG(b4, unsigned int)
TAKE_ALONG(b8, unsigned long long)
