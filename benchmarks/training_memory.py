"""Where the training process's memory goes, per contender: the floor and what one step adds.

Run in a fresh process per contender (``bench_training.py --breakdown`` starts them), in the order
a training run allocates: torch imported, the package and its extension, the data, the model
(parameters), then the floor's remaining parts with no activation at all (the gradients as
zeros, AdamW's states from one fused step on them, which also imports torch._dynamo). Then one
real training step: the bytes autograd saves for the backward (unique storages, seen through
``llmkernels.nn.recompute.measuring``, which leaves out what the model keeps as recompute recipes;
the parameters themselves excluded) and the peak RSS of a few steps.

Memory is deterministic enough to read on a busy machine; the figures are resident set sizes
(``/proc/self/statm``) and the process's peak (``ru_maxrss``), in MB.
"""

from __future__ import annotations

import resource
import statistics

MB = 1024 * 1024


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / MB


def malloc_heap_mb() -> tuple[float, float]:
    """glibc's main heap: its size and the bytes in use in it (what RSS holds beyond live tensors is
    the difference: freed chunks the heap keeps). (nan, nan) where mallinfo2 is absent."""
    try:
        import ctypes

        class Info(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in
                        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = Info
        info = libc.mallinfo2()
        return info.arena / MB, info.uordblks / MB
    except (OSError, AttributeError):
        return float("nan"), float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class SavedBytes:
    """Counts the bytes autograd saves for the backward: each storage once, parameters excluded."""

    def __init__(self, exclude=()):
        self.exclude = {t.untyped_storage().data_ptr() for t in exclude}
        self.storages: dict[int, int] = {}
        self.by_shape: dict[tuple, int] = {}

    def pack(self, t):
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in self.exclude and key not in self.storages and storage.nbytes():
            self.storages[key] = storage.nbytes()
            label = (tuple(t.shape), str(t.dtype).replace("torch.", ""))
            self.by_shape[label] = self.by_shape.get(label, 0) + storage.nbytes()

    @property
    def total_mb(self) -> float:
        return sum(self.storages.values()) / MB


def breakdown(ops: str, seq: int, batch: int, bf16: bool, steps: int = 3) -> dict:
    """One contender's figures (MB); call in a fresh process."""
    stages = {"python": rss_mb()}
    import torch

    stages["torch"] = rss_mb()
    import llmkernels  # noqa: F401
    from llmkernels import _native
    from llmkernels.models import GPT
    from llmkernels.nn import recompute
    from llmkernels.training import config as configs, data, loop  # noqa: F401

    _native.extension()
    stages["llmkernels + extension"] = rss_mb()
    config = configs.build("small", ops=ops, seq_len=seq, batch_size=batch, seed=0, bf16=bf16 or None)
    corpus = data.load_corpus(None, build=False)
    batches = data.Batches(corpus.train, config.context, config.batch_size, 1, 0)
    stages["data"] = rss_mb()
    torch.manual_seed(0)
    model = GPT(config.model_config(corpus.vocab_size))
    params = list(model.parameters())
    param_mb = sum(p.numel() * p.element_size() for p in params) / MB
    stages["parameters"] = rss_mb()
    for p in params:
        p.grad = torch.zeros_like(p)
    stages["gradients"] = rss_mb()
    import torch._dynamo  # noqa: F401  (AdamW's step imports it; counted apart from the states)

    stages["torch._dynamo (imported by AdamW)"] = rss_mb()
    optimizer = loop._optimizer(model, config, torch.device("cpu"))
    optimizer.step()  # zero gradients: the states exist, the weights move by weight decay only
    stages["AdamW states"] = rss_mb()
    floor = rss_mb()
    floor_peak = peak_mb()

    saved = SavedBytes(exclude=params)
    step_s = []
    for step in range(steps):
        x, y = batches.get(step + 1, 0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if step == 0:
                with recompute.measuring(saved.pack):
                    loss = model(x, y)
                after_forward = rss_mb()
            else:
                loss = model(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    heap_mb, heap_used_mb = malloc_heap_mb()
    increments = {}
    previous = stages["python"]
    for name, value in stages.items():
        increments[name] = value - previous if name != "python" else value
        previous = value
    largest = sorted(saved.by_shape.items(), key=lambda kv: -kv[1])[:8]
    return {"ops": ops, "bf16": bf16, "stages": increments, "floor_mb": floor, "floor_peak_mb": floor_peak,
            "parameter_mb": param_mb, "saved_mb": saved.total_mb, "after_forward_mb": after_forward,
            "peak_mb": peak_mb(), "heap_mb": heap_mb, "heap_free_mb": heap_mb - heap_used_mb, "saved_by_shape": [(f"{s} {d}", b / MB) for (s, d), b in largest],
            "loss": loss.item()}


def format_breakdown(results: list[dict]) -> str:
    names = list(results[0]["stages"])
    head = f"  {'':<36}" + "".join(f"{'--ops ' + r['ops']:>18}" for r in results)
    lines = ["memory breakdown (RSS, MB; each contender a fresh process)", head]
    for name in names:
        lines.append(f"  {name:<36}" + "".join(f"{r['stages'][name]:>18,.0f}" for r in results))
    rows = [("floor (no activations)", "floor_mb"), ("RSS at the end of one forward", "after_forward_mb"),
            ("saved for the backward (unique)", "saved_mb"), ("peak RSS of the steps", "peak_mb"),
            ("malloc heap after the steps", "heap_mb"), ("  of which free (kept by the heap)", "heap_free_mb")]
    for label, key in rows:
        lines.append(f"  {label:<36}" + "".join(f"{r[key]:>18,.0f}" for r in results))
    lines.append(f"  {'peak above the floor':<36}" + "".join(f"{r['peak_mb'] - r['floor_mb']:>18,.0f}" for r in results))
    if len(results) == 2:
        peer, ours = results
        floor = min(peer["floor_mb"], ours["floor_mb"])
        best = floor / peer["peak_mb"]
        lines.append(f"  peak RSS ratio: {ours['peak_mb'] / peer['peak_mb']:.2f}x; with no activations at all ours would "
                     f"be {best:.2f}x (the floor over torch's peak); 0.65x allows "
                     f"{0.65 * peer['peak_mb'] - ours['floor_mb']:,.0f} MB above our floor")
    for r in results:
        lines.append(f"  largest saved tensors, --ops {r['ops']}: "
                     + ", ".join(f"{label}: {mb:,.1f}" for label, mb in r["saved_by_shape"]))
    return "\n".join(lines)


def median_of(runs: list[dict]) -> dict:
    """Several fresh-process runs of one contender as one (median of every figure)."""
    first = dict(runs[0])
    for key in ("floor_mb", "floor_peak_mb", "saved_mb", "after_forward_mb", "peak_mb", "heap_mb", "heap_free_mb"):
        first[key] = statistics.median(r[key] for r in runs)
    return first
