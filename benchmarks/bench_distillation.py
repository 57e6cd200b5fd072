"""Distillation losses against the plain PyTorch path (and liger-kernel's fused linear JSD, when
importable; never installed by this repository).

Targets, fp32 forward+backward on the 2-core CPU, ratios from one run:
* distillation_loss, N=4096, V=32000, T=2 (T^2 applied, mean over rows), beta 0 and 0.5: >= 3x the
  plain path (F.kl_div of log_softmaxes for beta 0, the same statement of the generalised JSD).
* linear_distillation_loss, N=2048, Hs=512, Ht=768, V=32768, beta 0.5, T=2: time below the plain
  path (two matmuls, the loss above) and Liger's LigerFusedLinearJSDLoss; peak memory <= 0.15x the
  plain path's and below Liger's (peak RSS added by one step, each case in a fresh process).
* linear_topk_distillation_loss, k=64, same size: faster than linear_distillation_loss, memory no higher.

LLMKERNELS_BENCH_TINY=1 runs every case once at a tiny size (a smoke test of this file).
"""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import llmkernels
from benchmarks.common import RESULTS, interleaved_medians, record

TINY = os.environ.get("LLMKERNELS_BENCH_TINY") == "1"
ROWS, VOCAB = (64, 1000) if TINY else (4096, 32000)
L_ROWS, L_HS, L_HT, L_VOCAB = (64, 32, 48, 1000) if TINY else (2048, 512, 768, 32768)
TEMPERATURE, TOPK = 2.0, 64
ROUNDS = 1 if TINY else 5


def plain_loss(student, teacher, beta, temperature=TEMPERATURE):
    """The plain PyTorch statement a user would write: full log-softmaxes, mean over rows, T^2."""
    log_s = F.log_softmax(student / temperature, dim=-1)
    log_t = F.log_softmax(teacher / temperature, dim=-1)
    if beta == 0.0:
        loss = F.kl_div(log_s, log_t, reduction="batchmean", log_target=True)
    else:
        log_m = torch.logsumexp(torch.stack([log_s + math.log(1 - beta), log_t + math.log(beta)]), dim=0)
        loss = beta * F.kl_div(log_m, log_t, reduction="batchmean", log_target=True) + \
            (1 - beta) * F.kl_div(log_m, log_s, reduction="batchmean", log_target=True)
    return loss * temperature**2


def _step(leaves, loss_fn):
    def run():
        for leaf in leaves:
            leaf.grad = None
        loss_fn().backward()

    return run


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_distillation_loss_vs_plain(benchmark, beta):
    torch.manual_seed(0)
    student = torch.randn(ROWS, VOCAB, requires_grad=True)
    teacher = torch.randn(ROWS, VOCAB)
    ours = _step([student], lambda: llmkernels.distillation_loss(student, teacher, temperature=TEMPERATURE, beta=beta))
    torch.testing.assert_close(
        llmkernels.distillation_loss(student, teacher, temperature=TEMPERATURE, beta=beta),
        plain_loss(student, teacher, beta), rtol=1e-4, atol=1e-5,
    )
    medians = interleaved_medians(
        {"plain PyTorch": _step([student], lambda: plain_loss(student, teacher, beta)), "llmkernels.distillation_loss": ours},
        rounds=ROUNDS, warmup=0 if TINY else 2,
    )
    backend = llmkernels.backends.resolve("distillation_loss", student.device, student.dtype)
    record(f"distillation_loss fwd+bwd N={ROWS} V={VOCAB} T={TEMPERATURE} beta={beta} fp32 [{backend}]", medians,
           "llmkernels.distillation_loss", target={"plain PyTorch": 3.0})
    benchmark.pedantic(ours, rounds=1, iterations=1)


_CHILD = r"""
import json, math, sys, torch
sys.path.insert(0, {root!r})
import llmkernels
from benchmarks.bench_distillation import linear_problem, linear_contenders
case = sys.argv[1]

def rss_mb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024

tiny = linear_contenders(*linear_problem(8, 16, 24, 64))[case]
tiny()  # one-time imports, compilation and library set-up are not the op's memory
run = linear_contenders(*linear_problem({rows}, {hs}, {ht}, {vocab}))[case]
run()  # the warm-up step
base = rss_mb("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak (VmHWM) to the current RSS
run()
run()
print(json.dumps({{"case": case, "added_mb": rss_mb("VmHWM:") - base}}))
"""


