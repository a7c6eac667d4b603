// The emulator process: the Rust driver (kernels/tests/emu.rs) runs one per parity case and
// speaks a little-endian binary protocol over stdin/stdout:
//   'A' n:u32 len:u64[n]        allocate n guarded buffers; replies with their n addresses (u64)
//   'W' idx:u32 len:u64 bytes   fill buffer idx (of those allocated, in order) from its start
//   'K' file entry grid:3×u32 block:3×u32 smem:u32 nargs:u32 (kind:u8 len:u32 bytes)[nargs]
//                               launch a kernel; kind P pointer, I i32, U u64, F f32, B by-value
//                               bytes, C constant data (copied to a buffer, passed by address)
//   'G' dtype:u8 m n k batch a b c:u64 ta tb:u8 sa sb sc:u64 alpha beta:f32   a GemmCall
//   'S' ptr:u64 len:u64 value:u8                                            a Memset
//   'Y' src:u64 dst:u64 len:u64                                             a Copy
//   'R' idx:u32                 replies with the len:u64 and bytes of buffer idx
//   'E'                         checks the canaries around every buffer and exits 0
// (strings are len:u16 bytes). Errors go to stderr with a non-zero exit: 2 protocol, 3 a bug of
// the emulated program, 4 a memory fault or timeout.
#include "emu_runtime.h"

#include <cstdio>
#include <cstdlib>
#include <vector>

static void rd(void* p, size_t n) {
    if (n && fread(p, 1, n, stdin) != n) {
        fprintf(stderr, "emu: protocol: unexpected end of input\n");
        exit(2);
    }
}
template <typename T> static T rd() {
    T v;
    rd(&v, sizeof v);
    return v;
}
static std::string rd_str() {
    std::string s(rd<uint16_t>(), '\0');
    rd(&s[0], s.size());
    return s;
}
static void wr(const void* p, size_t n) {
    if (fwrite(p, 1, n, stdout) != n) exit(2);
}

static const EmuRegion& region_at(uint64_t p, uint64_t n, const char* what) {
    const EmuRegion* r = emu_region_of((const void*)p, n);
    if (!r) emu_fail("%s: [0x%llx, +%llu) is not inside one buffer", what, (unsigned long long)p, (unsigned long long)n);
    return *r;
}

// Row-major batched C = alpha·op(A)·op(B) + beta·C + bias (launch.rs GemmCall), accumulated in
// double; beta = 0 does not read C (cuBLAS semantics: C may hold garbage); bias (0: none) is [n].
static void gemm() {
    const uint8_t dt = rd<uint8_t>();
    const uint64_t m = rd<uint64_t>(), n = rd<uint64_t>(), k = rd<uint64_t>(), batch = rd<uint64_t>();
    const uint64_t a = rd<uint64_t>(), b = rd<uint64_t>(), c = rd<uint64_t>();
    const bool ta = rd<uint8_t>(), tb = rd<uint8_t>();
    const uint64_t sa = rd<uint64_t>(), sb = rd<uint64_t>(), sc = rd<uint64_t>();
    const float alpha = rd<float>(), beta = rd<float>();
    const uint64_t bias = rd<uint64_t>();
    const size_t es = dt == 0 ? 4 : 2;
    if (dt > 2) emu_fail("gemm dtype %u", dt);
    auto span = [&](uint64_t base, uint64_t stride, uint64_t elems, const char* what) {
        if (batch && elems) region_at(base, ((batch - 1) * stride + elems) * es, what);
    };
    span(a, sa, m * k, "gemm A");
    span(b, sb, k * n, "gemm B");
    span(c, sc, m * n, "gemm C");
    if (bias && n) region_at(bias, n * es, "gemm bias");
    if (bias && batch != 1) emu_fail("gemm bias with batch %llu", (unsigned long long)batch);
    auto load = [&](uint64_t p, uint64_t i) -> double {
        if (dt == 0) return ((const float*)p)[i];
        if (dt == 1) return __half2float(((const __half*)p)[i]);
        return __bfloat162float(((const __nv_bfloat16*)p)[i]);
    };
    auto store = [&](uint64_t p, uint64_t i, float v) {
        if (dt == 0) ((float*)p)[i] = v;
        else if (dt == 1) ((__half*)p)[i] = __float2half_rn(v);
        else ((__nv_bfloat16*)p)[i] = __float2bfloat16_rn(v);
    };
    for (uint64_t q = 0; q < batch; ++q) {
        const uint64_t pa = a + q * sa * es, pb = b + q * sb * es, pc = c + q * sc * es;
        for (uint64_t i = 0; i < m; ++i)
            for (uint64_t j = 0; j < n; ++j) {
                double acc = 0.0;
                for (uint64_t l = 0; l < k; ++l)
                    acc += load(pa, ta ? l * m + i : i * k + l) * load(pb, tb ? j * k + l : l * n + j);
                float v = (float)(alpha * acc);
                if (beta != 0.0f) v = (float)((double)v + (double)beta * load(pc, i * n + j));
                if (bias) v = (float)((double)v + load(bias, j));
                store(pc, i * n + j, v);
            }
    }
}

