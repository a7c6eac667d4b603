// Normalisations, one block per normalised row/group, statistics in f32.
#include "focus_common.cuh"

// HF Qwen2 RMSNorm: normalise in f32, round to the storage type, then scale by the weight.
template <typename T>
__device__ void rms_norm_impl(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, int cols,
                              float eps) {
    const T* xr = x + (u64)blockIdx.x * cols;
    T* yr = y + (u64)blockIdx.x * cols;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float v = to_f32(xr[c]);
        ss += v * v;
    }
    const float r = rsqrtf(block_sum(ss) / cols + eps);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float n = to_f32(from_f32<T>(to_f32(xr[c]) * r));
        yr[c] = from_f32<T>(w ? n * to_f32(w[c]) : n);
    }
}

// LayerNorm over the last axis: two passes (mean, then centred variance) for accuracy.
template <typename T>
__device__ void layer_norm_impl(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                                T* __restrict__ y, int cols, float eps) {
    const T* xr = x + (u64)blockIdx.x * cols;
    T* yr = y + (u64)blockIdx.x * cols;
    float s = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) s += to_f32(xr[c]);
    const float mean = block_sum(s) / cols;
    float v = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float d = to_f32(xr[c]) - mean;
        v += d * d;
    }
    const float r = rsqrtf(block_sum(v) / cols + eps);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        float o = (to_f32(xr[c]) - mean) * r;
        if (w) o *= to_f32(w[c]);
        if (b) o += to_f32(b[c]);
        yr[c] = from_f32<T>(o);
    }
}

// GroupNorm on channels-last x [N, S, C]: block (g, n) normalises S × C/G values; `silu`
// fuses the activation that UNet/VAE resnets apply next.
template <typename T>
__device__ void group_norm_impl(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                                T* __restrict__ y, int spatial, int channels, int groups, float eps, int silu) {
    const int g = blockIdx.x, n = blockIdx.y, cg = channels / groups;
    const u64 base = (u64)n * spatial * channels + (u64)g * cg;
    const u64 count = (u64)spatial * cg;
    float s = 0.0f;
    for (u64 i = threadIdx.x; i < count; i += blockDim.x) s += to_f32(x[base + (i / cg) * channels + i % cg]);
    const float mean = block_sum(s) / count;
    float v = 0.0f;
    for (u64 i = threadIdx.x; i < count; i += blockDim.x) {
        const float d = to_f32(x[base + (i / cg) * channels + i % cg]) - mean;
        v += d * d;
    }
    const float r = rsqrtf(block_sum(v) / count + eps);
    for (u64 i = threadIdx.x; i < count; i += blockDim.x) {
        const u64 off = base + (i / cg) * channels + i % cg;
        const int c = g * cg + (int)(i % cg);
        float o = (to_f32(x[off]) - mean) * r;
        if (w) o *= to_f32(w[c]);
        if (b) o += to_f32(b[c]);
        if (silu) o = o / (1.0f + expf(-o));
        y[off] = from_f32<T>(o);
    }
}

#define NORMS(name, T)                                                                                \
    extern "C" __global__ void rms_norm_##name(const T* x, const T* w, T* y, int cols, float eps) {     \
        rms_norm_impl<T>(x, w, y, cols, eps);                                                         \
    }                                                                                                 \
    extern "C" __global__ void layer_norm_##name(const T* x, const T* w, const T* b, T* y, int cols,    \
                                                 float eps) {                                         \
        layer_norm_impl<T>(x, w, b, y, cols, eps);                                                    \
    }                                                                                                 \
    extern "C" __global__ void group_norm_##name(const T* x, const T* w, const T* b, T* y, int spatial, \
                                                 int channels, int groups, float eps, int silu) {     \
        group_norm_impl<T>(x, w, b, y, spatial, channels, groups, eps, silu);                         \
    }
FOR_FLOAT_TYPES(NORMS)
