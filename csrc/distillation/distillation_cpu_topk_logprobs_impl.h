// topk_logprobs rows: included by distillation_cpu_kernel_impl.h inside its unnamed namespace (it
// uses that file's helpers). No include guard on purpose.
//
// Per row: the raw logits go to float32 scratch; the k best columns are chosen on those raw
// values (softcap and temperature are strictly increasing, so the raw values rank the columns as
// the log-probabilities do, without the ties that rounding capped values would add; equal values
// rank the smaller id first); then the row is capped in place and its softmax statistics give the
// log-probabilities of the chosen columns. The choice keeps a heap of the k best seen so far, its
// worst on top, and scans the rest a few vectors at a time: a group whose max does not beat the
// heap's worst is skipped without a scalar look, so for k << V the scan runs at load speed.

struct Ranked {
  float value;
  int32_t id;
};

// a ranks below b: a smaller value, or the same value at a larger id.
LLMK_ALWAYS_INLINE bool ranks_below(const Ranked& a, const Ranked& b) {
  return a.value < b.value || (a.value == b.value && a.id > b.id);
}

// Restores the heap (every parent ranks below its children) below position i of h[0, n).
void sift_down(Ranked* h, int64_t n, int64_t i) {
  const Ranked moving = h[i];
  for (;;) {
    int64_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && ranks_below(h[child + 1], h[child])) ++child;
    if (!ranks_below(h[child], moving)) break;
    h[i] = h[child];
    i = child;
  }
  h[i] = moving;
}

// One candidate column c: into the heap when it beats the worst kept (all kept ids are smaller,
// so an equal value never does).
LLMK_ALWAYS_INLINE void offer(Ranked* heap, int64_t k, const float* z, int64_t c) {
  if (z[c] > heap[0].value) {
    heap[0] = Ranked{z[c], static_cast<int32_t>(c)};
    sift_down(heap, k, 0);
  }
}

// heap[0, k) = the k best of z[0, V), best first.
void select_best(const float* z, int64_t V, int64_t k, Ranked* heap) {
  for (int64_t c = 0; c < k; ++c) heap[c] = Ranked{z[c], static_cast<int32_t>(c)};
  for (int64_t i = k / 2; i-- > 0;) sift_down(heap, k, i);
  constexpr int64_t kGroup = 4 * kLanes;
  int64_t c = k;
  for (; c < V && c % kGroup != 0; ++c) offer(heap, k, z, c);
  for (; c + kGroup <= V; c += kGroup) {
    const vf m = vmax(vmax(vload(z + c), vload(z + c + kLanes)),
                      vmax(vload(z + c + 2 * kLanes), vload(z + c + 3 * kLanes)));
    if (!(hmax(m) > heap[0].value)) continue;
    for (int64_t j = c; j < c + kGroup; ++j) offer(heap, k, z, j);
  }
  for (; c < V; ++c) offer(heap, k, z, c);
  for (int64_t n = k - 1; n > 0; --n) {  // heap sort: the worst goes last each time
    const Ranked worst = heap[0];
    heap[0] = heap[n];
    heap[n] = worst;
    sift_down(heap, n, 0);
  }
}

template <typename T, bool kCap>
void topk_logprobs_typed(const cpu::TopkLogprobsArgs& a, int64_t row_begin, int64_t row_end,
                         float* scratch) {
  const int64_t V = a.classes, k = a.k;
  const float cap = static_cast<float>(a.softcap);
  const float inv_t = static_cast<float>(a.inv_temperature);
  const T* logits = static_cast<const T*>(a.logits);
  // scratch: [z: R(V)][heap: k (value, id) pairs]
  float* z = scratch;
  Ranked* heap = reinterpret_cast<Ranked*>(scratch + whole_vectors(V));
  for (int64_t r = row_begin; r < row_end; ++r) {
    load_row<T, false>(logits + r * a.stride, V, cap, z);
    select_best(z, V, k, heap);
    if (kCap) cap_row(z, V, cap);
    const Stats st = softmax_stats(z, V, inv_t);
    const double log_sum = __builtin_log(st.sum);
    for (int64_t j = 0; j < k; ++j) {
      const int32_t c = heap[j].id;
      a.ids[r * k + j] = c;
      a.logprobs[r * k + j] = static_cast<float>((static_cast<double>(z[c]) - st.max) * inv_t - log_sum);
    }
  }
}
