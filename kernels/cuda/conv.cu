// General 2-D convolution, channels-last, as an implicit GEMM per group gi:
//   y[m, gi*cog + n] = bias[gi*cog + n] + sum_k A[m, k] * B[n, k]
// m = (img, oy, ox) runs over N*Ho*Wo, n over Cout/groups, k = (ky, kx, c) over KH*KW*Cin/groups.
// That k order is the weight's own [Cout, KH, KW, Cin/g] row order, so B[n, k] is weight row
// gi*cog + n as stored, and A[m, k] = x[img, oy*sh - ph + ky*dh, ox*sw - pw + kx*dw, gi*cg + c]
// (zero outside the image) is gathered on the fly, never materialised.
//
// With `up` > 0 the convolution reads x nearest-upsampled by 2^up (a UNet/VAE upsample block's
// resize fused into its conv): the taps index the virtual [h·2^up, w·2^up] image and read pixel
// (iy >> up, ix >> up), so the upsampled map is never written.
//
// Two kernels: a tensor-core one for f16/bf16 (mma.sync m16n8k16, f32 accumulation) and a SIMT
// one (f32 FMA) for f32. All offsets are 32-bit: the planner checks every tensor has < 2^31
// elements and the padded extents stay below 2^30.
#include "focus_common.cuh"

struct ConvGeo {
    int n, h, w, cin;   // x [n, h, w, cin]
    int ho, wo, cout;   // y [n, ho, wo, cout]
    int kh, kw, sh, sw, ph, pw, dh, dw;
    int groups, cg, cog;  // groups, input / output channels per group
    int m, kg;            // GEMM rows n*ho*wo, reduction length kh*kw*cg
    int up;               // log2 of the nearest upsampling applied to x (0: none)
};

// Row iy0 of a GEMM row past the end: iy0 + ky*dh stays negative, so every tap reads as zero.
#define CONV_NO_ROW (-0x40000000)

// Per-tile table of GEMM rows: image base pixel, and the input coordinates of tap (0, 0).
__device__ __forceinline__ void conv_rows(const ConvGeo& g, int m0, int rows, int* pix, int* iy0, int* ix0) {
    for (int r = threadIdx.x; r < rows; r += blockDim.x) {
        const int m = m0 + r;
        if (m < g.m) {
            const int ox = m % g.wo, t = m / g.wo;
            const int oy = t % g.ho, img = t / g.ho;
            pix[r] = img * g.h * g.w;
            iy0[r] = oy * g.sh - g.ph;
            ix0[r] = ox * g.sw - g.pw;
        } else {
            pix[r] = 0;
            iy0[r] = CONV_NO_ROW;
            ix0[r] = 0;
        }
    }
}

// Reduction index k -> (channel, tap row, tap column); k < kg.
__device__ __forceinline__ void conv_tap(const ConvGeo& g, int k, int& c, int& ky, int& kx) {
    const int t = k / g.cg;
    c = k - t * g.cg;
    ky = t / g.kw;
    kx = t - ky * g.kw;
}

// Element offset into x of tap (ky, kx), channel c (within the group) of table row r, or -1
// where the tap falls in the padding / the row is past the end.
__device__ __forceinline__ int conv_src(const ConvGeo& g, const int* pix, const int* iy0, const int* ix0, int r,
                                        int c, int ky, int kx) {
    const int iy = iy0[r] + ky * g.dh, ix = ix0[r] + kx * g.dw;
    if ((unsigned)iy >= (unsigned)(g.h << g.up) || (unsigned)ix >= (unsigned)(g.w << g.up)) return -1;
    return (pix[r] + (iy >> g.up) * g.w + (ix >> g.up)) * g.cin + c;
}

// ---------------------------------------------------------------------------------------------
// Tensor-core path. Block tile BM x BN x 32 with WM x WN warps, each warp a 64 x 32 sub-tile
// (4 x 4 mma tiles of 16 x 8). Operands staged in shared memory as raw 16-bit values, rows of 32
// k-values padded to 40 (80 bytes) so the 8 row addresses of each ldmatrix phase hit distinct
// 16-byte bank groups. 3-stage cp.async pipeline.
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type";
// groupID = lane >> 2, tig = lane & 3; each .b32 register holds two 16-bit values, the lower
// k / column index in the low half):
//   A (16 x 16, row-major, reg r): a0 (row gid, k 2tig..+1), a1 (row gid+8, same k),
//                                  a2 (row gid, k 2tig+8..+9), a3 (row gid+8, k 2tig+8..+9)
//   B (16 x 8, "col" = stored [n][k]): b0 (k 2tig..+1, n gid), b1 (k 2tig+8..+9, n gid)
//   C/D (16 x 8 f32): c0, c1 (row gid, n 2tig, 2tig+1), c2, c3 (row gid+8, same n)
// ldmatrix.x4: lanes 8i..8i+7 give the row addresses of 8x8 matrix i, and matrix i lands in
// register i with lane l holding row l/4, elements 2(l%4), 2(l%4)+1 -- exactly the a/b register
// layout above when matrix i is chosen as below.

