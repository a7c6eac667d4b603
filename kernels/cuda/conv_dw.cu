// Depthwise convolution, channels-last (ConvNeXt 7×7): x [N, H, W, C], w [C, KH, KW] (the
// engine's [C, KH, KW, 1] layout), optional bias and residual. Threads run along C so loads
// of x and w are coalesced; each thread produces one (n, y, x, c) output.
#include "focus_common.cuh"

template <typename T>
__device__ void dwconv_impl(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                            const T* __restrict__ residual, T* __restrict__ y, int n, int h, int wd, int c, int kh,
                            int kw, int sh, int sw, int ph, int pw, int dh, int dw, int ho, int wo) {
    const u64 total = (u64)n * ho * wo * c;
    GRID_STRIDE(i, total) {
        const int ch = (int)(i % c);
        u64 r = i / c;
        const int ox = (int)(r % wo);
        r /= wo;
        const int oy = (int)(r % ho);
        const int b = (int)(r / ho);
        float acc = bias ? to_f32(bias[ch]) : 0.0f;
        for (int ky = 0; ky < kh; ++ky) {
            const int iy = oy * sh - ph + ky * dh;
            if (iy < 0 || iy >= h) continue;
            for (int kx = 0; kx < kw; ++kx) {
                const int ix = ox * sw - pw + kx * dw;
                if (ix < 0 || ix >= wd) continue;
                acc = fmaf(to_f32(x[(((u64)b * h + iy) * wd + ix) * c + ch]), to_f32(w[((u64)ch * kh + ky) * kw + kx]),
                           acc);
            }
        }
        if (residual) acc += to_f32(residual[i]);
        y[i] = from_f32<T>(acc);
    }
}

#define DWCONV(name, T)                                                                                    \
    extern "C" __global__ void dwconv_##name(const T* x, const T* w, const T* bias, const T* residual, T* y,  \
                                             int n, int h, int wd, int c, int kh, int kw, int sh, int sw,     \
                                             int ph, int pw, int dh, int dw, int ho, int wo) {               \
        dwconv_impl<T>(x, w, bias, residual, y, n, h, wd, c, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo);         \
    }
FOR_FLOAT_TYPES(DWCONV)
