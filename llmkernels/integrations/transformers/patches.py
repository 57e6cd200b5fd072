"""``apply_llmkernels(model, ...)``: one model instance's layers on llmkernels' ops, undoable.

Every patch is an attribute set on one instance (a module's ``forward``, the model's
``loss_function``, its attention implementation), never on a class, so a teacher and a student in one
process are patched independently, and ``undo()`` deletes exactly what was set. The parameters and
buffers are untouched: ``state_dict`` and ``save_pretrained`` write what they wrote before.

The forwards below mirror transformers 5's Llama-family modules (the supported version range is
checked); ``tests/integrations`` compares every patched model with its unpatched self.
"""

from __future__ import annotations

import functools
import types
import warnings

import torch

import llmkernels
from llmkernels.integrations.transformers.attention import IMPLEMENTATION
from llmkernels.ops.common.chunked_linear import rows_per_chunk

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3", "mistral", "gemma2", "gpt2", "bert")
_ROTARY_FAMILIES = ("llama", "qwen2", "qwen3", "mistral", "gemma2")  # Llama-style attention, RMSNorm, gated MLP
_SUPPORTED_TRANSFORMERS = (5,)  # major versions whose module layouts the forwards below mirror


class PatchHandle:
    """What ``apply_llmkernels`` changed; ``undo()`` restores the instance exactly."""

    def __init__(self, model):
        self.model = model
        self.applied: list[str] = []
        self._undo: list = []

    def _set(self, obj, name: str, value) -> None:
        had, old = name in obj.__dict__, obj.__dict__.get(name)
        object.__setattr__(obj, name, value)

        def restore():
            if had:
                object.__setattr__(obj, name, old)
            else:
                obj.__dict__.pop(name, None)

        self._undo.append(restore)

    def undo(self) -> None:
        while self._undo:
            self._undo.pop()()
        self.applied.clear()

    def __repr__(self):
        return f"PatchHandle({type(self.model).__name__}: {', '.join(self.applied) or 'nothing'})"


def _rms_norm_forward(self, hidden_states):
    if self._llmk_offset:  # Gemma: x / rms * (1 + w), in float32, then the input's dtype
        return llmkernels.rms_norm(hidden_states, self.weight.float() + 1.0, eps=self._llmk_eps).type_as(hidden_states)
    return llmkernels.rms_norm(hidden_states, self.weight, eps=self._llmk_eps)


def _linear_forward(self, x):
    return llmkernels.linear(x, self.weight, self.bias)


def _gated_mlp_forward(self, x):
    gate, up = self.gate_proj(x), self.up_proj(x)
    hidden = llmkernels.swiglu(gate, up) if self._llmk_act == "silu" else llmkernels.geglu(gate, up, approximate="tanh")
    return self.down_proj(hidden)


def _rotate(query, key, cos, sin):
    """transformers' full-width (batch, seq, head_dim) cos/sin, per row, as the op's half tables."""
    batch, seq, width = cos.shape
    half = width // 2
    table_cos = cos[..., :half].detach().reshape(batch * seq, half)
    table_sin = sin[..., :half].detach().reshape(batch * seq, half)
    positions = torch.arange(batch * seq, device=query.device).view(batch, seq)
    return llmkernels.apply_rotary(query, key, table_cos, table_sin, positions)


def _attention_forward(self, hidden_states, position_embeddings=None, attention_mask=None, cache=None, **kwargs):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if cache is None:
        cache = kwargs.pop("past_key_values", None)
    input_shape = hidden_states.shape[:-1]
    hidden_shape = (*input_shape, -1, self.head_dim)
    query = self.q_proj(hidden_states).view(hidden_shape)
    key = self.k_proj(hidden_states).view(hidden_shape)
    value = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
    if getattr(self, "q_norm", None) is not None:  # Qwen3: per-head RMSNorm before the rotation
        query, key = self.q_norm(query), self.k_norm(key)
    query, key = _rotate(query.transpose(1, 2), key.transpose(1, 2), *position_embeddings)
    if cache is not None:
        key, value = cache.update(key, value, self.layer_idx, kwargs=kwargs)
    interface = ALL_ATTENTION_FUNCTIONS[self.config._attn_implementation]
    extra = {}
    if self._llmk_family in ("mistral", "qwen2", "gemma2"):
        extra["sliding_window"] = getattr(self, "sliding_window", None) if self._llmk_family != "mistral" \
            else getattr(self.config, "sliding_window", None)
    if self._llmk_family == "gemma2":
        extra["softcap"] = self.attn_logit_softcapping
    out, weights = interface(self, query, key, value, attention_mask, dropout=self.attention_dropout if self.training else 0.0,
                             scaling=self.scaling, **extra, **kwargs)
    return self.o_proj(out.reshape(*input_shape, -1).contiguous()), weights


