"""Thread settings: fastrnn's own OpenMP team size, a serial BLAS inside it,
and what a forked child may use.

The kernels parallelise over (direction, batch block) tasks with OpenMP and call
BLAS from inside those threads, so scipy's BLAS must not start threads of its
own while a kernel runs. ``serial_blas()`` holds scipy's BLAS to one thread
for the duration of a kernel call, ``single_threaded_blas()`` every BLAS in
the process (for loops that call fastrnn and a small BLAS product by turns).
Both count, per BLAS library and under one lock, how many calls of any
Python thread want it at one thread: the first one in saves the library's
thread count and sets 1, the last one out puts the saved count back. (Saving
and restoring per call, as threadpoolctl's ``limit`` does, loses the user's
setting when calls from several threads overlap: the second saves the first's 1.)

Fork: GNU OpenMP's thread pool does not survive ``fork``. In the child, the
thread that called fork still holds the parent's pool, and its next parallel
region waits forever for threads that no longer exist. So in a forked child
that thread runs every kernel on one thread (``get_num_threads()`` says 1
there); threads started in the child get pools of their own and use the
full count. The locks and counts here are made new in the child too.
"""
import ctypes
import operator
import os
import threading

from fastrnn import _openmp


_CPUS = os.cpu_count() or 1      # read once: os.cpu_count() costs ~15 us a call


def max_threads():
    """The most kernel threads fastrnn uses: four per CPU. More only
    oversubscribes the cores, and thousands make GNU OpenMP abort the process
    when it cannot start them."""
    return 4 * _CPUS


_OPENMP = _openmp.openmp_enabled()   # a build constant, asked once
_num_threads = None          # None = the OpenMP default
_forked_thread = None        # in a forked child: the ident of the thread that forked


def get_num_threads():
    """The number of threads fastrnn's kernels use for a call from this thread.

    1 when built without OpenMP, and for the thread that called fork in a
    forked child (see the module's docstring); else the count given to
    ``set_num_threads``, or the OpenMP default (OMP_NUM_THREADS when set,
    else the CPU count), at most ``max_threads()``.
    """
    if not _OPENMP:
        return 1
    if _forked_thread is not None and threading.get_ident() == _forked_thread:
        return 1
    if _num_threads is None:
        return max(1, min(int(_openmp.openmp_max_threads()), max_threads()))
    return _num_threads


def set_num_threads(n):
    """Set the number of kernel threads, 1 to ``max_threads()`` (four per CPU);
    ``None`` restores the OpenMP default."""
    global _num_threads
    if n is None:
        _num_threads = None
        return
    if isinstance(n, bool):
        raise TypeError("n must be a positive integer or None, got bool")
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"n must be a positive integer or None, got {type(n).__name__}") from None
    if not 1 <= n <= max_threads():
        raise ValueError(f"n must be between 1 and {max_threads()} (four threads per CPU), "
                         f"got {n}")
    _num_threads = n


