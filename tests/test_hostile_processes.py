"""Processes and threads (hostile use, issue 10.2 and 10.5): a forked child
can use a model its parent ran; thread counts are bounded; the BLAS thread
counts the user had always come back, whatever fastrnn calls overlap.

Each case runs in its own process with a timeout: a fork that hangs, or an
OpenMP runtime that aborts, fails one test instead of stalling the run.
"""
import os

import pytest

from isolated import run_isolated

# a model that runs both thread splits and training, then its answers
WARM = """
import os, threading
rng = np.random.default_rng(0)
wide = fastrnn.LSTM(8, 16, num_layers=2, seed=0)           # batch split (B=16)
narrow = fastrnn.GRU(8, 16, seed=1)                        # unit split (B=1)
x16 = rng.standard_normal((20, 16, 8)).astype(np.float32)
x1 = x16[:, :1]

def answers():
    y16, _ = wide(x16)
    y1, _ = narrow(x1)
    y, _, ctx = wide.forward(x16)
    dx, _ = wide.backward(ctx, np.ones_like(y))
    return [y16, y1, dx]

# the answers of one thread, two and the default count (the splits differ
# with the count, so may the last bits)
expected = {}
for n in (1, 2, None):
    fastrnn.set_num_threads(n)
    expected[fastrnn.get_num_threads()] = answers()

def same(got, threads=1):
    return all(np.array_equal(g, e) for g, e in zip(got, expected[threads]))
"""


@pytest.mark.parametrize("threads", [None, 2], ids=["default", "set-2"])
def test_a_forked_child_runs_the_model_its_parent_ran(threads):
    if threads is None and (os.cpu_count() or 1) < 2:
        pytest.skip("the default team has one thread on a one-CPU machine")
    out = run_isolated(WARM + f"""
fastrnn.set_num_threads({threads!r})
team = fastrnn.get_num_threads()
assert team >= 2, team
answers()
pid = os.fork()
if pid == 0:
    # the thread that forked runs on one thread (GNU OpenMP's pool is gone)
    ok = fastrnn.get_num_threads() == 1 and same(answers(), 1)
    # a thread started in the child has an OpenMP pool of its own: full count
    seen = []
    t = threading.Thread(target=lambda: seen.append(
        fastrnn.get_num_threads() == team and same(answers(), team)))
    t.start(); t.join()
    print("child", ok, seen, flush=True)
    os._exit(0 if ok and seen == [True] else 3)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
assert same(answers(), team)                               # the parent is unharmed
""", timeout=90).stdout
    assert "child True [True]" in out, out


def test_multiprocessing_pool_workers_use_the_model():
    run_isolated(WARM + """
import multiprocessing as mp

def work(i):
    return [a.tolist() for a in answers()]

fastrnn.set_num_threads(2)
answers()
with mp.get_context("fork").Pool(2) as pool:
    results = pool.map(work, range(4))
for r in results:
    assert same([np.asarray(a, np.float32) for a in r])
""", timeout=120)


def test_a_fork_while_another_thread_is_inside_a_kernel():
    """Locks and BLAS limits held by a thread that the child does not have
    are made new: the child neither deadlocks nor keeps BLAS at 1 thread."""
    run_isolated(WARM + """
from threadpoolctl import threadpool_info, threadpool_limits
threadpool_limits(2, user_api="blas")
stop = threading.Event()

def busy():
    while not stop.is_set():
        wide(x16)
        y, _, ctx = narrow.forward(x1)          # training: the buffer pool's lock
        narrow.backward(ctx, np.ones_like(y))

fastrnn.set_num_threads(2)
t = threading.Thread(target=busy, daemon=True)
t.start()
for _ in range(5):
    pid = os.fork()
    if pid == 0:
        ok = same(answers())
        counts = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
        os._exit(0 if ok and all(n == 2 for n in counts) else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
stop.set()
t.join()
""", timeout=120)


