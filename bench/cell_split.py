"""A cell step streamed on one thread against split across the threads, by size.

    python -m bench.cell_split [--rounds N]

fastrnn splits a cell step's hidden units across its threads when the
cell's weights exceed fastrnn._engine._CELL_SPLIT_BYTES (the CPU plan's L3;
each thread then streams its share of the weights from its own cache), else
it runs the step on the calling thread. Which is faster depends on the caches and the cost of
waking the team, so this times both for LSTMCells from 288 KiB to 18 MiB of
weights, in interleaved rounds of one run, and prints split / streamed.
"""
import argparse

import numpy as np

import fastrnn
from bench.timing import median_seconds
from fastrnn import _cpu, _engine

SIZES = (96, 128, 160, 256, 384, 512, 768)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    fastrnn.set_num_threads(2)
    caches = _cpu.plan().caches
    print(f"fastrnn {fastrnn.__version__}, 2 threads, float32, B=1; {_cpu.plan().model}, "
          f"L2 {caches.l2} B per core; split / streamed per cell step")
    threshold = _engine._CELL_SPLIT_BYTES
    times = {(H, mode): [] for H in SIZES for mode in ("stream", "split")}
    try:
        for _ in range(args.rounds):
            for H in SIZES:
                cell = fastrnn.LSTMCell(H, H, seed=0)
                x = np.zeros((1, H), np.float32)
                state = (np.zeros((1, H), np.float32), np.zeros((1, H), np.float32))
                for mode in ("stream", "split"):
                    _engine._CELL_SPLIT_BYTES = 1 << 62 if mode == "stream" else 0
                    times[H, mode].append(median_seconds(cell, x, state, reps=200))
    finally:
        _engine._CELL_SPLIT_BYTES = threshold
    for H in SIZES:
        stream, split = (float(np.median(times[H, m])) for m in ("stream", "split"))
        print(f"H={H:<4} weights {8 * H * H * 4 >> 10:>6} KiB: streamed {stream * 1e6:7.1f} us,"
              f" split {split * 1e6:7.1f} us, ratio {split / stream:.2f}")


if __name__ == "__main__":
    main()