class _BlasLibrary:
    """One BLAS library's process-wide thread count, read and set.

    OpenBLAS (pthreads) is called through its own C API: threadpoolctl 3.8
    ignores set_num_threads from every Python thread but the first one that
    set it (its "controlling thread", kept while that thread lives), so a
    fastrnn call from a worker thread would either not take effect or make
    the user's own threadpoolctl limits on the main thread do nothing.
    """

    __slots__ = ("filepath", "_lib", "_get", "_set")

    def __init__(self, lib):
        self.filepath, self._lib = lib.filepath, lib
        self._get = self._set = None
        if lib.internal_api == "openblas" and getattr(lib, "threading_layer", "") != "openmp":
            dll = ctypes.CDLL(lib.filepath)
            affixes = [(getattr(lib, "_symbol_prefix", ""), getattr(lib, "_symbol_suffix", "")),
                       ("", ""), ("scipy_", ""), ("scipy_", "64_"), ("", "64_")]
            for prefix, suffix in affixes:
                get = getattr(dll, f"{prefix}openblas_get_num_threads{suffix}", None)
                put = getattr(dll, f"{prefix}openblas_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    self._get, self._set = get, put
                    break

    def get_num_threads(self):
        return self._get() if self._get is not None else self._lib.get_num_threads()

    def set_num_threads(self, n):
        if self._set is not None:
            self._set(n)
        else:
            self._lib.set_num_threads(n)

    def info(self):
        return dict(self._lib.info(), num_threads=self.get_num_threads())


class _BlasLimits:
    """Per BLAS library: how many calls want it at one thread, and the count
    it had before the first of them."""

    def __init__(self):
        self.lock = threading.Lock()
        self.users = {}              # filepath -> number of calls inside
        self.saved = {}              # filepath -> (controller, thread count before)

    def enter(self, libs):
        with self.lock:
            for lib in libs:
                key = lib.filepath
                if self.users.get(key, 0) == 0:
                    n = lib.get_num_threads()
                    self.saved[key] = (lib, n)
                    if n != 1:
                        lib.set_num_threads(1)
                self.users[key] = self.users.get(key, 0) + 1

    def exit(self, libs):
        with self.lock:
            for lib in libs:
                key = lib.filepath
                self.users[key] -= 1
                if self.users[key] == 0:
                    lib, n = self.saved.pop(key)
                    if n != 1:
                        lib.set_num_threads(n)

    def restore_all(self):
        """Put every library's saved count back (in a forked child: the
        calls that held them belong to threads the child does not have)."""
        for lib, n in self.saved.values():
            if n != 1:
                lib.set_num_threads(n)
        self.users.clear()
        self.saved.clear()


_limits = _BlasLimits()
_blas = None                 # (scipy's BLAS controllers, every BLAS's controllers)


def _blas_controllers():
    """threadpoolctl's controllers of (scipy's BLAS, every BLAS), found once.

    Found lazily: scanning the loaded libraries takes milliseconds.
    """
    global _blas
    if _blas is None:
        import scipy.linalg.cython_blas  # noqa: F401  (make sure it is loaded)
        from threadpoolctl import ThreadpoolController

        libs = [_BlasLibrary(lib) for lib in ThreadpoolController().lib_controllers
                if lib.user_api == "blas"]
        # scipy's wheels ship their BLAS in scipy.libs/, numpy's in numpy.libs/
        scipy_libs = [lib for lib in libs
                      if os.path.basename(os.path.dirname(lib.filepath)) == "scipy.libs"]
        _blas = (scipy_libs or libs, libs)
    return _blas


class _OneBlasThread:
    """Context manager: the chosen BLAS libraries run one thread inside the block."""

    __slots__ = ("_every",)

    def __init__(self, every):
        self._every = every

    def __enter__(self):
        _limits.enter(_blas_controllers()[self._every])
        return self

    def __exit__(self, *exc):
        _limits.exit(_blas_controllers()[self._every])
        return False


def serial_blas():
    """Context manager: scipy's BLAS (the one the kernels call) runs one
    thread inside the block."""
    return _SCIPY_BLAS


def single_threaded_blas():
    """Context manager: every BLAS library in the process runs one thread.

    For loops that call fastrnn and a small BLAS product by turns (a
    generation step: the recurrent layers, then the head's one-row product):
    a multi-threaded BLAS and fastrnn's OpenMP threads, each spinning after
    its call, otherwise fight over the cores (``python -m bench.generation``
    times such a loop both ways).
    """
    return _EVERY_BLAS


_SCIPY_BLAS = _OneBlasThread(0)
_EVERY_BLAS = _OneBlasThread(1)


def blas_info():
    """threadpoolctl's description of the BLAS libraries fastrnn calls."""
    return [lib.info() for lib in _blas_controllers()[0]]


def _after_fork_in_child():
    global _forked_thread
    _forked_thread = threading.get_ident()
    # another thread of the parent may have held the lock or a BLAS limit
    _limits.lock = threading.Lock()
    _limits.restore_all()


os.register_at_fork(after_in_child=_after_fork_in_child)
