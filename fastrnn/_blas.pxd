# cython: language_level=3
"""Row-major BLAS for float32 and float64 over ``scipy.linalg.cython_blas``.

BLAS is column-major; a row-major matrix M (r x c, leading dimension ld) is the
column-major matrix Mᵀ with the same ld. So the row-major product
C = op(A) @ op(B) is computed as the column-major product Cᵀ = op(B)ᵀ op(A)ᵀ:
swap the operands (and m with n) and keep each operand's transpose flag.

The helpers are inline so every kernel gets a direct call; they never raise.
"""
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, dgemv, sgemm, sgemv


cdef inline void gemm(char trans_a, char trans_b, int m, int n, int k,
                      floating alpha, const floating* a, int lda,
                      const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    """Row-major C (m x n) = alpha * op(A) @ op(B) + beta * C.

    op(A) is m x k, op(B) is k x n; trans_* is c'N' or c'T'. Does nothing when
    the product is empty (m == 0 or n == 0).
    """
    if m <= 0 or n <= 0:
        return
    # column-major: Cᵀ (n x m) = alpha * op(B)ᵀ @ op(A)ᵀ + beta * Cᵀ
    if floating is float:
        sgemm(&trans_b, &trans_a, &n, &m, &k, &alpha, <float*> b, &ldb,
              <float*> a, &lda, &beta, c, &ldc)
    else:
        dgemm(&trans_b, &trans_a, &n, &m, &k, &alpha, <double*> b, &ldb,
              <double*> a, &lda, &beta, c, &ldc)


cdef inline void gemm_abt(int m, int n, int k, const floating* a, int lda,
                          const floating* b, int ldb, floating beta,
                          floating* c, int ldc) noexcept nogil:
    """Row-major C (m x n) = A (m x k) @ Bᵀ + beta * C, with B stored n x k.

    The shape of every projection by a PyTorch weight (gates = inputs @ Wᵀ).
    """
    gemm(c'N', c'T', m, n, k, <floating> 1, a, lda, b, ldb, beta, c, ldc)


cdef inline void gemv_ax(int m, int k, const floating* a, int lda, const floating* x,
                         floating beta, floating* y) noexcept nogil:
    """y (m) = A (m x k, row-major) @ x (k) + beta * y; nothing when m == 0."""
    cdef char trans = c'T'
    cdef int one = 1
    cdef floating alpha = 1
    if m <= 0:
        return
    # column-major: A is Aᵀ (k x m, ld lda), so y = (Aᵀ)ᵀ x
    if floating is float:
        sgemv(&trans, &k, &m, &alpha, <float*> a, &lda, <float*> x, &one, &beta, y, &one)
    else:
        dgemv(&trans, &k, &m, &alpha, <double*> a, &lda, <double*> x, &one, &beta, y, &one)
