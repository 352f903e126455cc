# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Packed-panel float32 products and the choice of kernels, built once.

See _panels.pxd for what the products compute. This module owns the two
choices made when fastrnn loads, each readable and overridable in one place:
  - which kernel build runs (FASTRNN_KERNELS=auto|baseline|avx2|avx512):
    kernel_build();
  - which panel variant the float32 products use (FASTRNN_PANEL=avx512|
    avx2|blas, default the best this CPU runs): panel_kernel(),
    set_panel_kernel(); one state for every kernel build.
Both are refused with the choices this CPU has when they cannot run here.
"""
import os
import time

import numpy as np

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release
from cpython.exc cimport PyErr_Clear

from fastrnn._blas cimport gemm, gemm_abt, gemv_ax

cdef extern from "_panel.h" nogil:
    int C_PANEL "FASTRNN_PANEL"
    int A_FLOATS "FASTRNN_PANEL_A_FLOATS"
    int PANEL_NONE "FASTRNN_PANEL_NONE"
    int PANEL_AVX2 "FASTRNN_PANEL_AVX2"
    int PANEL_AVX512 "FASTRNN_PANEL_AVX512"
    void c_pack_panels "fastrnn_pack_panels"(const float* src, Py_ssize_t n, Py_ssize_t k,
                                             Py_ssize_t sn, Py_ssize_t sk, float* dst) noexcept
    void flush_line "fastrnn_flush_line"(const void* p)
    void c_pack_panel_range "fastrnn_pack_panel_range"(
        const float* src, Py_ssize_t n, Py_ssize_t k, Py_ssize_t sn, Py_ssize_t sk, float* dst,
        Py_ssize_t p0, Py_ssize_t p1) noexcept
    void c_panel_gemm "fastrnn_panel_gemm"(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                           const float* a, Py_ssize_t lda, const float* wp,
                                           float* c, Py_ssize_t ldc, int accumulate) noexcept
    ctypedef struct fastrnn_wrows:
        const float* w
        Py_ssize_t ldw, block, bstride
    void c_pack_rows_whole "fastrnn_pack_rows_whole"(const fastrnn_wrows* src, Py_ssize_t n,
                                                     Py_ssize_t k, float* d) noexcept
    void c_panel_gemm_rows "fastrnn_panel_gemm_rows"(
        Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a, Py_ssize_t lda,
        const fastrnn_wrows* src, float* wbuf, float* c, Py_ssize_t ldc, int accumulate) noexcept
    int WT_F32 "FASTRNN_WT_F32"
    int WT_F16 "FASTRNN_WT_F16"
    int WT_BF16 "FASTRNN_WT_BF16"
    int WT_I8 "FASTRNN_WT_I8"
    int WT_Q8 "FASTRNN_WT_Q8"
    int WT_BD "FASTRNN_WT_BD"
    int c_half_8_lanes "fastrnn_half_8_lanes"
    Py_ssize_t c_panel_steps "fastrnn_panel_steps"(int wt, Py_ssize_t k) noexcept
    Py_ssize_t c_weight_bytes "fastrnn_weight_bytes"(int wt) noexcept
    void c_panel_gemm_w_lanes "fastrnn_panel_gemm_w_lanes"(
        int lanes8, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a, Py_ssize_t lda,
        const void* wp, int wt, const float* scale, float* c, Py_ssize_t ldc,
        int accumulate) noexcept
    int c_panel_dot "fastrnn_panel_dot"(int wt) noexcept
    int c_panel_q8_vnni "fastrnn_panel_q8_vnni"() noexcept
    Py_ssize_t c_panel_dot_work "fastrnn_panel_dot_work"(int wt, Py_ssize_t m,
                                                         Py_ssize_t k) noexcept
    void c_panel_dot_prepare "fastrnn_panel_dot_prepare"(int wt, Py_ssize_t m, Py_ssize_t k,
                                                         const float* a, Py_ssize_t lda,
                                                         unsigned char* work) noexcept
    void c_panel_gemm_dot "fastrnn_panel_gemm_dot"(
        int wt, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const unsigned char* work,
        const void* w, const int* sums, const float* scale, float* c, Py_ssize_t ldc,
        int accumulate) noexcept
    void c_panel_gemm_w "fastrnn_panel_gemm_w"(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                               const float* a, Py_ssize_t lda, const void* wp,
                                               int wt, const float* scale, float* c,
                                               Py_ssize_t ldc, int accumulate) noexcept
    void c_panel_gemm_tn "fastrnn_panel_gemm_tn"(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                                 const float* a, Py_ssize_t lda,
                                                 const float* bp, float* c,
                                                 Py_ssize_t ldc, float* colsum) noexcept
    ctypedef struct fastrnn_tn_part:
        const float* bp
        Py_ssize_t n
        float* c
        Py_ssize_t ldc
        float* colsum
    void c_panel_gemm_tn_parts "fastrnn_panel_gemm_tn_parts"(
        Py_ssize_t m, Py_ssize_t k, const float* a, Py_ssize_t lda, int nparts,
        const fastrnn_tn_part* part) noexcept
    void c_rows_dot "fastrnn_rows_dot"(Py_ssize_t m, Py_ssize_t k, const float* w,
                                       Py_ssize_t ldw, const float* a, float* y,
                                       int accumulate) noexcept
    void c_rows_dot16 "fastrnn_rows_dot16"(Py_ssize_t m, Py_ssize_t k,
                                           const unsigned short* w, Py_ssize_t ldw,
                                           const float* a, float* y, int accumulate,
                                           int bf16) noexcept
    # variants: whether one runs here, the best, select one (0 if it does not run), the current
    int panel_supported "fastrnn_panel_supported"(int isa) noexcept
    int cpu_x86_64_v4 "fastrnn_cpu_x86_64_v4"() noexcept
    int panel_best "fastrnn_panel_best"() noexcept
    int panel_select "fastrnn_panel_select"(int isa) noexcept
    int panel_selected "fastrnn_panel_selected"() noexcept
    # the caches the blocking is worked out for; the blocks and tile that follow
    void c_set_caches "fastrnn_panel_set_caches"(Py_ssize_t l1d, Py_ssize_t l2) noexcept
    Py_ssize_t c_cache_l2 "fastrnn_cache_l2"
    void c_panel_blocks "fastrnn_panel_blocks"(Py_ssize_t k, Py_ssize_t group, Py_ssize_t mr,
                                               Py_ssize_t a_floats, Py_ssize_t* kc,
                                               Py_ssize_t* mc) noexcept
    void c_panel_tile "fastrnn_panel_tile"(int* rows, int* panels, int* group) noexcept
    float c_fma_peak "fastrnn_fma_peak"(int isa, long iters) noexcept
    float c_read_sum "fastrnn_read_sum"(int isa, const float* p, Py_ssize_t n,
                                        long reps) noexcept

if C_PANEL != PANEL:
    raise ImportError(f"fastrnn build error: _panel.h packs {C_PANEL} rows per panel, "
                      f"_panels.pxd {PANEL}")

PANEL_ROWS = PANEL            # rows of W per packed panel (Python's view of the constant)
PACKED_A_FLOATS = A_FLOATS    # floats of the product's packed block of A
# the weight types panel_gemm_w reads, by the name of their format, and their numpy types
WEIGHT_TYPES = {"float32": WT_F32, "float16": WT_F16, "bfloat16": WT_BF16, "int8": WT_I8}
# int8 weights on int8 dot products, activations quantized on the fly (panel_gemm_dot)
INT8_DOT = WT_Q8
# bfloat16 weights on bfloat16 dot products, activations rounded on the fly (dot products)
BF16_DOT = WT_BD
_WEIGHT_DTYPES = {WT_F32: np.dtype(np.float32), WT_F16: np.dtype(np.float16),
                  WT_BF16: np.dtype(np.uint16), WT_I8: np.dtype(np.int8),
                  WT_Q8: np.dtype(np.int8), WT_BD: np.dtype(np.uint16)}
# the variants by name, best first; "blas" = no panels
_VARIANTS = {"avx512": PANEL_AVX512, "avx2": PANEL_AVX2, "blas": PANEL_NONE}


cdef bint panels_on() noexcept nogil:
    return panel_selected() != PANEL_NONE


cdef Py_ssize_t _cache_l3 = 0            # bytes; 0 until the CPU plan says


cdef Py_ssize_t cache_l2() noexcept nogil:
    return c_cache_l2


cdef Py_ssize_t cache_l3() noexcept nogil:
    return _cache_l3


cdef void panel_gemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a,
                     Py_ssize_t lda, const float* wp, float* c, Py_ssize_t ldc,
                     bint accumulate) noexcept nogil:
    c_panel_gemm(m, n, k, a, lda, wp, c, ldc, accumulate)


cdef inline fastrnn_wrows _wrows(const float* w, Py_ssize_t ldw, Py_ssize_t block,
                                 Py_ssize_t bstride) noexcept nogil:
    cdef fastrnn_wrows src
    src.w = w
    src.ldw = ldw
    src.block = block
    src.bstride = bstride
    return src


cdef void panel_gemm_rows(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a,
                          Py_ssize_t lda, const float* w, Py_ssize_t ldw, Py_ssize_t block,
                          Py_ssize_t bstride, float* wbuf, float* c, Py_ssize_t ldc,
                          bint accumulate) noexcept nogil:
    cdef fastrnn_wrows src = _wrows(w, ldw, block, bstride)
    c_panel_gemm_rows(m, n, k, a, lda, &src, wbuf, c, ldc, accumulate)


cdef void pack_rows(Py_ssize_t n, Py_ssize_t k, const float* w, Py_ssize_t ldw,
                    Py_ssize_t block, Py_ssize_t bstride, float* dst) noexcept nogil:
    cdef fastrnn_wrows src = _wrows(w, ldw, block, bstride)
    c_pack_rows_whole(&src, n, k, dst)


cdef void panel_gemm_w(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a,
                       Py_ssize_t lda, const void* wp, int wt, const float* scale, float* c,
                       Py_ssize_t ldc, bint accumulate) noexcept nogil:
    c_panel_gemm_w(m, n, k, a, lda, wp, wt, scale, c, ldc, accumulate)


cdef Py_ssize_t panel_steps(int wt, Py_ssize_t k) noexcept nogil:
    return c_panel_steps(wt, k)


cdef Py_ssize_t weight_bytes(int wt) noexcept nogil:
    return c_weight_bytes(wt)


cdef bint dot_on(int wt) noexcept nogil:
    return c_panel_dot(wt) != 0


cdef Py_ssize_t dot_work(int wt, Py_ssize_t m, Py_ssize_t k) noexcept nogil:
    return c_panel_dot_work(wt, m, k)


cdef void dot_prepare(int wt, Py_ssize_t m, Py_ssize_t k, const float* a, Py_ssize_t lda,
                      unsigned char* work) noexcept nogil:
    c_panel_dot_prepare(wt, m, k, a, lda, work)


cdef void panel_gemm_dot(int wt, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                         const unsigned char* work, const void* w, const int* sums,
                         const float* scale, float* c, Py_ssize_t ldc,
                         bint accumulate) noexcept nogil:
    c_panel_gemm_dot(wt, m, n, k, work, w, sums, scale, c, ldc, accumulate)


cdef void panel_gemm_tn(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a,
                        Py_ssize_t lda, const float* bp, float* c, Py_ssize_t ldc,
                        float* colsum) noexcept nogil:
    c_panel_gemm_tn(m, n, k, a, lda, bp, c, ldc, colsum)


cdef void panel_gemm_tn_pair(Py_ssize_t m, Py_ssize_t k, const float* a, Py_ssize_t lda,
                             const float* bp1, Py_ssize_t n1, float* c1, Py_ssize_t ldc1,
                             float* colsum1, const float* bp2, Py_ssize_t n2, float* c2,
                             Py_ssize_t ldc2, float* colsum2) noexcept nogil:
    cdef fastrnn_tn_part part[2]
    part[0].bp, part[0].n, part[0].c, part[0].ldc, part[0].colsum = bp1, n1, c1, ldc1, colsum1
    part[1].bp, part[1].n, part[1].c, part[1].ldc, part[1].colsum = bp2, n2, c2, ldc2, colsum2
    c_panel_gemm_tn_parts(m, k, a, lda, 2, part)


cdef void rows_dot(Py_ssize_t m, Py_ssize_t k, const float* w, Py_ssize_t ldw, const float* a,
                   float* y, bint accumulate) noexcept nogil:
    c_rows_dot(m, k, w, ldw, a, y, accumulate)


cdef void rows_dot16(Py_ssize_t m, Py_ssize_t k, const unsigned short* w, Py_ssize_t ldw,
                     const float* a, float* y, bint accumulate, bint bf16) noexcept nogil:
    c_rows_dot16(m, k, w, ldw, a, y, accumulate, bf16)


cdef void pack_panel_range(const float* src, Py_ssize_t n, Py_ssize_t k, Py_ssize_t sn,
                           Py_ssize_t sk, float* dst, Py_ssize_t p0, Py_ssize_t p1) noexcept nogil:
    c_pack_panel_range(src, n, k, sn, sk, dst, p0, p1)


cdef void pack_panels(const float* src, Py_ssize_t n, Py_ssize_t k, Py_ssize_t sn,
                      Py_ssize_t sk, float* dst) noexcept nogil:
    c_pack_panels(src, n, k, sn, sk, dst)


# -- the choices --------------------------------------------------------------------------
cdef extern from "Python.h":
    # (cpython.buffer's declaration raises the refusal; here it is a result)
    int _get_buffer "PyObject_GetBuffer" (object, Py_buffer*, int)


cpdef object aligned_empty(Py_ssize_t n, dtype):
    """np.empty(n, dtype) starting at a multiple of 64 bytes: every array the
    kernels pack weights into, work in or write from several threads (the
    kernels' scratch, a layer's output, the training storage, weights packed
    once). The panels' vector loads then stay within cache lines, and the
    unit split's threads, which write their units' columns of shared rows
    (the exchange of h_t, y) and their own parts of one workspace, write no
    line in common (with shares of whole panels, 64 bytes); numpy's 16-byte
    alignment left both to chance, a process's scratch placed once for its
    life. `python -m bench.call_cost`, LSTM H=64 B=1 T=100, AMD EPYC Zen 4:
    with every scratch array 16, 32 or 48 bytes past a line a call took
    1.17, 1.13, 1.20 times as long; with y, 1.05, 1.00, 1.01 (one run)."""
    # 64 items spare (at least 64 bytes); numpy places them at a multiple of
    # the item size, which divides 64 for every dtype the kernels use. The
    # address through the buffer protocol: ndarray.ctypes takes ~1 us, and
    # a layer call makes its y here.
    raw = np.empty(n + 64, dtype=dtype)
    cdef Py_buffer view
    if _get_buffer(raw, &view, PyBUF_SIMPLE) != 0:      # (a new array exports its data)
        PyErr_Clear()
        raise RuntimeError("a new array refused its buffer")
    cdef Py_ssize_t size = view.itemsize
    cdef Py_ssize_t skip = (64 - <Py_ssize_t> (<size_t> view.buf % 64)) % 64 // size
    PyBuffer_Release(&view)
    return raw[skip:skip + n]


def cpu_has_avx2_fma():
    """Whether this CPU runs x86-64-v3 code (AVX2 and FMA)."""
    return bool(panel_supported(PANEL_AVX2))


def cpu_has_avx512():
    """Whether this CPU runs x86-64-v4 code (AVX-512 F, BW, CD, DQ, VL)."""
    return bool(cpu_x86_64_v4())


# the kernel builds, best first, and whether this CPU runs each
KERNEL_BUILDS = {"avx512": cpu_has_avx512, "avx2": cpu_has_avx2_fma, "baseline": lambda: True}


def kernel_build():
    """The kernel build asked for: FASTRNN_KERNELS (auto, the default, means
    the best one this CPU runs that was built: fastrnn._kernels picks it),
    refused when this CPU cannot run the one it names."""
    choice = os.environ.get("FASTRNN_KERNELS", "auto").strip().lower()
    if choice != "auto" and choice not in KERNEL_BUILDS:
        raise ImportError(f"FASTRNN_KERNELS must be auto or one of {list(KERNEL_BUILDS)}, "
                          f"got {choice!r}")
    if choice != "auto" and not KERNEL_BUILDS[choice]():
        raise ImportError(f"FASTRNN_KERNELS={choice} but this CPU cannot run it "
                          f"(it runs {[b for b, runs in KERNEL_BUILDS.items() if runs()]})")
    return choice


def _initial_panel_variant():
    """The CPU's best variant, or the one FASTRNN_PANEL names (avx512, avx2,
    blas: e.g. avx2 where 512-bit instructions lower the clock)."""
    choice = os.environ.get("FASTRNN_PANEL", "").strip().lower()
    if not choice:
        return panel_best()
    if choice not in _VARIANTS or not panel_supported(_VARIANTS[choice]):
        raise ImportError(f"FASTRNN_PANEL must be one of {panel_kernels()} on this CPU, "
                          f"got {choice!r}")
    return _VARIANTS[choice]


def panel_kernels():
    """The variants of the float32 step product this CPU runs, best first:
    "avx512", "avx2" (packed panels) and always "blas"."""
    return [name for name, isa in _VARIANTS.items() if panel_supported(isa)]


def set_panel_kernel(name):
    """Multiply float32 steps with the packed panels of one instruction set
    ("avx512", "avx2") or with BLAS ("blas"); one of panel_kernels(). The
    default is the first of panel_kernels(); tests and bench.limits switch it
    to check and time every variant. Not thread-safe: not for use while
    kernels run."""
    if name not in _VARIANTS or not panel_select(_VARIANTS[name]):
        raise ValueError(f"panel kernel must be one of {panel_kernels()}, got {name!r}")


def panel_kernel():
    """The variant float32 recurrent products use (see panel_kernels)."""
    for name, isa in _VARIANTS.items():
        if isa == panel_selected():
            return name


panel_select(_initial_panel_variant())


def set_cache_sizes(l1d, l2, l3=None):
    """Work the products' blocks out for these data caches of one core
    (bytes; None keeps the current one; the L3 as a whole, which bounds the
    one-row steps split across threads). fastrnn._cpu calls it with the CPU
    plan's caches when fastrnn loads; tests call it to run small-cache plans.
    Not for use while kernels run."""
    global _cache_l3
    c_set_caches(0 if l1d is None else int(l1d), 0 if l2 is None else int(l2))
    if l3 is not None:
        _cache_l3 = int(l3)


def blocking(Py_ssize_t k):
    """The selected variant's blocking of a product over k: {"tile": (rows,
    columns) of C in registers, "group": columns of W every tile of rows
    passes over in turn, "kc": elements of k per block, "mc": rows of A per
    block, at most A_FLOATS // kc}; None for "blas"."""
    cdef int rows, panels, group
    cdef Py_ssize_t kc, mc
    c_panel_tile(&rows, &panels, &group)
    if rows == 0:
        return None
    c_panel_blocks(k, group, rows, A_FLOATS, &kc, &mc)
    return {"tile": (rows, panels * PANEL), "group": group * PANEL, "kc": kc, "mc": mc}


