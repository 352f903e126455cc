"""Compiled kernels (Cython). Nothing here validates its arguments: callers do.

``recurrent`` is the kernel module this CPU runs best: the x86-64-v3 build
(AVX2, FMA) where the CPU has those and it was built, else the baseline one.
FASTRNN_KERNELS=baseline (or avx2) in the environment forces a choice.
"""
import os

from fastrnn._kernels import _recurrent as baseline


def _select():
    choice = os.environ.get("FASTRNN_KERNELS", "auto").strip().lower()
    if choice not in ("auto", "baseline", "avx2"):
        raise ImportError(f"FASTRNN_KERNELS must be auto, baseline or avx2, got {choice!r}")
    if choice == "baseline" or not baseline.cpu_has_avx2_fma():
        if choice == "avx2":
            raise ImportError("FASTRNN_KERNELS=avx2 but this CPU lacks AVX2/FMA")
        return baseline, "baseline"
    try:
        from fastrnn._kernels import _recurrent_avx2
    except ImportError:
        if choice == "avx2":
            raise
        return baseline, "baseline"
    return _recurrent_avx2, "avx2"


recurrent, variant = _select()
