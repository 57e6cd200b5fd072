// Argument checks shared by every C++ entry point (CPU and CUDA glue alike).
//
// Each failure raises a c10::ValueError (Python ValueError) that names the argument and says what
// was seen and what was expected, so a bad call never turns into a crash or a silent wrong answer.
// Only torch's core headers are used here: the CUDA glue (.cpp) includes this file too.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

// LLMK_CHECK_ARG(cond, "name", message pieces...): ValueError "llmkernels: argument 'name': ..."
#define LLMK_CHECK_ARG(cond, name, ...) \
  TORCH_CHECK_VALUE((cond), "llmkernels: argument '", name, "': ", __VA_ARGS__)

#define LLMK_CHECK_DIM(t, name, ndim)                                                         \
  LLMK_CHECK_ARG((t).dim() == (ndim), name, "expected a ", (ndim), "-d tensor, got shape ", \
                 (t).sizes())

#define LLMK_CHECK_DTYPE(t, name, expected_dtype)                                       \
  LLMK_CHECK_ARG((t).scalar_type() == (expected_dtype), name, "expected dtype ",        \
                 (expected_dtype), ", got ", (t).scalar_type())

// (Parameters are never named like a member the macro calls: `device` would be substituted
// into `(t).device()`.)
#define LLMK_CHECK_DEVICE(t, name, expected_device)                                       \
  LLMK_CHECK_ARG((t).device() == (expected_device), name, "expected a tensor on ",       \
                 (expected_device), ", got ", (t).device())

#define LLMK_CHECK_DEVICE_TYPE(t, name, expected_type)                                 \
  LLMK_CHECK_ARG((t).device().type() == (expected_type), name, "expected a tensor on ", \
                 (expected_type), ", got ", (t).device())

// Shape equality with any IntArrayRef-like expected value (sizes() of another tensor, a list).
#define LLMK_CHECK_SHAPE(t, name, expected)                                                   \
  LLMK_CHECK_ARG((t).sizes() == at::IntArrayRef(expected), name, "expected shape ",         \
                 at::IntArrayRef(expected), ", got ", (t).sizes())

#define LLMK_CHECK_SIZE(t, name, axis, expected)                                          \
  LLMK_CHECK_ARG((t).size(axis) == (expected), name, "expected size ", (expected), " at dim ", \
                 (axis), ", got shape ", (t).sizes())

#define LLMK_CHECK_CONTIGUOUS(t, name)                                                         \
  LLMK_CHECK_ARG((t).is_contiguous(), name, "expected a contiguous tensor, got shape ",       \
                 (t).sizes(), " with strides ", (t).strides())

// The innermost dimension must be dense (stride 1) so rows can be read as plain arrays.
#define LLMK_CHECK_LAST_DIM_CONTIGUOUS(t, name)                                               \
  LLMK_CHECK_ARG((t).dim() == 0 || (t).size(-1) <= 1 || (t).stride(-1) == 1, name,          \
                 "expected stride 1 in the last dimension, got shape ", (t).sizes(),        \
                 " with strides ", (t).strides())

// Floating types the kernels accept for activations.
#define LLMK_CHECK_FLOATING(t, name)                                                          \
  LLMK_CHECK_ARG((t).scalar_type() == at::kFloat || (t).scalar_type() == at::kHalf ||       \
                     (t).scalar_type() == at::kBFloat16,                                    \
                 name, "expected dtype float32, float16 or bfloat16, got ", (t).scalar_type())

namespace llmkernels {

// A per-row float32 output: (rows,), contiguous, on `device`.
inline void check_row_output(const at::Tensor& t, const char* name, int64_t rows,
                             const at::Device& device) {
  LLMK_CHECK_DEVICE(t, name, device);
  LLMK_CHECK_DTYPE(t, name, at::kFloat);
  LLMK_CHECK_DIM(t, name, 1);
  LLMK_CHECK_SIZE(t, name, 0, rows);
  LLMK_CHECK_CONTIGUOUS(t, name);
}

}  // namespace llmkernels
