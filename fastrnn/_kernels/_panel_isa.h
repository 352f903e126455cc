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
/* eight lanes (a ymm register) on either instruction set */
typedef float FR(fastrnn_v8) __attribute__((vector_size(32)));
typedef int FR(fastrnn_iv8) __attribute__((vector_size(32)));

/* v[i][l] <-> v[l][i] for an 8 x 8 block: the usual three rounds of single
   instructions (unpcklps/unpckhps, shufps, vperm2f128; AVX2 has no
   two-source permute across 128-bit halves) */
FR_ATTR static inline void FR(fastrnn_transpose8)(FR(fastrnn_v8) *v) {
    const FR(fastrnn_iv8) unlo = {0, 8, 1, 9, 4, 12, 5, 13}, unhi = {2, 10, 3, 11, 6, 14, 7, 15};
    const FR(fastrnn_iv8) shlo = {0, 1, 8, 9, 4, 5, 12, 13}, shhi = {2, 3, 10, 11, 6, 7, 14, 15};
    const FR(fastrnn_iv8) pmlo = {0, 1, 2, 3, 8, 9, 10, 11}, pmhi = {4, 5, 6, 7, 12, 13, 14, 15};
    FR(fastrnn_v8) t[8], u[8];
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
FR_ATTR static inline void FR(fastrnn_transpose)(FR_VEC *v) {
    FR(fastrnn_transpose8)(v);
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

/* The register tile of C = A Wᵀ: R rows of A (broadcast one element at a
   time) times P panels (P FR_NV registers per row). FR_ACC accumulators keep
   both FMA pipes busy through the FMA latency (two pipes x 4-5 cycles needs
   8-10 independent sums; 12 leave room) and, with the P panel registers and a
   broadcast, fit the 16 vector registers of AVX2. The main tile is FR_MR rows
   x FR_MAIN_P panels: 6 x 16 columns on AVX2 (two registers a row, 12 sums),
   8 x 48 on AVX-512 (one register a panel row, three panels, 24 sums). Fewer
   rows (a batch of one or two) take more panels, so that even one row has
   FR_ACC sums in flight while it streams the panels. */
#define FR_ACC 12
#define FR_PMAX 8
#define FR_TILE_P(R) (FR_ACC / ((R) * FR_NV) < 1 ? 1 : \
                      FR_ACC / ((R) * FR_NV) > FR_PMAX ? FR_PMAX : FR_ACC / ((R) * FR_NV))
#if FASTRNN_VW == 16
/* AVX-512's 32 registers hold a larger main tile: 8 rows x 3 panels, 24
   sums, 3 panel rows and a broadcast (11 loads per 24 FMAs instead of 8 per
   12); rows of 32 or 16 then split into whole tiles, not 5 + 5 + 6 */
#define FR_MR 8
#define FR_MAIN_P 3
#else
#define FR_MR 6
#define FR_MAIN_P FR_TILE_P(FR_MR)
#endif
/* the panels of a group (fastrnn_panel_gemm_w): every tile of rows runs over
   the whole group before the next group starts. 48 columns on either
   instruction set: AVX-512's main tile, three of AVX2's. With groups of one
   panel, AVX2's tiles were called once per panel and tile, and their calls,
   set-up and stores cost ~10% of the per-step products (Zen 4: m = 16,
   n = 1024, k = 512, medians of three runs 97 against 106 GFLOPS; docs/performance.md).
   Equal groups also block k alike on both variants (fastrnn_panel_blocks). */
#define FR_GROUP 3
/* the few-rows shape of R rows: more panels for fewer rows; 7 and 8 rows
   (AVX-512) those of the main tile */
#define FR_FEW_P(R) ((R) > 6 ? FR_MAIN_P : FR_TILE_P(R))
/* vectors of sums of the largest tile (the main tile, or one row of FR_PMAX
   panels) */
#define FR_SUMS (FR_MR * FR_MAIN_P * FR_NV > FR_PMAX * FR_NV ? FR_MR * FR_MAIN_P * FR_NV \
                                                             : FR_PMAX * FR_NV)
#define FR_INLINE __attribute__((always_inline)) inline
/* Whether the main tile prefetches the next group of panels (when W exceeds
   L2). AVX2: yes, 1.05-1.2x faster with W of 16 MiB, no change below. AVX-512:
   no, its tile's loads (a panel row or a broadcast for every one to two
   FMAs) already fill the load ports: without the prefetches the 6 x 32 tile
   of the time ran 1.0-1.3x faster at every size measured, W in L2 to 16 MiB
   (Zen 5; docs/performance.md, What bounds these numbers). */
#define FR_PREFETCH_W (FR_NV > 1)

/* a last partial panel pp of one row (n columns) = v, or += v with acc:
   element by element, a function of its own that takes the sums by value
   (inlined, or given their address, it made GCC keep sums of the tile's
   inner loop on the stack) */
FR_ATTR __attribute__((noinline)) static void FR(fastrnn_put_partial)(float *row, Py_ssize_t n,
                                                                     Py_ssize_t pp, FR_VEC v0,
                                                                     FR_VEC v1, int acc) {
    float t[FASTRNN_PANEL];
    memcpy(t, &v0, sizeof v0);
    if (FR_NV > 1) memcpy(t + FASTRNN_VW, &v1, sizeof v1);
    fastrnn_panel_store(row, n, pp, t, acc);
}

/* C's panel pp of one row (n columns) = s, or += s with acc: whole panels as
   vector stores (or load, add, store), a last partial panel element by
   element; the products and the transposed product of the weight gradients */
#define FR_PUT(row, pp, s, acc) do { \
        float *c_ = (row) + (pp) * FASTRNN_PANEL; \
        if (((pp) + 1) * FASTRNN_PANEL <= n) { \
            for (int v_ = 0; v_ < FR_NV; v_++) { \
                FR_VEC x_ = (s)[v_]; \
                if (acc) { \
                    FR_VEC y_; \
                    memcpy(&y_, c_ + v_ * FASTRNN_VW, sizeof y_); \
                    x_ += y_; \
                } \
                memcpy(c_ + v_ * FASTRNN_VW, &x_, sizeof x_); \
            } \
        } else { \
            FR(fastrnn_put_partial)((row), n, (pp), (s)[0], (s)[FR_NV - 1], (acc)); \
        } \
    } while (0)

/* register v (< FR_NV) of a panel row of weights of type WT at p, widened to
   float: half with vcvtph2ps, bfloat16 as the upper half of a float (zero
   extend, shift), int8 sign-extended and converted (exact in every case) */
FR_ATTR static FR_INLINE FR_VEC FR(fastrnn_widen)(const int WT, const void *p, int v) {
    FR_VEC out;
#if FASTRNN_VW == 16
    (void) v;
    if (WT == FASTRNN_WT_F16) {
        __m512 x = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) p));
        memcpy(&out, &x, sizeof out);
    } else if (WT == FASTRNN_WT_BF16) {
        __m512i x = _mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *) p)), 16);
        memcpy(&out, &x, sizeof out);
    } else if (WT == FASTRNN_WT_I8) {
        __m512 x = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *) p)));
        memcpy(&out, &x, sizeof out);
    } else {
        memcpy(&out, p, sizeof out);
    }
#else
    if (WT == FASTRNN_WT_F16) {
        __m256 x = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) ((const short *) p + 8 * v)));
        memcpy(&out, &x, sizeof out);
    } else if (WT == FASTRNN_WT_BF16) {
        __m256i x = _mm256_slli_epi32(_mm256_cvtepu16_epi32(
            _mm_loadu_si128((const __m128i *) ((const short *) p + 8 * v))), 16);
        memcpy(&out, &x, sizeof out);
    } else if (WT == FASTRNN_WT_I8) {
        __m256 x = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
            _mm_loadl_epi64((const __m128i *) ((const signed char *) p + 8 * v))));
        memcpy(&out, &x, sizeof out);
    } else {
        memcpy(&out, (const float *) p + 8 * v, sizeof out);
    }
#endif
    return out;
}

/* register v (< FR_NV) of a pair row of bfloat16 weights at p (lane j: the
   weights of steps kk and kk + 1 of column j as the low and high halves of
   32 bits), widened: half 0 the step-kk weights (shifted up), half 1 the
   step-kk+1 ones (the low half masked off). Two plain integer instructions
   for two registers of weights: no conversion instruction (which 512-bit
   vectors on Zen 4 run as two halves) */
FR_ATTR static FR_INLINE FR_VEC FR(fastrnn_widen_pair)(const void *p, int v, int half) {
    FR_VEC out;
#if FASTRNN_VW == 16
    (void) v;
    __m512i x = _mm512_loadu_si512(p);
    __m512i y = half ? _mm512_and_si512(x, _mm512_set1_epi32((int) 0xFFFF0000u))
                     : _mm512_slli_epi32(x, 16);
#else
    __m256i x = _mm256_loadu_si256((const __m256i *) ((const int *) p + 8 * v));
    __m256i y = half ? _mm256_and_si256(x, _mm256_set1_epi32((int) 0xFFFF0000u))
                     : _mm256_slli_epi32(x, 16);
#endif
    memcpy(&out, &y, sizeof out);
    return out;
}

