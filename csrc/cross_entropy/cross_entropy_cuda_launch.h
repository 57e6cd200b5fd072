// Launcher for the cross-entropy CUDA row kernel: raw pointers, a stream. Plain C++ (no torch, no
// device code) so both cross_entropy_kernels.cu and the torch glue cross_entropy_cuda.cpp include it.
// Semantics are those of cross_entropy.h.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

namespace llmkernels {

struct CrossEntropyCudaParams {
  const void* logits = nullptr;  // (rows, classes), column stride 1
  int64_t logits_stride = 0;     // row stride, elements
  const int64_t* target = nullptr;
  const float* class_weight = nullptr;  // (classes,) or null
  float* loss_rows = nullptr;
  float* lse = nullptr;
  void* grad = nullptr;  // (rows, classes) contiguous, logits' dtype, or null; may equal logits
  int64_t rows = 0, classes = 0;
  int64_t ignore_index = -100;
  // sum_c w_c, needed with label smoothing only: weight_sum_device (one double on the device,
  // written by launch_weight_sum) when class weights are given, else weight_sum (= classes).
  const double* weight_sum_device = nullptr;
  double weight_sum = 0.0;
  double label_smoothing = 0.0, z_loss = 0.0;
  double softcap = 0.0;  // <= 0: off
  double ce_scale = 1.0, z_scale = 1.0;
};

// T is float, __half or __nv_bfloat16 (explicitly instantiated in cross_entropy_kernels.cu).
// Returns the launch error, if any; nothing is synchronised.
template <typename T>
cudaError_t launch_cross_entropy(const CrossEntropyCudaParams& params, cudaStream_t stream);

// sum of class_weight[0, classes) in float64, written to *out (device); one small kernel, so the
// host never reads device memory.
cudaError_t launch_weight_sum(const float* class_weight, int64_t classes, double* out,
                              cudaStream_t stream);

}  // namespace llmkernels
