"""fastrnn beside other thread pools: in one process, and beside a busy core.

    python -m bench.coexist [--rounds N] [--config NAME]

1. One process that calls fastrnn and another engine (ONNX Runtime, PyTorch)
   by turns, as an application serving both would: fastrnn's time per call
   in that loop over its time in a process without the other engine, both
   processes asked in interleaved rounds of one run, the alternating one
   after a second of alternating (the steady state of a long-running
   application: fastrnn's unit split learns within a few calls that its
   second thread comes late, fastrnn/_team.h). ONNX Runtime's pool threads
   spin for tens of milliseconds after each of its calls, on the cores where
   fastrnn's threads meet once per step; the same with ONNX Runtime's
   spinning off (session option session.intra_op.allow_spinning = 0) is
   printed too.
2. An external process keeping one core busy (a Python loop): each engine's
   time with it over its time without, each engine in a process of its own,
   interleaved rounds (busy, every engine; idle, every engine). fastrnn
   should degrade no more than ONNX Runtime does.
fastrnn's lines end with its unit-split team's counts over the rounds: team
calls, those judged late, calls run on one thread because of them.
Also prints fastrnn's time for a call after 50 ms idle over its time in a
loop (the team's threads asleep: on a VM waking a vCPU can take a
millisecond).
"""
import multiprocessing
import statistics
import sys
import time

from bench import engines
from bench.workers import Worker, reps_for, seconds_per_call

DEFAULT = "lstm-h256-b1"
OTHERS = ("onnxruntime", "onnxruntime-nospin", "torch")
MIN_TIME = 0.05                  # seconds per sample
SETTLE = 0.2                     # seconds of untimed samples before each sample


def _start(cfg, specs):
    """{key: Worker} of the workers whose engines run the configuration,
    each already in its steady state (a first, untimed sample); specs: {key:
    (engine, peer engine or None, threads)}."""
    workers = {}
    for key, (engine, peer, threads) in specs.items():
        worker = Worker(engine, threads=threads)
        if worker.ask(cfg.name, min_time=MIN_TIME, peer=peer, settle=SETTLE) is None:
            worker.close()
        else:
            workers[key] = (worker, peer)
    return workers


def _ask(cfg, workers):
    """Each worker's sample, one after the other, with a pause before each
    (the last one's thread pools spin for tens of ms after its calls)."""
    out = {}
    for key, (worker, peer) in workers.items():
        time.sleep(0.1)
        out[key] = worker.ask(cfg.name, min_time=MIN_TIME, peer=peer, settle=SETTLE)
    return out


def _stop(workers):
    """Each worker's team counts; the workers closed."""
    counts = {key: worker.counts() for key, (worker, _) in workers.items()}
    for worker, _ in workers.values():
        worker.close()
    return counts


def in_one_process(cfg, rounds):
    """({other engine: fastrnn alternated with it / fastrnn alone} (medians of
    interleaved rounds, each side a process of its own; None: alone),
    {other: fastrnn's team counts})."""
    workers = _start(cfg, {other: ("fastrnn", other, engines.THREADS)
                           for other in (None,) + OTHERS})
    times = {other: [] for other in workers}
    try:
        for _ in range(rounds):
            for other, t in _ask(cfg, workers).items():
                times[other].append(t)
    finally:
        counts = _stop(workers)
    alone = statistics.median(times.pop(None))
    return {other: statistics.median(t) / alone for other, t in times.items()}, counts


def _busy(flag):
    """Keep a core busy while flag is set (a Python loop); idle otherwise."""
    while flag.value >= 0:
        if flag.value:
            for _ in range(10000):
                pass
        else:
            time.sleep(0.001)


def beside_a_busy_core(cfg, rounds):
    """({engine: (seconds per call with one core kept busy, without)}, {engine: time
    on one thread / on the benchmark's threads, without}, fastrnn's team
    counts): each engine and thread count in a process of its own, medians
    of interleaved rounds (the busy process on, every engine asked; off,
    every engine asked). One thread's time is what an engine whose threads
    meet every step can keep when a core is taken from it."""
    ctx = multiprocessing.get_context("spawn")
    workers = _start(cfg, {(engine, threads): (engine, None, threads)
                           for engine in ("fastrnn", "onnxruntime", "torch")
                           for threads in (engines.THREADS, 1)})
    flag = ctx.Value("i", 0)
    spinner = ctx.Process(target=_busy, args=(flag,))
    spinner.start()
    times = {(engine, busy): [] for engine in workers for busy in (False, True)}
    try:
        for _ in range(rounds):
            for busy in (True, False):
                flag.value = int(busy)
                time.sleep(0.2)
                for engine, t in _ask(cfg, workers).items():
                    times[engine, busy].append(t)
    finally:
        flag.value = -1
        spinner.join()
        counts = _stop(workers)
    med = {key: statistics.median(t) for key, t in times.items()}
    full = [key for key in workers if key[1] == engines.THREADS]
    return ({engine: (med[(engine, n), True], med[(engine, n), False]) for engine, n in full},
            {engine: med[(engine, 1), False] / med[(engine, n), False] for engine, n in full
             if (engine, 1) in workers},
            counts[("fastrnn", engines.THREADS)])


def _counted(counts):
    if not counts:
        return ""
    return (f"  (team calls {counts['team']}, late {counts['late']}, "
            f"run alone {counts['alone']})")


def after_idle(cfg, rounds):
    """fastrnn's time for one call after 50 ms idle / in a loop."""
    fn = engines.fastrnn_engine(cfg)
    reps = reps_for(fn, MIN_TIME)
    ratios = []
    for _ in range(rounds):
        loop = seconds_per_call(fn, reps)
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
    ratios, counts = in_one_process(cfg, args.rounds)
    print(f"one process, fastrnn alone:{_counted(counts.get(None))}")
    for name, ratio in ratios.items():
        print(f"one process, alternated with {name}: fastrnn {ratio:.2f} x its time alone"
              f"{_counted(counts.get(name))}")
    print(f"after 50 ms idle: fastrnn {after_idle(cfg, args.rounds):.2f} x its time in a loop")
    ratios, one_thread, counts = beside_a_busy_core(cfg, args.rounds)
    for name, (busy, idle) in ratios.items():
        print(f"one core busy (another process): {name} {busy / idle:.2f} x its time without"
              f" ({busy * 1e3:.3f} ms, {idle * 1e3:.3f} ms)"
              f"{_counted(counts) if name == 'fastrnn' else ''}")
    for name, ratio in one_thread.items():
        print(f"one thread, no busy core: {name} {ratio:.2f} x its time on {engines.THREADS}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
