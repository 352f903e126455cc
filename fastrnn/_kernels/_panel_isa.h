/* One instruction-set variant of the packed-panel float32 kernels.

   Included by _panel.h once per variant, with
     FASTRNN_ISA         the variant's name, appended to every function name
     FASTRNN_ISA_TARGET  the GCC target the variant's functions are compiled for
     FASTRNN_VW          float lanes of one vector register (16: AVX-512, 8: AVX2)
   A panel row is FASTRNN_PANEL = 16 floats, i.e. FR_NV = 16 / FASTRNN_VW
   registers. The loops over FR_NV have a constant trip count and unroll, so
   every accumulator below lives in a register. Sixteen floats per generic
   vector would be right for AVX-512 only: compiled for AVX2, GCC moves such
   vectors through the stack (an order of magnitude slower than 8-lane ones).
*/
#define FR_CAT2(a, b) a##_##b
#define FR_CAT(a, b) FR_CAT2(a, b)
#define FR(name) FR_CAT(name, FASTRNN_ISA)
#define FR_NV (FASTRNN_PANEL / FASTRNN_VW)
#define FR_ATTR __attribute__((target(FASTRNN_ISA_TARGET)))

typedef float FR(fastrnn_vec) __attribute__((vector_size(FASTRNN_VW * 4)));
typedef int FR(fastrnn_ivec) __attribute__((vector_size(FASTRNN_VW * 4)));
#define FR_VEC FR(fastrnn_vec)
#define FR_IVEC FR(fastrnn_ivec)

/* v[i][l] <-> v[l][i]: transpose a VW x VW block held in registers */
#if FASTRNN_VW == 16
/* four rounds, each exchanging one bit of the row index with that bit of the
   lane index (vectors i and i + 2^b swap the lanes whose index has bit b set
   in i's copy and clear in the other's); each shuffle is one vpermt2ps */
#define FASTRNN_SWAP(i, j, b) do { \
        FR_VEC a_ = v[i], c_ = v[j]; \
        v[i] = __builtin_shuffle(a_, c_, lo##b); \
        v[j] = __builtin_shuffle(a_, c_, hi##b); \
    } while (0)
FR_ATTR static inline void FR(fastrnn_transpose)(FR_VEC *v) {
    const FR_IVEC lo0 = {0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30};
    const FR_IVEC hi0 = {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31};
    const FR_IVEC lo1 = {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29};
    const FR_IVEC hi1 = {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31};
    const FR_IVEC lo2 = {0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27};
    const FR_IVEC hi2 = {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31};
    const FR_IVEC lo3 = {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23};
    const FR_IVEC hi3 = {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31};
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
}
#undef FASTRNN_SWAP
#elif FASTRNN_VW == 8
/* AVX2 has no two-source permute across 128-bit halves: the usual three
   rounds of single instructions (unpcklps/unpckhps, shufps, vperm2f128) */
FR_ATTR static inline void FR(fastrnn_transpose)(FR_VEC *v) {
    const FR_IVEC unlo = {0, 8, 1, 9, 4, 12, 5, 13}, unhi = {2, 10, 3, 11, 6, 14, 7, 15};
    const FR_IVEC shlo = {0, 1, 8, 9, 4, 5, 12, 13}, shhi = {2, 3, 10, 11, 6, 7, 14, 15};
    const FR_IVEC pmlo = {0, 1, 2, 3, 8, 9, 10, 11}, pmhi = {4, 5, 6, 7, 12, 13, 14, 15};
    FR_VEC t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = __builtin_shuffle(v[i], v[i + 1], unlo);
        t[i + 1] = __builtin_shuffle(v[i], v[i + 1], unhi);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = __builtin_shuffle(t[i], t[i + 2], shlo);
        u[i + 1] = __builtin_shuffle(t[i], t[i + 2], shhi);
        u[i + 2] = __builtin_shuffle(t[i + 1], t[i + 3], shlo);
        u[i + 3] = __builtin_shuffle(t[i + 1], t[i + 3], shhi);
    }
    for (int i = 0; i < 4; i++) {
        v[i] = __builtin_shuffle(u[i], u[i + 4], pmlo);
        v[i + 4] = __builtin_shuffle(u[i], u[i + 4], pmhi);
    }
}
#else
#error "FASTRNN_VW must be 8 or 16"
#endif

