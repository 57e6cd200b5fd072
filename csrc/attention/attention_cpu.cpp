// Torch glue for the flash-attention CPU kernel: workspaces, threading and ISA dispatch (argument
// checks: attention_arguments.h). The arithmetic lives in attention_cpu_kernel_impl.h, compiled
// per ISA level.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include "../common/cpu_isa.h"
#include "attention.h"
#include "attention_arguments.h"
#include "attention_cpu_kernel.h"

namespace llmkernels {
namespace {

struct Variant {
  cpu::AttentionFwdFn fwd;
  cpu::AttentionBwdFn kv, dq;
};

#define LLMK_ATTENTION_VARIANT(ns)                                                    \
  Variant {                                                                           \
    &ns::attention_fwd_task, &ns::attention_bwd_kv_task, &ns::attention_bwd_dq_task   \
  }

Variant attention_variant(cpu::Isa isa) {
  switch (isa) {
#if LLMK_CPU_X86
    case cpu::Isa::avx512bf16: return LLMK_ATTENTION_VARIANT(cpu_avx512bf16);
    case cpu::Isa::avx512: return LLMK_ATTENTION_VARIANT(cpu_avx512);
    case cpu::Isa::avx2: return LLMK_ATTENTION_VARIANT(cpu_avx2);
#endif
    default: return LLMK_ATTENTION_VARIANT(cpu_generic);
  }
}

#undef LLMK_ATTENTION_VARIANT

constexpr int64_t kBQ = cpu::kAttnBlockQ;
constexpr int64_t kBK = cpu::kAttnBlockK;

// Per-thread scratch, large enough for every task kind (layouts in attention_cpu_forward_impl.h
// and attention_cpu_backward_impl.h).
int64_t attention_scratch_floats(int64_t head_dim) {
  const int64_t dp = (head_dim + 15) / 16 * 16;
  // The backward's key pass is the largest: kf, vf (BK x D), pt, dpt, tt (BK x BQ), pb, dsb
  // (BK x BQ bf16 each), dsk (BK / 2 x BQ pairs), a row, the query tile (q_t, do_t, dqacc: D x BQ;
  // q_r, do_r: BQ x Dp), the block's lse and delta (BQ each); its bf16 key cache comes on top
  // (attention_key_cache_floats).
  return 2 * kBK * dp + 4 * kBK * kBQ + kBK * kBQ / 2 + dp + 5 * kBQ * dp + 2 * kBQ + 64;
}

// Multiply-adds a thread should have before another one is woken: entering a parallel region
// costs microseconds on an idle machine and a scheduler time slice when the other cores are busy,
// so a small attention (a 4x4x32x16 one: ~0.5M) runs on the calling thread.
constexpr int64_t kMinWorkPerThread = int64_t{1} << 22;

// Runs tasks [0, n) on the intra-op pool, each thread taking the next task from a shared counter
// (tasks are independent, so the result does not depend on who runs what, or on how many run).
// `work` (multiply-adds of all n tasks together) sets how many threads are worth waking.
template <typename F>
void run_tasks(int64_t n, int64_t work, int64_t scratch_floats, const F& fn) {
  if (n <= 0) return;
  const int64_t by_work = std::max<int64_t>(1, work / kMinWorkPerThread);
  const int64_t workers =
      std::max<int64_t>(1, std::min<int64_t>({int64_t{at::get_num_threads()}, n, by_work}));
  if (workers == 1) {
    std::vector<float> scratch(static_cast<size_t>(scratch_floats));
    for (int64_t t = 0; t < n; ++t) fn(t, scratch.data());
    return;
  }
  std::atomic<int64_t> next{0};
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    std::vector<float> scratch(static_cast<size_t>(scratch_floats));
    for (int64_t t = next.fetch_add(1); t < n; t = next.fetch_add(1)) fn(t, scratch.data());
  });
}

// Multiply-adds of one pass over every (query, key) pair: q.k and p.v, masks ignored.
int64_t attention_work(const cpu::AttentionParams& p) {
  return 2 * p.batch * p.heads_q * p.seq_q * p.seq_k * p.head_dim;
}

