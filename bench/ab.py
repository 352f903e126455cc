"""Two builds of fastrnn side by side: the comparison table's configurations,
fastrnn only, each build in its own process, in interleaved rounds.

    python -m bench.ab OLD_ROOT [NEW_ROOT] [--rounds N] [--only NAME,...]
                       [--old-env KEY=VALUE ...] [--new-env KEY=VALUE ...]
    python -m bench.ab . --old-env FASTRNN_PANEL=blas    # one build, two settings

OLD_ROOT and NEW_ROOT are source trees with their kernels built in place
(``python setup.py build_ext --inplace``); NEW_ROOT defaults to this
checkout. Both run this checkout's configurations (bench.engines), or with
--only the ones named, which may be shapes outside the table spelled like
its names (``--only gru-h64-b1,train-lstm-h128-b8-t20``; bench.engines.config). A worker
process per build (bench.workers) times one configuration when asked; the
driver asks them in turn (old, new, old, new, ...), with a pause before each
sample so one build's spinning threads do not slow the other's. Prints the medians and
new / old per configuration: the proof that a change that should not change
speed did not (ratios within the machine's noise). The last column is the
middle half (25th to 75th percentile) of the rounds' own new / old ratios,
each round's pair timed back to back: a wide range says the machine moved
during the run, and a ratio outside it deserves a rerun.
"""
import os
import time

import numpy as np

from bench.workers import HERE, Worker


def main(argv=None):
    from bench import engines
    from fastrnn.cli import OneLineParser
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="source tree of the old build (kernels built in place)")
    parser.add_argument("new", nargs="?", default=HERE, help="source tree of the new build")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", default="", help="comma-separated configuration names")
    parser.add_argument("--min-time", type=float, default=0.05, help="seconds per sample")
    for side in ("old", "new"):
        parser.add_argument(f"--{side}-env", action="append", default=[], metavar="KEY=VALUE",
                            help=f"an environment variable for the {side} build's process")
    args = parser.parse_args(argv)
    envs = {}
    for side in ("old", "new"):
        pairs = [item.partition("=") for item in getattr(args, f"{side}_env")]
        if any(not key or not sep for key, sep, _ in pairs):
            parser.error(f"--{side}-env takes KEY=VALUE")
        envs[side] = {key: value for key, _, value in pairs}
    only = list(dict.fromkeys(filter(None, args.only.split(","))))
    configs = [engines.config(name) for name in only] if only else list(engines.CONFIGS)
    if None in configs:
        unknown = ", ".join(n for n, c in zip(only, configs) if c is None)
        parser.error(f"--only: no such configuration: {unknown}; choose from "
                     f"{', '.join(c.name for c in engines.CONFIGS)}, or spell a shape as "
                     f"[train-][bi]KIND[-iI]-hH-bB[-tT] (KIND lstm, gru, rnn)")
    procs = {side: Worker("fastrnn", root, envs[side])
             for side, root in (("old", args.old), ("new", args.new))}
    try:
        print(f"old: {os.path.abspath(args.old)} {envs['old'] or ''}\n"
              f"new: {os.path.abspath(args.new)} {envs['new'] or ''}\n"
              f"{engines.THREADS} threads, {args.rounds} rounds, float32; ratio = new / old")
        print(f"{'configuration':<24}{'old':>12}{'new':>12}{'ratio':>8}  rounds (middle half)")
        for cfg in configs:
            samples = {"old": [], "new": []}
            for _ in range(args.rounds):
                for side in ("old", "new"):
                    time.sleep(0.2)
                    samples[side].append(procs[side].ask(cfg.name, None, args.min_time))
            old, new = (float(np.median(samples[s])) for s in ("old", "new"))
            q1, q3 = np.percentile([n / o for o, n in zip(samples["old"], samples["new"])],
                                   [25, 75])
            print(f"{cfg.name:<24}{old * 1e3:>10.3f}ms{new * 1e3:>10.3f}ms{new / old:>8.2f}"
                  f"  {q1:.2f}-{q3:.2f}", flush=True)
    finally:
        for proc in procs.values():
            proc.close()


if __name__ == "__main__":
    main()
