// Output/input alias check shared by the CUDA glue (.cpp only: torch headers; never from a .cu).
#pragma once

#include <ATen/MemoryOverlap.h>
#include <ATen/core/Tensor.h>

#include "checks.h"

namespace llmkernels {

// A thread reads each element before writing it, so out == in (same pointer, same strides) is
// safe in place; any other overlap between what is written and what is read would race.
inline void check_cuda_alias(const at::Tensor& out, const char* out_name, const at::Tensor& in,
                             const char* in_name) {
  at::assert_no_internal_overlap(out);
  at::assert_no_partial_overlap(out, in);
  if (out.numel() > 0 && out.data_ptr() == in.data_ptr()) {
    LLMK_CHECK_ARG(out.strides() == in.strides(), out_name, "shares its data with ", in_name,
                   " but has strides ", out.strides(), " instead of ", in.strides());
  }
}

}  // namespace llmkernels
