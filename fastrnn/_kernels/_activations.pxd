# cython: language_level=3
"""Elementwise activations for the gate passes.

float64 uses libm. float32 uses branch-free approximations that the compiler
can vectorise (libm's expf/tanhf are calls it cannot):
  e^x   = 2^n · p(r), n = round(x / ln 2), r = x - n ln 2 (ln 2 split in two
          parts), p a degree-6 polynomial fitted (weighted least squares
          towards minimax) on |r| <= ln(2)/2; x clamped to [-87.3, 88.3];
          measured maximum relative error 8.1e-8 (1.4 ulp).
  σ(x)  = 1 / (1 + e^-x);  max abs error 8.9e-8 (float32 rounding of σ itself).
  tanh  = sign(x) (1 - e) / (1 + e), e = e^(-2|x|), for |x| >= 1/16, and the
          odd Taylor polynomial to x^7 below (relative accuracy near 0);
          max abs error 8.9e-8 (libm tanhf: 6.0e-8).
Each bound was measured over a dense grid against float64 and is asserted in
tests/test_activations.py. NaN in gives NaN out. The plain cells' float32
forward passes run the same functions written out on vectors (_gate_math.h,
with the constants): the same bits, faster.
"""
from cython cimport floating
from libc.math cimport exp, tanh

# the constants, and the same functions on vectors (the plain cells' forward
# passes), in C
cdef extern from "_gate_math.h":
    const float FASTRNN_EXP_HI, FASTRNN_EXP_LO, FASTRNN_LOG2E, FASTRNN_ROUND_MAGIC
    const float FASTRNN_LN2_HI, FASTRNN_LN2_LO
    const float FASTRNN_EXP_C2, FASTRNN_EXP_C3, FASTRNN_EXP_C4, FASTRNN_EXP_C5, FASTRNN_EXP_C6
    const float FASTRNN_TANH_SMALL, FASTRNN_TANH_T3, FASTRNN_TANH_T5, FASTRNN_TANH_T7
    float fastrnn_pow2i(int n) noexcept nogil
    void fastrnn_lstm_rows_f32(Py_ssize_t n, Py_ssize_t H, float* g, Py_ssize_t ldg,
                               const float* b, float* h, float* c) noexcept nogil
    void fastrnn_gru_after_rows_f32(Py_ssize_t n, Py_ssize_t H, float* g, const float* gh,
                                    const float* b, const float* b_hn, float* h) noexcept nogil
    void fastrnn_rnn_tanh_rows_f32(Py_ssize_t n, Py_ssize_t H, float* g, Py_ssize_t ldg,
                                   const float* b, float* h) noexcept nogil
    void fastrnn_gru_before_gates_f32(Py_ssize_t n, Py_ssize_t H, float* g, const float* b,
                                      const float* h, float* rh) noexcept nogil
    void fastrnn_gru_before_update_f32(Py_ssize_t n, Py_ssize_t H, float* g, const float* b,
                                       float* h) noexcept nogil


cdef inline float exp_f32(float x) noexcept nogil:
    """e^x in float32 (see the module docstring for its error)."""
    cdef float n, r, p
    x = FASTRNN_EXP_HI if x > FASTRNN_EXP_HI else x
    x = FASTRNN_EXP_LO if x < FASTRNN_EXP_LO else x
    # n = round(x log2 e): adding and removing 1.5 * 2^23 rounds to an integer
    n = (x * FASTRNN_LOG2E + FASTRNN_ROUND_MAGIC) - FASTRNN_ROUND_MAGIC
    r = (x - n * FASTRNN_LN2_HI) - n * FASTRNN_LN2_LO
    p = FASTRNN_EXP_C2 + r * (FASTRNN_EXP_C3 + r * (FASTRNN_EXP_C4 + r * (
        FASTRNN_EXP_C5 + r * FASTRNN_EXP_C6)))
    p = (<float> 1) + r + r * r * p
    return p * fastrnn_pow2i(<int> n)


cdef inline floating sigmoid(floating v) noexcept nogil:
    """σ(v) = 1 / (1 + e^-v)."""
    if floating is float:
        return (<float> 1) / ((<float> 1) + exp_f32(-v))
    else:
        return 1.0 / (1.0 + exp(-v))


cdef inline floating tanh_(floating v) noexcept nogil:
    cdef float a, e, t, u, s
    if floating is float:
        a = -v if v < 0 else v
        e = exp_f32((<float> -2) * a)
        t = ((<float> 1) - e) / ((<float> 1) + e)
        t = -t if v < 0 else t
        u = v * v
        s = v + v * u * (FASTRNN_TANH_T3 + u * (FASTRNN_TANH_T5 + u * FASTRNN_TANH_T7))
        return s if a < FASTRNN_TANH_SMALL else t
    else:
        return tanh(v)


cdef inline floating relu(floating v) noexcept nogil:
    return 0 if v < 0 else v      # NaN passes through, as in PyTorch
