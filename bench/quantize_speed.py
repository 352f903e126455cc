"""16-bit weights against float32 in a cell's one-row step (fastrnn, one run).

    python -m bench.quantize_speed

A quantized LSTMCell (fastrnn.quantize, float16 and bfloat16) reads its
16-bit weights in its batch-1 steps (fastrnn_rows_dot16); each ratio is the
median over interleaved rounds of its step time over the float32 cell's.
SIZES and the loop counts shrink under FASTRNN_BENCH_SMOKE=1.
"""
import os

import numpy as np

import fastrnn
from bench.timing import median_seconds

SMALL = bool(os.environ.get("FASTRNN_BENCH_SMOKE"))
SIZES = (8,) if SMALL else (128, 256, 512)


def _steps(cell, x, h, n):
    for _ in range(n):
        cell(x, h)


def main(rounds=5):
    print(f"fastrnn {fastrnn.__version__}, {fastrnn.get_num_threads()} threads, LSTMCell B=1, "
          f"median of {rounds} interleaved rounds; time / float32's")
    n = 10 if SMALL else 300
    for H in SIZES:
        cell = fastrnn.LSTMCell(H, H, seed=1)
        cells = {"float32": cell, "float16": fastrnn.quantize(cell, "float16"),
                 "bfloat16": fastrnn.quantize(cell, "bfloat16")}
        x = np.random.default_rng(0).standard_normal((1, H)).astype(np.float32)
        h = (np.zeros((1, H), np.float32), np.zeros((1, H), np.float32))
        ratios = {k: [] for k in cells if k != "float32"}
        for _ in range(rounds):
            t = {k: median_seconds(_steps, c, x, h, n, reps=5) / n for k, c in cells.items()}
            for k in ratios:
                ratios[k].append(t[k] / t["float32"])
        print(f"H={H} ({16 * H * H >> 10} KiB of float32 weights): float32 "
              f"{t['float32'] * 1e6:.1f} us/step; "
              + ", ".join(f"{k} {float(np.median(v)):.2f}" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
