"""The benchmark harness: every op against its peers, measured one way.

- ``stats``: interleaved rounds, median with p20/p80, per-round ratios
- ``case`` and ``cases_*``: what each op is compared on (``registry`` lists them all)
- ``ceilings``: the day's copy bandwidth and GEMM rates, for each case's roofline floor
- ``measure``: one case measured (correctness first, then time, floor fraction, memory)
- ``memory``: peak memory of one contender's step in a fresh process
- ``results``: the CSV rows every run appends to benchmarks/results/<device>.csv
- ``plots`` and ``markdown``: figures and BENCHMARKS.md tables drawn from the whole CSV
- ``runner``: ``llmkernels bench`` (a table with a progress bar)

``pytest benchmarks`` runs the same cases through ``measure`` (see benchmarks/conftest.py).
"""
