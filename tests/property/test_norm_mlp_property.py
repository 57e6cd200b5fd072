"""rms_norm (with and without the fused residual, weight or none) and the gated units swiglu and
geglu (two tensors or packed gate_up) on random shapes, layouts and dtypes, on every backend,
against the reference in float64."""

import pytest
import torch

pytest.importorskip("hypothesis", reason="the property tests need hypothesis (tools/setup_env.sh installs it)")

from hypothesis import given, strategies as st  # noqa: E402

import llmkernels  # noqa: E402
from tests.property.strategies import backends_of, begin, check, sizes, sizes_or_empty, tensors  # noqa: E402


@pytest.mark.parametrize("backend", backends_of("rms_norm"))
@given(data=st.data())
def test_rms_norm(backend, data):
    dtype = begin("rms_norm", backend, data)
    shape = (data.draw(sizes_or_empty), data.draw(sizes), data.draw(st.sampled_from([1, 3, 16, 17, 64, 100])))
    args = {"x": data.draw(tensors(shape, dtype, grad=True, scale=data.draw(st.sampled_from([1.0, 1e-3, 50.0]))))}
    if data.draw(st.booleans()):
        args["residual"] = data.draw(tensors(shape, dtype, grad=True))
    weighted = data.draw(st.booleans())
    if weighted:
        args["weight"] = data.draw(tensors(shape[-1:], data.draw(st.sampled_from([dtype, torch.float32])), grad=True))
    eps = data.draw(st.sampled_from([1e-6, 1e-5, 0.1]))
    check(lambda weight=None, **a: llmkernels.rms_norm(weight=weight, eps=eps, **a), args, backend,
          gradient_terms=lambda kwargs: _dx_terms(kwargs, eps))


def _dx_terms(kwargs, eps) -> dict:
    """dx = rstd * (w g - xhat mean(xhat w g)): the two terms are each up to rstd |w| |g| (g <= 1.5,
    check's weights) and cancel where h w g lies along h (with D = 1 whenever |h| >> sqrt(eps): the
    true dx is then ~eps / |h|^3 while float32 rounds each term at its own size). A view that
    repeats its storage (expanded) sums that many rows into one gradient element."""
    h = kwargs["x"].detach().double()
    if kwargs.get("residual") is not None:
        h = h + kwargs["residual"].detach().double()
    if not h.numel():
        return {}
    rstd = float(torch.rsqrt(h.square().mean(-1) + eps).max())
    weight = kwargs.get("weight")
    w = weight.detach().double().abs().max().item() if weight is not None and weight.numel() else 1.0
    terms = {}
    for name in ("x", "residual"):
        view = kwargs.get(name)
        if view is not None:
            repeats = max(1, view.numel() // max(1, view.untyped_storage().nbytes() // view.element_size()))
            terms[name] = rstd * 1.5 * w * repeats
    return terms


@pytest.mark.parametrize("op", ["swiglu", "geglu"])
@pytest.mark.parametrize("backend", backends_of("swiglu"))
@given(data=st.data())
def test_gated_units(op, backend, data):
    dtype = begin(op, backend, data)
    hidden = data.draw(st.sampled_from([1, 2, 7, 16, 33]))
    leading = (data.draw(sizes_or_empty), data.draw(sizes))
    scale = data.draw(st.sampled_from([1.0, 4.0, 30.0]))
    options = {} if op == "swiglu" else {"approximate": data.draw(st.sampled_from(["none", "tanh"]))}
    fn = getattr(llmkernels, op)
    if data.draw(st.booleans()):  # packed [gate | up]
        args = {"gate": data.draw(tensors(leading + (2 * hidden,), dtype, grad=True, scale=scale))}
        check(lambda gate: fn(gate, **options), args, backend)
    else:
        args = {"gate": data.draw(tensors(leading + (hidden,), dtype, grad=True, scale=scale)),
                "up": data.draw(tensors(leading + (hidden,), dtype, grad=True))}
        check(lambda gate, up: fn(gate, up, **options), args, backend)
