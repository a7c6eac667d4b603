// Spatial sampling on NHWC maps (resize, average pooling, grid_sample, multi-scale deformable
// attention) and the sinusoidal timestep embedding. Coordinates, tap weights and sums follow
// the CPU kernels operation by operation with explicitly rounded intrinsics (no FMA
// contraction), so source indices and weights are bit-identical to the reference.
#include "focus_common.cuh"

// ---- resize (PyTorch interpolate; see kernels/src/cpu/resize.rs) ----

#define RESIZE_NEAREST 0
#define RESIZE_BILINEAR 1
#define RESIZE_BICUBIC 2

// Keys cubic convolution pieces: ((a+2)x - (a+3))x² + 1 on [0,1], ((ax - 5a)x + 8a)x - 4a on [1,2].
__device__ __forceinline__ double cubic1(double x, double a) {
    return __dadd_rn(__dmul_rn(__dmul_rn(__dsub_rn(__dmul_rn(a + 2.0, x), a + 3.0), x), x), 1.0);
}

__device__ __forceinline__ double cubic2(double x, double a) {
    return __dsub_rn(__dmul_rn(__dadd_rn(__dmul_rn(__dsub_rn(__dmul_rn(a, x), 5.0 * a), x), 8.0 * a), x), 4.0 * a);
}

// Up to 4 (source index, weight) taps of one output index along one axis.
struct Taps4 {
    int n;
    int idx[4];
    float w[4];
};

__device__ __forceinline__ Taps4 taps4(int mode, int align, int inp, float scale, int i) {
    Taps4 t;
    const int last = inp - 1;
    const float fi = (float)i;
    if (mode == RESIZE_NEAREST) {
        t.n = 1;
        t.idx[0] = min(max((int)floorf(__fmul_rn(fi, scale)), 0), last);
        t.w[0] = 1.0f;
        return t;
    }
    float src = align ? __fmul_rn(scale, fi) : __fsub_rn(__fmul_rn(scale, __fadd_rn(fi, 0.5f)), 0.5f);
    if (mode == RESIZE_BILINEAR) {
        if (!align) src = fmaxf(src, 0.0f);
        const int i0 = min((int)floorf(src), last);
        const float l = fminf(fmaxf(__fsub_rn(src, (float)i0), 0.0f), 1.0f);
        t.n = 2;
        t.idx[0] = max(i0, 0);
        t.idx[1] = max(i0 < last ? i0 + 1 : i0, 0);
        t.w[0] = 1.0f - l;
        t.w[1] = l;
        return t;
    }
    const int i0 = min((int)floorf(src), last);
    const double f = (double)fminf(fmaxf(__fsub_rn(src, (float)i0), 0.0f), 1.0f);
    const double a = -0.75;
    t.n = 4;
    t.w[0] = (float)cubic2(f + 1.0, a);
    t.w[1] = (float)cubic1(f, a);
    t.w[2] = (float)cubic1(1.0 - f, a);
    t.w[3] = (float)cubic2(2.0 - f, a);
#pragma unroll
    for (int j = 0; j < 4; ++j) t.idx[j] = min(max(i0 - 1 + j, 0), last);
    return t;
}

// x [N, H, W, C] → y [N, Ho, Wo, C], one thread per output element. The sum runs over W taps
// inside H taps, as the CPU's two separable passes do.
template <typename T>
__device__ void resize_impl(const T* __restrict__ x, T* __restrict__ y, int nb, int h, int w, int c, int ho,
                            int wo, float scale_h, float scale_w, int mode, int align) {
    const u64 total = (u64)nb * ho * wo * c;
    GRID_STRIDE(i, total) {
        const int ch = i % c;
        const u64 p = i / c;
        const int ox = p % wo, oy = (p / wo) % ho;
        const u64 b = p / ((u64)wo * ho);
        const Taps4 th = taps4(mode, align, h, scale_h, oy), tw = taps4(mode, align, w, scale_w, ox);
        const T* xb = x + b * h * w * c + ch;
        float acc = 0.0f;
#pragma unroll
        for (int a = 0; a < 4; ++a) {
            if (a < th.n) {
                const T* xr = xb + (u64)th.idx[a] * w * c;
                float row = 0.0f;
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                    if (q < tw.n) row = __fadd_rn(row, __fmul_rn(tw.w[q], to_f32(xr[(u64)tw.idx[q] * c])));
                }
                acc = __fadd_rn(acc, __fmul_rn(th.w[a], row));
            }
        }
        y[i] = from_f32<T>(acc);
    }
}

