// Normalisations, one block per normalised row/group, statistics in f32.
#include "focus_common.cuh"

// Row element c of the normalised input: x, or with a residual r (a fused residual add) the sum
// rounded to the storage type, as the separate add kernel would have stored it.
template <typename T> __device__ __forceinline__ float norm_in(const T* xr, const T* rr, int c) {
    return rr ? to_f32(from_f32<T>(to_f32(xr[c]) + to_f32(rr[c]))) : to_f32(xr[c]);
}

// HF Qwen2 RMSNorm: normalise in f32, round to the storage type, then scale by the weight. With a
// residual r, normalises x + r and writes that sum to s (the residual stream) on the first pass.
template <typename T>
__device__ void rms_norm_impl(const T* __restrict__ x, const T* __restrict__ r, const T* __restrict__ w,
                              T* __restrict__ s, T* __restrict__ y, int cols, float eps) {
    const u64 row = (u64)blockIdx.x * cols;
    const T *xr = x + row, *rr = r ? r + row : nullptr;
    T* yr = y + row;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float v = norm_in(xr, rr, c);
        if (s) s[row + c] = from_f32<T>(v);
        ss += v * v;
    }
    const float rs = rsqrtf(block_sum(ss) / cols + eps);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float n = to_f32(from_f32<T>(norm_in(xr, rr, c) * rs));
        yr[c] = from_f32<T>(w ? n * to_f32(w[c]) : n);
    }
}

// LayerNorm over the last axis: two passes (mean, then centred variance) for accuracy; the
// residual as in rms_norm_impl.
template <typename T>
__device__ void layer_norm_impl(const T* __restrict__ x, const T* __restrict__ r, const T* __restrict__ w,
                                const T* __restrict__ b, T* __restrict__ s, T* __restrict__ y, int cols,
                                float eps) {
    const u64 row = (u64)blockIdx.x * cols;
    const T *xr = x + row, *rr = r ? r + row : nullptr;
    T* yr = y + row;
    float sum = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float v = norm_in(xr, rr, c);
        if (s) s[row + c] = from_f32<T>(v);
        sum += v;
    }
    const float mean = block_sum(sum) / cols;
    float var = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float d = norm_in(xr, rr, c) - mean;
        var += d * d;
    }
    const float rs = rsqrtf(block_sum(var) / cols + eps);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        float o = (norm_in(xr, rr, c) - mean) * rs;
        if (w) o *= to_f32(w[c]);
        if (b) o += to_f32(b[c]);
        yr[c] = from_f32<T>(o);
    }
}

// GroupNorm on channels-last x [N, S, C] in two launches, so a UNet's 32 groups of one image
// still fill the GPU: the S rows of group (g, n) are cut into `chunks` of `chunk_rows`.
// 1. group_norm_stats: block (g, n, z) computes count, mean and M2 of its chunk (two passes over
//    the chunk, from the chunk's own mean) into stats[(n, g, z)].
// 2. group_norm_apply: block (g, n, z) merges the chunk statistics of (g, n) (Chan et al.'s
//    pairwise update, in chunk order, so every block gets the same numbers) and normalises its
//    chunk; `silu` fuses the activation UNet/VAE resnets apply next. With `ms`/`mb` (SpatialNorm)
//    the result is modulated by `· ms + mb` read at the nearest pixel of their [N, mh, mw, C]
//    maps (x is [N, height, width, C]; `sy`/`sx` = PyTorch's f32 nearest scales mh/height, mw/width).
template <typename T>
__device__ void group_norm_stats_impl(const T* __restrict__ x, float* __restrict__ stats, int spatial, int channels,
                                      int groups, int chunk_rows) {
    const int g = blockIdx.x, n = blockIdx.y, z = blockIdx.z, cg = channels / groups;
    const int r0 = z * chunk_rows, r1 = min(spatial, r0 + chunk_rows);
    const u64 base = ((u64)n * spatial + r0) * channels + (u64)g * cg;
    const u64 count = r1 > r0 ? (u64)(r1 - r0) * cg : 0;
    float s = 0.0f;
    for (u64 i = threadIdx.x; i < count; i += blockDim.x) s += to_f32(x[base + (i / cg) * channels + i % cg]);
    const float mean = count ? block_sum(s) / count : 0.0f;
    float v = 0.0f;
    for (u64 i = threadIdx.x; i < count; i += blockDim.x) {
        const float d = to_f32(x[base + (i / cg) * channels + i % cg]) - mean;
        v += d * d;
    }
    const float m2 = block_sum(v);
    if (threadIdx.x == 0) {
        float* st = stats + (((u64)n * groups + g) * gridDim.z + z) * 3;
        st[0] = (float)count;
        st[1] = mean;
        st[2] = m2;
    }
}

