// Argument checks of the attention entry points (see attention_arguments.h).
#include "attention_arguments.h"

#include <utility>
#include <vector>

#include "../common/checks.h"
#include "../common/cpu_elem_type.h"
#include "../common/overlap_checks.h"

namespace llmkernels {
namespace {

void check_bhsd(const at::Tensor& t, const char* name, const at::Tensor& q) {
  LLMK_CHECK_DEVICE(t, name, q.device());
  LLMK_CHECK_DIM(t, name, 4);
  LLMK_CHECK_DTYPE(t, name, q.scalar_type());
  LLMK_CHECK_LAST_DIM_CONTIGUOUS(t, name);
}

void check_lse(const at::Tensor& lse, const cpu::AttentionParams& p, const at::Tensor& q) {
  LLMK_CHECK_DEVICE(lse, "lse", q.device());
  LLMK_CHECK_DTYPE(lse, "lse", at::kFloat);
  LLMK_CHECK_SHAPE(lse, "lse", (std::vector<int64_t>{p.batch, p.heads_q, p.seq_q}));
  LLMK_CHECK_CONTIGUOUS(lse, "lse");
}

}  // namespace

cpu::AttentionParams check_attention_inputs(const at::Tensor& q, const at::Tensor& k,
                                            const at::Tensor& v, double scale, bool causal,
                                            int64_t window_left, int64_t window_right,
                                            double softcap,
                                            const std::optional<at::Tensor>& alibi_slopes,
                                            const std::optional<at::Tensor>& key_padding_mask,
                                            at::DeviceType device_type) {
  LLMK_CHECK_DEVICE_TYPE(q, "q", device_type);
  LLMK_CHECK_DIM(q, "q", 4);
  LLMK_CHECK_FLOATING(q, "q");
  LLMK_CHECK_LAST_DIM_CONTIGUOUS(q, "q");
  check_bhsd(k, "k", q);
  check_bhsd(v, "v", q);
  const int64_t B = q.size(0), Hq = q.size(1), Sq = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), Sk = k.size(2);
  LLMK_CHECK_ARG(k.size(0) == B && k.size(3) == D, "k", "expected shape (", B,
                 ", heads_kv, seq_k, ", D, ") to match q ", q.sizes(), ", got ", k.sizes());
  LLMK_CHECK_ARG(Hkv > 0 ? Hq % Hkv == 0 : Hq == 0, "k", "expected a head count dividing q's ",
                 Hq, ", got shape ", k.sizes());
  LLMK_CHECK_SHAPE(v, "v", k.sizes());
  constexpr int64_t kMaxSeq = int64_t{1} << 30;  // relative positions are int32 in the kernels
  LLMK_CHECK_ARG(Sq < kMaxSeq && Sk < kMaxSeq, "q", "sequence lengths must be below 2^30, got ",
                 Sq, " and ", Sk);

  cpu::AttentionParams p{};
  p.batch = B;
  p.heads_q = Hq;
  p.heads_kv = Hkv;
  p.seq_q = Sq;
  p.seq_k = Sk;
  p.head_dim = D;
  p.scale = static_cast<float>(scale);
  p.causal = causal;
  p.window_left = window_left < 0 ? -1 : window_left;
  p.window_right = window_right < 0 ? -1 : window_right;
  p.softcap = softcap > 0.0 ? static_cast<float>(softcap) : 0.0f;
  p.dtype = cpu::elem_type(q.scalar_type());
  p.alibi = nullptr;
  p.key_padding_mask = nullptr;
  if (alibi_slopes.has_value()) {
    const at::Tensor& s = *alibi_slopes;
    LLMK_CHECK_DEVICE(s, "alibi_slopes", q.device());
    LLMK_CHECK_DTYPE(s, "alibi_slopes", at::kFloat);
    LLMK_CHECK_SHAPE(s, "alibi_slopes", (std::vector<int64_t>{B, Hq}));
    LLMK_CHECK_CONTIGUOUS(s, "alibi_slopes");
    p.alibi = s.data_ptr<float>();
  }
  if (key_padding_mask.has_value()) {
    const at::Tensor& m = *key_padding_mask;
    LLMK_CHECK_DEVICE(m, "key_padding_mask", q.device());
    LLMK_CHECK_DTYPE(m, "key_padding_mask", at::kBool);
    LLMK_CHECK_SHAPE(m, "key_padding_mask", (std::vector<int64_t>{B, Sk}));
    LLMK_CHECK_CONTIGUOUS(m, "key_padding_mask");
    p.key_padding_mask = reinterpret_cast<const uint8_t*>(m.data_ptr<bool>());
  }
  return p;
}

void check_attention_forward_outputs(const cpu::AttentionParams& p, const at::Tensor& q,
                                     const at::Tensor& k, const at::Tensor& v,
                                     const at::Tensor& out, const at::Tensor& lse) {
  check_bhsd(out, "out", q);
  LLMK_CHECK_SHAPE(out, "out", q.sizes());
  check_output(out, "out");
  check_lse(lse, p, q);
  check_disjoint(out, "out", q, "q");
  check_disjoint(out, "out", k, "k");
  check_disjoint(out, "out", v, "v");
  check_disjoint(lse, "lse", out, "out");
}

void check_attention_backward_tensors(const cpu::AttentionParams& p, const at::Tensor& q,
                                      const at::Tensor& k, const at::Tensor& v,
                                      const at::Tensor& out, const at::Tensor& dout,
                                      const at::Tensor& lse, const at::Tensor& dq,
                                      const at::Tensor& dk, const at::Tensor& dv) {
  check_bhsd(out, "out", q);
  LLMK_CHECK_SHAPE(out, "out", q.sizes());
  check_bhsd(dout, "dout", q);
  LLMK_CHECK_SHAPE(dout, "dout", q.sizes());
  check_lse(lse, p, q);
  const std::pair<const at::Tensor*, const char*> grads[] = {{&dq, "dq"}, {&dk, "dk"}, {&dv, "dv"}};
  for (const auto& gr : grads) {
    LLMK_CHECK_DEVICE(*gr.first, gr.second, q.device());
    LLMK_CHECK_DTYPE(*gr.first, gr.second, q.scalar_type());
    LLMK_CHECK_CONTIGUOUS(*gr.first, gr.second);
  }
  LLMK_CHECK_SHAPE(dq, "dq", q.sizes());
  LLMK_CHECK_SHAPE(dk, "dk", k.sizes());
  LLMK_CHECK_SHAPE(dv, "dv", k.sizes());
  const std::pair<const at::Tensor*, const char*> inputs[] = {
      {&q, "q"}, {&k, "k"}, {&v, "v"}, {&out, "out"}, {&dout, "dout"}, {&lse, "lse"}};
  for (const auto& gr : grads) {
    for (const auto& in : inputs) check_disjoint(*gr.first, gr.second, *in.first, in.second);
  }
  check_disjoint(dq, "dq", dk, "dk");
  check_disjoint(dq, "dq", dv, "dv");
  check_disjoint(dk, "dk", dv, "dv");
}

}  // namespace llmkernels
