// The CUDA execution model on one host thread.
//
// A launch runs its blocks one after another. Within a block every CUDA thread is a fiber with its
// own stack; a fiber runs until it must wait (__syncthreads, a warp collective) or exits, and the
// scheduler resumes the runnable ones in thread order. So code between two synchronisation points
// of a thread runs without interleaving — one legal schedule of the real machine — and everything
// the hardware synchronises is synchronised here exactly: a barrier releases when every live
// thread of the block has arrived, a warp collective (shuffle, vote, ldmatrix, mma) executes when
// every live lane of its mask has arrived at the same kind of collective. Anything else is
// reported as a bug of the program: divergent collectives, a deadlock, a shuffle reading an
// inactive lane, shared or global accesses out of bounds (guard pages, checked PTX addresses).
#include "emu_runtime.h"

#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <map>
#include <sys/mman.h>
#include <unistd.h>
#include <unordered_map>
#include <vector>

uint3 threadIdx, blockIdx, blockDim, gridDim;

// ---------------------------------------------------------------------------------------------
// Reports.

static const EmuEntry* g_entry;  // the running kernel, for error context
static bool g_in_block;

static void context(char* buf, size_t n) {
    if (!g_entry) {
        buf[0] = 0;
        return;
    }
    snprintf(buf, n, "\n  in %s:%s, block (%u, %u, %u) of (%u, %u, %u), thread (%u, %u, %u) of (%u, %u, %u)",
             g_entry->file, g_entry->name, blockIdx.x, blockIdx.y, blockIdx.z, gridDim.x, gridDim.y, gridDim.z,
             g_in_block ? threadIdx.x : 0, g_in_block ? threadIdx.y : 0, g_in_block ? threadIdx.z : 0, blockDim.x,
             blockDim.y, blockDim.z);
}

