// Stub of the CUDA header for tools/cuda-emu: the whole emulated device environment.
#pragma once
#include "cuda_emu.h"
