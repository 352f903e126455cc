"""Compiled kernels (Cython). Nothing here validates its arguments: callers do.

``recurrent`` is the kernel module this CPU runs best: the x86-64-v3 build
(AVX2, FMA) where the CPU has those and it was built, else the baseline one.
_panels.kernel_build() makes the choice (FASTRNN_KERNELS=baseline or avx2
forces one); the panel variant is _panels' one selection state for both.
"""
from fastrnn._kernels import _panels
from fastrnn._kernels import _recurrent as baseline


def _select():
    if _panels.kernel_build() == "baseline":
        return baseline, "baseline"
    try:
        from fastrnn._kernels import _recurrent_avx2
    except ImportError:
        if _panels.kernel_build() == "avx2":      # asked for by name: say why not
            raise
        return baseline, "baseline"
    return _recurrent_avx2, "avx2"


recurrent, variant = _select()
