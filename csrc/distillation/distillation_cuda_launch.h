// Launcher for the distillation CUDA row kernel: raw pointers, a stream. Plain C++ (no torch, no
// device code) so both distillation_kernels.cu and the torch glue distillation_cuda.cpp include it.
// Semantics are those of distillation.h.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

namespace llmkernels {

struct DistillationCudaParams {
  const void* student = nullptr;  // (rows, student_classes), column stride 1
  int64_t student_stride = 0;     // row stride, elements
  const void* teacher = nullptr;  // (rows, teacher_classes), the student's dtype, column stride 1
  int64_t teacher_stride = 0;
  const int64_t* target = nullptr;  // (rows,) or null
  float* soft = nullptr;
  float* hard = nullptr;
  void* grad = nullptr;  // (rows, student_classes) contiguous, or null; may equal student
  int64_t rows = 0, student_classes = 0, teacher_classes = 0;
  int64_t ignore_index = -100;
  float inv_temperature = 1.0f, soft_factor = 1.0f, beta = 0.0f;
  float softcap = 0.0f;  // <= 0: off
  float c_soft = 0.0f;   // grad_scale * (1 - hard_weight) * soft_factor / T
  float c_hard = 0.0f;   // grad_scale * hard_weight
};

// T is float, __half or __nv_bfloat16 (explicitly instantiated in distillation_kernels.cu).
// Returns the launch error, if any; nothing is synchronised.
template <typename T>
cudaError_t launch_distillation(const DistillationCudaParams& params, cudaStream_t stream);

// Top-k rows (distillation_topk_cuda.cu): the student against a stored teacher, ids (rows, k)
// int64 and logprobs (rows, k) float32; scratch (rows, k) float32 when grad is given.
struct TopkDistillationCudaParams {
  const void* student = nullptr;  // (rows, classes), column stride 1
  int64_t student_stride = 0;
  const int64_t* ids = nullptr;
  const float* logprobs = nullptr;
  const int64_t* target = nullptr;  // (rows,) or null
  float* soft = nullptr;
  float* hard = nullptr;
  void* grad = nullptr;       // (rows, classes) contiguous, or null; may equal student
  float* scratch = nullptr;   // (rows, k), needed with grad
  int64_t rows = 0, classes = 0, k = 0;
  int64_t ignore_index = -100;
  float inv_temperature = 1.0f, soft_factor = 1.0f, beta = 0.0f;
  float softcap = 0.0f;
  float c_soft = 0.0f, c_hard = 0.0f;  // as DistillationCudaParams
};

// topk_logprobs: ids (rows, k) int32 and logprobs (rows, k) float32 of logits (rows, classes);
// scratch (rows, k) uint64 for the selected keys.
struct TopkLogprobsCudaParams {
  const void* logits = nullptr;
  int64_t stride = 0;
  int32_t* ids = nullptr;
  float* logprobs = nullptr;
  unsigned long long* scratch = nullptr;
  int64_t rows = 0, classes = 0, k = 0;
  float inv_temperature = 1.0f, softcap = 0.0f;
};

template <typename T>
cudaError_t launch_topk_distillation(const TopkDistillationCudaParams& params, cudaStream_t stream);
template <typename T>
cudaError_t launch_topk_logprobs(const TopkLogprobsCudaParams& params, cudaStream_t stream);

}  // namespace llmkernels
