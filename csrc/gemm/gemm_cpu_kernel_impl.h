// float32 GEMM kernel body for the AVX2 level: include only between isa_begin.h and isa_end.h
// (see there), after <cstddef>/<cstdint> and <immintrin.h>. No include guard on purpose.
//
// Why a GEMM of our own: on the AVX2 machines (Zen 3) MKL's sgemm, which torch.mm calls, runs the
// fused linear losses' products with a transposed operand, x @ W.T (the logits) and grad.T @ x
// (the weight gradient), below the rate of its plain product (137 against 180 GFLOP/s at the
// Llama loss's logits, of a 187 GFLOP/s FMA peak on 2 cores). Packing both operands into the
// tile's own order first (the blocked scheme of Goto and van de Geijn, as BLIS does it) makes
// every layout the same product: 1.12-1.25x torch.mm on the losses' large transposed products, on a
// par for plain products and nn.Linear-sized ones (in one process, interleaved; BENCHMARKS.md).
// On Zen 4 (AVX-512, which runs this AVX2 tile) it was 1.13-1.37x on the losses' products and
// 1.02-1.23x on the layers' (twelfth session).
//
// The scheme: a kc-deep slice of B, nc columns wide, is packed into 16-column panels; an mc-row
// slice of A into 6-row panels; a 6x16 tile of C is then kc rank-1 updates in 12 AVX2
// accumulators (15 of the 16 ymm registers with the two B vectors and the A broadcast).
#include "../common/cpu_kernel_types.h"  // what cpu_convert_impl.h (min_i64) needs
#include "gemm_cpu_kernel.h"

#if LLMK_ISA_LEVEL != 1
#error "the GEMM kernel is written on AVX2 intrinsics: only gemm_cpu_avx2.cpp includes it"
#endif

namespace llmkernels {
namespace LLMK_ISA_NS {
namespace {

constexpr int kMr = static_cast<int>(cpu::kGemmMr);
constexpr int kNr = static_cast<int>(cpu::kGemmNr);
constexpr int kHalves = kNr / 8;  // 8-lane vectors across a tile row

#include "../common/cpu_convert_impl.h"  // min_i64

// Transposes 8 rows of 8 floats in place (row r, lane j) -> (row j, lane r).
LLMK_ALWAYS_INLINE void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// A's rows [0, mc) x depth [0, kc) into kMr-row panels, each depth-major (kMr floats per depth);
// rows past mc are zero. Rows contiguous in depth are moved 6 x 8 at a time through a transpose
// (each 8-float store overhangs its group by 2 floats, which the next store overwrites; the
// workspace has room for the last one's).
void pack_a(const cpu::GemmArgs& g, const float* a, int64_t mc, int64_t kc, float* out) {
  for (int64_t i0 = 0; i0 < mc; i0 += kMr) {
    const int64_t rows = min_i64(kMr, mc - i0);
    const float* panel = a + i0 * g.a_row_stride;
    int64_t p = 0;
    if (g.a_col_stride == 1 && rows == kMr) {
      for (; p + 8 <= kc; p += 8) {
        __m256 r[8];
        for (int q = 0; q < kMr; ++q) r[q] = _mm256_loadu_ps(panel + q * g.a_row_stride + p);
        r[6] = r[7] = _mm256_setzero_ps();
        transpose8(r);
        for (int q = 0; q < 8; ++q) _mm256_storeu_ps(out + q * kMr, r[q]);
        out += 8 * kMr;
      }
    }
    for (; p < kc; ++p) {
      for (int64_t r = 0; r < rows; ++r) out[r] = panel[r * g.a_row_stride + p * g.a_col_stride];
      for (int64_t r = rows; r < kMr; ++r) out[r] = 0.0f;
      out += kMr;
    }
  }
}

// B's depth [0, kc) x columns [0, nc) into kNr-column panels, each depth-major (kNr floats per
// depth); columns past nc are zero. Rows of B (W.T's columns) contiguous in depth go through
// 8 x 8 transposes.
void pack_b(const cpu::GemmArgs& g, const float* b, int64_t kc, int64_t nc, float* out) {
  for (int64_t j0 = 0; j0 < nc; j0 += kNr) {
    const int64_t cols = min_i64(kNr, nc - j0);
    const float* panel = b + j0 * g.b_col_stride;
    int64_t p = 0;
    if (cols == kNr && g.b_col_stride == 1) {
      for (; p < kc; ++p)
        for (int h = 0; h < kHalves; ++h)
          _mm256_store_ps(out + p * kNr + 8 * h, _mm256_loadu_ps(panel + p * g.b_row_stride + 8 * h));
    } else if (cols == kNr && g.b_row_stride == 1) {
      for (; p + 8 <= kc; p += 8)
        for (int h = 0; h < kHalves; ++h) {
          __m256 r[8];
          for (int c = 0; c < 8; ++c) r[c] = _mm256_loadu_ps(panel + (8 * h + c) * g.b_col_stride + p);
          transpose8(r);
          for (int q = 0; q < 8; ++q) _mm256_store_ps(out + (p + q) * kNr + 8 * h, r[q]);
        }
    }
    for (; p < kc; ++p) {
      for (int64_t c = 0; c < cols; ++c) out[p * kNr + c] = panel[p * g.b_row_stride + c * g.b_col_stride];
      for (int64_t c = cols; c < kNr; ++c) out[p * kNr + c] = 0.0f;
    }
    out += kc * kNr;
  }
}

// One kMr x kNr tile of C: kc rank-1 updates from packed panels, then stored (added to C when
// `add`); `rows` x `cols` of it are real (the ragged edge goes through a scratch tile).
void tile(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int64_t rows, int64_t cols, bool add) {
  __m256 acc[kMr][kHalves];
  for (int r = 0; r < kMr; ++r)
    for (int h = 0; h < kHalves; ++h) acc[r][h] = _mm256_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    __m256 bv[kHalves];
    for (int h = 0; h < kHalves; ++h) bv[h] = _mm256_load_ps(b + 8 * h);
    for (int r = 0; r < kMr; ++r) {
      const __m256 av = _mm256_broadcast_ss(a + r);
      for (int h = 0; h < kHalves; ++h) acc[r][h] = _mm256_fmadd_ps(av, bv[h], acc[r][h]);
    }
    a += kMr;
    b += kNr;
  }
  if (rows == kMr && cols == kNr) {
    for (int r = 0; r < kMr; ++r)
      for (int h = 0; h < kHalves; ++h) {
        float* out = c + r * ldc + 8 * h;
        _mm256_storeu_ps(out, add ? _mm256_add_ps(_mm256_loadu_ps(out), acc[r][h]) : acc[r][h]);
      }
    return;
  }
  // The ragged edge of C: through a scratch tile, element by element.
  alignas(32) float scratch[kMr][kNr];
  for (int r = 0; r < kMr; ++r)
    for (int h = 0; h < kHalves; ++h) _mm256_store_ps(scratch[r] + 8 * h, acc[r][h]);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) c[r * ldc + j] = add ? c[r * ldc + j] + scratch[r][j] : scratch[r][j];
}

}  // namespace

