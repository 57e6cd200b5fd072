"""Keep eager calls of the package's ops from importing torch._dynamo.

``torch.library.custom_op`` wraps every implementation in ``torch._disable_dynamo``, whose first
call imports ``torch._dynamo`` (and sympy with it): about 145 MB of resident memory and a second
or two, paid by every process that calls an op once, even one that never compiles anything.
The wrapper caches the disabled function as the implementation's ``__dynamo_disable`` attribute;
``install`` sets that attribute to a function that calls the implementation directly while
``torch._dynamo`` has not been imported (no dynamo frame hook can be active then), and builds
and caches the real disabled function as soon as it has been. Where a torch release wraps its
implementations differently, nothing is changed and torch's own behaviour stays.
"""

from __future__ import annotations

import sys

from torch._library import custom_ops


def _lazy_disable(impl):
    def call(*args, **kwargs):
        if "torch._dynamo" not in sys.modules:
            return impl(*args, **kwargs)
        import torch._dynamo

        disabled = torch._dynamo.disable(impl, recursive=True)
        impl.__dynamo_disable = disabled  # torch's wrapper uses it from now on
        return disabled(*args, **kwargs)

    return call


def install(namespace: str = "llmkernels") -> int:
    """Installs the lazy import on every implementation of the namespace's custom ops; returns how many."""
    installed = 0
    for name, opdef in list(custom_ops.OPDEFS.items()):
        if not name.startswith(namespace + "::"):
            continue
        for wrapper in getattr(opdef, "_backend_fns", {}).values():
            impl = getattr(wrapper, "__wrapped__", None)
            code = getattr(wrapper, "__code__", None)
            # torch._compile._disable_dynamo's wrapper (functools.wraps copies the names, not the code).
            if impl is None or code is None or not code.co_filename.endswith("_compile.py"):
                continue
            if getattr(impl, "__dynamo_disable", None) is None:
                impl.__dynamo_disable = _lazy_disable(impl)
                installed += 1
    return installed
