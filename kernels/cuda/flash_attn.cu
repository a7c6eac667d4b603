// Flash attention forward for f16/bf16 storage, f32 accumulation, head dim D = Dv in {64, 80, 128}.
// Semantics as attention.cu: q [B,Tq,Hq,D], k [B,Tk,Hkv,D], v [B,Tk,Hkv,D], out [B,Tq,Hq,D]; GQA (kv head
// = h / (Hq/Hkv)); causal is bottom-right aligned (key j visible to query i iff j <= Tk - Tq + i); optional
// mask at element offset b·msb + h·msh + i·msq + j·msk (strides 0 where broadcast): kind 1 = bool (u8,
// nonzero attends), 2 = additive f32, 3 = additive in the storage type. Fully masked rows give zeros.
// Scores are kept in log2 units: the host passes scale·log2(e) and exp2 replaces exp.
// Packed variable-length sequences (nseg > 0, Tq = Tk, cumulative offsets cu[0..nseg]): a query sees
// only its own sequence's keys, and a block walks only the key tiles between its first row's sequence
// start and its last row's sequence end.
//
// flash_fwd_*: FlashAttention-2. Block = 4 warps = 64 query rows (16 per warp) of one (b, h); K/V tiles
// of 64 keys are double-buffered in shared memory by cp.async (rows past the end zero-filled). Per
// tile each warp computes S = Q·Kᵀ (16 x 64) and O += P·V with mma.m16n8k16 (f32 accumulators), the
// online softmax running on the S accumulators in registers. Grid (ceil(Tq/64), Hq, B), dynamic smem
// 4·64·(D+8)·2 bytes.
//
// mma.m16n8k16 fragments (PTX ISA "Matrix Fragments for mma.m16n8k16 with floating point type"),
// g = lane>>2, t = lane&3, a 32-bit register holds two 16-bit elements, the lower column/row in the
// low half:
//   A (16x16, row): a[0] = (row g, cols 2t,2t+1), a[1] = (row g+8, cols 2t,2t+1),
//                   a[2] = (row g, cols 2t+8,2t+9), a[3] = (row g+8, cols 2t+8,2t+9)
//   B (16x8, col):  b[0] = (rows 2t,2t+1, col g), b[1] = (rows 2t+8,2t+9, col g)
//   C/D (16x8 f32): c[0],c[1] = (row g, cols 2t,2t+1), c[2],c[3] = (row g+8, cols 2t,2t+1)
// ldmatrix.x4: lanes 8m..8m+7 give the row addresses of 8x8 matrix m (8 contiguous 16-bit elements
// each); register m of lane L receives (row L>>2, cols 2(L&3), 2(L&3)+1) of matrix m, or with .trans
// (rows 2(L&3), 2(L&3)+1, col L>>2). So for K stored [key][d], a non-transposed 8x8 load (rows = keys)
// is exactly a B fragment register of S = Q·Kᵀ, and for V stored [key][dv] a .trans load (rows = keys)
// is exactly a B fragment register of P·V. The S accumulators of key columns 16k..16k+15 (two C tiles)
// are, packed in pairs, the A fragment of P for k-step k of P·V.
//
// flash_decode_* (Tq <= 4): split-K flash decoding on CUDA cores. Block (split, kv head, b) takes all
// q heads of the kv head times Tq rows (<= 32) over keys [split·cps·64, ...) in 64-key chunks staged
// like the prefill tiles. One split writes the output directly; otherwise each writes (m, l) and the
// unnormalised acc[D] in f32 to `part`, and flash_combine_* merges the splits.
#include "focus_common.cuh"

#define FL_BQ 64
#define FL_BK 64
#define FL_THREADS 128
#define FL_MAXR 32
#define FL_LOG2E 1.4426950408889634f
#define FL_FLT_MAX 3.402823466e38f

typedef unsigned int u32;

__device__ __forceinline__ u32 smem_u32(const void* p) { return (u32)__cvta_generic_to_shared(p); }