cpu::Strides3 strides3(const at::Tensor& t) {
  return cpu::Strides3{t.stride(0), t.stride(1), t.stride(2)};
}

// The pointers and strides of q, k, v (both passes read them).
void set_inputs(cpu::AttentionInputs& a, const cpu::AttentionParams& p, const at::Tensor& q,
                const at::Tensor& k, const at::Tensor& v) {
  a.p = p;
  a.q = q.data_ptr();
  a.qs = strides3(q);
  a.k = k.data_ptr();
  a.ks = strides3(k);
  a.v = v.data_ptr();
  a.vs = strides3(v);
}

// bf16 values as pairs of consecutive keys' elements, (B, Hkv, ceil(Sk / 2), D) uint32 with the
// lower key in the low half: the operand layout of the forward's bf16 P.V product, built once
// here instead of once per query block (see AttentionFwdArgs::v_pairs).
at::Tensor pair_values(const at::Tensor& v, const cpu::AttentionParams& p) {
  const int64_t B = p.batch, Hkv = p.heads_kv, Sk = p.seq_k, D = p.head_dim, Skp = (Sk + 1) / 2;
  at::Tensor pairs = at::empty({B * Hkv * Skp * D}, v.options().dtype(at::kInt));
  uint32_t* dst = reinterpret_cast<uint32_t*>(pairs.data_ptr<int32_t>());
  const uint16_t* src = reinterpret_cast<const uint16_t*>(v.data_ptr());
  const cpu::Strides3 s = strides3(v);
  at::parallel_for(0, B * Hkv, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bh = begin; bh < end; ++bh) {
      const uint16_t* base = src + (bh / Hkv) * s.b + (bh % Hkv) * s.h;
      uint32_t* out = dst + bh * Skp * D;
      for (int64_t jp = 0; jp < Skp; ++jp) {
        const uint16_t* v0 = base + 2 * jp * s.s;
        const bool two = 2 * jp + 1 < Sk;
        for (int64_t d = 0; d < D; ++d)
          out[jp * D + d] = static_cast<uint32_t>(v0[d]) |
                            (two ? static_cast<uint32_t>(v0[s.s + d]) << 16 : 0u);
      }
    }
  });
  return pairs;
}

}  // namespace

void attention_forward_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           at::Tensor& out, at::Tensor& lse, double scale, bool causal,
                           int64_t window_left, int64_t window_right, double softcap,
                           const std::optional<at::Tensor>& alibi_slopes,
                           const std::optional<at::Tensor>& key_padding_mask) {
  const cpu::AttentionParams p =
      check_attention_inputs(q, k, v, scale, causal, window_left, window_right, softcap,
                             alibi_slopes, key_padding_mask, at::kCPU);
  check_attention_forward_outputs(p, q, k, v, out, lse);

  const int64_t n_qb = (p.seq_q + kBQ - 1) / kBQ;
  const int64_t tasks = p.batch * p.heads_q * n_qb;
  if (tasks == 0) return;

  cpu::AttentionFwdArgs a{};
  set_inputs(a, p, q, k, v);
  a.out = out.data_ptr();
  a.os = strides3(out);
  a.lse = lse.data_ptr<float>();
  const cpu::Isa isa = cpu::selected_isa();
  at::Tensor v_pairs;
  if (q.scalar_type() == at::kBFloat16 && isa == cpu::Isa::avx512bf16 && n_qb > 1) {
    v_pairs = pair_values(v, p);
    a.v_pairs = reinterpret_cast<const uint32_t*>(v_pairs.data_ptr<int32_t>());
  }
  const Variant fn = attention_variant(isa);
  run_tasks(tasks, attention_work(p), attention_scratch_floats(p.head_dim),
            [&](int64_t t, float* scratch) { fn.fwd(a, t, scratch); });
}