def fma_rate(str variant, long iters=20000000):
    """FLOPs per second of one thread issuing independent float32 vector
    FMAs with one panel variant ("avx512", "avx2"): the peak the products
    are measured against (bench.limits)."""
    if variant not in ("avx512", "avx2") or not panel_supported(_VARIANTS[variant]):
        raise ValueError(f"fma_rate: variant must be one of "
                         f"{[v for v in panel_kernels() if v != 'blas']}, got {variant!r}")
    if iters < 1:
        raise ValueError(f"fma_rate: iters must be >= 1, got {iters}")
    cdef int isa = _VARIANTS[variant]
    cdef float total
    lanes = 16 if variant == "avx512" else 8
    start = time.perf_counter()
    with nogil:
        total = c_fma_peak(isa, iters)
    seconds = time.perf_counter() - start
    if total != total:           # keeps the sum live; never NaN
        raise RuntimeError("fma_rate: NaN")
    return iters * 12 * lanes * 2 / seconds


def read_rate(str variant, Py_ssize_t nbytes, long reps):
    """Bytes per second one thread reads from an array of about nbytes (a
    multiple of 128 floats, at a cache line; read once first, so that it is
    in the caches it fits) with one panel variant's vector loads and nothing
    else, over reps passes: the ceiling of a one-row product's stream of
    weights from the same caches (bench.limits)."""
    if variant not in ("avx512", "avx2") or not panel_supported(_VARIANTS[variant]):
        raise ValueError(f"read_rate: variant must be one of "
                         f"{[v for v in panel_kernels() if v != 'blas']}, got {variant!r}")
    if nbytes < 512 or reps < 1:
        raise ValueError(f"read_rate: nbytes must be >= 512 and reps >= 1, got {nbytes}, {reps}")
    cdef Py_ssize_t n = nbytes // 4 // 128 * 128
    arr = aligned_empty(n, np.float32)
    arr[:] = 1.0
    cdef const float[::1] a = arr
    cdef int isa = _VARIANTS[variant]
    cdef float total
    with nogil:
        total = c_read_sum(isa, &a[0], n, 1)
    start = time.perf_counter()
    with nogil:
        total = c_read_sum(isa, &a[0], n, reps)
    seconds = time.perf_counter() - start
    if total != total:           # keeps the sums live; never NaN
        raise RuntimeError("read_rate: NaN")
    return n * 4 * reps / seconds


