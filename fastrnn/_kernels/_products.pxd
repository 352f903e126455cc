# cython: language_level=3
"""The products of the kernels and the one strided copy they gather with.

Each product says its numpy equivalent; each runs on packed float32 panels
when the caller has them (wp not NULL) and on scipy's BLAS otherwise (float64,
or the "blas" panel variant). None of them raises.
"""
from cython cimport floating
from libc.string cimport memcpy

from fastrnn._blas cimport gemm, gemm_abt, gemv_ax
from fastrnn._kernels._layout cimport Prepacked
from fastrnn._kernels._panels cimport (dot_prepare, panel_gemm, panel_gemm_dot, panel_gemm_w,
                                      panel_steps, weight_bytes)


cdef inline void copy_strided(floating* dst, const floating* src, Py_ssize_t count,
                              Py_ssize_t stride) noexcept nogil:
    """dst[i] = src[i * stride] for i < count (a memcpy for unit stride): every
    gather of input rows, token columns and their slices."""
    cdef Py_ssize_t i
    if stride == 1:
        memcpy(dst, src, count * sizeof(floating))
    else:
        for i in range(count):
            dst[i] = src[i * stride]


cdef inline void times_wt(Py_ssize_t n, Py_ssize_t m, Py_ssize_t k, const floating* a,
                          Py_ssize_t lda, const floating* w, Py_ssize_t ldw, floating beta,
                          floating* c, Py_ssize_t ldc) noexcept nogil:
    """C (n x m, row stride ldc) = A (n x k, row stride lda) @ Wᵀ + beta C, W stored
    m x k (row stride ldw): the shape of every projection by a PyTorch weight.
    One row is a matrix-vector product (BLAS gemv has far less overhead)."""
    if n == 1:
        # c = W a + beta c
        gemv_ax(<int> m, <int> k, w, <int> ldw, a, beta, c)
    else:
        # C = A @ Wᵀ + beta C
        gemm_abt(<int> n, <int> m, <int> k, a, <int> lda, w, <int> ldw, beta, c, <int> ldc)


cdef inline void step_wt(Py_ssize_t n, Py_ssize_t m, Py_ssize_t k, const floating* a,
                         Py_ssize_t lda, const floating* w, const float* wp, floating beta,
                         floating* c, Py_ssize_t ldc) noexcept nogil:
    """The forward product C (n x m) = A @ Wᵀ + beta C, W (m x k) contiguous:
    on the panels wp (packed W) when given (float32), else BLAS."""
    if floating is float:
        if wp != NULL:
            panel_gemm(n, m, k, a, lda, wp, c, ldc, beta != 0)
            return
    times_wt(n, m, k, a, lda, w, k, beta, c, ldc)


cdef inline void step_w(Py_ssize_t n, Py_ssize_t m, Py_ssize_t k, const floating* a,
                        Py_ssize_t lda, const floating* w, Py_ssize_t ldw, const float* wp,
                        floating beta, floating* c, Py_ssize_t ldc) noexcept nogil:
    """The backward product C (n x m) = A (n x k) @ W + beta C, W (k x m) with
    row stride ldw: on the panels wp (packed columns of W, transposed) when
    given (float32), else BLAS."""
    if floating is float:
        if wp != NULL:
            panel_gemm(n, m, k, a, lda, wp, c, ldc, beta != 0)
            return
    # C = A @ W + beta C
    gemm(c'N', c'N', <int> n, <int> m, <int> k, <floating> 1, a, <int> lda, w, <int> ldw,
         beta, c, <int> ldc)