/* one register tile over kc elements of k: C[r][p + q] (+)= Σ_kk A[r][kk]
   w_q[kk] for r < R, q < P: A's R rows packed, A[r][kk] = a[kk R + r] (one
   sequential stream of broadcasts at constant offsets from one pointer), or,
   for R <= 2, anywhere: A[r][kk] = a[kk ak + r as] (in place: as = lda,
   ak = 1). With strides known only at run time, the 6-row tile of AVX2 held
   an address register per row and reloaded four of them from the stack at
   every kk (12 loads per 12 FMAs; now 8): Zen 4 with AVX2 forced, packed
   rows ran 1.1-1.3x faster at H = 1024 and 512 (docs/performance.md). w_q = w + q * wstride
   (panel q's rows, from the tile's first kk; offsets in weights of type WT).
   R, P and WT are constants where it is inlined, so the loops unroll and
   every sum lives in a register. float32 weights are FMA operands straight
   from memory; narrower ones are widened once per panel row (fastrnn_widen)
   and serve the tile's R rows, and int8 sums are multiplied by their
   column's scale (scale[16 (p + q) + j]) before they are stored. With PF = 1
   each step also prefetches (into L2) one line of each of P panels at
   `next`: the panels the next group of tiles reads, which the hardware
   prefetcher finds late when they come from L3 or memory (a block of kc rows
   of a panel is 16 kc weights, then a jump of 16 k). Only the first tile of a
   group does (the others read panels already in cache), only when W exceeds
   L2 and only where the tile leaves the load ports room (FR_PREFETCH_W). */
FR_ATTR static FR_INLINE void FR(fastrnn_tile)(const int R, const int P, const int PF,
                                              const int WT, Py_ssize_t kc,
                                              const float *a, Py_ssize_t as, Py_ssize_t ak,
                                              const void *w, Py_ssize_t wstride,
                                              const void *next, const float *scale,
                                              float *c, Py_ssize_t ldc, Py_ssize_t n,
                                              Py_ssize_t p, int accumulate) {
    /* the sums of row i, panel q at s + (i P + q) FR_NV: one flat array no
       larger than the tile (GCC left a sum of a [rows][panels] array sized for
       the largest tile on the stack) */
    FR_VEC s[FR_SUMS];
    const Py_ssize_t esz = FASTRNN_WT_SIZE(WT);
#define FR_A(kk, i) (R <= 2 ? a[(kk) * ak + (i) * as] : a[(kk) * R + (i)])
    const char *wb = (const char *) w, *nb = (const char *) next;
#pragma GCC unroll 8
    for (int i = 0; i < R; i++)
#pragma GCC unroll 8
        for (int q = 0; q < P; q++) {
            /* C's lines are written at the end: fetch them while the sums run (a
               large C is in L3 or memory; its rows may be 4 KiB apart) */
            __builtin_prefetch(c + i * ldc + (p + q) * FASTRNN_PANEL, 1);
#pragma GCC unroll 2
            for (int v = 0; v < FR_NV; v++) s[(i * P + q) * FR_NV + v] = (FR_VEC){0};
        }
    /* bfloat16 panels hold pairs of steps (pack_weight_panels): steps kk and
       kk + 1 from one pair row, each panel register widened and used at once;
       the sums in the order of the other types (step kk, then kk + 1) */
#define FR_PAIR_HALF(KK, HALF) do { \
        _Pragma("GCC unroll 8") \
        for (int q = 0; q < P; q++) \
            _Pragma("GCC unroll 2") \
            for (int v = 0; v < FR_NV; v++) { \
                const FR_VEC wv = FR(fastrnn_widen_pair)( \
                    wb + (q * wstride + (KK) * FASTRNN_PANEL) * esz, v, (HALF)); \
                _Pragma("GCC unroll 8") \
                for (int i = 0; i < R; i++) \
                    s[(i * P + q) * FR_NV + v] += FR_A((KK) + (HALF), i) * wv; \
            } \
    } while (0)
    const Py_ssize_t k1 = WT == FASTRNN_WT_BF16 ? 0 : kc;     /* the general loop's steps */
    if (WT == FASTRNN_WT_BF16) {
        Py_ssize_t kk = 0;
        for (; kk + 1 < kc; kk += 2) {
            FR_PAIR_HALF(kk, 0);
            FR_PAIR_HALF(kk, 1);
        }
        if (kk < kc) FR_PAIR_HALF(kk, 0);    /* an odd last step: its pair's other half is 0 */
    }
#undef FR_PAIR_HALF
    for (Py_ssize_t kk = 0; kk < k1; kk++) {
#pragma GCC unroll 8
        for (int q = 0; q < P * PF; q++)
            __builtin_prefetch(nb + (q * wstride + kk * FASTRNN_PANEL) * esz, 0, 2);
        if (WT == FASTRNN_WT_F32) {
#pragma GCC unroll 8
            for (int i = 0; i < R; i++) {
                float av = FR_A(kk, i);
#pragma GCC unroll 8
                for (int q = 0; q < P; q++)
                    FR_FMA(s + (i * P + q) * FR_NV, av,
                           (const float *) w + q * wstride + kk * FASTRNN_PANEL);
            }
        } else if (P * FR_NV <= 4) {
            /* the main tile: its few panel registers widened first, then each
               row's broadcast serves them all (AVX2 has no broadcast operand).
               Widening first in the few-rows tiles too (where the registers
               allow) ran slower: 1 row on AVX-512 0.93 of float32's time
               against 0.75, 4 rows on AVX2 1.12 against 1.01 (Zen 4) */
            FR_VEC wv[P * FR_NV];
#pragma GCC unroll 8
            for (int q = 0; q < P; q++)
#pragma GCC unroll 2
                for (int v = 0; v < FR_NV; v++)
                    wv[q * FR_NV + v] = FR(fastrnn_widen)(
                        WT, wb + (q * wstride + kk * FASTRNN_PANEL) * esz, v);
#pragma GCC unroll 8
            for (int i = 0; i < R; i++) {
                float av = FR_A(kk, i);
#pragma GCC unroll 8
                for (int q = 0; q < P * FR_NV; q++) s[i * P * FR_NV + q] += av * wv[q];
            }
        } else {
            /* few rows, many panels: each panel register widened and used at
               once (widening them all first would spill the sums) */
#pragma GCC unroll 8
            for (int q = 0; q < P; q++) {
#pragma GCC unroll 2
                for (int v = 0; v < FR_NV; v++) {
                    const FR_VEC wv = FR(fastrnn_widen)(
                        WT, wb + (q * wstride + kk * FASTRNN_PANEL) * esz, v);
#pragma GCC unroll 8
                    for (int i = 0; i < R; i++)
                        s[(i * P + q) * FR_NV + v] += FR_A(kk, i) * wv;
                }
            }
        }
    }
#undef FR_A
    if (WT == FASTRNN_WT_I8) {
#pragma GCC unroll 8
        for (int q = 0; q < P; q++)
#pragma GCC unroll 2
            for (int v = 0; v < FR_NV; v++) {
                FR_VEC sv;
                memcpy(&sv, scale + (p + q) * FASTRNN_PANEL + v * FASTRNN_VW, sizeof sv);
#pragma GCC unroll 8
                for (int i = 0; i < R; i++) s[(i * P + q) * FR_NV + v] *= sv;
            }
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; i++)
#pragma GCC unroll 8
        for (int q = 0; q < P; q++) FR_PUT(c + i * ldc, p + q, s + (i * P + q) * FR_NV, accumulate);
}

#if FR_PMAX > 8 || FR_MAIN_P > 8
#error "fastrnn_tile_row has one case per tile size up to 8 panels"
#endif

/* rows [0, R) of C over panels [p0, p1). With PF: tiles of P panels, each
   prefetching the panels after it up to `last` (the panels of this k block
   end there), then single ones. Without: as few tiles as P panels allow, of
   sizes as equal as possible (8 panels with P = 6: 4 + 4, not 6 + 2 or 6 +
   1 + 1): a tile of one or two panels has too few sums in flight to hide
   the FMA latency (a row's last 2 of 8 panels in single tiles took as long
   as its first 6; one row of 128 columns, k = 64, on AVX2 ran at 0.6 of
   AVX-512's rate, which takes them in one tile). Each column's sum runs
   over the steps in the same order whatever its tile: the same bits. */
FR_ATTR static FR_INLINE void FR(fastrnn_tile_row)(const int R, const int P, const int PF,
                                                  const int WT, Py_ssize_t p0,
                                                  Py_ssize_t p1, Py_ssize_t last,
                                                  Py_ssize_t kc, const float *a,
                                                  Py_ssize_t as, Py_ssize_t ak,
                                                  const void *wp, Py_ssize_t wstride,
                                                  const float *scale,
                                                  float *c, Py_ssize_t ldc, Py_ssize_t n,
                                                  int accumulate) {
    const char *wb = (const char *) wp;
    const Py_ssize_t bstride = wstride * FASTRNN_WT_SIZE(WT);       /* bytes per panel */
    Py_ssize_t p = p0;
    if (P > 1 && !PF) {
        const Py_ssize_t np = p1 - p0, tiles = (np + P - 1) / P;
        for (Py_ssize_t t = 0; t < tiles; t++) {
            /* tile t's panels: np / tiles, one more for the first np % tiles */
            const Py_ssize_t q = np / tiles + (t < np % tiles);
            /* (a case past P is never taken, and compiled to nothing) */
#define FR_TILE_OF(Q) case Q: \
            if ((Q) <= P) \
                FR(fastrnn_tile)(R, (Q) <= P ? (Q) : 1, 0, WT, kc, a, as, ak, \
                                 wb + p * bstride, wstride, wb + p * bstride, scale, c, ldc, \
                                 n, p, accumulate); \
            break;
            switch (q) {
                FR_TILE_OF(1) FR_TILE_OF(2) FR_TILE_OF(3) FR_TILE_OF(4) FR_TILE_OF(5)
                FR_TILE_OF(6) FR_TILE_OF(7) FR_TILE_OF(8)
                default: break;
            }
#undef FR_TILE_OF
            p += q;
        }
        return;
    }
    for (; p + P <= p1; p += P) {
        const Py_ssize_t after = p + 2 * P <= last ? p + P : p;
        FR(fastrnn_tile)(R, P, PF, WT, kc, a, as, ak, wb + p * bstride, wstride,
                         wb + after * bstride, scale, c, ldc, n, p, accumulate);
    }
    for (; p < p1; p++) {
        const Py_ssize_t after = p + 1 < last ? p + 1 : p;
        FR(fastrnn_tile)(R, 1, PF, WT, kc, a, as, ak, wb + p * bstride, wstride,
                         wb + after * bstride, scale, c, ldc, n, p, accumulate);
    }
}

