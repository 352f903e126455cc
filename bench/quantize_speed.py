"""Reduced weights (fastrnn.quantize) against float32, and PyTorch's
quantized settings beside them: layer calls and cell steps, one process per
engine and setting, interleaved rounds (one run).

    python -m bench.quantize_speed [--rounds N] [--only NAME ...] [--no-torch]

Each setting runs in a worker process of its own (bench.workers: a quantized
and a float module called by turns in one process disturb each other's
caches and thread team), asked in turn, round after round, each round
starting with another setting; a ratio is the median over rounds of the
setting's time over fastrnn float32's in that round. The settings: fastrnn
float32, float16, bfloat16, int8; PyTorch float32 and its dynamic
quantization (torch.ao.quantization.quantize_dynamic) with qint8 and float16
weights (layers only; where torch is installed). The configurations are
bench.engines' (batch 1, where the weights' bytes bound a step; batch >= 16,
which must not get slower; one cell step). FASTRNN_BENCH_SMOKE=1 runs them
at a few steps.
"""
import argparse
import importlib.util
import time

import numpy as np

import fastrnn
from bench import engines
from bench.workers import Worker

CONFIGS = ("lstm-h64-b1", "lstm-h256-b1", "gru-h256-b1", "gru-h1024-b1", "lstm-h256-b64",
           "lstm-h512-b16", "lstm-h1024-b16", "lstmcell-h128-b1", "lstmcell-h512-b1")
# seconds idle before each sample (as bench.compare's pause)
PAUSE = 0.2
# (label, engine, variant): fastrnn float32 first (the ratios' base)
# (quantize(..., "float32") is labelled "f32 packed": the float32 module's
# weights, packed once instead of at every call)
FASTRNN = [("float32", "fastrnn", None)] + [
    ("f32 packed" if f == "float32" else f, "fastrnn", f) for f in engines.WEIGHT_VARIANTS]
TORCH = [("torch f32", "torch", None)] + [(f"torch {v}", "torch", v)
                                          for v in engines.TORCH_QUANTIZED]


def _cpu():
    from fastrnn import _cpu
    plan = _cpu.plan()
    l2 = plan.caches.l2
    return f"{plan.model}, L2 {l2 >> 10 if l2 else '?'} KiB/core"


def _has_torch():
    return importlib.util.find_spec("torch") is not None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", nargs="*", default=None,
                    help="configuration names (default: CONFIGS; any inference or cell "
                         "configuration of bench.engines)")
    ap.add_argument("--min-time", type=float, default=0.05, help="seconds per sample")
    ap.add_argument("--no-torch", action="store_true", help="fastrnn's settings only")
    args = ap.parse_args(argv)
    known = [c.name for c in engines.CONFIGS if c.task in ("infer", "cell")]
    names = list(CONFIGS) if args.only is None else args.only
    unknown = [n for n in names if n not in known]
    if unknown:
        ap.error(f"--only: no inference or cell configuration {unknown}; choose from "
                 f"{', '.join(known)}")
    settings = FASTRNN + ([] if args.no_torch or not _has_torch() else TORCH)
    from fastrnn._kernels import recurrent
    print(f"fastrnn {fastrnn.__version__}, kernels {fastrnn._kernels.variant}, panels "
          f"{recurrent.panel_kernel()}, {engines.THREADS} threads, {_cpu()}; median of "
          f"{args.rounds} interleaved rounds, one process per setting; time / fastrnn "
          f"float32's")
    for name, medians in measure(names, settings, args.rounds, args.min_time):
        cells = [f"{label} {ratio:.2f}" for label, (_, ratio) in medians.items()
                 if label != "float32"]
        print(f"{name:18s} float32 {medians['float32'][0] * 1e3:8.3f} ms   "
              + "   ".join(cells), flush=True)


def measure(names, settings, rounds, min_time):
    """For each configuration of ``names``, (name, {label: (median seconds,
    median over rounds of its time / the first setting's in that round)})
    over ``settings`` ((label, engine, variant), each in a worker process of
    its own), settings without such an operation left out. Each round
    starts with another setting (a worker asked right after another may find
    the cores still busy with its threads)."""
    workers = {label: Worker(engine) for label, engine, _ in settings}
    try:
        for name in names:
            times = {label: [] for label, _, _ in settings}

            def ask(label, engine, variant, settle):
                # a pause first: the previous worker's threads (ONNX Runtime's, PyTorch's
                # spin for tens of ms after a call) leave the cores, else this one's
                # team finds its partner late and fastrnn's team policy runs it alone
                time.sleep(PAUSE)
                return workers[label].ask(name, variant, min_time, settle=settle)
            for setting in settings:          # into the steady state first
                ask(*setting, 0.2)
            for r in range(rounds):
                for setting in settings[r % len(settings):] + settings[:r % len(settings)]:
                    times[setting[0]].append(ask(*setting, 0.05))
            base = np.array(times[settings[0][0]])      # (ratios within each round)
            yield name, {label: (float(np.median(t)), float(np.median(np.array(t) / base)))
                         for label, t in times.items() if None not in t}
    finally:
        for w in workers.values():
            w.close()


if __name__ == "__main__":
    main()