constexpr int TC_BK = 32;
constexpr int TC_LDS = TC_BK + 8;  // smem row pitch in 16-bit elements
constexpr int TC_STAGES = 3;

__device__ __forceinline__ unsigned smem_addr(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }

// 16-byte async copy global -> shared; `valid` false writes 16 zero bytes without reading.
__device__ __forceinline__ void cp_async16(unsigned dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldsm_x4(unsigned (&r)[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

template <typename T> __device__ __forceinline__ void mma16816(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]);
template <> __device__ __forceinline__ void mma16816<__half>(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ unsigned bits16(__half v) { return __half_as_ushort(v); }
__device__ __forceinline__ unsigned bits16(__nv_bfloat16 v) { return __bfloat16_as_ushort(v); }

// Two adjacent outputs as one 32-bit store, the lower column in the low half (caller checks
// alignment).
template <typename T> __device__ __forceinline__ void store2(T* p, float a, float b) {
    *reinterpret_cast<unsigned*>(p) = bits16(from_f32<T>(a)) | (bits16(from_f32<T>(b)) << 16);
}

// Load k-tile `kt` into stage buffer `buf`. VEC: 16-byte cp.async of 8 consecutive k (needs
// cg % 8 == 0, so 8 consecutive k are 8 channels of one tap, and 16-byte aligned x and w);
// otherwise one 16-bit load per element (any cg, e.g. the 3-channel stem).
template <int BM, int BN, int THREADS, bool VEC>
__device__ __forceinline__ void tc_load(const ConvGeo& g, const unsigned short* xs, const unsigned short* ws, int n0,
                                        const int* pix, const int* iy0, const int* ix0, unsigned short* sa,
                                        unsigned short* sb, int kt) {
    const int tid = threadIdx.x;
    if (VEC) {
        const int kc = (tid & 3) * 8;  // this thread's 8-wide k chunk, the same for every row it loads
        const int k = kt * TC_BK + kc;
        const bool kin = k < g.kg;
        int c = 0, ky = 0, kx = 0;
        if (kin) conv_tap(g, k, c, ky, kx);
#pragma unroll
        for (int i = 0; i < BM * 4 / THREADS; ++i) {
            const int r = (tid >> 2) + i * (THREADS / 4);
            const int off = kin ? conv_src(g, pix, iy0, ix0, r, c, ky, kx) : -1;
            cp_async16(smem_addr(sa + r * TC_LDS + kc), xs + (off < 0 ? 0 : off), off >= 0);
        }
#pragma unroll
        for (int i = 0; i < BN * 4 / THREADS; ++i) {
            const int r = (tid >> 2) + i * (THREADS / 4);
            const bool ok = kin && n0 + r < g.cog;
            cp_async16(smem_addr(sb + r * TC_LDS + kc), ws + (ok ? (n0 + r) * g.kg + k : 0), ok);
        }
    } else {
        const int kk = tid & 31;  // this thread's k column, the same for every row it loads
        const int k = kt * TC_BK + kk;
        const bool kin = k < g.kg;
        int c = 0, ky = 0, kx = 0;
        if (kin) conv_tap(g, k, c, ky, kx);
#pragma unroll 4
        for (int i = 0; i < BM * TC_BK / THREADS; ++i) {
            const int r = (tid >> 5) + i * (THREADS / 32);
            const int off = kin ? conv_src(g, pix, iy0, ix0, r, c, ky, kx) : -1;
            sa[r * TC_LDS + kk] = off >= 0 ? xs[off] : (unsigned short)0;
        }
#pragma unroll 4
        for (int i = 0; i < BN * TC_BK / THREADS; ++i) {
            const int r = (tid >> 5) + i * (THREADS / 32);
            const bool ok = kin && n0 + r < g.cog;
            sb[r * TC_LDS + kk] = ok ? ws[(n0 + r) * g.kg + k] : (unsigned short)0;
        }
    }
}

// Grid (ceil(m / BM), ceil(cog / BN), groups), WM*WN*32 threads, dynamic shared memory
// TC_STAGES * (BM + BN) * TC_LDS * 2 bytes.
template <typename T, int WM, int WN, bool VEC>
__device__ void conv_tc_impl(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                             T* __restrict__ y, const ConvGeo& g) {
    constexpr int BM = WM * 64, BN = WN * 32, THREADS = WM * WN * 32;
    extern __shared__ __align__(16) unsigned char conv_smem[];
    unsigned short* sa = reinterpret_cast<unsigned short*>(conv_smem);
    unsigned short* sb = sa + TC_STAGES * BM * TC_LDS;
    __shared__ int pix[BM], iy0[BM], ix0[BM];

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp % WM, wn = warp / WM;
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN, gi = blockIdx.z;
    conv_rows(g, m0, BM, pix, iy0, ix0);
    __syncthreads();

    const unsigned short* xs = reinterpret_cast<const unsigned short*>(x) + gi * g.cg;
    const unsigned short* ws = reinterpret_cast<const unsigned short*>(w) + gi * g.cog * g.kg;
    const int nk = (g.kg + TC_BK - 1) / TC_BK;

    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

#pragma unroll
    for (int s = 0; s < TC_STAGES - 1; ++s) {
        if (s < nk)
            tc_load<BM, BN, THREADS, VEC>(g, xs, ws, n0, pix, iy0, ix0, sa + s * BM * TC_LDS, sb + s * BN * TC_LDS, s);
        cp_async_commit();
    }

    // ldmatrix row/column of this lane within a 16 x 16 A block and a 16(n) x 16(k) B block.
    const int a_row = lane & 15, a_col = (lane >> 4) * 8;
    const int b_row = (lane & 7) + ((lane >> 4) << 3), b_col = ((lane >> 3) & 1) * 8;

    for (int kt = 0; kt < nk; ++kt) {
        // One group is committed per step (possibly empty), so <= STAGES-2 pending means the
        // group of tile kt has landed; the barrier publishes every thread's copies and also
        // guarantees nobody still reads the buffer the prefetch below overwrites (tile kt-1's).
        cp_async_wait<TC_STAGES - 2>();
        __syncthreads();
        const int pre = kt + TC_STAGES - 1;
        if (pre < nk) {
            const int pb = pre % TC_STAGES;
            tc_load<BM, BN, THREADS, VEC>(g, xs, ws, n0, pix, iy0, ix0, sa + pb * BM * TC_LDS, sb + pb * BN * TC_LDS,
                                          pre);
        }
        cp_async_commit();

        const int buf = kt % TC_STAGES;
        const unsigned short* ta = sa + (buf * BM + wm * 64) * TC_LDS;
        const unsigned short* tb = sb + (buf * BN + wn * 32) * TC_LDS;
#pragma unroll
        for (int ks = 0; ks < TC_BK; ks += 16) {
            unsigned af[4][4], bf[4][2];
#pragma unroll
            for (int i = 0; i < 4; ++i) ldsm_x4(af[i], smem_addr(ta + (i * 16 + a_row) * TC_LDS + ks + a_col));
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                // Matrices: (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15).
                unsigned r[4];
                ldsm_x4(r, smem_addr(tb + (j * 16 + b_row) * TC_LDS + ks + b_col));
                bf[2 * j][0] = r[0];
                bf[2 * j][1] = r[1];
                bf[2 * j + 1][0] = r[2];
                bf[2 * j + 1][1] = r[3];
            }
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) mma16816<T>(acc[i][j], af[i], bf[j]);
        }
    }

    // Epilogue: bias in f32, one rounding to T. Pairs of adjacent columns go out as one 32-bit
    // store when every (row, even column) offset is even and y is 4-byte aligned.
    const int gid = lane >> 2, tig = lane & 3;
    const bool pairs = ((g.cout | g.cog) & 1) == 0 && (reinterpret_cast<u64>(y) & 3) == 0;
    float bv[4][2];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const int n = n0 + wn * 32 + j * 8 + tig * 2;
        bv[j][0] = bias && n < g.cog ? to_f32(bias[gi * g.cog + n]) : 0.0f;
        bv[j][1] = bias && n + 1 < g.cog ? to_f32(bias[gi * g.cog + n + 1]) : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int m = m0 + wm * 64 + i * 16 + gid + h * 8;
            if (m >= g.m) continue;
            T* yr = y + m * g.cout + gi * g.cog;
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const int n = n0 + wn * 32 + j * 8 + tig * 2;
                const float v0 = acc[i][j][2 * h] + bv[j][0], v1 = acc[i][j][2 * h + 1] + bv[j][1];
                if (pairs && n + 1 < g.cog) {
                    store2<T>(yr + n, v0, v1);
                } else {
                    if (n < g.cog) yr[n] = from_f32<T>(v0);
                    if (n + 1 < g.cog) yr[n + 1] = from_f32<T>(v1);
                }
            }
        }
}

