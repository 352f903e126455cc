/* The float32 activations of the gate passes: their constants (one
   definition, read by _activations.pxd's scalar e^x, σ and tanh) and the
   same functions on vectors, for the forward passes of the plain cells
   (the relu RNN's has no activation to speed up; clipping, peepholes and
   coupled gates keep the scalar loops).

   Each vector function is the scalar one of _activations.pxd operation by
   operation, on whole vectors: the same rounding at every step, so the same
   bits (tests/test_activations.py checks both on every kernel build). What
   differs is the order: the functions take up to FRG_U vectors at once
   (FRG_U in a row's whole blocks) and apply each operation to all of them
   before the next, so that the out-of-order core always has independent
   work. The compiler's vectorisation of the
   scalar loops (one vector per iteration) left each iteration's ~40-deep
   chain of dependent operations (e^x, then a division) to the core's
   scheduler, which held too few iterations to hide its latency:
   `python -m bench.limits` prints the passes' ns per unit.

   GCC vector extensions, so that every build compiles them (4 lanes on the
   baseline's SSE2, 8 on AVX2, 16 on AVX-512), and an intrinsic of the
   build's width where one instruction does what the extensions spell in
   three (the clamps' min and max, AVX2's blend). */
#ifndef FASTRNN_GATE_MATH_H
#define FASTRNN_GATE_MATH_H

#include <string.h>

/* the intrinsics on x86 (elsewhere, e.g. aarch64, the vector extensions
   alone: the same operations, a select where x86 has one instruction) */
#ifndef FRG_X86
#if defined(__SSE__) && (defined(__x86_64__) || defined(__i386__))
#define FRG_X86 1
#else
#define FRG_X86 0
#endif
#endif
#if FRG_X86
#include <immintrin.h>
#endif

/* float32 constants, written with the f suffix so the arithmetic stays float */
#define FASTRNN_EXP_HI 88.3f
#define FASTRNN_EXP_LO (-87.3f)
#define FASTRNN_LOG2E 1.44269504088896341f
#define FASTRNN_ROUND_MAGIC 12582912.0f            /* 1.5 * 2^23 */
#define FASTRNN_LN2_HI 0.693145751953125f
#define FASTRNN_LN2_LO 1.428606765330187e-06f
#define FASTRNN_EXP_C2 0.4999999345237087f
#define FASTRNN_EXP_C3 0.1666652070576536f
#define FASTRNN_EXP_C4 0.0416683873741894f
#define FASTRNN_EXP_C5 0.008368707930285657f
#define FASTRNN_EXP_C6 0.001381460013170969f
#define FASTRNN_TANH_SMALL 0.0625f
#define FASTRNN_TANH_T3 (-0.333333333333333333f)
#define FASTRNN_TANH_T5 0.133333333333333333f
#define FASTRNN_TANH_T7 (-0.053968253968253968f)

/* the bits of a float: 2^n for an integer n in [-126, 127] */
static inline float fastrnn_pow2i(int n) {
    union { float f; int i; } u;
    u.i = (n + 127) << 23;
    return u.f;
}

#if defined(__AVX512F__)
#define FRG_W 16
#elif defined(__AVX__)
#define FRG_W 8
#else
#define FRG_W 4                   /* SSE2's registers */
#endif
/* vectors taken at once: 32 floats, four AVX2 vectors (on Zen 3 a pass of
   one row of 128 units took 0.8x its time with two, 0.7x with four, against
   the scalar loops; the spilled constants are read as memory operands), two
   AVX-512 ones (not measured: an AVX-512 machine was not at hand), four SSE2 */
#if FRG_W == 16
#define FRG_U 2
#else
#define FRG_U 4
#endif
#define FRG_BLOCK (FRG_W * FRG_U)
#define FRG_INLINE __attribute__((always_inline)) inline
/* each of the nu (<= FRG_U) vectors a function takes: nu is a constant
   where the function is inlined (FRG_U in a row's whole blocks, 1 in its
   last vectors) */
#define FRG_EACH for (int u_ = 0; u_ < nu; u_++)

typedef float frg_v __attribute__((vector_size(FRG_W * 4)));
typedef int frg_vi __attribute__((vector_size(FRG_W * 4)));

