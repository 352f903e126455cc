/* A float32 matrix product for the recurrent step, on weights packed once per call.

   C (m x n) = A (m x k) @ Wᵀ (+ C), W (n x k) packed in panels of 16 rows:
   wp[p][kk][j] = W[16 p + j][kk] (zero past n). See _panels.pxd for why.

   The kernels exist once per instruction set (_panel_isa.h, compiled with
   GCC target attributes, so the default build stays portable): AVX-512 with
   one 16-lane register per panel row, AVX2 + FMA with two 8-lane ones. When
   the module loads, fastrnn_panel_select(fastrnn_panel_best()) points the
   entry points at the best variant this CPU runs; tests and bench/limits.py
   select each variant in turn. Without a variant (another compiler or CPU)
   the Cython side multiplies with BLAS and never packs.
*/
#ifndef FASTRNN_PANEL_H
#define FASTRNN_PANEL_H
#include <math.h>
#include <string.h>

#define FASTRNN_PANEL 16
/* floats of the product's packed block of A (256 KiB, one per thread: see
   fastrnn_panel_a_block), and of the stack block used if that cannot be had */
#define FASTRNN_PANEL_A_FLOATS 65536
#define FASTRNN_PANEL_A_FALLBACK 1024
/* variant numbers, as fastrnn_panel_select takes them */
#define FASTRNN_PANEL_NONE 0
#define FASTRNN_PANEL_AVX2 1
#define FASTRNN_PANEL_AVX512 2
/* the weight types of the panels (fastrnn_panel_gemm_w's wt): float32, IEEE
   half, bfloat16, int8 (with one float scale per column of C) */
#define FASTRNN_WT_F32 0
#define FASTRNN_WT_F16 1
#define FASTRNN_WT_BF16 2
#define FASTRNN_WT_I8 3
/* int8 on int8 dot products, A quantized on the fly (fastrnn_panel_gemm_dot) */
#define FASTRNN_WT_Q8 4
/* bfloat16 on bfloat16 dot products, A rounded on the fly (fastrnn_panel_gemm_dot) */
#define FASTRNN_WT_BD 5
/* bytes of one weight of type wt */
#define FASTRNN_WT_SIZE(wt) ((wt) == FASTRNN_WT_F32 ? 4 : \
                             (wt) == FASTRNN_WT_I8 || (wt) == FASTRNN_WT_Q8 ? 1 : 2)

/* the steps (elements of k) one packed row of weights of type wt holds: k,
   rounded up to whole pairs for bfloat16 (pack_weight_panels), to whole
   fours for int8 on dot products (pack_weight_quads); the prepared rows of A
   of the dot products are padded alike */
static inline Py_ssize_t fastrnn_panel_steps(int wt, Py_ssize_t k) {
    return wt == FASTRNN_WT_BF16 || wt == FASTRNN_WT_BD ? (k + 1) / 2 * 2
           : wt == FASTRNN_WT_Q8 ? (k + 3) / 4 * 4 : k;
}

static inline Py_ssize_t fastrnn_weight_bytes(int wt) {
    return FASTRNN_WT_SIZE(wt);
}
/* the shapes of a row of register tiles (fastrnn_tile_rows) */
#define FASTRNN_TILES_FEW 0
#define FASTRNN_TILES_MAIN 1
#define FASTRNN_TILES_MAIN_PF 2

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FASTRNN_PANEL_VARIANTS 1
#else
#define FASTRNN_PANEL_VARIANTS 0
#endif

/* row[16 p + j] (+)= t[j] for the columns of panel p that exist (n columns) */
static inline void fastrnn_panel_store(float *row, Py_ssize_t n, Py_ssize_t p,
                                       const float *t, int accumulate) {
    Py_ssize_t c0 = p * FASTRNN_PANEL;
    Py_ssize_t cols = n - c0 < FASTRNN_PANEL ? n - c0 : FASTRNN_PANEL;
    if (accumulate) for (Py_ssize_t j = 0; j < cols; j++) row[c0 + j] += t[j];
    else for (Py_ssize_t j = 0; j < cols; j++) row[c0 + j] = t[j];
}

/* The data caches of one core the blocking is worked out for (bytes): set
   from the CPU plan when fastrnn loads (fastrnn/_cpu.py: sysfs, sysconf or
   FASTRNN_CACHE); until then a small machine's. */
static Py_ssize_t fastrnn_cache_l1d = 32 << 10, fastrnn_cache_l2 = 256 << 10;

static void fastrnn_panel_set_caches(Py_ssize_t l1d, Py_ssize_t l2) {
    if (l1d >= 4096) fastrnn_cache_l1d = l1d;
    if (l2 >= 65536) fastrnn_cache_l2 = l2;
}

