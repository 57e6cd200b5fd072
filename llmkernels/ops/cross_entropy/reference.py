"""Softmax cross-entropy in plain PyTorch: the specification.

The cross-entropy part is exactly ``F.cross_entropy`` with class-index targets (class weights,
label smoothing, ignore_index, reductions); on top of it:

* ``softcap`` replaces each logit x by softcap * tanh(x / softcap) first (Gemma 2);
* ``z_loss`` adds z_loss * lse^2 for each non-ignored row, unweighted by class weights; ``mean``
  divides that sum by the number of non-ignored rows (PaLM's z-loss);
* a ``mean`` over zero non-ignored rows is 0 (torch gives NaN), with zero gradients.

Per row, with z the capped logits, t the target, w the class weights (1 when absent), W = sum w,
eps = label_smoothing:  ce_row = (1 - eps) w_t (lse - z_t) + eps / C * (W lse - sum_c w_c z_c).
``mean`` divides sum(ce_row) by sum(w_t) over non-ignored rows, as torch does.
"""

from __future__ import annotations

import torch


def row_terms(logits, target, class_weight, ignore_index, label_smoothing, z_loss, softcap):
    """(ce_rows, z_rows, lse, weight_of_target, valid) for logits (N, C) and target (N,).

    The terms are formed from the logits less their row maximum (lse - z_t = lse(z - m) - (z_t - m)):
    a large common offset (logits near -1e4) then costs no digits, and logits near float32's
    limits give the loss's true overflow (inf), not inf - inf (NaN). An ignored row, a zero class
    weight or a zero option adds exactly 0 (never 0 * inf)."""
    compute = torch.promote_types(logits.dtype, torch.float32)
    z = logits.to(compute)
    if softcap:
        z = softcap * torch.tanh(z / softcap)
    classes = z.shape[-1]
    top = z.amax(dim=-1, keepdim=True) if classes else z.new_zeros(z.shape[:-1] + (1,))
    shifted = z - torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    shifted_lse = torch.logsumexp(shifted, dim=-1)
    lse = shifted_lse + (z - shifted)[..., :1].squeeze(-1) if classes else shifted_lse
    valid = target != ignore_index
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    weight = torch.ones(classes, dtype=compute, device=z.device) if class_weight is None else class_weight.to(compute)
    weight_of_target = weight[safe_target] * valid
    nll = shifted_lse - shifted.gather(-1, safe_target.unsqueeze(-1)).squeeze(-1)
    zero = torch.zeros_like(nll)
    ce_rows = torch.where(weight_of_target != 0, (1 - label_smoothing) * weight_of_target * nll, zero)
    if label_smoothing:
        smooth = weight.sum() * shifted_lse - torch.where(weight != 0, shifted * weight, 0).sum(-1)
        ce_rows = ce_rows + torch.where(valid, (label_smoothing / classes) * smooth, zero)
    z_rows = torch.where(valid, z_loss * lse.square(), zero) if z_loss else zero
    return ce_rows, z_rows, lse, weight_of_target, valid


def safe_divide(numerator, denominator):
    # A mean over nothing is 0, not NaN, and its gradient is 0 too.
    return numerator / torch.where(denominator == 0, torch.ones_like(denominator), denominator)


def cross_entropy(logits, target, class_weight, ignore_index, reduction, label_smoothing, z_loss, softcap):
    """(loss, lse) for logits (N, C), target (N,); loss per row for 'none', else a scalar (float32)."""
    ce_rows, z_rows, lse, weight_of_target, valid = row_terms(
        logits, target, class_weight, ignore_index, label_smoothing, z_loss, softcap
    )
    if reduction == "none":
        return ce_rows + z_rows, lse
    if reduction == "sum":
        return ce_rows.sum() + z_rows.sum(), lse
    count = valid.sum().to(ce_rows.dtype)
    return safe_divide(ce_rows.sum(), weight_of_target.sum()) + safe_divide(z_rows.sum(), count), lse


def _part_gradients(logits, target, class_weight, ignore_index, label_smoothing, z_loss, softcap):
    """Per-row gradients w.r.t. the raw logits of the CE part and of the z-loss part, in closed
    form (an op's implementation runs below autograd, so the formula above cannot be
    differentiated there):
    d ce_row / d z = (1 - eps) w_t (p - onehot_t) + eps / C (W p - w);  d z_row / d z = 2 z_loss lse p;
    d z / d x = 1 - (z / softcap)^2 with the softcap on.
    Also returns the row terms of ``row_terms`` (computed once) for the caller's use."""
    compute = torch.promote_types(logits.dtype, torch.float32)
    raw = logits.to(compute)
    z = softcap * torch.tanh(raw / softcap) if softcap else raw
    classes = z.shape[-1]
    terms = row_terms(logits, target, class_weight, ignore_index, label_smoothing, z_loss, softcap)
    _, _, lse, weight_of_target, valid = terms
    p = torch.softmax(z, dim=-1)  # not exp(z - lse): lse rounded at |lse| ~ 1e4 is off by ~1e-3
    weight = torch.ones(classes, dtype=compute, device=z.device) if class_weight is None else class_weight.to(compute)
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    onehot = torch.nn.functional.one_hot(safe_target, classes).to(compute)
    mask = valid.to(compute).unsqueeze(-1)
    chain = (1 - (z / softcap).square()) if softcap else 1.0
    d_ce = ((1 - label_smoothing) * weight_of_target.unsqueeze(-1) * (p - onehot)
            + (label_smoothing / classes) * (weight.sum() * p - weight)) * mask * chain
    d_z = 2 * z_loss * lse.unsqueeze(-1) * p * mask * chain
    return d_ce, d_z, terms


def cross_entropy_grad(grad_loss, logits, target, class_weight, ignore_index, reduction, label_smoothing, z_loss, softcap):
    """d(loss)/d(logits) for an upstream grad_loss."""
    d_ce, d_z, (_, _, _, weight_of_target, valid) = _part_gradients(
        logits, target, class_weight, ignore_index, label_smoothing, z_loss, softcap
    )
    upstream = grad_loss.to(d_ce.dtype)
    if reduction == "none":
        return (d_ce + d_z) * upstream.unsqueeze(-1)
    if reduction == "sum":
        return (d_ce + d_z) * upstream
    count = valid.sum().to(d_ce.dtype)
    return d_ce * safe_divide(upstream, weight_of_target.sum()) + d_z * safe_divide(upstream, count)


def rows_with_gradient(logits, target, class_weight, ignore_index, label_smoothing, z_loss, softcap, ce_scale, z_scale):
    """The kernels' row contract (csrc/cross_entropy/cross_entropy.h) in plain PyTorch:
    (loss_rows, lse, grad) with grad = ce_scale * d ce_row / d logits + z_scale * d z_row / d logits."""
    d_ce, d_z, (ce_rows, z_rows, lse, _, _) = _part_gradients(
        logits, target, class_weight, ignore_index, label_smoothing, z_loss, softcap
    )
    return (ce_rows + z_rows).float(), lse.float(), (ce_scale * d_ce + z_scale * d_z).to(logits.dtype)
