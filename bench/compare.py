"""One run, one table: median time per engine and fastrnn / fastest other engine.

    python -m bench.compare [--rounds N] [--only NAME,...] [--markdown]

Every configuration runs its engines in interleaved rounds (fastrnn, numpy,
torch, onnxruntime, fastrnn, ...), so a change in the machine's load touches
all of them alike; the ratio is taken within the run. FASTRNN_BENCH_THREADS
sets the threads of every engine (default 2).
"""
import os
import time
import tracemalloc

import numpy as np

import fastrnn
from bench import engines
from fastrnn.cli import OneLineParser


def _median_times(fns, rounds, min_time=0.02, pause=0.2):
    """Interleaved rounds; each sample repeats a call enough to last ~min_time.

    A pause before each sample lets the previous engine's worker threads stop
    spin-waiting, so one engine's idle threads do not slow the next one down;
    one untimed call then wakes the engine's own threads.
    """
    reps = {}
    for name, fn in fns.items():
        fn()
        start = time.perf_counter()
        fn()
        once = max(time.perf_counter() - start, 1e-7)
        reps[name] = max(1, int(min_time / once))
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            n = reps[name]
            time.sleep(pause)
            fn()                      # wake this engine's threads before timing
            start = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - start) / n)
    return {name: float(np.median(s)) for name, s in samples.items()}


def _fmt(seconds):
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    return f"{seconds * 1e3:.2f} ms"


def memory_check():
    """Peak memory growth of one LSTM call (T=4000, B=32, H=256) beyond its output,
    counting the kernels' scratch memory as new (it is kept per thread)."""
    from fastrnn import _kernels
    layer = fastrnn.LSTM(256, 256, seed=0)
    x = np.random.default_rng(0).standard_normal((4000, 32, 256)).astype(np.float32)
    getattr(_kernels.recurrent._scratch_store, "bufs", {}).clear()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    y, _ = layer(x)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return (peak - y.nbytes) / 2**20


def main(argv=None):
    # FASTRNN_BENCH_PROG: the name to show in errors (`python -m fastrnn bench` runs this)
    parser = OneLineParser(prog=os.environ.get("FASTRNN_BENCH_PROG"),
                           description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", default="", help="comma-separated configuration names")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    only = set(filter(None, args.only.split(",")))
    unknown = only - {c.name for c in engines.CONFIGS} - {"memory"}
    if unknown:
        parser.error(f"--only: unknown configuration(s) {', '.join(sorted(unknown))}; "
                     f"choose from {', '.join(c.name for c in engines.CONFIGS)}, memory")
    cfg_list = [c for c in engines.CONFIGS if not only or c.name in only]
    print(f"fastrnn {fastrnn.__version__}, {engines.THREADS} threads, "
          f"{args.rounds} rounds, float32; ratio = fastrnn / fastest other engine")
    header = ["configuration", *engines.ENGINES, "ratio", "target", "met"]
    rows = []
    for cfg in cfg_list:
        fns = {}
        for name in engines.ENGINES:
            fn = engines.FACTORIES[name](cfg)
            if fn is not None:
                fns[name] = fn
        if cfg.task == "varlen":
            fns = {"fastrnn": fns["fastrnn"],
                   "fastrnn full": engines.fastrnn_engine(cfg, "full")}
            for name in ("torch", "onnxruntime"):
                full = engines.FACTORIES[name](cfg, "full")
                if full is not None:
                    fns[name] = engines.FACTORIES[name](cfg)
                    fns[name + " full"] = full
        times = _median_times(fns, args.rounds)
        if cfg.task == "varlen":
            _, lengths = engines.inputs(cfg)
            ratio = times["fastrnn"] / times["fastrnn full"]
            target = lengths.sum() / (cfg.B * cfg.steps) + 0.1
            cells = [_fmt(times["fastrnn"]) + " / " + _fmt(times["fastrnn full"]), "-"]
            cells += [_fmt(times.get(n)) + " / " + _fmt(times.get(n + " full"))
                      if n in times else "-" for n in ("torch", "onnxruntime")]
            rows.append([cfg.name + " (varlen/full)", *cells, f"{ratio:.2f}",
                         f"<= {target:.2f}", "yes" if ratio <= target else "NO"])
            continue
        others = [t for n, t in times.items() if n != "fastrnn"]
        ratio = times["fastrnn"] / min(others) if others else float("nan")
        rows.append([cfg.name, *[_fmt(times.get(n)) for n in engines.ENGINES],
                     f"{ratio:.2f}", f"<= {cfg.target}", "yes" if ratio <= cfg.target else "NO"])
    if not only or "memory" in only:
        growth = memory_check()
        rows.append(["memory T=4000 B=32 H=256 (MiB)", f"{growth:.1f}", "-", "-", "-",
                     "-", "<= 64", "yes" if growth <= 64 else "NO"])
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for r in rows:
            print("| " + " | ".join(map(str, r)) + " |")
    else:
        for r in [header] + rows:
            print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main()