/* the same with R (1 .. FR_MR) known only at run time, in the shape
   `shape`: FASTRNN_TILES_FEW, the few-rows shape (P = FR_FEW_P(R), more
   panels for fewer rows); FASTRNN_TILES_MAIN, the main tile's panels
   (FR_MAIN_P), so that a group of panels read once serves every tile of
   rows; FASTRNN_TILES_MAIN_PF, the same prefetching the next group (float32
   weights; the narrow types, half the bytes or less, run the main tile). One
   function per row count, shape and weight type, each compiled on its own:
   inlined into one function, GCC's register allocator spilled the sums of
   some of them to the stack (a product ran at a third of its speed). */
#define FR_ROW_FN(NAME, R_, P_, PF_, WT_) \
    FR_ATTR __attribute__((noinline)) static void FR(NAME)( \
            Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t last, Py_ssize_t kc, const float *a, \
            Py_ssize_t as, Py_ssize_t ak, const void *wp, Py_ssize_t wstride, \
            const float *scale, float *c, Py_ssize_t ldc, Py_ssize_t n, int accumulate) { \
        FR(fastrnn_tile_row)(R_, P_, PF_, WT_, p0, p1, last, kc, a, as, ak, wp, wstride, \
                             scale, c, ldc, n, accumulate); \
    }