# -- probes (bench.limits measures the products with them; tests check every variant) -----
def panel_product(const float[:, ::1] a, const float[:, ::1] w, float[:, ::1] c,
                  bint accumulate, int reps=1):
    """C (m x n) = A (m x k) @ Wᵀ, or C += that, with the selected
    panel_kernel() (W packed into panels first; BLAS without them), reps
    times; returns the seconds per product, packing excluded."""
    cdef Py_ssize_t m = a.shape[0], k = a.shape[1], n = w.shape[0]
    if w.shape[1] != k or c.shape[0] != m or c.shape[1] != n or reps < 1 or m * n * k == 0:
        raise ValueError("panel_product: A (m, k), W (n, k), C (m, n), all non-empty, "
                         "reps >= 1")
    wp_arr = aligned_empty(panel_size(n, k), np.float32)
    cdef float[::1] wp = wp_arr
    cdef int r
    cdef bint panels = panels_on()
    if panels:
        pack_panels(&w[0, 0], n, k, k, 1, &wp[0])
    start = time.perf_counter()
    with nogil:
        for r in range(reps):
            if panels:
                panel_gemm(m, n, k, &a[0, 0], k, &wp[0], &c[0, 0], n, accumulate)
            elif m == 1:
                # c = W a (+ c): BLAS's gemv, as the kernels call it for one row
                gemv_ax(<int> n, <int> k, &w[0, 0], <int> k, &a[0, 0], <float> accumulate,
                        &c[0, 0])
            else:
                # C = A @ Wᵀ (+ C)
                gemm_abt(<int> m, <int> n, <int> k, &a[0, 0], <int> k, &w[0, 0], <int> k,
                         <float> accumulate, &c[0, 0], <int> n)
    return (time.perf_counter() - start) / reps


