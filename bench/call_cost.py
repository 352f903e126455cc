"""The fixed cost of a layer call: bound once per input signature against the general path.

    python -m bench.call_cost [--rounds N]

A layer's common call (float32 time-major input, state None or the layer's
own state arrays, no lengths, every layer on the unit split) runs through
UnitCalls bound once per (T, B, team size, kernel build)
(fastrnn._engine.bound_call); any other call takes the general path, which
checks and converts every argument and works out the call's plan each
time. This times both on the same layer and input, alternated in one
process (engines in other processes and the machine's phases move a call
by more than the difference), for the batch-1 unit-split rows of the
comparison table at a few lengths, and prints the medians and what the
binding saves per call.
"""
import argparse

import numpy as np

import fastrnn
from bench import engines
from bench.timing import median_seconds

CONFIGS = ("lstm-h64-b1", "gru-h256-b1", "lstm-h256-b1")
STEPS = (4, 16, 100)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    fastrnn.set_num_threads(engines.THREADS)
    print(f"fastrnn {fastrnn.__version__}, {engines.THREADS} threads, float32; per call, "
          f"medians of {args.rounds} alternated rounds in one process")
    cases = []
    for name in CONFIGS:
        cfg = next(c for c in engines.CONFIGS if c.name == name)
        layer = engines.make_layer(cfg)
        for steps in STEPS:
            x = np.random.default_rng(0).standard_normal((steps, cfg.B, cfg.I)).astype(
                np.float32)
            if fastrnn._engine.bound_call(layer, x) is None:
                continue        # (FASTRNN_PANEL=blas, or a call the unit split does not take)
            cases.append((name, steps, layer, x))
    times = {(name, steps, mode): [] for name, steps, _, _ in cases
             for mode in ("bound", "general")}
    for _ in range(args.rounds):
        for name, steps, layer, x in cases:
            reps = max(20, 4000 // steps)
            times[name, steps, "bound"].append(median_seconds(layer, x, reps=reps))
            times[name, steps, "general"].append(
                median_seconds(layer._call, x, None, None, False, reps=reps))
    for name, steps, _, _ in cases:
        bound, general = (float(np.median(times[name, steps, m])) for m in ("bound", "general"))
        print(f"{name:<14} T={steps:<4} bound {bound * 1e6:8.1f} us, general path "
              f"{general * 1e6:8.1f} us: {(general - bound) * 1e6:5.1f} us less a call "
              f"({bound / general:.2f})")


if __name__ == "__main__":
    main()
