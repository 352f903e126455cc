"""The fixed cost of a layer call: bound once per input signature against the general path.

    python -m bench.call_cost [--rounds N]

A layer's common call (float32 C-contiguous input, time-major or
batch-major for a batch_first layer; state None or the layer's own state
arrays; no lengths; products on panels) runs through UnitCalls (the unit
split) or TaskCalls (the batch split's tasks: larger batches, two
directions) bound once per input signature, thread count and kernel build
(fastrnn._engine.bound_call); a one-step call (T = 1, a streaming loop)
runs its layers' steps in one kernel call worked out once likewise
(fastrnn._engine.bound_step); any other call takes the general path, which
checks and converts every argument and works out the call's plan each
time. This times both on the same layer and input, alternated in one
process (engines in other processes and the machine's phases move a call
by more than the difference), for the batch-1 rows of the comparison
table (bigru-h128-b1's on the batch split) at a few lengths (T = 1 with
the state of the last call, as a streaming loop passes it), and prints the
medians and what the binding saves per call.

Then, for lstm-h64-b1, the bound call with its output y, and apart with the
kernels' scratch (the unit split's shared h_t among it), placed 0, 16, 32
or 48 bytes past a cache line (fastrnn starts both at a line: each thread
writes its units' columns of them at every step), alternated likewise.
"""
import argparse

import numpy as np

import fastrnn
from bench import engines
from bench.timing import median_seconds

CONFIGS = ("lstm-h64-b1", "gru-h256-b1", "lstm-h256-b1", "bigru-h128-b1")
STEPS = (1, 4, 16, 100)
OFFSETS = (0, 16, 32, 48)        # bytes past a cache line


def _at(offset, n, dtype):
    """n elements of dtype ``offset`` bytes past a cache line."""
    size = np.dtype(dtype).itemsize
    raw = np.empty(n + 128 // size, dtype)
    skip = ((-raw.ctypes.data) % 64 + offset) // size
    return raw[skip:skip + n]


def alignment(name, rounds, reps=200):
    """{("y" or "scratch", offset): median seconds of a bound call} of
    configuration ``name`` (its output y, or every scratch array of the
    kernels, placed ``offset`` bytes past a line), or None when not bound."""
    cfg = engines.config(name)
    layer = engines.make_layer(cfg)
    x, _ = engines.inputs(cfg)
    if fastrnn._engine.bound_call(layer, x) is None:
        return None
    bound = layer._bound[1]
    calls, zeros, units = next(e for e in bound.values() if e)
    if not units:
        return None           # (y's columns per thread: the unit split's question)
    steps, batch, H = x.shape[0], x.shape[1], layer.hidden_size
    h_n, c_n = np.empty((batch, H), np.float32), np.empty((batch, H), np.float32)
    k = fastrnn._engine._k
    aligned = k.scratch_arrays()
    ys = {off: _at(off, steps * batch * H, np.float32).reshape(steps, batch, H)
          for off in OFFSETS}
    scratch = {off: {key: _at(off, buf.shape[0], buf.dtype) for key, buf in aligned.items()}
               for off in OFFSETS}
    times = {(what, off): [] for what in ("y", "scratch") for off in OFFSETS}
    try:
        for _ in range(rounds):
            for off in OFFSETS:
                k.set_scratch_arrays(aligned)
                times["y", off].append(median_seconds(
                    calls[0].run, x, zeros, zeros, ys[off], h_n, c_n, reps=reps))
                k.set_scratch_arrays(scratch[off])
                times["scratch", off].append(median_seconds(
                    calls[0].run, x, zeros, zeros, ys[0], h_n, c_n, reps=reps))
    finally:
        k.set_scratch_arrays(aligned)
    return {key: float(np.median(v)) for key, v in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    fastrnn.set_num_threads(engines.THREADS)
    print(f"fastrnn {fastrnn.__version__}, {engines.THREADS} threads, float32; per call, "
          f"medians of {args.rounds} alternated rounds in one process")
    cases = []
    for name in CONFIGS:
        cfg = engines.config(name)
        layer = engines.make_layer(cfg)
        for steps in STEPS:
            x = np.random.default_rng(0).standard_normal((steps, cfg.B, cfg.I)).astype(
                np.float32)
            # (a one-step call: with the state of the last, as a streaming loop)
            hx = layer(x)[1] if steps == 1 else None
            if fastrnn._engine.bound_call(layer, x, hx) is None:
                continue        # (FASTRNN_PANEL=blas, or a one-step call of two directions)
            cases.append((name, steps, layer, x, hx))
    times = {(name, steps, mode): [] for name, steps, *_ in cases
             for mode in ("bound", "general")}
    for _ in range(args.rounds):
        for name, steps, layer, x, hx in cases:
            reps = max(20, 4000 // steps)
            times[name, steps, "bound"].append(median_seconds(layer, x, hx, reps=reps))
            times[name, steps, "general"].append(
                median_seconds(layer._call, x, hx, None, False, reps=reps))
    for name, steps, *_ in cases:
        bound, general = (float(np.median(times[name, steps, m])) for m in ("bound", "general"))
        print(f"{name:<14} T={steps:<4} bound {bound * 1e6:8.1f} us, general path "
              f"{general * 1e6:8.1f} us: {(general - bound) * 1e6:5.1f} us less a call "
              f"({bound / general:.2f})")
    times = alignment(CONFIGS[0], args.rounds)
    if times is not None:
        for what, label in (("y", "its output y"), ("scratch", "the kernels' scratch")):
            base = times[what, 0]
            print(f"{CONFIGS[0]} bound call, {label} at a line: {base * 1e6:.1f} us; "
                  + ", ".join(f"{off} bytes past: {times[what, off] / base:.2f}"
                              for off in OFFSETS[1:]))


if __name__ == "__main__":
    main()