// 16-byte global → shared copy; `full` false zero-fills the destination without reading `src`.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool full) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
                 "r"(full ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldsm_x4(const void* p, u32& r0, u32& r1, u32& r2, u32& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_trans(const void* p, u32& r0, u32& r1, u32& r2, u32& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(smem_u32(p)));
}

// c += a · b on one 16x8x16 tile.
template <typename T> __device__ __forceinline__ void mma16816(float (&c)[4], const u32 (&a)[4], u32 b0, u32 b1);
template <> __device__ __forceinline__ void mma16816<__half>(float (&c)[4], const u32 (&a)[4], u32 b0, u32 b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float (&c)[4], const u32 (&a)[4], u32 b0, u32 b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 2^x (ex2.approx: -inf → 0).
__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// Two floats → one register of two storage elements, `lo` in the low half.
template <typename T> __device__ __forceinline__ u32 pack2(float lo, float hi);
template <> __device__ __forceinline__ u32 pack2<__half>(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<u32*>(&h);
}
template <> __device__ __forceinline__ u32 pack2<__nv_bfloat16>(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<u32*>(&h);
}

// Eight storage elements (16 bytes) → f32.
__device__ __forceinline__ void unpack8(const uint4& v, float (&f)[8], __half) {
    const __half2* h = reinterpret_cast<const __half2*>(&v);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
        const float2 x = __half22float2(h[e]);
        f[2 * e] = x.x;
        f[2 * e + 1] = x.y;
    }
}
__device__ __forceinline__ void unpack8(const uint4& v, float (&f)[8], __nv_bfloat16) {
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
        const float2 x = __bfloat1622float2(h[e]);
        f[2 * e] = x.x;
        f[2 * e + 1] = x.y;
    }
}

// The mask's contribution to a log2-unit score. A finite additive value clamps at -FLT_MAX rather
// than overflowing to -inf, so a row masked with finfo.min everywhere still averages uniformly as
// the f32 reference does; -inf (or a false bool) excludes the key.
template <typename T> __device__ __forceinline__ float mask_term(const void* mask, int kind, u64 off) {
    if (kind == 1) return ((const unsigned char*)mask)[off] ? 0.0f : -INFINITY;
    const float m = kind == 2 ? ((const float*)mask)[off] : to_f32(((const T*)mask)[off]);
    return m == -INFINITY ? m : fmaxf(m * FL_LOG2E, -FL_FLT_MAX);
}

// Stage keys j0..j0+63 (those >= jend zero-filled) of one kv head into ks/vs [64][D+8]. `kg`/`vg`
// point at key 0 of the head, consecutive keys `stride` elements apart.
template <typename T, int D>
__device__ __forceinline__ void load_kv_tile(T* ks, T* vs, const T* kg, const T* vg, int j0, int jend,
                                             u64 stride) {
    constexpr int C8 = D / 8, SROW = D + 8;
    static_assert((FL_BK * C8) % FL_THREADS == 0, "tile chunks must split evenly over the block");
#pragma unroll
    for (int it = 0; it < FL_BK * C8 / FL_THREADS; ++it) {
        const int c = threadIdx.x + it * FL_THREADS;
        const int r = c / C8, col = (c % C8) * 8, j = j0 + r;
        const bool ok = j < jend;
        const u64 off = (u64)(ok ? j : 0) * stride + col;
        cp_async16(ks + r * SROW + col, kg + off, ok);
        cp_async16(vs + r * SROW + col, vg + off, ok);
    }
}

template <typename T, int D>
__device__ void flash_fwd_impl(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                               const void* __restrict__ mask, T* __restrict__ out, int tq, int tk, int hq,
                               int hkv, float scale_log2, int causal, int mask_kind, u64 msb, u64 msh, u64 msq,
                               u64 msk, const int* __restrict__ cu, int nseg) {
    constexpr int SROW = D + 8, NKB = FL_BK / 8, NDB = D / 8, KQ = D / 16;
    extern __shared__ __align__(16) unsigned char flash_smem[];
    T* ks = reinterpret_cast<T*>(flash_smem);  // [2][FL_BK][SROW]
    T* vs = ks + 2 * FL_BK * SROW;             // [2][FL_BK][SROW]
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int qb = gridDim.x - 1 - blockIdx.x;  // the longest causal blocks start first
    const int h = blockIdx.y, b = blockIdx.z, hk = h / (hq / hkv);
    const int q0 = qb * FL_BQ, shift = tk - tq;
    const int r0 = q0 + warp * 16 + g, r1 = r0 + 8;  // this thread's two query rows

    // Q A-fragments for the D/16 k-steps (rows past Tq read as zero).
    u32 qf[KQ][4];
    {
        const T* q0p = q + (((u64)b * tq + r0) * hq + h) * D + 2 * t;
        const T* q1p = q + (((u64)b * tq + r1) * hq + h) * D + 2 * t;
#pragma unroll
        for (int kk = 0; kk < KQ; ++kk) {
            qf[kk][0] = r0 < tq ? *reinterpret_cast<const u32*>(q0p + kk * 16) : 0u;
            qf[kk][1] = r1 < tq ? *reinterpret_cast<const u32*>(q1p + kk * 16) : 0u;
            qf[kk][2] = r0 < tq ? *reinterpret_cast<const u32*>(q0p + kk * 16 + 8) : 0u;
            qf[kk][3] = r1 < tq ? *reinterpret_cast<const u32*>(q1p + kk * 16 + 8) : 0u;
        }
    }

    float o[NDB][4];
#pragma unroll
    for (int nd = 0; nd < NDB; ++nd) o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

    // Keys any row of this block can see: causal stops at the last real row's diagonal; packed
    // sequences span the first row's sequence start to the last row's sequence end.
    int kbeg, kend, lo0, hi0, lo1, hi1, unused;
    seq_bounds(cu, nseg, min(r0, tq - 1), tk, lo0, hi0);
    seq_bounds(cu, nseg, min(r1, tq - 1), tk, lo1, hi1);
    seq_bounds(cu, nseg, q0, tk, kbeg, unused);
    seq_bounds(cu, nseg, min(q0 + FL_BQ, tq) - 1, tk, unused, kend);
    if (causal) kend = min(kend, min(q0 + FL_BQ, tq) + shift);
    const int ntiles = kend > kbeg ? (kend - kbeg + FL_BK - 1) / FL_BK : 0;
    const u64 stride = (u64)hkv * D;
    const T* kg = k + ((u64)b * tk * hkv + hk) * D;
    const T* vg = v + ((u64)b * tk * hkv + hk) * D;
    if (ntiles > 0) load_kv_tile<T, D>(ks, vs, kg, vg, kbeg, tk, stride);
    cp_async_commit();

    for (int it = 0; it < ntiles; ++it) {
        const int j0 = kbeg + it * FL_BK, buf = it & 1;
        // Prefetch the next tile into the other buffer (freed by the trailing barrier of it - 1).
        if (it + 1 < ntiles)
            load_kv_tile<T, D>(ks + (buf ^ 1) * FL_BK * SROW, vs + (buf ^ 1) * FL_BK * SROW, kg, vg, j0 + FL_BK,
                               tk, stride);
        cp_async_commit();
        cp_async_wait<1>();  // this tile's group has landed (the prefetch may be in flight)
        __syncthreads();
        const T* kt = ks + buf * FL_BK * SROW;
        const T* vt = vs + buf * FL_BK * SROW;

        // S = Q Kᵀ: per 16 keys one ldmatrix.x4 gives the B fragments of two 8-key tiles.
        float s[NKB][4];
#pragma unroll
        for (int nb = 0; nb < NKB; ++nb) s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < KQ; ++kk) {
#pragma unroll
            for (int np = 0; np < NKB / 2; ++np) {
                // matrices: 0 keys +0..7 d +0..7 | 1 keys +0..7 d +8..15 | 2 keys +8..15 d +0..7 | 3 both +8
                const T* p = kt + (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * SROW + kk * 16 + ((lane >> 3) & 1) * 8;
                u32 b0, b1, b2, b3;
                ldsm_x4(p, b0, b1, b2, b3);
                mma16816<T>(s[2 * np], qf[kk], b0, b1);
                mma16816<T>(s[2 * np + 1], qf[kk], b2, b3);
            }
        }

        // Scale to log2 units; mask out keys past Tk, past the causal diagonal, or by the mask.
        const bool edge =
            j0 + FL_BK > tk || (causal && j0 + FL_BK - 1 > q0 + shift) || mask_kind != 0 || nseg != 0;
#pragma unroll
        for (int nb = 0; nb < NKB; ++nb) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                float x = s[nb][e] * scale_log2;
                if (edge) {
                    const int i = e < 2 ? r0 : r1, j = j0 + nb * 8 + 2 * t + (e & 1);
                    const bool outside = e < 2 ? (j < lo0 || j >= hi0) : (j < lo1 || j >= hi1);
                    if (j >= tk || (causal && j > i + shift) || outside)
                        x = -INFINITY;
                    else if (mask_kind != 0 && i < tq)
                        x += mask_term<T>(mask, mask_kind, b * msb + h * msh + i * msq + j * msk);
                }
                s[nb][e] = x;
            }
        }

        // Online softmax. A row's 64 columns live in the 4 lanes of its quad (xor 1, 2).
        float mx[2] = {m[0], m[1]};
#pragma unroll
        for (int nb = 0; nb < NKB; ++nb) {
            mx[0] = fmaxf(mx[0], fmaxf(s[nb][0], s[nb][1]));
            mx[1] = fmaxf(mx[1], fmaxf(s[nb][2], s[nb][3]));
        }
        float mu[2];
#pragma unroll
        for (int x = 0; x < 2; ++x) {
            mx[x] = fmaxf(mx[x], __shfl_xor_sync(0xffffffffu, mx[x], 1));
            mx[x] = fmaxf(mx[x], __shfl_xor_sync(0xffffffffu, mx[x], 2));
            mu[x] = mx[x] == -INFINITY ? 0.0f : mx[x];  // nothing visible yet: keep exp2 finite
            const float corr = ex2(m[x] - mu[x]);
            m[x] = mx[x];
            l[x] *= corr;
#pragma unroll
            for (int nd = 0; nd < NDB; ++nd) {
                o[nd][2 * x] *= corr;
                o[nd][2 * x + 1] *= corr;
            }
        }
#pragma unroll
        for (int nb = 0; nb < NKB; ++nb) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                s[nb][e] = ex2(s[nb][e] - mu[e >> 1]);
                l[e >> 1] += s[nb][e];  // per-lane partial, reduced over the quad at the end
            }
        }

        // O += P V: keys 16kk..16kk+15 form the A fragment; one ldmatrix.x4.trans per 16 dims.
#pragma unroll
        for (int kk = 0; kk < FL_BK / 16; ++kk) {
            const u32 pa[4] = {pack2<T>(s[2 * kk][0], s[2 * kk][1]), pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                               pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                               pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int dp = 0; dp < D / 16; ++dp) {
                // matrices: 0 keys +0..7 dv +0..7 | 1 keys +8..15 dv +0..7 | 2 keys +0..7 dv +8..15 | 3 both +8
                const T* p = vt + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * SROW + dp * 16 + (lane >> 4) * 8;
                u32 b0, b1, b2, b3;
                ldsm_x4_trans(p, b0, b1, b2, b3);
                mma16816<T>(o[2 * dp], pa, b0, b1);
                mma16816<T>(o[2 * dp + 1], pa, b2, b3);
            }
        }
        __syncthreads();  // every warp is done with this buffer before it is refilled
    }
    cp_async_wait<0>();

    float inv[2];
#pragma unroll
    for (int x = 0; x < 2; ++x) {
        l[x] += __shfl_xor_sync(0xffffffffu, l[x], 1);
        l[x] += __shfl_xor_sync(0xffffffffu, l[x], 2);
        inv[x] = l[x] > 0.0f ? 1.0f / l[x] : 0.0f;  // fully masked rows stay zero
    }
    if (r0 < tq) {
        T* op = out + (((u64)b * tq + r0) * hq + h) * D + 2 * t;
#pragma unroll
        for (int nd = 0; nd < NDB; ++nd)
            *reinterpret_cast<u32*>(op + nd * 8) = pack2<T>(o[nd][0] * inv[0], o[nd][1] * inv[0]);
    }
    if (r1 < tq) {
        T* op = out + (((u64)b * tq + r1) * hq + h) * D + 2 * t;
#pragma unroll
        for (int nd = 0; nd < NDB; ++nd)
            *reinterpret_cast<u32*>(op + nd * 8) = pack2<T>(o[nd][2] * inv[1], o[nd][3] * inv[1]);
    }
}

// Decode: rows r = hh·Tq + i (hh = q head within the kv head's group). Dynamic smem: K/V tiles as in
// the prefill, then qs [nr][D] f32 (Q·scale·log2e), then ss [nr][FL_BK+4] f32 (scores, then P).
// With `rope_freq`, q arrives before its 1-D RoPE (the engine's fused Rope → Attention pair): each
// element is rotated by position rope_pos[i] as rope.cu does it and rounded to T, as the separate
// rope kernel would have stored it.
template <typename T, int D>
__device__ void flash_decode_impl(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                                  const void* __restrict__ mask, T* __restrict__ out, float* __restrict__ part,
                                  int tq, int tk, int hq, int hkv, float scale_log2, int causal, int mask_kind,
                                  u64 msb, u64 msh, u64 msq, u64 msk, int cps, u64 acc_off,
                                  const float* __restrict__ rope_freq, const void* __restrict__ rope_pos,
                                  int rope_pos_i64) {
    constexpr int SROW = D + 8, C8 = D / 8, SS = FL_BK + 4;
    constexpr int NRG = FL_THREADS / C8, RPT = (FL_MAXR + NRG - 1) / NRG;
    extern __shared__ __align__(16) unsigned char flash_smem[];
    __shared__ float corr_s[FL_MAXR], m_s[FL_MAXR], l_s[FL_MAXR];
    const int split = blockIdx.x, nsplit = gridDim.x, hk = blockIdx.y, b = blockIdx.z;
    const int grp = hq / hkv, nr = grp * tq;
    T* ks = reinterpret_cast<T*>(flash_smem);
    T* vs = ks + 2 * FL_BK * SROW;
    float* qs = reinterpret_cast<float*>(vs + 2 * FL_BK * SROW);
    float* ss = qs + nr * D;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;

    const int jb = split * cps * FL_BK, je = min(tk, jb + cps * FL_BK);
    const int nchunks = je > jb ? (je - jb + FL_BK - 1) / FL_BK : 0;
    const u64 stride = (u64)hkv * D;
    const T* kg = k + ((u64)b * tk * hkv + hk) * D;
    const T* vg = v + ((u64)b * tk * hkv + hk) * D;
    if (nchunks > 0) load_kv_tile<T, D>(ks, vs, kg, vg, jb, je, stride);
    cp_async_commit();
    for (int e = tid; e < nr * D; e += FL_THREADS) {
        const int r = e / D, d = e % D, i = r % tq, h = hk * grp + r / tq;
        const T* qr = q + (((u64)b * tq + i) * hq + h) * D;
        float x = to_f32(qr[d]);
        if (rope_freq) {
            constexpr int HALF = D / 2;
            const long long p = rope_pos_i64 ? ((const long long*)rope_pos)[i] : ((const int*)rope_pos)[i];
            float sn, cs;
            sincosf((float)p * rope_freq[d % HALF], &sn, &cs);
            const float other = to_f32(qr[d < HALF ? d + HALF : d - HALF]);
            x = to_f32(from_f32<T>(d < HALF ? x * cs - other * sn : x * cs + other * sn));
        }
        qs[e] = x * scale_log2;
    }

    // Softmax state of rows warp + 4x (the warp that owns them), in every lane.
    float mrow[FL_MAXR / 4], lrow[FL_MAXR / 4];
#pragma unroll
    for (int x = 0; x < FL_MAXR / 4; ++x) mrow[x] = -INFINITY, lrow[x] = 0.0f;
    // P·V: this thread owns dims c8·8..c8·8+7 of rows rg + NRG·x (threads with rg >= NRG idle).
    const int c8 = tid % C8, rg = tid / C8;
    float acc[RPT][8];
#pragma unroll
    for (int x = 0; x < RPT; ++x)
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[x][e] = 0.0f;
    // Scores: this thread owns key jj of rows rh + 2x.
    const int jj = tid & (FL_BK - 1), rh = tid / FL_BK;

    for (int it = 0; it < nchunks; ++it) {
        const int j0 = jb + it * FL_BK, buf = it & 1;
        if (it + 1 < nchunks)
            load_kv_tile<T, D>(ks + (buf ^ 1) * FL_BK * SROW, vs + (buf ^ 1) * FL_BK * SROW, kg, vg, j0 + FL_BK,
                               je, stride);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();  // the chunk (and on the first pass qs) is visible to all
        const T* kt = ks + buf * FL_BK * SROW;
        const T* vt = vs + buf * FL_BK * SROW;
        {
            float sc[FL_MAXR / 2];
#pragma unroll
            for (int x = 0; x < FL_MAXR / 2; ++x) sc[x] = 0.0f;
#pragma unroll
            for (int d8 = 0; d8 < C8; ++d8) {
                float kf[8];
                unpack8(*reinterpret_cast<const uint4*>(kt + jj * SROW + d8 * 8), kf, T());
#pragma unroll
                for (int x = 0; x < FL_MAXR / 2; ++x) {
                    const int r = rh + 2 * x;
                    if (r < nr) {
                        const float4 a = *reinterpret_cast<const float4*>(qs + r * D + d8 * 8);
                        const float4 c = *reinterpret_cast<const float4*>(qs + r * D + d8 * 8 + 4);
                        sc[x] += a.x * kf[0] + a.y * kf[1] + a.z * kf[2] + a.w * kf[3] + c.x * kf[4] + c.y * kf[5] +
                                 c.z * kf[6] + c.w * kf[7];
                    }
                }
            }
            const int j = j0 + jj;
#pragma unroll
            for (int x = 0; x < FL_MAXR / 2; ++x) {
                const int r = rh + 2 * x;
                if (r < nr) {
                    const int i = r % tq, h = hk * grp + r / tq;
                    float sv = sc[x];
                    if (j >= je || (causal && j > tk - tq + i))
                        sv = -INFINITY;
                    else if (mask_kind != 0)
                        sv += mask_term<T>(mask, mask_kind, b * msb + h * msh + i * msq + j * msk);
                    ss[r * SS + jj] = sv;
                }
            }
        }
        __syncthreads();
#pragma unroll
        for (int x = 0; x < FL_MAXR / 4; ++x) {
            const int r = warp + 4 * x;
            if (r < nr) {
                float s0 = ss[r * SS + lane], s1 = ss[r * SS + lane + 32];
                const float mx = fmaxf(mrow[x], warp_max(fmaxf(s0, s1)));
                const float mu = mx == -INFINITY ? 0.0f : mx;
                const float corr = ex2(mrow[x] - mu);
                s0 = ex2(s0 - mu);
                s1 = ex2(s1 - mu);
                lrow[x] = lrow[x] * corr + warp_sum(s0 + s1);
                mrow[x] = mx;
                ss[r * SS + lane] = s0;
                ss[r * SS + lane + 32] = s1;
                if (lane == 0) corr_s[r] = corr;
            }
        }
        __syncthreads();
        if (rg < NRG) {
#pragma unroll
            for (int x = 0; x < RPT; ++x) {
                const int r = rg + NRG * x;
                if (r < nr) {
                    const float corr = corr_s[r];
#pragma unroll
                    for (int e = 0; e < 8; ++e) acc[x][e] *= corr;
                }
            }
            const int jn = min(FL_BK, je - j0);
            for (int jv = 0; jv < jn; ++jv) {
                float vf[8];
                unpack8(*reinterpret_cast<const uint4*>(vt + jv * SROW + c8 * 8), vf, T());
#pragma unroll
                for (int x = 0; x < RPT; ++x) {
                    const int r = rg + NRG * x;
                    if (r < nr) {
                        const float p = ss[r * SS + jv];
#pragma unroll
                        for (int e = 0; e < 8; ++e) acc[x][e] = fmaf(p, vf[e], acc[x][e]);
                    }
                }
            }
        }
        __syncthreads();  // ss and this buffer are free for the next chunk
    }
    cp_async_wait<0>();

    if (lane == 0) {
#pragma unroll
        for (int x = 0; x < FL_MAXR / 4; ++x) {
            const int r = warp + 4 * x;
            if (r < nr) m_s[r] = mrow[x], l_s[r] = lrow[x];
        }
    }
    __syncthreads();
    if (rg < NRG) {
#pragma unroll
        for (int x = 0; x < RPT; ++x) {
            const int r = rg + NRG * x;
            if (r >= nr) continue;
            const int i = r % tq, h = hk * grp + r / tq;
            if (nsplit == 1) {
                const float inv = l_s[r] > 0.0f ? 1.0f / l_s[r] : 0.0f;
                uint4 o;
                o.x = pack2<T>(acc[x][0] * inv, acc[x][1] * inv);
                o.y = pack2<T>(acc[x][2] * inv, acc[x][3] * inv);
                o.z = pack2<T>(acc[x][4] * inv, acc[x][5] * inv);
                o.w = pack2<T>(acc[x][6] * inv, acc[x][7] * inv);
                *reinterpret_cast<uint4*>(out + (((u64)b * tq + i) * hq + h) * D + c8 * 8) = o;
            } else {
                const u64 prow = (((u64)b * hq + h) * tq + i) * nsplit + split;
                float4* pa = reinterpret_cast<float4*>(part + acc_off + prow * D + c8 * 8);
                pa[0] = make_float4(acc[x][0], acc[x][1], acc[x][2], acc[x][3]);
                pa[1] = make_float4(acc[x][4], acc[x][5], acc[x][6], acc[x][7]);
                if (c8 == 0) part[2 * prow] = m_s[r], part[2 * prow + 1] = l_s[r];
            }
        }
    }
}

