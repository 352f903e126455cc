# cython: language_level=3
"""The products of the kernels and the one strided copy they gather with.

Each product says its numpy equivalent; each runs on packed float32 panels
when the caller has them (wp not NULL) and on scipy's BLAS otherwise (float64,
or the "blas" panel variant). None of them raises.
"""
from cython cimport floating
from libc.string cimport memcpy

from fastrnn._blas cimport gemm, gemm_abt, gemv_ax
from fastrnn._kernels._panels cimport panel_gemm


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


cdef inline void unit_wt(Py_ssize_t n, Py_ssize_t q0, Py_ssize_t nq, Py_ssize_t U,
                         Py_ssize_t u0, Py_ssize_t H, Py_ssize_t K, const floating* a,
                         const floating* w, const float* wp, floating beta,
                         floating* c, Py_ssize_t ldc) noexcept nogil:
    """The unit split's forward product: C[:, gate block q] (=, or += with beta
    1) A @ W[gate q0 + q, units u0 .. u0+U]ᵀ for q < nq, W with H rows per gate
    and rows of length K (A: n x K, contiguous), gate block q at columns q U
    of C: one product on the thread's packed panels wp, or one BLAS call per
    gate."""
    cdef Py_ssize_t q
    if floating is float:
        if wp != NULL:
            panel_gemm(n, nq * U, K, a, K, wp, c, ldc, beta != 0)
            return
    for q in range(nq):
        times_wt(n, U, K, a, K, w + ((q0 + q) * H + u0) * K, K, beta, c + q * U, ldc)