static FRG_INLINE frg_v frg_load(const float *p) {
    frg_v v;
    memcpy(&v, p, sizeof v);
    return v;
}

static FRG_INLINE void frg_store(float *p, frg_v v) {
    memcpy(p, &v, sizeof v);
}

/* a where mask (all ones), else b: the scalar `a if cond else b`. AVX2 as
   one blend (GCC left the bitwise form as three operations, and the pass
   ran no faster than the scalar loops); elsewhere the bitwise form (SSE2
   has no blend; AVX-512 folds it into one ternary-logic operation). */
static FRG_INLINE frg_v frg_select(frg_vi mask, frg_v a, frg_v b) {
#if FRG_X86 && FRG_W == 8
    return (frg_v) _mm256_blendv_ps((__m256) b, (__m256) a, (__m256) mask);
#else
    frg_vi ai, bi, r;
    memcpy(&ai, &a, sizeof a);
    memcpy(&bi, &b, sizeof b);
    r = (ai & mask) | (bi & ~mask);
    frg_v out;
    memcpy(&out, &r, sizeof out);
    return out;
#endif
}

/* hi where x > hi, else x (NaN stays): minps returns its second operand
   unless the first is less; likewise lo where x < lo. The scalar clamps,
   one operation each. */
static FRG_INLINE frg_v frg_below(frg_v hi, frg_v x) {
#if !FRG_X86
    return frg_select(x > hi, hi, x);
#elif FRG_W == 16
    return (frg_v) _mm512_min_ps((__m512) hi, (__m512) x);
#elif FRG_W == 8
    return (frg_v) _mm256_min_ps((__m256) hi, (__m256) x);
#else
    return (frg_v) _mm_min_ps((__m128) hi, (__m128) x);
#endif
}

static FRG_INLINE frg_v frg_above(frg_v lo, frg_v x) {
#if !FRG_X86
    return frg_select(x < lo, lo, x);
#elif FRG_W == 16
    return (frg_v) _mm512_max_ps((__m512) lo, (__m512) x);
#elif FRG_W == 8
    return (frg_v) _mm256_max_ps((__m256) lo, (__m256) x);
#else
    return (frg_v) _mm_max_ps((__m128) lo, (__m128) x);
#endif
}

/* x[0..nu) := e^x (exp_f32) */
static FRG_INLINE void frg_exp(const int nu, frg_v *x) {
    const frg_v hi = (frg_v) {0} + FASTRNN_EXP_HI, lo = (frg_v) {0} + FASTRNN_EXP_LO;
    frg_v n[FRG_U], r[FRG_U], p[FRG_U];
    FRG_EACH x[u_] = frg_below(hi, x[u_]);
    FRG_EACH x[u_] = frg_above(lo, x[u_]);
    FRG_EACH n[u_] = (x[u_] * FASTRNN_LOG2E + FASTRNN_ROUND_MAGIC) - FASTRNN_ROUND_MAGIC;
    FRG_EACH r[u_] = (x[u_] - n[u_] * FASTRNN_LN2_HI) - n[u_] * FASTRNN_LN2_LO;
    FRG_EACH p[u_] = FASTRNN_EXP_C2 + r[u_] * (FASTRNN_EXP_C3 + r[u_] * (FASTRNN_EXP_C4 + r[u_] * (
                         FASTRNN_EXP_C5 + r[u_] * FASTRNN_EXP_C6)));
    FRG_EACH p[u_] = 1.0f + r[u_] + r[u_] * r[u_] * p[u_];
    FRG_EACH {
        frg_vi e = (__builtin_convertvector(n[u_], frg_vi) + 127) << 23;
        frg_v scale;
        memcpy(&scale, &e, sizeof scale);
        x[u_] = p[u_] * scale;
    }
}

/* x[0..nu) := σ(x) (sigmoid) */
static FRG_INLINE void frg_sigmoid(const int nu, frg_v *x) {
    FRG_EACH x[u_] = -x[u_];
    frg_exp(nu, x);
    FRG_EACH x[u_] = 1.0f / (1.0f + x[u_]);
}

