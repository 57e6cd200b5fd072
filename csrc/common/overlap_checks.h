// Memory-overlap checks of the C++ entry points' outputs (CPU and CUDA glue alike; torch core
// headers only, never from a .cu). A kernel that wrote into memory it still reads, or wrote one
// element twice, would give an answer that depends on the schedule: these checks refuse such
// arguments with a ValueError naming them.
#pragma once

#include <ATen/MemoryOverlap.h>
#include <ATen/core/Tensor.h>

#include "checks.h"

namespace llmkernels {

// `a` and `b` must not share memory. Layouts whose overlap torch cannot decide cheaply (TooHard:
// e.g. slices of one fused buffer) are accepted, as in torch's own out= checks.
inline void check_disjoint(const at::Tensor& a, const char* a_name, const at::Tensor& b,
                           const char* b_name) {
  const auto status = at::get_overlap_status(a, b);
  LLMK_CHECK_ARG(status != at::MemOverlapStatus::Partial && status != at::MemOverlapStatus::Full,
                 a_name, "overlaps ", b_name, "; expected separate memory");
}

// An output must not alias itself (an expanded tensor would be written from several threads).
inline void check_output(const at::Tensor& t, const char* name) {
  LLMK_CHECK_ARG(at::has_internal_overlap(t) != at::MemOverlap::Yes, name,
                 "has internally overlapping memory (an expanded tensor?), shape ", t.sizes(),
                 " strides ", t.strides());
}

// `out` must be `in` itself (in place: the kernels read each block before they write it) or
// separate memory; any other overlap would read values already written.
inline void check_in_place_or_disjoint(const at::Tensor& in, const char* in_name,
                                       const at::Tensor& out, const char* out_name) {
  const auto status = at::get_overlap_status(in, out);
  const bool same_start_other_layout =
      in.numel() > 0 && in.data_ptr() == out.data_ptr() && in.strides() != out.strides();
  LLMK_CHECK_ARG(status != at::MemOverlapStatus::Partial && !same_start_other_layout, out_name,
                 "partially overlaps ", in_name, " (strides ", out.strides(), " vs ",
                 in.strides(), "); it must be ", in_name, " itself (in place) or separate memory");
}

// The CUDA kernels' rule: a thread reads each element before writing it, so out == in (same
// pointer, same strides) is safe in place; any other overlap between what is written and what is
// read would race.
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
