"""One process per engine (or per build), asked in turn for timing samples.

Engines in one process slow each other: after a call their thread pools
keep spinning for a while on the cores the next engine needs (several-fold
for fastrnn beside ONNX Runtime or PyTorch). bench.compare and bench.ab
therefore run every engine (or build) in a worker process of its own and ask
the workers in interleaved rounds, with a pause before each sample.

    w = Worker("torch")                  # this checkout's fastrnn and bench
    w = Worker("fastrnn", root=OLD)      # fastrnn from another source tree
    w = Worker("fastrnn", env={"FASTRNN_PANEL": "blas"})   # with its own environment
    seconds = w.ask("lstm-h256-b64", variant=None, min_time=0.05)
    w.close()
"""
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The worker imports fastrnn from the requested tree, and only then this
# checkout's bench package (another tree may have its own). Python runs with
# -P: ``-c`` would otherwise put the working directory first on sys.path.
_BOOT = """
import sys
sys.path.insert(0, {root!r})
import fastrnn
sys.path.remove({root!r})
sys.path.insert(0, {here!r})
from bench.workers import serve
print(fastrnn.__file__, flush=True)
serve({engine!r})
"""


def serve(engine):
    """Answer JSON requests [config, variant, min_time] from stdin with the
    seconds of one sample (the call repeated to last ~min_time; null when the
    engine has no such operation or is not installed)."""
    from bench import engines
    fns = {}
    for line in sys.stdin:
        name, variant, min_time = json.loads(line)
        key = (name, variant)
        if key not in fns:
            cfg = next(c for c in engines.CONFIGS if c.name == name)
            fn = engines.FACTORIES[engine](cfg, variant)
            if fn is None:
                fns[key] = None
            else:
                fn()
                start = time.perf_counter()
                fn()
                once = max(time.perf_counter() - start, 1e-7)
                fns[key] = (fn, max(1, int(min_time / once)))
        if fns[key] is None:
            print("null", flush=True)
            continue
        fn, reps = fns[key]
        fn()                                   # wake this engine's threads
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        print(json.dumps((time.perf_counter() - start) / reps), flush=True)


class Worker:
    """A process that times one engine's configurations when asked."""

    def __init__(self, engine, root=HERE, env=None):
        self.engine, self.root = engine, os.path.abspath(root)
        env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **(env or {})}
        code = _BOOT.format(root=self.root, here=HERE, engine=engine)
        self.proc = subprocess.Popen([sys.executable, "-P", "-c", code], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env,
                                     cwd=self.root)
        loaded = self.proc.stdout.readline().strip()
        if not loaded.startswith(os.path.join(self.root, "fastrnn")):
            self.proc.kill()
            raise RuntimeError(f"the {engine} worker for {self.root} imported fastrnn from "
                               f"{loaded or '?'}")

    def ask(self, name, variant=None, min_time=0.02):
        """Seconds per call of configuration ``name`` (None: no such operation)."""
        self.proc.stdin.write(json.dumps([name, variant, min_time]) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.engine} worker stopped on {name} "
                               f"(exit {self.proc.wait()})")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()