/* The blocks of a product over k (see fastrnn_panel_gemm in _panel_isa.h):
   kc, the elements of k per block, so that `group` panels of kc rows (64
   bytes each) take at most a quarter of L2: every row tile of a block passes
   over them while its packed rows of A stream from L2 and C is touched only
   at the tile's end. A tile reads its panel rows at a fraction of the rate
   L2 delivers to L1 (AVX-512: three lines per 24 FMAs), so the group need not
   stay in L1; blocks of k that fit L1 (this rule until it was measured)
   reload C and restart the tiles once per block, and the products with k of
   512 and 1024 ran 1.1-1.3x slower with them (python -m bench.limits, Zen 5;
   docs/performance.md, What bounds these numbers). k splits into blocks as equal as
   possible (k = 300 with kc 256: 150 + 150, not 256 + 44), kc even unless it
   is all of k (bfloat16 panels hold pairs of steps). mc, the rows of A
   per block, so that its packed copy (mc x kc floats) takes at most half of
   L2 and at most a_floats (the kernel's buffer), a multiple of the tile's
   rows mr. Always mc >= mr and mc * kc <= a_floats (kc is capped at
   a_floats / mr for that). */
static void fastrnn_panel_blocks(Py_ssize_t k, Py_ssize_t group, Py_ssize_t mr,
                                 Py_ssize_t a_floats, Py_ssize_t *kc, Py_ssize_t *mc) {
    Py_ssize_t kmax = fastrnn_cache_l2 / 4 / (group * FASTRNN_PANEL * (Py_ssize_t) sizeof(float));
    if (kmax > a_floats / mr) kmax = a_floats / mr;
    if (kmax < 16) kmax = 16;
    kmax -= kmax & 1;                  /* even (see below) */
    Py_ssize_t blocks = (k + kmax - 1) / kmax;
    if (blocks < 1) blocks = 1;
    *kc = (k + blocks - 1) / blocks;
    if (*kc < 1) *kc = 1;
    /* blocks of whole pairs of steps (bfloat16 panels hold pairs; every type
       blocks alike, so that 16-bit products keep float32's bits); kmax is
       even, so kc stays <= it */
    if ((*kc & 1) && *kc < k) *kc += 1;
    Py_ssize_t floats = fastrnn_cache_l2 / 2 / (Py_ssize_t) sizeof(float);
    if (floats > a_floats) floats = a_floats;
    Py_ssize_t rows = floats / *kc;
    rows -= rows % mr;
    *mc = rows < mr ? mr : rows;
}

/* elements of k per chunk of the transposed product (at most `limit`, its
   stack strip): the chunk's panels of B (panels x 16 floats per element)
   take at most half of L2 */
static Py_ssize_t fastrnn_panel_tn_chunk(Py_ssize_t panels, Py_ssize_t limit) {
    Py_ssize_t chunk = fastrnn_cache_l2 / 2 / (panels * FASTRNN_PANEL * (Py_ssize_t) sizeof(float));
    if (chunk > limit) chunk = limit;
    return chunk < 16 ? 16 : chunk;
}

/* This thread's block for the packed rows of A, allocated on its first
   product and freed when the thread ends (a pthread key's destructor); NULL
   when there is no memory. Not on the stack: 64 KiB there would overflow a
   thread started with a small stack (threading.stack_size, musl's 128 KiB). */
#if FASTRNN_PANEL_VARIANTS
#include <pthread.h>
#include <stdlib.h>
static pthread_key_t fastrnn_a_key;
static pthread_once_t fastrnn_a_once = PTHREAD_ONCE_INIT;
static int fastrnn_a_key_ok = 0;

static void fastrnn_a_key_make(void) {
    fastrnn_a_key_ok = pthread_key_create(&fastrnn_a_key, free) == 0;
}

static float *fastrnn_panel_a_block(void) {
    pthread_once(&fastrnn_a_once, fastrnn_a_key_make);
    if (!fastrnn_a_key_ok) return NULL;
    float *block = (float *) pthread_getspecific(fastrnn_a_key);
    if (block == NULL) {
        void *p = NULL;
        if (posix_memalign(&p, 64, FASTRNN_PANEL_A_FLOATS * sizeof(float)) != 0) return NULL;
        if (pthread_setspecific(fastrnn_a_key, p) != 0) {
            free(p);
            return NULL;
        }
        block = (float *) p;
    }
    return block;
}
#endif

/* W given by its rows, not packed (fastrnn_panel_gemm_rows): n rows of
   contiguous elements in blocks of `block` rows, row r at
   w + (r / block) bstride + (r % block) ldw. The unit split's rows of every
   gate for a thread's units: block U, bstride H k, ldw k. */
typedef struct {
    const float *w;
    Py_ssize_t ldw, block, bstride;
} fastrnn_wrows;

typedef void (*fastrnn_pack_rows_fn)(const float **, Py_ssize_t, float *);

/* one panel of k elements from its first `count` rows (rows of contiguous
   elements; the panel's other rows are zero): all 16 with `full` (a
   variant's register transposes) */