def test_thread_counts_are_bounded():
    out = run_isolated("""
from fastrnn._threads import max_threads
assert max_threads() == 4 * os.cpu_count()
for n in (0, max_threads() + 1, 1000, 2**31 - 1, 2**70):
    try:
        fastrnn.set_num_threads(n)
    except ValueError as exc:
        assert "n must be between 1 and" in str(exc), exc
    else:
        raise AssertionError(f"set_num_threads({n}) accepted")
fastrnn.set_num_threads(max_threads())                     # the bound itself runs
x = np.zeros((6, 40, 3), np.float32)
y, _ = fastrnn.LSTM(3, 4)(x)
fastrnn.set_num_threads(None)
print("default", fastrnn.get_num_threads())
""".replace("from fastrnn", "import os\nfrom fastrnn", 1), env={"OMP_NUM_THREADS": "1000"})
    # OMP_NUM_THREADS above the bound is held to it
    assert f"default {4 * os.cpu_count()}" in out.stdout, out.stdout


def test_blas_thread_counts_come_back_after_concurrent_calls():
    """8 Python threads call layers (scipy's BLAS held to 1 thread inside),
    a language model's generate and a Seq2Seq's predict (every BLAS held to
    1) at once, in overlapping calls; afterwards every BLAS library has the
    thread count the user set."""
    run_isolated("""
import threading
from threadpoolctl import threadpool_info
from fastrnn import _threads
from fastrnn.models import LanguageModel, Seq2Seq

for lib in _threads._blas_controllers()[1]:     # (not threadpoolctl: see the next test)
    lib.set_num_threads(2)

def counts():
    return {lib["filepath"]: lib["num_threads"] for lib in threadpool_info()
            if lib["user_api"] == "blas"}

before = counts()
assert before and all(n == 2 for n in before.values()), before
layer = fastrnn.GRU(4, 8, dtype=np.float64, seed=0)        # float64: BLAS in the kernels
lm = LanguageModel("abcdef", hidden_size=8, seed=0)
s2s = Seq2Seq(5, 5, hidden_size=8, seed=0)
x = np.random.default_rng(0).standard_normal((3, 2, 4))
errors = []

def work(k):
    try:
        for i in range(30):
            if (k + i) % 3 == 0:
                lm.generate("ab", 3, seed=i)
            elif (k + i) % 3 == 1:
                s2s.predict([[1, 2, 3]], max_len=3)
            else:
                layer(x)
    except Exception as exc:
        errors.append(exc)

threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert not errors, errors
assert counts() == before, (counts(), before)
""", timeout=120)


def test_fastrnn_in_a_worker_thread_leaves_the_users_blas_limits_working():
    """threadpoolctl (3.8) lets only one Python thread at a time set OpenBLAS's
    thread count: fastrnn must not take that role, or a user's
    threadpool_limits on the main thread silently stops working while a
    thread that once called fastrnn is alive."""
    run_isolated("""
import threading
from threadpoolctl import threadpool_info, threadpool_limits
from fastrnn import _threads

def counts():
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

layer = fastrnn.GRU(4, 8, dtype=np.float64, seed=0)
layer(np.zeros((3, 2, 4)))                         # loads scipy's BLAS
for lib in _threads._blas_controllers()[1]:
    lib.set_num_threads(2)
called, finish = threading.Event(), threading.Event()

def worker():
    layer(np.zeros((3, 2, 4)))
    called.set()
    finish.wait()

t = threading.Thread(target=worker, daemon=True)
t.start()
called.wait()
assert counts() and all(n == 2 for n in counts()), counts()
with threadpool_limits(1, user_api="blas"):
    assert all(n == 1 for n in counts()), counts()
assert all(n == 2 for n in counts()), counts()
finish.set()
t.join()
""", timeout=60)


def test_a_thread_with_a_small_stack_runs_every_kernel():
    """The products keep their packed block of A off the stack (64 KiB there
    overflowed a thread started with threading.stack_size(80 KiB): a
    segfault): a thread with a 64 KiB stack runs both splits, training, a
    cell and a large layer, with the answers of the main thread."""
    run_isolated(WARM + """
fastrnn.set_num_threads(1)            # the calling thread runs every kernel itself
cell = fastrnn.LSTMCell(8, 16, seed=2)
x = rng.standard_normal((3, 8)).astype(np.float32)
big = fastrnn.LSTM(256, 256, seed=3)
xb = rng.standard_normal((6, 40, 256)).astype(np.float32)
want = answers() + list(cell(x)) + [big(xb)[0]]
threading.stack_size(64 << 10)
got = []
t = threading.Thread(target=lambda: got.append(answers() + list(cell(x)) + [big(xb)[0]]))
t.start(); t.join()
assert got and all(np.array_equal(g, w) for g, w in zip(got[0], want))
print("ok")
""", timeout=120)
