"""One run, one table: median time per engine and fastrnn / fastest other engine.

    python -m bench.compare [--rounds N] [--only NAME,...] [--markdown]

Then a second table: the reduced weights (fastrnn.quantize) of the batch-1
and batch >= 16 rows against fastrnn float32 and against the fastest anchor
at float32 and at PyTorch's quantized settings.

Every engine runs in a worker process of its own (bench.workers: their
thread pools would slow each other in one process), asked in interleaved
rounds (fastrnn, numpy, torch, onnxruntime, fastrnn, ...), so a change in the
machine's load touches all of them alike; the ratio is taken within the run. FASTRNN_BENCH_THREADS
sets the threads of every engine (default 2).
"""
import os
import time
import tracemalloc

import numpy as np

import fastrnn
from bench import engines, limits
from bench.workers import Worker
from fastrnn.cli import OneLineParser


def _median_times(workers, cfg, samples_of, rounds, min_time=0.02, pause=0.2):
    """{label: median seconds} over interleaved rounds, each (label, engine,
    variant) of samples_of asked of that engine's worker process in turn
    (None from a worker: the engine has no such operation; left out).

    A pause before each sample lets the previous engine's worker threads stop
    spin-waiting; each worker makes one untimed call to wake its own threads.
    """
    samples = {label: [] for label, _, _ in samples_of}
    for _ in range(rounds):
        for label, engine, variant in samples_of:
            if samples[label] is None:
                continue
            time.sleep(pause)
            seconds = workers[engine].ask(cfg.name, variant, min_time)
            if seconds is None:
                samples[label] = None
                continue
            samples[label].append(seconds)
    return {label: float(np.median(s)) for label, s in samples.items() if s}


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
    _kernels.recurrent.clear_scratch()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    y, _ = layer(x)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return (peak - y.nbytes) / 2**20


def _row(cfg, workers, rounds, floor_of, seconds=None):
    """The table's row of one configuration; floor_of: (seconds, what binds)
    of its floor (bench.limits.floors), or None; seconds: a dict that gets
    {cfg.name: fastrnn's median seconds}."""
    samples_of = [(name, name, None) for name in engines.ENGINES]
    if cfg.task == "varlen":
        samples_of = [("fastrnn", "fastrnn", None), ("fastrnn full", "fastrnn", "full")]
        for name in ("torch", "onnxruntime"):
            samples_of += [(name, name, None), (name + " full", name, "full")]
    times = _median_times(workers, cfg, samples_of, rounds)
    if seconds is not None and "fastrnn" in times:
        seconds[cfg.name] = times["fastrnn"]
    if cfg.task == "varlen":
        _, lengths = engines.inputs(cfg)
        ratio = times["fastrnn"] / times["fastrnn full"]
        target = lengths.sum() / (cfg.B * cfg.steps) + 0.1
        cells = [_fmt(times["fastrnn"]) + " / " + _fmt(times["fastrnn full"]), "-"]
        cells += [_fmt(times.get(n)) + " / " + _fmt(times.get(n + " full"))
                  if n in times and n + " full" in times else "-"
                  for n in ("torch", "onnxruntime")]
        return [cfg.name + " (varlen/full)", *cells, f"{ratio:.2f}", "-", f"<= {target:.2f}",
                "yes" if ratio <= target else "NO"]
    others = [t for n, t in times.items() if n != "fastrnn"]
    ratio = times["fastrnn"] / min(others) if others else float("nan")
    floor, binds = floor_of or (None, "")
    if floor is not None and others and cfg.target * min(others) < floor:
        # the target asks for more than the FMA peak (or the cache bandwidth)
        # allows: within 1.05 of the floor
        met = times["fastrnn"] <= 1.05 * floor
        target = f"<= 1.05 floor ({times['fastrnn'] / floor:.2f})"
    else:
        met, target = ratio <= cfg.target, f"<= {cfg.target}"
    return [cfg.name, *[_fmt(times.get(n)) for n in engines.ENGINES], f"{ratio:.2f}",
            _fmt(floor) + (" (bw)" if binds == "bandwidth" else ""), target,
            "yes" if met else "NO"]


def serial_lines(cfg_list, seconds, peak):
    """For the batch-1 inference rows: fastrnn's time against the serial
    bound of bench.limits (the input projection at the FMA peak, then the
    steps at the one-row rate: fastrnn runs them in that order, and one
    core cannot overlap them, bench.limits.serial_bound), beside the
    table's floor (their larger). Empty without a peak or such rows."""
    rows = [c for c in cfg_list if c.task == "infer" and c.B == 1 and c.name in seconds]
    if not peak or not rows:
        return []
    out = [f"batch-1 rows against the serial bound (projection at the peak + steps at the "
           f"one-row rate, {engines.THREADS} threads; python -m bench.limits):"]
    for cfg in rows:
        proj, steps = limits.serial_bound(cfg, peak, engines.THREADS)
        out.append(f"  {cfg.name:<16} {_fmt(seconds[cfg.name]):>10} = "
                   f"{seconds[cfg.name] / (proj + steps):.2f} x ({_fmt(proj)} + {_fmt(steps)})")
    return out