void attention_backward_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& out, const at::Tensor& dout, const at::Tensor& lse,
                            at::Tensor& dq, at::Tensor& dk, at::Tensor& dv, double scale,
                            bool causal, int64_t window_left, int64_t window_right,
                            double softcap, const std::optional<at::Tensor>& alibi_slopes,
                            const std::optional<at::Tensor>& key_padding_mask) {
  const cpu::AttentionParams p =
      check_attention_inputs(q, k, v, scale, causal, window_left, window_right, softcap,
                             alibi_slopes, key_padding_mask, at::kCPU);
  check_attention_backward_tensors(p, q, k, v, out, dout, lse, dq, dk, dv);

  const int64_t B = p.batch, Hq = p.heads_q, Hkv = p.heads_kv, D = p.head_dim;
  const int64_t n_qb = (p.seq_q + kBQ - 1) / kBQ, n_kb = (p.seq_k + kBK - 1) / kBK;
  const int64_t q_blocks = B * Hq * n_qb;
  if (B * Hkv == 0) return;
  if (q_blocks == 0) {  // no query: nothing flows into dk, dv
    dk.zero_();
    dv.zero_();
    return;
  }

  // Key chunks per (b, kv head): enough tasks for 8 threads when B * Hkv is small, as a function
  // of the shape only (the chunking fixes dq's summation order). Each chunk past the first costs
  // a float32 copy of dq (its partial sums), so no more chunks than that.
  constexpr int64_t kMinKvTasks = 8;
  const int64_t want = std::max<int64_t>(1, (kMinKvTasks + B * Hkv - 1) / (B * Hkv));
  const int64_t chunk_blocks = std::max<int64_t>(1, (n_kb + want - 1) / want);
  const int64_t num_chunks = std::max<int64_t>(1, (n_kb + chunk_blocks - 1) / chunk_blocks);

  const int64_t dp = (D + 15) / 16 * 16;
  const int64_t partial_floats = num_chunks > 1 ? num_chunks * q_blocks * D * kBQ : 0;
  // dk and dv accumulate in place when they are float32 rows of Dp (contiguous: the op allocates them).
  const bool in_place = q.scalar_type() == at::kFloat && dp == D;
  const int64_t acc_floats = in_place ? 0 : 2 * B * Hkv * p.seq_k * dp;
  at::Tensor work =
      at::empty({partial_floats + acc_floats}, q.options().dtype(at::kFloat));
  float* w = work.data_ptr<float>();

  cpu::AttentionBwdArgs a{};
  set_inputs(a, p, q, k, v);
  a.out = out.data_ptr();
  a.os = strides3(out);
  a.dout = dout.data_ptr();
  a.dos = strides3(dout);
  a.lse = lse.data_ptr<float>();
  a.dq = dq.data_ptr();
  a.dk = dk.data_ptr();
  a.dv = dv.data_ptr();
  a.dq_t = num_chunks > 1 ? w : nullptr;
  a.dk_acc = in_place ? dk.data_ptr<float>() : w + partial_floats;
  a.dv_acc = in_place ? dv.data_ptr<float>() : a.dk_acc + B * Hkv * p.seq_k * dp;
  a.num_chunks = num_chunks;
  a.chunk_blocks = chunk_blocks;

  const cpu::Isa isa = cpu::selected_isa();
  const Variant fn = attention_variant(isa);
  const int64_t scratch = attention_scratch_floats(D);
  // bf16 at the avx512bf16 level: the key pass converts its chunk's key blocks once (bf16 pairs
  // of k and v, float32 k rows), into this much more scratch.
  const bool bf16_dot = q.scalar_type() == at::kBFloat16 && isa == cpu::Isa::avx512bf16;
  const int64_t key_cache = bf16_dot ? cpu::attention_key_cache_floats(D, chunk_blocks) : 0;
  const int64_t pass_work = attention_work(p);
  run_tasks(num_chunks * B * Hkv, 2 * pass_work, scratch + key_cache,
            [&](int64_t t, float* s) { fn.kv(a, t, s); });
  if (num_chunks > 1)
    run_tasks(q_blocks, B * Hq * p.seq_q * D, scratch, [&](int64_t t, float* s) { fn.dq(a, t, s); });
}

}  // namespace llmkernels