// Antialiased (PIL-style) taps of one output index: source range [lo, hi), weights
// filter((j - center + 0.5) * invscale) / norm.
struct AaAxis {
    int lo, hi;
    double center, invscale, norm;
};

__device__ __forceinline__ double aa_raw(int cubic, const AaAxis& a, int j) {
    double x = fabs(__dmul_rn(__dadd_rn(__dsub_rn((double)j, a.center), 0.5), a.invscale));
    if (cubic) return x < 1.0 ? cubic1(x, -0.5) : x < 2.0 ? cubic2(x, -0.5) : 0.0;
    return fmax(1.0 - x, 0.0);
}

__device__ __forceinline__ float aa_weight(int cubic, const AaAxis& a, int j) {
    return __double2float_rn(__ddiv_rn(aa_raw(cubic, a, j), a.norm));
}

__device__ __forceinline__ AaAxis aa_axis(int cubic, int inp, float scale_f, int i) {
    const double scale = (double)scale_f, half_width = cubic ? 2.0 : 1.0;
    const bool down = scale >= 1.0;
    const double support = down ? __dmul_rn(half_width, scale) : half_width;
    AaAxis a;
    a.invscale = down ? __ddiv_rn(1.0, scale) : 1.0;
    a.center = __dmul_rn(scale, (double)i + 0.5);
    // Truncation toward zero, as the reference's casts do.
    a.lo = max((int)(long long)__dadd_rn(__dsub_rn(a.center, support), 0.5), 0);
    a.hi = (int)min((long long)__dadd_rn(__dadd_rn(a.center, support), 0.5), (long long)inp);
    double total = 0.0;
    for (int j = a.lo; j < a.hi; ++j) total += aa_raw(cubic, a, j);
    a.norm = total != 0.0 ? total : 1.0;
    return a;
}

template <typename T>
__device__ void resize_aa_impl(const T* __restrict__ x, T* __restrict__ y, int nb, int h, int w, int c, int ho,
                               int wo, float scale_h, float scale_w, int cubic) {
    const u64 total = (u64)nb * ho * wo * c;
    GRID_STRIDE(i, total) {
        const int ch = i % c;
        const u64 p = i / c;
        const int ox = p % wo, oy = (p / wo) % ho;
        const u64 b = p / ((u64)wo * ho);
        const AaAxis ah = aa_axis(cubic, h, scale_h, oy), aw = aa_axis(cubic, w, scale_w, ox);
        const T* xb = x + b * h * w * c + ch;
        float acc = 0.0f;
        for (int iy = ah.lo; iy < ah.hi; ++iy) {
            const T* xr = xb + (u64)iy * w * c;
            float row = 0.0f;
            for (int ix = aw.lo; ix < aw.hi; ++ix)
                row = __fadd_rn(row, __fmul_rn(aa_weight(cubic, aw, ix), to_f32(xr[(u64)ix * c])));
            acc = __fadd_rn(acc, __fmul_rn(aa_weight(cubic, ah, iy), row));
        }
        y[i] = from_f32<T>(acc);
    }
}

// ---- avg_pool2d (ceil_mode = false), NHWC ----

template <typename T>
__device__ void avg_pool_impl(const T* __restrict__ x, T* __restrict__ y, int nb, int h, int w, int c, int ho,
                              int wo, int kh, int kw, int sh, int sw, int ph, int pw, int count_include_pad) {
    const u64 total = (u64)nb * ho * wo * c;
    GRID_STRIDE(i, total) {
        const int ch = i % c;
        const u64 p = i / c;
        const int ox = p % wo, oy = (p / wo) % ho;
        const u64 b = p / ((u64)wo * ho);
        // Window [s, e) clipped to the padded input, then to the input.
        const int ys = oy * sh - ph, ye = min(ys + kh, h + ph);
        const int xs = ox * sw - pw, xe = min(xs + kw, w + pw);
        const int y0 = max(ys, 0), y1 = min(ye, h), x0 = max(xs, 0), x1 = min(xe, w);
        const T* xb = x + b * h * w * c + ch;
        float acc = 0.0f;
        for (int iy = y0; iy < y1; ++iy)
            for (int ix = x0; ix < x1; ++ix) acc = __fadd_rn(acc, to_f32(xb[((u64)iy * w + ix) * c]));
        const int div = count_include_pad ? (ye - ys) * (xe - xs) : max(y1 - y0, 0) * max(x1 - x0, 0);
        y[i] = from_f32<T>(__fdiv_rn(acc, (float)div));
    }
}

