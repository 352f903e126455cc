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
    typedef int fastrnn_i16 __attribute__((vector_size(64)));

    /* one exchange of a 16 x 16 transpose: vectors i and j (= i + s) swap the
       lanes whose index has bit b set in i's copy and clear in j's */
    #define FASTRNN_SWAP(i, j, b) do { \
            fastrnn_v16 a_ = v##i, c_ = v##j; \
            v##i = __builtin_shuffle(a_, c_, lo##b); \
            v##j = __builtin_shuffle(a_, c_, hi##b); \
        } while (0)

    /* one panel, d[kk][j] = rows[j][kk] for kk < k, from 16 rows of contiguous
       elements: 16 x 16 blocks are transposed in registers in four rounds,
       each exchanging one bit of the row index with that bit of the lane index */
    FASTRNN_CLONES
    static void fastrnn_pack_panel_rows(const float **rows, Py_ssize_t k, float *d) {
        const fastrnn_i16 lo0 = {0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30};
        const fastrnn_i16 hi0 = {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31};
        const fastrnn_i16 lo1 = {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29};
        const fastrnn_i16 hi1 = {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31};
        const fastrnn_i16 lo2 = {0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27};
        const fastrnn_i16 hi2 = {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31};
        const fastrnn_i16 lo3 = {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23};
        const fastrnn_i16 hi3 = {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31};
        Py_ssize_t kk = 0;
        for (; kk + FASTRNN_PANEL <= k; kk += FASTRNN_PANEL) {
            fastrnn_v16 v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15;
            memcpy(&v0, rows[0] + kk, 64);   memcpy(&v1, rows[1] + kk, 64);
            memcpy(&v2, rows[2] + kk, 64);   memcpy(&v3, rows[3] + kk, 64);
            memcpy(&v4, rows[4] + kk, 64);   memcpy(&v5, rows[5] + kk, 64);
            memcpy(&v6, rows[6] + kk, 64);   memcpy(&v7, rows[7] + kk, 64);
            memcpy(&v8, rows[8] + kk, 64);   memcpy(&v9, rows[9] + kk, 64);
            memcpy(&v10, rows[10] + kk, 64); memcpy(&v11, rows[11] + kk, 64);
            memcpy(&v12, rows[12] + kk, 64); memcpy(&v13, rows[13] + kk, 64);
            memcpy(&v14, rows[14] + kk, 64); memcpy(&v15, rows[15] + kk, 64);
            FASTRNN_SWAP(0, 1, 0);  FASTRNN_SWAP(2, 3, 0);  FASTRNN_SWAP(4, 5, 0);
            FASTRNN_SWAP(6, 7, 0);  FASTRNN_SWAP(8, 9, 0);  FASTRNN_SWAP(10, 11, 0);
            FASTRNN_SWAP(12, 13, 0); FASTRNN_SWAP(14, 15, 0);
            FASTRNN_SWAP(0, 2, 1);  FASTRNN_SWAP(1, 3, 1);  FASTRNN_SWAP(4, 6, 1);
            FASTRNN_SWAP(5, 7, 1);  FASTRNN_SWAP(8, 10, 1); FASTRNN_SWAP(9, 11, 1);
            FASTRNN_SWAP(12, 14, 1); FASTRNN_SWAP(13, 15, 1);
            FASTRNN_SWAP(0, 4, 2);  FASTRNN_SWAP(1, 5, 2);  FASTRNN_SWAP(2, 6, 2);
            FASTRNN_SWAP(3, 7, 2);  FASTRNN_SWAP(8, 12, 2); FASTRNN_SWAP(9, 13, 2);
            FASTRNN_SWAP(10, 14, 2); FASTRNN_SWAP(11, 15, 2);
            FASTRNN_SWAP(0, 8, 3);  FASTRNN_SWAP(1, 9, 3);  FASTRNN_SWAP(2, 10, 3);
            FASTRNN_SWAP(3, 11, 3); FASTRNN_SWAP(4, 12, 3); FASTRNN_SWAP(5, 13, 3);
            FASTRNN_SWAP(6, 14, 3); FASTRNN_SWAP(7, 15, 3);
            float *o = d + kk * FASTRNN_PANEL;
            memcpy(o, &v0, 64);        memcpy(o + 16, &v1, 64);   memcpy(o + 32, &v2, 64);
            memcpy(o + 48, &v3, 64);   memcpy(o + 64, &v4, 64);   memcpy(o + 80, &v5, 64);
            memcpy(o + 96, &v6, 64);   memcpy(o + 112, &v7, 64);  memcpy(o + 128, &v8, 64);
            memcpy(o + 144, &v9, 64);  memcpy(o + 160, &v10, 64); memcpy(o + 176, &v11, 64);
            memcpy(o + 192, &v12, 64); memcpy(o + 208, &v13, 64); memcpy(o + 224, &v14, 64);
            memcpy(o + 240, &v15, 64);
        }
        for (; kk < k; kk++)
            for (int j = 0; j < 16; j++) d[kk * FASTRNN_PANEL + j] = rows[j][kk];
    }

    /* one panel from its first `count` rows (rows of contiguous elements; the
       panel's other rows are zero): the transposes when all 16 are there */
    static void fastrnn_pack_panel(const float **rows, int count, Py_ssize_t k, float *d) {
        if (count == FASTRNN_PANEL) {
            fastrnn_pack_panel_rows(rows, k, d);
            return;
        }
        for (int j = 0; j < FASTRNN_PANEL; j++)
            for (Py_ssize_t kk = 0; kk < k; kk++)
                d[kk * FASTRNN_PANEL + j] = j < count ? rows[j][kk] : 0.0f;
    }

    /* dst[p][kk][j] = src[(16 p + j) * sn + kk * sk], zero for 16 p + j >= n,
       for the panels p in [p0, p1) of the (n + 15) / 16: rows of contiguous
       elements (sk == 1) through 16 x 16 transposes, contiguous columns
       (sn == 1, a transposed matrix) as plain copies */
    static void fastrnn_pack_panel_range(const float *src, Py_ssize_t n, Py_ssize_t k,
                                         Py_ssize_t sn, Py_ssize_t sk, float *dst,
                                         Py_ssize_t p0, Py_ssize_t p1) {
        for (Py_ssize_t p = p0; p < p1; p++) {
            float *d = dst + p * k * FASTRNN_PANEL;
            Py_ssize_t c0 = p * FASTRNN_PANEL;
            Py_ssize_t cols = n - c0 < FASTRNN_PANEL ? n - c0 : FASTRNN_PANEL;
            if (sk == 1) {
                const float *rows[16];
                for (int j = 0; j < cols; j++) rows[j] = src + (c0 + j) * sn;
                fastrnn_pack_panel(rows, (int) cols, k, d);
            } else if (sn == 1) {
                for (Py_ssize_t kk = 0; kk < k; kk++) {
                    memcpy(d + kk * FASTRNN_PANEL, src + kk * sk + c0, cols * sizeof(float));
                    memset(d + kk * FASTRNN_PANEL + cols, 0, (FASTRNN_PANEL - cols) * sizeof(float));
                }
            } else {
                for (Py_ssize_t j = 0; j < FASTRNN_PANEL; j++) {
                    const float *s = src + (c0 + j) * sn;
                    for (Py_ssize_t kk = 0; kk < k; kk++)
                        d[kk * FASTRNN_PANEL + j] = j < cols ? s[kk * sk] : 0.0f;
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
    void pack_panel "fastrnn_pack_panel"(const float** rows, int count, Py_ssize_t k,
                                         float* dst) noexcept nogil
    Py_ssize_t panel_size "fastrnn_panel_size"(Py_ssize_t n, Py_ssize_t k) noexcept nogil
    void panel_gemm "fastrnn_panel_gemm"(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                         const float* a, Py_ssize_t lda, const float* wp,
                                         float* c, Py_ssize_t ldc, int accumulate) noexcept nogil
    int panel_is_fast "fastrnn_panel_is_fast"() noexcept nogil
