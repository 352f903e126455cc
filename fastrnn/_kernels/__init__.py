"""Compiled kernels (Cython). Nothing here validates its arguments: callers do.

``recurrent`` is the kernel module this CPU runs best of those built: the
x86-64-v4 build (AVX-512) where the CPU has it, else the x86-64-v3 one (AVX2,
FMA), else the baseline one; ``variant`` names it. FASTRNN_KERNELS=baseline,
avx2 or avx512 forces one (_panels.kernel_build() reads and checks it); the
panel variant is _panels' one selection state for all of them.
"""
import importlib

from fastrnn._kernels import _panels

_MODULES = {"avx512": "_recurrent_avx512", "avx2": "_recurrent_avx2", "baseline": "_recurrent"}


def _load(name):
    """The kernel build ``name``, or None where this install lacks it (a
    compiler that cannot target an instruction set skips its build); the
    baseline one is always there."""
    try:
        return importlib.import_module(f"fastrnn._kernels.{_MODULES[name]}")
    except ImportError:
        if name == "baseline":
            raise
        return None


def builds():
    """[(name, module)] of the kernel builds this CPU runs and this install
    has, best first (for tests and benchmarks: it loads every one)."""
    return [(name, module) for name, runs in _panels.KERNEL_BUILDS.items()
            if runs() and (module := _load(name)) is not None]


def _select():
    """The build to run and its name: the one FASTRNN_KERNELS names, or the
    best this CPU runs that this install has; only that one is loaded."""
    choice = _panels.kernel_build()
    for name, runs in _panels.KERNEL_BUILDS.items():
        if name == choice or (choice == "auto" and runs()):
            module = _load(name)
            if module is not None:
                return module, name
            if name == choice:
                raise ImportError(f"FASTRNN_KERNELS={choice}: this install has no {choice} "
                                  f"kernel build (its compiler could not target it); it has "
                                  f"{[n for n, _ in builds()]}")
    raise AssertionError("unreachable: the baseline build always loads")


recurrent, variant = _select()
