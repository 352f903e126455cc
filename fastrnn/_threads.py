"""Thread settings: fastrnn's own OpenMP team size, and a serial BLAS inside it.

The kernels parallelise over (direction, batch block) tasks with OpenMP and call
BLAS from inside those threads, so scipy's BLAS must not start threads of its
own while a kernel runs. ``serial_blas()`` sets scipy's BLAS pool to one thread
for the duration of the outermost kernel call (threads that call fastrnn at the
same time share one counter) and restores it afterwards. The threadpoolctl
controller is resolved once, lazily; each enter/exit is a plain C call.
"""
import operator
import os
import threading

from fastrnn import _openmp

_lock = threading.Lock()
_num_threads = None          # None = the OpenMP default
_blas = None                 # list of threadpoolctl LibControllers for scipy's BLAS
_depth = 0
_saved = []
_controller = None           # threadpoolctl's view of every BLAS (single_threaded_blas)


def get_num_threads():
    """The number of threads fastrnn's kernels use (1 when built without OpenMP)."""
    if not _openmp.openmp_enabled():
        return 1
    if _num_threads is None:
        return max(1, int(_openmp.openmp_max_threads()))
    return _num_threads


def set_num_threads(n):
    """Set the number of kernel threads; ``None`` restores the OpenMP default.

    The default is OMP_NUM_THREADS when set, else the CPU count.
    """
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
    if n < 1:
        raise ValueError(f"n must be a positive integer or None, got {n}")
    _num_threads = n


def _scipy_blas_controllers():
    global _blas
    if _blas is None:
        import scipy.linalg.cython_blas  # noqa: F401  (make sure it is loaded)
        from threadpoolctl import ThreadpoolController

        libs = [lib for lib in ThreadpoolController().lib_controllers
                if lib.user_api == "blas"]
        # scipy's wheels ship their BLAS in scipy.libs/, numpy's in numpy.libs/
        scipy_libs = [lib for lib in libs
                      if os.path.basename(os.path.dirname(lib.filepath)) == "scipy.libs"]
        _blas = scipy_libs or libs
    return _blas


class serial_blas:
    """Context manager: scipy's BLAS runs single-threaded inside the block."""

    __slots__ = ()

    def __enter__(self):
        global _depth, _saved
        with _lock:
            if _depth == 0:
                libs = _scipy_blas_controllers()
                _saved = [(lib, lib.get_num_threads()) for lib in libs]
                for lib, n in _saved:
                    if n != 1:
                        lib.set_num_threads(1)
            _depth += 1
        return self

    def __exit__(self, *exc):
        global _depth
        with _lock:
            _depth -= 1
            if _depth == 0:
                for lib, n in _saved:
                    if n != 1:
                        lib.set_num_threads(n)
        return False


def single_threaded_blas():
    """Context manager: every BLAS library in the process runs one thread.

    For loops that call fastrnn and a small BLAS product by turns (a
    generation step: the recurrent layers, then the head's one-row product):
    a multi-threaded BLAS and fastrnn's OpenMP threads, each spinning after
    its call, otherwise fight over the cores (measured on this project's
    2-core machine: 9.8 ms per generated symbol with a 5000-symbol head
    instead of 0.3 ms).
    """
    global _controller
    if _controller is None:                   # scanning the loaded libraries takes ~ms
        from threadpoolctl import ThreadpoolController
        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")


def blas_info():
    """threadpoolctl's description of the BLAS libraries fastrnn calls."""
    return [lib.info() for lib in _scipy_blas_controllers()]
