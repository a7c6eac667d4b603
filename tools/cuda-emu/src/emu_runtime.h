// The host side of the emulator (runtime.cpp), used by the protocol server (server.cpp).
#pragma once
#include "cuda_emu.h"
#include <string>

// Report a bug found in the emulated program (with the running kernel, block and thread) and
// exit with status 3. Warnings go to stderr and do not fail the run.
[[noreturn]] void emu_fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void emu_warn(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// "Device" memory: a host buffer of `len` bytes at a 256-byte aligned address (as cudaMalloc),
// with inaccessible guard pages on both sides and the bytes between the buffer and the guards
// filled with 0xFF (emu_check_canaries reports writes there).
unsigned char* emu_alloc(size_t len, const std::string& what);
// The buffer holding all of [p, p + n), or nullptr.
struct EmuRegion {
    unsigned char* base;
    size_t len;
    unsigned char* map;
    size_t map_len;
    std::string what;
};
const EmuRegion* emu_region_of(const void* p, size_t n);
void emu_check_canaries();

// SIGSEGV/SIGBUS (an access outside every buffer), SIGALRM (timeout) → a report and exit 4.
void emu_install_handlers(unsigned timeout_s);

// The order fibers run in. Default: in thread order, each until it waits, round after round (warps
// advance roughly together), cp.async landing at the wait. Adversarial: the last warp first, each
// as far as it can get before the next, lanes in reverse order, cp.async landing at once. A
// missing barrier or __syncwarp shows in one of the two for either direction of the race.
void emu_set_schedule(bool adversarial);

const EmuEntry* emu_find_entry(const std::string& file, const std::string& name);
// Run every block of the grid (one at a time, each thread a fiber) to completion.
void emu_launch(const EmuEntry& e, uint3 grid, uint3 block, unsigned smem, const EmuArgView* args);
