// Flash-attention CPU kernel: the plain-data interface between the torch glue (attention_cpu.cpp)
// and the per-ISA variants (attention_cpu_<isa>.cpp, built from attention_cpu_kernel_impl.h).
//
// Layout of the work: queries are processed in blocks of kAttnBlockQ rows and keys in blocks of
// kAttnBlockK. Inside a tile the query index runs along the vector lanes (scores are kept as
// S^T, keys x queries), so the online softmax needs no horizontal reductions and every tile
// product is a broadcast-FMA micro-kernel over row-major operands.
#pragma once

#include <cstdint>

#include "../common/cpu_kernel_types.h"

namespace llmkernels {
namespace cpu {

constexpr int64_t kAttnBlockQ = 64;
constexpr int64_t kAttnBlockK = 64;

// Floats the backward's bf16 key cache takes for `key_blocks` key blocks: each block's k and v
// rows as bf16 pairs along the head dim, then its k as bf16 pairs of consecutive keys
// (kAttnBlockK / 2 x head_dim; attention_cpu_backward_impl.h).
constexpr int64_t attention_key_cache_floats(int64_t head_dim, int64_t key_blocks) {
  return key_blocks * (kAttnBlockK * 2 * ((head_dim + 1) / 2) + kAttnBlockK / 2 * head_dim);
}

struct AttentionParams {
  int64_t batch, heads_q, heads_kv, seq_q, seq_k, head_dim;
  float scale;
  bool causal;
  int64_t window_left, window_right;  // < 0: unbounded
  float softcap;                      // <= 0: off
  const float* alibi;                 // (B, Hq) contiguous or nullptr
  const uint8_t* key_padding_mask;    // (B, Sk) contiguous bool or nullptr (nonzero = attend)
  ElemType dtype;
};

// Element strides (batch, head, seq) of a (B, H, S, D) tensor whose last dimension is dense.
struct Strides3 {
  int64_t b, h, s;
};

// What every task reads: the parameters and the q, k, v operands.
struct AttentionInputs {
  AttentionParams p;
  const void* q;
  Strides3 qs;
  const void* k;
  Strides3 ks;
  const void* v;
  Strides3 vs;
};

struct AttentionFwdArgs : AttentionInputs {
  void* out;
  Strides3 os;
  float* lse;  // (B, Hq, Sq) contiguous
  // bf16 at the avx512bf16 level: the values as bf16 pairs of consecutive keys, (B, Hkv,
  // ceil(Sk / 2), D) uint32 (the second half 0 past Sk), built once by the glue so that the
  // P.V product of every query block reads them instead of pairing them again; else nullptr.
  const uint32_t* v_pairs;
};

// Backward workspaces, all float32 (nQb = ceil(Sq / kAttnBlockQ), Dp = head_dim rounded up to
// 16, `blk = (b * Hq + h) * nQb + qb` a query block):
//   dk_acc, dv_acc (B, Hkv, Sk, Dp)    dk, dv accumulators: dk, dv themselves when they are
//                                      float32 and Dp == head_dim, else a workspace
//   dq_t       (chunk, blk, D, kAttnBlockQ)  each key chunk's dq contribution (unscaled); only
//                                      with num_chunks > 1 (else nullptr: dq is written directly)
struct AttentionBwdArgs : AttentionInputs {
  const void* out;
  Strides3 os;
  const void* dout;
  Strides3 dos;
  const float* lse;      // (B, Hq, Sq) contiguous
  void* dq;              // (B, Hq, Sq, D) contiguous
  void* dk;              // (B, Hkv, Sk, D) contiguous
  void* dv;              // (B, Hkv, Sk, D) contiguous
  float* dk_acc;
  float* dv_acc;
  float* dq_t;
  int64_t num_chunks;    // key chunks per (b, kv head): a function of the shape only
  int64_t chunk_blocks;  // key blocks per chunk
};

// Task decoders (each task is independent of every other task of its pass, so any schedule gives
// bitwise the same result):
//   forward:   B * Hq * nQb tasks, one query block each (heaviest first when causal)
//   bwd_kv:    num_chunks * B * Hkv tasks: dk, dv of the chunk's key blocks; dq of every query
//              block over the chunk's keys (into dq, or its own dq_t slice), in a fixed order;
//              each visited query block's lse and delta = rowsum(dout * out) are formed there
//   bwd_dq:    B * Hq * nQb tasks, only with num_chunks > 1: dq = scale * sum over chunks (in
//              chunk order) of dq_t
// `scratch` is per-thread float32 memory of attention_scratch_floats(D) (see the glue).
using AttentionFwdFn = void (*)(const AttentionFwdArgs&, int64_t task, float* scratch);
using AttentionBwdFn = void (*)(const AttentionBwdArgs&, int64_t task, float* scratch);

}  // namespace cpu

#define LLMK_ATTENTION_DECLARE_VARIANT(ns)                                              \
  namespace ns {                                                                       \
  void attention_fwd_task(const cpu::AttentionFwdArgs&, int64_t, float*);              \
  void attention_bwd_kv_task(const cpu::AttentionBwdArgs&, int64_t, float*);           \
  void attention_bwd_dq_task(const cpu::AttentionBwdArgs&, int64_t, float*);           \
  }

LLMK_ATTENTION_DECLARE_VARIANT(cpu_generic)
LLMK_ATTENTION_DECLARE_VARIANT(cpu_avx2)
LLMK_ATTENTION_DECLARE_VARIANT(cpu_avx512)
LLMK_ATTENTION_DECLARE_VARIANT(cpu_avx512bf16)

#undef LLMK_ATTENTION_DECLARE_VARIANT

}  // namespace llmkernels