/* v[0..nu) := tanh(v) (tanh_) */
static FRG_INLINE void frg_tanh(const int nu, frg_v *v) {
    const frg_v zero = {0};
    frg_v a[FRG_U], e[FRG_U], s[FRG_U];
    /* |v| (the scalar's -v if v < 0 else v but for the sign of -0 and NaN,
       which change neither result) */
    FRG_EACH {
        frg_vi bits;
        memcpy(&bits, &v[u_], sizeof bits);
        bits &= 0x7fffffff;
        memcpy(&a[u_], &bits, sizeof bits);
    }
    FRG_EACH e[u_] = -2.0f * a[u_];
    frg_exp(nu, e);
    FRG_EACH e[u_] = (1.0f - e[u_]) / (1.0f + e[u_]);
    FRG_EACH e[u_] = frg_select(v[u_] < zero, -e[u_], e[u_]);
    FRG_EACH {
        frg_v w = v[u_] * v[u_];
        s[u_] = v[u_] + v[u_] * w * (FASTRNN_TANH_T3 + w * (FASTRNN_TANH_T5 + w * FASTRNN_TANH_T7));
    }
    FRG_EACH v[u_] = frg_select(a[u_] < zero + FASTRNN_TANH_SMALL, s[u_], e[u_]);
}

/* Runs UNITS(nu, k) (nu vectors of units from k) over units [0, count):
   whole blocks of FRG_U vectors, then the whole vectors left as one group
   (nu = 1 .. FRG_U - 1, each a constant: a single vector's chain alone
   would wait on its latency), then the last count % FRG_W units through
   one vector of copies, REST (each pass's FRG_REST). The same operations
   on each unit whichever way, so the same bits. */
#define FRG_SPAN(count, UNITS, REST) do { \
        Py_ssize_t k_ = 0; \
        for (; k_ + FRG_BLOCK <= (count); k_ += FRG_BLOCK) UNITS(FRG_U, k_); \
        switch (((count) - k_) / FRG_W) { \
            case 1: UNITS(1, k_); k_ += FRG_W; break; \
            case 2: if (FRG_U > 2) { UNITS(2, k_); k_ += 2 * FRG_W; } break; \
            case 3: if (FRG_U > 3) { UNITS(3, k_); k_ += 3 * FRG_W; } break; \
            default: break; \
        } \
        if (k_ < (count)) REST(k_); \
    } while (0)
#if FRG_U > 4
#error "FRG_SPAN groups at most three vectors after the blocks"
#endif

/* the units [k, count) (fewer than FRG_W) of a pass: each of `inputs` arrays'
   units copied into a zeroed vector, CALL (nu = 1) run on the copies t_[q],
   and the first `outputs` copied back */
#define FRG_REST(count, k, inputs, outputs, CALL, ...) do { \
        const int rest_ = (int) ((count) - (k)); \
        float *src_[] = {__VA_ARGS__}; \
        float t_[sizeof src_ / sizeof src_[0]][FRG_W]; \
        for (int q_ = 0; q_ < (int) (sizeof src_ / sizeof src_[0]); q_++) \
            for (int e_ = 0; e_ < FRG_W; e_++) \
                t_[q_][e_] = q_ < (inputs) && src_[q_] != NULL && e_ < rest_ \
                             ? src_[q_][(k) + e_] : 0.0f; \
        CALL; \
        for (int q_ = 0; q_ < (outputs); q_++) \
            for (int e_ = 0; e_ < rest_; e_++) src_[q_][(k) + e_] = t_[q_][e_]; \
    } while (0)

/* x[k] := f(x[k] + b[k]) for nu vectors of units, or f((x[k] + y[k]) + b[k])
   with y; f = σ (tanh with use_tanh) */
static FRG_INLINE void frg_act(const int nu, int use_tanh, float *x, const float *y,
                               const float *b) {
    frg_v v[FRG_U];
    if (y != NULL)
        FRG_EACH v[u_] = (frg_load(x + u_ * FRG_W) + frg_load(y + u_ * FRG_W)) +
                         frg_load(b + u_ * FRG_W);
    else
        FRG_EACH v[u_] = frg_load(x + u_ * FRG_W) + frg_load(b + u_ * FRG_W);
    if (use_tanh) frg_tanh(nu, v); else frg_sigmoid(nu, v);
    FRG_EACH frg_store(x + u_ * FRG_W, v[u_]);
}

