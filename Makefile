# The two commands a newcomer types: `make test` and `make demo`. Each sets itself up.
VENV ?= .venv
PY := $(VENV)/bin/python
SOURCES := $(shell find csrc -name '*.cpp' -o -name '*.h' -o -name '*.cu') setup.py pyproject.toml

.PHONY: test demo bench fuzz cuda-check setup clean

setup: $(VENV)/.installed

$(VENV)/.installed: $(SOURCES) tools/setup_env.sh
	VENV=$(VENV) bash tools/setup_env.sh
	touch $@

test: setup cuda-check
	LLMKERNELS_REQUIRE_EXTENSION=1 $(PY) -m pytest tests -q --durations=15 --timeout=900

# The property tests (tests/property) with hypothesis's long profile: 400 examples a test (set
# LLMKERNELS_HYPOTHESIS_EXAMPLES for more or fewer); `make test` runs the short CI profile.
fuzz: setup
	LLMKERNELS_HYPOTHESIS_PROFILE=long LLMKERNELS_REQUIRE_EXTENSION=1 $(PY) -m pytest tests/property -q

demo: setup
	$(PY) -m llmkernels demo  # GPT teacher, distilled student, MLM encoder, classifier: their reports (~10 min)

bench: setup
	$(PY) -m pytest benchmarks -q

# CUDA and Triton kernels compiled for sm_80/sm_90 without a GPU; each part says "skipped" where
# its tools (nvcc, triton) are absent. Writes benchmarks/results/gpu_resources.md.
cuda-check:
	PYTHON=$(PY) bash tools/cuda_check.sh

clean:
	rm -rf build *.egg-info llmkernels/_C*.so
