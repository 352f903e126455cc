"""Where the unit split's steps spend their time, thread by thread.

    FASTRNN_TRACE=1 python setup.py build_ext --inplace --force   # a copy of the tree
    python -m bench.step_trace [--calls N] [NAME ...]

Needs kernels built with FASTRNN_TRACE=1 (fastrnn/_trace.h: every step of the
unit split's forward time-stamps its start, its products, its gate pass, its
arrival at the end-of-step meeting and its departure; the default build
compiles the marks out). Runs the comparison table's configurations (default:
those that take the unit split, one direction and a few rows; of a training
row, its training forward) for --calls calls after a warm-up, then prints for each traced thread
the median per step of its product (the recurrent product of its units,
reading its share of W_hh), gate pass, copies (h_t to the shared exchange
and the output) and wait at the meeting (its partner's lateness plus the
exchange), and how a call's time divides (thread 0): the steps, the input
projections of the chunks of steps between them, and before and after
them the first chunk's projection, the per-call packing of the weights,
the threads' start and Python. Each step's product and wait, set
against bench.limits' one-row rates and barrier time, say which bound a row
is near.
"""
import time

import numpy as np

import fastrnn
from bench import engines
from bench.engines import SMOKE

POINTS = ("start", "product", "gate pass", "arrival", "departure")


def _ticks_per_us(k):
    """The trace clock's rate, over a sleep of 50 ms."""
    t0, n0 = k.trace_ticks(), time.perf_counter_ns()
    time.sleep(0.05)
    t1, n1 = k.trace_ticks(), time.perf_counter_ns()
    return (t1 - t0) / (n1 - n0) * 1e3


def trace_config(cfg, calls):
    """(call seconds (calls,), [per thread (its calls, T, 5) stamps in us])
    of cfg's layer, or None when its calls took no unit-split steps."""
    k = fastrnn._kernels.recurrent
    fastrnn.set_num_threads(engines.THREADS)
    layer = engines.make_layer(cfg)
    x, _ = engines.inputs(cfg)
    # a training row: its training forward (which keeps what backward reads)
    call = layer.forward if cfg.task == "train" else layer
    for _ in range(3):
        call(x)                      # warm: the team awake, the weights in cache
    k.step_trace()
    secs = []
    for _ in range(calls):
        start = time.perf_counter()
        call(x)
        secs.append(time.perf_counter() - start)
    stamps = k.step_trace()
    rate = _ticks_per_us(k)
    steps = cfg.steps
    out = []
    for a in stamps:
        # T rows per call a thread took part in (a call the team policy ran
        # on the calling thread alone, fastrnn/_team.h, has thread 0's only)
        if len(a) == 0 or len(a) % steps:
            continue
        out.append((a.reshape(-1, steps, len(POINTS)) - a[0, 0]) / rate)
    return (np.array(secs), out) if out else None


def report(cfg, secs, threads):
    what = "training forwards" if cfg.task == "train" else "calls"
    lines = [f"{cfg.name} ({cfg.kind.upper()} I={cfg.I} H={cfg.H} B={cfg.B} T={cfg.steps}), "
             f"{len(secs)} {what}: per step, medians (us)",
             f"{'thread':>8}{'product':>10}{'gate pass':>11}{'copies':>9}{'wait':>8}"
             f"{'step':>8}{'calls':>7}"]
    for tid, s in enumerate(threads):
        d = np.diff(s, axis=2)                        # (calls, T, 4) intervals
        product, gate, copies, wait = (np.median(d[:, :, i]) for i in range(4))
        step = np.median(s[:, :, 4] - s[:, :, 0])
        lines.append(f"{tid:>8}{product:>10.3f}{gate:>11.3f}{copies:>9.3f}{wait:>8.3f}"
                     f"{step:>8.3f}{len(s):>7}")
    s = threads[0]
    in_steps = np.median((s[:, :, 4] - s[:, :, 0]).sum(axis=1))
    span = np.median(s[:, -1, 4] - s[:, 0, 0])
    call = np.median(secs) * 1e6
    lines.append(f"a {call:.1f} us call: steps {in_steps:.1f} us ({in_steps / call:.0%}), "
                 f"between them {span - in_steps:.1f} us (the input projections of the later "
                 f"chunks of steps, where there are several), before and after them "
                 f"{call - span:.1f} us (the first chunk's projection, the weight packing, the "
                 f"team's start, Python)")
    return "\n".join(lines)


def takes_unit_split(cfg):
    """Whether fastrnn's engine splits cfg's hidden units across the threads."""
    from fastrnn import _engine
    w_hh_bytes = engines.GATES[cfg.kind] * cfg.H * cfg.H * np.dtype(np.float32).itemsize
    return (cfg.task in ("infer", "train") and not cfg.bidirectional
            and _engine._split_units(cfg.B, 1, engines.THREADS, w_hh_bytes))


def main(argv=None):
    from fastrnn.cli import OneLineParser
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*",
                        help="configurations, or shapes spelled like their names "
                             "(bench.engines.config; default: the unit-split ones)")
    parser.add_argument("--calls", type=int, default=3 if SMOKE else 30)
    args = parser.parse_args(argv)
    k = fastrnn._kernels.recurrent
    if k.step_trace() is None:
        parser.exit(2, "bench.step_trace: these kernels keep no trace; build a copy of the "
                       "tree with FASTRNN_TRACE=1 python setup.py build_ext --inplace --force "
                       "and run this from it\n")
    by_name = {n: engines.config(n) for n in args.names}
    unknown = [n for n, c in by_name.items() if c is None]
    if unknown:
        parser.error(f"no such configuration: {', '.join(unknown)}")
    by_name.update((c.name, c) for c in engines.CONFIGS if c.name not in by_name)
    names = args.names or [c.name for c in engines.CONFIGS if takes_unit_split(c)]
    print(f"fastrnn {fastrnn.__version__}, {engines.THREADS} threads, kernels "
          f"{fastrnn._kernels.variant}, panel product {k.panel_kernel()}")
    for name in names:
        got = trace_config(by_name[name], args.calls)
        if got is None:
            print(f"{name}: no unit-split steps (the batch split or one thread ran it)")
        else:
            print(report(by_name[name], *got))


if __name__ == "__main__":
    main()
