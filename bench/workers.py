"""One process per engine (or per build), asked in turn for timing samples.

Engines in one process slow each other: after a call their thread pools
keep spinning for a while on the cores the next engine needs (several-fold
for fastrnn beside ONNX Runtime or PyTorch). bench.compare and bench.ab
therefore run every engine (or build) in a worker process of its own and ask
the workers in interleaved rounds, with a pause before each sample.

    w = Worker("torch")                  # this checkout's fastrnn and bench
    w = Worker("fastrnn", root=OLD)      # fastrnn from another source tree
    w = Worker("fastrnn", env={"FASTRNN_PANEL": "blas"})   # with its own environment
    w = Worker("fastrnn", threads=1)     # FASTRNN_BENCH_THREADS for that process
    seconds = w.ask("lstm-h256-b64", variant=None, min_time=0.05)
    seconds = w.ask("lstm-h256-b1", peer="onnxruntime", settle=0.2)  # see ask
    w.counts()                           # fastrnn's unit-split team counts (bench.coexist)
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


def _until(seconds, fn):
    """Call fn until `seconds` have passed (untimed: into the steady state)."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        fn()


def reps_for(fn, min_time):
    """How many calls of fn (called twice here, untimed then timed) last ~min_time."""
    fn()
    start = time.perf_counter()
    fn()
    return max(1, int(min_time / max(time.perf_counter() - start, 1e-7)))


def seconds_per_call(fn, reps):
    """One sample: fn once to wake its engine's threads, then reps calls timed."""
    fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def _team_probe(action):
    """fastrnn's unit-split team policy (fastrnn/_team.h); None in builds
    without it, so that workers also run older trees."""
    from fastrnn import _engine
    probe = getattr(_engine._k, "team_probe", None)
    return probe(action) if probe else None


def serve(engine):
    """Answer JSON requests from stdin, one line each.

    {"config", "variant", "min_time", "peer", "settle"}: the seconds of one
    sample of the configuration's call (repeated to last ~min_time; null
    when the engine, or the peer, has no such operation or is not
    installed). With a peer engine, the peer's call runs before each timed
    call, untimed (an application calling two engines by turns in one
    process). settle: seconds of untimed samples before the timed one (the
    first request of a configuration settles for at least a second, and for
    fastrnn then resets its team counts). {"counts": true}: fastrnn's team
    counts since then (null for other engines or builds without them).
    """
    from bench import engines
    samplers = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("counts"):
            print(json.dumps(_team_probe("counts") if engine == "fastrnn" else None),
                  flush=True)
            continue
        name, variant, peer = request["config"], request.get("variant"), request.get("peer")
        key = (name, variant, peer)
        first = key not in samplers
        if first:
            samplers[key] = _sampler(engines, engine, name, variant, peer,
                                     request.get("min_time", 0.02))
        sample = samplers[key]
        if sample is None:
            print("null", flush=True)
            continue
        settle = request.get("settle", 0.0)
        if first and settle > 0:
            _until(max(settle, 1.0), sample)
            if engine == "fastrnn":
                _team_probe("reset")
        _until(settle, sample)
        print(json.dumps(sample()), flush=True)


def _sampler(engines, engine, name, variant, peer, min_time):
    """A function timing one sample of the call (seconds per call), or None."""
    cfg = engines.config(name)
    fn = engines.FACTORIES[engine](cfg, variant)
    other = None
    if peer is not None:
        other = engines.PEERS[peer](cfg)
        if other is None:
            return None
    if fn is None:
        return None
    reps = reps_for(fn, min_time)
    if other is None:
        def sample():
            return seconds_per_call(fn, reps)
    else:
        def sample():
            total = 0.0
            for _ in range(reps):
                other()
                start = time.perf_counter()
                fn()
                total += time.perf_counter() - start
            return total / reps
    return sample


class Worker:
    """A process that times one engine's configurations when asked."""

    def __init__(self, engine, root=HERE, env=None, threads=None):
        self.engine, self.root = engine, os.path.abspath(root)
        env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **(env or {})}
        if threads is not None:
            env["FASTRNN_BENCH_THREADS"] = str(threads)
        code = _BOOT.format(root=self.root, here=HERE, engine=engine)
        self.proc = subprocess.Popen([sys.executable, "-P", "-c", code], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env,
                                     cwd=self.root)
        loaded = self.proc.stdout.readline().strip()
        if not loaded.startswith(os.path.join(self.root, "fastrnn")):
            self.proc.kill()
            raise RuntimeError(f"the {engine} worker for {self.root} imported fastrnn from "
                               f"{loaded or '?'}")

    def ask(self, name, variant=None, min_time=0.02, peer=None, settle=0.0):
        """Seconds per call of configuration ``name`` (None: no such operation).
        peer: another engine called by turns with this one in the worker's
        process (its time not counted); settle: seconds of untimed samples
        first (see serve)."""
        return self._request({"config": name, "variant": variant, "min_time": min_time,
                              "peer": peer, "settle": settle}, name)

    def counts(self):
        """fastrnn's unit-split team counts since the worker settled (None
        for other engines)."""
        return self._request({"counts": True}, "counts")

    def _request(self, request, what):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.engine} worker stopped on {what} "
                               f"(exit {self.proc.wait()})")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()