// Merge the splits of output row blockIdx.x = (b·Hq + h)·Tq + i.
template <typename T>
__device__ void flash_combine_impl(const float* __restrict__ part, T* __restrict__ out, int tq, int hq, int d,
                                   int nsplit, u64 acc_off) {
    const int row = blockIdx.x, i = row % tq, h = (row / tq) % hq, b = row / (tq * hq);
    const float* ml = part + (u64)row * nsplit * 2;
    float mx = -INFINITY;
    for (int s = 0; s < nsplit; ++s) mx = fmaxf(mx, ml[2 * s]);
    const float mu = mx == -INFINITY ? 0.0f : mx;
    float den = 0.0f;
    for (int s = 0; s < nsplit; ++s) den += ex2(ml[2 * s] - mu) * ml[2 * s + 1];
    const float inv = den > 0.0f ? 1.0f / den : 0.0f;
    const float* acc = part + acc_off + (u64)row * nsplit * d;
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
        float num = 0.0f;
        for (int s = 0; s < nsplit; ++s) num += ex2(ml[2 * s] - mu) * acc[(u64)s * d + c];
        out[(((u64)b * tq + i) * hq + h) * d + c] = from_f32<T>(num * inv);
    }
}

#define FLASH(name, T, D)                                                                                        \
    extern "C" __global__ void flash_fwd_##name(const T* q, const T* k, const T* v, const void* mask, T* out,    \
                                                int tq, int tk, int hq, int hkv, float scale_log2, int causal,  \
                                                int mask_kind, u64 msb, u64 msh, u64 msq, u64 msk,              \
                                                const int* cu, int nseg) {                                       \
        flash_fwd_impl<T, D>(q, k, v, mask, out, tq, tk, hq, hkv, scale_log2, causal, mask_kind, msb, msh, msq, \
                             msk, cu, nseg);                                                                     \
    }                                                                                                            \
    extern "C" __global__ void flash_decode_##name(const T* q, const T* k, const T* v, const void* mask, T* out, \
                                                   float* part, int tq, int tk, int hq, int hkv, float scale_log2, \
                                                   int causal, int mask_kind, u64 msb, u64 msh, u64 msq, u64 msk, \
                                                   int cps, u64 acc_off, const float* rope_freq,                \
                                                   const void* rope_pos, int rope_pos_i64) {                    \
        flash_decode_impl<T, D>(q, k, v, mask, out, part, tq, tk, hq, hkv, scale_log2, causal, mask_kind, msb,   \
                                msh, msq, msk, cps, acc_off, rope_freq, rope_pos, rope_pos_i64);                \
    }
FLASH(f16_d64, __half, 64)
FLASH(f16_d80, __half, 80)
FLASH(f16_d128, __half, 128)
FLASH(bf16_d64, __nv_bfloat16, 64)
FLASH(bf16_d80, __nv_bfloat16, 80)
FLASH(bf16_d128, __nv_bfloat16, 128)

#define FLASH_COMBINE(name, T)                                                                                  \
    extern "C" __global__ void flash_combine_##name(const float* part, T* out, int tq, int hq, int d,          \
                                                    int nsplit, u64 acc_off) {                                  \
        flash_combine_impl<T>(part, out, tq, hq, d, nsplit, acc_off);                                           \
    }
FLASH_COMBINE(f16, __half)
FLASH_COMBINE(bf16, __nv_bfloat16)