// ---- bilinear sampling with zero padding (grid_sample, deformable attention) ----

// acc + w · bilinear(img at pixel coords (px, py)); `row`/`col` are the element strides of
// the image. Taps outside contribute nothing. A NaN coordinate takes tap 0 with NaN weights,
// like the reference's saturating float→int cast.
template <typename T>
__device__ __forceinline__ float bilinear_acc(const T* __restrict__ img, int hgt, int wid, u64 row, u64 col,
                                              float px, float py, float w, float acc) {
    float fx = floorf(px), fy = floorf(py);
    if (fx != fx) fx = 0.0f;
    if (fy != fy) fy = 0.0f;
    const float lx = __fsub_rn(px, fx), ly = __fsub_rn(py, fy);
    const float mx = 1.0f - lx, my = 1.0f - ly;
    const float tw[4] = {__fmul_rn(mx, my), __fmul_rn(lx, my), __fmul_rn(mx, ly), __fmul_rn(lx, ly)};
#pragma unroll
    for (int q = 0; q < 4; ++q) {
        const float xi = fx + (float)(q & 1), yi = fy + (float)(q >> 1);
        if (xi >= 0.0f && yi >= 0.0f && xi < (float)wid && yi < (float)hgt) {
            const float v = to_f32(img[(u64)(int)yi * row + (u64)(int)xi * col]);
            acc = __fadd_rn(acc, __fmul_rn(__fmul_rn(w, tw[q]), v));
        }
    }
    return acc;
}

// x [N, H, W, C], grid [N, Ho, Wo, 2] (x, y in [-1, 1]) → y [N, Ho, Wo, C].
template <typename T>
__device__ void grid_sample_impl(const T* __restrict__ x, const T* __restrict__ grid, T* __restrict__ y, int nb,
                                 int h, int w, int c, int ho, int wo, int align) {
    const u64 total = (u64)nb * ho * wo * c;
    GRID_STRIDE(i, total) {
        const int ch = i % c;
        const u64 p = i / c;
        const u64 b = p / ((u64)wo * ho);
        const float gx = __fadd_rn(to_f32(grid[2 * p]), 1.0f), gy = __fadd_rn(to_f32(grid[2 * p + 1]), 1.0f);
        float px, py;
        if (align) {
            px = __fmul_rn(__fdiv_rn(gx, 2.0f), __fsub_rn((float)w, 1.0f));
            py = __fmul_rn(__fdiv_rn(gy, 2.0f), __fsub_rn((float)h, 1.0f));
        } else {
            px = __fdiv_rn(__fsub_rn(__fmul_rn(gx, (float)w), 1.0f), 2.0f);
            py = __fdiv_rn(__fsub_rn(__fmul_rn(gy, (float)h), 1.0f), 2.0f);
        }
        const T* img = x + b * h * w * c + ch;
        y[i] = from_f32<T>(bilinear_acc(img, h, w, (u64)w * c, (u64)c, px, py, 1.0f, 0.0f));
    }
}

// Level shapes of the flattened value and the first position of each level.
#define MAX_LEVELS 8
struct Levels {
    int n;
    int h[MAX_LEVELS];
    int w[MAX_LEVELS];
    int start[MAX_LEVELS];
};