template <typename T>
__device__ void group_norm_apply_impl(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                                      const float* __restrict__ stats, T* __restrict__ y, int spatial, int channels,
                                      int groups, int chunk_rows, float eps, int silu, const T* __restrict__ ms,
                                      const T* __restrict__ mb, int width, int mh, int mw, float sy, float sx) {
    const int g = blockIdx.x, n = blockIdx.y, z = blockIdx.z, cg = channels / groups;
    const float* st = stats + ((u64)n * groups + g) * gridDim.z * 3;
    float cnt = 0.0f, mean = 0.0f, m2 = 0.0f;
    for (int k = 0; k < (int)gridDim.z; ++k) {
        const float nb = st[3 * k], mb = st[3 * k + 1], m2b = st[3 * k + 2];
        if (nb == 0.0f) continue;
        const float tot = cnt + nb, delta = mb - mean;
        mean += delta * (nb / tot);
        m2 += m2b + delta * delta * (cnt * nb / tot);
        cnt = tot;
    }
    const float r = rsqrtf(m2 / fmaxf(cnt, 1.0f) + eps);
    const int r0 = z * chunk_rows, r1 = min(spatial, r0 + chunk_rows);
    const u64 base = ((u64)n * spatial + r0) * channels + (u64)g * cg;
    const u64 count = r1 > r0 ? (u64)(r1 - r0) * cg : 0;
    for (u64 i = threadIdx.x; i < count; i += blockDim.x) {
        const u64 off = base + (i / cg) * channels + i % cg;
        const int c = g * cg + (int)(i % cg);
        float o = (to_f32(x[off]) - mean) * r;
        if (w) o *= to_f32(w[c]);
        if (b) o += to_f32(b[c]);
        if (ms) {
            const int pix = r0 + (int)(i / cg), py = pix / width, px = pix % width;
            const int iy = min((int)floorf(__fmul_rn((float)py, sy)), mh - 1);
            const int ix = min((int)floorf(__fmul_rn((float)px, sx)), mw - 1);
            const u64 src = (((u64)n * mh + iy) * mw + ix) * channels + c;
            o = o * to_f32(ms[src]) + to_f32(mb[src]);
        }
        if (silu) o = o / (1.0f + expf(-o));
        y[off] = from_f32<T>(o);
    }
}

#define NORMS(name, T)                                                                                \
    extern "C" __global__ void rms_norm_##name(const T* x, const T* r, const T* w, T* s, T* y, int cols, \
                                               float eps) {                                           \
        rms_norm_impl<T>(x, r, w, s, y, cols, eps);                                                   \
    }                                                                                                 \
    extern "C" __global__ void layer_norm_##name(const T* x, const T* r, const T* w, const T* b, T* s,  \
                                                 T* y, int cols, float eps) {                         \
        layer_norm_impl<T>(x, r, w, b, s, y, cols, eps);                                              \
    }                                                                                                 \
    extern "C" __global__ void group_norm_stats_##name(const T* x, float* stats, int spatial, int channels, \
                                                       int groups, int chunk_rows) {                   \
        group_norm_stats_impl<T>(x, stats, spatial, channels, groups, chunk_rows);                    \
    }                                                                                                 \
    extern "C" __global__ void group_norm_apply_##name(const T* x, const T* w, const T* b, const float* stats, \
                                                       T* y, int spatial, int channels, int groups,   \
                                                       int chunk_rows, float eps, int silu, const T* ms, \
                                                       const T* mb, int width, int mh, int mw, float sy,  \
                                                       float sx) {                                       \
        group_norm_apply_impl<T>(x, w, b, stats, y, spatial, channels, groups, chunk_rows, eps, silu, ms, mb,  \
                                 width, mh, mw, sy, sx);                                                     \
    }
FOR_FLOAT_TYPES(NORMS)