/* x[k] := f(x[k] (+ y[k]) + b[k]) for k < count (frg_act) */
static FRG_INLINE void frg_apply(int use_tanh, float *x, const float *y, const float *b,
                                 Py_ssize_t count) {
#define FRG_ACT(nu, k) frg_act(nu, use_tanh, x + (k), y != NULL ? y + (k) : NULL, b + (k))
#define FRG_ACT_REST(k) FRG_REST(count, k, 3, 1, \
                                 frg_act(1, use_tanh, t_[0], y != NULL ? t_[1] : NULL, t_[2]), \
                                 x, (float *) y, (float *) b)
    FRG_SPAN(count, FRG_ACT, FRG_ACT_REST);
#undef FRG_ACT_REST
#undef FRG_ACT
}

/* c := f ⊙ c + i ⊙ g, h := o ⊙ tanh(c) for nu vectors of units */
static FRG_INLINE void frg_lstm_cell(const int nu, const float *i, const float *f,
                                     const float *g, const float *o, float *c, float *h) {
    frg_v ct[FRG_U], t[FRG_U];
    FRG_EACH ct[u_] = frg_load(f + u_ * FRG_W) * frg_load(c + u_ * FRG_W) +
                      frg_load(i + u_ * FRG_W) * frg_load(g + u_ * FRG_W);
    FRG_EACH {
        frg_store(c + u_ * FRG_W, ct[u_]);
        t[u_] = ct[u_];
    }
    frg_tanh(nu, t);
    FRG_EACH frg_store(h + u_ * FRG_W, frg_load(o + u_ * FRG_W) * t[u_]);
}

/* The plain LSTM's forward gate pass (_cells.pxd lstm_rows_scalar,
   float32): for n rows of H units, g (row stride ldg) the pre-activations
   [i; f; g; o] without bias, b (4H) the bias, h and c (n x H; c updated):
   c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g), h_t = σ(o) ⊙ tanh(c_t), g :=
   [σ(i), σ(f), tanh(g), σ(o)]. One activation at a time over the row, then
   c and h. */
static void fastrnn_lstm_rows_f32(Py_ssize_t n, Py_ssize_t H, float *g, Py_ssize_t ldg,
                                  const float *b, float *h, float *c) {
    for (Py_ssize_t j = 0; j < n; j++) {
        float *gj = g + j * ldg, *cj = c + j * H, *hj = h + j * H;
        frg_apply(0, gj, NULL, b, 2 * H);                   /* σ(i), σ(f) */
        frg_apply(1, gj + 2 * H, NULL, b + 2 * H, H);       /* tanh(g) */
        frg_apply(0, gj + 3 * H, NULL, b + 3 * H, H);       /* σ(o) */
#define FRG_CELL(nu, k) frg_lstm_cell(nu, gj + (k), gj + H + (k), gj + 2 * H + (k), \
                                      gj + 3 * H + (k), cj + (k), hj + (k))
#define FRG_CELL_REST(k) FRG_REST(H, k, 6, 2, \
                                  frg_lstm_cell(1, t_[2], t_[3], t_[4], t_[5], t_[0], t_[1]), \
                                  cj, hj, gj, gj + H, gj + 2 * H, gj + 3 * H)
        FRG_SPAN(H, FRG_CELL, FRG_CELL_REST);
#undef FRG_CELL_REST
#undef FRG_CELL
    }
}

/* n' := tanh((g_n + b_n) + r ⊙ hn), h := n' + z ⊙ (h - n') for nu vectors
   of units, hn = gh_n + b_hn; out_n := n', out_hn := hn */
static FRG_INLINE void frg_gru_after(const int nu, const float *r, const float *z,
                                     const float *gn, const float *bn, const float *ghn,
                                     const float *bhn, float *h, float *out_n, float *out_hn) {
    frg_v hn[FRG_U], nn[FRG_U];
    FRG_EACH hn[u_] = frg_load(ghn + u_ * FRG_W) + frg_load(bhn + u_ * FRG_W);
    FRG_EACH nn[u_] = frg_load(gn + u_ * FRG_W) + frg_load(bn + u_ * FRG_W) +
                      frg_load(r + u_ * FRG_W) * hn[u_];
    frg_tanh(nu, nn);
    FRG_EACH {
        frg_v hv = frg_load(h + u_ * FRG_W);
        frg_store(h + u_ * FRG_W, nn[u_] + frg_load(z + u_ * FRG_W) * (hv - nn[u_]));
        frg_store(out_n + u_ * FRG_W, nn[u_]);
        frg_store(out_hn + u_ * FRG_W, hn[u_]);
    }
}

