"""A cell step on the calling thread against split across the threads, by size.

    python -m bench.cell_split [--rounds N]

A step of one float32 row splits its hidden units across fastrnn's threads
from SPLIT_STEP_BYTES of weights to half the L3 (CellKernel in
fastrnn/_kernels/_stream.pxi: one parallel region, each thread its units'
row dot products); other steps run on the calling thread (BLAS's gemv,
which takes threads of its own above its size threshold). Above
fastrnn._engine._CELL_SPLIT_BYTES (the CPU plan's L3) a step runs as a
one-step layer call instead (the unit split's team and plan). Which is
faster depends on the caches, on BLAS and on the cost of waking the team,
so this times the three, each forced at every size, for LSTMCells from 32
KiB to 18 MiB of weights, in interleaved rounds of one run, and prints each
over the time on the calling thread.
"""
import argparse

import numpy as np

import fastrnn
from bench.timing import median_seconds
from fastrnn import _cpu, _engine

SIZES = (32, 64, 96, 128, 160, 256, 384, 512, 768)
MODES = ("stream", "split", "layer")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    fastrnn.set_num_threads(2)
    caches = _cpu.plan().caches
    print(f"fastrnn {fastrnn.__version__}, 2 threads, float32, B=1; {_cpu.plan().model}, "
          f"L2 {caches.l2} B per core; per LSTMCell step, and over the time on the "
          f"calling thread")
    kernels = _engine._k
    split_bytes, layer_bytes = kernels.set_split_step_bytes(0), _engine._CELL_SPLIT_BYTES
    split_most = kernels.set_split_step_most(1 << 62)     # the split at every size
    times = {(H, mode): [] for H in SIZES for mode in MODES}
    try:
        for _ in range(args.rounds):
            for H in SIZES:
                cell = fastrnn.LSTMCell(H, H, seed=0)
                x = np.zeros((1, H), np.float32)
                state = (np.zeros((1, H), np.float32), np.zeros((1, H), np.float32))
                for mode in MODES:
                    kernels.set_split_step_bytes(0 if mode == "split" else 1 << 62)
                    _engine._CELL_SPLIT_BYTES = 0 if mode == "layer" else 1 << 62
                    times[H, mode].append(median_seconds(cell, x, state, reps=200))
    finally:
        kernels.set_split_step_bytes(split_bytes)
        kernels.set_split_step_most(split_most)
        _engine._CELL_SPLIT_BYTES = layer_bytes
    for H in SIZES:
        stream, split, layer = (float(np.median(times[H, m])) for m in MODES)
        print(f"H={H:<4} weights {8 * H * H * 4 >> 10:>6} KiB: calling thread {stream * 1e6:7.1f} us,"
              f" split {split * 1e6:7.1f} us ({split / stream:.2f}),"
              f" as a layer {layer * 1e6:7.1f} us ({layer / stream:.2f})")


if __name__ == "__main__":
    main()
