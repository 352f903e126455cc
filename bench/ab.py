"""Two builds of fastrnn side by side: the comparison table's configurations,
fastrnn only, each build in its own process, in interleaved rounds.

    python -m bench.ab OLD_ROOT [NEW_ROOT] [--rounds N] [--only NAME,...]

OLD_ROOT and NEW_ROOT are source trees with their kernels built in place
(``python setup.py build_ext --inplace``); NEW_ROOT defaults to this
checkout. Both run this checkout's configurations (bench.engines). A worker
process per build times one configuration when asked; the driver asks them
in turn (old, new, old, new, ...), with a pause before each sample so one
build's spinning threads do not slow the other's. Prints the medians and
new / old per configuration: the proof that a change that should not change
speed did not (ratios within the machine's noise).
"""
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def worker():
    """Read configuration names from stdin; answer each with the seconds of
    one sample (a call repeated to last ~min_time) as a JSON line."""
    from bench import engines
    fns = {}
    for line in sys.stdin:
        name, min_time = line.split()
        if name not in fns:
            cfg = next(c for c in engines.CONFIGS if c.name == name)
            fn = engines.fastrnn_engine(cfg)
            fn()
            start = time.perf_counter()
            fn()
            once = max(time.perf_counter() - start, 1e-7)
            fns[name] = (fn, max(1, int(float(min_time) / once)))
        fn, reps = fns[name]
        fn()                                   # wake this build's threads
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        print(json.dumps((time.perf_counter() - start) / reps), flush=True)


# The worker imports fastrnn from the build's tree and only then this
# checkout's bench package (the old tree may have its own). Python runs with
# -P: ``-c`` would otherwise put the working directory (this checkout, with
# its own fastrnn) first on sys.path, and both "builds" would be this one.
_WORKER = """
import sys
sys.path.insert(0, {root!r})
import fastrnn
sys.path.remove({root!r})
sys.path.insert(0, {here!r})
from bench.ab import worker
print(fastrnn.__file__, flush=True)
worker()
"""


def _start(root):
    root = os.path.abspath(root)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen([sys.executable, "-P", "-c", _WORKER.format(root=root, here=HERE)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=env, cwd=root)
    loaded = proc.stdout.readline().strip()
    if not loaded.startswith(os.path.join(root, "fastrnn")):
        proc.kill()
        raise RuntimeError(f"the worker for {root} imported fastrnn from {loaded or '?'}")
    return proc


def _ask(proc, name, min_time):
    proc.stdin.write(f"{name} {min_time}\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"the worker for {name} stopped (exit {proc.wait()})")
    return json.loads(line)


def main(argv=None):
    from bench import engines
    from fastrnn.cli import OneLineParser
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="source tree of the old build (kernels built in place)")
    parser.add_argument("new", nargs="?", default=HERE, help="source tree of the new build")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", default="", help="comma-separated configuration names")
    parser.add_argument("--min-time", type=float, default=0.05, help="seconds per sample")
    args = parser.parse_args(argv)
    only = set(filter(None, args.only.split(",")))
    configs = [c for c in engines.CONFIGS if not only or c.name in only]
    if not configs:
        parser.error(f"--only: no such configuration; choose from "
                     f"{', '.join(c.name for c in engines.CONFIGS)}")
    procs = {"old": _start(args.old), "new": _start(args.new)}
    try:
        print(f"old: {os.path.abspath(args.old)}\nnew: {os.path.abspath(args.new)}\n"
              f"{engines.THREADS} threads, {args.rounds} rounds, float32; ratio = new / old")
        print(f"{'configuration':<24}{'old':>12}{'new':>12}{'ratio':>8}")
        for cfg in configs:
            samples = {"old": [], "new": []}
            for _ in range(args.rounds):
                for side in ("old", "new"):
                    time.sleep(0.2)
                    samples[side].append(_ask(procs[side], cfg.name, args.min_time))
            old, new = (float(np.median(samples[s])) for s in ("old", "new"))
            print(f"{cfg.name:<24}{old * 1e3:>10.3f}ms{new * 1e3:>10.3f}ms{new / old:>8.2f}",
                  flush=True)
    finally:
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()


if __name__ == "__main__":
    main()