def pack_seconds(const float[:, ::1] w, int reps=1, bint evict=False):
    """Seconds per packing of W (n x k) into panels (pack_panels, as a call
    packs a thread's share of W_hh), reps times into one aligned array;
    evict: W's lines flushed from every cache before each packing (the
    first call of a batch-1 layer whose weights were not read since)."""
    cdef Py_ssize_t n = w.shape[0], k = w.shape[1], i
    if n * k == 0 or reps < 1:
        raise ValueError("pack_seconds: W (n, k) non-empty, reps >= 1")
    wp_arr = aligned_empty(panel_size(n, k), np.float32)
    cdef float[::1] wp = wp_arr
    cdef int r
    cdef double total = 0
    for r in range(reps):
        if evict:
            with nogil:
                for i in range(0, n * k, 16):
                    flush_line(&w[0, 0] + i)
        start = time.perf_counter()
        with nogil:
            pack_panels(&w[0, 0], n, k, k, 1, &wp[0])
        total += time.perf_counter() - start
    return total / reps


def panel_product_rows(const float[:, ::1] a, const float[:, :, ::1] w, Py_ssize_t u0,
                       Py_ssize_t units, float[:, ::1] c, bint accumulate, int reps=1,
                       bint whole=False):
    """C (m x n) = A (m x k) @ Wᵀ, or C += that, W's n = G units rows the
    rows [u0, u0 + units) of every block of w (G, H, k) (the unit split's
    rows of every gate for a thread's units), with the selected
    panel_kernel(), each group of panels packed as the product reaches it
    (panel_gemm_rows), or with whole every panel packed first, then the
    product (panel_gemm: a call of several chunks of steps); reps times;
    returns the seconds per product, packing included."""
    cdef Py_ssize_t m = a.shape[0], k = a.shape[1], G = w.shape[0], H = w.shape[1]
    cdef Py_ssize_t n = G * units
    if (w.shape[2] != k or u0 < 0 or units < 1 or u0 + units > H or c.shape[0] != m
            or c.shape[1] != n or reps < 1 or m * n * k == 0):
        raise ValueError("panel_product_rows: A (m, k), w (G, H, k), 0 <= u0 < u0 + units "
                         "<= H, C (m, G units), all non-empty, reps >= 1")
    if not panels_on():
        raise ValueError("panel_product_rows: needs a panel variant (panel_kernel() is "
                         "'blas')")
    wbuf_arr = aligned_empty(panel_size(n, k), np.float32)
    cdef float[::1] wbuf = wbuf_arr
    cdef int r
    start = time.perf_counter()
    with nogil:
        for r in range(reps):
            if not whole:
                panel_gemm_rows(m, n, k, &a[0, 0], k, &w[0, u0, 0], k, units, H * k, &wbuf[0],
                                &c[0, 0], n, accumulate)
                continue
            pack_rows(n, k, &w[0, u0, 0], k, units, H * k, &wbuf[0])
            panel_gemm(m, n, k, &a[0, 0], k, &wbuf[0], &c[0, 0], n, accumulate)
    return (time.perf_counter() - start) / reps


