// Scaled dot-product attention, correctness-first baseline (no tensor cores yet): one warp per
// query row, lanes split the head dim, K/V tiles staged in shared memory for the block's rows,
// online softmax in f32. Layout q [B,Tq,Hq,D], k [B,Tk,Hkv,D], v [B,Tk,Hkv,Dv], out
// [B,Tq,Hq,Dv]; GQA (kv head = h / (Hq/Hkv)); causal is bottom-right aligned (key j visible to
// query i iff j <= Tk - Tq + i); optional mask with element strides (0 where broadcast):
// kind 1 = bool (u8, nonzero attends), kind 2 = additive f32. Fully masked rows give zeros.
// Packed variable-length sequences (nseg > 0, cumulative offsets cu[0..nseg], Tq = Tk): a query sees
// only its own sequence's keys; the block stages only the keys its rows' sequences span.
// Grid (ceil(Tq / AT_WARPS), Hq, B), block 32·AT_WARPS, dynamic smem AT_KB·(D+Dv)·4 bytes.
#include "focus_common.cuh"

#define AT_WARPS 4
#define AT_KB 32
#define AT_MAXD 256

template <typename T>
__device__ void attention_impl(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                               const void* __restrict__ mask, T* __restrict__ out, int tq, int tk, int hq, int hkv,
                               int d, int dv, float scale, int causal, int mask_kind, u64 msb, u64 msh, u64 msq,
                               u64 msk, const int* __restrict__ cu, int nseg) {
    extern __shared__ float smem[];
    float* ks = smem;
    float* vs = smem + AT_KB * d;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int b = blockIdx.z, h = blockIdx.y, i = blockIdx.x * AT_WARPS + warp;
    const int hk = h / (hq / hkv);
    const bool active = i < tq;
    float qr[AT_MAXD / 32], acc[AT_MAXD / 32];
#pragma unroll
    for (int r = 0; r < AT_MAXD / 32; ++r) {
        const int c = lane + 32 * r;
        qr[r] = (active && c < d) ? to_f32(q[(((u64)b * tq + i) * hq + h) * d + c]) * scale : 0.0f;
        acc[r] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    const int i_first = blockIdx.x * AT_WARPS, i_last = min(i_first + AT_WARPS, tq) - 1;
    int lo, hi, jb, je, unused;
    seq_bounds(cu, nseg, min(i, tq - 1), tk, lo, hi);
    seq_bounds(cu, nseg, i_first, tk, jb, unused);
    seq_bounds(cu, nseg, i_last, tk, unused, je);
    const int last = min(causal ? tk - tq + i : tk - 1, hi - 1);
    for (int j0 = jb; j0 < je; j0 += AT_KB) {
        __syncthreads();  // the previous tile is no longer read
        for (int e = threadIdx.x; e < AT_KB * d; e += blockDim.x) {
            const int j = j0 + e / d;
            ks[e] = j < tk ? to_f32(k[(((u64)b * tk + j) * hkv + hk) * d + e % d]) : 0.0f;
        }
        for (int e = threadIdx.x; e < AT_KB * dv; e += blockDim.x) {
            const int j = j0 + e / dv;
            vs[e] = j < tk ? to_f32(v[(((u64)b * tk + j) * hkv + hk) * dv + e % dv]) : 0.0f;
        }
        __syncthreads();
        if (!active) continue;
        const int jn = min(AT_KB, tk - j0);
        for (int jj = 0; jj < jn; ++jj) {
            const int j = j0 + jj;
            if (j > last) break;
            if (j < lo) continue;
            float s = 0.0f;
#pragma unroll
            for (int r = 0; r < AT_MAXD / 32; ++r) {
                const int c = lane + 32 * r;
                if (c < d) s = fmaf(qr[r], ks[jj * d + c], s);
            }
            s = warp_sum(s);
            if (mask_kind) {
                const u64 mo = b * msb + h * msh + i * msq + j * msk;
                if (mask_kind == 1) {
                    if (!((const unsigned char*)mask)[mo]) continue;
                } else {
                    s += ((const float*)mask)[mo];
                }
            }
            if (s == -INFINITY) continue;
            const float mn = fmaxf(m, s);
            const float corr = expf(m - mn), p = expf(s - mn);
            l = l * corr + p;
#pragma unroll
            for (int r = 0; r < AT_MAXD / 32; ++r) {
                const int c = lane + 32 * r;
                if (c < dv) acc[r] = fmaf(p, vs[jj * dv + c], acc[r] * corr);
            }
            m = mn;
        }
    }
    if (!active) return;
#pragma unroll
    for (int r = 0; r < AT_MAXD / 32; ++r) {
        const int c = lane + 32 * r;
        if (c < dv) out[(((u64)b * tq + i) * hq + h) * dv + c] = from_f32<T>(l > 0.0f ? acc[r] / l : 0.0f);
    }
}

#define ATTENTION(name, T)                                                                                       \
    extern "C" __global__ void attention_##name(const T* q, const T* k, const T* v, const void* mask, T* out,    \
                                                int tq, int tk, int hq, int hkv, int d, int dv, float scale,    \
                                                int causal, int mask_kind, u64 msb, u64 msh, u64 msq, u64 msk,  \
                                                const int* cu, int nseg) {                                       \
        attention_impl<T>(q, k, v, mask, out, tq, tk, hq, hkv, d, dv, scale, causal, mask_kind, msb, msh, msq,  \
                          msk, cu, nseg);                                                                        \
    }
FOR_FLOAT_TYPES(ATTENTION)