/* one panel, d[kk][j] = rows[j][kk] for kk < k, from 16 rows of contiguous
   elements, VW x VW blocks at a time through register transposes */
FR_ATTR static void FR(fastrnn_pack_panel_rows)(const float **rows, Py_ssize_t k, float *d) {
    FR_VEC v[FASTRNN_VW];
    Py_ssize_t kk = 0;
    for (; kk + FASTRNN_VW <= k; kk += FASTRNN_VW) {
#pragma GCC unroll 2
        for (int j0 = 0; j0 < FASTRNN_PANEL; j0 += FASTRNN_VW) {
#pragma GCC unroll 16
            for (int j = 0; j < FASTRNN_VW; j++) memcpy(&v[j], rows[j0 + j] + kk, sizeof v[j]);
            FR(fastrnn_transpose)(v);
#pragma GCC unroll 16
            for (int i = 0; i < FASTRNN_VW; i++)
                memcpy(d + (kk + i) * FASTRNN_PANEL + j0, &v[i], sizeof v[i]);
        }
    }
    for (; kk < k; kk++)
        for (int j = 0; j < FASTRNN_PANEL; j++) d[kk * FASTRNN_PANEL + j] = rows[j][kk];
}

/* the accumulators of one panel row: s[i] (+)= av * w[kk], i < FR_NV */
#define FR_FMA(s, av, w) do { \
        FR_VEC w_; \
        for (int v_ = 0; v_ < FR_NV; v_++) { \
            memcpy(&w_, (w) + v_ * FASTRNN_VW, sizeof w_); \
            (s)[v_] += (av) * w_; \
        } \
    } while (0)

/* store (or add) the accumulators of one panel of one row of C */
#define FR_STORE(row, p, s) do { \
        float t_[FASTRNN_PANEL]; \
        memcpy(t_, (s), sizeof t_); \
        fastrnn_panel_store((row), n, (p), t_, accumulate); \
    } while (0)