static void fastrnn_pack_panel_with(const float **rows, int count, Py_ssize_t k, float *d,
                                    fastrnn_pack_rows_fn full) {
    if (count == FASTRNN_PANEL) {
        full(rows, k, d);
        return;
    }
    for (int j = 0; j < FASTRNN_PANEL; j++)
        for (Py_ssize_t kk = 0; kk < k; kk++)
            d[kk * FASTRNN_PANEL + j] = j < count ? rows[j][kk] : 0.0f;
}

/* panels [p0, p1) of W (n rows, see fastrnn_wrows), elements [k0, k0 + kb)
   of each row, into d (panel p at d + (p - p0) kb 16, zero past n), whole
   panels with `full` */
static void fastrnn_pack_wrows(const fastrnn_wrows *src, Py_ssize_t n, Py_ssize_t p0,
                               Py_ssize_t p1, Py_ssize_t k0, Py_ssize_t kb, float *d,
                               fastrnn_pack_rows_fn full) {
    const float *rows[FASTRNN_PANEL];
    /* row r0 = p0 16 is row u of block q; then one row at a time (no division per row) */
    Py_ssize_t q = p0 * FASTRNN_PANEL / src->block, u = p0 * FASTRNN_PANEL % src->block;
    for (Py_ssize_t p = p0; p < p1; p++, d += kb * FASTRNN_PANEL) {
        const Py_ssize_t r0 = p * FASTRNN_PANEL;
        const int count = n - r0 < FASTRNN_PANEL ? (int) (n - r0) : FASTRNN_PANEL;
        for (int j = 0; j < count; j++) {
            rows[j] = src->w + q * src->bstride + u * src->ldw + k0;
            if (++u == src->block) {
                u = 0;
                q++;
            }
        }
        fastrnn_pack_panel_with(rows, count, kb, d, full);
    }
}

/* one part of a transposed product C += Aᵀ B (fastrnn_panel_gemm_tn_parts):
   B packed in panels (n columns, k rows), C (m x n, row stride ldc), colsum
   (m floats; NULL: none) += the sums of A's columns */
typedef struct {
    const float *bp;
    Py_ssize_t n;
    float *c;
    Py_ssize_t ldc;
    float *colsum;
} fastrnn_tn_part;

#if FASTRNN_PANEL_VARIANTS
#include <immintrin.h>       /* the conversions of narrow weights; target attributes */
#define FASTRNN_ISA avx512
#define FASTRNN_ISA_TARGET "avx512f,avx2,fma,f16c"
#define FASTRNN_VW 16
#include "_panel_isa.h"
#undef FASTRNN_VW
#undef FASTRNN_ISA_TARGET
#undef FASTRNN_ISA

#define FASTRNN_ISA avx2
#define FASTRNN_ISA_TARGET "avx2,fma,f16c"
#define FASTRNN_VW 8
#include "_panel_isa.h"
#undef FASTRNN_VW
#undef FASTRNN_ISA_TARGET
#undef FASTRNN_ISA
#endif

/* portable versions: the transpose for any build, the product only so that a
   call without a selected variant is still right (the Cython side does not
   make one) */
static void fastrnn_pack_panel_rows_scalar(const float **rows, Py_ssize_t k, float *d) {
    for (Py_ssize_t kk = 0; kk < k; kk++)
        for (int j = 0; j < FASTRNN_PANEL; j++) d[kk * FASTRNN_PANEL + j] = rows[j][kk];
}

/* C (+)= A Wᵀ on panels, A's element (r, kk) at a[r * sr + kk * sk]: the
   portable product of either layout (rows of A: sr = lda, sk = 1; A stored
   transposed, for C += Aᵀ B: sr = 1, sk = lda) */
static void fastrnn_panel_gemm_strided_scalar(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                              const float *a, Py_ssize_t sr, Py_ssize_t sk,
                                              const float *wp, float *c, Py_ssize_t ldc,
                                              int accumulate) {
    for (Py_ssize_t r = 0; r < m; r++)
        for (Py_ssize_t p = 0; p * FASTRNN_PANEL < n; p++) {
            float t[FASTRNN_PANEL] = {0};
            for (Py_ssize_t kk = 0; kk < k; kk++)
                for (int j = 0; j < FASTRNN_PANEL; j++)
                    t[j] += a[r * sr + kk * sk] * wp[(p * k + kk) * FASTRNN_PANEL + j];
            fastrnn_panel_store(c + r * ldc, n, p, t, accumulate);
        }
}

static void fastrnn_panel_gemm_scalar(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                      const float *a, Py_ssize_t lda, const float *wp,
                                      float *c, Py_ssize_t ldc, int accumulate) {
    fastrnn_panel_gemm_strided_scalar(m, n, k, a, lda, 1, wp, c, ldc, accumulate);
}

