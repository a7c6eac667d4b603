// Rotary embeddings on x [rows = (..., T, H), D], positions per token. The host passes the
// f32 frequency table computed exactly as the CPU kernel does, so angles match bit for bit.
// 1-D (Qwen2): dim i pairs with i + D/2, angle pos * freq[i], i < D/2.
// 2-D (Qwen2-VL ViT): F = D/4 freqs; dims [0, F) rotate by row * freq, [F, 2F) by col * freq,
// each paired with the dim D/2 above it.
#include "focus_common.cuh"

// Where rotated element i (of x's rows·dim) goes: into y at i, or (KV-cache append fused in) into
// the cache [outer, cap, inner] at position `off` of the middle axis, x being [outer, len, inner].
struct RopeDst {
    u64 len_inner, cap_inner, off_inner;  // len·inner, cap·inner, off·inner (0, 0, 0: plain)
    __device__ __forceinline__ u64 operator()(u64 i) const {
        return len_inner ? (i / len_inner) * cap_inner + off_inner + i % len_inner : i;
    }
};

template <typename T, typename P>
__device__ void rope_impl(const T* __restrict__ x, const P* __restrict__ pos, const float* __restrict__ freq,
                          T* __restrict__ y, u64 rows, int heads, int seq, int dim, int two_d, RopeDst dst) {
    const int half = dim / 2;
    GRID_STRIDE(k, rows * half) {
        const u64 row = k / half;
        const int i = (int)(k % half);
        const int t = (int)((row / heads) % seq);
        float angle;
        if (two_d) {
            const int f = dim / 4;
            angle = (i < f) ? (float)pos[2 * t] * freq[i] : (float)pos[2 * t + 1] * freq[i - f];
        } else {
            angle = (float)pos[t] * freq[i];
        }
        float s, c;
        sincosf(angle, &s, &c);
        const T* xr = x + row * dim;
        const float a = to_f32(xr[i]), b = to_f32(xr[i + half]);
        y[dst(row * dim + i)] = from_f32<T>(a * c - b * s);
        y[dst(row * dim + i + half)] = from_f32<T>(b * c + a * s);
    }
}

// RoPE of k written straight into the KV cache at the device-side offset (the engine's fused
// Rope -> WriteSlice pair): x [outer, len = seq, inner = heads·dim], cache [outer, cap, inner]; an
// offset that does not fit sets *error and writes nothing, as write_slab does.
template <typename T, typename P>
__device__ void rope_write_impl(const T* x, const P* pos, const float* freq, T* cache, u64 rows, int heads, int seq,
                                int dim, int two_d, u64 cap, const void* dev_offset, int offset_i64, int* error) {
    const long long off =
        offset_i64 ? ((const long long*)dev_offset)[0] : (long long)((const int*)dev_offset)[0];
    if (off < 0 || (u64)off + seq > cap) {
        if (blockIdx.x == 0 && threadIdx.x == 0) *error = 1;
        return;
    }
    const u64 inner = (u64)heads * dim;
    rope_impl<T, P>(x, pos, freq, cache, rows, heads, seq, dim, two_d,
                    RopeDst{(u64)seq * inner, cap * inner, (u64)off * inner});
}

#define ROPE(name, T)                                                                                       \
    extern "C" __global__ void rope_i32_##name(const T* x, const int* pos, const float* freq, T* y, u64 rows, \
                                               int heads, int seq, int dim, int two_d) {                    \
        rope_impl<T, int>(x, pos, freq, y, rows, heads, seq, dim, two_d, RopeDst{0, 0, 0});                 \
    }                                                                                                       \
    extern "C" __global__ void rope_i64_##name(const T* x, const i64* pos, const float* freq, T* y, u64 rows, \
                                               int heads, int seq, int dim, int two_d) {                    \
        rope_impl<T, i64>(x, pos, freq, y, rows, heads, seq, dim, two_d, RopeDst{0, 0, 0});                 \
    }                                                                                                       \
    extern "C" __global__ void rope_write_i32_##name(const T* x, const int* pos, const float* freq, T* cache, \
                                                     u64 rows, int heads, int seq, int dim, int two_d, u64 cap, \
                                                     const void* offset, int offset_i64, int* error) {       \
        rope_write_impl<T, int>(x, pos, freq, cache, rows, heads, seq, dim, two_d, cap, offset, offset_i64, error); \
    }                                                                                                       \
    extern "C" __global__ void rope_write_i64_##name(const T* x, const i64* pos, const float* freq, T* cache, \
                                                     u64 rows, int heads, int seq, int dim, int two_d, u64 cap, \
                                                     const void* offset, int offset_i64, int* error) {       \
        rope_write_impl<T, i64>(x, pos, freq, cache, rows, heads, seq, dim, two_d, cap, offset, offset_i64, error); \
    }
FOR_FLOAT_TYPES(ROPE)