// ---------------------------------------------------------------------------------------------
// SIMT path: 64 x 64 x 16 tiles, 256 threads, 4 x 4 outputs per thread strided by 16 so the
// B-operand shared reads of a warp hit 16 consecutive words. Operands converted to f32 on load.
// Grid (ceil(m / 64), ceil(cog / 64), groups).
template <typename T>
__device__ void conv_simt_impl(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                               T* __restrict__ y, const ConvGeo& g) {
    constexpr int BM = 64, BN = 64, BK = 16;
    __shared__ float sa[BK][BM + 1], sb[BK][BN + 1];
    __shared__ int pix[BM], iy0[BM], ix0[BM];
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN, gi = blockIdx.z;
    conv_rows(g, m0, BM, pix, iy0, ix0);
    __syncthreads();

    const T* xs = x + gi * g.cg;
    const T* ws = w + gi * g.cog * g.kg;
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < g.kg; k0 += BK) {
        // Each thread loads k column tx for rows ty, ty+16, ty+32, ty+48 of both tiles.
        const int k = k0 + tx;
        const bool kin = k < g.kg;
        int c = 0, ky = 0, kx = 0;
        if (kin) conv_tap(g, k, c, ky, kx);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int r = ty + 16 * i;
            const int off = kin ? conv_src(g, pix, iy0, ix0, r, c, ky, kx) : -1;
            sa[tx][r] = off >= 0 ? to_f32(xs[off]) : 0.0f;
            const bool ok = kin && n0 + r < g.cog;
            sb[tx][r] = ok ? to_f32(ws[(n0 + r) * g.kg + k]) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = sa[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; ++j) b[j] = sb[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int m = m0 + ty + 16 * i;
        if (m >= g.m) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int n = n0 + tx + 16 * j;
            if (n >= g.cog) continue;
            const int col = gi * g.cog + n;
            y[m * g.cout + col] = from_f32<T>(acc[i][j] + (bias ? to_f32(bias[col]) : 0.0f));
        }
    }
}

