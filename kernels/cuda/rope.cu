// Rotary embeddings on x [rows = (..., T, H), D], positions per token. The host passes the
// f32 frequency table computed exactly as the CPU kernel does, so angles match bit for bit.
// 1-D (Qwen2): dim i pairs with i + D/2, angle pos * freq[i], i < D/2.
// 2-D (Qwen2-VL ViT): F = D/4 freqs; dims [0, F) rotate by row * freq, [F, 2F) by col * freq,
// each paired with the dim D/2 above it.
#include "focus_common.cuh"

template <typename T, typename P>
__device__ void rope_impl(const T* __restrict__ x, const P* __restrict__ pos, const float* __restrict__ freq,
                          T* __restrict__ y, u64 rows, int heads, int seq, int dim, int two_d) {
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
        y[row * dim + i] = from_f32<T>(a * c - b * s);
        y[row * dim + i + half] = from_f32<T>(b * c + a * s);
    }
}

#define ROPE(name, T)                                                                                       \
    extern "C" __global__ void rope_i32_##name(const T* x, const int* pos, const float* freq, T* y, u64 rows, \
                                               int heads, int seq, int dim, int two_d) {                    \
        rope_impl<T, int>(x, pos, freq, y, rows, heads, seq, dim, two_d);                                   \
    }                                                                                                       \
    extern "C" __global__ void rope_i64_##name(const T* x, const i64* pos, const float* freq, T* y, u64 rows, \
                                               int heads, int seq, int dim, int two_d) {                    \
        rope_impl<T, i64>(x, pos, freq, y, rows, heads, seq, dim, two_d);                                   \
    }
FOR_FLOAT_TYPES(ROPE)