void emu_fail(const char* fmt, ...) {
    char msg[2048], ctx[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    context(ctx, sizeof ctx);
    fprintf(stderr, "emu: error: %s%s\n", msg, ctx);
    fflush(stderr);
    _exit(3);
}

void emu_warn(const char* fmt, ...) {
    char msg[2048], ctx[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    context(ctx, sizeof ctx);
    fprintf(stderr, "emu: warning: %s%s\n", msg, ctx);
}

// ---------------------------------------------------------------------------------------------
// Guarded memory.

static const size_t kPage = 4096;
// The slack around a buffer: 0xFF bytes read as NaN in every float type and -1 as an index, so a
// read past the end spoils the result; anything else there afterwards is a write past the end.
static const unsigned char kCanary = 0xFF;
static std::vector<EmuRegion> g_regions;

static size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

unsigned char* emu_alloc(size_t len, const std::string& what) {
    // [guard page][canary ... | buffer | canary (< 256 bytes)][guard page]: the buffer starts
    // 256-byte aligned (as the engine's arena) and ends as close to the upper guard as that allows,
    // so overruns fault or hit the canary.
    const size_t body = round_up(round_up(len, 256) + 256, kPage);
    const size_t total = body + 2 * kPage;
    void* m = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) emu_fail("cannot map %zu bytes for %s", total, what.c_str());
    unsigned char* map = (unsigned char*)m;
    mprotect(map, kPage, PROT_NONE);
    mprotect(map + kPage + body, kPage, PROT_NONE);
    unsigned char* base = map + kPage + body - round_up(len, 256);
    memset(map + kPage, kCanary, body);
    g_regions.push_back({base, len, map, total, what});
    return base;
}

const EmuRegion* emu_region_of(const void* p, size_t n) {
    const unsigned char* c = (const unsigned char*)p;
    for (const EmuRegion& r : g_regions)
        if (c >= r.base && c + n <= r.base + r.len) return &r;
    return nullptr;
}

void emu_check_canaries() {
    for (const EmuRegion& r : g_regions) {
        const unsigned char* lo = r.map + kPage;
        const unsigned char* hi = r.map + r.map_len - kPage;
        for (const unsigned char* p = lo; p < r.base; ++p)
            if (*p != kCanary) emu_fail("%zu bytes before %s were written", (size_t)(r.base - p), r.what.c_str());
        for (const unsigned char* p = hi - 1; p >= r.base + r.len; --p)
            if (*p != kCanary)
                emu_fail("byte %zu past the end of %s (%zu bytes) was written", (size_t)(p - r.base - r.len),
                         r.what.c_str(), r.len);
    }
}

// ---------------------------------------------------------------------------------------------
// Fibers.

static const size_t kStack = 256 * 1024;
static const int kMaxThreads = 1024;

#if defined(__x86_64__) && !defined(EMU_UCONTEXT)
// Save the callee-saved registers on the current stack, store its pointer in *save, switch to
// `to` and restore what it saved (System V x86-64; the kernels never change MXCSR / the x87
// control word, so those are not switched).
extern "C" void emu_ctx_switch(void** save, void* to);
asm(R"(
    .text
    .globl emu_ctx_switch
    .type emu_ctx_switch, @function
emu_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_ctx_switch, .-emu_ctx_switch
)");
struct Ctx {
    void* sp;
};
static Ctx g_sched;
static void ctx_switch(Ctx& from, Ctx& to) { emu_ctx_switch(&from.sp, to.sp); }
static void ctx_make(Ctx& c, unsigned char* stack_lo, size_t size, void (*fn)()) {
    // The first switch "returns" into fn with the stack aligned as after a call.
    uintptr_t top = ((uintptr_t)(stack_lo + size)) & ~(uintptr_t)15;
    void** sp = (void**)(top - 16);
    sp[0] = (void*)fn;
    sp[1] = nullptr;
    sp -= 6;
    for (int i = 0; i < 6; ++i) sp[i] = nullptr;
    c.sp = sp;
}
#else
#include <ucontext.h>
struct Ctx {
    ucontext_t uc;
};
static Ctx g_sched;
static void ctx_switch(Ctx& from, Ctx& to) { swapcontext(&from.uc, &to.uc); }
static void ctx_make(Ctx& c, unsigned char* stack_lo, size_t size, void (*fn)()) {
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = stack_lo;
    c.uc.uc_stack.ss_size = size;
    c.uc.uc_link = nullptr;
    makecontext(&c.uc, fn, 0);
}
#endif

enum State : unsigned char { READY, WAIT_BAR, WAIT_WARP, DONE };

struct PendingCopy {
    unsigned char* dst;
    const unsigned char* src;
    unsigned size, src_size;
};

struct Fiber {
    Ctx ctx;
    State st;
    uint3 tid;
    int lane, warp;
    std::vector<PendingCopy> copies;  // cp.async issued by this thread, in order
    std::vector<size_t> groups;       // end index into `copies` of each committed group
    size_t landed;                    // copies [0, landed) are done
};

struct Warp;
typedef void (*Exec)(Warp& w, unsigned lanes);
enum CollKind { COLL_SHFL, COLL_VOTE, COLL_ASM };
static const char* coll_name(int k) { return k == COLL_SHFL ? "shuffle" : k == COLL_VOTE ? "vote" : "inline-PTX"; }

struct Warp {
    unsigned exist, live;  // lanes that exist in the block / have not exited
    unsigned arrived, mask;
    int kind;
    const void* id;
    Exec exec;
    void* data[32];
};

static unsigned char* g_stacks;
static std::vector<Fiber> g_fibers;
static std::vector<Warp> g_warps;
static int g_nt, g_cur, g_live, g_bar_arrived;
static std::vector<int> g_bar_waiting;
static const EmuArgView* g_args;
static unsigned g_exited_at_barrier;
static bool g_adversarial;  // see emu_set_schedule

// Shared memory: the static `emu_shared` section at shared addresses [0, size), the dynamic
// buffer after it; the dynamic buffer ends at a guard page so overruns fault.
extern "C" unsigned char __start_emu_shared[] __attribute__((weak));
extern "C" unsigned char __stop_emu_shared[] __attribute__((weak));
static const size_t kDynMax = 256 * 1024;
static unsigned char* g_dyn_arena;  // kDynMax bytes, then a guard page
static unsigned char* g_dyn;
static size_t g_dyn_size, g_dyn_off;

void* emu_dyn_smem(size_t align) {
    if ((uintptr_t)g_dyn % align) emu_fail("dynamic shared memory aligned to %zu bytes is not emulated", align);
    return g_dyn;
}

static size_t static_shared_size() { return __start_emu_shared ? (size_t)(__stop_emu_shared - __start_emu_shared) : 0; }

size_t emu_cvta_shared(const void* p) {
    const unsigned char* c = (const unsigned char*)p;
    // Anywhere in the dynamic arena maps (out-of-range offsets are reported where they are used).
    if (g_dyn_arena && c >= g_dyn_arena && c < g_dyn_arena + kDynMax + kPage) return g_dyn_off + (size_t)(c - g_dyn);
    if (__start_emu_shared && c >= __start_emu_shared && c < __stop_emu_shared) return (size_t)(c - __start_emu_shared);
    emu_fail("__cvta_generic_to_shared(%p): not a shared-memory address", p);
}

// Host pointer of shared-space bytes [a, a + n), which must lie in shared memory.
static unsigned char* shared_ptr(uint64_t a, size_t n, const char* what) {
    if (a >= g_dyn_off && a + n <= g_dyn_off + g_dyn_size) return g_dyn + (a - g_dyn_off);
    if (a + n <= static_shared_size()) return __start_emu_shared + a;
    emu_fail("%s at shared address 0x%llx (+%zu bytes) is outside shared memory (%zu static + %zu dynamic bytes)", what,
             (unsigned long long)a, n, static_shared_size(), g_dyn_size);
}

static void yield_to_scheduler() { ctx_switch(g_fibers[g_cur].ctx, g_sched); }

static bool try_complete(Warp& w);

static void release_barrier() {
    for (int t : g_bar_waiting) g_fibers[t].st = READY;
    g_bar_waiting.clear();
    g_bar_arrived = 0;
}

static void thread_exit() {
    Fiber& f = g_fibers[g_cur];
    f.st = DONE;
    if (f.landed < f.copies.size())
        emu_warn("thread exited with %zu cp.async copies it never waited for", f.copies.size() - f.landed);
    --g_live;
    Warp& w = g_warps[f.warp];
    w.live &= ~(1u << f.lane);
    if (g_bar_arrived > 0 && g_bar_arrived == g_live) {
        ++g_exited_at_barrier;
        release_barrier();
    }
    if (w.arrived) try_complete(w);
}

static void fiber_main() {
    g_entry->call(g_args);
    thread_exit();
    yield_to_scheduler();
    abort();  // never resumed
}

void emu_syncthreads() {
    ++g_bar_arrived;
    g_bar_waiting.push_back(g_cur);
    if (g_bar_arrived == g_live) {
        release_barrier();
        return;
    }
    g_fibers[g_cur].st = WAIT_BAR;
    yield_to_scheduler();
}

static bool try_complete(Warp& w) {
    const unsigned need = w.mask & w.live;
    if ((w.arrived & need) != need) return false;
    const unsigned lanes = w.arrived;
    w.arrived = 0;
    w.exec(w, lanes);
    const int base = (int)(&w - g_warps.data()) * 32;
    for (int l = 0; l < 32; ++l)
        if (lanes >> l & 1) g_fibers[base + l].st = READY;
    return true;
}

// Arrive at a warp collective with this lane's data; returns once it has executed (the last lane
// to arrive executes it for all: `exec` reads every lane's data and writes every lane's result).
static void warp_collective(int kind, const void* id, unsigned mask, void* data, Exec exec) {
    Fiber& f = g_fibers[g_cur];
    Warp& w = g_warps[f.warp];
    const unsigned bit = 1u << f.lane;
    if (!(mask & bit)) emu_fail("lane %d runs a %s with mask 0x%08x, which excludes it", f.lane, coll_name(kind), mask);
    if (w.arrived) {
        if (w.kind != kind || w.id != id || w.mask != mask)
            emu_fail("divergent warp: lane %d reaches a %s (mask 0x%08x) while lanes 0x%08x wait in a %s (mask 0x%08x)",
                     f.lane, coll_name(kind), mask, w.arrived, coll_name(w.kind), w.mask);
    } else {
        w.kind = kind;
        w.id = id;
        w.mask = mask;
        w.exec = exec;
    }
    w.arrived |= bit;
    w.data[f.lane] = data;
    if (try_complete(w)) return;
    f.st = WAIT_WARP;
    yield_to_scheduler();
}

// ---- Shuffles and votes.

struct ShflLane {
    uint64_t v, out;
    int src;
};

static void exec_shfl(Warp& w, unsigned lanes) {
    for (int l = 0; l < 32; ++l) {
        if (!(lanes >> l & 1)) continue;
        ShflLane* d = (ShflLane*)w.data[l];
        if (d->src == l) {
            d->out = d->v;
        } else if (lanes >> d->src & 1) {
            d->out = ((ShflLane*)w.data[d->src])->v;
        } else {
            emu_fail("shuffle: lane %d reads lane %d, which is not taking part (exited, masked out or past the block)",
                     l, d->src);
        }
    }
}

uint64_t emu_shfl(unsigned mask, uint64_t bits, int kind, int arg, int width) {
    if (width < 1 || width > 32 || (width & (width - 1))) emu_fail("shuffle width %d", width);
    const int l = g_fibers[g_cur].lane, base = l & ~(width - 1);
    int src = l;
    switch (kind) {
        case EMU_SHFL_IDX: src = base + (((arg % width) + width) % width); break;
        case EMU_SHFL_UP: src = l - arg >= base ? l - arg : l; break;
        case EMU_SHFL_DOWN: src = l + arg < base + width ? l + arg : l; break;
        default: src = (l ^ arg) < base + width ? (l ^ arg) : l; break;
    }
    ShflLane d{bits, 0, src};
    warp_collective(COLL_SHFL, (const void*)(uintptr_t)(kind + 1), mask, &d, exec_shfl);
    return d.out;
}

struct VoteLane {
    uint64_t v;
    int kind;
    unsigned out;
};

static void exec_vote(Warp& w, unsigned lanes) {
    unsigned ballot = 0;
    for (int l = 0; l < 32; ++l)
        if ((lanes >> l & 1) && ((VoteLane*)w.data[l])->v) ballot |= 1u << l;
    for (int l = 0; l < 32; ++l) {
        if (!(lanes >> l & 1)) continue;
        VoteLane* d = (VoteLane*)w.data[l];
        switch (d->kind) {
            case EMU_BALLOT: d->out = ballot; break;
            case EMU_ALL: d->out = ballot == lanes; break;
            case EMU_ANY: d->out = ballot != 0; break;
            case EMU_MATCH_ANY: {
                unsigned m = 0;
                for (int o = 0; o < 32; ++o)
                    if ((lanes >> o & 1) && ((VoteLane*)w.data[o])->v == d->v) m |= 1u << o;
                d->out = m;
                break;
            }
            default: d->out = 0;
        }
    }
}

unsigned emu_vote(unsigned mask, int kind, uint64_t value) {
    VoteLane d{value, kind, 0};
    warp_collective(COLL_VOTE, (const void*)(uintptr_t)(kind + 1), mask, &d, exec_vote);
    return d.out;
}

unsigned emu_activemask() { return g_warps[g_fibers[g_cur].warp].live; }

// ---------------------------------------------------------------------------------------------
// Inline PTX: the instructions our kernels use, parsed once per template.

enum InstrKind { CP_ASYNC, CP_COMMIT, CP_WAIT, CP_WAIT_ALL, LDMATRIX, MMA, EX2 };

struct Operand {
    enum { REG, VEC, ADDR, IMM } kind;
    std::vector<int> regs;  // %n of REG (1), VEC (n), ADDR (0 or 1)
    long long imm;          // IMM value, ADDR offset
};

struct Instr {
    InstrKind kind;
    std::string text;
    int nmat = 0;           // ldmatrix .x1/.x2/.x4
    bool trans = false;     // ldmatrix .trans
    bool bf16 = false;      // mma operand type
    bool ftz = false;       // ex2
    std::vector<Operand> ops;
};

static bool has(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

static std::string trim(const std::string& s) {
    size_t a = s.find_first_not_of(" \t\n"), b = s.find_last_not_of(" \t\n");
    return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

static Operand parse_operand(const std::string& text, const std::string& instr) {
    Operand o{Operand::IMM, {}, 0};
    std::string t = trim(text);
    auto reg = [&](const std::string& r) {
        std::string x = trim(r);
        if (x.size() < 2 || x[0] != '%') emu_fail("inline PTX `%s`: operand `%s` is not %%n", instr.c_str(), x.c_str());
        return atoi(x.c_str() + 1);
    };
    if (t.empty()) emu_fail("inline PTX `%s`: empty operand", instr.c_str());
    if (t[0] == '{') {
        o.kind = Operand::VEC;
        std::string in = t.substr(1, t.size() - 2);
        size_t p = 0;
        while (p <= in.size()) {
            size_t q = in.find(',', p);
            if (q == std::string::npos) q = in.size();
            o.regs.push_back(reg(in.substr(p, q - p)));
            p = q + 1;
        }
    } else if (t[0] == '[') {
        o.kind = Operand::ADDR;
        std::string in = trim(t.substr(1, t.size() - 2));
        size_t plus = in.find('+');
        if (in[0] == '%') {
            o.regs.push_back(reg(in.substr(0, plus)));
            o.imm = plus == std::string::npos ? 0 : strtoll(in.c_str() + plus + 1, nullptr, 0);
        } else {
            o.imm = strtoll(in.c_str(), nullptr, 0);
        }
    } else if (t[0] == '%') {
        o.kind = Operand::REG;
        o.regs.push_back(reg(t));
    } else {
        o.imm = strtoll(t.c_str(), nullptr, 0);
    }
    return o;
}

static Instr parse_instr(const char* tmpl) {
    std::string s = trim(tmpl);
    if (s.empty() || s.back() != ';' || s.find(';') != s.size() - 1)
        emu_fail("inline PTX `%s`: only single instructions ending in ';' are emulated", tmpl);
    s = trim(s.substr(0, s.size() - 1));
    Instr in;
    in.text = s;
    const size_t sp = s.find_first_of(" \t");
    const std::string mn = s.substr(0, sp), rest = sp == std::string::npos ? "" : s.substr(sp);
    // Operands: split at top-level commas.
    int depth = 0;
    std::string cur;
    for (char c : rest) {
        if (c == '{' || c == '[') ++depth;
        if (c == '}' || c == ']') --depth;
        if (c == ',' && depth == 0) {
            in.ops.push_back(parse_operand(cur, s));
            cur.clear();
        } else {
            cur += c;
        }
    }
    if (!trim(cur).empty()) in.ops.push_back(parse_operand(cur, s));
    auto need = [&](size_t n) {
        if (in.ops.size() != n) emu_fail("inline PTX `%s`: expected %zu operands", s.c_str(), n);
    };
    if (mn.rfind("cp.async.commit_group", 0) == 0) {
        in.kind = CP_COMMIT;
        need(0);
    } else if (mn.rfind("cp.async.wait_group", 0) == 0) {
        in.kind = CP_WAIT;
        need(1);
    } else if (mn.rfind("cp.async.wait_all", 0) == 0) {
        in.kind = CP_WAIT_ALL;
        need(0);
    } else if (mn.rfind("cp.async.ca.shared.global", 0) == 0 || mn.rfind("cp.async.cg.shared.global", 0) == 0) {
        in.kind = CP_ASYNC;
        if (in.ops.size() != 3 && in.ops.size() != 4) emu_fail("inline PTX `%s`: cp.async operands", s.c_str());
        if (in.ops[0].kind != Operand::ADDR || in.ops[1].kind != Operand::ADDR || in.ops[2].kind != Operand::IMM)
            emu_fail("inline PTX `%s`: cp.async expects [dst], [src], size[, src-size]", s.c_str());
        const long long cp = in.ops[2].imm;
        if (cp != 4 && cp != 8 && cp != 16) emu_fail("inline PTX `%s`: cp-size %lld", s.c_str(), cp);
        if (has(mn, ".cg") && cp != 16) emu_fail("inline PTX `%s`: cp.async.cg copies 16 bytes", s.c_str());
    } else if (mn.rfind("ldmatrix.sync.aligned.m8n8.", 0) == 0 && has(mn, ".shared") && has(mn, ".b16")) {
        in.kind = LDMATRIX;
        in.nmat = has(mn, ".x4") ? 4 : has(mn, ".x2") ? 2 : has(mn, ".x1") ? 1 : 0;
        in.trans = has(mn, ".trans");
        need(2);
        if (!in.nmat || in.ops[0].kind != Operand::VEC || (int)in.ops[0].regs.size() != in.nmat ||
            in.ops[1].kind != Operand::ADDR || in.ops[1].regs.size() != 1)
            emu_fail("inline PTX `%s`: ldmatrix operands", s.c_str());
    } else if (mn == "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32" ||
               mn == "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32") {
        in.kind = MMA;
        in.bf16 = has(mn, "bf16");
        need(4);
        const size_t n[4] = {4, 4, 2, 4};
        for (int i = 0; i < 4; ++i)
            if (in.ops[i].kind != Operand::VEC || in.ops[i].regs.size() != n[i])
                emu_fail("inline PTX `%s`: mma operands", s.c_str());
    } else if (mn == "ex2.approx.ftz.f32" || mn == "ex2.approx.f32") {
        in.kind = EX2;
        in.ftz = has(mn, ".ftz");
        need(2);
    } else {
        emu_fail("inline PTX instruction `%s` is not emulated (add it to tools/cuda-emu/src/runtime.cpp)", s.c_str());
    }
    return in;
}

struct AsmLane {
    const Instr* in;
    EmuAsmOperand* ops;
    int nops;
};

static uint64_t reg_read(const AsmLane& a, int n, char kind) {
    if (n < 0 || n >= a.nops) emu_fail("inline PTX `%s`: no operand %%%d", a.in->text.c_str(), n);
    const EmuAsmOperand& o = a.ops[n];
    if (o.out && !o.inout) emu_fail("inline PTX `%s`: reads output-only operand %%%d", a.in->text.c_str(), n);
    const unsigned want = kind == 'l' ? 8 : 4;
    if (kind && o.kind != 'n' && o.size != want)
        emu_fail("inline PTX `%s`: operand %%%d has %u bytes, the instruction reads %u", a.in->text.c_str(), n, o.size,
                 want);
    return o.bits;
}

static void reg_write32(const AsmLane& a, int n, uint32_t v) {
    if (n < 0 || n >= a.nops || !a.ops[n].out)
        emu_fail("inline PTX `%s`: operand %%%d is not an output", a.in->text.c_str(), n);
    if (a.ops[n].size != 4) emu_fail("inline PTX `%s`: output %%%d is not 32-bit", a.in->text.c_str(), n);
    memcpy(a.ops[n].ptr, &v, 4);
}

static uint64_t operand_value(const AsmLane& a, const Operand& o, char kind) {
    return o.kind == Operand::IMM ? (uint64_t)o.imm : reg_read(a, o.regs[0], kind);
}

static void exec_ldmatrix(Warp& w, unsigned lanes) {
    const Instr& in = *((AsmLane*)w.data[__builtin_ctz(lanes)])->in;
    if (lanes != 0xffffffffu) emu_fail("`%s` with lanes 0x%08x: needs the whole warp", in.text.c_str(), lanes);
    const uint16_t* rows[4][8];
    for (int m = 0; m < in.nmat; ++m)
        for (int r = 0; r < 8; ++r) {
            const AsmLane& a = *(AsmLane*)w.data[8 * m + r];
            const uint64_t addr = (uint32_t)reg_read(a, in.ops[1].regs[0], 'r') + in.ops[1].imm;
            if (addr & 15) emu_fail("`%s`: lane %d row address 0x%llx is not 16-byte aligned", in.text.c_str(), 8 * m + r,
                                    (unsigned long long)addr);
            rows[m][r] = (const uint16_t*)shared_ptr(addr, 16, "ldmatrix row");
        }
    for (int l = 0; l < 32; ++l) {
        const AsmLane& a = *(AsmLane*)w.data[l];
        const int g = l >> 2, t = l & 3;
        for (int m = 0; m < in.nmat; ++m) {
            // Lane l holds (row l/4, cols 2(l%4), +1) of matrix m, or with .trans (rows 2(l%4), +1, col l/4).
            const uint16_t lo = in.trans ? rows[m][2 * t][g] : rows[m][g][2 * t];
            const uint16_t hi = in.trans ? rows[m][2 * t + 1][g] : rows[m][g][2 * t + 1];
            reg_write32(a, in.ops[0].regs[m], (uint32_t)lo | ((uint32_t)hi << 16));
        }
    }
}

// mma.m16n8k16 (PTX ISA "Matrix Fragments for mma.m16n8k16 with floating point type"); g = lane/4,
// t = lane%4, a register holds two 16-bit elements, the lower index in the low half:
//   A 16x16 row-major: a0 (g, 2t..), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)
//   B 16x8 (k x n): b0 (k 2t.., n g), b1 (k 2t+8.., n g)
//   C/D 16x8 f32: c0, c1 (g, 2t, 2t+1), c2, c3 (g+8, 2t, 2t+1)
// Products are exact in double and summed there with C, then rounded once to f32.
static void exec_mma(Warp& w, unsigned lanes) {
    const Instr& in = *((AsmLane*)w.data[__builtin_ctz(lanes)])->in;
    if (lanes != 0xffffffffu) emu_fail("`%s` with lanes 0x%08x: needs the whole warp", in.text.c_str(), lanes);
    auto dec = [&](uint32_t h) -> double {
        return in.bf16 ? (double)__bfloat162float(__nv_bfloat16{(unsigned short)h})
                       : (double)__half2float(__half{(unsigned short)h});
    };
    double A[16][16], B[16][8], C[16][8];
    for (int l = 0; l < 32; ++l) {
        const AsmLane& a = *(AsmLane*)w.data[l];
        const int g = l >> 2, t = l & 3;
        uint32_t ra[4], rb[2];
        for (int i = 0; i < 4; ++i) ra[i] = (uint32_t)reg_read(a, in.ops[1].regs[i], 'r');
        for (int i = 0; i < 2; ++i) rb[i] = (uint32_t)reg_read(a, in.ops[2].regs[i], 'r');
        for (int i = 0; i < 4; ++i) {
            const int row = g + (i & 1) * 8, col = 2 * t + (i >> 1) * 8;
            A[row][col] = dec(ra[i] & 0xffff);
            A[row][col + 1] = dec(ra[i] >> 16);
        }
        for (int i = 0; i < 2; ++i) {
            B[2 * t + 8 * i][g] = dec(rb[i] & 0xffff);
            B[2 * t + 8 * i + 1][g] = dec(rb[i] >> 16);
        }
        for (int i = 0; i < 4; ++i) {
            const uint64_t bits = reg_read(a, in.ops[3].regs[i], 'f');
            C[g + (i >> 1) * 8][2 * t + (i & 1)] = (double)emu_bits_float((uint32_t)bits);
        }
    }
    for (int l = 0; l < 32; ++l) {
        const AsmLane& a = *(AsmLane*)w.data[l];
        const int g = l >> 2, t = l & 3;
        for (int i = 0; i < 4; ++i) {
            const int row = g + (i >> 1) * 8, col = 2 * t + (i & 1);
            double acc = C[row][col];
            for (int k = 0; k < 16; ++k) acc += A[row][k] * B[k][col];
            reg_write32(a, in.ops[0].regs[i], emu_float_bits((float)acc));
        }
    }
}

static void copy_landed(Fiber& f, size_t upto) {
    for (size_t i = f.landed; i < upto; ++i) {
        const PendingCopy& c = f.copies[i];
        if (c.src_size) memcpy(c.dst, c.src, c.src_size);
        memset(c.dst + c.src_size, 0, c.size - c.src_size);
    }
    if (upto > f.landed) f.landed = upto;
}

void emu_asm(const char* tmpl, std::initializer_list<EmuAsmOperand> outs, std::initializer_list<EmuAsmOperand> ins) {
    static std::unordered_map<const char*, Instr> cache;
    auto it = cache.find(tmpl);
    if (it == cache.end()) it = cache.emplace(tmpl, parse_instr(tmpl)).first;
    const Instr& in = it->second;
    EmuAsmOperand ops[32];
    int n = 0;
    for (const EmuAsmOperand& o : outs) ops[n++] = o;
    for (const EmuAsmOperand& o : ins) ops[n++] = o;
    AsmLane a{&in, ops, n};
    Fiber& f = g_fibers[g_cur];
    switch (in.kind) {
        case CP_ASYNC: {
            // Landed by the cp.async.wait that must complete it (as late as the hardware may, so
            // reading a buffer before waiting shows) or, in the adversarial schedule, at once (as
            // early as it may, so refilling a buffer other warps still read shows).
            const unsigned size = (unsigned)in.ops[2].imm;
            const uint64_t dst = (uint32_t)reg_read(a, in.ops[0].regs[0], 'r') + in.ops[0].imm;
            const uint64_t src = reg_read(a, in.ops[1].regs[0], 'l') + in.ops[1].imm;
            const uint64_t src_size = in.ops.size() == 4 ? operand_value(a, in.ops[3], 'r') : size;
            if (src_size > size) emu_fail("`%s`: src-size %llu > %u", in.text.c_str(), (unsigned long long)src_size, size);
            if ((dst % size) || (src % size))
                emu_fail("`%s`: addresses shared 0x%llx / global 0x%llx not %u-byte aligned", in.text.c_str(),
                         (unsigned long long)dst, (unsigned long long)src, size);
            unsigned char* d = shared_ptr(dst, size, "cp.async destination");
            if (src_size && !emu_region_of((const void*)src, src_size))
                emu_fail("`%s` reads global [0x%llx, +%llu), outside every buffer", in.text.c_str(),
                         (unsigned long long)src, (unsigned long long)src_size);
            f.copies.push_back({d, (const unsigned char*)src, size, (unsigned)src_size});
            if (g_adversarial) copy_landed(f, f.copies.size());
            break;
        }
        case CP_COMMIT: f.groups.push_back(f.copies.size()); break;
        case CP_WAIT: {
            const uint64_t keep = operand_value(a, in.ops[0], 0);
            if (f.groups.size() > keep) copy_landed(f, f.groups[f.groups.size() - 1 - keep]);
            break;
        }
        case CP_WAIT_ALL:
            f.groups.push_back(f.copies.size());
            copy_landed(f, f.copies.size());
            break;
        case LDMATRIX: warp_collective(COLL_ASM, &in, 0xffffffffu, &a, exec_ldmatrix); break;
        case MMA: warp_collective(COLL_ASM, &in, 0xffffffffu, &a, exec_mma); break;
        case EX2: {
            float x = emu_bits_float((uint32_t)reg_read(a, in.ops[1].regs[0], 'f'));
            if (in.ftz && std::fpclassify(x) == FP_SUBNORMAL) x = std::copysign(0.0f, x);
            float y = std::exp2(x);
            if (in.ftz && std::fpclassify(y) == FP_SUBNORMAL) y = 0.0f;
            reg_write32(a, in.ops[0].regs[0], emu_float_bits(y));
            break;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Kernel registry and launches.

static std::map<std::string, const EmuEntry*>& registry() {
    static std::map<std::string, const EmuEntry*> r;
    return r;
}

EmuRegistrar::EmuRegistrar(const EmuEntry* entries, size_t n) {
    for (size_t i = 0; i < n; ++i) registry()[std::string(entries[i].file) + ":" + entries[i].name] = &entries[i];
}

const EmuEntry* emu_find_entry(const std::string& file, const std::string& name) {
    auto it = registry().find(file + ":" + name);
    return it == registry().end() ? nullptr : it->second;
}

static void deadlock() {
    std::string s;
    char buf[256];
    snprintf(buf, sizeof buf, "deadlock: %d of %d threads live, %d waiting at __syncthreads", g_live, g_nt,
             g_bar_arrived);
    s += buf;
    for (size_t w = 0; w < g_warps.size(); ++w)
        if (g_warps[w].arrived) {
            snprintf(buf, sizeof buf, "; warp %zu: lanes 0x%08x in a %s (mask 0x%08x) wait for live lanes 0x%08x", w,
                     g_warps[w].arrived, coll_name(g_warps[w].kind), g_warps[w].mask, g_warps[w].live);
            s += buf;
        }
    g_in_block = false;
    emu_fail("%s", s.c_str());
}

// Run fiber t if it is ready; whether it ran.
static bool resume(int t) {
    Fiber& f = g_fibers[t];
    if (f.st != READY) return false;
    g_cur = t;
    threadIdx = f.tid;
    ctx_switch(g_sched, f.ctx);
    return true;
}

void emu_set_schedule(bool adversarial) { g_adversarial = adversarial; }

void emu_launch(const EmuEntry& e, uint3 grid, uint3 block, unsigned smem, const EmuArgView* args) {
    const int nt = (int)(block.x * block.y * block.z);
    if (nt < 1 || nt > kMaxThreads) emu_fail("block of %d threads", nt);
    if (smem > kDynMax) emu_fail("%u bytes of dynamic shared memory (the emulator has %zu)", smem, kDynMax);
    if (!g_stacks) {
        const size_t per = kStack + kPage;
        void* m = mmap(nullptr, per * kMaxThreads, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
        void* d = mmap(nullptr, kDynMax + kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED || d == MAP_FAILED) emu_fail("cannot map fiber stacks");
        g_stacks = (unsigned char*)m;
        for (int t = 0; t < kMaxThreads; ++t) mprotect(g_stacks + t * per, kPage, PROT_NONE);  // overflow guard
        g_dyn_arena = (unsigned char*)d;
        mprotect(g_dyn_arena + kDynMax, kPage, PROT_NONE);
    }
    g_entry = &e;
    g_args = args;
    gridDim = grid;
    blockDim = block;
    g_nt = nt;
    g_dyn_size = smem;
    g_dyn = g_dyn_arena + kDynMax - round_up(smem, 16);
    g_dyn_off = round_up(static_shared_size(), 128);
    g_fibers.resize(nt);
    g_warps.assign((nt + 31) / 32, Warp{});
    g_exited_at_barrier = 0;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                blockIdx = {bx, by, bz};
                // Shared memory starts undefined: poison it (0xFF bytes are NaN in every float type).
                memset(g_dyn, 0xFF, smem);
                if (static_shared_size()) memset(__start_emu_shared, 0xFF, static_shared_size());
                for (size_t w = 0; w < g_warps.size(); ++w) {
                    const int n = nt - 32 * (int)w >= 32 ? 32 : nt - 32 * (int)w;
                    const unsigned lanes = n == 32 ? 0xffffffffu : (1u << n) - 1;
                    g_warps[w] = Warp{lanes, lanes, 0, 0, 0, nullptr, nullptr, {}};
                }
                for (int t = 0; t < nt; ++t) {
                    Fiber& f = g_fibers[t];
                    f.st = READY;
                    f.tid = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
                    f.lane = t % 32;
                    f.warp = t / 32;
                    f.copies.clear();
                    f.groups.clear();
                    f.landed = 0;
                    ctx_make(f.ctx, g_stacks + t * (kStack + kPage) + kPage, kStack, fiber_main);
                }
                g_live = nt;
                g_bar_arrived = 0;
                g_bar_waiting.clear();
                g_in_block = true;
                for (;;) {
                    bool ran = false;
                    if (!g_adversarial) {
                        for (int t = 0; t < nt; ++t) ran |= resume(t);
                    } else {
                        // Last warp first, each as far as it gets before the next, lanes in reverse.
                        for (int w = (int)g_warps.size() - 1; w >= 0; --w)
                            for (bool again = true; again;) {
                                again = false;
                                for (int t = std::min(nt, 32 * w + 32) - 1; t >= 32 * w; --t) again |= resume(t);
                                ran |= again;
                            }
                    }
                    if (g_live == 0) break;
                    if (!ran) deadlock();
                }
                g_in_block = false;
            }
    if (g_exited_at_barrier)
        emu_warn("__syncthreads completed %u time(s) without threads that had already exited", g_exited_at_barrier);
    g_entry = nullptr;
}

// ---------------------------------------------------------------------------------------------
// Fault reports.

static void on_signal(int sig, siginfo_t* si, void*) {
    char buf[1024];
    int n;
    if (sig == SIGALRM) {
        n = snprintf(buf, sizeof buf, "emu: error: timeout");
    } else if (sig == SIGILL) {
        n = snprintf(buf, sizeof buf, "emu: error: misaligned access for its type (a GPU faults; trap at code address %p)",
                     si->si_addr);
    } else {
        const unsigned char* a = (const unsigned char*)si->si_addr;
        n = snprintf(buf, sizeof buf, "emu: error: invalid memory access at %p", (const void*)a);
        for (const EmuRegion& r : g_regions)
            if (a >= r.map && a < r.map + r.map_len) {
                if (a >= r.base + r.len)
                    n += snprintf(buf + n, sizeof buf - n, " (%zu bytes past the end of %s, %zu bytes)",
                                  (size_t)(a - r.base - r.len), r.what.c_str(), r.len);
                else
                    n += snprintf(buf + n, sizeof buf - n, " (%zu bytes before %s)", (size_t)(r.base - a),
                                  r.what.c_str());
            }
        if (g_dyn_arena && a >= g_dyn_arena && a < g_dyn_arena + kDynMax + kPage)
            n += snprintf(buf + n, sizeof buf - n, " (past the %zu bytes of dynamic shared memory)", g_dyn_size);
        if (g_stacks && a >= g_stacks && a < g_stacks + (kStack + kPage) * kMaxThreads &&
            (size_t)(a - g_stacks) % (kStack + kPage) < kPage)
            n += snprintf(buf + n, sizeof buf - n, " (a fiber stack overflowed)");
    }
    char ctx[512];
    context(ctx, sizeof ctx);
    n += snprintf(buf + n, sizeof buf - n, "%s\n", ctx);
    if (write(2, buf, n) < 0) {
    }
    _exit(4);
}

void emu_install_handlers(unsigned timeout_s) {
    static char alt[64 * 1024];
    stack_t ss{};
    ss.ss_sp = alt;
    ss.ss_size = sizeof alt;
    sigaltstack(&ss, nullptr);
    struct sigaction sa {};
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, nullptr);
    sigaction(SIGBUS, &sa, nullptr);
    sigaction(SIGALRM, &sa, nullptr);
    sigaction(SIGILL, &sa, nullptr);  // -fsanitize=alignment traps
    if (timeout_s) alarm(timeout_s);
}
