// One token per row from sorted candidates (Op::SampleSorted): one thread per row repeats the host
// sampler's walk (kernels/src/cpu/token.rs `draw`) step for step, sums in f64 in candidate order,
// so both backends draw the same token. values [B,K] descending (-inf ends the candidates), ids
// [B,K] i64, params [B,5] f32 = (temperature, top_k, top_p, u_hi, u_lo); out [B] i64, -1 for none.
#include "focus_common.cuh"

template <typename T> __device__ __forceinline__ double token_weight(const T* v, int i, float max, float t) {
    return (double)(float)exp((double)((to_f32(v[i]) - max) / t));
}

template <typename T>
__device__ void sample_sorted_impl(const T* __restrict__ values, const i64* __restrict__ ids,
                                   const float* __restrict__ params, i64* __restrict__ out, int rows, int k) {
    const int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= rows) return;
    const T* v = values + (u64)row * k;
    const float* p = params + (u64)row * 5;
    const float temperature = p[0], top_p = p[2];
    const long long top_k = p[1] > 0.0f ? (long long)p[1] : 0;
    const double u = (double)p[3] + (double)p[4];
    int n = 0;
    while (n < k && to_f32(v[n]) != -INFINITY) ++n;
    if (top_k > 0 && top_k < n) n = (int)top_k;
    if (n == 0) {
        out[row] = -1;
        return;
    }
    if (temperature == 0.0f || top_k == 1) {
        out[row] = ids[(u64)row * k];
        return;
    }
    const float max = to_f32(v[0]);
    double total = 0.0;
    for (int i = 0; i < n; ++i) total += token_weight(v, i, max, temperature);
    int keep = n;
    if (top_p < 1.0f) {
        double acc = 0.0;
        for (int i = 0; i < n; ++i) {
            acc += token_weight(v, i, max, temperature) / total;
            if (acc >= (double)top_p) {
                keep = i + 1;
                break;
            }
        }
        total = 0.0;
        for (int i = 0; i < keep; ++i) total += token_weight(v, i, max, temperature);
    }
    double r = u * total;
    int pick = keep - 1;
    for (int i = 0; i < keep; ++i) {
        r -= token_weight(v, i, max, temperature);
        if (r <= 0.0) {
            pick = i;
            break;
        }
    }
    out[row] = ids[(u64)row * k + pick];
}

#define SAMPLE_SORTED(name, T)                                                                                \
    extern "C" __global__ void sample_sorted_##name(const T* values, const i64* ids, const float* params,   \
                                                    i64* out, int rows, int k) {                            \
        sample_sorted_impl<T>(values, ids, params, out, rows, k);                                            \
    }
FOR_FLOAT_TYPES(SAMPLE_SORTED)
