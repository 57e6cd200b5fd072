// Stand-in for the header PyTorch's CMake generates from c10/cuda/impl/cuda_cmake_macros.h.in.
// A CUDA build of torch ships the generated file; the CPU wheel does not, yet c10/cuda/CUDAMacros.h
// includes it. tools/cuda_check.sh puts this directory first on the include path so the CUDA glue
// (*_cuda.cpp) can be syntax-checked against a CPU wheel. Never used by a real build.
#pragma once

// Torch's official builds are shared libraries (libc10_cuda.so).
#define C10_CUDA_BUILD_SHARED_LIBS
