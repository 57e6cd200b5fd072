"""rope_cache reproduces Hugging Face's rotary tables for every rope_scaling variant, bitwise."""

import pytest
import torch

import llmkernels

transformers = pytest.importorskip("transformers")
from transformers import LlamaConfig  # noqa: E402
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding  # noqa: E402

HEAD_DIM = 64
SCALINGS = [
    None,
    {"rope_type": "linear", "factor": 4.0},
    {"rope_type": "dynamic", "factor": 2.0},
    {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128},
    {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 64, "beta_fast": 16, "mscale": 1.2,
     "mscale_all_dim": 0.8, "truncate": False},
    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 64},
    {"rope_type": "longrope", "short_factor": [1.0 + i / 64 for i in range(32)],
     "long_factor": [2.0 + i / 16 for i in range(32)], "original_max_position_embeddings": 128},
]


def _hf_tables(scaling, positions, max_position_embeddings):
    params = {"rope_type": "default", "rope_theta": 5000.0}
    params.update(scaling or {})
    config = LlamaConfig(
        hidden_size=HEAD_DIM * 4, num_attention_heads=4, max_position_embeddings=max_position_embeddings,
        rope_parameters=params,
    )
    rotary = LlamaRotaryEmbedding(config)
    x = torch.zeros(1, dtype=torch.float32)
    cos, sin = rotary(x, torch.arange(positions)[None])
    return cos[0, :, : HEAD_DIM // 2], sin[0, :, : HEAD_DIM // 2]


@pytest.mark.parametrize("positions", [100, 300])
@pytest.mark.parametrize("scaling", SCALINGS, ids=lambda s: "default" if s is None else s["rope_type"])
def test_matches_transformers(scaling, positions):
    config_max = 256
    hf_cos, hf_sin = _hf_tables(scaling, positions, config_max)
    ours = dict(scaling or {})
    if scaling is not None:
        ours["max_position_embeddings"] = config_max  # what HF reads from the model config
    cos, sin = llmkernels.rope_cache(positions, HEAD_DIM, base=5000.0, scaling=ours)
    assert cos.shape == (positions, HEAD_DIM // 2)
    torch.testing.assert_close(cos, hf_cos, rtol=0, atol=0)
    torch.testing.assert_close(sin, hf_sin, rtol=0, atol=0)


def test_partial_rotary_and_dtype_device():
    cos, sin = llmkernels.rope_cache(10, 16, dtype=torch.bfloat16, device="cpu")
    assert cos.shape == (10, 8) and cos.dtype == torch.bfloat16
    full_cos, _ = llmkernels.rope_cache(10, 16)
    torch.testing.assert_close(cos, full_cos.to(torch.bfloat16))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(max_positions=8, rotary_dim=7), "rotary_dim"),
        (dict(max_positions=8, rotary_dim=0), "rotary_dim"),
        (dict(max_positions=-1, rotary_dim=8), "max_positions"),
        (dict(max_positions=8, rotary_dim=8, base=0.5), "base"),
        (dict(max_positions=8, rotary_dim=8, scaling={"rope_type": "cubic"}), "rope_type"),
        (dict(max_positions=8, rotary_dim=8, scaling={"rope_type": "linear"}), "factor"),
        (dict(max_positions=8, rotary_dim=8, scaling={"rope_type": "llama3", "factor": 8.0}), "low_freq_factor"),
        (dict(max_positions=8, rotary_dim=8, scaling={"rope_type": "yarn", "factor": 2.0}), "original_max"),
        (dict(max_positions=8, rotary_dim=8, scaling={"rope_type": "longrope", "short_factor": [1.0],
              "long_factor": [1.0], "original_max_position_embeddings": 4}), "_factor.. must have"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        llmkernels.rope_cache(**kwargs)
