"""What one benchmark case is, and the registry that names every case of every op.

A case is one problem (shapes, dtype, mode) and its contenders: our op on each backend the device
has, and the peers a user would otherwise pick. A ``Spec`` (a builder's name and its parameters,
JSON-serialisable) rebuilds the same case anywhere, in particular in the fresh process that
measures a contender's peak memory.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Callable

import torch

from llmkernels import backends

Step = Callable[[], object]


@dataclasses.dataclass
class Case:
    op: str                      # the family `llmkernels bench --op` names: attention, cross_entropy, ...
    mode: str                    # fwd | fwd+bwd | decode
    shape: str                   # "N=4096 V=32000 fp32": the key of the case in the CSV
    size: int                    # the swept dimension's value: the x axis of the plots
    ours: dict[str, Step]        # "llmkernels[cpp]" -> one step, per backend present (and variants)
    peers: dict[str, Step]       # "F.cross_entropy" -> one step
    targets: dict[str, float] = dataclasses.field(default_factory=dict)  # peer -> speed-up ours must reach
    pairs: list[tuple[str, str, float | None]] = dataclasses.field(default_factory=list)  # extra (subject, against, target)
    floor_bytes: float = 0.0     # bytes the op must move at least (roofline floor: bytes / copy bandwidth)
    floor_flops: float = 0.0     # arithmetic it must do at least (floor: FLOPs / GEMM rate of `dtype`)
    floor_for: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)  # provider -> (bytes, flops)
    dtype: str = "fp32"
    check: Callable[[], None] | None = None   # asserts ours and the peer agree before anything is timed
    optional: tuple[str, ...] = ()            # peers that may fail to run here (liger): dropped, with a note
    memory: bool = False         # also measure each contender's peak memory, each in a fresh process
    warmup_full: bool = False    # the memory child warms up on the full problem (compiled peers), not a tiny one
    timed: bool = True           # False: a memory-only case
    rounds: int = 5
    extra_rows: Callable[[], list[tuple[str, str, float]]] | None = None  # (provider, metric, value) measured in-process

    @property
    def providers(self) -> dict[str, Step]:
        return {**self.peers, **self.ours}

    @property
    def label(self) -> str:
        return f"{self.op} {self.mode} {self.shape}"


@dataclasses.dataclass(frozen=True)
class Spec:
    builder: str
    params: tuple[tuple[str, object], ...]

    @classmethod
    def of(cls, builder: str, **params) -> "Spec":
        # Lists (from JSON) become tuples: a spec is hashable, and equal to itself after a round trip.
        return cls(builder, tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items())))

    def build(self, device: str = "cpu") -> Case:
        return BUILDERS[self.builder](device=device, **dict(self.params))

    def tiny(self) -> "Spec":
        return Spec.of(self.builder, **{**dict(self.params), "tiny": True})

    def to_json(self) -> str:
        return json.dumps({"builder": self.builder, "params": dict(self.params)})

    @classmethod
    def from_json(cls, text: str) -> "Spec":
        data = json.loads(text)
        return cls.of(data["builder"], **data["params"])

    @property
    def id(self) -> str:
        def text(v):
            return "x".join(map(str, v)) if isinstance(v, tuple) else str(v)

        return " ".join([self.builder] + [f"{k}={text(v)}" for k, v in self.params if k != "tiny"])


BUILDERS: dict[str, Callable[..., Case]] = {}
# op -> (level -> specs): level is "full" (pytest and `llmkernels bench`), "quick" or "sweep".
OPS: dict[str, Callable[[str, str], list[Spec]]] = {}


def builder(fn: Callable[..., Case]) -> Callable[..., Case]:
    BUILDERS[fn.__name__] = fn
    return fn


def family(name: str):
    def register(fn: Callable[[str, str], list[Spec]]):
        OPS[name] = fn
        return fn

    return register


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def our_backends(op: str, device: str, dtype: torch.dtype) -> list[str]:
    """The backends of ``op`` that run on ``device`` for ``dtype``, without the reference (the
    specification, not a contender) unless it is all there is; Triton on a CPU is left out (only
    its interpreter runs there: a test tool, not a kernel)."""
    device_type = torch.device(device).type
    found = []
    for name in backends.available_backends(device, op):
        if name == "reference" or (name == "triton" and device_type == "cpu"):
            continue
        if backends.would_run(op, device_type, dtype, name)[0] == name:
            found.append(name)
    return found or ["reference"]


def ours(op: str, device: str, dtype: torch.dtype, make_step: Callable[[], Step], suffix: str = "") -> dict[str, Step]:
    """``llmkernels[<backend>]`` -> the step run inside ``use_backend(<backend>)``, per backend."""
    steps = {}
    for name in our_backends(op, device, dtype):
        step = make_step()

        def run(step=step, name=name):
            with backends.use_backend(name):
                return step()

        steps[f"llmkernels[{name}]{suffix}"] = run
    return steps


def train_step(leaves: list[torch.Tensor], loss: Callable[[], torch.Tensor], grad: torch.Tensor | None = None) -> Step:
    """A forward+backward step that starts with fresh gradient tensors, as a training step does."""
    def run():
        for leaf in leaves:
            leaf.grad = None
        out = loss()
        out.backward(grad) if grad is not None else out.backward()

    return run


def forward_step(fn: Callable[[], object]) -> Step:
    def run():
        with torch.no_grad():
            return fn()

    return run
