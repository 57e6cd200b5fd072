// Distillation losses over row pairs of student and teacher logits: the compiled entry points the
// Python op routes to (llmkernels/ops/distillation/rows.py).
//
// Contract (the Python layer validates and normalises arguments; the C++ side re-checks shapes,
// dtypes and devices with the shared CHECK macros):
//   student    (N, Vs), float32, float16 or bfloat16, row stride any, column stride 1. Never
//              written, unless grad is student itself.
//   teacher    (N, Vt), the student's dtype, row stride any, column stride 1.
//   target     optional (N,) int64 contiguous, values in [0, Vs) or == ignore_index (checked on
//              the host for CPU tensors). Absent: every row takes part and there is no hard part.
//   soft, hard (N,) float32 out: per row the soft part (times T^2 when scale_by_temperature) and
//              the hard part (cross-entropy of the student at T = 1); 0 for ignored rows.
//   grad       optional (N, Vs) out, the student's dtype, contiguous (may be student itself):
//              grad_scale * d((1 - hard_weight) * soft + hard_weight * hard) / d student; zero rows
//              for ignored rows.
//   softcap    <= 0 means off; else z = softcap * tanh(x / softcap) on both models' logits.
// With V = min(Vs, Vt), a = log softmax(z_s[:V] / T), b = log softmax(z_t[:V] / T), p = e^a,
// r = e^b, lm = log(beta r + (1 - beta) p):
//   soft = sum r (b - a) (beta = 0), sum p (a - b) (beta = 1),
//          beta sum r (b - lm) + (1 - beta) sum p (a - lm) (0 < beta < 1).
// Rows are independent: parallelise over rows; each row's reductions run in a fixed order, so the
// result is bitwise the same for any thread count.
#pragma once
#include <optional>
#include <ATen/core/Tensor.h>

namespace llmkernels {

void distillation_rows_cpu(const at::Tensor& student, const at::Tensor& teacher,
                           const std::optional<at::Tensor>& target, at::Tensor& soft,
                           at::Tensor& hard, const std::optional<at::Tensor>& grad,
                           double temperature, double beta, double hard_weight,
                           int64_t ignore_index, bool scale_by_temperature, double softcap,
                           double grad_scale);

// Against a stored top-k teacher: ids (N, k) int64 in [0, Vs) (checked on the host), logprobs
// (N, k) float32; the divergence runs over k + 1 buckets (the ids and the rest of each
// distribution's mass; the teacher's rest is max(0, 1 - sum exp(logprobs))), none when k == Vs.
void topk_distillation_rows_cpu(const at::Tensor& student, const at::Tensor& ids,
                                const at::Tensor& logprobs,
                                const std::optional<at::Tensor>& target, at::Tensor& soft,
                                at::Tensor& hard, const std::optional<at::Tensor>& grad,
                                double temperature, double beta, double hard_weight,
                                int64_t ignore_index, bool scale_by_temperature, double softcap,
                                double grad_scale);

// The k most likely columns of each row of logits (N, V), float32, float16 or bfloat16, column
// stride 1: ids (N, k) int32 and logprobs (N, k) float32 = log softmax(c(logits) / T) there, most
// likely first, equal logits ranked by smaller id; softcap <= 0 means off.
void topk_logprobs_cpu(const at::Tensor& logits, int64_t k, double temperature, double softcap,
                       at::Tensor& ids, at::Tensor& logprobs);

#ifdef LLMK_WITH_CUDA
// The same on CUDA tensors (distillation_cuda.cpp). Target values are not checked on the host.
void distillation_rows_cuda(const at::Tensor& student, const at::Tensor& teacher,
                            const std::optional<at::Tensor>& target, at::Tensor& soft,
                            at::Tensor& hard, const std::optional<at::Tensor>& grad,
                            double temperature, double beta, double hard_weight,
                            int64_t ignore_index, bool scale_by_temperature, double softcap,
                            double grad_scale);
void topk_distillation_rows_cuda(const at::Tensor& student, const at::Tensor& ids,
                                 const at::Tensor& logprobs,
                                 const std::optional<at::Tensor>& target, at::Tensor& soft,
                                 at::Tensor& hard, const std::optional<at::Tensor>& grad,
                                 double temperature, double beta, double hard_weight,
                                 int64_t ignore_index, bool scale_by_temperature, double softcap,
                                 double grad_scale);
// Id and target values are not checked on the host: a bad one makes its row NaN.
void topk_logprobs_cuda(const at::Tensor& logits, int64_t k, double temperature, double softcap,
                        at::Tensor& ids, at::Tensor& logprobs);
#endif

}  // namespace llmkernels
