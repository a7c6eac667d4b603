// The CUDA device environment on the host, for tools/cuda-emu: kernels/cuda/*.cu compile with g++
// against this header (through the cuda_fp16.h / cuda_bf16.h stubs) and run in the runtime of
// src/runtime.cpp, where every CUDA thread of a block is a fiber and barriers, warp collectives
// and the few PTX instructions we write in inline asm are emulated exactly (see README.md).
//
// Only what the kernels use is here; a missing intrinsic is a compile error, never a silent
// approximation. Numerics: f32/f64 arithmetic is IEEE (the build uses -ffp-contract=off, so the
// __fmul_rn-style intrinsics are plain operations); libm's expf/erff/... stand in for CUDA's (both
// within a couple of ulp); conversions to f16/bf16 round to nearest even like the __*_rn ones.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <type_traits>
#include <utility>

// ---- Keywords.
#define __device__
#define __host__
#define __global__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// Static shared memory: one instance per variable (blocks run one at a time) in a section of its
// own, which the runtime poisons before every block so reads of unwritten shared memory show.
// `extern __shared__` arrays (dynamic shared memory) are rewritten by the driver into
// `T* name = (T*)emu_dyn_smem(alignment);` (see kernels/tests/emu.rs).
#define __shared__ static __attribute__((section("emu_shared")))

// ---- Thread and block indices: the runtime sets them whenever it switches fibers.
struct uint3 {
    unsigned x, y, z;
};
extern uint3 threadIdx, blockIdx, blockDim, gridDim;
static const int warpSize = 32;

void* emu_dyn_smem(size_t align);
void emu_syncthreads();
inline void __syncthreads() { emu_syncthreads(); }
inline void __threadfence_block() {}
inline void __threadfence() {}

// ---- Vector and 16-bit float types (layout and alignment as CUDA's).
struct __half {
    unsigned short __x;
};
struct __nv_bfloat16 {
    unsigned short __x;
};
struct __align__(4) __half2 {
    __half x, y;
};
struct __align__(4) __nv_bfloat162 {
    __nv_bfloat16 x, y;
};
struct __align__(8) float2 {
    float x, y;
};
struct __align__(16) float4 {
    float x, y, z, w;
};
struct __align__(8) uint2 {
    unsigned x, y;
};
struct __align__(16) uint4 {
    unsigned x, y, z, w;
};
struct __align__(8) int2 {
    int x, y;
};
struct __align__(16) int4 {
    int x, y, z, w;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

// Round x to a 16-bit binary format with `ebits` exponent and `mbits` fraction bits: nearest,
// ties to even, subnormals, overflow to inf, NaN to a quiet NaN. One rounding from the double,
// as __double2half does (x = a float converts to double exactly).
inline unsigned short emu_round16(double x, int ebits, int mbits) {
    const int bias = (1 << (ebits - 1)) - 1;
    const unsigned sign = std::signbit(x) ? 0x8000u : 0u;
    const unsigned inf = ((1u << ebits) - 1) << mbits;
    if (x != x) return (unsigned short)(sign | inf | ((1u << mbits) - 1));
    const double a = std::fabs(x);
    if (a == 0.0) return (unsigned short)sign;
    int e;
    std::frexp(a, &e);  // a in [2^(e-1), 2^e)
    int E = e - 1;
    if (E < 1 - bias) E = 1 - bias;  // subnormal range: the quantum stays 2^(1-bias-mbits)
    double q = std::nearbyint(std::ldexp(a, mbits - E));  // exact scaling, one rounding
    if (q >= std::ldexp(1.0, mbits + 1)) {  // rounded up into the next binade
        q /= 2;
        E += 1;
    }
    if (E > bias) return (unsigned short)(sign | inf);
    const unsigned m = (unsigned)q;
    if (m < (1u << mbits)) return (unsigned short)(sign | m);  // subnormal
    return (unsigned short)(sign | ((unsigned)(E + bias) << mbits) | (m - (1u << mbits)));
}

inline float emu_bits_float(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline uint32_t emu_float_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

inline float __half2float(__half h) {
    const uint32_t sign = (uint32_t)(h.__x & 0x8000u) << 16, e = (h.__x >> 10) & 31u, m = h.__x & 0x3ffu;
    if (e == 31) return emu_bits_float(sign | 0x7f800000u | (m << 13));
    if (e == 0) {
        const float v = (float)m * 5.9604644775390625e-8f;  // m · 2^-24, exact
        return sign ? -v : v;
    }
    return emu_bits_float(sign | ((e + 112) << 23) | (m << 13));
}
// Fast path of emu_round16(x, 5, 10) for floats.
inline __half __float2half_rn(float f) {
    const uint32_t x = emu_float_bits(f), sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return {(unsigned short)(sign | 0x7fffu)};
    if (ax >= 0x47800000u) return {(unsigned short)(sign | 0x7c00u)};  // >= 65536: inf
    if (ax >= 0x38800000u) {  // normal half: rebias, round 23 → 10 fraction bits to nearest even
        uint32_t r = ax - 0x38000000u;
        r += 0xfffu + ((r >> 13) & 1u);
        return {(unsigned short)(sign | (r >> 13))};  // a carry into exponent 31 is inf, as it should
    }
    return {(unsigned short)(sign | (uint32_t)std::nearbyint(emu_bits_float(ax) * 16777216.0f))};
}
inline __half __double2half(double x) { return {emu_round16(x, 5, 10)}; }
inline float __bfloat162float(__nv_bfloat16 b) { return emu_bits_float((uint32_t)b.__x << 16); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    const uint32_t u = emu_float_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return {(unsigned short)((u >> 16) | 0x7fffu)};
    return {(unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)};
}
inline __nv_bfloat16 __double2bfloat16(double x) { return {emu_round16(x, 8, 7)}; }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.__x; }
inline __half __ushort_as_half(unsigned short u) { return {u}; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return {u}; }
inline __half2 __floats2half2_rn(float a, float b) { return {__float2half_rn(a), __float2half_rn(b)}; }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
    return {__float2bfloat16_rn(a), __float2bfloat16_rn(b)};
}
inline float2 __half22float2(__half2 h) { return {__half2float(h.x), __half2float(h.y)}; }
inline float2 __bfloat1622float2(__nv_bfloat162 h) { return {__bfloat162float(h.x), __bfloat162float(h.y)}; }

