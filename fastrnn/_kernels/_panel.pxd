# cython: language_level=3
"""A float32 matrix product for the recurrent step, on weights packed once per call.

C (m x n) = A (m x k) @ Wᵀ (+ C), W (n x k) packed in panels of 16 rows:
wp[p][kk][j] = W[16 p + j][kk] (zero past n). BLAS packs W again on every call
(for the small m of a recurrence step that is 15-40% of the step, measured
with perf); packed once per layer call, the step is one pass over the panels.
The kernel keeps a 4 x 16 block of C in registers (the loop over k reads one
panel row and four elements of A per step); the last m % 4 rows go in pairs
two panels at a time and a last row four panels at a time, so even one row
has four independent sums in flight.

The C code is in _panel.h and _panel_isa.h: one variant per instruction set
(AVX-512: a panel row is one register; AVX2 + FMA: two), compiled with GCC
target attributes so the default build stays portable, the best one for the
CPU selected when the module loads. Measured on this machine (bench/limits.py
reports both variants): ~110 GFLOPS on one core for m = 8..64 (OpenBLAS with
its per-call packing: ~35-65). float64, and CPUs or compilers without a
variant, use BLAS.
"""

cdef extern from "_panel.h" nogil:
    int PANEL_NONE "FASTRNN_PANEL_NONE"
    int PANEL_AVX2 "FASTRNN_PANEL_AVX2"
    int PANEL_AVX512 "FASTRNN_PANEL_AVX512"
    void pack_panels "fastrnn_pack_panels"(const float* src, Py_ssize_t n, Py_ssize_t k,
                                           Py_ssize_t sn, Py_ssize_t sk, float* dst) noexcept
    void pack_panel_range "fastrnn_pack_panel_range"(
        const float* src, Py_ssize_t n, Py_ssize_t k, Py_ssize_t sn, Py_ssize_t sk, float* dst,
        Py_ssize_t p0, Py_ssize_t p1) noexcept
    void pack_panel "fastrnn_pack_panel"(const float** rows, int count, Py_ssize_t k,
                                         float* dst) noexcept
    Py_ssize_t panel_size "fastrnn_panel_size"(Py_ssize_t n, Py_ssize_t k) noexcept
    void panel_gemm "fastrnn_panel_gemm"(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                         const float* a, Py_ssize_t lda, const float* wp,
                                         float* c, Py_ssize_t ldc, int accumulate) noexcept
    void panel_gemm_tn "fastrnn_panel_gemm_tn"(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                               const float* a, Py_ssize_t lda, const float* bp,
                                               float* c, Py_ssize_t ldc) noexcept
    # variants: whether one runs here, the best, select one (0 if it does not run), the current
    int panel_supported "fastrnn_panel_supported"(int isa) noexcept
    int panel_best "fastrnn_panel_best"() noexcept
    int panel_select "fastrnn_panel_select"(int isa) noexcept
    int panel_selected "fastrnn_panel_selected"() noexcept