/* C = A Wᵀ (accumulate = 0) or C += A Wᵀ (accumulate = 1), W packed in panels */
FR_ATTR static void FR(fastrnn_panel_gemm)(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                           const float *a, Py_ssize_t lda, const float *wp,
                                           float *c, Py_ssize_t ldc, int accumulate) {
    Py_ssize_t panels = (n + FASTRNN_PANEL - 1) / FASTRNN_PANEL;
    /* blocks of 4 rows x one panel, the loop over k reading one panel row and
       four elements of A per step */
    for (Py_ssize_t p = 0; p < panels; p++) {
        const float *w = wp + p * k * FASTRNN_PANEL;
        for (Py_ssize_t r = 0; r + 4 <= m; r += 4) {
            FR_VEC s[4][FR_NV] = {{{0}}};
            const float *a0 = a + r * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
            for (Py_ssize_t kk = 0; kk < k; kk++) {
                const float *wk = w + kk * FASTRNN_PANEL;
                FR_FMA(s[0], a0[kk], wk);
                FR_FMA(s[1], a1[kk], wk);
                FR_FMA(s[2], a2[kk], wk);
                FR_FMA(s[3], a3[kk], wk);
            }
            for (int i = 0; i < 4; i++) FR_STORE(c + (r + i) * ldc, p, s[i]);
        }
    }
    /* the last m % 4 rows: pairs of rows two panels at a time, then a last
       row four panels at a time; either way four independent sums (per
       register of a panel row) instead of one chain of dependent additions,
       and each pair streams the panels once (a product with few rows is bound
       by that stream) */
    Py_ssize_t r = m - m % 4;
    for (; r + 2 <= m; r += 2) {
        const float *a0 = a + r * lda, *a1 = a0 + lda;
        Py_ssize_t p = 0;
        for (; p + 2 <= panels; p += 2) {
            const float *w0 = wp + p * k * FASTRNN_PANEL, *w1 = w0 + k * FASTRNN_PANEL;
            FR_VEC s[4][FR_NV] = {{{0}}};
            for (Py_ssize_t kk = 0; kk < k; kk++) {
                FR_FMA(s[0], a0[kk], w0 + kk * FASTRNN_PANEL);
                FR_FMA(s[1], a0[kk], w1 + kk * FASTRNN_PANEL);
                FR_FMA(s[2], a1[kk], w0 + kk * FASTRNN_PANEL);
                FR_FMA(s[3], a1[kk], w1 + kk * FASTRNN_PANEL);
            }
            FR_STORE(c + r * ldc, p, s[0]);
            FR_STORE(c + r * ldc, p + 1, s[1]);
            FR_STORE(c + (r + 1) * ldc, p, s[2]);
            FR_STORE(c + (r + 1) * ldc, p + 1, s[3]);
        }
        for (; p < panels; p++) {
            const float *w = wp + p * k * FASTRNN_PANEL;
            FR_VEC s[2][FR_NV] = {{{0}}};
            for (Py_ssize_t kk = 0; kk < k; kk++) {
                FR_FMA(s[0], a0[kk], w + kk * FASTRNN_PANEL);
                FR_FMA(s[1], a1[kk], w + kk * FASTRNN_PANEL);
            }
            FR_STORE(c + r * ldc, p, s[0]);
            FR_STORE(c + (r + 1) * ldc, p, s[1]);
        }
    }
    for (; r < m; r++) {
        const float *a0 = a + r * lda;
        Py_ssize_t p = 0;
        for (; p + 4 <= panels; p += 4) {
            const float *w0 = wp + p * k * FASTRNN_PANEL;
            FR_VEC s[4][FR_NV] = {{{0}}};
            for (Py_ssize_t kk = 0; kk < k; kk++) {
                float av = a0[kk];
                for (int i = 0; i < 4; i++)
                    FR_FMA(s[i], av, w0 + (i * k + kk) * FASTRNN_PANEL);
            }
            for (int i = 0; i < 4; i++) FR_STORE(c + r * ldc, p + i, s[i]);
        }
        for (; p < panels; p++) {
            const float *w = wp + p * k * FASTRNN_PANEL;
            FR_VEC s[1][FR_NV] = {{{0}}};
            for (Py_ssize_t kk = 0; kk < k; kk++) FR_FMA(s[0], a0[kk], w + kk * FASTRNN_PANEL);
            FR_STORE(c + r * ldc, p, s[0]);
        }
    }
}

/* add the accumulators of one panel of one row into C (n columns) */
#define FR_STORE_ADD(row, p, s) do { \
        if (((p) + 1) * FASTRNN_PANEL <= n) { \
            float *c_ = (row) + (p) * FASTRNN_PANEL; \
            for (int v_ = 0; v_ < FR_NV; v_++) { \
                FR_VEC x_; \
                memcpy(&x_, c_ + v_ * FASTRNN_VW, sizeof x_); \
                x_ += (s)[v_]; \
                memcpy(c_ + v_ * FASTRNN_VW, &x_, sizeof x_); \
            } \
        } else { \
            float u_[FASTRNN_PANEL]; \
            memcpy(u_, (s), sizeof u_); \
            fastrnn_panel_store((row), n, (p), u_, 1); \
        } \
    } while (0)

/* rows of C per register block of the transposed product: the accumulators
   (FR_TN_ROWS x two panels) take 16 of the registers */
#define FR_TN_ROWS (FR_NV == 1 ? 8 : 4)
#define FR_TN_PANELS (FR_NV == 1 ? 2 : 1)

/* C (m x n) += Aᵀ B over k shared rows: A (k x m, row stride lda), B packed in
   panels of 16 columns with k rows each (bp[p][kk][j] = B[kk][16 p + j], zero
   past n; fastrnn_pack_panels(B, n, k, 1, ldb, bp)). The weight gradients of
   BPTT have this shape (dW = dGᵀ X, summed over every step's rows). Per chunk
   of k (its panels of B stay in L2), each block of FR_TN_ROWS rows of C
   copies its columns of A to a contiguous strip on the stack (read in place,
   the rows of A lie a stride apart that maps them to the same L1 sets), then
   runs over the panels with FR_TN_ROWS x FR_TN_PANELS panel rows of C in
   registers. */