// value [N, S, Hh, Dh], loc [N, Q, Hh, L, P, 2], weights [N, Q, Hh, L, P] → out [N, Q, Hh·Dh].
// One warp per (n, q, head), lanes over Dh (32 channels per pass).
template <typename T>
__device__ void ms_deform_attn_impl(const T* __restrict__ value, const T* __restrict__ loc,
                                    const T* __restrict__ weights, T* __restrict__ out, u64 nqh, int q, int s,
                                    int hh, int dh, int np, const Levels& lv) {
    const int lane = threadIdx.x & 31;
    const u64 warps = (u64)gridDim.x * (blockDim.x >> 5);
    for (u64 r = (blockIdx.x * (u64)blockDim.x + threadIdx.x) >> 5; r < nqh; r += warps) {
        const u64 b = r / ((u64)q * hh);
        const int head = r % hh;
        const u64 col = (u64)hh * dh;  // elements between neighbouring positions
        for (int d0 = 0; d0 < dh; d0 += 32) {
            const int d = d0 + lane;
            const bool live = d < dh;
            float acc = 0.0f;
#pragma unroll
            for (int l = 0; l < MAX_LEVELS; ++l) {
                if (l < lv.n) {
                    const int lh = lv.h[l], lw = lv.w[l];
                    const T* img = value + ((b * s + lv.start[l]) * hh + head) * dh + (live ? d : 0);
                    for (int pt = 0; pt < np; ++pt) {
                        const u64 wi = (r * lv.n + l) * np + pt;
                        const float px = __fsub_rn(__fmul_rn(to_f32(loc[2 * wi]), (float)lw), 0.5f);
                        const float py = __fsub_rn(__fmul_rn(to_f32(loc[2 * wi + 1]), (float)lh), 0.5f);
                        if (live) acc = bilinear_acc(img, lh, lw, (u64)lw * col, col, px, py, to_f32(weights[wi]), acc);
                    }
                }
            }
            if (live) out[r * dh + d] = from_f32<T>(acc);
        }
    }
}

// ---- diffusers get_timestep_embedding: t [N] → f32 [N, dim] ----

// freq_i = exp(neg_log · i / (half - shift)) with the product and quotient in f32 and the
// exponential in f64, as the reference computes it; then sin/cos (f64) of the f32 t · freq.
template <typename T>
__device__ void timestep_impl(const T* __restrict__ t, float* __restrict__ y, u64 n, int dim, int flip,
                              float shift, float neg_log) {
    const int half = dim / 2;
    GRID_STRIDE(e, n * dim) {
        const int j = e % dim;
        float v = 0.0f;
        if (j < 2 * half) {
            const int i = j < half ? j : j - half;
            const float e_i = __fdiv_rn(__fmul_rn(neg_log, (float)i), __fsub_rn((float)half, shift));
            const float freq = __double2float_rn(exp((double)e_i));
            const double arg = (double)__fmul_rn(to_f32(t[e / dim]), freq);
            const bool use_cos = (j < half) == (flip != 0);
            v = __double2float_rn(use_cos ? cos(arg) : sin(arg));
        }
        y[e] = v;
    }
}

#define SAMPLING(name, T)                                                                                     \
    extern "C" __global__ void resize_##name(const T* x, T* y, int nb, int h, int w, int c, int ho, int wo,     \
                                             float scale_h, float scale_w, int mode, int align) {             \
        resize_impl<T>(x, y, nb, h, w, c, ho, wo, scale_h, scale_w, mode, align);                             \
    }                                                                                                         \
    extern "C" __global__ void resize_aa_##name(const T* x, T* y, int nb, int h, int w, int c, int ho, int wo,  \
                                                float scale_h, float scale_w, int cubic) {                    \
        resize_aa_impl<T>(x, y, nb, h, w, c, ho, wo, scale_h, scale_w, cubic);                                \
    }                                                                                                         \
    extern "C" __global__ void avg_pool_##name(const T* x, T* y, int nb, int h, int w, int c, int ho, int wo,   \
                                               int kh, int kw, int sh, int sw, int ph, int pw,                 \
                                               int count_include_pad) {                                        \
        avg_pool_impl<T>(x, y, nb, h, w, c, ho, wo, kh, kw, sh, sw, ph, pw, count_include_pad);               \
    }                                                                                                         \
    extern "C" __global__ void grid_sample_##name(const T* x, const T* grid, T* y, int nb, int h, int w, int c, \
                                                  int ho, int wo, int align) {                                 \
        grid_sample_impl<T>(x, grid, y, nb, h, w, c, ho, wo, align);                                          \
    }                                                                                                         \
    extern "C" __global__ void ms_deform_attn_##name(const T* value, const T* loc, const T* weights, T* out,    \
                                                     u64 nqh, int q, int s, int hh, int dh, int np,            \
                                                     Levels lv) {                                             \
        ms_deform_attn_impl<T>(value, loc, weights, out, nqh, q, s, hh, dh, np, lv);                          \
    }                                                                                                         \
    extern "C" __global__ void timestep_embedding_##name(const T* t, float* y, u64 n, int dim, int flip,        \
                                                         float shift, float neg_log) {                         \
        timestep_impl<T>(t, y, n, dim, flip, shift, neg_log);                                                 \
    }
FOR_FLOAT_TYPES(SAMPLING)
