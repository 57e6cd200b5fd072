// Torch glue for the sinusoidal-encoding CUDA kernel: checks, device guard, current stream,
// dtype dispatch. Built only with -DLLMK_WITH_CUDA; the kernel is sinusoidal_kernels.cu.
#ifdef LLMK_WITH_CUDA

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "../common/checks.h"
#include "../common/cuda_glue.h"
#include "../common/overlap_checks.h"
#include "../common/position_ids.h"
#include "sinusoidal.h"
#include "sinusoidal_cuda_launch.h"

namespace llmkernels {

void add_sinusoidal_cuda(const at::Tensor& x, at::Tensor& out, const at::Tensor& inv_freq,
                         const std::optional<at::Tensor>& position_ids, double scale) {
  LLMK_CHECK_DEVICE_TYPE(x, "x", at::kCUDA);
  LLMK_CHECK_FLOATING(x, "x");
  LLMK_CHECK_DIM(x, "x", 3);
  LLMK_CHECK_LAST_DIM_CONTIGUOUS(x, "x");
  LLMK_CHECK_DEVICE(out, "out", x.device());
  LLMK_CHECK_DTYPE(out, "out", x.scalar_type());
  LLMK_CHECK_SHAPE(out, "out", x.sizes());
  LLMK_CHECK_LAST_DIM_CONTIGUOUS(out, "out");

  const int64_t batch = x.size(0), seq = x.size(1), d_model = x.size(2);

  LLMK_CHECK_DIM(inv_freq, "inv_freq", 1);
  LLMK_CHECK_DTYPE(inv_freq, "inv_freq", at::kFloat);
  LLMK_CHECK_DEVICE(inv_freq, "inv_freq", x.device());
  LLMK_CHECK_CONTIGUOUS(inv_freq, "inv_freq");
  LLMK_CHECK_SIZE(inv_freq, "inv_freq", 0, (d_model + 1) / 2);

  const PositionIds pos =
      check_position_ids(position_ids, batch, seq, -1, "inv_freq", x.device());

  check_cuda_alias(out, "out", x, "x");

  SinusoidalCudaParams p;
  p.x = x.data_ptr();
  p.out = out.data_ptr();
  p.batch = batch;
  p.seq = seq;
  p.d_model = d_model;
  p.x_stride_b = x.stride(0);
  p.x_stride_s = x.stride(1);
  p.out_stride_b = out.stride(0);
  p.out_stride_s = out.stride(1);
  p.inv_freq = inv_freq.data_ptr<float>();
  p.position_ids = pos.data;
  p.position_batch_stride = pos.batch_stride;
  p.scale = static_cast<float>(scale);

  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.device().index()).stream();
  const cudaError_t err = launch_for_dtype(x.scalar_type(), "add_sinusoidal_cuda", [&](auto t) {
    return launch_add_sinusoidal<typename decltype(t)::type>(p, stream);
  });
  check_cuda_launch(err, "sinusoidal");
}

}  // namespace llmkernels

#endif  // LLMK_WITH_CUDA
