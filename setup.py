"""Build script: the llmkernels package plus, when torch is importable, the llmkernels._C extension.

    pip install --no-build-isolation -e .    # builds _C against the installed torch
    LLMKERNELS_NO_EXTENSION=1 pip install .  # pure-Python package
    LLMKERNELS_NO_CUDA=1 ...                 # CPU-only extension even where CUDA is present
    LLMKERNELS_CUDA_ARCHS="90a" ...          # CUDA architectures (default "80;90a")
    LLMKERNELS_DEBUG=1 ...                   # keep debug info (-g)
    MAX_JOBS=2 ...                           # parallel compile jobs (ninja)

The extension is optional: if it fails to compile, the install still succeeds with a warning and
the package runs on its reference backends.
"""

import glob
import os
import re
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def read_version():
    try:
        with open(os.path.join(ROOT, "llmkernels", "__init__.py"), encoding="utf-8") as f:
            match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', f.read(), re.M)
        if match:
            return match.group(1)
    except OSError:
        pass
    return "0.1.0"


def read_readme():
    try:
        with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
            return f.read()
    except OSError:
        return "Fused kernels for the hot spots of transformer training."


def warn(message):
    print(f"WARNING (llmkernels): {message}", file=sys.stderr)


def env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def relative(paths):
    return sorted(os.path.relpath(p, ROOT) for p in paths)


def object_name_clashes(sources):
    """Sources that would compile to the same object file. torch's ninja build names each object
    after its source path without the suffix, so x_cuda.cpp and x_cuda.cu both become x_cuda.o and
    the whole CUDA build fails ('multiple rules generate ...'), leaving only the Python package."""
    by_object = {}
    for path in sources:
        by_object.setdefault(os.path.splitext(path)[0], []).append(path)
    return [paths for paths in by_object.values() if len(paths) > 1]


def extension_modules():
    """The _C extension and its build command, or ([], {}) for a pure-Python build."""
    if env_flag("LLMKERNELS_NO_EXTENSION"):
        warn("LLMKERNELS_NO_EXTENSION=1: building the pure-Python package (no C++ kernels).")
        return [], {}
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        warn(
            "torch is not importable at build time (an isolated build?): building the pure-Python "
            "package. For the C++/CUDA kernels, install torch first and run "
            "`pip install --no-build-isolation .`."
        )
        return [], {}

    all_cpp = glob.glob(os.path.join(ROOT, "csrc", "**", "*.cpp"), recursive=True)
    stub_dir = os.path.join(ROOT, "csrc", "common", "cuda_stub") + os.sep
    all_cpp = [p for p in all_cpp if not p.startswith(stub_dir)]
    cpu_sources = [p for p in all_cpp if not p.endswith("_cuda.cpp")]
    cuda_glue = [p for p in all_cpp if p.endswith("_cuda.cpp")]
    cuda_kernels = [
        p for p in glob.glob(os.path.join(ROOT, "csrc", "**", "*.cu"), recursive=True)
        if not p.startswith(stub_dir)
    ]

    with_cuda = (
        torch.version.cuda is not None
        and cpp_extension.CUDA_HOME is not None
        and not env_flag("LLMKERNELS_NO_CUDA")
    )
    if torch.version.cuda is not None and cpp_extension.CUDA_HOME is None:
        warn("torch has CUDA but no CUDA toolkit (CUDA_HOME) was found: building CPU kernels only.")

    # No -std: torch's BuildExtension adds the C++ standard its own headers need (c++17 for
    # torch 2.6, c++20 for current torch) to both the host compiler and nvcc, where a second
    # -std would override it or make nvcc refuse the command line.
    # -ffp-contract is left to the per-ISA kernel files (see csrc/common/isa_begin.h); no
    # -march=native: per-ISA variants are selected at run time instead.
    # -g0 by default: debug info for the torch headers doubles compile time and the .so size;
    # LLMKERNELS_DEBUG=1 keeps it.
    debug = env_flag("LLMKERNELS_DEBUG")
    cxx_flags = ["-O3", "-fopenmp", "-g" if debug else "-g0"]
    macros = [("LLMK_TORCH_VERSION", f'"{torch.__version__}"')]
    sources = cpu_sources
    archs = ""
    extra_compile_args = {"cxx": cxx_flags}
    if with_cuda:
        archs = os.environ.get("LLMKERNELS_CUDA_ARCHS", "80;90a").strip()
        arch_list = [a.strip() for a in re.split(r"[;,\s]+", archs) if a.strip()]
        # Precise sinf/cosf are required (sinusoidal encoding): never --use_fast_math.
        nvcc_flags = ["-O3", "-lineinfo"]
        for arch in arch_list:
            digits = arch.replace(".", "")
            nvcc_flags.append(f"-gencode=arch=compute_{digits},code=sm_{digits}")
        extra_compile_args["nvcc"] = nvcc_flags
        macros.append(("LLMK_WITH_CUDA", None))
        archs = ";".join(arch_list)
        sources = cpu_sources + cuda_glue + cuda_kernels
        clashes = object_name_clashes(relative(sources))
        if clashes:
            raise SystemExit(f"llmkernels: these sources would compile to one object file each: {clashes}; rename one")
        ext_cls = cpp_extension.CUDAExtension
    else:
        ext_cls = cpp_extension.CppExtension
    macros.append(("LLMK_CUDA_ARCHS", f'"{archs}"'))

    ext = ext_cls(
        name="llmkernels._C",
        sources=relative(sources),
        include_dirs=[os.path.join(ROOT, "csrc")],
        define_macros=macros,
        extra_compile_args=extra_compile_args,
        extra_link_args=["-fopenmp"],
        optional=True,
    )
    print(
        f"llmkernels: building _C ({'CUDA ' + archs if with_cuda else 'CPU only'}) from "
        f"{len(sources)} sources against torch {torch.__version__}",
        file=sys.stderr,
    )
    return [ext], {"build_ext": optional_build_ext(cpp_extension.BuildExtension)}


def optional_build_ext(base):
    """BuildExtension that honours Extension(optional=True) for every failure.

    setuptools only tolerates distutils' own compiler errors for optional extensions, while
    torch's ninja build raises RuntimeError; either way the package must still install.
    """

    class OptionalBuildExtension(base):
        def run(self):
            # Wraps the whole command: torch's compiler checks run before any extension builds.
            try:
                super().run()
            except Exception as exc:  # noqa: BLE001 -- any failure of an optional build
                if not all(getattr(ext, "optional", False) for ext in self.extensions):
                    raise
                warn(
                    f"building the C++/CUDA extension failed ({type(exc).__name__}: {exc}); "
                    "installing the pure-Python package, which runs on the reference backends."
                )

    return OptionalBuildExtension


ext_modules, cmdclass = extension_modules()

setup(
    version=read_version(),
    long_description=read_readme(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["llmkernels", "llmkernels.*"]),
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
