"""The transformers benchmark's profile split: every op in exactly one kind, nothing lost."""

from benchmarks.bench_transformers import kind, shares


def test_profile_kinds_split_the_step_without_losing_time():
    events = [("aten::mm", 2.0), ("aten::addmm_", 0.5), ("llmkernels::attention_backward", 0.25),
              ("aten::_scaled_dot_product_flash_attention_for_cpu", 0.125), ("llmkernels::rms_norm", 0.0625),
              ("GeneratedBackwardFor_llmkernels_swiglu_default", 0.0625), ("aten::copy_", 0.03125)]
    assert [kind(name) for name, _ in events] == ["gemm", "gemm", "attention", "attention", "llmkernels ops",
                                                   "llmkernels ops", "other"]
    split = shares(events)
    assert split == {"gemm": 2.5, "attention": 0.375, "llmkernels ops": 0.125, "other": 0.03125}
    assert sum(split.values()) == sum(t for _, t in events)