// ---- Arithmetic intrinsics (no FMA contraction in this build, so these are the plain ops).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline float __double2float_rn(double a) { return (float)a; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x != x ? 0.0f : std::fmin(std::fmax(x, 0.0f), 1.0f); }
inline float __int_as_float(int i) { return emu_bits_float((uint32_t)i); }
inline int __float_as_int(float f) { return (int)emu_float_bits(f); }
inline float __uint_as_float(unsigned u) { return emu_bits_float(u); }
inline unsigned __float_as_uint(float f) { return emu_float_bits(f); }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
inline int __ffs(unsigned v) { return __builtin_ffs((int)v); }
inline int __ffsll(unsigned long long v) { return __builtin_ffsll((long long)v); }
inline int __clz(unsigned v) { return v ? __builtin_clz(v) : 32; }
inline int __clzll(unsigned long long v) { return v ? __builtin_clzll(v) : 64; }

// CUDA's min/max overloads (the kernels call them unqualified on ints and floats).
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }

// ---- Atomics: fibers never interleave inside a plain read-modify-write, so these are exact.
template <typename T> inline T atomicAdd(T* p, T v) {
    const T o = *p;
    *p = o + v;
    return o;
}
template <typename T> inline T atomicMax(T* p, T v) {
    const T o = *p;
    *p = o > v ? o : v;
    return o;
}
template <typename T> inline T atomicMin(T* p, T v) {
    const T o = *p;
    *p = o < v ? o : v;
    return o;
}
template <typename T> inline T atomicExch(T* p, T v) {
    const T o = *p;
    *p = v;
    return o;
}
template <typename T> inline T atomicCAS(T* p, T cmp, T v) {
    const T o = *p;
    if (o == cmp) *p = v;
    return o;
}
template <typename T> inline T atomicOr(T* p, T v) {
    const T o = *p;
    *p = o | v;
    return o;
}
template <typename T> inline T atomicAnd(T* p, T v) {
    const T o = *p;
    *p = o & v;
    return o;
}

// ---- Warp collectives. Each waits for every live lane of `mask` (the runtime checks that they
// all reach the same kind of collective with the same mask).
enum EmuShfl { EMU_SHFL_IDX, EMU_SHFL_UP, EMU_SHFL_DOWN, EMU_SHFL_XOR };
uint64_t emu_shfl(unsigned mask, uint64_t bits, int kind, int arg, int width);
enum EmuVote { EMU_BALLOT, EMU_MATCH_ANY, EMU_SYNCWARP, EMU_ALL, EMU_ANY };
unsigned emu_vote(unsigned mask, int kind, uint64_t value);
unsigned emu_activemask();