// Tensor-core entry points: conv_tc_<BM>x<BN>_<vec|gather>_<dtype>.
#define CONV_TC(name, T)                                                                                        \
    extern "C" __global__ void conv_tc_128x128_vec_##name(const T* x, const T* w, const T* bias, T* y,           \
                                                          ConvGeo g) {                                          \
        conv_tc_impl<T, 2, 4, true>(x, w, bias, y, g);                                                          \
    }                                                                                                           \
    extern "C" __global__ void conv_tc_128x64_vec_##name(const T* x, const T* w, const T* bias, T* y, ConvGeo g) { \
        conv_tc_impl<T, 2, 2, true>(x, w, bias, y, g);                                                          \
    }                                                                                                           \
    extern "C" __global__ void conv_tc_64x64_vec_##name(const T* x, const T* w, const T* bias, T* y, ConvGeo g) {  \
        conv_tc_impl<T, 1, 2, true>(x, w, bias, y, g);                                                          \
    }                                                                                                           \
    extern "C" __global__ void conv_tc_128x128_gather_##name(const T* x, const T* w, const T* bias, T* y,        \
                                                             ConvGeo g) {                                       \
        conv_tc_impl<T, 2, 4, false>(x, w, bias, y, g);                                                         \
    }                                                                                                           \
    extern "C" __global__ void conv_tc_128x64_gather_##name(const T* x, const T* w, const T* bias, T* y,         \
                                                            ConvGeo g) {                                        \
        conv_tc_impl<T, 2, 2, false>(x, w, bias, y, g);                                                         \
    }                                                                                                           \
    extern "C" __global__ void conv_tc_64x64_gather_##name(const T* x, const T* w, const T* bias, T* y,          \
                                                           ConvGeo g) {                                         \
        conv_tc_impl<T, 1, 2, false>(x, w, bias, y, g);                                                         \
    }
CONV_TC(f16, __half)
CONV_TC(bf16, __nv_bfloat16)

#define CONV_SIMT(name, T)                                                                                   \
    extern "C" __global__ void conv_simt_##name(const T* x, const T* w, const T* bias, T* y, ConvGeo g) {    \
        conv_simt_impl<T>(x, w, bias, y, g);                                                                 \
    }
CONV_SIMT(f32, float)