def row_dot_product(const float[:, ::1] w, const float[::1] a, float[::1] y, bint accumulate,
                    int reps=1):
    """y = W @ a, or y += that, on W as stored (rows_dot: the selected
    panel_kernel()'s row dot products; BLAS's gemv with "blas"), reps times;
    returns the seconds per product."""
    cdef Py_ssize_t m = w.shape[0], k = w.shape[1]
    if a.shape[0] != k or y.shape[0] != m or reps < 1 or m * k == 0:
        raise ValueError("row_dot_product: W (m, k), a (k,), y (m,), all non-empty, reps >= 1")
    cdef int r
    cdef bint panels = panels_on()
    start = time.perf_counter()
    with nogil:
        for r in range(reps):
            if panels:
                rows_dot(m, k, &w[0, 0], k, &a[0], &y[0], accumulate)
            else:
                # y = W a (+ y)
                gemv_ax(<int> m, <int> k, &w[0, 0], <int> k, &a[0], <float> accumulate, &y[0])
    return (time.perf_counter() - start) / reps


def row_dot_product16(const unsigned short[:, ::1] w, const float[::1] a, float[::1] y,
                      bint accumulate, bint bf16, int reps=1):
    """row_dot_product on W stored in 16 bits (IEEE half; bfloat16 bit
    patterns with bf16), widened in registers (rows_dot16: F16C where the
    panel variant is on, else the portable loop); seconds per product."""
    cdef Py_ssize_t m = w.shape[0], k = w.shape[1]
    if a.shape[0] != k or y.shape[0] != m or reps < 1 or m * k == 0:
        raise ValueError("row_dot_product16: W (m, k), a (k,), y (m,), all non-empty, "
                         "reps >= 1")
    cdef int r
    start = time.perf_counter()
    with nogil:
        for r in range(reps):
            rows_dot16(m, k, &w[0, 0], k, &a[0], &y[0], accumulate, bf16)
    return (time.perf_counter() - start) / reps