FR_ATTR static void FR(fastrnn_panel_gemm_tn)(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                              const float *a, Py_ssize_t lda, const float *bp,
                                              float *c, Py_ssize_t ldc) {
    enum { CHUNK = 256 };
    float strip[CHUNK * FR_TN_ROWS];
    Py_ssize_t panels = (n + FASTRNN_PANEL - 1) / FASTRNN_PANEL;
    for (Py_ssize_t k0 = 0; k0 < k; k0 += CHUNK) {
        Py_ssize_t kc = k - k0 < CHUNK ? k - k0 : CHUNK;
        Py_ssize_t r = 0;
        for (; r + FR_TN_ROWS <= m; r += FR_TN_ROWS) {
            for (Py_ssize_t kk = 0; kk < kc; kk++)
                memcpy(strip + kk * FR_TN_ROWS, a + (k0 + kk) * lda + r, sizeof(float) * FR_TN_ROWS);
            Py_ssize_t p = 0;
            for (; p + FR_TN_PANELS <= panels; p += FR_TN_PANELS) {
                FR_VEC s[FR_TN_ROWS][FR_TN_PANELS][FR_NV] = {{{{0}}}};
                for (Py_ssize_t kk = 0; kk < kc; kk++) {
                    const float *ar = strip + kk * FR_TN_ROWS;
                    for (int q = 0; q < FR_TN_PANELS; q++) {
                        const float *w = bp + ((p + q) * k + k0 + kk) * FASTRNN_PANEL;
                        for (int i = 0; i < FR_TN_ROWS; i++) FR_FMA(s[i][q], ar[i], w);
                    }
                }
                for (int i = 0; i < FR_TN_ROWS; i++)
                    for (int q = 0; q < FR_TN_PANELS; q++) FR_STORE_ADD(c + (r + i) * ldc, p + q, s[i][q]);
            }
            for (; p < panels; p++) {               /* a last single panel */
                FR_VEC s[FR_TN_ROWS][FR_NV] = {{{0}}};
                for (Py_ssize_t kk = 0; kk < kc; kk++) {
                    const float *ar = strip + kk * FR_TN_ROWS;
                    const float *w = bp + (p * k + k0 + kk) * FASTRNN_PANEL;
                    for (int i = 0; i < FR_TN_ROWS; i++) FR_FMA(s[i], ar[i], w);
                }
                for (int i = 0; i < FR_TN_ROWS; i++) FR_STORE_ADD(c + (r + i) * ldc, p, s[i]);
            }
        }
        for (; r < m; r++) {                         /* the last m % FR_TN_ROWS rows */
            for (Py_ssize_t p = 0; p < panels; p++) {
                FR_VEC s0[FR_NV] = {0}, s1[FR_NV] = {0};
                const float *w = bp + (p * k + k0) * FASTRNN_PANEL;
                const float *ar = a + k0 * lda + r;
                Py_ssize_t kk = 0;
                for (; kk + 2 <= kc; kk += 2) {      /* two sums: half the dependency chain */
                    FR_FMA(s0, ar[kk * lda], w + kk * FASTRNN_PANEL);
                    FR_FMA(s1, ar[(kk + 1) * lda], w + (kk + 1) * FASTRNN_PANEL);
                }
                if (kk < kc) FR_FMA(s0, ar[kk * lda], w + kk * FASTRNN_PANEL);
                for (int v = 0; v < FR_NV; v++) s0[v] += s1[v];
                FR_STORE_ADD(c + r * ldc, p, s0);
            }
        }
    }
}

#undef FR_TN_ROWS
#undef FR_TN_PANELS
#undef FR_STORE_ADD

#undef FR_STORE
#undef FR_FMA
#undef FR_VEC
#undef FR_IVEC
#undef FR_ATTR
#undef FR_NV
#undef FR
#undef FR_CAT
#undef FR_CAT2