cdef inline void unit_wt_packed(Py_ssize_t n, Py_ssize_t q0, Py_ssize_t nq, Py_ssize_t U,
                                Py_ssize_t u0, Py_ssize_t K, const float* a,
                                const Prepacked* pre, bint ih, unsigned char* qwork,
                                bint accumulate, float* c, Py_ssize_t ldc) noexcept nogil:
    """unit_wt on weights packed once (pre: W_ih's with ih, else W_hh's, rows
    of length K): one product per gate block (u0 a multiple of PANEL: the
    thread's share starts at a whole panel). On dot products (weight types 4,
    5) A is prepared once into qwork (dot_work bytes) for every block."""
    cdef Py_ssize_t q, g
    cdef int wt = pre.ih_wt if ih else pre.hh_wt
    # bytes per packed row of K (bfloat16 in pairs of steps, int8 dot products in fours)
    cdef Py_ssize_t row_bytes = panel_steps(wt, K) * weight_bytes(wt)
    cdef const char* base = <const char*> (pre.ih if ih else pre.hh)
    cdef const float* scale = pre.ih_scale if ih else pre.hh_scale
    cdef const int* sums = pre.ih_sums if ih else pre.hh_sums
    if wt >= 4:
        dot_prepare(wt, n, K, a, K, qwork)
    for q in range(nq):
        g = q0 + q
        # C[:, q U .. (q + 1) U] (+)= A @ W[g H + u0 .. g H + u0 + U]ᵀ
        if wt >= 4:
            panel_gemm_dot(wt, n, U, K, qwork, base + (g * pre.Hp + u0) * row_bytes,
                           sums + g * pre.Hp + u0 if sums != NULL else NULL,
                           scale + g * pre.Hp + u0 if scale != NULL else NULL, c + q * U, ldc,
                           accumulate)
        else:
            panel_gemm_w(n, U, K, a, K, base + (g * pre.Hp + u0) * row_bytes, wt,
                         scale + g * pre.Hp + u0 if scale != NULL else NULL, c + q * U, ldc,
                         accumulate)


cdef inline void gates_wt(Py_ssize_t n, Py_ssize_t q0, Py_ssize_t nq, Py_ssize_t H,
                          Py_ssize_t K, const floating* a, const floating* w, const float* wp,
                          const Prepacked* pre, bint ih, unsigned char* qwork, floating beta,
                          floating* c, Py_ssize_t ldc) noexcept nogil:
    """The batch split's forward product: C[:, gate blocks q < nq] (=, or +=
    with beta 1) A @ W[gates q0 .. q0 + nq]ᵀ, A (n x K) contiguous, W with H
    rows per gate of length K, contiguous: on the module's weights packed
    once (pre's W_ih with ih, else its W_hh, when it has them: float32), else
    step_wt (wp: the call's panels of those gates, or BLAS)."""
    if floating is float:
        if (pre.ih if ih else pre.hh) != NULL:
            unit_wt_packed(n, q0, nq, H, 0, K, a, pre, ih, qwork, beta != 0, c, ldc)
            return
    step_wt(n, nq * H, K, a, K, w + q0 * H * K, wp, beta, c, ldc)


cdef inline void unit_wt(Py_ssize_t n, Py_ssize_t q0, Py_ssize_t nq, Py_ssize_t U,
                         Py_ssize_t u0, Py_ssize_t H, Py_ssize_t K, const floating* a,
                         const floating* w, const float* wp, const Prepacked* pre, bint ih,
                         unsigned char* qwork, floating beta, floating* c,
                         Py_ssize_t ldc) noexcept nogil:
    """The unit split's forward product: C[:, gate block q] (=, or += with beta
    1) A @ W[gate q0 + q, units u0 .. u0+U]ᵀ for q < nq, W with H rows per gate
    and rows of length K (A: n x K, contiguous), gate block q at columns q U
    of C: on the module's weights packed once (pre's W_ih with ih, else its
    W_hh, when it has them: float32), or one product on the thread's packed
    panels wp, or one BLAS call per gate."""
    cdef Py_ssize_t q
    if floating is float:
        if (pre.ih if ih else pre.hh) != NULL:
            unit_wt_packed(n, q0, nq, U, u0, K, a, pre, ih, qwork, beta != 0, c, ldc)
            return
        if wp != NULL:
            panel_gemm(n, nq * U, K, a, K, wp, c, ldc, beta != 0)
            return
    for q in range(nq):
        times_wt(n, U, K, a, K, w + ((q0 + q) * H + u0) * K, K, beta, c + q * U, ldc)