def panel_product_tn(const float[:, ::1] a, const float[:, ::1] b, float[:, ::1] c,
                     int reps=1, float[::1] colsum=None, second=None):
    """C (m x n) += Aᵀ B over k rows (A: k x m, B: k x n), the shape of BPTT's
    weight gradients, with the selected panel_kernel() (B packed into panels
    first) or BLAS, reps times; with colsum (m,), also colsum += the sums of
    A's columns each time (on the panel variants, from the product's reads of
    A). second: None, or (B2 (k, n2), C2 (m, n2), colsum2 (m,) or None), a
    second such product on the same A in the same call (panel_gemm_tn_pair on
    the panel variants: dW_ih and dW_hh on one dG). Returns the seconds per
    call, packing excluded."""
    cdef Py_ssize_t k = a.shape[0], m = a.shape[1], n = b.shape[1]
    if b.shape[0] != k or c.shape[0] != m or c.shape[1] != n or reps < 1 or m * n * k == 0:
        raise ValueError("panel_product_tn: A (k, m), B (k, n), C (m, n), all non-empty, "
                         "reps >= 1")
    if colsum is not None and colsum.shape[0] != m:
        raise ValueError(f"panel_product_tn: colsum must have A's {m} columns, got "
                         f"{colsum.shape[0]}")
    cdef const float[:, ::1] b2 = None
    cdef float[:, ::1] c2 = None
    cdef float[::1] colsum2 = None
    cdef Py_ssize_t n2 = 0
    if second is not None:
        b2, c2, colsum2 = second
        n2 = b2.shape[1]
        if (b2.shape[0] != k or c2.shape[0] != m or c2.shape[1] != n2 or n2 == 0
                or (colsum2 is not None and colsum2.shape[0] != m)):
            raise ValueError("panel_product_tn: second = (B2 (k, n2), C2 (m, n2), colsum2 "
                             "(m,) or None), n2 > 0")
    cdef float* sums = &colsum[0] if colsum is not None else NULL
    cdef float* sums2 = &colsum2[0] if colsum2 is not None else NULL
    bp_arr = aligned_empty(panel_size(n, k) + panel_size(n2, k), np.float32)
    cdef float[::1] bp = bp_arr
    cdef float* bp2 = &bp[0] + panel_size(n, k)
    cdef int r
    cdef bint panels = panels_on()
    if panels:
        pack_panels(&b[0, 0], n, k, 1, n, &bp[0])
        if n2:
            pack_panels(&b2[0, 0], n2, k, 1, n2, bp2)
    start = time.perf_counter()
    with nogil:
        for r in range(reps):
            if panels and n2:
                panel_gemm_tn_pair(m, k, &a[0, 0], m, &bp[0], n, &c[0, 0], n, sums,
                                   bp2, n2, &c2[0, 0], n2, sums2)
            elif panels:
                panel_gemm_tn(m, n, k, &a[0, 0], m, &bp[0], &c[0, 0], n, sums)
            else:
                _blas_tn(m, n, k, &a[0, 0], &b[0, 0], &c[0, 0], sums)
                if n2:
                    _blas_tn(m, n2, k, &a[0, 0], &b2[0, 0], &c2[0, 0], sums2)
    return (time.perf_counter() - start) / reps


cdef void _blas_tn(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a, const float* b,
                   float* c, float* sums) noexcept nogil:
    """panel_product_tn's product on BLAS: C += Aᵀ B (A k x m, B k x n), and
    sums (NULL: none) += A's rows one after the other."""
    cdef Py_ssize_t kk, i
    # C += Aᵀ B
    gemm(c'T', c'N', <int> m, <int> n, <int> k, <float> 1, a, <int> m, b, <int> n, <float> 1,
         c, <int> n)
    if sums != NULL:
        for kk in range(k):
            for i in range(m):
                sums[i] += a[kk * m + i]


# -- weights packed once (a quantized module's panels; fastrnn._engine) ---------------------
def pack_weight_panels(w, scale=None):
    """W (n, k) of any of WEIGHT_TYPES' dtypes (bfloat16 as uint16 bit
    patterns) in panels, as panel_gemm_w reads them: (ceil(n / 16), k, 16),
    wp[p, kk, j] = W[16 p + j, kk], zero past n; bfloat16 in pairs of steps,
    (ceil(n / 16), ceil(k / 2), 16, 2), wp[p, kk // 2, j, kk % 2] = W[16 p +
    j, kk] (zero past k): one 32-bit lane holds two steps' weights of a column,
    which a shift and a mask widen. With scale (n,) (int8), also the scales
    padded to whole panels (ones past n): returns (panels, scales (16 ceil(n /
    16),) float32 or None). A numpy transpose, done once per module: the
    panels depend on W alone, not on how a call splits them."""
    w = np.asarray(w)
    if w.ndim != 2 or w.dtype not in _WEIGHT_DTYPES.values():
        raise ValueError(f"pack_weight_panels: W must be 2-D of "
                         f"{sorted(str(d) for d in _WEIGHT_DTYPES.values())}, got "
                         f"{w.dtype} {w.shape}")
    n, k = w.shape
    rows = -(-n // PANEL) * PANEL
    padded = np.zeros((rows, k), w.dtype)
    padded[:n] = w
    panels = np.ascontiguousarray(padded.reshape(rows // PANEL, PANEL, k).transpose(0, 2, 1))
    if w.dtype == _WEIGHT_DTYPES[WT_BF16]:
        steps = c_panel_steps(WT_BF16, k)
        pairs = np.zeros((rows // PANEL, steps, PANEL), w.dtype)
        pairs[:, :k] = panels
        panels = np.ascontiguousarray(
            pairs.reshape(rows // PANEL, steps // 2, 2, PANEL).transpose(0, 1, 3, 2))
    if scale is None:
        return panels, None
    scales = np.ones(rows, np.float32)
    scales[:n] = scale
    return panels, scales


def panel_weights(Py_ssize_t n, Py_ssize_t k, int wt):
    """The weights pack_weight_panels (pack_weight_quads for INT8_DOT) makes
    of W (n, k) in weight type wt."""
    return (n + PANEL - 1) // PANEL * PANEL * c_panel_steps(wt, k)


def int8_dot_products():
    """Whether int8 weights run on int8 dot products here: AVX-512 VNNI's
    (the avx512 variant on a CPU with them) or AVX2's byte multiply-adds (the
    avx2 variant, or avx512 without VNNI; the same bits), activations
    quantized per row on the fly (panel_gemm_dot); with no panel variant
    (blas) int8 weights are widened like the others."""
    return bool(c_panel_dot(WT_Q8))


def int8_dot_kind():
    """The instructions of the int8 dot products here: "avx512_vnni", "avx2"
    (vpmaddubsw), or None (int8_dot_products() false)."""
    if not c_panel_dot(WT_Q8):
        return None
    return "avx512_vnni" if c_panel_q8_vnni() else "avx2"


def half_lanes():
    """The lanes of the conversions that widen half weights in one- and
    two-row products: 8 or 16 under the avx512 variant (set_half_lanes), 8
    under avx2."""
    if panel_selected() == PANEL_AVX512:
        return 8 if c_half_8_lanes else 16
    return 8


def set_half_lanes(int lanes):
    """Widen half weights of one- and two-row products with 8- or 16-lane
    conversions under the avx512 variant (fastrnn._engine measures which is
    faster once per CPU; FASTRNN_HALF_LANES overrides). Not for use while
    kernels run."""
    global c_half_8_lanes
    if lanes not in (8, 16):
        raise ValueError(f"lanes must be 8 or 16, got {lanes}")
    c_half_8_lanes = 1 if lanes == 8 else 0


def bf16_dot_products():
    """Whether bfloat16 weights run on bfloat16 dot products here (AVX512-BF16,
    with the avx512 panel variant selected): activations rounded to bfloat16
    per row on the fly (panel_gemm_dot); elsewhere they are widened."""
    return bool(c_panel_dot(WT_BD))


def panel_product_bd(const float[:, ::1] a, wp, float[:, ::1] c, bint accumulate,
                     int reps=1):
    """C (m x n) = A (m x k) @ Wᵀ, or C += that, on bfloat16 W packed by
    pack_weight_panels (pairs of steps), on bfloat16 dot products with A's
    rows rounded to bfloat16 first (where bf16_dot_products()), reps times;
    returns the seconds per product."""
    cdef Py_ssize_t m = a.shape[0], k = a.shape[1], n = c.shape[1]
    if not c_panel_dot(WT_BD):
        raise ValueError("panel_product_bd: no bfloat16 dot products here "
                         "(bf16_dot_products())")
    wp = np.asarray(wp)
    if (wp.dtype != np.uint16 or not wp.flags.c_contiguous
            or wp.size != panel_weights(n, k, WT_BD) or c.shape[0] != m or reps < 1
            or m * n * k == 0):
        raise ValueError("panel_product_bd: A (m, k), bfloat16 panels of W (n, k) "
                         "(pack_weight_panels), C (m, n), all non-empty, reps >= 1")
    return _dot_product(WT_BD, a, wp, None, None, c, accumulate, reps)


def _dot_product(int wt, const float[:, ::1] a, w, scale, sums, float[:, ::1] c,
                 bint accumulate, int reps):
    """panel_product_q8 / _bd after their checks: A prepared, then multiplied
    (both inside the timing)."""
    cdef Py_ssize_t m = a.shape[0], k = a.shape[1], n = c.shape[1]
    cdef const unsigned char[::1] wb = w.reshape(-1).view(np.uint8)
    cdef const float[::1] sc = None if scale is None else np.ascontiguousarray(scale, np.float32)
    cdef const int[::1] cs = None if sums is None else np.ascontiguousarray(sums, np.int32)
    cdef unsigned char[::1] work = np.empty(c_panel_dot_work(wt, m, k), np.uint8)
    cdef int r
    start = time.perf_counter()
    with nogil:
        for r in range(reps):
            c_panel_dot_prepare(wt, m, k, &a[0, 0], k, &work[0])
            c_panel_gemm_dot(wt, m, n, k, &work[0], &wb[0], &cs[0] if cs is not None else NULL,
                             &sc[0] if sc is not None else NULL, &c[0, 0], n, accumulate)
    return (time.perf_counter() - start) / reps


def pack_weight_quads(codes, scale):
    """int8 W (n, k) with its scales (n,) for panel_gemm_dot: panels of four
    steps, (ceil(n / 16), ceil(k / 4), 16, 4), wq[p, kk // 4, j, kk % 4] =
    W[16 p + j, kk] (zero past n and k); the scales and the column sums
    Σ_kk W[j, kk] (int32), both padded to whole panels (ones, zeros). Returns
    (quads, scales, sums)."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.dtype != np.int8:
        raise ValueError(f"pack_weight_quads: W must be 2-D int8, got {codes.dtype} "
                         f"{codes.shape}")
    if codes.size and codes.min() < -127:
        # (AVX2's products negate codes, which -128 cannot be)
        raise ValueError("pack_weight_quads: codes must lie in [-127, 127]")
    n, k = codes.shape
    rows = -(-n // PANEL) * PANEL
    steps = c_panel_steps(WT_Q8, k)
    padded = np.zeros((rows, steps), np.int8)
    padded[:n, :k] = codes
    quads = np.ascontiguousarray(
        padded.reshape(rows // PANEL, PANEL, steps // 4, 4).transpose(0, 2, 1, 3))
    scales = np.ones(rows, np.float32)
    scales[:n] = scale
    sums = padded.sum(axis=1, dtype=np.int64).astype(np.int32)
    return quads, scales, sums


def panel_product_q8(const float[:, ::1] a, wq, scale, csum, float[:, ::1] c,
                     bint accumulate, int reps=1):
    """C (m x n) = A (m x k) @ Wᵀ, or C += that, on int8 W packed by
    pack_weight_quads, on int8 dot products with A's rows quantized on the
    fly (where int8_dot_products()), reps times; returns the seconds per
    product."""
    cdef Py_ssize_t m = a.shape[0], k = a.shape[1], n = c.shape[1]
    if not c_panel_dot(WT_Q8):
        raise ValueError("panel_product_q8: no int8 dot products here (int8_dot_products())")
    wq = np.asarray(wq)
    cdef Py_ssize_t cols = (n + PANEL - 1) // PANEL * PANEL
    if (wq.dtype != np.int8 or not wq.flags.c_contiguous or wq.size != panel_weights(n, k, WT_Q8)
            or c.shape[0] != m or reps < 1 or m * n * k == 0):
        raise ValueError("panel_product_q8: A (m, k), quads of W (n, k) (pack_weight_quads), "
                         "C (m, n), all non-empty, reps >= 1")
    scale = np.ascontiguousarray(scale, dtype=np.float32)
    csum = np.ascontiguousarray(csum, dtype=np.int32)
    if scale.shape != (cols,) or csum.shape != (cols,):
        raise ValueError("panel_product_q8: scales and sums of 16 ceil(n / 16) entries")
    return _dot_product(WT_Q8, a, wq, scale, csum, c, accumulate, reps)


def panel_product_w(const float[:, ::1] a, wp, int wt, scale, float[:, ::1] c,
                    bint accumulate, int reps=1, int half_lanes=0):
    """C (m x n) = A (m x k) @ Wᵀ, or C += that, on W packed by
    pack_weight_panels in weight type wt (WEIGHT_TYPES; int8 with its padded
    scales), with the selected panel_kernel() (the portable loop with
    "blas"), reps times; returns the seconds per product. half_lanes 8 or 16
    picks the half conversions of one- and two-row products under avx512 for
    this call (0: the current choice, set_half_lanes)."""
    if half_lanes not in (0, 8, 16):
        raise ValueError(f"panel_product_w: half_lanes must be 0, 8 or 16, got {half_lanes}")
    cdef int lanes8 = c_half_8_lanes if half_lanes == 0 else half_lanes == 8
    cdef Py_ssize_t m = a.shape[0], k = a.shape[1], n = c.shape[1]
    # (the dot products' types have their own probes: panel_product_q8, _bd)
    if wt not in WEIGHT_TYPES.values():
        raise ValueError(f"panel_product_w: wt must be one of {sorted(WEIGHT_TYPES.values())}, "
                         f"got {wt}")
    wp = np.asarray(wp)
    if (wp.dtype != _WEIGHT_DTYPES[wt] or not wp.flags.c_contiguous
            or wp.size != panel_weights(n, k, wt) or c.shape[0] != m or reps < 1
            or m * n * k == 0):
        raise ValueError("panel_product_w: A (m, k), panels of W (n, k) in wt's dtype "
                         "(pack_weight_panels), C (m, n), all non-empty, reps >= 1")
    cdef const float[::1] sc
    cdef const float* sp = NULL
    if wt == WT_I8:
        sc = np.ascontiguousarray(scale, dtype=np.float32)
        if sc.shape[0] != wp.shape[0] * PANEL:
            raise ValueError("panel_product_w: int8 needs scale of 16 ceil(n / 16) floats")
        sp = &sc[0]
    cdef const unsigned char[::1] raw = wp.reshape(-1).view(np.uint8)
    cdef int r
    start = time.perf_counter()
    with nogil:
        for r in range(reps):
            c_panel_gemm_w_lanes(lanes8, m, n, k, &a[0, 0], k, &raw[0], wt, sp, &c[0, 0], n,
                                 accumulate)
    return (time.perf_counter() - start) / reps
