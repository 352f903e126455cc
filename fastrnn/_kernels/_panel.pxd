# cython: language_level=3
"""A float32 matrix product for the recurrent step, on weights packed once per call.

C (m x n) = A (m x k) @ Wᵀ (+ C), W (n x k) packed in panels of 16 rows:
wp[p][kk][j] = W[16 p + j][kk] (zero past n). BLAS packs W again on every call
(for the small m of a recurrence step that is 15-40% of the step, measured
with perf); packed once per layer call, the step is one pass over the panels.
The kernel keeps a 4 x 16 block of C in registers (the loop over k reads one
panel row and four elements of A per step); the last m % 4 rows go in pairs
two panels at a time and a last row four panels at a time, so even one row
has four independent sums in flight and is compiled three times
(baseline x86-64, x86-64-v3 = AVX2+FMA, x86-64-v4 = AVX-512) with the
machine's best one chosen when the library loads (GCC function
multiversioning), so the default build stays portable. Measured on this
machine's AVX-512 clone: ~110 GFLOPS on one core for m = 8..64 (OpenBLAS with
its per-call packing: ~60). float64 keeps using BLAS.
"""

cdef extern from *:
    """
    #include <string.h>
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    #define FASTRNN_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
    #define FASTRNN_PANEL_DISPATCH 1
    #else
    #define FASTRNN_CLONES
    #define FASTRNN_PANEL_DISPATCH 0
    #endif
    #define FASTRNN_PANEL 16
    typedef float fastrnn_v16 __attribute__((vector_size(64)));

    /* dst[p][kk][j] = src[(16 p + j) * sn + kk * sk], zero for 16 p + j >= n,
       for the panels p in [p0, p1) of the (n + 15) / 16 */
    static void fastrnn_pack_panel_range(const float *src, Py_ssize_t n, Py_ssize_t k,
                                         Py_ssize_t sn, Py_ssize_t sk, float *dst,
                                         Py_ssize_t p0, Py_ssize_t p1) {
        for (Py_ssize_t p = p0; p < p1; p++) {
            float *d = dst + p * k * FASTRNN_PANEL;
            for (Py_ssize_t j = 0; j < FASTRNN_PANEL; j++) {
                Py_ssize_t row = p * FASTRNN_PANEL + j;
                if (row < n) {
                    const float *s = src + row * sn;
                    for (Py_ssize_t kk = 0; kk < k; kk++) d[kk * FASTRNN_PANEL + j] = s[kk * sk];
                } else {
                    for (Py_ssize_t kk = 0; kk < k; kk++) d[kk * FASTRNN_PANEL + j] = 0.0f;
                }
            }
        }
    }

    static void fastrnn_pack_panels(const float *src, Py_ssize_t n, Py_ssize_t k,
                                    Py_ssize_t sn, Py_ssize_t sk, float *dst) {
        fastrnn_pack_panel_range(src, n, k, sn, sk, dst, 0, (n + FASTRNN_PANEL - 1) / FASTRNN_PANEL);
    }

    static Py_ssize_t fastrnn_panel_size(Py_ssize_t n, Py_ssize_t k) {
        return (n + FASTRNN_PANEL - 1) / FASTRNN_PANEL * FASTRNN_PANEL * k;
    }

    /* row[16 p + j] (+)= t[j] for the columns of panel p that exist (n columns) */
    static inline void fastrnn_panel_store(float *row, Py_ssize_t n, Py_ssize_t p,
                                           const float *t, int accumulate) {
        Py_ssize_t c0 = p * FASTRNN_PANEL;
        Py_ssize_t cols = n - c0 < FASTRNN_PANEL ? n - c0 : FASTRNN_PANEL;
        if (accumulate) for (Py_ssize_t j = 0; j < cols; j++) row[c0 + j] += t[j];
        else for (Py_ssize_t j = 0; j < cols; j++) row[c0 + j] = t[j];
    }

    /* C = A Wᵀ (accumulate = 0) or C += A Wᵀ (accumulate = 1) */
    FASTRNN_CLONES
    static void fastrnn_panel_gemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                   const float *a, Py_ssize_t lda, const float *wp,
                                   float *c, Py_ssize_t ldc, int accumulate) {
        Py_ssize_t panels = (n + FASTRNN_PANEL - 1) / FASTRNN_PANEL;
        for (Py_ssize_t p = 0; p < panels; p++) {
            const float *w = wp + p * k * FASTRNN_PANEL;
            for (Py_ssize_t r = 0; r + 4 <= m; r += 4) {
                fastrnn_v16 s[4] = {{0}, {0}, {0}, {0}}, wv;
                const float *a0 = a + r * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
                for (Py_ssize_t kk = 0; kk < k; kk++) {
                    memcpy(&wv, w + kk * FASTRNN_PANEL, sizeof wv);
                    s[0] += a0[kk] * wv;
                    s[1] += a1[kk] * wv;
                    s[2] += a2[kk] * wv;
                    s[3] += a3[kk] * wv;
                }
                float t[4][FASTRNN_PANEL];
                memcpy(t, s, sizeof t);
                for (int i = 0; i < 4; i++)
                    fastrnn_panel_store(c + (r + i) * ldc, n, p, t[i], accumulate);
            }
        }
        /* the last m % 4 rows: pairs of rows two panels at a time, then a last
           row four panels at a time; either way four independent sums instead
           of one chain of dependent additions, and each pair streams the
           panels once (a product with few rows is bound by that stream) */
        Py_ssize_t r = m - m % 4;
        for (; r + 2 <= m; r += 2) {
            const float *a0 = a + r * lda, *a1 = a0 + lda;
            Py_ssize_t p = 0;
            for (; p + 2 <= panels; p += 2) {
                const float *w0 = wp + p * k * FASTRNN_PANEL, *w1 = w0 + k * FASTRNN_PANEL;
                fastrnn_v16 s[4] = {{0}, {0}, {0}, {0}}, v[2];
                for (Py_ssize_t kk = 0; kk < k; kk++) {
                    memcpy(&v[0], w0 + kk * FASTRNN_PANEL, sizeof v[0]);
                    memcpy(&v[1], w1 + kk * FASTRNN_PANEL, sizeof v[1]);
                    s[0] += a0[kk] * v[0];
                    s[1] += a0[kk] * v[1];
                    s[2] += a1[kk] * v[0];
                    s[3] += a1[kk] * v[1];
                }
                float t[4][FASTRNN_PANEL];
                memcpy(t, s, sizeof t);
                fastrnn_panel_store(c + r * ldc, n, p, t[0], accumulate);
                fastrnn_panel_store(c + r * ldc, n, p + 1, t[1], accumulate);
                fastrnn_panel_store(c + (r + 1) * ldc, n, p, t[2], accumulate);
                fastrnn_panel_store(c + (r + 1) * ldc, n, p + 1, t[3], accumulate);
            }
            for (; p < panels; p++) {
                const float *w = wp + p * k * FASTRNN_PANEL;
                fastrnn_v16 s[2] = {{0}, {0}}, wv;
                for (Py_ssize_t kk = 0; kk < k; kk++) {
                    memcpy(&wv, w + kk * FASTRNN_PANEL, sizeof wv);
                    s[0] += a0[kk] * wv;
                    s[1] += a1[kk] * wv;
                }
                float t[2][FASTRNN_PANEL];
                memcpy(t, s, sizeof t);
                fastrnn_panel_store(c + r * ldc, n, p, t[0], accumulate);
                fastrnn_panel_store(c + (r + 1) * ldc, n, p, t[1], accumulate);
            }
        }
        for (; r < m; r++) {
            const float *a0 = a + r * lda;
            Py_ssize_t p = 0;
            for (; p + 4 <= panels; p += 4) {
                const float *w0 = wp + p * k * FASTRNN_PANEL, *w1 = w0 + k * FASTRNN_PANEL;
                const float *w2 = w1 + k * FASTRNN_PANEL, *w3 = w2 + k * FASTRNN_PANEL;
                fastrnn_v16 s[4] = {{0}, {0}, {0}, {0}}, v[4];
                for (Py_ssize_t kk = 0; kk < k; kk++) {
                    float av = a0[kk];
                    memcpy(&v[0], w0 + kk * FASTRNN_PANEL, sizeof v[0]);
                    memcpy(&v[1], w1 + kk * FASTRNN_PANEL, sizeof v[1]);
                    memcpy(&v[2], w2 + kk * FASTRNN_PANEL, sizeof v[2]);
                    memcpy(&v[3], w3 + kk * FASTRNN_PANEL, sizeof v[3]);
                    s[0] += av * v[0];
                    s[1] += av * v[1];
                    s[2] += av * v[2];
                    s[3] += av * v[3];
                }
                float t[4][FASTRNN_PANEL];
                memcpy(t, s, sizeof t);
                for (int i = 0; i < 4; i++)
                    fastrnn_panel_store(c + r * ldc, n, p + i, t[i], accumulate);
            }
            for (; p < panels; p++) {
                const float *w = wp + p * k * FASTRNN_PANEL;
                fastrnn_v16 s0 = {0}, wv;
                for (Py_ssize_t kk = 0; kk < k; kk++) {
                    memcpy(&wv, w + kk * FASTRNN_PANEL, sizeof wv);
                    s0 += a0[kk] * wv;
                }
                float t[FASTRNN_PANEL];
                memcpy(t, &s0, sizeof s0);
                fastrnn_panel_store(c + r * ldc, n, p, t, accumulate);
            }
        }
    }

    /* whether the fast clone runs here (else BLAS is the better choice) */
    static int fastrnn_panel_is_fast(void) {
    #if FASTRNN_PANEL_DISPATCH
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    #else
        return 0;
    #endif
    }
    """
    void pack_panels "fastrnn_pack_panels"(const float* src, Py_ssize_t n, Py_ssize_t k,
                                           Py_ssize_t sn, Py_ssize_t sk, float* dst) noexcept nogil
    void pack_panel_range "fastrnn_pack_panel_range"(
        const float* src, Py_ssize_t n, Py_ssize_t k, Py_ssize_t sn, Py_ssize_t sk, float* dst,
        Py_ssize_t p0, Py_ssize_t p1) noexcept nogil
    Py_ssize_t panel_size "fastrnn_panel_size"(Py_ssize_t n, Py_ssize_t k) noexcept nogil
    void panel_gemm "fastrnn_panel_gemm"(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                         const float* a, Py_ssize_t lda, const float* wp,
                                         float* c, Py_ssize_t ldc, int accumulate) noexcept nogil
    int panel_is_fast "fastrnn_panel_is_fast"() noexcept nogil
