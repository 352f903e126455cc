"""Who copies the weights a training forward keeps for backward, side by side.

    python -m bench.weight_copy [--pairs N] [NAME ...]

A training forward keeps a copy of W_ih and W_hh (backward reads the weights
its forward ran with). In the unit split the kernel's threads copy their
units' rows right after packing them (forward_layer_units' weights_into);
before, the calling thread copied both matrices before the call. This runs
training steps (forward and backward) of the comparison table's unit-split
training rows both ways in one process, alternated call by call (the old way
emulated by a wrapper that copies in Python and passes no weights_into), and
prints the medians and their ratio: a difference of ~2% that two processes
on a shared machine do not resolve.
"""
import time

import numpy as np

import fastrnn
from bench import engines
from bench.engines import SMOKE
from fastrnn import _engine


def _caller_copies(kernel):
    """kernel (forward_layer_units) with the copy made by the caller first."""
    def call(*args, weights_into=None, **options):
        if weights_into is not None:
            np.copyto(weights_into[0], args[2][0])
            np.copyto(weights_into[1], args[2][1])
        return kernel(*args, **options)
    return call


def measure(name, pairs):
    """(median seconds with the caller's copy, with the threads') of a training step."""
    cfg = engines.config(name)
    layer = engines.make_layer(cfg)
    x, _ = engines.inputs(cfg)
    dy = np.ones((cfg.steps, cfg.B, layer.output_size), np.float32)
    kernel = _engine._k.forward_layer_units
    ways = (_caller_copies(kernel), kernel)
    secs = ([], [])
    try:
        for r in range(pairs):
            for way in ((1, 0) if r % 2 else (0, 1)):
                _engine._k.forward_layer_units = ways[way]
                start = time.perf_counter()
                layer.backward(layer.forward(x)[2], dy)
                secs[way].append(time.perf_counter() - start)
    finally:
        _engine._k.forward_layer_units = kernel
    return float(np.median(secs[0])), float(np.median(secs[1]))


def main(argv=None):
    from fastrnn.cli import OneLineParser
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=["train-lstm-h256-b1", "train-gru-h256-b8",
                                                     "train-lstm-h32-b1"])
    parser.add_argument("--pairs", type=int, default=2 if SMOKE else 600)
    args = parser.parse_args(argv)
    fastrnn.set_num_threads(engines.THREADS)
    print(f"fastrnn {fastrnn.__version__}, {engines.THREADS} threads; training steps, "
          f"{args.pairs} alternated pairs, medians")
    for name in args.names:
        if engines.config(name) is None:
            parser.error(f"no such configuration: {name}")
        old, new = measure(name, args.pairs)
        print(f"{name:22} copied by the caller {old * 1e3:8.3f} ms, by the threads "
              f"{new * 1e3:8.3f} ms, ratio {new / old:.3f}")


if __name__ == "__main__":
    main()
