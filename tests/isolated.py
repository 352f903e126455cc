"""Run a piece of test code in its own Python process, with a timeout and a
memory cap, so that a crash, a hang or a runaway allocation fails that one
test (with what the child printed) instead of killing or stalling the run.

    out = run_isolated('''
        m = fastrnn.GRU(5, 4)
        print(m(ids)[0].shape)
    ''')

The child starts with ``numpy as np``, ``fastrnn`` and the tests folder on
sys.path (``import reference`` works); a failing assert in it is a non-zero
exit, reported with its traceback.
"""
import os
import resource
import subprocess
import sys
import textwrap

TESTS = os.path.dirname(os.path.abspath(__file__))
PRELUDE = f"""\
import sys
sys.path.insert(0, {TESTS!r})
import numpy as np
import fastrnn
"""
# address space of one child: a run of fastrnn with a few threads reserves
# ~0.3 GiB; the cap is far above that and far below the machine's memory
MEMORY_CAP = 3 << 30


def run_isolated(code, *, timeout=120, memory=MEMORY_CAP, env=None, check=True):
    """Run ``code`` (dedented) after PRELUDE; returns the CompletedProcess.

    check: the child must exit with status 0 (else the assertion shows its
    output). A child still running after ``timeout`` seconds is killed and
    the test fails (subprocess.TimeoutExpired).
    """
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=limit, env=full_env)
    if check:
        assert proc.returncode == 0, (f"child exited with {proc.returncode}\n"
                                      f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc
