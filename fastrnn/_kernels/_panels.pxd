# cython: language_level=3
"""A float32 matrix product for the recurrent step, on weights packed once per call.

C (m x n) = A (m x k) @ Wᵀ (+ C), W (n x k) packed in panels of 16 rows:
wp[p][kk][j] = W[16 p + j][kk] (zero past n). BLAS packs W again on every call
(for the small m of a recurrence step that is a large part of the step, as
perf shows); packed once per layer call, the step is one pass over the panels.
The kernel is blocked as a GEMM: a register tile of 6 rows of C x one panel
(AVX2, 12 accumulators of 8 floats) or 8 rows x three panels (AVX-512, 24
of 16 floats); k in blocks whose panels take at most a quarter of L2, A's
rows read in place (packed tile by tile, in blocks that fill at most half of
L2, when they lie a multiple of 4 KiB apart), both from the CPU plan's
caches (set_cache_sizes, blocking); a product of few rows takes more panels
per tile, so even one row has 12 independent sums in flight. The same
kernels read panels of half, bfloat16 or int8 weights (panel_gemm_w: each
panel row widened in registers, int8 sums scaled per column at the end),
for a quantized module's weights packed once (pack_weight_panels).

The C code is in _panel.h and _panel_isa.h: one variant per instruction set
(AVX-512: a panel row is one register; AVX2 + FMA: two), compiled with GCC
target attributes so the default build stays portable. This module is built
once; it holds the one selection state (the variant the CPU runs best, or
the one FASTRNN_PANEL names, or "blas") that every kernel build reads, and
it also says which kernel build this CPU runs (FASTRNN_KERNELS).
`python -m bench.limits` times every variant beside BLAS. float64, and CPUs
or compilers without a variant, use BLAS.
"""

cdef enum:
    PANEL = 16               # rows of W in one panel (the C code's FASTRNN_PANEL)


cdef inline Py_ssize_t panel_size(Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """Floats of W (n x k) in panels: n rounded up to whole panels."""
    return (n + PANEL - 1) // PANEL * PANEL * k


# whether the float32 step products run on packed panels (a variant is selected)
cdef bint panels_on() noexcept nogil

# the L2 of one core and the L3 (bytes; 0: unknown) of the CPU plan
cdef Py_ssize_t cache_l2() noexcept nogil
cdef Py_ssize_t cache_l3() noexcept nogil

# C (m x n) (+)= A (m x k, row stride lda) @ Wᵀ, W packed (wp)
cdef void panel_gemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a,
                     Py_ssize_t lda, const float* wp, float* c, Py_ssize_t ldc,
                     bint accumulate) noexcept nogil

# the same on W given by its rows, not packed: row r of its n at w + (r / block) bstride
# + (r % block) ldw (the unit split's rows of every gate for its units); each group
# of panels packed into wbuf (room for W packed) as the product reaches it, so the
# packed weights stay in L2: panel_gemm's bits on W packed
cdef void panel_gemm_rows(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a,
                          Py_ssize_t lda, const float* w, Py_ssize_t ldw, Py_ssize_t block,
                          Py_ssize_t bstride, float* wbuf, float* c, Py_ssize_t ldc,
                          bint accumulate) noexcept nogil

# every panel of W given by its rows as panel_gemm_rows takes them (n rows of k) into dst
cdef void pack_rows(Py_ssize_t n, Py_ssize_t k, const float* w, Py_ssize_t ldw,
                    Py_ssize_t block, Py_ssize_t bstride, float* dst) noexcept nogil

# the same on W packed in panels of weight type wt (0 float32, 1 half, 2 bfloat16,
# 3 int8 standing for code x scale[column]); 16-bit ones give panel_gemm's bits on
# the widened weights (pack_weight_panels packs them)
cdef void panel_gemm_w(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a,
                       Py_ssize_t lda, const void* wp, int wt, const float* scale, float* c,
                       Py_ssize_t ldc, bint accumulate) noexcept nogil

# the dot products (wt 4: int8 weights, A quantized to 255 levels per row; 5:
# bfloat16 weights, A rounded): whether they run here, the bytes of A prepared
# (m rows of k), A prepared once, then C (m x n) (+)= A Wᵀ for each block of W
# (int8: quads with column sums and scales, pack_weight_quads; bfloat16: pairs of
# steps, pack_weight_panels)
# the steps (elements of k) one packed row of weights of type wt holds (k rounded
# up to whole pairs for bfloat16, fours for int8 dot products); bytes per weight
cdef Py_ssize_t panel_steps(int wt, Py_ssize_t k) noexcept nogil
cdef Py_ssize_t weight_bytes(int wt) noexcept nogil
cdef bint dot_on(int wt) noexcept nogil
cdef Py_ssize_t dot_work(int wt, Py_ssize_t m, Py_ssize_t k) noexcept nogil
cdef void dot_prepare(int wt, Py_ssize_t m, Py_ssize_t k, const float* a, Py_ssize_t lda,
                      unsigned char* work) noexcept nogil
cdef void panel_gemm_dot(int wt, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                         const unsigned char* work, const void* w, const int* sums,
                         const float* scale, float* c, Py_ssize_t ldc,
                         bint accumulate) noexcept nogil

# y[r] (+)= W[r, :] . a for r < m, W row-major (row stride ldw), as stored; each
# row's sum in one order whatever rows it is computed with
cdef void rows_dot(Py_ssize_t m, Py_ssize_t k, const float* w, Py_ssize_t ldw, const float* a,
                   float* y, bint accumulate) noexcept nogil

# rows_dot on W stored in 16 bits (IEEE half, or bfloat16 with bf16), widened in
# registers: the bits of rows_dot on the widened weights
cdef void rows_dot16(Py_ssize_t m, Py_ssize_t k, const unsigned short* w, Py_ssize_t ldw,
                     const float* a, float* y, bint accumulate, bint bf16) noexcept nogil

# C (m x n) += Aᵀ B over k rows (A: k x m, row stride lda), B packed (bp);
# colsum (m; NULL: none) += the sums of A's columns
cdef void panel_gemm_tn(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a,
                        Py_ssize_t lda, const float* bp, float* c, Py_ssize_t ldc,
                        float* colsum) noexcept nogil

# two such products on the same A, copied once: C1 (m x n1) += Aᵀ B1, C2 (m
# x n2) += Aᵀ B2, each with its colsum (NULL: none) += the sums of A's columns
cdef void panel_gemm_tn_pair(Py_ssize_t m, Py_ssize_t k, const float* a, Py_ssize_t lda,
                             const float* bp1, Py_ssize_t n1, float* c1, Py_ssize_t ldc1,
                             float* colsum1, const float* bp2, Py_ssize_t n2, float* c2,
                             Py_ssize_t ldc2, float* colsum2) noexcept nogil

# dst[p][kk][j] = src[(16 p + j) * sn + kk * sk] for panels [p0, p1), zero past n
cdef void pack_panel_range(const float* src, Py_ssize_t n, Py_ssize_t k, Py_ssize_t sn,
                           Py_ssize_t sk, float* dst, Py_ssize_t p0, Py_ssize_t p1) noexcept nogil

# every panel of src (n x k, element strides sn, sk)
cdef void pack_panels(const float* src, Py_ssize_t n, Py_ssize_t k, Py_ssize_t sn,
                      Py_ssize_t sk, float* dst) noexcept nogil

# np.empty(n, dtype) starting at a multiple of 64 bytes (see _panels.pyx)
cpdef object aligned_empty(Py_ssize_t n, dtype)