template <typename T> inline T emu_shfl_t(unsigned mask, T v, int kind, int arg, int width) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a value over 8 bytes");
    uint64_t b = 0;
    std::memcpy(&b, &v, sizeof(T));
    b = emu_shfl(mask, b, kind, arg, width);
    T r;
    std::memcpy(&r, &b, sizeof(T));
    return r;
}
template <typename T> inline T __shfl_sync(unsigned m, T v, int src, int w = 32) {
    return emu_shfl_t(m, v, EMU_SHFL_IDX, src, w);
}
template <typename T> inline T __shfl_up_sync(unsigned m, T v, unsigned d, int w = 32) {
    return emu_shfl_t(m, v, EMU_SHFL_UP, (int)d, w);
}
template <typename T> inline T __shfl_down_sync(unsigned m, T v, unsigned d, int w = 32) {
    return emu_shfl_t(m, v, EMU_SHFL_DOWN, (int)d, w);
}
template <typename T> inline T __shfl_xor_sync(unsigned m, T v, int lane_mask, int w = 32) {
    return emu_shfl_t(m, v, EMU_SHFL_XOR, lane_mask, w);
}
inline unsigned __ballot_sync(unsigned m, int p) { return emu_vote(m, EMU_BALLOT, p != 0); }
inline int __any_sync(unsigned m, int p) { return (int)emu_vote(m, EMU_ANY, p != 0); }
inline int __all_sync(unsigned m, int p) { return (int)emu_vote(m, EMU_ALL, p != 0); }
template <typename T> inline unsigned __match_any_sync(unsigned m, T v) {
    uint64_t b = 0;
    std::memcpy(&b, &v, sizeof(T));
    return emu_vote(m, EMU_MATCH_ANY, b);
}
inline void __syncwarp(unsigned m = 0xffffffffu) { emu_vote(m, EMU_SYNCWARP, 0); }
inline unsigned __activemask() { return emu_activemask(); }

// ---- Shared-space addresses: the dynamic shared memory window of the running block.
size_t emu_cvta_shared(const void* p);
inline size_t __cvta_generic_to_shared(const void* p) { return emu_cvta_shared(p); }

// ---- Inline PTX. The driver rewrites `asm [volatile] ("tmpl" : outs : ins [: clobbers]);` into
// `emu_asm("tmpl", {emu_asm_out("=r", x), ...}, {emu_asm_in("r", y), ...});` and the runtime
// interprets the template (operands numbered outputs first, as in GCC/NVCC).
struct EmuAsmOperand {
    void* ptr;      // output / in-out: where the register lives
    uint64_t bits;  // input: its value
    unsigned char size;
    char kind;  // constraint letter: r (32-bit), l (64-bit), f (f32), d (f64), h (16-bit), n (immediate)
    bool out, inout;
};
template <typename T> inline EmuAsmOperand emu_asm_out(const char* c, T& x) {
    static_assert(sizeof(T) <= 8, "asm operand over 8 bytes");
    EmuAsmOperand o{&x, 0, (unsigned char)sizeof(T), c[std::strlen(c) - 1], true, c[0] == '+'};
    if (o.inout) std::memcpy(&o.bits, &x, sizeof(T));
    return o;
}
template <typename T> inline EmuAsmOperand emu_asm_in(const char* c, const T& x) {
    static_assert(sizeof(T) <= 8, "asm operand over 8 bytes");
    EmuAsmOperand o{nullptr, 0, (unsigned char)sizeof(T), c[std::strlen(c) - 1], false, false};
    std::memcpy(&o.bits, &x, sizeof(T));
    return o;
}
void emu_asm(const char* tmpl, std::initializer_list<EmuAsmOperand> outs, std::initializer_list<EmuAsmOperand> ins);

// ---- Kernel registry: the driver generates one translation unit per .cu file that includes it
// inside a namespace and lists its entry points with EMU_ENTRY.
struct EmuArgView {
    const unsigned char* data;
    unsigned size;
};
struct EmuEntry {
    const char* file;
    const char* name;
    void (*call)(const EmuArgView*);  // decodes the parameter bytes and runs the kernel body
    const unsigned* sizes;            // sizeof each parameter
    unsigned nparams;
};
template <typename F> struct EmuInvoker;
template <typename... A> struct EmuInvoker<void (*)(A...)> {
    static constexpr unsigned nparams = sizeof...(A);
    static constexpr unsigned sizes[sizeof...(A) + 1] = {(unsigned)sizeof(typename std::decay<A>::type)..., 0u};
    template <typename T> static T param(const EmuArgView& v) {
        T t;
        std::memcpy((void*)&t, v.data, sizeof(T));
        return t;
    }
    template <void (*K)(A...), size_t... I> static void run(const EmuArgView* a, std::index_sequence<I...>) {
        K(param<typename std::decay<A>::type>(a[I])...);
    }
    template <void (*K)(A...)> static void call(const EmuArgView* a) { run<K>(a, std::index_sequence_for<A...>{}); }
};
#define EMU_ENTRY(file, ns, name)                                                                    \
    EmuEntry {                                                                                       \
        file, #name, &EmuInvoker<decltype(&ns::name)>::call<&ns::name>, EmuInvoker<decltype(&ns::name)>::sizes, \
            EmuInvoker<decltype(&ns::name)>::nparams                                                 \
    }
struct EmuRegistrar {
    EmuRegistrar(const EmuEntry* entries, size_t n);
};