#define FR_ROW_FNS(R_) \
    FR_ROW_FN(fastrnn_rows_few_##R_, R_, FR_FEW_P(R_), 0, FASTRNN_WT_F32) \
    FR_ROW_FN(fastrnn_rows_main_##R_, R_, FR_MAIN_P, 0, FASTRNN_WT_F32) \
    FR_ROW_FN(fastrnn_rows_main_pf_##R_, R_, FR_MAIN_P, 1, FASTRNN_WT_F32) \
    FR_ROW_FN(fastrnn_rows_few_f16_##R_, R_, FR_FEW_P(R_), 0, FASTRNN_WT_F16) \
    FR_ROW_FN(fastrnn_rows_main_f16_##R_, R_, FR_MAIN_P, 0, FASTRNN_WT_F16) \
    FR_ROW_FN(fastrnn_rows_few_bf16_##R_, R_, FR_FEW_P(R_), 0, FASTRNN_WT_BF16) \
    FR_ROW_FN(fastrnn_rows_main_bf16_##R_, R_, FR_MAIN_P, 0, FASTRNN_WT_BF16) \
    FR_ROW_FN(fastrnn_rows_few_i8_##R_, R_, FR_FEW_P(R_), 0, FASTRNN_WT_I8) \
    FR_ROW_FN(fastrnn_rows_main_i8_##R_, R_, FR_MAIN_P, 0, FASTRNN_WT_I8)
FR_ROW_FNS(1) FR_ROW_FNS(2) FR_ROW_FNS(3) FR_ROW_FNS(4) FR_ROW_FNS(5) FR_ROW_FNS(6)
#if FR_MR > 6
FR_ROW_FNS(7) FR_ROW_FNS(8)
#endif
#undef FR_ROW_FNS
#undef FR_ROW_FN
#define FR_ROW_CASE(R_) case R_: \
        (wt == FASTRNN_WT_F16 ? (few ? FR(fastrnn_rows_few_f16_##R_) \
                                     : FR(fastrnn_rows_main_f16_##R_)) \
         : wt == FASTRNN_WT_BF16 ? (few ? FR(fastrnn_rows_few_bf16_##R_) \
                                        : FR(fastrnn_rows_main_bf16_##R_)) \
         : wt == FASTRNN_WT_I8 ? (few ? FR(fastrnn_rows_few_i8_##R_) \
                                      : FR(fastrnn_rows_main_i8_##R_)) \
         : few ? FR(fastrnn_rows_few_##R_) \
         : shape == FASTRNN_TILES_MAIN ? FR(fastrnn_rows_main_##R_) \
         : FR(fastrnn_rows_main_pf_##R_))(p0, p1, last, kc, a, as, ak, wp, wstride, scale, c, \
                                          ldc, n, accumulate); \
        break;
FR_ATTR static void FR(fastrnn_tile_rows)(int rows, int shape, int wt, Py_ssize_t p0,
                                          Py_ssize_t p1, Py_ssize_t last, Py_ssize_t kc,
                                          const float *a, Py_ssize_t as, Py_ssize_t ak,
                                          const void *wp, Py_ssize_t wstride,
                                          const float *scale, float *c, Py_ssize_t ldc,
                                          Py_ssize_t n, int accumulate) {
    const int few = shape == FASTRNN_TILES_FEW;
    switch (rows) {
        FR_ROW_CASE(1) FR_ROW_CASE(2) FR_ROW_CASE(3) FR_ROW_CASE(4) FR_ROW_CASE(5)
        FR_ROW_CASE(6)
#if FR_MR > 6
        FR_ROW_CASE(7) FR_ROW_CASE(8)
#endif
        default: break;
    }
}
#undef FR_ROW_CASE
#if FR_MR != 6 && FR_MR != 8
#error "fastrnn_tile_rows has one case per row count up to FR_MR"
#endif

/* R rows of A (lda apart) x kb steps packed for one tile: d[kk R + i] =
   a[i lda + kk]. Eight steps at a time through an 8 x 8 register transpose
   (rows past R zero), each step's R floats stored as one piece (R is a
   constant where this is inlined); the last steps element by element.
   Element by element throughout, the packing took ~3.5% of a
   train-lstm-h256-b64 call (its backward's A, dG, has rows 4 KiB apart). */
FR_ATTR static FR_INLINE void FR(fastrnn_pack_rows_r)(const int R, const float *a,
                                                     Py_ssize_t lda, Py_ssize_t kb, float *d) {
    Py_ssize_t kk = 0;
    for (; kk + 8 <= kb; kk += 8) {
        FR(fastrnn_v8) v[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            v[i] = (FR(fastrnn_v8)){0};
            if (i < R) memcpy(&v[i], a + i * lda + kk, sizeof v[i]);
        }
        FR(fastrnn_transpose8)(v);
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++) memcpy(d + (kk + c) * R, &v[c], R * sizeof(float));
    }
    for (; kk < kb; kk++)
        for (int i = 0; i < R; i++) d[kk * R + i] = a[i * lda + kk];
}

/* A's rows [r, r + rows) x [k0, k0 + kb) packed for one tile: d[kk rows + i] */
FR_ATTR static void FR(fastrnn_pack_tile_rows)(const float *a, Py_ssize_t lda, int rows,
                                               Py_ssize_t kb, float *d) {
#define FR_PACK_CASE(R_) case R_: FR(fastrnn_pack_rows_r)(R_, a, lda, kb, d); break;
    switch (rows) {
        FR_PACK_CASE(1) FR_PACK_CASE(2) FR_PACK_CASE(3) FR_PACK_CASE(4) FR_PACK_CASE(5)
        FR_PACK_CASE(6) FR_PACK_CASE(7) FR_PACK_CASE(8)
        default:
            for (int i = 0; i < rows; i++)
                for (Py_ssize_t kk = 0; kk < kb; kk++) d[kk * rows + i] = a[i * lda + kk];
    }
#undef FR_PACK_CASE
}

/* C = A Wᵀ (accumulate = 0) or C += A Wᵀ (accumulate = 1), W packed in panels.

   Blocked as a GEMM is (Goto & van de Geijn): k in blocks of at most kc
   elements, so that a group of FR_GROUP panels (kc x 48 floats) stays in
   cache while every tile of rows passes over it; rows in blocks
   of at most mc, packed tile by tile into one sequential stream per tile
   (read in place, rows of A a multiple of 4 KiB apart, e.g. H = 1024, share
   one set of L1 and evict each other), so that the block stays in L2 while
   every panel passes. kc and mc come from the caches of the CPU plan
   (fastrnn_panel_blocks). The rows of a block go in tiles as even as
   possible (8 rows: two of 4, not 6 and 2), so that the panels are read once
   per block; one tile alone takes the few-rows shape. The panels hold
   weights of type wt (FASTRNN_WT_*; offsets and the blocks are counted in
   weights, so the narrow types' panels take less cache than the blocking
   assumes; bfloat16 ones in pairs of steps, see pack_weight_panels); int8
   ones stand for code x scale[column] (scale: one float per column of C,
   padded to whole panels).

   With src (float32 only), W is not packed: src gives its rows
   (fastrnn_wrows) and wp is room for the panels of a group: for each block
   of k, each group is packed into wp just before the tiles pass over it
   (one tile of rows: groups of the panels its few-rows tile takes at once),
   so the packed weights stay in L2 and are never written out and read back
   (fastrnn_panel_gemm_rows). The same blocks, tiles and order of each sum:
   the bits of the product on W packed. */
FR_ATTR static void FR(fastrnn_gemm_core)(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                          const float *a, Py_ssize_t lda, const void *wp,
                                          int wt, const float *scale, float *c,
                                          Py_ssize_t ldc, int accumulate,
                                          const fastrnn_wrows *src) {
    float fallback[FASTRNN_PANEL_A_FALLBACK];
    Py_ssize_t a_floats = FASTRNN_PANEL_A_FLOATS;
    float *ap = fastrnn_panel_a_block();
    if (ap == NULL) {                      /* no memory for this thread's block: a small one */
        ap = fallback;
        a_floats = FASTRNN_PANEL_A_FALLBACK;
    }
    const Py_ssize_t panels = (n + FASTRNN_PANEL - 1) / FASTRNN_PANEL;
    /* (bfloat16 panels hold pairs of steps: k rounded up to even, blocks of k even) */
    const Py_ssize_t wstride = fastrnn_panel_steps(wt, k) * FASTRNN_PANEL, group = FR_GROUP;
    Py_ssize_t kc, mc;
    fastrnn_panel_blocks(k, group, FR_MR, a_floats, &kc, &mc);
    /* (only float32 weights prefetch: see fastrnn_tile_rows; a group packed
       here is in L2 already) */
    const int prefetch = FR_PREFETCH_W && wt == FASTRNN_WT_F32 && src == NULL &&
                         n * k * (Py_ssize_t) sizeof(float) > fastrnn_cache_l2;
    for (Py_ssize_t k0 = 0; k0 < k; k0 += kc) {
        const Py_ssize_t kb = k - k0 < kc ? k - k0 : kc;
        const int acc = accumulate || k0 > 0;
        const void *wk = (const char *) wp + k0 * FASTRNN_PANEL * FASTRNN_WT_SIZE(wt);
        for (Py_ssize_t m0 = 0; m0 < m; m0 += mc) {
            const Py_ssize_t mb = m - m0 < mc ? m - m0 : mc;
            const Py_ssize_t tiles = (mb + FR_MR - 1) / FR_MR;
            float *cm = c + m0 * ldc;
            /* A's rows packed tile by tile into one sequential stream (element kk
               of row i at ap + kk R + i; fastrnn_tile), except one or two rows,
               whose tiles read them in place. Read in place, rows of a stride
               that is a multiple of 4 KiB (e.g. H = 1024) share the same sets of
               L1 and evict each other and the panels, and the tile's per-row
               addresses cost AVX2 stack reloads (see fastrnn_tile). */
            const int inplace = mb <= 2;
            const float *am = inplace ? a + m0 * lda + k0 : ap;
            const Py_ssize_t as = inplace ? lda : 0;
            if (!inplace) {
                /* tile t of `tiles`: rows [mb t / tiles, mb (t + 1) / tiles), as even
                   as possible, packed at ap + kb * (its first row) */
                for (Py_ssize_t t = 0, r = 0; t < tiles; t++) {
                    const Py_ssize_t r1 = (mb * (t + 1)) / tiles;
                    FR(fastrnn_pack_tile_rows)(a + (m0 + r) * lda + k0, lda, (int) (r1 - r), kb,
                                               ap + r * kb);
                    r = r1;
                }
            }
            if (src != NULL) {
                /* each group packed (panel p at wp + (p - p0) kb 16), then its tiles
                   over panels [0, p1 - p0) of C's columns from 16 p0 */
                const Py_ssize_t g = tiles == 1 ? FR_FEW_P((int) mb) : group;
                for (Py_ssize_t p0 = 0; p0 < panels; p0 += g) {
                    const Py_ssize_t p1 = p0 + g < panels ? p0 + g : panels;
                    float *cg = cm + p0 * FASTRNN_PANEL;
                    const Py_ssize_t ng = n - p0 * FASTRNN_PANEL;
                    fastrnn_pack_wrows(src, n, p0, p1, k0, kb, (float *) wp,
                                       FR(fastrnn_pack_panel_rows));
                    for (Py_ssize_t t = 0, r = 0; t < tiles; t++) {
                        const Py_ssize_t r1 = (mb * (t + 1)) / tiles;
                        FR(fastrnn_tile_rows)((int) (r1 - r),
                                              tiles == 1 ? FASTRNN_TILES_FEW : FASTRNN_TILES_MAIN,
                                              wt, 0, p1 - p0, p1 - p0, kb,
                                              inplace ? am + r * lda : am + r * kb,
                                              inplace ? as : 1, inplace ? 1 : r1 - r, wp,
                                              kb * FASTRNN_PANEL, scale, cg + r * ldc, ldc, ng,
                                              acc);
                        r = r1;
                    }
                }
                continue;
            }
            if (tiles == 1) {
                FR(fastrnn_tile_rows)((int) mb, FASTRNN_TILES_FEW, wt, 0, panels, panels, kb, am,
                                      inplace ? as : 1, inplace ? 1 : mb, wk, wstride, scale,
                                      cm, ldc, n, acc);
                continue;
            }
            for (Py_ssize_t p = 0; p < panels; p += group) {
                const Py_ssize_t p1 = p + group < panels ? p + group : panels;
                /* the first tile may prefetch the next group, the others read this one */
                for (Py_ssize_t t = 0, r = 0; t < tiles; t++) {
                    const Py_ssize_t r1 = (mb * (t + 1)) / tiles;
                    FR(fastrnn_tile_rows)((int) (r1 - r),
                                          t == 0 && prefetch ? FASTRNN_TILES_MAIN_PF
                                                             : FASTRNN_TILES_MAIN,
                                          wt, p, p1, t == 0 ? panels : p1, kb,
                                          inplace ? am + r * lda : am + r * kb,
                                          inplace ? as : 1, inplace ? 1 : r1 - r, wk,
                                          wstride, scale, cm + r * ldc, ldc, n, acc);
                    r = r1;
                }
            }
        }
    }
}


FR_ATTR static void FR(fastrnn_panel_gemm_w)(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                             const float *a, Py_ssize_t lda, const void *wp,
                                             int wt, const float *scale, float *c,
                                             Py_ssize_t ldc, int accumulate) {
    FR(fastrnn_gemm_core)(m, n, k, a, lda, wp, wt, scale, c, ldc, accumulate, NULL);
}

/* C = A Wᵀ (+= with accumulate), W's float32 rows as src gives them, each
   group packed into wbuf as the product reaches it (fastrnn_gemm_core):
   fastrnn_panel_gemm's bits on W packed. wbuf: room for W packed
   ((n + 15) / 16 panels of k rows), of which a group's block is used. */
FR_ATTR static void FR(fastrnn_panel_gemm_rows)(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                                const float *a, Py_ssize_t lda,
                                                const fastrnn_wrows *src, float *wbuf,
                                                float *c, Py_ssize_t ldc, int accumulate) {
    FR(fastrnn_gemm_core)(m, n, k, a, lda, wbuf, FASTRNN_WT_F32, NULL, c, ldc, accumulate,
                          src);
}

/* the float32 product (fastrnn_panel_gemm_w with float32 weights) */
FR_ATTR static void FR(fastrnn_panel_gemm)(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                           const float *a, Py_ssize_t lda, const float *wp,
                                           float *c, Py_ssize_t ldc, int accumulate) {
    FR(fastrnn_panel_gemm_w)(m, n, k, a, lda, wp, FASTRNN_WT_F32, NULL, c, ldc, accumulate);
}

/* the fewest columns of A a block of the transposed product copies at once:
   whole tiles of FR_MR rows of C filling a cache line of A (AVX-512 two of
   8, AVX2 two of 6); the last block also takes a rest of fewer than FR_MR */
#define FR_TN_BLOCK (FR_MR * (FASTRNN_PANEL / FR_MR))
#define FR_TN_BLOCK_MAX (FR_TN_BLOCK + FR_MR - 1)
/* floats between two tiles' strips: a cache line, so that the strips a row of
   A is copied into (kc FR_MR floats apart, a power of two times 4 KiB for
   the usual chunks) do not all fall into the same L1 set */
#define FR_TN_PAD 16

/* sum[j] += row[j] for j < n: the column sums of A a row at a time, each in
   the order of k (the order of the BLAS path's sums) */
FR_ATTR static FR_INLINE void FR(fastrnn_add_row)(Py_ssize_t n, const float *restrict row,
                                                 float *restrict sum) {
    for (Py_ssize_t j = 0; j < n; j++) sum[j] += row[j];
}

/* columns of A a block of the transposed product copies at once, for chunks
   of `chunk` elements of k: whole tiles of FR_MR, as many as strip_floats
   holds with the last block's rest (< FR_MR columns) and a pad per tile, and
   at most a sixteenth of L2 (the chunk's panels of B take half; Zen 4 with
   1 MiB L2, bench.ab: train-lstm-h256-b1 5% slower with a quarter,
   train-lstm-h256-b64 5% slower with a sixty-fourth); at least
   FR_TN_BLOCK (the chunk's limit leaves room for that) */
FR_ATTR static Py_ssize_t FR(fastrnn_tn_wide)(Py_ssize_t chunk, Py_ssize_t strip_floats) {
    Py_ssize_t cols = (strip_floats - FR_TN_PAD * (strip_floats / (chunk * FR_MR) + 2)) / chunk;
    const Py_ssize_t l2_cols = fastrnn_cache_l2 / 16 / (chunk * (Py_ssize_t) sizeof(float));
    if (cols > l2_cols) cols = l2_cols;
    cols = (cols - (FR_MR - 1)) / FR_MR * FR_MR;
    return cols < FR_TN_BLOCK ? FR_TN_BLOCK : cols;
}

/* C_j (m x n_j) += Aᵀ B_j over k shared rows for each of `nparts` parts j
   (fastrnn_tn_part: B_j, n_j, C_j, ldc_j, colsum_j), every part on the same
   A (k x m, row stride lda), each B_j packed in panels of 16 columns with k
   rows each (bp[p][kk][j] = B[kk][16 p + j], zero past n; fastrnn_pack_panels(B, n, k, 1,
   ldb, bp)). The weight gradients of BPTT have this shape (dW = dGᵀ X,
   summed over every step's rows; dW_ih and dW_hh read the same dG, as two
   parts: A copied once for both). Per chunk of k (its panels of every B
   stay in L2), each block of `wide` rows of C (fastrnn_tn_wide: up to a
   sixteenth of L2) copies its columns of A into strips, one per tile of
   rows, a row of A at a time, left to right (read in place, A's rows lie a
   stride apart that maps them to the same L1 sets; blocks of one cache line
   of A each, as before, read it at ~8 GB/s, a line per row of A, its
   latency exposed): the packed A of the products' register tiles, which
   then run over every panel of every part (8 rows x 3 panels on AVX-512, 6
   x 1 on AVX2). Before each tile, a share of the lines of the block copied
   next is asked for, so that they arrive while the tiles run. The last
   block's rows go in tiles as even as possible (37 rows on AVX2: tiles of
   5, 5, 5, 6, 5, 5, 6, not a last tile of 1). The strips live in this
   thread's block for A (fastrnn_panel_a_block; a small one on the stack, in
   shorter chunks, without it). With colsum_j (m floats; NULL: none), also
   colsum_j[i] += Σ_kk A[kk][i] in the order of k, from the rows the copy
   reads: the bias gradients (Σ dG) without a pass over dG of their own. */
FR_ATTR static void FR(fastrnn_panel_gemm_tn_parts)(Py_ssize_t m, Py_ssize_t k, const float *a,
                                                    Py_ssize_t lda, int nparts,
                                                    const fastrnn_tn_part *part) {
    enum { CHUNK_MAX = 256 };
    float fallback[FASTRNN_PANEL_A_FALLBACK];
    Py_ssize_t strip_floats = FASTRNN_PANEL_A_FLOATS;
    float *strip = fastrnn_panel_a_block();
    if (strip == NULL) {
        strip = fallback;
        strip_floats = FASTRNN_PANEL_A_FALLBACK;
    }
    /* a chunk leaves room for the narrowest block, its rest and pads */
    const Py_ssize_t room = (strip_floats - 4 * FR_TN_PAD) / FR_TN_BLOCK_MAX;
    Py_ssize_t panels = 0;
    for (int j = 0; j < nparts; j++) panels += (part[j].n + FASTRNN_PANEL - 1) / FASTRNN_PANEL;
    const Py_ssize_t chunk = fastrnn_panel_tn_chunk(panels, room < CHUNK_MAX ? room : CHUNK_MAX);
    const Py_ssize_t wide = FR(fastrnn_tn_wide)(chunk, strip_floats);
    for (Py_ssize_t k0 = 0; k0 < k; k0 += chunk) {
        const Py_ssize_t kc = k - k0 < chunk ? k - k0 : chunk;
        const float *ak = a + k0 * lda;
        Py_ssize_t cols;
        for (Py_ssize_t r = 0; r < m; r += cols) {
            cols = m - r < wide + FR_MR ? m - r : wide;
            /* tile t: rows [r + b_t, r + b_{t+1}), b_t = cols t / tiles, its strip
               st = strip + b_t kc + t FR_TN_PAD, st[kk R + i] = A[k0 + kk][r + b_t + i]
               (R rows) */
            const int tiles = (int) ((cols + FR_MR - 1) / FR_MR);
            for (Py_ssize_t kk = 0; kk < kc; kk++) {
                const float *row = ak + kk * lda + r;
                if (cols % FR_MR == 0)
                    for (int t = 0; t < tiles; t++)
                        memcpy(strip + t * (kc * FR_MR + FR_TN_PAD) + kk * FR_MR,
                               row + t * FR_MR, sizeof(float) * FR_MR);
                else
                    for (int t = 0; t < tiles; t++) {
                        const Py_ssize_t b0 = cols * t / tiles, rows = cols * (t + 1) / tiles - b0;
                        memcpy(strip + b0 * kc + t * FR_TN_PAD + kk * rows, row + b0,
                               sizeof(float) * rows);
                    }
                for (int j = 0; j < nparts; j++)
                    if (part[j].colsum != NULL)
                        FR(fastrnn_add_row)(cols, row, part[j].colsum + r);
            }
            /* the block copied next: the rest of this chunk's columns, or the
               first of the next chunk's (none after the last) */
            Py_ssize_t next_r = r + cols, next_k = k0, next_kc = kc;
            if (next_r == m) {
                next_r = 0;
                next_k = k0 + kc;
                next_kc = k - next_k < chunk ? k - next_k : chunk;
            }
            const Py_ssize_t next_cols = m - next_r < wide + FR_MR ? m - next_r : wide;
            for (int t = 0; t < tiles; t++) {
                const Py_ssize_t b0 = cols * t / tiles;
                const int rows = (int) (cols * (t + 1) / tiles - b0);
                for (Py_ssize_t kk = next_kc * t / tiles; kk < next_kc * (t + 1) / tiles; kk++)
                    for (Py_ssize_t j = 0; j < next_cols; j += 16)
                        __builtin_prefetch(a + (next_k + kk) * lda + next_r + j, 0, 2);
                /* C_j[rows of tile t] += its strip (rows x kc) @ the chunk's rows of
                   every panel of B_j (a short tile in the few-rows shape: more
                   panels, as many sums) */
                for (int j = 0; j < nparts; j++)
                    FR(fastrnn_tile_rows)(rows, rows == FR_MR ? FASTRNN_TILES_MAIN
                                                              : FASTRNN_TILES_FEW,
                                          FASTRNN_WT_F32, 0,
                                          (part[j].n + FASTRNN_PANEL - 1) / FASTRNN_PANEL,
                                          (part[j].n + FASTRNN_PANEL - 1) / FASTRNN_PANEL, kc,
                                          strip + b0 * kc + t * FR_TN_PAD, 1, rows,
                                          part[j].bp + k0 * FASTRNN_PANEL,
                                          k * FASTRNN_PANEL, NULL,
                                          part[j].c + (r + b0) * part[j].ldc, part[j].ldc,
                                          part[j].n, 1);
            }
        }
    }
}
#undef FR_TN_PAD
#undef FR_TN_BLOCK_MAX
#undef FR_TN_BLOCK

#if FASTRNN_VW == 8
/* y[r] = W[r, :] . a, or y[r] += that with accumulate, for r < m: W row-major
   (row stride ldw), read where it is stored, no panels. The one-row products
   of a step whose weights cannot be packed once for many steps (a cell's
   step: its weights may change in place between steps). Eight rows at a
   time, each a vector of 8 partial sums (lane l: the elements l, l + 8, ...
   of the row), their k % 8 last elements added as one zero-padded vector;
   then the 8 x 8 block is transposed and its vectors added pairwise, so that
   lane i holds row i's sum. Every row's sum is taken in this one order
   whatever rows are computed with it (a group of fewer rows adds zeros), so
   a step split across threads by rows gives the bits of one thread. Only
   the AVX2 variant has it, and the AVX-512 one runs it too: sixteen rows of
   16-lane vectors (sixteen streams of W at once) read L2-resident W at
   0.62-0.85 of the rate of these eight (Zen 4: 512 x 128 floats 78 against
   105 GB/s, 1536 x 1024 44 against 70), and both variants then give the
   same bits. */
/* the body of fastrnn_rows_dot and fastrnn_rows_dot16: W's elements of type
   T, LOAD(p) the 8 of them at p as a float vector (the tail: k % 8 elements
   copied into zeros first) */
#define FR_ROWS_DOT_BODY(T, LOAD) do { \
    const Py_ssize_t kv = k - k % FASTRNN_VW; \
    FR_VEC at = (FR_VEC){0};                      /* a's last k - kv elements */ \
    memcpy(&at, a + kv, (size_t) (k - kv) * sizeof(float)); \
    for (Py_ssize_t r0 = 0; r0 < m; r0 += FASTRNN_VW) { \
        const int rows = m - r0 < FASTRNN_VW ? (int) (m - r0) : FASTRNN_VW; \
        const T *w0 = w + r0 * ldw; \
        FR_VEC s[FASTRNN_VW]; \
        _Pragma("GCC unroll 16") \
        for (int i = 0; i < FASTRNN_VW; i++) s[i] = (FR_VEC){0}; \
        if (rows == FASTRNN_VW) { \
            for (Py_ssize_t kk = 0; kk < kv; kk += FASTRNN_VW) { \
                FR_VEC av; \
                memcpy(&av, a + kk, sizeof av); \
                _Pragma("GCC unroll 16") \
                for (int i = 0; i < FASTRNN_VW; i++) s[i] += LOAD(w0 + i * ldw + kk) * av; \
            } \
        } else { \
            for (int i = 0; i < rows; i++) \
                for (Py_ssize_t kk = 0; kk < kv; kk += FASTRNN_VW) { \
                    FR_VEC av; \
                    memcpy(&av, a + kk, sizeof av); \
                    s[i] += LOAD(w0 + i * ldw + kk) * av; \
                } \
        } \
        if (kv < k) \
            for (int i = 0; i < rows; i++) { \
                T tail[FASTRNN_VW] = {0}; \
                memcpy(tail, w0 + i * ldw + kv, (size_t) (k - kv) * sizeof(T)); \
                s[i] += LOAD(tail) * at; \
            } \
        FR(fastrnn_transpose)(s); \
        _Pragma("GCC unroll 4") \
        for (int step = 1; step < FASTRNN_VW; step *= 2) \
            _Pragma("GCC unroll 8") \
            for (int i = 0; i < FASTRNN_VW; i += 2 * step) s[i] += s[i + step]; \
        for (int i = 0; i < rows; i++) y[r0 + i] = accumulate ? y[r0 + i] + s[0][i] : s[0][i]; \
    } \
} while (0)

/* 8 floats at p */
FR_ATTR static inline FR_VEC FR(fastrnn_load8)(const float *p) {
    FR_VEC v;
    memcpy(&v, p, sizeof v);
    return v;
}

FR_ATTR static void FR(fastrnn_rows_dot)(Py_ssize_t m, Py_ssize_t k, const float *w,
                                         Py_ssize_t ldw, const float *a, float *y,
                                         int accumulate) {
    FR_ROWS_DOT_BODY(float, FR(fastrnn_load8));
}

/* 8 weights stored in 16 bits, widened to float: IEEE half (bf16 = 0) with
   F16C's vcvtph2ps, or bfloat16 (bf16 = 1): the upper half of a float. */
__attribute__((target("avx2,fma,f16c"))) static inline FR_VEC
FR(fastrnn_widen8)(const unsigned short *p, int bf16) {
    __m128i raw = _mm_loadu_si128((const __m128i *) p);
    __m256 v = bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16))
                    : _mm256_cvtph_ps(raw);
    FR_VEC out;
    memcpy(&out, &v, sizeof out);
    return out;
}

/* fastrnn_rows_dot on W stored in 16 bits (half or bfloat16, bf16 0/1): each
   weight widened to float in registers, then the very sums of
   fastrnn_rows_dot in its order -- the bits of fastrnn_rows_dot on the
   widened float32 weights, from half the bytes. */
#define FR_WIDEN8(p) FR(fastrnn_widen8)(p, bf16)
__attribute__((target("avx2,fma,f16c"))) static void
FR(fastrnn_rows_dot16)(Py_ssize_t m, Py_ssize_t k, const unsigned short *w, Py_ssize_t ldw,
                       const float *a, float *y, int accumulate, int bf16) {
    FR_ROWS_DOT_BODY(unsigned short, FR_WIDEN8);
}
#undef FR_WIDEN8
#undef FR_ROWS_DOT_BODY
#endif

/* the dot-product tile's parameters, one list for each instruction set's tile:
   R rows of C over P panels at panel p; row i's words at rows + i ldr bytes
   (AVX2: its magnitudes mag_off bytes further); KIND the dot products' kind */
#define FR_DOT_TILE_PARAMS \
    const int KIND, const int R, const int P, Py_ssize_t words, const unsigned char *rows, \
    Py_ssize_t ldr, Py_ssize_t mag_off, const float *sa, const unsigned char *wp, \
    Py_ssize_t wstride, const int *csum, const float *scale, float *c, Py_ssize_t ldc, \
    Py_ssize_t n, Py_ssize_t p, int acc

#if FASTRNN_VW == 16
/* int8 weights on int8 dot products (AVX-512 VNNI's vpdpbusd: per 32-bit
   lane, four unsigned bytes of A times four signed bytes of W, summed into
   an int32): A's rows quantized on the fly. Row i of A becomes
   aq[kk] = round(a[kk] / sa_i) + 128 in [1, 255] with sa_i = max |a_i| / 127
   (zero past k), so that
       Σ_kk a[kk] W[j][kk] ≈ sa_i scale_j (Σ_kk aq[kk] code[j][kk] - 128 csum_j),
   csum_j = Σ_kk code[j][kk] (exact in int32; the error is the rounding of
   A to 255 levels). Panels of four steps (pack_weight_quads): wq[p][r][j][b] =
   code[16 p + j][4 r + b], zero past n and k; 64 weights per instruction
   instead of 16 FMAs after a widening. */
#define FR_Q8_ATTR __attribute__((target("avx512f,avx512bw,avx512vnni,avx2,fma,f16c")))
/* the dot-product tiles: panels per tile of R rows (R x P sums, at most 16) */
#define FR_DOT_P(R) ((R) == 1 ? 8 : 4)
#define FR_DOT_SUMS 16

/* rows of A quantized to unsigned bytes as above: aq (m rows of 4 ceil(k / 4)
   bytes, row stride ldq), sa (m) */
FR_Q8_ATTR static void FR(fastrnn_quantize_rows)(Py_ssize_t m, Py_ssize_t k, const float *a,
                                                 Py_ssize_t lda, unsigned char *aq,
                                                 Py_ssize_t ldq, float *sa) {
    const Py_ssize_t k4 = fastrnn_panel_steps(FASTRNN_WT_Q8, k);
    for (Py_ssize_t i = 0; i < m; i++) {
        const float *ar = a + i * lda;
        unsigned char *qr = aq + i * ldq;
        __m512 mx = _mm512_setzero_ps();
        __mmask16 nan = 0;
        Py_ssize_t kk = 0;
        for (; kk + 16 <= k; kk += 16) {
            const __m512 x = _mm512_loadu_ps(ar + kk);
            mx = _mm512_max_ps(mx, _mm512_abs_ps(x));
            nan |= _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
        }
        float amax = _mm512_reduce_max_ps(mx);
        int has_nan = nan != 0;
        for (; kk < k; kk++) {
            amax = fabsf(ar[kk]) > amax ? fabsf(ar[kk]) : amax;
            has_nan |= ar[kk] != ar[kk];
        }
        /* (a row holding NaN: the scale NaN, so that its products are NaN) */
        const float s = has_nan ? NAN : amax > 0.0f ? amax / 127.0f : 1.0f;
        const __m512 inv = _mm512_set1_ps(1.0f / s);
        const __m512i off = _mm512_set1_epi32(128);
        for (kk = 0; kk + 16 <= k; kk += 16) {
            /* (round to nearest even; |a / s| <= 127 up to rounding, then saturated) */
            const __m512 scaled = _mm512_mul_ps(_mm512_loadu_ps(ar + kk), inv);
            __m512i v = _mm512_add_epi32(_mm512_cvtps_epi32(scaled), off);
            _mm_storeu_si128((__m128i *) (qr + kk), _mm512_cvtusepi32_epi8(v));
        }
        for (; kk < k; kk++) {
            int v = has_nan ? 128 : (int) lrintf(ar[kk] * (1.0f / s)) + 128;
            qr[kk] = (unsigned char) (v < 0 ? 0 : v > 255 ? 255 : v);
        }
        for (; kk < k4; kk++) qr[kk] = 128;
        sa[i] = s;
    }
}

/* A's rows quantized for fastrnn_gemm_q8 (fastrnn_quantize_rows): work holds
   m rows of 4 ceil(k / 4) bytes, then their m scales */
FR_Q8_ATTR static void FR(fastrnn_prepare_q8)(Py_ssize_t m, Py_ssize_t k, const float *a,
                                              Py_ssize_t lda, unsigned char *work) {
    const Py_ssize_t ldq = fastrnn_panel_steps(FASTRNN_WT_Q8, k);
    FR(fastrnn_quantize_rows)(m, k, a, lda, work, ldq, (float *) (work + m * ldq));
}

#undef FR_Q8_ATTR

/* bfloat16 weights on bfloat16 dot products (AVX512-BF16's vdpbf16ps: per
   32-bit lane, two bfloat16 products added to a float32 sum, 32 weights an
   instruction, no widening): A's rows rounded to bfloat16 on the fly (round
   to nearest even), the weights in their pairs of steps (pack_weight_panels);
   the instruction adds the odd step's product first and treats subnormals as
   zero. */
#define FR_BD_ATTR __attribute__((target("avx512f,avx512bw,avx512bf16,avx2,fma,f16c")))

/* A's rows rounded to bfloat16 (to nearest even) for fastrnn_gemm_bd: work
   holds m rows of 2 ceil(k / 2) values (a last odd one 0) */
FR_BD_ATTR static void FR(fastrnn_prepare_bd)(Py_ssize_t m, Py_ssize_t k, const float *a,
                                              Py_ssize_t lda, unsigned char *work) {
    const Py_ssize_t k2 = fastrnn_panel_steps(FASTRNN_WT_BD, k) / 2;
    unsigned short *abf = (unsigned short *) work;
    for (Py_ssize_t i = 0; i < m; i++) {
        const float *ar = a + i * lda;
        unsigned short *br = abf + i * 2 * k2;
        Py_ssize_t kk = 0;
        for (; kk + 32 <= k; kk += 32) {
            __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(ar + kk + 16),
                                             _mm512_loadu_ps(ar + kk));
            memcpy(br + kk, &v, sizeof v);
        }
        for (; kk < k; kk++) {
            __m512bh v = _mm512_cvtne2ps_pbh(_mm512_setzero_ps(), _mm512_set1_ps(ar[kk]));
            memcpy(br + kk, &v, sizeof br[kk]);
        }
        if (k & 1) br[k] = 0;
    }
}

#undef FR_BD_ATTR

/* The products on dot products, both kinds (KIND: FASTRNN_WT_Q8, int8 on
   vpdpbusd; FASTRNN_WT_BD, bfloat16 on vpdpbf16ps). Both read A prepared as
   rows of 32-bit words, one per dot step r (int8: four steps' quantized
   bytes; bfloat16: two steps' rounded values), and W in panels of 64 bytes
   per dot step (16 columns x one word); a function compiled for both
   extensions runs only the kind its CPU has (fastrnn_panel_select). */
#define FR_DOT_ATTR \
    __attribute__((target("avx512f,avx512bw,avx512vnni,avx512bf16,avx2,fma,f16c")))

/* R rows of C over P panels: C[i][p + q] (=, or += with acc) for i < R, q <
   P; row i's words at rows + i ldr (bytes). int8 sums become float as
   sa[i] x scale_j x (sum - 128 csum_j); bfloat16 ones are float already */
FR_DOT_ATTR static FR_INLINE void FR(fastrnn_dot_tile)(FR_DOT_TILE_PARAMS) {
    (void) mag_off;
    __m512i s[FR_DOT_SUMS];
#pragma GCC unroll 16
    for (int q = 0; q < R * P; q++) s[q] = _mm512_setzero_si512();
    for (Py_ssize_t r = 0; r < words; r++) {
        __m512i b[4];
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            int word;
            memcpy(&word, rows + i * ldr + 4 * r, sizeof word);
            b[i] = _mm512_set1_epi32(word);
        }
#pragma GCC unroll 8
        for (int q = 0; q < P; q++) {
            const __m512i w = _mm512_loadu_si512(wp + q * wstride + r * 64);
#pragma GCC unroll 4
            for (int i = 0; i < R; i++)
                s[i * P + q] = KIND == FASTRNN_WT_Q8
                    ? _mm512_dpbusd_epi32(s[i * P + q], b[i], w)
                    : _mm512_castps_si512(_mm512_dpbf16_ps(_mm512_castsi512_ps(s[i * P + q]),
                                                           (__m512bh) b[i], (__m512bh) w));
        }
    }
#pragma GCC unroll 8
    for (int q = 0; q < P; q++) {
        const Py_ssize_t col = (p + q) * FASTRNN_PANEL;
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            __m512 v = _mm512_castsi512_ps(s[i * P + q]);
            if (KIND == FASTRNN_WT_Q8) {
                const __m512i cs = _mm512_slli_epi32(_mm512_loadu_si512(csum + col), 7);
                v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(s[i * P + q], cs)),
                                  _mm512_mul_ps(_mm512_set1_ps(sa[i]),
                                                _mm512_loadu_ps(scale + col)));
            }
            FR_VEC t;
            memcpy(&t, &v, sizeof t);
            FR_PUT(c + i * ldc, p + q, &t, acc);
        }
    }
}

#else
/* int8 weights on AVX2's byte multiply-adds (vpmaddubsw: unsigned bytes
   times signed bytes, adjacent pairs summed into int16, saturating; then
   vpmaddwd with ones: the pairs summed into int32) -- for AVX2 CPUs and
   AVX-512 ones without VNNI. A's rows are quantized as for vpdpbusd
   (aq = round(a / sa) in [-127, 127], sa = max |a| / 127) but kept signed:
   the product takes |aq| as the unsigned operand and the weight with aq's
   sign (vpsignb), so each int16 pair sum is at most 2 x 127 x 127 = 32258
   and never saturates (unsigned codes up to 255 against weights up to 127
   would), and the int32 sums, hence the outputs, are the bits of the VNNI
   kernel's. The weights' quads and scales are the same (pack_weight_quads);
   codes are in [-127, 127] (vpsignb cannot negate -128: the quantizer never
   makes it and loading refuses it). */
#define FR_DOT_ATTR __attribute__((target("avx2,fma,f16c")))
/* panels per tile of R rows: 2 R P int32 sums (at most 8) of the 16 ymm */
#define FR_DOT_P(R) ((R) == 1 ? 4 : (R) == 2 ? 2 : 1)
#define FR_DOT_SUMS 8

/* A's rows quantized for fastrnn_gemm_q8: work holds m rows of 4 ceil(k / 4)
   signed bytes (zero past k), then their m scales, then the m rows'
   magnitudes (|q|: the products broadcast them from memory instead of taking
   them per row and step); a row holding NaN gets the scale NaN (its products
   are NaN, as float ones would be) */
FR_DOT_ATTR static void FR(fastrnn_prepare_q8)(Py_ssize_t m, Py_ssize_t k, const float *a,
                                               Py_ssize_t lda, unsigned char *work) {
    const Py_ssize_t ldq = fastrnn_panel_steps(FASTRNN_WT_Q8, k);
    float *sa = (float *) (work + m * ldq);
    unsigned char *mags = work + m * ldq + m * (Py_ssize_t) sizeof(float);
    const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    /* (vpackssdw / vpacksswb interleave their 128-bit lanes: dwords back in order) */
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256i lowest = _mm256_set1_epi8(-127);
    for (Py_ssize_t i = 0; i < m; i++) {
        const float *ar = a + i * lda;
        signed char *qr = (signed char *) (work + i * ldq);
        __m256 mx = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
        Py_ssize_t kk = 0;
        for (; kk + 8 <= k; kk += 8) {
            const __m256 x = _mm256_loadu_ps(ar + kk);
            mx = _mm256_max_ps(mx, _mm256_and_ps(x, magnitude));
            nan = _mm256_or_ps(nan, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
        }
        float lanes[8];
        _mm256_storeu_ps(lanes, mx);
        float amax = 0.0f;
        int has_nan = _mm256_movemask_ps(nan) != 0;
        for (int l = 0; l < 8; l++) amax = lanes[l] > amax ? lanes[l] : amax;
        for (; kk < k; kk++) {
            amax = fabsf(ar[kk]) > amax ? fabsf(ar[kk]) : amax;
            has_nan |= ar[kk] != ar[kk];
        }
        const float s = has_nan ? NAN : amax > 0.0f ? amax / 127.0f : 1.0f;
        const __m256 inv = _mm256_set1_ps(1.0f / s);
        for (kk = 0; kk + 32 <= k; kk += 32) {
            /* (round to nearest even; |a / s| <= 127 up to rounding) */
            __m256i v[4];
            for (int j = 0; j < 4; j++)
                v[j] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(ar + kk + 8 * j), inv));
            __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]),
                                           _mm256_packs_epi32(v[2], v[3]));
            b = _mm256_max_epi8(_mm256_permutevar8x32_epi32(b, order), lowest);
            _mm256_storeu_si256((__m256i *) (qr + kk), b);
            _mm256_storeu_si256((__m256i *) (mags + i * ldq + kk), _mm256_abs_epi8(b));
        }
        for (; kk < k; kk++) {
            const long v = has_nan ? 0 : lrintf(ar[kk] * (1.0f / s));
            qr[kk] = (signed char) (v < -127 ? -127 : v > 127 ? 127 : v);
            mags[i * ldq + kk] = (unsigned char) (qr[kk] < 0 ? -qr[kk] : qr[kk]);
        }
        for (; kk < ldq; kk++) qr[kk] = mags[i * ldq + kk] = 0;
        sa[i] = s;
    }
}

/* R rows of C over P panels: C[i][p + q] (=, or += with acc) for i < R,
   q < P; row i's words at rows + i ldr (bytes); the sums become float as
   sa[i] x scale_j x sum (the bits of the VNNI tile's) */
FR_DOT_ATTR static FR_INLINE void FR(fastrnn_dot_tile)(FR_DOT_TILE_PARAMS) {
    (void) KIND;
    (void) csum;                                       /* (no offset to take back) */
    __m256i s[FR_DOT_SUMS];
#pragma GCC unroll 8
    for (int q = 0; q < 2 * R * P; q++) s[q] = _mm256_setzero_si256();
    const __m256i ones = _mm256_set1_epi16(1);
    for (Py_ssize_t r = 0; r < words; r++) {
        /* (a row's word and its magnitudes broadcast from memory where they are
           used: four rows' held in registers with the sums would spill them) */
#pragma GCC unroll 4
        for (int q = 0; q < P; q++) {
            const unsigned char *wq = wp + q * wstride + r * 64;
            const __m256i w0 = _mm256_loadu_si256((const __m256i *) wq);
            const __m256i w1 = _mm256_loadu_si256((const __m256i *) (wq + 32));
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) {
                int word, mword;
                memcpy(&word, rows + i * ldr + 4 * r, sizeof word);
                memcpy(&mword, rows + i * ldr + mag_off + 4 * r, sizeof mword);
                const __m256i b = _mm256_set1_epi32(word), mag = _mm256_set1_epi32(mword);
                s[2 * (i * P + q)] = _mm256_add_epi32(
                    s[2 * (i * P + q)],
                    _mm256_madd_epi16(_mm256_maddubs_epi16(mag, _mm256_sign_epi8(w0, b)), ones));
                s[2 * (i * P + q) + 1] = _mm256_add_epi32(
                    s[2 * (i * P + q) + 1],
                    _mm256_madd_epi16(_mm256_maddubs_epi16(mag, _mm256_sign_epi8(w1, b)), ones));
            }
        }
    }
#pragma GCC unroll 4
    for (int q = 0; q < P; q++) {
        const Py_ssize_t col = (p + q) * FASTRNN_PANEL;
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            FR_VEC t[2];
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                const __m256 v = _mm256_mul_ps(
                    _mm256_cvtepi32_ps(s[2 * (i * P + q) + h]),
                    _mm256_mul_ps(_mm256_set1_ps(sa[i]), _mm256_loadu_ps(scale + col + 8 * h)));
                memcpy(&t[h], &v, sizeof t[h]);
            }
            FR_PUT(c + i * ldc, p + q, t, acc);
        }
    }
}
#endif

/* R rows of C over every panel: tiles of FR_DOT_P(R) panels, then one of the
   rest. One function per kind and row count (see FR_ROW_FN) */
#define FR_DOT_ROWS(NAME, KIND, R) \
FR_DOT_ATTR __attribute__((noinline)) static void FR(NAME##_##R)( \
        Py_ssize_t panels, Py_ssize_t words, const unsigned char *rows, Py_ssize_t ldr, \
        Py_ssize_t mag_off, const float *sa, const unsigned char *wp, Py_ssize_t wstride, \
        const int *csum, const float *scale, float *c, Py_ssize_t ldc, Py_ssize_t n, int acc) { \
    Py_ssize_t p = 0; \
    for (; p + FR_DOT_P(R) <= panels; p += FR_DOT_P(R)) \
        FR(fastrnn_dot_tile)(KIND, R, FR_DOT_P(R), words, rows, ldr, mag_off, sa, \
                             wp + p * wstride, wstride, csum, scale, c, ldc, n, p, acc); \
    switch (panels - p) { \
        FR_DOT_LAST(KIND, R, 1) FR_DOT_LAST(KIND, R, 2) FR_DOT_LAST(KIND, R, 3) \
        FR_DOT_LAST(KIND, R, 4) FR_DOT_LAST(KIND, R, 5) FR_DOT_LAST(KIND, R, 6) \
        FR_DOT_LAST(KIND, R, 7) \
        default: break; \
    } \
}
#define FR_DOT_LAST(KIND, R, Q) case Q: \
        FR(fastrnn_dot_tile)(KIND, R, (Q) < FR_DOT_P(R) ? (Q) : 1, words, rows, ldr, \
                             mag_off, sa, wp + p * wstride, wstride, csum, scale, c, ldc, n, \
                             p, acc); \
        break;
#define FR_DOT_KIND(NAME, KIND) \
    FR_DOT_ROWS(NAME, KIND, 1) FR_DOT_ROWS(NAME, KIND, 2) FR_DOT_ROWS(NAME, KIND, 3) \
    FR_DOT_ROWS(NAME, KIND, 4)
FR_DOT_KIND(fastrnn_q8_rows, FASTRNN_WT_Q8)
#if FASTRNN_VW == 16
FR_DOT_KIND(fastrnn_bd_rows, FASTRNN_WT_BD)
#endif
#undef FR_DOT_KIND
#undef FR_DOT_LAST
#undef FR_DOT_ROWS

/* C (m x n) (+)= A Wᵀ on dot products of kind KIND, A prepared in work
   (fastrnn_prepare_q8 / _bd), W in the kind's panels (int8: quads, with its
   column sums and scales padded to whole panels; bfloat16: pairs of steps):
   up to four rows a tile, each word of W loaded once for them (FR_DOT_P
   panels per tile: eight for one row, four for more) */
#define FR_DOT_CASE(NAME, R) case R: \
        FR(NAME##_##R)(panels, words, rows, 4 * words, mag_off, sa != NULL ? sa + i : NULL, \
                       wb, wstride, sums, scale, ci, ldc, n, accumulate); \
        break;
#define FR_GEMM_DOT(NAME, ROWS, KIND) \
FR_DOT_ATTR static void FR(NAME)(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, \
                                 const unsigned char *work, const void *w, const int *sums, \
                                 const float *scale, float *c, Py_ssize_t ldc, \
                                 int accumulate) { \
    /* (32-bit words per packed row: four int8 steps, two bfloat16 ones) */ \
    const Py_ssize_t words = fastrnn_panel_steps(KIND, k) * FASTRNN_WT_SIZE(KIND) / 4; \
    const Py_ssize_t panels = (n + FASTRNN_PANEL - 1) / FASTRNN_PANEL; \
    const Py_ssize_t wstride = words * 64;                /* bytes per panel */ \
    const unsigned char *wb = (const unsigned char *) w; \
    const float *sa = KIND == FASTRNN_WT_Q8 ? (const float *) (work + m * 4 * words) : NULL; \
    /* (int8: from a row's words to its magnitudes', past the rows and the scales) */ \
    const Py_ssize_t mag_off = m * 4 * words + m * (Py_ssize_t) sizeof(float); \
    for (Py_ssize_t i = 0; i < m; i += 4) { \
        const unsigned char *rows = work + i * 4 * words; \
        float *ci = c + i * ldc; \
        switch (m - i < 4 ? m - i : 4) { \
            FR_DOT_CASE(ROWS, 1) FR_DOT_CASE(ROWS, 2) FR_DOT_CASE(ROWS, 3) \
            FR_DOT_CASE(ROWS, 4) \
            default: break; \
        } \
    } \
}
FR_GEMM_DOT(fastrnn_gemm_q8, fastrnn_q8_rows, FASTRNN_WT_Q8)
#if FASTRNN_VW == 16
FR_GEMM_DOT(fastrnn_gemm_bd, fastrnn_bd_rows, FASTRNN_WT_BD)
#endif
#undef FR_GEMM_DOT
#undef FR_DOT_CASE
#undef FR_DOT_ATTR
#undef FR_DOT_P
#undef FR_DOT_SUMS
#undef FR_DOT_TILE_PARAMS

/* the main register tile (rows of A, panels of W) and the panels of a group
   (for the CPU plan's report) */
FR_ATTR static void FR(fastrnn_tile_shape)(int *rows, int *panels, int *group) {
    *rows = FR_MR;
    *panels = FR_MAIN_P;
    *group = FR_GROUP;
}

/* The FMA rate this core sustains with this instruction set: FR_ACC
   independent chains of `iters` vector FMAs (2 VW FLOPs each); returns a sum
   of them, so that the work is not optimised away. bench/limits.py measures
   the machine's peak with it. */
FR_ATTR static float FR(fastrnn_fma_peak)(long iters) {
    FR_VEC s[FR_ACC], x = (FR_VEC){0}, y = (FR_VEC){0};
    for (int v = 0; v < FASTRNN_VW; v++) { x[v] = 0.999999f; y[v] = 1e-7f; }
#pragma GCC unroll 12
    for (int i = 0; i < FR_ACC; i++) s[i] = (FR_VEC){0} + (float) i;
    for (long it = 0; it < iters; it++) {
        __asm__ volatile("" : "+x"(x));     /* x stays a register operand: no folding */
#pragma GCC unroll 12
        for (int i = 0; i < FR_ACC; i++) s[i] = s[i] * x + y;
    }
    float total = 0;
    for (int i = 0; i < FR_ACC; i++)
        for (int v = 0; v < FASTRNN_VW; v++) total += s[i][v];
    return total;
}

/* The rate at which this core reads n floats (a multiple of 8 vectors, at
   a cache line) with this instruction set and nothing else: `reps` passes of
   aligned vector loads into 8 independent sums; returns their total, so that
   the loads are not optimised away. A one-row product streams its weights
   from cache at best at this rate (bench/limits.py prints both). */
FR_ATTR static float FR(fastrnn_read_sum)(const float *p, Py_ssize_t n, long reps) {
    FR_VEC s[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) s[i] = (FR_VEC){0};
    for (long r = 0; r < reps; r++) {
        __asm__ volatile("" : : "r"(p) : "memory");     /* every pass reads p again */
        for (Py_ssize_t i = 0; i < n; i += 8 * FASTRNN_VW) {
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {
                FR_VEC v;
                memcpy(&v, p + i + j * FASTRNN_VW, sizeof v);
                s[j] += v;
            }
        }
    }
    float total = 0;
    for (int i = 0; i < 8; i++)
        for (int v = 0; v < FASTRNN_VW; v++) total += s[i][v];
    return total;
}


#undef FR_PUT
#undef FR_INLINE
#undef FR_PREFETCH_W
#undef FR_TILE_P
#undef FR_FEW_P
#undef FR_SUMS
#undef FR_MAIN_P
#undef FR_GROUP
#undef FR_PMAX
#undef FR_MR
#undef FR_ACC
#undef FR_FMA
#undef FR_VEC
#undef FR_IVEC
#undef FR_ATTR
#undef FR_NV
#undef FR
#undef FR_CAT
#undef FR_CAT2