# the reduced-weight rows (fastrnn.quantize): batch 1, where the weights' bytes
# bound a step, and batch >= 16, which must not get slower
REDUCED_CONFIGS = ("lstm-h256-b1", "gru-h1024-b1", "lstm-h256-b64", "lstm-h1024-b16")
# the issue's targets, time / fastrnn float32's: batch 1 per format; batch >= 16
# "never slower", with 5% for the noise of rows that run the same float32 code
# (float32 packed once: never slower either)
REDUCED_NOISE = 1.05
REDUCED_TARGETS = {"f32 packed": REDUCED_NOISE, "float16": 0.6, "bfloat16": 0.6, "int8": 0.4}


def reduced_rows(names, rounds, min_time=0.05):
    """The reduced-weight table's rows: per configuration fastrnn float32's
    time, each format's time over it, and the fastest anchor at float32 and
    at PyTorch's quantized settings (each setting in a worker process of its
    own, interleaved rounds; bench.quantize_speed.measure)."""
    from bench import quantize_speed
    settings = quantize_speed.FASTRNN + quantize_speed.TORCH + [
        ("onnxruntime f32", "onnxruntime", None)]
    formats = [label for label, _, _ in quantize_speed.FASTRNN[1:]]
    rows = []
    for name, medians in quantize_speed.measure(names, settings, rounds, min_time):
        batch = engines.config(name).B
        anchors = {label: r for label, (_, r) in medians.items()
                   if label not in formats and label != "float32"}
        best = min(anchors, key=anchors.get) if anchors else None
        limit = {f: REDUCED_TARGETS[f] if batch == 1 else REDUCED_NOISE for f in formats}
        met = all(medians[f][1] <= limit[f] for f in formats if f in medians)
        rows.append([name, _fmt(medians["float32"][0]),
                     *[f"{medians[f][1]:.2f}" if f in medians else "-" for f in formats],
                     f"{best} {anchors[best]:.2f}" if best else "-",
                     f"{medians['int8'][1] / anchors[best]:.2f}" if best else "-",
                     " ".join(f"{f} <= {limit[f]}" for f in formats) if batch == 1
                     else f"each <= {REDUCED_NOISE}", "yes" if met else "NO"])
    return rows


def _print_table(header, rows, markdown):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for r in rows:
            print("| " + " | ".join(map(str, r)) + " |")
    else:
        for r in [header] + rows:
            print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


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
    header = ["configuration", *engines.ENGINES, "ratio", "floor", "target", "met"]
    # the floor of each row (bench.limits.floors): its FLOPs at this machine's
    # measured FMA peak on every thread, or its weights at the cores' measured
    # cache bandwidth; measured here, before any engine runs
    peak = limits.measured_peak()
    print(f"floor = the larger of FLOPs / ({engines.THREADS} x {peak / 1e9:.1f} GFLOPS, one "
          f"core's measured FMA peak, best of 7) and, marked (bw), the recurrent weights "
          f"read per call / ({engines.THREADS} x one core's best measured rate reading its "
          f"share in a one-row product)" if peak
          else "floor: no FMA peak (no panel variant on this CPU)")
    # the bandwidth floors' rates too, before any engine's threads exist
    floor_of = {cfg.name: limits.floors(cfg, peak, engines.THREADS)
                for cfg in cfg_list if peak and cfg.task != "varlen"}
    rows, seconds = [], {}
    # one worker process per engine, for the whole run (see bench.workers)
    workers = {name: Worker(name) for name in engines.ENGINES}
    try:
        for cfg in cfg_list:
            rows.append(_row(cfg, workers, args.rounds, floor_of.get(cfg.name), seconds))
    finally:
        for w in workers.values():
            w.close()
    if not only or "memory" in only:
        growth = memory_check()
        rows.append(["memory T=4000 B=32 H=256 (MiB)", f"{growth:.1f}", "-", "-", "-",
                     "-", "-", "<= 64", "yes" if growth <= 64 else "NO"])
    _print_table(header, rows, args.markdown)
    serial = serial_lines(cfg_list, seconds, peak)
    if serial:
        print("\n" + "\n".join(serial))
    reduced = [n for n in REDUCED_CONFIGS if not only or n in only]
    if reduced:
        print(f"\nreduced weights (fastrnn.quantize, inference): time / fastrnn float32's, "
              f"medians of {args.rounds} interleaved rounds, each setting in a process of "
              f"its own; anchors: PyTorch float32 and quantize_dynamic (qint8, float16), "
              f"ONNX Runtime float32")
        header = ["configuration", "fastrnn f32", "f32 packed", "float16", "bfloat16", "int8",
                  "fastest anchor", "int8 / anchor", "target", "met"]
        _print_table(header, reduced_rows(reduced, args.rounds), args.markdown)


if __name__ == "__main__":
    main()
