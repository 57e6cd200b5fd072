// Run-time values -> template arguments, for the per-ISA CPU kernels. Included INSIDE
// `namespace llmkernels::LLMK_ISA_NS { namespace { ... } }` after cpu_convert_impl.h (F16, Bf16),
// in a region opened by isa_begin.h. Each kernel instantiates its hot loop once per element type
// and per flag combination, so the loops carry no run-time branches on them.

template <typename T>
struct TypeTag {
  using type = T;
};
template <bool B>
struct BoolTag {
  static constexpr bool value = B;
};

// Calls f(TypeTag<T>{}) with T the storage type of `t` (float, F16 or Bf16).
template <typename F>
LLMK_ALWAYS_INLINE void visit_elem_type(cpu::ElemType t, const F& f) {
  switch (t) {
    case cpu::ElemType::f32: f(TypeTag<float>{}); break;
    case cpu::ElemType::f16: f(TypeTag<F16>{}); break;
    case cpu::ElemType::bf16: f(TypeTag<Bf16>{}); break;
  }
}

// Calls f(BoolTag<a>{}, BoolTag<b>{}).
template <typename F>
LLMK_ALWAYS_INLINE void visit_flags(bool a, bool b, const F& f) {
  if (a) {
    if (b) f(BoolTag<true>{}, BoolTag<true>{});
    else f(BoolTag<true>{}, BoolTag<false>{});
  } else {
    if (b) f(BoolTag<false>{}, BoolTag<true>{});
    else f(BoolTag<false>{}, BoolTag<false>{});
  }
}