static void kernel(std::vector<unsigned char*>& consts) {
    const std::string file = rd_str(), entry = rd_str();
    uint3 grid, block;
    rd(&grid, 12);
    rd(&block, 12);
    const unsigned smem = rd<uint32_t>(), nargs = rd<uint32_t>();
    const EmuEntry* e = emu_find_entry(file, entry);
    if (!e) emu_fail("no kernel %s in %s", entry.c_str(), file.c_str());
    if (nargs != e->nparams) emu_fail("%s takes %u parameters, the plan passes %u", entry.c_str(), e->nparams, nargs);
    std::vector<std::vector<unsigned char>> bytes(nargs);
    std::vector<EmuArgView> views(nargs);
    for (unsigned i = 0; i < nargs; ++i) {
        const char kind = (char)rd<uint8_t>();
        bytes[i].resize(rd<uint32_t>());
        rd(bytes[i].data(), bytes[i].size());
        if (kind == 'C') {  // constant data: a buffer of its own, passed by address
            unsigned char* p = emu_alloc(bytes[i].size(), entry + " constant argument " + std::to_string(i));
            memcpy(p, bytes[i].data(), bytes[i].size());
            consts.push_back(p);
            bytes[i].resize(8);
            memcpy(bytes[i].data(), &p, 8);
        } else if (kind == 'P') {
            uint64_t p;
            memcpy(&p, bytes[i].data(), 8);
            if (p && !emu_region_of((const void*)p, 0))
                emu_fail("%s parameter %u: pointer 0x%llx is inside no buffer", entry.c_str(), i, (unsigned long long)p);
        }
        if (bytes[i].size() != e->sizes[i])
            emu_fail("%s parameter %u: the plan passes %zu bytes, the kernel's type has %u", entry.c_str(), i,
                     bytes[i].size(), e->sizes[i]);
        views[i] = {bytes[i].data(), (unsigned)bytes[i].size()};
    }
    emu_launch(*e, grid, block, smem, views.data());
}

int main() {
    const char* t = getenv("EMU_TIMEOUT");
    emu_install_handlers(t ? (unsigned)atoi(t) : 120);
    const char* sched = getenv("EMU_SCHEDULE");
    emu_set_schedule(sched && std::string(sched) == "adversarial");
    static char inbuf[1 << 16];
    setvbuf(stdin, inbuf, _IOFBF, sizeof inbuf);
    std::vector<unsigned char*> bufs, consts;
    std::vector<size_t> lens;
    for (;;) {
        const char cmd = (char)rd<uint8_t>();
        switch (cmd) {
            case 'A': {
                const uint32_t n = rd<uint32_t>();
                for (uint32_t i = 0; i < n; ++i) {
                    const uint64_t len = rd<uint64_t>();
                    unsigned char* p = emu_alloc(len, "buffer #" + std::to_string(bufs.size()));
                    bufs.push_back(p);
                    lens.push_back(len);
                    const uint64_t addr = (uint64_t)p;
                    wr(&addr, 8);
                }
                fflush(stdout);
                break;
            }
            case 'W': {
                const uint32_t i = rd<uint32_t>();
                const uint64_t len = rd<uint64_t>();
                if (i >= bufs.size() || len > lens[i]) {
                    fprintf(stderr, "emu: protocol: write of %llu bytes to buffer %u\n", (unsigned long long)len, i);
                    return 2;
                }
                rd(bufs[i], len);
                break;
            }
            case 'K': kernel(consts); break;
            case 'G': gemm(); break;
            case 'S': {
                const uint64_t p = rd<uint64_t>(), n = rd<uint64_t>();
                const uint8_t v = rd<uint8_t>();
                if (n) region_at(p, n, "memset");
                memset((void*)p, v, n);
                break;
            }
            case 'Y': {
                const uint64_t s = rd<uint64_t>(), d = rd<uint64_t>(), n = rd<uint64_t>();
                if (n) {
                    region_at(s, n, "copy source");
                    region_at(d, n, "copy destination");
                }
                memmove((void*)d, (const void*)s, n);
                break;
            }
            case 'R': {
                const uint32_t i = rd<uint32_t>();
                if (i >= bufs.size()) return 2;
                const uint64_t len = lens[i];
                wr(&len, 8);
                wr(bufs[i], len);
                fflush(stdout);
                break;
            }
            case 'E':
                emu_check_canaries();
                fflush(stdout);
                return 0;
            default: fprintf(stderr, "emu: protocol: command 0x%02x\n", (unsigned char)cmd); return 2;
        }
    }
}
