"""How a one-direction layer call splits its work, timed both ways by size.

    python -m bench.thread_split [--rounds N]

fastrnn._engine decides from the CPU plan's caches (fastrnn._cpu):
1. few rows (B < 4 per thread): the hidden units split across the threads
   (one barrier per step), unless one direction's W_hh fits in half a
   core's L1d (_UNIT_MIN_BYTES): then one thread per block of rows. Printed:
   one thread / unit-split time at B=1, and which of the two the rule picks
   (a rule that ran W_hh within two L1d on one thread was tried and not
   kept: 0.71-1.29 over five runs at H=64, and 1.20 against 0.88 in the
   table).
2. up to 8 rows per thread: the batch splits (every thread streams all of
   W_hh each step), except when W_hh exceeds _UNIT_SPLIT_BYTES (the L2): then
   the units split. Printed: unit-split / batch-split time at B=16.
Each pair is timed in interleaved rounds of one run (T=100, 2 threads,
float32); ratios below 1 favour the first of the pair.
"""
import statistics
import time

import numpy as np

import fastrnn
from bench.engines import GATES, SMOKE
from fastrnn import _cpu, _engine

SERIAL_CASES = [("lstm", 32), ("gru", 36), ("rnn", 64), ("rnn", 88), ("lstm", 64),
                ("lstm", 96), ("lstm", 128), ("gru", 128)]
BATCH_CASES = [("lstm", 128), ("lstm", 256), ("gru", 256), ("lstm", 512), ("lstm", 1024)]
if SMOKE:
    SERIAL_CASES, BATCH_CASES = SERIAL_CASES[:1], BATCH_CASES[:1]


def _time(layer, x, reps):
    layer(x)                       # the team awake and the weights in cache, as in a loop
    start = time.perf_counter()
    for _ in range(reps):
        layer(x)
    return (time.perf_counter() - start) / reps


def _compare(kind, H, B, modes, rounds, steps):
    """{mode: median seconds}, median ratio first / second; modes: {name: setup()}."""
    cls = {"lstm": fastrnn.LSTM, "gru": fastrnn.GRU, "rnn": fastrnn.RNN}[kind]
    layer = cls(H, H, seed=0)
    x = np.random.default_rng(0).standard_normal((steps, B, H)).astype(np.float32)
    times = {m: [] for m in modes}
    for _ in range(rounds):
        for mode, setup in modes.items():
            setup()
            once = _time(layer, x, 1)
            times[mode].append(_time(layer, x, 1 if SMOKE else max(3, int(0.05 / once))))
    first, second = modes
    ratio = statistics.median(a / b for a, b in zip(times[first], times[second]))
    return {m: statistics.median(t) for m, t in times.items()}, ratio


def main(argv=None):
    from fastrnn.cli import OneLineParser
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    steps = 4 if SMOKE else 100
    fastrnn.set_num_threads(2)
    c = _cpu.plan().caches
    print(f"fastrnn {fastrnn.__version__}, 2 threads, float32, T={steps}; {_cpu.plan().model}; "
          f"L1d {c.l1d} B, L2 {c.l2} B per core")
    saved = (_engine._UNIT_SPLIT_BYTES, _engine._split_units, _engine._UNIT_MIN_BYTES)
    _, split_units, min_bytes = saved
    try:
        def serial():
            fastrnn.set_num_threads(1)

        def units():
            fastrnn.set_num_threads(2)
            _engine._UNIT_MIN_BYTES = 0          # whatever the size

        for kind, H in SERIAL_CASES:
            t, ratio = _compare(kind, H, 1, {"serial": serial, "unit split": units},
                                args.rounds, steps)
            _engine._UNIT_MIN_BYTES = min_bytes
            w_hh = 4 * H * H * GATES[kind]
            rule = "unit split" if split_units(1, 1, 2, w_hh) else "one thread"
            print(f"B=1  {kind} H={H:<5} W_hh {w_hh >> 10:>6} "
                  f"KiB: one thread {t['serial'] * 1e3:8.3f} ms, unit split "
                  f"{t['unit split'] * 1e3:8.3f} ms, one thread / unit split {ratio:.2f} "
                  f"(the rule: {rule})")
        fastrnn.set_num_threads(2)

        def by_units():
            _engine._split_units = lambda batch, d, threads, *rest: threads > 1 and d == 1

        def by_batch():
            _engine._split_units = lambda *a: False

        for kind, H in BATCH_CASES:
            t, ratio = _compare(kind, H, 16, {"unit split": by_units, "batch split": by_batch},
                                args.rounds, steps)
            _engine._split_units = split_units
            print(f"B=16 {kind} H={H:<5} W_hh {4 * H * H * GATES[kind] >> 10:>6} "
                  f"KiB: unit split {t['unit split'] * 1e3:8.3f} ms, batch split "
                  f"{t['batch split'] * 1e3:8.3f} ms, unit / batch split {ratio:.2f}")
    finally:
        _engine._UNIT_SPLIT_BYTES, _engine._split_units, _engine._UNIT_MIN_BYTES = saved
        fastrnn.set_num_threads(None)


if __name__ == "__main__":
    main()
