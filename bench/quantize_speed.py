"""Reduced weights (fastrnn.quantize) against float32: layer calls and cell
steps, one process per format, interleaved rounds (one run).

    python -m bench.quantize_speed [--rounds N] [--only NAME ...]

Each format's module runs in a worker process of its own (bench.workers: a
quantized and a float module called by turns in one process disturb each
other's caches and thread team), asked in turn, round after round; a ratio
is the median over rounds of the format's time over float32's in that
round. The configurations are bench.engines' (batch 1, where the weights'
bytes bound a step; batch >= 16, which must not get slower; one cell step).
FASTRNN_BENCH_SMOKE=1 runs them at a few steps.
"""
import argparse
import platform

import numpy as np

import fastrnn
from bench import engines
from bench.workers import Worker

CONFIGS = ("lstm-h64-b1", "lstm-h256-b1", "gru-h256-b1", "gru-h1024-b1", "lstm-h256-b64",
           "lstm-h512-b16", "lstm-h1024-b16", "lstmcell-h128-b1", "lstmcell-h512-b1")
FORMATS = ("float32",) + engines.WEIGHT_VARIANTS


def _cpu():
    from fastrnn import _cpu
    plan = _cpu.plan()
    l2 = plan.caches.l2
    return f"{platform.processor() or platform.machine()}, L2 {l2 >> 10 if l2 else '?'} KiB/core"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", nargs="*", default=None, help="configuration names")
    ap.add_argument("--min-time", type=float, default=0.05, help="seconds per sample")
    args = ap.parse_args(argv)
    names = [n for n in CONFIGS if args.only is None or n in args.only]
    from fastrnn._kernels import recurrent
    print(f"fastrnn {fastrnn.__version__}, kernels {fastrnn._kernels.variant}, panels "
          f"{recurrent.panel_kernel()}, {engines.THREADS} threads, {_cpu()}; median of "
          f"{args.rounds} interleaved rounds, one process per format; time / float32's")
    workers = {fmt: Worker("fastrnn") for fmt in FORMATS}
    try:
        for name in names:
            times = {fmt: [] for fmt in FORMATS}
            for fmt in FORMATS:           # into the steady state first
                workers[fmt].ask(name, None if fmt == "float32" else fmt, args.min_time,
                                 settle=0.2)
            for r in range(args.rounds):
                # each round starts with another format (a worker asked right after
                # another may find the cores still busy with its threads)
                for fmt in FORMATS[r % len(FORMATS):] + FORMATS[:r % len(FORMATS)]:
                    times[fmt].append(workers[fmt].ask(
                        name, None if fmt == "float32" else fmt, args.min_time, settle=0.05))
            base = np.array(times["float32"])      # (ratios within each round)
            print(f"{name:18s} float32 {np.median(base) * 1e3:8.3f} ms   " + "   ".join(
                f"{fmt} {np.median(np.array(times[fmt]) / base):.2f}"
                for fmt in FORMATS[1:]), flush=True)
    finally:
        for w in workers.values():
            w.close()


if __name__ == "__main__":
    main()