static void fastrnn_panel_gemm_tn_parts_scalar(Py_ssize_t m, Py_ssize_t k, const float *a,
                                               Py_ssize_t lda, int nparts,
                                               const fastrnn_tn_part *part) {
    for (int j = 0; j < nparts; j++) {
        fastrnn_panel_gemm_strided_scalar(m, part[j].n, k, a, 1, lda, part[j].bp, part[j].c,
                                          part[j].ldc, 1);
        if (part[j].colsum != NULL)
            for (Py_ssize_t kk = 0; kk < k; kk++)
                for (Py_ssize_t i = 0; i < m; i++) part[j].colsum[i] += a[kk * lda + i];
    }
}

/* the portable row dot products (see fastrnn_rows_dot in _panel_isa.h) */
static void fastrnn_rows_dot_scalar(Py_ssize_t m, Py_ssize_t k, const float *w, Py_ssize_t ldw,
                                    const float *a, float *y, int accumulate) {
    for (Py_ssize_t r = 0; r < m; r++) {
        float t = 0.0f;
        for (Py_ssize_t kk = 0; kk < k; kk++) t += w[r * ldw + kk] * a[kk];
        y[r] = accumulate ? y[r] + t : t;
    }
}

/* a weight stored in 16 bits as a float: IEEE half (bf16 = 0) or bfloat16 */
static float fastrnn_widen16(unsigned short v, int bf16) {
    unsigned int bits;
    float f;
    if (bf16) {
        bits = (unsigned int) v << 16;
    } else {
        unsigned int sign = (unsigned int) (v & 0x8000) << 16, e = (v >> 10) & 0x1F,
                     man = v & 0x3FF;
        if (e == 0x1F) {                              /* inf, NaN */
            bits = sign | 0x7F800000u | (man << 13);
        } else if (e) {                               /* normal */
            bits = sign | ((e + 112) << 23) | (man << 13);
        } else if (man) {                             /* subnormal: normalise */
            e = 113;
            while (!(man & 0x400)) { man <<= 1; e--; }
            bits = sign | (e << 23) | ((man & 0x3FF) << 13);
        } else {
            bits = sign;
        }
    }
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* the portable 16-bit row dot products (see fastrnn_rows_dot16 in _panel_isa.h) */
static void fastrnn_rows_dot16_scalar(Py_ssize_t m, Py_ssize_t k, const unsigned short *w,
                                      Py_ssize_t ldw, const float *a, float *y, int accumulate,
                                      int bf16) {
    for (Py_ssize_t r = 0; r < m; r++) {
        float t = 0.0f;
        for (Py_ssize_t kk = 0; kk < k; kk++) t += fastrnn_widen16(w[r * ldw + kk], bf16) * a[kk];
        y[r] = accumulate ? y[r] + t : t;
    }
}

/* the portable product on narrow weights (see fastrnn_panel_gemm_w in _panel_isa.h) */
static void fastrnn_panel_gemm_w_scalar(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                        const float *a, Py_ssize_t lda, const void *wp, int wt,
                                        const float *scale, float *c, Py_ssize_t ldc,
                                        int accumulate) {
    if (wt == FASTRNN_WT_F32) {
        fastrnn_panel_gemm_strided_scalar(m, n, k, a, lda, 1, (const float *) wp, c, ldc,
                                          accumulate);
        return;
    }
    for (Py_ssize_t r = 0; r < m; r++)
        for (Py_ssize_t p = 0; p * FASTRNN_PANEL < n; p++) {
            float t[FASTRNN_PANEL] = {0};
            for (Py_ssize_t kk = 0; kk < k; kk++)
                for (int j = 0; j < FASTRNN_PANEL; j++) {
                    /* (bfloat16: pairs of steps, k rounded up to even) */
                    Py_ssize_t e = wt == FASTRNN_WT_BF16
                        ? (p * fastrnn_panel_steps(wt, k) + kk - (kk & 1)) * FASTRNN_PANEL
                          + 2 * j + (kk & 1)
                        : (p * k + kk) * FASTRNN_PANEL + j;
                    float w = wt == FASTRNN_WT_I8 ? (float) ((const signed char *) wp)[e]
                              : fastrnn_widen16(((const unsigned short *) wp)[e],
                                                wt == FASTRNN_WT_BF16);
                    t[j] += a[r * lda + kk] * w;
                }
            if (wt == FASTRNN_WT_I8)
                for (int j = 0; j < FASTRNN_PANEL; j++) t[j] *= scale[p * FASTRNN_PANEL + j];
            fastrnn_panel_store(c + r * ldc, n, p, t, accumulate);
        }
}

typedef void (*fastrnn_gemm_fn)(Py_ssize_t, Py_ssize_t, Py_ssize_t, const float *,
                                Py_ssize_t, const float *, float *, Py_ssize_t, int);
static fastrnn_pack_rows_fn fastrnn_pack_rows_impl = fastrnn_pack_panel_rows_scalar;
static fastrnn_gemm_fn fastrnn_gemm_impl = fastrnn_panel_gemm_scalar;
typedef void (*fastrnn_gemm_w_fn)(Py_ssize_t, Py_ssize_t, Py_ssize_t, const float *,
                                  Py_ssize_t, const void *, int, const float *, float *,
                                  Py_ssize_t, int);
static fastrnn_gemm_w_fn fastrnn_gemm_w_impl = fastrnn_panel_gemm_w_scalar;
typedef void (*fastrnn_gemm_rows_fn)(Py_ssize_t, Py_ssize_t, Py_ssize_t, const float *,
                                     Py_ssize_t, const fastrnn_wrows *, float *, float *,
                                     Py_ssize_t, int);
static fastrnn_gemm_rows_fn fastrnn_gemm_rows_impl = NULL;
/* the dot-product kernels (fastrnn_panel_dot_prepare, fastrnn_panel_gemm_dot):
   per weight type, NULL where the CPU (or the selected variant) lacks them */
typedef void (*fastrnn_dot_prepare_fn)(Py_ssize_t, Py_ssize_t, const float *, Py_ssize_t,
                                       unsigned char *);
typedef void (*fastrnn_gemm_dot_fn)(Py_ssize_t, Py_ssize_t, Py_ssize_t, const unsigned char *,
                                    const void *, const int *, const float *, float *,
                                    Py_ssize_t, int);
static fastrnn_dot_prepare_fn fastrnn_prepare_q8_impl = NULL, fastrnn_prepare_bd_impl = NULL;
static fastrnn_gemm_dot_fn fastrnn_gemm_q8_impl = NULL, fastrnn_gemm_bd_impl = NULL;
typedef void (*fastrnn_gemm_tn_fn)(Py_ssize_t, Py_ssize_t, const float *, Py_ssize_t, int,
                                   const fastrnn_tn_part *);
static fastrnn_gemm_tn_fn fastrnn_gemm_tn_impl = fastrnn_panel_gemm_tn_parts_scalar;
typedef void (*fastrnn_rows_dot_fn)(Py_ssize_t, Py_ssize_t, const float *, Py_ssize_t,
                                    const float *, float *, int);
static fastrnn_rows_dot_fn fastrnn_rows_dot_impl = fastrnn_rows_dot_scalar;
typedef void (*fastrnn_rows_dot16_fn)(Py_ssize_t, Py_ssize_t, const unsigned short *,
                                      Py_ssize_t, const float *, float *, int, int);
static fastrnn_rows_dot16_fn fastrnn_rows_dot16_impl = fastrnn_rows_dot16_scalar;
static int fastrnn_panel_variant = FASTRNN_PANEL_NONE;

/* whether this CPU (and build) runs variant isa */
static int fastrnn_panel_supported(int isa) {
    if (isa == FASTRNN_PANEL_NONE) return 1;
#if FASTRNN_PANEL_VARIANTS
    __builtin_cpu_init();
    if (isa == FASTRNN_PANEL_AVX512) return __builtin_cpu_supports("avx512f");
    /* (x86-64-v3: AVX2, FMA and F16C, which widens half weights) */
    if (isa == FASTRNN_PANEL_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("f16c");
#endif
    return 0;
}

/* whether this CPU runs x86-64-v4 code (the AVX-512 kernel build: AVX-512
   F, BW, CD, DQ, VL, on top of x86-64-v3) */
static int fastrnn_cpu_x86_64_v4(void) {
#if FASTRNN_PANEL_VARIANTS
    __builtin_cpu_init();
    return fastrnn_panel_supported(FASTRNN_PANEL_AVX2) && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512cd") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

static int fastrnn_panel_best(void) {
    if (fastrnn_panel_supported(FASTRNN_PANEL_AVX512)) return FASTRNN_PANEL_AVX512;
    if (fastrnn_panel_supported(FASTRNN_PANEL_AVX2)) return FASTRNN_PANEL_AVX2;
    return FASTRNN_PANEL_NONE;
}

/* point the entry points at variant isa; 0 (and no change) if it does not run here */
static int fastrnn_panel_select(int isa) {
    if (!fastrnn_panel_supported(isa)) return 0;
    fastrnn_pack_rows_impl = fastrnn_pack_panel_rows_scalar;
    fastrnn_gemm_impl = fastrnn_panel_gemm_scalar;
    fastrnn_gemm_w_impl = fastrnn_panel_gemm_w_scalar;
    fastrnn_gemm_rows_impl = NULL;
    fastrnn_gemm_q8_impl = fastrnn_gemm_bd_impl = NULL;
    fastrnn_prepare_q8_impl = fastrnn_prepare_bd_impl = NULL;
    fastrnn_gemm_tn_impl = fastrnn_panel_gemm_tn_parts_scalar;
    fastrnn_rows_dot_impl = fastrnn_rows_dot_scalar;
    fastrnn_rows_dot16_impl = fastrnn_rows_dot16_scalar;
#if FASTRNN_PANEL_VARIANTS
    /* (x86-64-v3, which every AVX2 variant here needs, includes F16C) */
    if (isa != FASTRNN_PANEL_NONE && __builtin_cpu_supports("f16c"))
        fastrnn_rows_dot16_impl = fastrnn_rows_dot16_avx2;
    if (isa == FASTRNN_PANEL_AVX512) {
        fastrnn_pack_rows_impl = fastrnn_pack_panel_rows_avx512;
        fastrnn_gemm_impl = fastrnn_panel_gemm_avx512;
        fastrnn_gemm_w_impl = fastrnn_panel_gemm_w_avx512;
        fastrnn_gemm_rows_impl = fastrnn_panel_gemm_rows_avx512;
        if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw")) {
            fastrnn_prepare_q8_impl = fastrnn_prepare_q8_avx512;
            fastrnn_gemm_q8_impl = fastrnn_gemm_q8_avx512;
        } else {
            /* (AVX-512 without VNNI: AVX2's byte multiply-adds, the same bits) */
            fastrnn_prepare_q8_impl = fastrnn_prepare_q8_avx2;
            fastrnn_gemm_q8_impl = fastrnn_gemm_q8_avx2;
        }
        if (__builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw")) {
            fastrnn_prepare_bd_impl = fastrnn_prepare_bd_avx512;
            fastrnn_gemm_bd_impl = fastrnn_gemm_bd_avx512;
        }
        fastrnn_gemm_tn_impl = fastrnn_panel_gemm_tn_parts_avx512;
        fastrnn_rows_dot_impl = fastrnn_rows_dot_avx2;     /* (see _panel_isa.h) */
    } else if (isa == FASTRNN_PANEL_AVX2) {
        fastrnn_pack_rows_impl = fastrnn_pack_panel_rows_avx2;
        fastrnn_gemm_impl = fastrnn_panel_gemm_avx2;
        fastrnn_gemm_w_impl = fastrnn_panel_gemm_w_avx2;
        fastrnn_gemm_rows_impl = fastrnn_panel_gemm_rows_avx2;
        fastrnn_gemm_tn_impl = fastrnn_panel_gemm_tn_parts_avx2;
        fastrnn_rows_dot_impl = fastrnn_rows_dot_avx2;
        fastrnn_prepare_q8_impl = fastrnn_prepare_q8_avx2;
        fastrnn_gemm_q8_impl = fastrnn_gemm_q8_avx2;
    }
#endif
    fastrnn_panel_variant = isa;
    return 1;
}

static int fastrnn_panel_selected(void) {
    return fastrnn_panel_variant;
}

static void fastrnn_panel_gemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float *a,
                               Py_ssize_t lda, const float *wp, float *c, Py_ssize_t ldc,
                               int accumulate) {
    fastrnn_gemm_impl(m, n, k, a, lda, wp, c, ldc, accumulate);
}

/* every panel of W given by its rows (src: n rows of k), into d */
static void fastrnn_pack_rows_whole(const fastrnn_wrows *src, Py_ssize_t n, Py_ssize_t k,
                                    float *d) {
    fastrnn_pack_wrows(src, n, 0, (n + FASTRNN_PANEL - 1) / FASTRNN_PANEL, 0, k, d,
                       fastrnn_pack_rows_impl);
}

/* fastrnn_panel_gemm on W given by its rows (src), each group of panels
   packed into wbuf as the product reaches it (room for all of W packed);
   without a variant, W packed into wbuf first */
static void fastrnn_panel_gemm_rows(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float *a,
                                    Py_ssize_t lda, const fastrnn_wrows *src, float *wbuf,
                                    float *c, Py_ssize_t ldc, int accumulate) {
    if (fastrnn_gemm_rows_impl != NULL) {
        fastrnn_gemm_rows_impl(m, n, k, a, lda, src, wbuf, c, ldc, accumulate);
        return;
    }
    fastrnn_pack_rows_whole(src, n, k, wbuf);
    fastrnn_gemm_impl(m, n, k, a, lda, wbuf, c, ldc, accumulate);
}

/* the same on panels of weights of type wt (FASTRNN_WT_*): 16-bit ones give
   the bits of fastrnn_panel_gemm on the widened weights; int8 ones stand for
   code x scale[column] */
/* Half weights of one- and two-row products on 8-lane conversions under the
   AVX-512 variant (1) or its own 16-lane ones (0): measured once per CPU
   (fastrnn._engine's plan, _panels.set_half_lanes), since which is faster
   depends on the core (Zen 4 runs the 16-lane conversion as two halves) */
static int fastrnn_half_8_lanes = 0;

/* fastrnn_panel_gemm_w with the half conversions' lanes given (lanes8: 8, else
   the selected variant's), not fastrnn_half_8_lanes: what measures the choice,
   without changing it under calls running in other threads */
static void fastrnn_panel_gemm_w_lanes(int lanes8, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                       const float *a, Py_ssize_t lda, const void *wp, int wt,
                                       const float *scale, float *c, Py_ssize_t ldc,
                                       int accumulate) {
#if FASTRNN_PANEL_VARIANTS
    if (lanes8 && wt == FASTRNN_WT_F16 && m <= 2 &&
        fastrnn_panel_variant == FASTRNN_PANEL_AVX512) {
        fastrnn_panel_gemm_w_avx2(m, n, k, a, lda, wp, wt, scale, c, ldc, accumulate);
        return;
    }
#endif
    (void) lanes8;
    fastrnn_gemm_w_impl(m, n, k, a, lda, wp, wt, scale, c, ldc, accumulate);
}

static void fastrnn_panel_gemm_w(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float *a,
                                 Py_ssize_t lda, const void *wp, int wt, const float *scale,
                                 float *c, Py_ssize_t ldc, int accumulate) {
    fastrnn_panel_gemm_w_lanes(fastrnn_half_8_lanes, m, n, k, a, lda, wp, wt, scale, c, ldc,
                               accumulate);
}

/* whether weights of type wt (FASTRNN_WT_Q8: int8, FASTRNN_WT_BD: bfloat16) run
   on dot products here */
static int fastrnn_panel_dot(int wt) {
    return wt == FASTRNN_WT_Q8 ? fastrnn_gemm_q8_impl != NULL
           : wt == FASTRNN_WT_BD ? fastrnn_gemm_bd_impl != NULL : 0;
}

/* whether the int8 dot products here are AVX-512 VNNI's (else AVX2's, or none) */
static int fastrnn_panel_q8_vnni(void) {
#if FASTRNN_PANEL_VARIANTS
    return fastrnn_gemm_q8_impl == fastrnn_gemm_q8_avx512;
#else
    return 0;
#endif
}

/* bytes of the work of fastrnn_panel_dot_prepare for m rows of k */
static Py_ssize_t fastrnn_panel_dot_work(int wt, Py_ssize_t m, Py_ssize_t k) {
    /* (int8: each row's scale after the rows, then room for the rows' magnitudes,
       which AVX2's products read) */
    const Py_ssize_t row = fastrnn_panel_steps(wt, k) * FASTRNN_WT_SIZE(wt);
    return m * (wt == FASTRNN_WT_Q8 ? 2 * row + (Py_ssize_t) sizeof(float) : row);
}

/* A (m x k) made the dot products' operand in work (fastrnn_panel_dot_work
   bytes): int8, each row quantized to 255 levels with its scale (see
   fastrnn_gemm_q8 in _panel_isa.h); bfloat16, each row rounded. Done once for
   every product with the same A. Only where fastrnn_panel_dot(wt). */
static void fastrnn_panel_dot_prepare(int wt, Py_ssize_t m, Py_ssize_t k, const float *a,
                                      Py_ssize_t lda, unsigned char *work) {
    fastrnn_dot_prepare_fn f = wt == FASTRNN_WT_Q8 ? fastrnn_prepare_q8_impl
                                                    : fastrnn_prepare_bd_impl;
    if (f != NULL) f(m, k, a, lda, work);
}

/* C (m x n) (+)= A Wᵀ on dot products, A prepared in work, W in the type's
   panels (int8: quads, with its column sums and scales; bfloat16: pairs of
   steps) */
static void fastrnn_panel_gemm_dot(int wt, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                   const unsigned char *work, const void *w, const int *sums,
                                   const float *scale, float *c, Py_ssize_t ldc,
                                   int accumulate) {
    fastrnn_gemm_dot_fn f = wt == FASTRNN_WT_Q8 ? fastrnn_gemm_q8_impl : fastrnn_gemm_bd_impl;
    if (f != NULL) f(m, n, k, work, w, sums, scale, c, ldc, accumulate);
}

/* y[r] (+)= W[r, :] . a for r < m, W row-major (row stride ldw) */
static void fastrnn_rows_dot(Py_ssize_t m, Py_ssize_t k, const float *w, Py_ssize_t ldw,
                             const float *a, float *y, int accumulate) {
    fastrnn_rows_dot_impl(m, k, w, ldw, a, y, accumulate);
}

/* y[r] (+)= W[r, :] . a for r < m, W row-major in 16 bits (half; bfloat16 with bf16) */
static void fastrnn_rows_dot16(Py_ssize_t m, Py_ssize_t k, const unsigned short *w,
                               Py_ssize_t ldw, const float *a, float *y, int accumulate,
                               int bf16) {
    fastrnn_rows_dot16_impl(m, k, w, ldw, a, y, accumulate, bf16);
}

/* the selected variant's register tile (rows x panels) and the panels of a
   group its tiles share (all 0 without one) */
static void fastrnn_panel_tile(int *rows, int *panels, int *group) {
    *rows = *panels = *group = 0;
#if FASTRNN_PANEL_VARIANTS
    if (fastrnn_panel_variant == FASTRNN_PANEL_AVX512)
        fastrnn_tile_shape_avx512(rows, panels, group);
    if (fastrnn_panel_variant == FASTRNN_PANEL_AVX2) fastrnn_tile_shape_avx2(rows, panels, group);
#endif
}

/* reps passes reading n floats at p (a multiple of 128, at a cache line)
   with variant isa (one this CPU runs); returns their sum (bench/limits.py:
   the read rate a one-row product's stream of weights is bound by) */
static float fastrnn_read_sum(int isa, const float *p, Py_ssize_t n, long reps) {
#if FASTRNN_PANEL_VARIANTS
    if (isa == FASTRNN_PANEL_AVX512 && fastrnn_panel_supported(isa))
        return fastrnn_read_sum_avx512(p, n, reps);
    if (isa == FASTRNN_PANEL_AVX2 && fastrnn_panel_supported(isa))
        return fastrnn_read_sum_avx2(p, n, reps);
#endif
    (void) isa; (void) p; (void) n; (void) reps;
    return 0.0f;
}

/* iters rounds of 12 independent vector FMAs with variant isa (one this CPU
   runs); returns their sum (bench/limits.py: the peak FLOP rate) */
static float fastrnn_fma_peak(int isa, long iters) {
#if FASTRNN_PANEL_VARIANTS
    if (isa == FASTRNN_PANEL_AVX512 && fastrnn_panel_supported(isa))
        return fastrnn_fma_peak_avx512(iters);
    if (isa == FASTRNN_PANEL_AVX2 && fastrnn_panel_supported(isa))
        return fastrnn_fma_peak_avx2(iters);
#endif
    (void) isa; (void) iters;
    return 0.0f;
}

/* C_j += Aᵀ B_j for each part j, B_j in panels, and colsum_j += A's column
   sums unless NULL, A copied once for all parts (see _panel_isa.h) */
static void fastrnn_panel_gemm_tn_parts(Py_ssize_t m, Py_ssize_t k, const float *a,
                                        Py_ssize_t lda, int nparts,
                                        const fastrnn_tn_part *part) {
    fastrnn_gemm_tn_impl(m, k, a, lda, nparts, part);
}

/* C += Aᵀ B, B in panels, and colsum += A's column sums unless NULL: one part */
static void fastrnn_panel_gemm_tn(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float *a,
                                  Py_ssize_t lda, const float *bp, float *c, Py_ssize_t ldc,
                                  float *colsum) {
    const fastrnn_tn_part part = {bp, n, c, ldc, colsum};
    fastrnn_gemm_tn_impl(m, k, a, lda, 1, &part);
}

/* one panel from its first `count` rows (rows of contiguous elements; the
   panel's other rows are zero): the transposes when all 16 are there */
static void fastrnn_pack_panel(const float **rows, int count, Py_ssize_t k, float *d) {
    fastrnn_pack_panel_with(rows, count, k, d, fastrnn_pack_rows_impl);
}

/* dst[p][kk][j] = src[(16 p + j) * sn + kk * sk], zero for 16 p + j >= n,
   for the panels p in [p0, p1) of the (n + 15) / 16: rows of contiguous
   elements (sk == 1) through register transposes, contiguous columns
   (sn == 1, a transposed matrix) as plain copies */
static void fastrnn_pack_panel_range(const float *src, Py_ssize_t n, Py_ssize_t k,
                                     Py_ssize_t sn, Py_ssize_t sk, float *dst,
                                     Py_ssize_t p0, Py_ssize_t p1) {
    for (Py_ssize_t p = p0; p < p1; p++) {
        float *d = dst + p * k * FASTRNN_PANEL;
        Py_ssize_t c0 = p * FASTRNN_PANEL;
        Py_ssize_t cols = n - c0 < FASTRNN_PANEL ? n - c0 : FASTRNN_PANEL;
        if (sk == 1) {
            const float *rows[FASTRNN_PANEL];
            for (int j = 0; j < cols; j++) rows[j] = src + (c0 + j) * sn;
            fastrnn_pack_panel(rows, (int) cols, k, d);
        } else if (sn == 1 && cols == FASTRNN_PANEL) {
            /* a whole panel: a copy of constant size per step, which the compiler
               inlines (a call to memcpy per 64 bytes was most of packing the
               operands of a training call's weight gradients) */
            for (Py_ssize_t kk = 0; kk < k; kk++)
                memcpy(d + kk * FASTRNN_PANEL, src + kk * sk + c0, FASTRNN_PANEL * sizeof(float));
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

/* evict the line holding p from every cache (probes: a first, cold call) */
static inline void fastrnn_flush_line(const void *p) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_clflush(p);
#else
    (void) p;
#endif
}

static void fastrnn_pack_panels(const float *src, Py_ssize_t n, Py_ssize_t k,
                                Py_ssize_t sn, Py_ssize_t sk, float *dst) {
    fastrnn_pack_panel_range(src, n, k, sn, sk, dst, 0, (n + FASTRNN_PANEL - 1) / FASTRNN_PANEL);
}

#endif