void gemm_block(const cpu::GemmArgs& g, float* workspace) {
  float* a_pack = workspace;
  float* b_pack = workspace + (cpu::kGemmMc + cpu::kGemmMr) * cpu::kGemmKc + 32;  // past pack_a's overhang
  b_pack += (64 - reinterpret_cast<uintptr_t>(b_pack) % 64) % 64 / sizeof(float);
  for (int64_t j0 = 0; j0 < g.n; j0 += cpu::kGemmNc) {
    const int64_t nc = min_i64(cpu::kGemmNc, g.n - j0);
    for (int64_t p0 = 0; p0 < g.k; p0 += cpu::kGemmKc) {
      const int64_t kc = min_i64(cpu::kGemmKc, g.k - p0);
      // The first depth slice writes C (or adds to it when accumulating), later ones add.
      const bool add = g.accumulate || p0 > 0;
      pack_b(g, g.b + p0 * g.b_row_stride + j0 * g.b_col_stride, kc, nc, b_pack);
      for (int64_t i0 = 0; i0 < g.m; i0 += cpu::kGemmMc) {
        const int64_t mc = min_i64(cpu::kGemmMc, g.m - i0);
        pack_a(g, g.a + i0 * g.a_row_stride + p0 * g.a_col_stride, mc, kc, a_pack);
        // Column panels outside, row panels inside: a B panel stays in L1 while A's stream by.
        for (int64_t jr = 0; jr < nc; jr += kNr)
          for (int64_t ir = 0; ir < mc; ir += kMr)
            tile(kc, a_pack + ir * kc, b_pack + jr * kc, g.c + (i0 + ir) * g.c_row_stride + j0 + jr, g.c_row_stride,
                 min_i64(kMr, mc - ir), min_i64(kNr, nc - jr), add);
      }
    }
  }
}

}  // namespace LLMK_ISA_NS
}  // namespace llmkernels
