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


def builds():
    """[(name, module)] of the kernel builds this CPU runs and this install
    has (a compiler that cannot target an instruction set skips its build),
    best first; the baseline one is always there."""
    found = []
    for name, runs in _panels.KERNEL_BUILDS.items():
        if not runs():
            continue
        try:
            found.append((name, importlib.import_module(f"fastrnn._kernels.{_MODULES[name]}")))
        except ImportError:
            if name == "baseline":
                raise
    return found


def _select():
    choice = _panels.kernel_build()
    available = builds()
    if choice == "auto":
        return available[0][1], available[0][0]
    for name, module in available:
        if name == choice:
            return module, name
    raise ImportError(f"FASTRNN_KERNELS={choice}: this install has no {choice} kernel build "
                      f"(its compiler could not target it); it has {[n for n, _ in available]}")


recurrent, variant = _select()
