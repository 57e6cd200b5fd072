// Shared-memory layouts of the attention CUDA kernels: where each tile lives in the dynamic shared
// memory and how many bytes a block asks for. In a header of their own (constexpr only, no device
// code) so that tools/cuda_smem_sizes.cu can print each kernel's dynamic shared memory for
// `make cuda-check`'s table without a GPU, from the same numbers the launchers pass.
#pragma once

#include "attention_cuda_common.cuh"

namespace llmkernels {
namespace attn_cuda {

template <typename T, int DT>
struct ForwardLayout {
  static constexpr int BM = ForwardTiles<sizeof(T), DT>::BM;
  static constexpr int BN = ForwardTiles<sizeof(T), DT>::BN;
  static constexpr int kQ = 0;
  static constexpr int kK = kQ + round128(BM * Ld<DT>::tile * sizeof(T));
  static constexpr int kV = kK + round128(BN * Ld<DT>::tile * sizeof(T));
  static constexpr int kS = kV + round128(BN * Ld<DT>::tile * sizeof(T));
  static constexpr int kP = kS + round128(BM * LdScore<BN>::f32 * 4);
  static constexpr int kO = kP + round128(BM * LdScore<BN>::t * sizeof(T));
  static constexpr int kM = kO + round128(BM * Ld<DT>::acc * 4);
  static constexpr int kL = kM + round128(BM * 4);
  static constexpr int bytes = kL + round128(BM * 4);
  static_assert(bytes <= kMaxSmemBytes, "forward tiles exceed the shared-memory budget");
};

template <typename T, int DT>
struct BackwardLayout {
  static constexpr int BM = BackwardTiles<sizeof(T), DT>::BM;
  static constexpr int BN = BackwardTiles<sizeof(T), DT>::BN;
  static constexpr int LDT = Ld<DT>::tile, LDO = Ld<DT>::acc, LDP = LdScore<BN>::t;
  static constexpr int kTileQ = round128(BM * Ld<DT>::tile * sizeof(T));
  static constexpr int kTileK = round128(BN * Ld<DT>::tile * sizeof(T));
  static constexpr int kScoreF = round128(BM * LdScore<BN>::f32 * 4);
  static constexpr int kScoreT = round128(BM * LdScore<BN>::t * sizeof(T));
  static constexpr int kRows = round128(BM * 4);
  // Shared by both kernels: Q, dO, K, V tiles; S and dP (float); P and dS (T); lse, Delta.
  static constexpr int kQ = 0;
  static constexpr int kDO = kQ + kTileQ;
  static constexpr int kK = kDO + kTileQ;
  static constexpr int kV = kK + kTileK;
  static constexpr int kS = kV + kTileK;
  static constexpr int kDP = kS + kScoreF;
  static constexpr int kP = kDP + kScoreF;
  static constexpr int kDS = kP + kScoreT;
  static constexpr int kLse = kDS + kScoreT;
  static constexpr int kDelta = kLse + kRows;
  static constexpr int kAcc = kDelta + kRows;
  // dK/dV kernel: two (BN, DT) float accumulators; dQ kernel: one (BM, DT).
  static constexpr int kAccK = round128(BN * Ld<DT>::acc * 4);
  static constexpr int bytes_dkdv = kAcc + 2 * kAccK;
  static constexpr int bytes_dq = kAcc + round128(BM * Ld<DT>::acc * 4);
  static_assert(bytes_dkdv <= kMaxSmemBytes && bytes_dq <= kMaxSmemBytes,
                "backward tiles exceed the shared-memory budget");
};

}  // namespace attn_cuda
}  // namespace llmkernels