# The fused loss's chunks: up to 16M logits each (64 MB in float32: 512 rows at V = 32K), evenly
# split. Twice the op's default, because each chunk streams the (V, H) head weight through two
# GEMMs and reads and writes the (V, H) weight gradient once: the Llama step goes from 4
# chunks to 2, half that traffic, while the chunk stays far below the unpatched path's (N, V)
# logits, log-softmax and gradient (the step's peak added stays ~0.5x sdpa's).
_LOSS_CHUNK_ELEMENTS = 1 << 24


def _loss_chunk_rows(rows: int, vocab: int, device_type: str = "cpu") -> int:
    """Rows per chunk: as few chunks as hold ``_LOSS_CHUNK_ELEMENTS`` logits each (on a GPU at least
    the op's ``GPU_CHUNK_ROWS``), of equal size (1024 rows: 2 of 512, not 524 + 500)."""
    most = rows_per_chunk(rows, vocab, 0, _LOSS_CHUNK_ELEMENTS, device_type)
    chunks = max(1, -(-rows // most))
    return max(1, -(-rows // chunks))


def _shifted(labels, ignore_index):
    """transformers' causal-LM shift: token t predicts label t + 1, the last one nothing."""
    return torch.nn.functional.pad(labels, (0, 1), value=ignore_index)[..., 1:]


def _normalised(loss, num_items_in_batch):
    """A summed loss over gradient accumulation's item count, as transformers' losses divide it."""
    return loss / torch.as_tensor(num_items_in_batch, device=loss.device)


def _causal_lm_loss(logits, labels, vocab_size, num_items_in_batch=None, ignore_index=-100, shift_labels=None, **kwargs):
    """transformers' ForCausalLMLoss on llmkernels.cross_entropy (the same shift and normalisation)."""
    if shift_labels is None:
        shift_labels = _shifted(labels, ignore_index)
    shift_labels = shift_labels.reshape(-1).to(logits.device)
    reduction = "sum" if num_items_in_batch is not None else "mean"
    loss = llmkernels.cross_entropy(logits.reshape(-1, vocab_size).float(), shift_labels, ignore_index=ignore_index,
                                    reduction=reduction)
    return _normalised(loss, num_items_in_batch) if reduction == "sum" else loss


def _fused_causal_lm_forward(self, original, *args, labels=None, **kwargs):
    """With labels and gradients on (a training step): the loss from the last hidden states through
    ``linear_cross_entropy``, never the (tokens, vocab) logits (``logits`` is None then). Otherwise
    the model's own forward."""
    if labels is None or not torch.is_grad_enabled() or args:
        return original(*args, labels=labels, **kwargs)
    num_items = kwargs.pop("num_items_in_batch", None)
    shift_labels = kwargs.pop("shift_labels", None)
    kwargs.pop("logits_to_keep", None)
    # A training step needs no KV cache unless asked for one: by config.use_cache the model would
    # build one and copy every layer's keys and values into it for nothing.
    if kwargs.get("past_key_values") is None and kwargs.get("cache") is None:
        kwargs.setdefault("use_cache", False)
    base = getattr(self, self.base_model_prefix)
    outputs = base(**kwargs)
    hidden = outputs[0]
    if shift_labels is None:
        shift_labels = _shifted(labels, -100)
    head = self.get_output_embeddings()
    softcap = getattr(self.config, "final_logit_softcapping", None)
    rows = hidden.reshape(-1, hidden.shape[-1])
    loss = llmkernels.linear_cross_entropy(rows, head.weight, shift_labels.reshape(-1).to(hidden.device),
                                           linear_bias=head.bias, reduction="sum" if num_items is not None else "mean",
                                           softcap=softcap, chunk_size=_loss_chunk_rows(rows.shape[0], head.weight.shape[0], rows.device.type))
    if num_items is not None:
        loss = _normalised(loss, num_items)
    from transformers.modeling_outputs import CausalLMOutputWithPast

    fields = {f: getattr(outputs, f, None) for f in ("past_key_values", "hidden_states", "attentions")}
    return CausalLMOutputWithPast(loss=loss, logits=None, **fields)


def _check_supported(model) -> str | None:
    import transformers

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    major = int(transformers.__version__.split(".")[0])
    if model_type not in SUPPORTED_MODEL_TYPES:
        return f"apply_llmkernels supports config.model_type in {', '.join(SUPPORTED_MODEL_TYPES)}; got {model_type!r}"
    if major not in _SUPPORTED_TRANSFORMERS:
        return (f"apply_llmkernels supports transformers {', '.join(f'{v}.x' for v in _SUPPORTED_TRANSFORMERS)}; "
                f"installed {transformers.__version__}")
    return None


def apply_llmkernels(model, *, attention=True, rope=True, cross_entropy=True, fused_linear_cross_entropy=True,
                     rms_norm=True, swiglu=True, linear=True, strict=True) -> PatchHandle:
    """Put one transformers model instance on llmkernels' ops; returns a handle whose ``undo()``
    restores it. Llama, Qwen2, Qwen3, Mistral and Gemma2: attention, rotary, RMSNorm, the gated
    MLP (SwiGLU; Gemma2's tanh-GELU gate), the causal-LM loss, and in training steps the fused
    linear cross-entropy (no logits). GPT-2: attention and the losses. BERT: attention. ``linear``:
    every ``nn.Linear`` but the output head (which the fused loss reads) runs on ``llmkernels.linear``
    (on a CPU, llmkernels' own float32 GEMM; GPT-2's projections are ``Conv1D``s and stay). Any other
    model, or a transformers release whose module layout these patches do not mirror: ``ValueError``
    (``strict=False``: a warning, and the model is left untouched)."""
    handle = PatchHandle(model)
    problem = _check_supported(model)
    if problem is not None:
        if strict:
            raise ValueError(problem)
        warnings.warn(problem + "; the model is left unpatched", stacklevel=2)
        return handle
    family = model.config.model_type
    llama_like = family in _ROTARY_FAMILIES
    try:
        if attention:
            previous = model.config._attn_implementation
            model.set_attn_implementation(IMPLEMENTATION)
            handle._undo.append(lambda: model.set_attn_implementation(previous))
            handle.applied.append("attention")
        head = model.get_output_embeddings()
        for module in model.modules():
            name = type(module).__name__
            if linear and type(module) is torch.nn.Linear and module is not head:
                handle._set(module, "forward", types.MethodType(_linear_forward, module))
                if "linear" not in handle.applied:
                    handle.applied.append("linear")
            elif llama_like and rms_norm and name.endswith("RMSNorm"):
                handle._set(module, "_llmk_eps", getattr(module, "variance_epsilon", getattr(module, "eps", 1e-6)))
                handle._set(module, "_llmk_offset", family == "gemma2")
                handle._set(module, "forward", types.MethodType(_rms_norm_forward, module))
            elif llama_like and swiglu and name.endswith("MLP") and hasattr(module, "gate_proj"):
                act = getattr(model.config, "hidden_activation", None) or model.config.hidden_act
                if act in ("silu", "gelu_pytorch_tanh"):
                    handle._set(module, "_llmk_act", "silu" if act == "silu" else "gelu_tanh")
                    handle._set(module, "forward", types.MethodType(_gated_mlp_forward, module))
            elif llama_like and rope and name.endswith("Attention") and hasattr(module, "q_proj"):
                handle._set(module, "_llmk_family", family)
                handle._set(module, "forward", types.MethodType(_attention_forward, module))
        handle.applied += [part for part, on in (("rms_norm", rms_norm), ("swiglu", swiglu), ("rope", rope)) if on and llama_like]
        causal_lm = family != "bert" and model.get_output_embeddings() is not None
        if causal_lm and cross_entropy:
            handle._set(model, "_loss_function", _causal_lm_loss)
            handle.applied.append("cross_entropy")
        if causal_lm and fused_linear_cross_entropy:
            original = model.forward

            # functools.wraps: the signature seen by inspect (Trainer drops dataset columns the
            # forward does not name) stays the model's own.
            @functools.wraps(original)
            def forward(*args, labels=None, **kwargs):
                return _fused_causal_lm_forward(model, original, *args, labels=labels, **kwargs)

            handle._set(model, "forward", forward)
            handle.applied.append("fused_linear_cross_entropy")
    except Exception:
        handle.undo()  # never a half-patched model
        raise
    return handle