def linear_problem(rows, h_s, h_t, vocab):
    torch.manual_seed(0)
    s_x = torch.randn(rows, h_s, requires_grad=True)
    s_w = (torch.randn(vocab, h_s) / h_s**0.5).requires_grad_(True)
    t_x = torch.randn(rows, h_t)
    t_w = torch.randn(vocab, h_t) / h_t**0.5
    return s_x, s_w, t_x, t_w


def _liger():
    """Liger's chunked-PyTorch fused linear JSD (liger_kernel.chunked_loss; torch.compile'd by default,
    it runs on a CPU), soft part only to match the other contenders. The benchmark environment adds
    it (e.g. ``pip install --no-deps --target DIR liger-kernel`` and DIR on PYTHONPATH)."""
    try:
        from liger_kernel.chunked_loss import LigerFusedLinearJSDLoss
    except Exception:  # not installed, or no usable build
        return None
    return LigerFusedLinearJSDLoss(weight_hard_loss=0.0, weight_soft_loss=1.0, beta=0.5, temperature=TEMPERATURE)


def linear_contenders(s_x, s_w, t_x, t_w):
    """name -> one forward+backward step; liger only when importable."""
    ids, logprobs = llmkernels.linear_topk_logprobs(t_x, t_w, min(TOPK, t_w.shape[0]), temperature=TEMPERATURE)
    leaves = [s_x, s_w]
    contenders = {
        "plain": _step(leaves, lambda: plain_loss(s_x @ s_w.T, t_x @ t_w.T, 0.5)),
        "llmkernels.linear_distillation_loss": _step(leaves, lambda: llmkernels.linear_distillation_loss(
            s_x, s_w, t_x, t_w, temperature=TEMPERATURE, beta=0.5)),
        "llmkernels.linear_topk_distillation_loss k=64": _step(leaves, lambda: llmkernels.linear_topk_distillation_loss(
            s_x, s_w, ids, logprobs, temperature=TEMPERATURE, beta=0.5)),
    }
    liger = _liger()
    if liger is not None:
        # Its hard part is weighted 0 (the other contenders have none); it still wants labels.
        labels = torch.randint(0, t_w.shape[0], (s_x.shape[0],), generator=torch.Generator().manual_seed(0))
        contenders["liger LigerFusedLinearJSDLoss"] = _step(leaves, lambda: liger(s_x, s_w, t_x, t_w, labels))
    return contenders


def _peak_rss(case):
    child = _CHILD.format(root=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), rows=L_ROWS, hs=L_HS,
                          ht=L_HT, vocab=L_VOCAB)
    out = subprocess.run([sys.executable, "-c", child, case], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_linear_distillation_time_and_memory(benchmark):
    s_x, s_w, t_x, t_w = linear_problem(L_ROWS, L_HS, L_HT, L_VOCAB)
    torch.testing.assert_close(
        llmkernels.linear_distillation_loss(s_x, s_w, t_x, t_w, temperature=TEMPERATURE, beta=0.5),
        plain_loss(s_x @ s_w.T, t_x @ t_w.T, 0.5), rtol=1e-4, atol=1e-5,
    )
    contenders = linear_contenders(s_x, s_w, t_x, t_w)
    medians = interleaved_medians(contenders, rounds=ROUNDS, warmup=0 if TINY else 1)
    backend = llmkernels.backends.resolve("linear_distillation_loss", s_x.device, s_x.dtype)
    ours = "llmkernels.linear_distillation_loss"
    targets = {name: 1.0 for name in contenders if name != ours and "topk" not in name}
    record(f"linear_distillation_loss fwd+bwd N={L_ROWS} Hs={L_HS} Ht={L_HT} V={L_VOCAB} beta=0.5 T={TEMPERATURE} "
           f"fp32 [{backend}]", medians, ours, target=targets)
    topk = "llmkernels.linear_topk_distillation_loss k=64"
    record(f"linear_topk_distillation_loss k={TOPK} vs the full-teacher fused loss", {ours: medians[ours], topk: medians[topk]},
           topk, target={ours: 1.0})
    memory = {case: _peak_rss(case) for case in contenders}
    RESULTS.append({
        "case": "linear distillation peak RSS added by a step (fresh process each; target ours <= 0.15x plain, < liger)",
        "ours": ours, "medians_s": {}, "target": {}, "speedup_vs": {},
        "memory_mb": {case: round(m["added_mb"], 1) for case, m in memory.items()},
    })
    benchmark.pedantic(contenders[ours], rounds=1, iterations=1)
