"""A Dask cluster against one process on a batch-inference job (one run).

    python -m bench.distributed [--sizes N ...] [--batch-size B] [--hidden H]

A SequenceClassifier (GRU, H units, over DNA strings of 20-100 symbols) labels
N strings: in this process with fastrnn on 2 threads (model.predict), and on
a LocalCluster of 2 single-threaded worker processes (fastrnn.distributed.
predict, tasks of B strings). Each job runs twice per setting, interleaved,
the better time kept; the cluster is started before the timings (its start is
printed apart). The per-task overhead is the time of a job of 2 x 64 tasks of
one string each, per task, less the same strings' time in this process.
"""
import argparse
import os
import time

import numpy as np

from fastrnn.data import Vocabulary
from fastrnn.models import SequenceClassifier


def strings(n, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 101, n)
    symbols = np.array(list("ATCG"))
    return ["".join(symbols[rng.integers(0, 4, k)]) for k in lengths]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 200000])
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    import fastrnn
    import fastrnn.distributed as fd
    from distributed import Client, LocalCluster

    model = SequenceClassifier(vocab=Vocabulary("ATCG"), num_classes=2, cell="gru",
                               hidden_size=args.hidden, seed=0)
    data = strings(max(args.sizes))
    fastrnn.set_num_threads(2)
    saved = dict(os.environ)        # (Dask's nanny leaves OMP_NUM_THREADS=1 and the like)
    start = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    client = Client(cluster)
    print(f"LocalCluster of 2 single-threaded workers started in "
          f"{time.perf_counter() - start:.1f} s; GRU H={args.hidden}, strings of 20-100, "
          f"tasks of {args.batch_size}; best of {args.rounds} interleaved rounds")
    try:
        fd.predict(model, data[:100], client=client)          # the model onto the workers
        print(f"{'strings':>8s} {'1 process, 2 threads':>22s} {'cluster, 2 x 1':>16s} "
              f"{'cluster / process':>18s}")
        for n in args.sizes:
            local = remote = float("inf")
            for _ in range(args.rounds):
                t = time.perf_counter()
                want = model.predict(data[:n], batch_size=args.batch_size)
                local = min(local, time.perf_counter() - t)
                t = time.perf_counter()
                got = fd.predict(model, data[:n], client=client, batch_size=args.batch_size)
                remote = min(remote, time.perf_counter() - t)
                assert got == want.tolist()
            print(f"{n:8d} {local:20.2f} s {remote:14.2f} s {remote / local:18.2f}", flush=True)
        tiny = data[:128]
        t = time.perf_counter()
        fd.predict(model, tiny, client=client, batch_size=1)
        per_task = (time.perf_counter() - t) / len(tiny)
        t = time.perf_counter()
        for s in tiny:
            model.predict([s])
        alone = (time.perf_counter() - t) / len(tiny)
        print(f"per task: {per_task * 1e3:.2f} ms for one string on the cluster against "
              f"{alone * 1e3:.2f} ms in this process: overhead ~{(per_task - alone) * 1e3:.2f} "
              f"ms a task (two workers at once)")
    finally:
        client.close()
        cluster.close()
        os.environ.clear()
        os.environ.update(saved)


if __name__ == "__main__":
    main()
