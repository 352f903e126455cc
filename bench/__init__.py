"""fastrnn's benchmarks, run from the repository root with fastrnn installed:

    python -m bench.compare [--rounds N] [--only NAME,...] [--markdown]   # the comparison table
    python -m bench.limits                                               # the physical limits
    python -m bench.tokens | bench.generation | bench.denormals          # single questions
    pytest bench --benchmark-group-by=group                              # pytest-benchmark

``engines`` holds the configurations and one factory per engine; ``timing``
the median timer the scripts share.
"""
