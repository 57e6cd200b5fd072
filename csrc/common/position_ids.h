// position_ids checks shared by the positional ops' CPU and CUDA glue (rotary, sinusoidal).
// Torch core headers only: the CUDA glue (.cpp) includes this file too; .cu files must not.
#pragma once

#include <cstdint>
#include <optional>

#include <ATen/core/Tensor.h>

#include "checks.h"

namespace llmkernels {

// What a kernel needs from an optional (1 or batch, seq) int64 position_ids tensor.
struct PositionIds {
  const int64_t* data = nullptr;  // nullptr: position = sequence index
  int64_t batch_stride = 0;       // 0 when one row is shared by the whole batch
};

// Checks position_ids (when given) against (1, seq) or (batch, seq), int64, contiguous, on
// `device` (CPU: any CPU tensor; otherwise that exact device). For CPU tensors with
// max_positions >= 0 it also checks, on the host, that every value is in [0, max_positions):
// an out-of-range index would read outside the tables, whose name `rows_of` the error gives.
// Pass max_positions = -1 where there is no upper bound (or the values live on the device).
inline PositionIds check_position_ids(const std::optional<at::Tensor>& position_ids,
                                      int64_t batch, int64_t seq, int64_t max_positions,
                                      const char* rows_of, const at::Device& device) {
  PositionIds out;
  if (!position_ids.has_value()) return out;
  const at::Tensor& pos = *position_ids;
  const bool cpu = device.is_cpu();
  if (cpu) LLMK_CHECK_DEVICE_TYPE(pos, "position_ids", at::kCPU);
  LLMK_CHECK_DIM(pos, "position_ids", 2);
  LLMK_CHECK_DTYPE(pos, "position_ids", at::kLong);
  if (!cpu) LLMK_CHECK_DEVICE(pos, "position_ids", device);
  LLMK_CHECK_CONTIGUOUS(pos, "position_ids");
  LLMK_CHECK_ARG(pos.size(1) == seq && (pos.size(0) == 1 || pos.size(0) == batch),
                 "position_ids", "expected shape (1, ", seq, ") or (", batch, ", ", seq,
                 "), got ", pos.sizes());
  out.data = pos.data_ptr<int64_t>();
  out.batch_stride = pos.size(0) == 1 ? 0 : seq;
  if (cpu && max_positions >= 0) {
    // Host-side range check: one pass over a (P, seq) int64 tensor.
    const int64_t n = pos.numel();
    int64_t bad = -1;
    for (int64_t i = 0; i < n; ++i) {
      if (out.data[i] < 0 || out.data[i] >= max_positions) {
        bad = i;
        break;
      }
    }
    LLMK_CHECK_ARG(bad < 0, "position_ids", "expected values in [0, ", max_positions,
                   ") (the rows of ", rows_of, "), got ", bad < 0 ? 0 : out.data[bad],
                   " at flat index ", bad);
  }
  return out;
}

}  // namespace llmkernels
