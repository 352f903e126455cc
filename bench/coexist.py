"""fastrnn beside other thread pools: in one process, and beside a busy core.

    python -m bench.coexist [--rounds N] [--config NAME]

1. One process that calls fastrnn and another engine (ONNX Runtime, PyTorch)
   by turns, as an application serving both would: fastrnn's time per call
   alternated with the other engine's over its time called alone, in
   interleaved rounds of one run. The other engine's pool threads spin on
   the cores after each of its calls, where fastrnn's threads meet once per
   step.
2. An external process keeping one core busy (a Python loop): each engine's
   time with it over its time without, each engine in a process of its own.
   fastrnn should degrade no more than ONNX Runtime does.
Also prints fastrnn's time for a call after 50 ms idle over its time in a
loop (the team's threads asleep: on a VM waking a vCPU can take a
millisecond).
"""
import multiprocessing
import statistics
import sys
import time

from bench import engines

DEFAULT = "lstm-h256-b1"


def _sample(fn, reps):
    fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def _reps(fn, budget=0.05):
    fn()
    start = time.perf_counter()
    fn()
    return max(1, int(budget / max(time.perf_counter() - start, 1e-7)))


def in_one_process(cfg, rounds):
    """{other engine: fastrnn alternated / fastrnn alone} (median of rounds)."""
    mine = engines.fastrnn_engine(cfg)
    others = {name: engines.FACTORIES[name](cfg) for name in ("onnxruntime", "torch")}
    others = {n: f for n, f in others.items() if f is not None}
    reps = _reps(mine)
    out = {}
    for name, other in others.items():
        ratios = []
        for _ in range(rounds):
            alone = _sample(mine, reps)
            mine_total = 0.0
            for _ in range(reps):
                other()
                t0 = time.perf_counter()
                mine()
                mine_total += time.perf_counter() - t0
            ratios.append(mine_total / reps / alone)
        out[name] = statistics.median(ratios)
    return out


def _busy(stop):
    while not stop.is_set():
        pass


def _engine_worker(engine, name, rounds, queue):
    cfg = next(c for c in engines.CONFIGS if c.name == name)
    fn = engines.FACTORIES[engine](cfg)
    reps = _reps(fn)
    queue.put([_sample(fn, reps) for _ in range(rounds)])


def beside_a_busy_core(cfg, rounds):
    """{engine: time with one core kept busy / time without} (each engine in a
    process of its own; medians of rounds)."""
    ctx = multiprocessing.get_context("spawn")
    out = {}
    for engine in ("fastrnn", "onnxruntime", "torch"):
        if engines.FACTORIES[engine](cfg) is None:
            continue
        times = {}
        for busy in (False, True):
            stop = ctx.Event()
            spinner = ctx.Process(target=_busy, args=(stop,)) if busy else None
            if spinner:
                spinner.start()
                time.sleep(0.2)
            queue = ctx.Queue()
            worker = ctx.Process(target=_engine_worker, args=(engine, cfg.name, rounds, queue))
            worker.start()
            times[busy] = statistics.median(queue.get(timeout=600))
            worker.join()
            if spinner:
                stop.set()
                spinner.join()
        out[engine] = times[True] / times[False]
    return out


def after_idle(cfg, rounds):
    """fastrnn's time for one call after 50 ms idle / in a loop."""
    fn = engines.fastrnn_engine(cfg)
    reps = _reps(fn)
    ratios = []
    for _ in range(rounds):
        loop = _sample(fn, reps)
        time.sleep(0.05)
        start = time.perf_counter()
        fn()
        ratios.append((time.perf_counter() - start) / loop)
    return statistics.median(ratios)


def main(argv=None):
    from fastrnn.cli import OneLineParser
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--config", default=DEFAULT, help="a bench.engines configuration")
    args = parser.parse_args(argv)
    cfg = next((c for c in engines.CONFIGS if c.name == args.config), None)
    if cfg is None:
        parser.error(f"--config: no such configuration {args.config!r}")
    print(f"{cfg.name}, {engines.THREADS} threads, {args.rounds} rounds")
    for name, ratio in in_one_process(cfg, args.rounds).items():
        print(f"one process, alternated with {name}: fastrnn {ratio:.2f} x its time alone")
    print(f"after 50 ms idle: fastrnn {after_idle(cfg, args.rounds):.2f} x its time in a loop")
    for name, ratio in beside_a_busy_core(cfg, max(3, args.rounds // 2)).items():
        print(f"one core busy (another process): {name} {ratio:.2f} x its time without")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