/* The plain reset-after GRU's forward gate pass (_cells.pxd _gru_after_rows,
   float32): for n rows of H units, g rows [r; z; n; -] (stride 4H) the input
   side, gh (stride 3H) the recurrent side, b = b_ih + [b_hr; b_hz; 0], b_hn
   (H), h (n x H, updated): r = σ(g_r + gh_r + b_r), z' = σ(g_z + gh_z +
   b_z), n = tanh(g_n + b_in + r ⊙ (gh_n + b_hn)), h_t = n + z' ⊙ (h_{t-1} -
   n); g := [r, z', n, gh_n + b_hn]. */
static void fastrnn_gru_after_rows_f32(Py_ssize_t n, Py_ssize_t H, float *g, const float *gh,
                                       const float *b, const float *b_hn, float *h) {
    for (Py_ssize_t j = 0; j < n; j++) {
        float *gj = g + j * 4 * H, *hj = h + j * H;
        const float *ghj = gh + j * 3 * H;
        frg_apply(0, gj, ghj, b, 2 * H);                    /* σ(r), σ(z) */
#define FRG_NEW(nu, k) frg_gru_after(nu, gj + (k), gj + H + (k), gj + 2 * H + (k), \
                                     b + 2 * H + (k), ghj + 2 * H + (k), b_hn + (k), hj + (k), \
                                     gj + 2 * H + (k), gj + 3 * H + (k))
#define FRG_NEW_REST(k) FRG_REST(H, k, 9, 3, \
                                 frg_gru_after(1, t_[3], t_[4], t_[5], t_[6], t_[7], t_[8], \
                                               t_[0], t_[1], t_[2]), \
                                 hj, gj + 2 * H, gj + 3 * H, gj, gj + H, gj + 2 * H, \
                                 (float *) b + 2 * H, (float *) ghj + 2 * H, (float *) b_hn)
        FRG_SPAN(H, FRG_NEW, FRG_NEW_REST);
#undef FRG_NEW_REST
#undef FRG_NEW
    }
}

/* The plain tanh RNN's forward pass (_cells.pxd _rnn_rows, float32): h_t =
   tanh(g + b) for n rows of H units (g row stride ldg); g := h_t. */
static void fastrnn_rnn_tanh_rows_f32(Py_ssize_t n, Py_ssize_t H, float *g, Py_ssize_t ldg,
                                      const float *b, float *h) {
    for (Py_ssize_t j = 0; j < n; j++) {
        frg_apply(1, g + j * ldg, NULL, b, H);
        memcpy(h + j * H, g + j * ldg, H * sizeof(float));
    }
}

/* The plain reset-before GRU's first forward pass (_cells.pxd
   _gru_before_gates, float32): g rows [r; z; n] (stride 3H), r := σ(g_r +
   b_r), z' := σ(g_z + b_z), rh := r ⊙ h_{t-1} (n x H). */
static void fastrnn_gru_before_gates_f32(Py_ssize_t n, Py_ssize_t H, float *g, const float *b,
                                         const float *h, float *rh) {
    for (Py_ssize_t j = 0; j < n; j++) {
        float *gj = g + j * 3 * H;
        frg_apply(0, gj, NULL, b, 2 * H);                   /* σ(r), σ(z) */
        for (Py_ssize_t k = 0; k < H; k++) rh[j * H + k] = gj[k] * h[j * H + k];
    }
}

/* Its second pass (_gru_before_update): g_n := n = tanh(g_n + b_n), h_t =
   n + z' ⊙ (h_{t-1} - n). */
static void fastrnn_gru_before_update_f32(Py_ssize_t n, Py_ssize_t H, float *g, const float *b,
                                          float *h) {
    for (Py_ssize_t j = 0; j < n; j++) {
        float *gj = g + j * 3 * H, *hj = h + j * H;
        frg_apply(1, gj + 2 * H, NULL, b + 2 * H, H);
        for (Py_ssize_t k = 0; k < H; k++) {
            const float nn = gj[2 * H + k];
            hj[k] = nn + gj[H + k] * (hj[k] - nn);
        }
    }
}

#endif
