# The recurrent kernels, included by _recurrent.pyx (baseline x86-64) and
# _recurrent_avx2.pyx (x86-64-v3); fastrnn._kernels picks one when it loads.
#
# Recurrent kernels for one layer: RNN (tanh, relu), GRU (both forms), LSTM.
#
# One call runs one layer in one or two directions over a whole batch, the GIL
# released. Two ways to share it among the OpenMP threads:
#  - batch split (forward_layer, backward_layer): tasks of (direction, block of
#    batch rows), each independent (its own rows, state and output columns),
#    in one ``prange`` with no barrier;
#  - unit split (forward_layer_units, backward_layer_units), for one direction
#    and a small batch: each thread owns the hidden units [u0, u1) of every
#    gate (its rows of W_ih and W_hh) and the threads meet at a barrier per step.
#
# Forward, per task, for each chunk of steps (bounded, so inference memory does
# not grow with T and each chunk's projection is still in cache when its steps
# run; training keeps every chunk's rows, and the unit split keeps one chunk):
#   1. gather the chunk's active input rows into a packed block and project them
#      with one GEMM:  Gx = X_chunk @ W_ihᵀ;
#   2. for each step: one recurrent GEMM (G += h_{t-1} @ W_hhᵀ) followed at once
#      by the fused gate pass that updates h (and c), leaves the gate
#      activations in the gate block and writes the output row.
# Backward (BPTT), walking the steps from last to first: a fused pass turns
# dL/dh_t (and dL/dc_t) into the gate pre-activation gradients dG_t, then one
# GEMM per step carries dh_{t-1} = dG_t @ W_hh (+ the direct terms). The weight
# and input gradients are one GEMM each over all steps (layer_grads).
# In float32 the GEMMs by W_hh and W_ih run on the weights packed in panels
# once per call (_panel.pxd) where the CPU has AVX2/FMA; elsewhere, and in
# float64, on scipy's BLAS (single-threaded inside fastrnn's threads).
#
# Rows are sorted by length (longest first) by the caller, so the rows still
# active at step s are a prefix of the batch and the cost follows sum(lengths).
# The reverse direction reads row b's step s at time lengths[b] - 1 - s.
# Training storage is "packed": per direction, block after block, and within a
# block step after step, the active rows of that step (sum(lengths) rows).
#
# Weights use PyTorch's layout: gates stacked along rows, RNN [h], GRU [r; z; n],
# LSTM [i; f; g; o]. Gate rows are stored with a stride of G columns, except the
# reset-after GRU which keeps a fourth block W_hn h + b_hn (stride 4H) that its
# backward needs. Nothing here validates: fastrnn.layers checks every shape.

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.string cimport memcpy, memset

import threading

import numpy as np

from fastrnn._blas cimport gemm, gemm_abt, gemv_ax
from fastrnn._openmp cimport (fastrnn_barrier, fastrnn_spin_barrier, omp_get_num_threads,
                              omp_get_thread_num, spin_init, spin_wait)
from fastrnn._kernels._activations cimport sigmoid, tanh_, relu
from fastrnn._kernels._panel cimport (PANEL_AVX2, PANEL_AVX512, PANEL_NONE, pack_panel,
                                     pack_panel_range, pack_panels, panel_best, panel_gemm,
                                     panel_gemm_tn, panel_select, panel_selected, panel_size,
                                     panel_supported)

# cell kinds (kept in sync with fastrnn.layers)
cdef enum:
    RNN_TANH = 0
    RNN_RELU = 1
    LSTM = 2
    GRU_RESET_AFTER = 3
    GRU_RESET_BEFORE = 4


cdef inline Py_ssize_t _gates(int kind) noexcept nogil:
    if kind == LSTM:
        return 4
    if kind == GRU_RESET_AFTER or kind == GRU_RESET_BEFORE:
        return 3
    return 1


cdef inline Py_ssize_t _gate_blocks(int kind) noexcept nogil:
    """H-wide blocks of one stored gate row: the gates, plus W_hn h for the
    reset-after GRU (r multiplies it, so backward needs it apart)."""
    return 4 if kind == GRU_RESET_AFTER else _gates(kind)


def gate_stride(int kind, Py_ssize_t hidden_size):
    """Columns of one stored gate row (G, or 4H for the reset-after GRU)."""
    return _gate_blocks(kind) * hidden_size


def grad_stride(int kind, Py_ssize_t hidden_size):
    """Columns of one gate-gradient row: G, or 6H for the reset-after GRU
    ([dGx (3H) | dGh (3H)]: its input and recurrent n gradients differ)."""
    return (6 if kind == GRU_RESET_AFTER else _gates(kind)) * hidden_size


# ---------------------------------------------------------------------------
# forward gate passes: g holds the pre-activations (without bias) of n rows,
# row stride ldg; each pass adds the bias, applies the gates, updates the
# state and overwrites g with the activations that backward needs.
# ---------------------------------------------------------------------------

cdef inline void _rnn_rows(bint use_relu, Py_ssize_t n, Py_ssize_t H, floating* g,
                           Py_ssize_t ldg, const floating* b, floating* h) noexcept nogil:
    """h_t = f(g + b), f = tanh or relu; g := h_t."""
    cdef Py_ssize_t j, k
    cdef floating v
    for j in range(n):
        if use_relu:
            for k in range(H):
                v = relu(g[j * ldg + k] + b[k])
                g[j * ldg + k] = v
                h[j * H + k] = v
        else:
            for k in range(H):
                v = tanh_(g[j * ldg + k] + b[k])
                g[j * ldg + k] = v
                h[j * H + k] = v


cdef inline void _lstm_rows(Py_ssize_t n, Py_ssize_t H, floating* g, Py_ssize_t ldg,
                            const floating* b, floating* h, floating* c) noexcept nogil:
    """LSTM, rows [i; f; g; o]: c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g),
    h_t = σ(o) ⊙ tanh(c_t); g := [σ(i), σ(f), tanh(g), σ(o)]."""
    cdef Py_ssize_t j, k
    cdef floating* gj
    cdef floating ig, fg, cg, og, ct
    for j in range(n):
        gj = g + j * ldg
        for k in range(H):
            ig = sigmoid(gj[k] + b[k])
            fg = sigmoid(gj[H + k] + b[H + k])
            cg = tanh_(gj[2 * H + k] + b[2 * H + k])
            og = sigmoid(gj[3 * H + k] + b[3 * H + k])
            ct = fg * c[j * H + k] + ig * cg
            c[j * H + k] = ct
            h[j * H + k] = og * tanh_(ct)
            gj[k] = ig
            gj[H + k] = fg
            gj[2 * H + k] = cg
            gj[3 * H + k] = og


cdef inline void _gru_after_rows(Py_ssize_t n, Py_ssize_t H, floating* g,
                                 const floating* gh, const floating* b,
                                 const floating* b_hn, floating* h) noexcept nogil:
    """GRU, reset after the product (PyTorch); g rows [r; z; n; -] (stride 4H).

    g = x_t W_ihᵀ, gh = h_{t-1} W_hhᵀ (stride 3H), b = b_ih + [b_hr; b_hz; 0]:
    r = σ(g_r + gh_r + b_r), z' = σ(g_z + gh_z + b_z),
    n = tanh(g_n + b_in + r ⊙ (gh_n + b_hn)),  h_t = n + z' ⊙ (h_{t-1} - n);
    g := [r, z', n, gh_n + b_hn].
    """
    cdef Py_ssize_t j, k
    cdef floating* gj
    cdef const floating* hj
    cdef floating r, z, nn, hn
    for j in range(n):
        gj = g + j * 4 * H
        hj = gh + j * 3 * H
        for k in range(H):
            r = sigmoid(gj[k] + hj[k] + b[k])
            z = sigmoid(gj[H + k] + hj[H + k] + b[H + k])
            hn = hj[2 * H + k] + b_hn[k]
            nn = tanh_(gj[2 * H + k] + b[2 * H + k] + r * hn)
            h[j * H + k] = nn + z * (h[j * H + k] - nn)
            gj[k] = r
            gj[H + k] = z
            gj[2 * H + k] = nn
            gj[3 * H + k] = hn


cdef inline void _gru_before_gates(Py_ssize_t n, Py_ssize_t H, floating* g,
                                   const floating* b, const floating* h,
                                   floating* rh) noexcept nogil:
    """GRU, reset before the product, first half; g rows [r; z; n] (stride 3H).

    g's r and z columns hold x_t W_ihᵀ + h_{t-1} W_hhᵀ: g_r := r = σ(g_r + b_r),
    g_z := z' = σ(g_z + b_z), rh := r ⊙ h_{t-1}.
    """
    cdef Py_ssize_t j, k
    cdef floating* gj
    cdef floating r
    for j in range(n):
        gj = g + j * 3 * H
        for k in range(H):
            r = sigmoid(gj[k] + b[k])
            gj[k] = r
            rh[j * H + k] = r * h[j * H + k]
            gj[H + k] = sigmoid(gj[H + k] + b[H + k])


cdef inline void _gru_before_update(Py_ssize_t n, Py_ssize_t H, floating* g,
                                    const floating* b, floating* h) noexcept nogil:
    """Second half: g_n holds x_t W_inᵀ + (r ⊙ h_{t-1}) W_hnᵀ;
    n = tanh(g_n + b_in + b_hn), h_t = n + z' ⊙ (h_{t-1} - n); g_n := n."""
    cdef Py_ssize_t j, k
    cdef floating* gj
    cdef floating nn
    for j in range(n):
        gj = g + j * 3 * H
        for k in range(H):
            nn = tanh_(gj[2 * H + k] + b[2 * H + k])
            gj[2 * H + k] = nn
            h[j * H + k] = nn + gj[H + k] * (h[j * H + k] - nn)


# ---------------------------------------------------------------------------
# backward gate passes: from dh (= dL/dh_t, n rows) and the stored
# activations, write the gate pre-activation gradients dG (row stride ldd)
# and leave in dh the part of dL/dh_{t-1} that does not go through W_hh.
# ---------------------------------------------------------------------------

cdef inline void _rnn_rows_back(bint use_relu, Py_ssize_t n, Py_ssize_t H,
                                const floating* a, floating* dg,
                                const floating* dh) noexcept nogil:
    """a = h_t; dG = dh ⊙ f'(a): tanh' = 1 - h², relu' = [h > 0]."""
    cdef Py_ssize_t j, k
    cdef floating v
    for j in range(n):
        for k in range(H):
            v = a[j * H + k]
            if use_relu:
                dg[j * H + k] = dh[j * H + k] if v > 0 else 0
            else:
                dg[j * H + k] = dh[j * H + k] * (1 - v * v)


cdef inline void _lstm_rows_back(Py_ssize_t n, Py_ssize_t H, const floating* a,
                                 const floating* cp, floating* dg, const floating* dh,
                                 floating* dc) noexcept nogil:
    """a = [i, f, g, o] (activations), cp = c_{t-1}; c_t = f c_{t-1} + i g.

    dc_t = dc + dh ⊙ o ⊙ (1 - tanh²c_t); dG = [dc_t g i(1-i), dc_t c_{t-1} f(1-f),
    dc_t i (1-g²), dh tanh(c_t) o(1-o)]; dc := dc_t ⊙ f (dL/dc_{t-1})."""
    cdef Py_ssize_t j, k
    cdef const floating* aj
    cdef floating* dj
    cdef floating ig, fg, cg, og, tc, d_h, d_c
    for j in range(n):
        aj = a + j * 4 * H
        dj = dg + j * 4 * H
        for k in range(H):
            ig = aj[k]
            fg = aj[H + k]
            cg = aj[2 * H + k]
            og = aj[3 * H + k]
            tc = tanh_(fg * cp[j * H + k] + ig * cg)
            d_h = dh[j * H + k]
            d_c = dc[j * H + k] + d_h * og * (1 - tc * tc)
            dj[k] = d_c * cg * ig * (1 - ig)
            dj[H + k] = d_c * cp[j * H + k] * fg * (1 - fg)
            dj[2 * H + k] = d_c * ig * (1 - cg * cg)
            dj[3 * H + k] = d_h * tc * og * (1 - og)
            dc[j * H + k] = d_c * fg


cdef inline void _gru_after_rows_back(Py_ssize_t n, Py_ssize_t H, const floating* a,
                                      const floating* hp, floating* dg,
                                      floating* dh) noexcept nogil:
    """a = [r, z', n, W_hn h + b_hn] (stride 4H), hp = h_{t-1}.

    dG (stride 6H) = [da_r, da_z, da_n | da_r, da_z, da_n ⊙ r]: the input side
    and the recurrent side; dh := dh ⊙ z' (the direct path to h_{t-1})."""
    cdef Py_ssize_t j, k
    cdef const floating* aj
    cdef floating* dj
    cdef floating r, z, nn, hn, d_h, da_n, da_z, da_r
    for j in range(n):
        aj = a + j * 4 * H
        dj = dg + j * 6 * H
        for k in range(H):
            r = aj[k]
            z = aj[H + k]
            nn = aj[2 * H + k]
            hn = aj[3 * H + k]
            d_h = dh[j * H + k]
            da_n = d_h * (1 - z) * (1 - nn * nn)
            da_z = d_h * (hp[j * H + k] - nn) * z * (1 - z)
            da_r = da_n * hn * r * (1 - r)
            dj[k] = da_r
            dj[H + k] = da_z
            dj[2 * H + k] = da_n
            dj[3 * H + k] = da_r
            dj[4 * H + k] = da_z
            dj[5 * H + k] = da_n * r
            dh[j * H + k] = d_h * z


cdef inline void _gru_before_rows_back1(Py_ssize_t n, Py_ssize_t H, const floating* a,
                                        const floating* hp, floating* dg,
                                        floating* dh) noexcept nogil:
    """Reset-before GRU, first half: a = [r, z', n], hp = h_{t-1}.

    dG_z = dh (h_{t-1} - n) z'(1-z'), dG_n = dh (1-z')(1-n²); dh := dh ⊙ z'."""
    cdef Py_ssize_t j, k
    cdef const floating* aj
    cdef floating* dj
    cdef floating z, nn, d_h
    for j in range(n):
        aj = a + j * 3 * H
        dj = dg + j * 3 * H
        for k in range(H):
            z = aj[H + k]
            nn = aj[2 * H + k]
            d_h = dh[j * H + k]
            dj[H + k] = d_h * (hp[j * H + k] - nn) * z * (1 - z)
            dj[2 * H + k] = d_h * (1 - z) * (1 - nn * nn)
            dh[j * H + k] = d_h * z


cdef inline void _gru_before_rows_back2(Py_ssize_t n, Py_ssize_t H, const floating* a,
                                        const floating* hp, const floating* drh,
                                        floating* dg, floating* dh) noexcept nogil:
    """Second half, drh = dG_n @ W_hn = dL/d(r ⊙ h_{t-1}):
    dG_r = drh ⊙ h_{t-1} ⊙ r(1-r); dh += drh ⊙ r."""
    cdef Py_ssize_t j, k
    cdef floating r
    for j in range(n):
        for k in range(H):
            r = a[j * 3 * H + k]
            dg[j * 3 * H + k] = drh[j * H + k] * hp[j * H + k] * r * (1 - r)
            dh[j * H + k] += drh[j * H + k] * r


# ---------------------------------------------------------------------------
# tasks
# ---------------------------------------------------------------------------

cdef inline void _times_wt(Py_ssize_t n, Py_ssize_t m, Py_ssize_t k, const floating* a,
                           Py_ssize_t lda, const floating* w, Py_ssize_t ldw, floating beta,
                           floating* c, Py_ssize_t ldc) noexcept nogil:
    """C (n x m, row stride ldc) = A (n x k, row stride lda) @ Wᵀ + beta C, W stored
    m x k (row stride ldw): the shape of every projection by a PyTorch weight.
    One row is a matrix-vector product (BLAS gemv has far less overhead)."""
    if n == 1:
        gemv_ax(<int> m, <int> k, w, <int> ldw, a, beta, c)
    else:
        gemm_abt(<int> n, <int> m, <int> k, a, <int> lda, w, <int> ldw, beta, c, <int> ldc)


cdef inline void _step_wt(Py_ssize_t n, Py_ssize_t m, Py_ssize_t k, const floating* a,
                          Py_ssize_t lda, const floating* w, const float* wp, floating beta,
                          floating* c, Py_ssize_t ldc) noexcept nogil:
    """The recurrent product C (n x m) = A @ Wᵀ + beta C, W (m x k) contiguous:
    on the panels wp (packed W) when given (float32), else BLAS."""
    if floating is float:
        if wp != NULL:
            panel_gemm(n, m, k, a, lda, wp, c, ldc, beta != 0)
            return
    _times_wt(n, m, k, a, lda, w, k, beta, c, ldc)


cdef inline void _step_w(Py_ssize_t n, Py_ssize_t m, Py_ssize_t k, const floating* a,
                         Py_ssize_t lda, const floating* w, const float* wp, floating beta,
                         floating* c, Py_ssize_t ldc) noexcept nogil:
    """The backward product C (n x m) = A @ W + beta C, W (k x m) with row stride
    H = m: on the panels wp (packed Wᵀ) when given (float32), else BLAS."""
    if floating is float:
        if wp != NULL:
            panel_gemm(n, m, k, a, lda, wp, c, ldc, beta != 0)
            return
    gemm(c'N', c'N', <int> n, <int> m, <int> k, <floating> 1, a, <int> lda, w, <int> m,
         beta, c, <int> ldc)


cdef inline Py_ssize_t _active(const Py_ssize_t* n_active, Py_ssize_t s,
                               Py_ssize_t r0, Py_ssize_t nr) noexcept nogil:
    """Rows of the block [r0, r0 + nr) still running at step s (a prefix)."""
    cdef Py_ssize_t n = n_active[s] - r0
    if n < 0:
        return 0
    return n if n < nr else nr


cdef inline Py_ssize_t _time(bint reverse, const Py_ssize_t* lengths, Py_ssize_t row,
                             Py_ssize_t s) noexcept nogil:
    """The time index of step s of sorted row ``row``."""
    return lengths[row] - 1 - s if reverse else s


cdef void _forward_task(int kind, bint reverse,
                        const floating* x, Py_ssize_t xs0, Py_ssize_t xs1, Py_ssize_t xs2,
                        Py_ssize_t I, Py_ssize_t H, Py_ssize_t T,
                        const floating* w_ih, const floating* w_hh,
                        const floating* b_x, const floating* b_hn,
                        const Py_ssize_t* lengths, const Py_ssize_t* perm,
                        const Py_ssize_t* n_active, Py_ssize_t r0, Py_ssize_t r1,
                        const floating* h0, const floating* c0,
                        floating* y, Py_ssize_t ys0, Py_ssize_t ys1,
                        floating* h_n, floating* c_n, Py_ssize_t step_chunk,
                        floating* xp, floating* gx, floating* hp, floating* cp,
                        floating* gh, floating* h, floating* c,
                        floating* rh, const float* wp, const float* wp_n,
                        const float* wp_ih, const Py_ssize_t* ids, Py_ssize_t is0,
                        Py_ssize_t is1, Py_ssize_t* keep_ids) noexcept nogil:
    """Run rows [r0, r1) (sorted order) of one direction through every step.

    x: input, element strides (xs0, xs1, xs2) over (T, B, I); y: output at this
    direction's first column, element strides (ys0, ys1) over (T, B), unit
    stride over H. h0/c0/h_n/c_n: (B, H) in the caller's row order (perm maps
    sorted row -> caller row). xp (rows, I) and gx (rows, ldg) receive the
    packed inputs and gate activations of one chunk of steps; in training they
    and hp, cp (rows, H: h_{t-1} and c_{t-1} of each packed row; NULL
    otherwise) are the block's kept storage of every step, each chunk's rows
    after the previous chunk's (the projection still runs chunk by chunk: one
    product for all steps at once leaves its result out of cache by the time
    its steps run).
    Workspace: gh (nr, 3H), h, c, rh (nr, H). wp: W_hh packed in panels (float32;
    for the reset-before GRU its r and z rows, wp_n its n rows), wp_ih: W_ih
    packed, or NULL for BLAS. Token input (ids not NULL): ids (T, B) with
    element strides (is0, is1), and x is W_ihᵀ (V, G) with element strides
    (xs1, xs2) (a transposed copy, or a view of W_ih itself): the projection
    of token k is row k (a copy, not a product); keep_ids (training) receives
    each packed row's token.
    """
    cdef Py_ssize_t G = _gates(kind) * H
    cdef Py_ssize_t ldg = _gate_blocks(kind) * H
    cdef Py_ssize_t nr = r1 - r0
    cdef Py_ssize_t n_steps = lengths[r0]     # longest row of the block
    cdef Py_ssize_t s0, s1, s, j, i, n, off, t, b, g
    cdef const floating* src
    cdef floating* gblk
    cdef floating* dst

    for j in range(nr):
        b = perm[r0 + j]
        memcpy(h + j * H, h0 + b * H, H * sizeof(floating))
        if kind == LSTM:
            memcpy(c + j * H, c0 + b * H, H * sizeof(floating))

    s0 = 0
    while s0 < n_steps:
        s1 = s0 + step_chunk
        if s1 > n_steps:
            s1 = n_steps
        # pack the active input rows of steps [s0, s1)
        off = 0
        for s in range(s0, s1):
            n = _active(n_active, s, r0, nr)
            for j in range(n):
                t = _time(reverse, lengths, r0 + j, s)
                if ids != NULL:
                    # token k: W_ih e_k is column k of W_ih, row k of x = W_ihᵀ
                    # (token stride xs1, gate stride xs2: a copy or a view of W_ih)
                    i = ids[t * is0 + perm[r0 + j] * is1]
                    src = x + i * xs1
                    dst = gx + (off + j) * ldg
                    if xs2 == 1:
                        memcpy(dst, src, G * sizeof(floating))
                    else:
                        for g in range(G):
                            dst[g] = src[g * xs2]
                    if keep_ids != NULL:
                        keep_ids[off + j] = i
                    continue
                src = x + t * xs0 + perm[r0 + j] * xs1
                dst = xp + (off + j) * I
                if xs2 == 1:
                    memcpy(dst, src, I * sizeof(floating))
                else:
                    for i in range(I):
                        dst[i] = src[i * xs2]
            off += n
        if ids == NULL:
            # Gx = X_packed @ W_ihᵀ   (off x G, row stride ldg)
            _step_wt(off, G, I, xp, I, w_ih, wp_ih, <floating> 0, gx, ldg)

        off = 0
        for s in range(s0, s1):
            n = _active(n_active, s, r0, nr)
            gblk = gx + off * ldg
            if hp != NULL:
                memcpy(hp + off * H, h, n * H * sizeof(floating))
                if kind == LSTM:
                    memcpy(cp + off * H, c, n * H * sizeof(floating))
            if kind == LSTM or kind == RNN_TANH or kind == RNN_RELU:
                # G_t = x_t W_ihᵀ + h_{t-1} W_hhᵀ   (accumulated into Gx)
                _step_wt(n, G, H, h, H, w_hh, wp, <floating> 1, gblk, ldg)
                if kind == LSTM:
                    _lstm_rows(n, H, gblk, ldg, b_x, h, c)
                else:
                    _rnn_rows(kind == RNN_RELU, n, H, gblk, ldg, b_x, h)
            elif kind == GRU_RESET_AFTER:
                # Gh = h_{t-1} W_hhᵀ   (kept apart: its n part is gated by r)
                _step_wt(n, G, H, h, H, w_hh, wp, <floating> 0, gh, G)
                _gru_after_rows(n, H, gblk, gh, b_x, b_hn, h)
            else:
                # [G_r, G_z] += h_{t-1} [W_hr; W_hz]ᵀ
                _step_wt(n, 2 * H, H, h, H, w_hh, wp, <floating> 1, gblk, ldg)
                _gru_before_gates(n, H, gblk, b_x, h, rh)
                # G_n += (r ⊙ h_{t-1}) W_hnᵀ
                _step_wt(n, H, H, rh, H, w_hh + 2 * H * H, wp_n, <floating> 1, gblk + 2 * H, ldg)
                _gru_before_update(n, H, gblk, b_x, h)
            for j in range(n):
                t = _time(reverse, lengths, r0 + j, s)
                memcpy(y + t * ys0 + perm[r0 + j] * ys1, h + j * H,
                       H * sizeof(floating))
            off += n
        if hp != NULL:
            # training: the next chunk's rows follow this chunk's in the kept storage
            if xp != NULL:
                xp += off * I
            gx += off * ldg
            hp += off * H
            if cp != NULL:
                cp += off * H
            if keep_ids != NULL:
                keep_ids += off
        s0 = s1

    for j in range(nr):
        b = perm[r0 + j]
        memcpy(h_n + b * H, h + j * H, H * sizeof(floating))
        if kind == LSTM:
            memcpy(c_n + b * H, c + j * H, H * sizeof(floating))
        # outputs past the sequence's end are zero (y starts uninitialised)
        for t in range(lengths[r0 + j], T):
            memset(y + t * ys0 + b * ys1, 0, H * sizeof(floating))


cdef void _backward_task(int kind, bint reverse, Py_ssize_t H, const floating* w_hh,
                         const Py_ssize_t* lengths, const Py_ssize_t* perm,
                         const Py_ssize_t* n_active, Py_ssize_t r0, Py_ssize_t r1,
                         const floating* a, const floating* hp, const floating* cp,
                         const floating* dy, Py_ssize_t ds0, Py_ssize_t ds1,
                         const floating* dh_n, const floating* dc_n,
                         floating* dg, floating* dh0, floating* dc0,
                         floating* dh, floating* dc, floating* drh,
                         const float* wp, const float* wp_n) noexcept nogil:
    """BPTT for rows [r0, r1) of one direction, from the last step back.

    a, hp, cp: this block's packed activations, h_{t-1}, c_{t-1} (forward);
    dy: dL/dy at this direction's first column, element strides (ds0, ds1),
    unit stride over H; dh_n, dc_n: (B, H) caller order. Writes dg (packed,
    row stride 6H for the reset-after GRU, else G) and dh0, dc0 (B, H).
    Workspace: dh, dc, drh (nr, H). wp: W_hhᵀ packed in panels (float32; for the
    reset-before GRU the part of its r and z rows, wp_n of its n rows), or NULL.
    """
    cdef Py_ssize_t G = _gates(kind) * H
    cdef Py_ssize_t lda = _gate_blocks(kind) * H
    cdef Py_ssize_t ldd = 6 * H if kind == GRU_RESET_AFTER else G
    cdef Py_ssize_t nr = r1 - r0
    cdef Py_ssize_t n_steps = lengths[r0]
    cdef Py_ssize_t s, j, k, n, off, t, b
    cdef const floating* src
    cdef floating* dblk

    off = 0
    for s in range(n_steps):
        off += _active(n_active, s, r0, nr)
    for j in range(nr):
        b = perm[r0 + j]
        memcpy(dh + j * H, dh_n + b * H, H * sizeof(floating))
        if kind == LSTM:
            memcpy(dc + j * H, dc_n + b * H, H * sizeof(floating))

    for s in range(n_steps - 1, -1, -1):
        n = _active(n_active, s, r0, nr)
        off -= n
        # dL/dh_t = (carried from step t+1) + dL/dy_t
        for j in range(n):
            t = _time(reverse, lengths, r0 + j, s)
            src = dy + t * ds0 + perm[r0 + j] * ds1
            for k in range(H):
                dh[j * H + k] += src[k]
        dblk = dg + off * ldd
        if kind == LSTM or kind == RNN_TANH or kind == RNN_RELU:
            if kind == LSTM:
                _lstm_rows_back(n, H, a + off * lda, cp + off * H, dblk, dh, dc)
            else:
                _rnn_rows_back(kind == RNN_RELU, n, H, a + off * lda, dblk, dh)
            # dh_{t-1} = dG_t @ W_hh
            _step_w(n, H, G, dblk, ldd, w_hh, wp, <floating> 0, dh, H)
        elif kind == GRU_RESET_AFTER:
            _gru_after_rows_back(n, H, a + off * lda, hp + off * H, dblk, dh)
            # dh_{t-1} = dh_t ⊙ z' + [da_r, da_z, da_n ⊙ r] @ W_hh
            _step_w(n, H, G, dblk + 3 * H, ldd, w_hh, wp, <floating> 1, dh, H)
        else:
            _gru_before_rows_back1(n, H, a + off * lda, hp + off * H, dblk, dh)
            # dL/d(r ⊙ h_{t-1}) = dG_n @ W_hn
            _step_w(n, H, H, dblk + 2 * H, ldd, w_hh + 2 * H * H, wp_n, <floating> 0, drh, H)
            _gru_before_rows_back2(n, H, a + off * lda, hp + off * H, drh, dblk, dh)
            # dh_{t-1} += [dG_r, dG_z] @ [W_hr; W_hz]
            _step_w(n, H, 2 * H, dblk, ldd, w_hh, wp, <floating> 1, dh, H)

    for j in range(nr):
        b = perm[r0 + j]
        memcpy(dh0 + b * H, dh + j * H, H * sizeof(floating))
        if kind == LSTM:
            memcpy(dc0 + b * H, dc + j * H, H * sizeof(floating))


cdef void _pack_unit_rows(const float* w, Py_ssize_t q0, Py_ssize_t nq, Py_ssize_t U,
                          Py_ssize_t u0, Py_ssize_t H, Py_ssize_t K, float* dst) noexcept nogil:
    """Pack the rows of gates q0 .. q0+nq-1, units [u0, u0+U), of W (H rows per
    gate, rows of length K) in panels (local row r = gate (q0 + r // U), unit
    u0 + r % U)."""
    cdef Py_ssize_t rows = nq * U, p, jj, r, count
    cdef const float* src[16]
    for p in range((rows + 15) // 16):
        count = min(16, rows - p * 16)
        for jj in range(count):
            r = p * 16 + jj
            src[jj] = w + ((q0 + r // U) * H + u0 + r % U) * K
        pack_panel(src, <int> count, K, dst + p * K * 16)


cdef inline void _unit_product(Py_ssize_t n, Py_ssize_t q0, Py_ssize_t nq, Py_ssize_t U,
                               Py_ssize_t u0, Py_ssize_t H, Py_ssize_t K, const floating* a,
                               const floating* w, const float* wp, floating beta,
                               floating* c, Py_ssize_t ldc) noexcept nogil:
    """C[:, gate block q] (=, or += with beta 1) A @ W[gate q0 + q, units u0..]ᵀ for
    q < nq, W with H rows per gate and rows of length K (A: n x K, contiguous),
    gate block q at columns q U of C: one product on the thread's packed panels
    wp, or one BLAS call per gate."""
    cdef Py_ssize_t q
    if floating is float:
        if wp != NULL:
            panel_gemm(n, nq * U, K, a, K, wp, c, ldc, beta != 0)
            return
    for q in range(nq):
        _times_wt(n, U, K, a, K, w + ((q0 + q) * H + u0) * K, K, beta, c + q * U, ldc)


cdef void _unit_worker(int kind, bint reverse,
                       const floating* x, Py_ssize_t xs0, Py_ssize_t xs1, Py_ssize_t xs2,
                       Py_ssize_t I, Py_ssize_t H, Py_ssize_t B, Py_ssize_t T,
                       const floating* w_ih, const floating* w_hh,
                       const floating* b_x, const floating* b_hn,
                       const Py_ssize_t* lengths, const Py_ssize_t* perm,
                       const Py_ssize_t* n_active,
                       const floating* h0, const floating* c0,
                       floating* y, Py_ssize_t ys0, Py_ssize_t ys1,
                       floating* h_n, floating* c_n, Py_ssize_t step_chunk,
                       floating* shared, floating* ws, float* pw, int tid,
                       int nthreads, floating* keep_x, floating* keep_g,
                       floating* keep_h, floating* keep_c, const Py_ssize_t* ids,
                       Py_ssize_t is0, Py_ssize_t is1, Py_ssize_t* keep_ids,
                       fastrnn_spin_barrier* bar) noexcept nogil:
    """One thread of the unit-split forward: hidden units [u0, u1) of every gate.

    For small batches the recurrent product is a matrix-vector product, so
    splitting the batch leaves threads idle; here each thread owns the rows of
    W_ih and W_hh of its units (each thread streams only its part of the
    weights every step) and the threads meet at one barrier per step (two for
    the reset-before GRU) to exchange h_t. Same arguments as _forward_task for
    all B rows; shared: h_{t-1} | h_t | r ⊙ h_{t-1} (B x H each); ws: this
    thread's workspace (see forward_layer_units); pw: room for this thread's
    W_hh rows packed in panels (float32), or NULL to use BLAS. Training
    (keep_x not NULL; one chunk of every step): keep_x, keep_g, keep_h, keep_c
    receive the packed inputs, gate activations (row stride gate_stride),
    h_{t-1} and c_{t-1} as in _forward_task for one block of all B rows; each
    thread writes the columns of its units. Token input as in _forward_task
    (x is then W_ihᵀ, each thread copies its units' columns).
    """
    cdef Py_ssize_t gates = _gates(kind)
    cdef Py_ssize_t u0 = H * tid // nthreads
    cdef Py_ssize_t U = H * (tid + 1) // nthreads - u0
    cdef Py_ssize_t blocks = _gate_blocks(kind)                         # stored gate blocks
    cdef Py_ssize_t ldg = blocks * U
    cdef Py_ssize_t ldg_keep = blocks * H
    cdef Py_ssize_t cap = step_chunk * B
    cdef Py_ssize_t n_steps = lengths[0]
    cdef Py_ssize_t s0, s1, s, j, i, q, n, off, t, b
    cdef floating* xp = ws
    cdef floating* gx = xp + cap * I
    cdef floating* gh = gx + cap * 4 * H
    cdef floating* h = gh + B * 3 * H
    cdef floating* c = h + B * H
    cdef floating* rh = c + B * H
    cdef floating* bx = rh + B * H
    cdef floating* bhn = bx + 4 * H
    cdef floating* h_prev = shared
    cdef floating* h_next = shared + B * H
    cdef floating* rh_all = shared + 2 * B * H
    cdef floating* swap
    cdef floating* gblk
    cdef floating* dst
    cdef const floating* src
    cdef float* wp = NULL
    cdef float* wp_n = NULL
    cdef float* wp_ih = NULL
    cdef int sense = 0                         # this thread's side of the barrier

    if floating is float:
        if pw != NULL and U > 0:
            # this thread's rows of W_hh, packed once: they stay in its core's cache
            wp = pw
            if kind == GRU_RESET_BEFORE:
                wp_n = pw + panel_size(2 * U, H)
                _pack_unit_rows(w_hh, 0, 2, U, u0, H, H, wp)
                _pack_unit_rows(w_hh, 2, 1, U, u0, H, H, wp_n)
            else:
                _pack_unit_rows(w_hh, 0, gates, U, u0, H, H, wp)
            wp_ih = pw + panel_size(4 * H, H) + panel_size(H, H)
            _pack_unit_rows(w_ih, 0, gates, U, u0, H, I, wp_ih)

    for q in range(gates):
        memcpy(bx + q * U, b_x + q * H + u0, U * sizeof(floating))
    memcpy(bhn, b_hn + u0, U * sizeof(floating))
    for j in range(B):
        b = perm[j]
        memcpy(h + j * U, h0 + b * H + u0, U * sizeof(floating))
        memcpy(h_prev + j * H + u0, h0 + b * H + u0, U * sizeof(floating))
        if kind == LSTM:
            memcpy(c + j * U, c0 + b * H + u0, U * sizeof(floating))
    spin_wait(bar, nthreads, &sense)

    s0 = 0
    while s0 < n_steps:
        s1 = s0 + step_chunk
        if s1 > n_steps:
            s1 = n_steps
        if keep_x != NULL:
            xp = keep_x                        # training: one shared copy, gathered once
        off = 0
        for s in range(s0, s1):
            n = n_active[s]
            if ids != NULL:
                for j in range(n):
                    t = _time(reverse, lengths, j, s)
                    i = ids[t * is0 + perm[j] * is1]
                    for q in range(gates):
                        # my units of gate q of row i of x = W_ihᵀ (strides xs1, xs2)
                        src = x + i * xs1 + (q * H + u0) * xs2
                        dst = gx + (off + j) * ldg + q * U
                        if xs2 == 1:
                            memcpy(dst, src, U * sizeof(floating))
                        else:
                            for b in range(U):
                                dst[b] = src[b * xs2]
                    if keep_ids != NULL and tid == 0:
                        keep_ids[off + j] = i
            elif keep_x == NULL or tid == 0:
                for j in range(n):
                    t = _time(reverse, lengths, j, s)
                    src = x + t * xs0 + perm[j] * xs1
                    dst = xp + (off + j) * I
                    if xs2 == 1:
                        memcpy(dst, src, I * sizeof(floating))
                    else:
                        for i in range(I):
                            dst[i] = src[i * xs2]
            off += n
        if keep_x != NULL:
            spin_wait(bar, nthreads, &sense)  # the shared inputs are gathered
        # Gx[:, every gate, my units] = X_packed @ W_ih[those rows]ᵀ
        if U > 0 and ids == NULL:
            _unit_product(off, 0, gates, U, u0, H, I, xp, w_ih, wp_ih, <floating> 0, gx, ldg)
        off = 0
        for s in range(s0, s1):
            n = n_active[s]
            gblk = gx + off * ldg
            if keep_h != NULL:
                for j in range(n):
                    memcpy(keep_h + (off + j) * H + u0, h + j * U, U * sizeof(floating))
                    if kind == LSTM:
                        memcpy(keep_c + (off + j) * H + u0, c + j * U, U * sizeof(floating))
            if U > 0:
                if kind == LSTM or kind == RNN_TANH or kind == RNN_RELU:
                    # G_t[:, every gate, my units] += h_{t-1} W_hh[those rows]ᵀ
                    _unit_product(n, 0, gates, U, u0, H, H, h_prev, w_hh, wp, <floating> 1,
                                  gblk, ldg)
                    if kind == LSTM:
                        _lstm_rows(n, U, gblk, ldg, bx, h, c)
                    else:
                        _rnn_rows(kind == RNN_RELU, n, U, gblk, ldg, bx, h)
                elif kind == GRU_RESET_AFTER:
                    _unit_product(n, 0, 3, U, u0, H, H, h_prev, w_hh, wp, <floating> 0, gh, 3 * U)
                    _gru_after_rows(n, U, gblk, gh, bx, bhn, h)
                else:
                    _unit_product(n, 0, 2, U, u0, H, H, h_prev, w_hh, wp, <floating> 1, gblk, ldg)
                    _gru_before_gates(n, U, gblk, bx, h, rh)
                    for j in range(n):
                        memcpy(rh_all + j * H + u0, rh + j * U, U * sizeof(floating))
            if kind == GRU_RESET_BEFORE:
                spin_wait(bar, nthreads, &sense)  # every unit of r ⊙ h_{t-1} is written
                if U > 0:
                    # G_n[:, my units] += (r ⊙ h_{t-1}) W_hn[my units]ᵀ
                    _unit_product(n, 2, 1, U, u0, H, H, rh_all, w_hh, wp_n, <floating> 1,
                                  gblk + 2 * U, ldg)
                    _gru_before_update(n, U, gblk, bx, h)
            for j in range(n):
                memcpy(h_next + j * H + u0, h + j * U, U * sizeof(floating))
                t = _time(reverse, lengths, j, s)
                memcpy(y + t * ys0 + perm[j] * ys1 + u0, h + j * U, U * sizeof(floating))
                if keep_g != NULL:
                    for q in range(blocks):
                        memcpy(keep_g + (off + j) * ldg_keep + q * H + u0,
                               gblk + j * ldg + q * U, U * sizeof(floating))
            spin_wait(bar, nthreads, &sense)  # h_t is complete before anyone reads it
            swap = h_prev
            h_prev = h_next
            h_next = swap
            off += n
        s0 = s1

    for j in range(B):
        b = perm[j]
        memcpy(h_n + b * H + u0, h + j * U, U * sizeof(floating))
        if kind == LSTM:
            memcpy(c_n + b * H + u0, c + j * U, U * sizeof(floating))
        for t in range(lengths[j], T):
            memset(y + t * ys0 + b * ys1 + u0, 0, U * sizeof(floating))


cdef inline void _unit_back_product(Py_ssize_t n, Py_ssize_t U, Py_ssize_t K, Py_ssize_t H,
                                    const floating* a, Py_ssize_t lda, const floating* w,
                                    const float* wp, floating beta,
                                    floating* c) noexcept nogil:
    """C (n x U) = A (n x K, row stride lda) @ W[:, my U columns] + beta C, W with
    rows of length H starting at my first column: on the thread's packed panels
    wp (the slice's transpose), or BLAS."""
    if floating is float:
        if wp != NULL:
            panel_gemm(n, U, K, a, lda, wp, c, U, beta != 0)
            return
    gemm(c'N', c'N', <int> n, <int> U, <int> K, <floating> 1, a, <int> lda, w, <int> H, beta,
         c, <int> U)


cdef void _unit_backward_worker(int kind, bint reverse, Py_ssize_t H, Py_ssize_t B,
                                Py_ssize_t N, const floating* w_hh,
                                const Py_ssize_t* lengths, const Py_ssize_t* perm,
                                const Py_ssize_t* n_active, const floating* a,
                                const floating* hp, const floating* cp,
                                const floating* dy, Py_ssize_t ds0, Py_ssize_t ds1,
                                const floating* dh_n, const floating* dc_n, floating* dg,
                                floating* dh0, floating* dc0, floating* ws, float* pw,
                                int tid, int nthreads, fastrnn_spin_barrier* bar) noexcept nogil:
    """One thread of the unit-split BPTT: the hidden units [u0, u1).

    The storage is one block of all B rows (forward_layer_units in training).
    Each step, the thread turns dL/dh_t of its units into their columns of dG_t
    (it copies its units' stored activations to a contiguous block for the
    gate passes), writes them to dg, and after a barrier (two for the
    reset-before GRU) computes its units of dh_{t-1} = dG_t @ W_hh[:, units]
    from every thread's columns. Arguments as _backward_task; ws: this thread's
    workspace; pw: room for its slice of W_hhᵀ in panels, or NULL for BLAS;
    bar: the call's barrier.
    """
    cdef Py_ssize_t gates = _gates(kind)
    cdef Py_ssize_t G = gates * H
    cdef Py_ssize_t u0 = H * tid // nthreads
    cdef Py_ssize_t U = H * (tid + 1) // nthreads - u0
    cdef Py_ssize_t ablk = _gate_blocks(kind)                         # stored blocks
    cdef Py_ssize_t dblk = 6 if kind == GRU_RESET_AFTER else gates   # gradient blocks
    cdef Py_ssize_t lda_g = ablk * H, ldd_g = dblk * H
    cdef Py_ssize_t lda_l = ablk * U, ldd_l = dblk * U
    cdef Py_ssize_t s, j, k, q, n, off, t
    cdef floating* dh = ws
    cdef floating* dc = dh + B * U
    cdef floating* al = dc + B * U
    cdef floating* hl = al + B * lda_l
    cdef floating* cl = hl + B * U
    cdef floating* dgl = cl + B * U
    cdef floating* drh = dgl + B * ldd_l
    cdef const floating* src
    cdef float* wp = NULL
    cdef float* wp_n = NULL
    cdef int sense = 0                         # this thread's side of the barrier

    if floating is float:
        if pw != NULL and U > 0:
            # my columns of W_hh, transposed into panels once
            wp = pw
            if kind == GRU_RESET_BEFORE:
                wp_n = pw + panel_size(U, 2 * H)
                pack_panels(w_hh + u0, U, 2 * H, 1, H, wp)
                pack_panels(w_hh + 2 * H * H + u0, U, H, 1, H, wp_n)
            else:
                pack_panels(w_hh + u0, U, G, 1, H, wp)

    for j in range(B):
        memcpy(dh + j * U, dh_n + perm[j] * H + u0, U * sizeof(floating))
        if kind == LSTM:
            memcpy(dc + j * U, dc_n + perm[j] * H + u0, U * sizeof(floating))

    off = N
    for s in range(lengths[0] - 1, -1, -1):
        n = n_active[s]
        off -= n
        for j in range(n):
            t = _time(reverse, lengths, j, s)
            src = dy + t * ds0 + perm[j] * ds1 + u0
            for k in range(U):
                dh[j * U + k] += src[k]
            for q in range(ablk):
                memcpy(al + j * lda_l + q * U, a + (off + j) * lda_g + q * H + u0,
                       U * sizeof(floating))
            memcpy(hl + j * U, hp + (off + j) * H + u0, U * sizeof(floating))
            if kind == LSTM:
                memcpy(cl + j * U, cp + (off + j) * H + u0, U * sizeof(floating))
        if kind == LSTM:
            _lstm_rows_back(n, U, al, cl, dgl, dh, dc)
        elif kind == RNN_TANH or kind == RNN_RELU:
            _rnn_rows_back(kind == RNN_RELU, n, U, al, dgl, dh)
        elif kind == GRU_RESET_AFTER:
            _gru_after_rows_back(n, U, al, hl, dgl, dh)
        else:
            _gru_before_rows_back1(n, U, al, hl, dgl, dh)
        # my columns of dG_t (for the reset-before GRU: its z and n blocks so far)
        for j in range(n):
            for q in range(dblk):
                if kind != GRU_RESET_BEFORE or q > 0:
                    memcpy(dg + (off + j) * ldd_g + q * H + u0, dgl + j * ldd_l + q * U,
                           U * sizeof(floating))
        spin_wait(bar, nthreads, &sense)  # every column of this step's dG is written
        if kind == LSTM or kind == RNN_TANH or kind == RNN_RELU:
            # dh_{t-1}[:, mine] = dG_t @ W_hh[:, mine]
            _unit_back_product(n, U, G, H, dg + off * ldd_g, ldd_g, w_hh + u0, wp,
                               <floating> 0, dh)
        elif kind == GRU_RESET_AFTER:
            # dh_{t-1}[:, mine] = dh_t z' + [da_r, da_z, da_n r] @ W_hh[:, mine]
            _unit_back_product(n, U, G, H, dg + off * ldd_g + 3 * H, ldd_g, w_hh + u0, wp,
                               <floating> 1, dh)
        else:
            # dL/d(r ⊙ h_{t-1})[:, mine] = dG_n @ W_hn[:, mine]
            _unit_back_product(n, U, H, H, dg + off * ldd_g + 2 * H, ldd_g,
                               w_hh + 2 * H * H + u0, wp_n, <floating> 0, drh)
            _gru_before_rows_back2(n, U, al, hl, drh, dgl, dh)
            for j in range(n):
                memcpy(dg + (off + j) * ldd_g + u0, dgl + j * ldd_l, U * sizeof(floating))
            spin_wait(bar, nthreads, &sense)  # every column of dG_r is written
            # dh_{t-1}[:, mine] += [dG_r, dG_z] @ [W_hr; W_hz][:, mine]
            _unit_back_product(n, U, 2 * H, H, dg + off * ldd_g, ldd_g, w_hh + u0, wp,
                               <floating> 1, dh)

    for j in range(B):
        memcpy(dh0 + perm[j] * H + u0, dh + j * U, U * sizeof(floating))
        if kind == LSTM:
            memcpy(dc0 + perm[j] * H + u0, dc + j * U, U * sizeof(floating))


# ---------------------------------------------------------------------------
# entry points (shapes checked by the caller)
# ---------------------------------------------------------------------------

# the packed-panel product's variants by name, best first; "blas" = no panels
_PANEL_VARIANTS = {"avx512": PANEL_AVX512, "avx2": PANEL_AVX2, "blas": PANEL_NONE}


def _initial_panel_variant():
    """The CPU's best variant, or the one FASTRNN_PANEL names (avx512, avx2,
    blas: e.g. avx2 where 512-bit instructions lower the clock)."""
    import os
    choice = os.environ.get("FASTRNN_PANEL", "").strip().lower()
    if not choice:
        return panel_best()
    if choice not in _PANEL_VARIANTS or not panel_supported(_PANEL_VARIANTS[choice]):
        supported = [n for n, isa in _PANEL_VARIANTS.items() if panel_supported(isa)]
        raise ImportError(f"FASTRNN_PANEL must be one of {supported} on this CPU, "
                          f"got {choice!r}")
    return _PANEL_VARIANTS[choice]


panel_select(_initial_panel_variant())
cdef bint _use_panels = panel_selected() != PANEL_NONE

# Scratch memory kept per Python thread between calls: a fresh large array on
# every call comes back from the OS as zeroed pages (page faults measured at
# ~7% of a small bidirectional call). Only workspace that dies with the call
# and whose size is bounded (chunked steps, one step's rows, packed weights)
# lives here; nothing a caller keeps does.
_scratch_store = threading.local()


def _scratch(slot, Py_ssize_t n, dtype):
    """A 1-D array of at least n elements of dtype, reused by this thread."""
    bufs = getattr(_scratch_store, "bufs", None)
    if bufs is None:
        bufs = _scratch_store.bufs = {}
    key = (slot, dtype)
    buf = bufs.get(key)
    if buf is None or buf.shape[0] < n:
        buf = np.empty(max(n, 1), dtype=dtype)
        bufs[key] = buf
    return buf


def panel_kernels():
    """The variants of the float32 step product this CPU runs, best first:
    "avx512", "avx2" (packed panels) and always "blas"."""
    return [name for name, isa in _PANEL_VARIANTS.items() if panel_supported(isa)]


def set_panel_kernel(name):
    """Multiply float32 steps with the packed panels of one instruction set
    ("avx512", "avx2") or with BLAS ("blas"); one of panel_kernels(). The
    default is the first of panel_kernels(); tests and bench/limits.py switch
    it to check and time every variant. Not thread-safe: not for use while
    kernels run."""
    global _use_panels
    if name not in _PANEL_VARIANTS or not panel_select(_PANEL_VARIANTS[name]):
        raise ValueError(f"panel kernel must be one of {panel_kernels()}, got {name!r}")
    _use_panels = _PANEL_VARIANTS[name] != PANEL_NONE


def panel_kernel():
    """The variant float32 recurrent products use (see panel_kernels)."""
    for name, isa in _PANEL_VARIANTS.items():
        if isa == panel_selected():
            return name


cdef void _pack_split(const float* src, Py_ssize_t n, Py_ssize_t k, Py_ssize_t sn,
                      Py_ssize_t sk, float* dst, Py_ssize_t part,
                      Py_ssize_t parts) noexcept nogil:
    """Pack part ``part`` of ``parts`` of the panels of one matrix (see pack_panels)."""
    cdef Py_ssize_t panels = (n + 15) // 16
    pack_panel_range(src, n, k, sn, sk, dst, panels * part // parts,
                     panels * (part + 1) // parts)


cdef inline Py_ssize_t _recurrent_first(int kind, Py_ssize_t G, Py_ssize_t H,
                                        bint for_backward) noexcept nogil:
    """Elements of the first part of one direction's packed W_hh (see
    _pack_recurrent): all of it, or the reset-before GRU's r, z rows."""
    if kind == GRU_RESET_BEFORE:
        return panel_size(H, 2 * H) if for_backward else panel_size(2 * H, H)
    return panel_size(H, G) if for_backward else panel_size(G, H)


cdef void _pack_recurrent_part(int kind, const float* w, Py_ssize_t G, Py_ssize_t H,
                               bint for_backward, float* p, Py_ssize_t first,
                               Py_ssize_t part, Py_ssize_t parts) noexcept nogil:
    """Part ``part`` of ``parts`` of one direction's W_hh (G x H) packed at p
    (layout as _pack_recurrent)."""
    if kind == GRU_RESET_BEFORE:
        if for_backward:       # [W_hr; W_hz]ᵀ (H x 2H), W_hnᵀ (H x H)
            _pack_split(w, H, 2 * H, 1, H, p, part, parts)
            _pack_split(w + 2 * H * H, H, H, 1, H, p + first, part, parts)
        else:
            _pack_split(w, 2 * H, H, H, 1, p, part, parts)
            _pack_split(w + 2 * H * H, H, H, H, 1, p + first, part, parts)
    elif for_backward:         # W_hhᵀ (H x G)
        _pack_split(w, H, G, 1, H, p, part, parts)
    else:
        _pack_split(w, G, H, H, 1, p, part, parts)


cdef object _pack_recurrent(int kind, const float[:, :, ::1] w_hh, bint for_backward,
                            int num_threads, bint pack=True):
    """W_hh of every direction packed in panels for _step_wt (forward) or its
    transpose for _step_w (backward), the panels shared out among the threads
    (or only the room for them, pack=False: each task then packs its own
    direction). Per direction: the whole matrix, or for the reset-before GRU
    its r, z part then its n part. Returns (array, size of one direction,
    offset of the n part or 0)."""
    cdef Py_ssize_t D = w_hh.shape[0], G = w_hh.shape[1], H = w_hh.shape[2]
    cdef Py_ssize_t first = _recurrent_first(kind, G, H, for_backward)
    cdef Py_ssize_t second = panel_size(H, H) if kind == GRU_RESET_BEFORE else 0
    cdef Py_ssize_t size = first + second, task
    cdef Py_ssize_t S = num_threads if num_threads > 0 else 1
    packed_arr = _scratch("panels", D * size, np.float32)
    cdef float[::1] packed = packed_arr
    if pack:
        with nogil:
            for task in prange(D * S, num_threads=num_threads, schedule="static"):
                _pack_recurrent_part(kind, &w_hh[task // S, 0, 0], G, H, for_backward,
                                     &packed[0] + (task // S) * size, first, task % S, S)
    return packed_arr, size, (first if second else 0)


cdef object _pack_rows(const float[:, :, ::1] w, int num_threads, bint pack=True):
    """Each direction's W (D, R, K) packed in panels, shared out among the
    threads (or only the room for them, pack=False): (array, size of one
    direction)."""
    cdef Py_ssize_t D = w.shape[0], R = w.shape[1], K = w.shape[2], task
    cdef Py_ssize_t S = num_threads if num_threads > 0 else 1
    cdef Py_ssize_t size = panel_size(R, K)
    packed_arr = _scratch("panels_ih", D * size, np.float32)
    cdef float[::1] packed = packed_arr
    if pack:
        with nogil:
            for task in prange(D * S, num_threads=num_threads, schedule="static"):
                _pack_split(&w[task // S, 0, 0], R, K, K, 1, &packed[0] + (task // S) * size,
                            task % S, S)
    return packed_arr, size


cdef Py_ssize_t _rows_max(const Py_ssize_t[::1] bounds) noexcept nogil:
    cdef Py_ssize_t k, rows = 0
    for k in range(bounds.shape[0] - 1):
        if bounds[k + 1] - bounds[k] > rows:
            rows = bounds[k + 1] - bounds[k]
    return rows


cdef void _combine_biases(int kind, Py_ssize_t G, Py_ssize_t H, const floating* b_ih,
                          const floating* b_hh, floating* b_x, floating* b_hn) noexcept nogil:
    """One direction's kernel biases: b_x (G) = b_ih + b_hh, except the n rows of
    the reset-after GRU (b_in only), and b_hn (H), that GRU's b_hn (else 0)."""
    cdef Py_ssize_t g
    for g in range(G):
        b_x[g] = b_ih[g] + b_hh[g]
    for g in range(H):
        b_hn[g] = 0
    if kind == GRU_RESET_AFTER:
        for g in range(H):
            b_x[2 * H + g] = b_ih[2 * H + g]
            b_hn[g] = b_hh[2 * H + g]


cdef object _kernel_biases(int kind, const floating[:, ::1] b_ih, const floating[:, ::1] b_hh):
    """(b_x (D, G), b_hn (D, H)) for the kernels, in per-thread scratch: the bias
    added to the input projection (b_ih + b_hh, but only b_in for the n rows of
    the reset-after GRU) and that GRU's b_hn, which r multiplies."""
    cdef Py_ssize_t D = b_ih.shape[0], G = b_ih.shape[1], H = G // _gates(kind), d
    buf = _scratch("bias", D * (G + H), np.float32 if floating is float else np.float64)
    b_x_arr = buf[:D * G].reshape(D, G)
    b_hn_arr = buf[D * G:D * (G + H)].reshape(D, H)
    cdef floating[:, ::1] b_x = b_x_arr
    cdef floating[:, ::1] b_hn = b_hn_arr
    for d in range(D):
        _combine_biases(kind, G, H, &b_ih[d, 0], &b_hh[d, 0], &b_x[d, 0], &b_hn[d, 0])
    return b_x_arr, b_hn_arr


def forward_layer(int kind,
                  const floating[:, :, :] x,
                  const floating[:, :, ::1] w_ih,
                  const floating[:, :, ::1] w_hh,
                  const floating[:, ::1] b_ih,
                  const floating[:, ::1] b_hh,
                  const int[::1] reverse,
                  const Py_ssize_t[::1] lengths,
                  const Py_ssize_t[::1] perm,
                  const Py_ssize_t[::1] n_active,
                  const Py_ssize_t[::1] bounds,
                  const floating[:, :, ::1] h0,
                  const floating[:, :, ::1] c0,
                  floating[:, :, ::1] y,
                  floating[:, :, ::1] h_n,
                  floating[:, :, ::1] c_n,
                  Py_ssize_t step_chunk,
                  int num_threads,
                  floating[:, :, ::1] keep_x=None,
                  floating[:, :, ::1] keep_gates=None,
                  floating[:, :, ::1] keep_h=None,
                  floating[:, :, ::1] keep_c=None,
                  const Py_ssize_t[::1] block_offsets=None,
                  const Py_ssize_t[:, :] ids=None,
                  Py_ssize_t[:, ::1] keep_ids=None):
    """Run one layer (D directions) over a batch; fills y, h_n (and c_n).

    x: (T, B, I) any strides; w_ih: (D, G, I); w_hh: (D, G, H); b_ih, b_hh:
    (D, G) (zeros for a layer without bias); reverse: (D,) 0/1; lengths: (B,)
    sorted descending, perm: (B,) sorted row -> caller row, n_active: (T,) rows
    with length > s; bounds: (K+1,) row
    blocks; h0, c0, h_n, c_n: (D, B, H) (c0/c_n used by the LSTM only);
    y: (T, B, D*H), C-contiguous.

    Training (keep_* given): keep_x (D, N, I),
    keep_gates (D, N, gate_stride), keep_h (D, N, H), keep_c (D, N, H) (LSTM)
    receive the packed inputs, gate activations, h_{t-1} and c_{t-1},
    N = sum(lengths); block_offsets: (K,) first packed row of each block.

    Token input: ids (T, B) any strides, each in [0, I), and x is W_ihᵀ
    (D, I, G), any strides (a transposed copy of W_ih, or a view of it);
    keep_x is then not used and keep_ids (D, N) receives the packed rows'
    tokens in training.
    """
    cdef bint tokens = ids is not None
    cdef Py_ssize_t D = w_ih.shape[0], G = w_ih.shape[1], I = w_ih.shape[2]
    cdef Py_ssize_t H = w_hh.shape[2], T = ids.shape[0] if tokens else x.shape[0]
    cdef Py_ssize_t ldg = gate_stride(kind, H)
    cdef Py_ssize_t n_blocks = bounds.shape[0] - 1
    cdef Py_ssize_t n_tasks = D * n_blocks
    cdef Py_ssize_t rows_max = _rows_max(bounds)
    cdef Py_ssize_t task, d, blk, r0, r1, o
    cdef Py_ssize_t isz = sizeof(floating)
    cdef bint training = keep_gates is not None
    cdef bint is_lstm = kind == LSTM
    cdef Py_ssize_t is0 = ids.strides[0] // sizeof(Py_ssize_t) if tokens else 0
    cdef Py_ssize_t is1 = ids.strides[1] // sizeof(Py_ssize_t) if tokens else 0
    cdef Py_ssize_t cap = 0 if training else step_chunk * rows_max
    b_x_arr, b_hn_arr = _kernel_biases(kind, b_ih, b_hh)
    cdef const floating[:, ::1] b_x = b_x_arr
    cdef const floating[:, ::1] b_hn = b_hn_arr
    # per-task workspace: [xp (cap, I) | gx (cap, ldg)] (inference) | gh (rows, 3H) | h, c, rh (rows, H)
    cdef Py_ssize_t per_task = cap * (I + ldg) + rows_max * 6 * H
    work_arr = _scratch("work", n_tasks * per_task,
                        np.float32 if floating is float else np.float64)
    cdef floating[::1] work = work_arr
    cdef floating* ws
    cdef floating* xp
    cdef floating* gx
    cdef floating* hp
    cdef floating* cp
    cdef float[::1] packed
    cdef float[::1] packed_ih
    cdef Py_ssize_t psize = 0, pn = 0, psize_ih = 0
    cdef float* wp_base = NULL
    cdef float* wp_ih_base = NULL
    cdef const float* wp
    cdef const float* wp_n
    cdef const float* wp_ih
    # one block per direction: each task packs its own direction's weights
    # (into its own core's cache, with no separate thread team for packing)
    cdef bint pack_in_task = n_blocks == 1
    if floating is float:
        if _use_panels:
            packed_arr, psize, pn = _pack_recurrent(kind, w_hh, False, num_threads,
                                                    not pack_in_task)
            packed = packed_arr
            wp_base = &packed[0]
            packed_ih_arr, psize_ih = _pack_rows(w_ih, num_threads, not pack_in_task)
            packed_ih = packed_ih_arr
            wp_ih_base = &packed_ih[0]

    with nogil:
        for task in prange(n_tasks, num_threads=num_threads, schedule="dynamic"):
            d = task // n_blocks
            blk = task % n_blocks
            r0 = bounds[blk]
            r1 = bounds[blk + 1]
            ws = &work[0] + task * per_task
            wp = wp_base + d * psize if wp_base != NULL else NULL
            wp_n = wp + pn if wp != NULL and pn > 0 else NULL
            wp_ih = wp_ih_base + d * psize_ih if wp_ih_base != NULL else NULL
            if floating is float:
                if wp != NULL and pack_in_task:
                    _pack_recurrent_part(kind, &w_hh[d, 0, 0], G, H, False, wp_base + d * psize,
                                         _recurrent_first(kind, G, H, False), 0, 1)
                    _pack_split(&w_ih[d, 0, 0], G, I, I, 1, wp_ih_base + d * psize_ih, 0, 1)
            if training:
                o = block_offsets[blk]
                xp = &keep_x[d, 0, 0] + o * I if not tokens else NULL
                gx = &keep_gates[d, 0, 0] + o * ldg
                hp = &keep_h[d, 0, 0] + o * H
                cp = &keep_c[d, 0, 0] + o * H if is_lstm else NULL
            else:
                xp = ws
                gx = ws + cap * I
                hp = NULL
                cp = NULL
            _forward_task(kind, reverse[d] != 0,
                          &x[d, 0, 0] if tokens else &x[0, 0, 0],
                          x.strides[0] // isz, x.strides[1] // isz,
                          x.strides[2] // isz, I, H, T,
                          &w_ih[d, 0, 0], &w_hh[d, 0, 0], &b_x[d, 0], &b_hn[d, 0],
                          &lengths[0], &perm[0], &n_active[0], r0, r1,
                          &h0[d, 0, 0], &c0[d, 0, 0] if is_lstm else NULL,
                          &y[0, 0, d * H], y.strides[0] // isz, y.strides[1] // isz,
                          &h_n[d, 0, 0], &c_n[d, 0, 0] if is_lstm else NULL,
                          step_chunk, xp, gx, hp, cp,
                          ws + cap * (I + ldg),
                          ws + cap * (I + ldg) + rows_max * 3 * H,
                          ws + cap * (I + ldg) + rows_max * 4 * H,
                          ws + cap * (I + ldg) + rows_max * 5 * H, wp, wp_n, wp_ih,
                          &ids[0, 0] if tokens else NULL, is0, is1,
                          &keep_ids[d, 0] + o if tokens and training else NULL)


def backward_layer(int kind,
                   const floating[:, :, ::1] w_hh,
                   const int[::1] reverse,
                   const Py_ssize_t[::1] lengths,
                   const Py_ssize_t[::1] perm,
                   const Py_ssize_t[::1] n_active,
                   const Py_ssize_t[::1] bounds,
                   const Py_ssize_t[::1] block_offsets,
                   const floating[:, :, ::1] gates,
                   const floating[:, :, ::1] h_prev,
                   const floating[:, :, ::1] c_prev,
                   const floating[:, :, :] dy,
                   const floating[:, :, ::1] dh_n,
                   const floating[:, :, ::1] dc_n,
                   floating[:, :, ::1] dgates,
                   floating[:, :, ::1] dh0,
                   floating[:, :, ::1] dc0,
                   int num_threads):
    """BPTT through one layer (D directions) with the plan of its forward.

    gates, h_prev, c_prev: what forward_layer kept (D, N, ·); dy: (T, B, D*H)
    any strides, unit stride on its last axis; dh_n, dc_n: (D, B, H).
    Writes dgates (D, N, grad_stride) and dh0, dc0 (D, B, H) (dc_n, dc0 are
    used by the LSTM only).
    """
    cdef Py_ssize_t D = w_hh.shape[0], H = w_hh.shape[2]
    cdef Py_ssize_t lda = gate_stride(kind, H), ldd = grad_stride(kind, H)
    cdef Py_ssize_t n_blocks = bounds.shape[0] - 1
    cdef Py_ssize_t n_tasks = D * n_blocks
    cdef Py_ssize_t rows_max = _rows_max(bounds)
    cdef Py_ssize_t per_task = rows_max * 3 * H
    cdef Py_ssize_t task, d, blk, o
    cdef Py_ssize_t isz = sizeof(floating)
    cdef bint is_lstm = kind == LSTM
    work_arr = _scratch("work", n_tasks * per_task,
                        np.float32 if floating is float else np.float64)
    cdef floating[::1] work = work_arr
    cdef floating* ws
    cdef float[::1] packed
    cdef Py_ssize_t psize = 0, pn = 0
    cdef float* wp_base = NULL
    cdef const float* wp
    cdef const float* wp_n
    if floating is float:
        if _use_panels:
            packed_arr, psize, pn = _pack_recurrent(kind, w_hh, True, num_threads,
                                                    n_blocks != 1)
            packed = packed_arr
            wp_base = &packed[0]

    with nogil:
        for task in prange(n_tasks, num_threads=num_threads, schedule="dynamic"):
            d = task // n_blocks
            blk = task % n_blocks
            o = block_offsets[blk]
            ws = &work[0] + task * per_task
            wp = wp_base + d * psize if wp_base != NULL else NULL
            wp_n = wp + pn if wp != NULL and pn > 0 else NULL
            if floating is float:
                if wp != NULL and n_blocks == 1:
                    # one block per direction: the task packs its own direction
                    _pack_recurrent_part(kind, &w_hh[d, 0, 0], w_hh.shape[1], H, True,
                                         wp_base + d * psize,
                                         _recurrent_first(kind, w_hh.shape[1], H, True), 0, 1)
            _backward_task(kind, reverse[d] != 0, H, &w_hh[d, 0, 0],
                           &lengths[0], &perm[0], &n_active[0], bounds[blk], bounds[blk + 1],
                           &gates[d, 0, 0] + o * lda, &h_prev[d, 0, 0] + o * H,
                           &c_prev[d, 0, 0] + o * H if is_lstm else NULL,
                           &dy[0, 0, d * H], dy.strides[0] // isz, dy.strides[1] // isz,
                           &dh_n[d, 0, 0], &dc_n[d, 0, 0] if is_lstm else NULL,
                           &dgates[d, 0, 0] + o * ldd, &dh0[d, 0, 0],
                           &dc0[d, 0, 0] if is_lstm else NULL,
                           ws, ws + rows_max * H, ws + rows_max * 2 * H, wp, wp_n)


def activations(const floating[::1] x, floating[::1] sig, floating[::1] tnh):
    """The kernels' σ and tanh of x, into sig and tnh (for the accuracy tests)."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(x.shape[0]):
            sig[i] = sigmoid(x[i])
            tnh[i] = tanh_(x[i])


def forward_layer_units(int kind,
                        const floating[:, :, :] x,
                        const floating[:, ::1] w_ih,
                        const floating[:, ::1] w_hh,
                        const floating[:, ::1] b_ih,
                        const floating[:, ::1] b_hh,
                        bint reverse,
                        const Py_ssize_t[::1] lengths,
                        const Py_ssize_t[::1] perm,
                        const Py_ssize_t[::1] n_active,
                        const floating[:, ::1] h0,
                        const floating[:, ::1] c0,
                        floating[:, :, ::1] y,
                        floating[:, ::1] h_n,
                        floating[:, ::1] c_n,
                        Py_ssize_t step_chunk,
                        int num_threads,
                        bint pack_weights=True,
                        floating[:, ::1] keep_x=None,
                        floating[:, ::1] keep_gates=None,
                        floating[:, ::1] keep_h=None,
                        floating[:, ::1] keep_c=None,
                        const Py_ssize_t[:, :] ids=None,
                        Py_ssize_t[::1] keep_ids=None):
    """One direction of one layer with its hidden units split across threads.

    For small batches (see _unit_worker). Shapes as forward_layer for one
    direction: w_ih (G, I), w_hh (G, H), b_ih, b_hh (1, G), h0/c0/h_n/c_n
    (B, H), y (T, B, H) or a view of y's columns for this direction (unit
    stride on the last axis). pack_weights=False keeps BLAS on the weights as
    they are (cheaper than packing for a step or two). Training: keep_x (N, I),
    keep_gates (N, gate_stride), keep_h (N, H), keep_c (N, H) (LSTM) as in
    forward_layer for a single block (step_chunk is then ignored). Token
    input as in forward_layer: ids (T, B), x = W_ihᵀ (1, I, G), keep_ids (N,).
    """
    cdef Py_ssize_t I = w_ih.shape[1], H = w_hh.shape[1], B = lengths.shape[0]
    cdef bint tokens = ids is not None
    cdef Py_ssize_t T = ids.shape[0] if tokens else x.shape[0]
    cdef bint training = keep_gates is not None
    cdef Py_ssize_t is0 = ids.strides[0] // sizeof(Py_ssize_t) if tokens else 0
    cdef Py_ssize_t is1 = ids.strides[1] // sizeof(Py_ssize_t) if tokens else 0
    if training:
        step_chunk = T
    b_x_arr, b_hn_arr = _kernel_biases(kind, b_ih, b_hh)
    cdef const floating[:, ::1] b_x = b_x_arr
    cdef const floating[:, ::1] b_hn = b_hn_arr
    cdef Py_ssize_t cap = step_chunk * B
    # per thread, sized for a team of one: xp (cap, I) | gx (cap, 4H) | gh (B, 3H) |
    # h, c, rh (B, H) | bias (4H) | b_hn (H)
    cdef Py_ssize_t per_thread = cap * (I + 4 * H) + B * 6 * H + 5 * H
    dtype = np.float32 if floating is float else np.float64
    work_arr = _scratch("work", num_threads * per_thread, dtype)
    shared_arr = _scratch("shared", 3 * B * H, dtype)
    cdef floating[::1] work = work_arr
    cdef floating[::1] shared = shared_arr
    cdef Py_ssize_t isz = sizeof(floating)
    cdef bint is_lstm = kind == LSTM
    cdef int tid, nthreads
    # room for one thread's W_hh and W_ih rows in panels, sized for a team of one
    cdef Py_ssize_t per_pack = panel_size(4 * H, H) + panel_size(H, H) + panel_size(4 * H, I)
    cdef float[::1] pack_space
    cdef float* pack_base = NULL
    if floating is float:
        if _use_panels and pack_weights:
            pack_arr = _scratch("panels", num_threads * per_pack, np.float32)
            pack_space = pack_arr
            pack_base = &pack_space[0]
    cdef fastrnn_spin_barrier bar
    spin_init(&bar, num_threads)
    with nogil, parallel(num_threads=num_threads):
        tid = omp_get_thread_num()
        nthreads = omp_get_num_threads()
        _unit_worker(kind, reverse, &x[0, 0, 0], x.strides[0] // isz, x.strides[1] // isz,
                     x.strides[2] // isz, I, H, B, T, &w_ih[0, 0], &w_hh[0, 0],
                     &b_x[0, 0], &b_hn[0, 0], &lengths[0], &perm[0], &n_active[0],
                     &h0[0, 0], &c0[0, 0] if is_lstm else NULL,
                     &y[0, 0, 0], y.strides[0] // isz, y.strides[1] // isz,
                     &h_n[0, 0], &c_n[0, 0] if is_lstm else NULL, step_chunk,
                     &shared[0], &work[0] + tid * per_thread,
                     pack_base + tid * per_pack if pack_base != NULL else NULL, tid, nthreads,
                     &keep_x[0, 0] if training and not tokens else NULL,
                     &keep_gates[0, 0] if training else NULL,
                     &keep_h[0, 0] if training else NULL,
                     &keep_c[0, 0] if training and is_lstm else NULL,
                     &ids[0, 0] if tokens else NULL, is0, is1,
                     &keep_ids[0] if tokens and training else NULL, &bar)


cdef void _cell_run(int kind, const floating* x, Py_ssize_t xs0, Py_ssize_t xs1,
                    Py_ssize_t I, Py_ssize_t H, Py_ssize_t B, const floating* w_ih,
                    const floating* w_hh, const floating* b_ih, const floating* b_hh,
                    const Py_ssize_t* ones, const Py_ssize_t* perm, const floating* h0,
                    const floating* c0, floating* h1, floating* c1,
                    floating* ws, const Py_ssize_t* ids) noexcept nogil:
    """One step for B rows on the calling thread (the streaming path).

    x: (B, I) with element strides (xs0, xs1); h0, c0, h1, c1: (B, H)
    contiguous (c0, c1 for the LSTM only); ws: G + H + B (I + ldg + 6H)
    elements (kernel biases, then _forward_task's workspace). Token input:
    ids (B,) contiguous, x unused (column ids[b] of W_ih is read in place).
    """
    cdef Py_ssize_t G = _gates(kind) * H
    cdef Py_ssize_t ldg = _gate_blocks(kind) * H
    cdef Py_ssize_t n_active = B
    cdef floating* b_x = ws
    cdef floating* b_hn = ws + G
    cdef floating* w = ws + G + H
    _combine_biases(kind, G, H, b_ih, b_hh, b_x, b_hn)
    if ids != NULL:
        # token k's projection is column k of W_ih: token stride 1, gate stride I
        x, xs0, xs1 = w_ih, 1, I
    _forward_task(kind, False, x, 0, xs0, xs1, I, H, 1, w_ih, w_hh, b_x, b_hn, ones, perm,
                  &n_active, 0, B, h0, c0, h1, 0, H, h1, c1, 1,
                  w, w + B * I, NULL, NULL, w + B * (I + ldg), w + B * (I + ldg + 3 * H),
                  w + B * (I + ldg + 4 * H), w + B * (I + ldg + 5 * H),
                  NULL, NULL, NULL, ids, 0, 1, NULL)


cdef class CellKernel:
    """A cell's one-step kernel with its weights bound once.

    Binding the weight and bias arrays when the cell is made leaves five
    arrays to convert per step instead of twelve, and no fused-type dispatch;
    the arrays are read at every step, so in-place updates (optimizers,
    load_state_dict) are seen. w_ih (G, I), w_hh (G, H), b_ih, b_hh (G,), all
    C-contiguous float32 or float64 (one dtype).
    """
    cdef int kind
    cdef bint wide
    cdef Py_ssize_t n_in, n_hidden       # (not I: complex.h's macro)
    cdef const float[:, ::1] f_ih, f_hh
    cdef const float[::1] fb_ih, fb_hh
    cdef const double[:, ::1] d_ih, d_hh
    cdef const double[::1] db_ih, db_hh

    def __init__(self, int kind, w_ih, w_hh, b_ih, b_hh):
        self.kind = kind
        self.n_in, self.n_hidden = w_ih.shape[1], w_hh.shape[1]
        self.wide = w_ih.dtype == np.float64
        if self.wide:
            self.d_ih, self.d_hh, self.db_ih, self.db_hh = w_ih, w_hh, b_ih, b_hh
        else:
            self.f_ih, self.f_hh, self.fb_ih, self.fb_hh = w_ih, w_hh, b_ih, b_hh

    def step(self, x, h0, c0, h1, c1, ones, perm, ids=None):
        """h1 (and c1) = one step from h0 (and c0) for input x.

        x: (B, I) of the weights' dtype, any strides; h0, c0, h1, c1: (B, H)
        C-contiguous (for RNN and GRU cells pass h0, h1 again as c0, c1);
        ones: (B,) of 1; perm: arange(B) (intp). Token input: ids (B,) intp
        contiguous, each in [0, I) (checked by the caller), and x is ignored.
        """
        cdef const Py_ssize_t[::1] id_v
        cdef const Py_ssize_t* id_p = NULL
        if ids is not None:
            id_v = ids
            id_p = &id_v[0]
            x = h0                                 # any (B, *) array of the dtype
        cdef Py_ssize_t B = h0.shape[0], I = self.n_in, H = self.n_hidden
        cdef Py_ssize_t G = _gates(self.kind) * H
        cdef Py_ssize_t ldg = _gate_blocks(self.kind) * H
        cdef Py_ssize_t need = G + H + B * (I + ldg + 6 * H)
        cdef const Py_ssize_t[::1] one_v = ones
        cdef const Py_ssize_t[::1] perm_v = perm
        cdef const float[:, :] fx
        cdef const float[:, ::1] fh0, fc0
        cdef float[:, ::1] fh1, fc1
        cdef float[::1] fw
        cdef const double[:, :] dx
        cdef const double[:, ::1] dh0, dc0
        cdef double[:, ::1] dh1, dc1
        cdef double[::1] dw
        if self.wide:
            dx, dh0, dc0, dh1, dc1 = x, h0, c0, h1, c1
            dw = _scratch("cell", need, np.float64)
            with nogil:
                _cell_run(self.kind, &dx[0, 0], dx.strides[0] // 8, dx.strides[1] // 8, I, H, B,
                          &self.d_ih[0, 0], &self.d_hh[0, 0], &self.db_ih[0], &self.db_hh[0],
                          &one_v[0], &perm_v[0], &dh0[0, 0], &dc0[0, 0], &dh1[0, 0],
                          &dc1[0, 0], &dw[0], id_p)
        else:
            fx, fh0, fc0, fh1, fc1 = x, h0, c0, h1, c1
            fw = _scratch("cell", need, np.float32)
            with nogil:
                _cell_run(self.kind, &fx[0, 0], fx.strides[0] // 4, fx.strides[1] // 4, I, H, B,
                          &self.f_ih[0, 0], &self.f_hh[0, 0], &self.fb_ih[0], &self.fb_hh[0],
                          &one_v[0], &perm_v[0], &fh0[0, 0], &fc0[0, 0], &fh1[0, 0],
                          &fc1[0, 0], &fw[0], id_p)


def cpu_has_avx2_fma():
    """Whether this CPU runs x86-64-v3 code (AVX2 and FMA)."""
    return bool(panel_supported(PANEL_AVX2))


cdef inline Py_ssize_t _tn_direction_size(int kind, Py_ssize_t N, Py_ssize_t I,
                                          Py_ssize_t H, bint tokens) noexcept nogil:
    """One direction's packed operands of the weight gradients: X (none for
    tokens), H_prev and, for the reset-before GRU, r ⊙ H_prev, in panels over N."""
    return ((0 if tokens else panel_size(I, N))
            + panel_size(H, N) * (2 if kind == GRU_RESET_BEFORE else 1))


def tn_workspace(int kind, Py_ssize_t D, Py_ssize_t N, Py_ssize_t I, Py_ssize_t H,
                 bint tokens):
    """float32 elements layer_grads packs its operands into (0 without panels)."""
    if not _use_panels:
        return 0
    return D * _tn_direction_size(kind, N, I, H, tokens)


cdef void _weight_grads_tn(Py_ssize_t N, Py_ssize_t I, Py_ssize_t H, Py_ssize_t ldd,
                           Py_ssize_t hoff, Py_ssize_t a0, Py_ssize_t a1, Py_ssize_t split,
                           bint tokens, const float* dg, const float* packed, Py_ssize_t px,
                           Py_ssize_t ph, float* gw_ih, float* gw_hh) noexcept nogil:
    """Rows [a0, a1) of one direction's weight gradients on panels (see
    layer_grads): packed holds X (px elements; none for tokens), H_prev (ph)
    and, for the rows from ``split`` on, r ⊙ H_prev, each in panels over N."""
    if not tokens:
        # dW_ih[a0:a1] += dGx[:, a0:a1]ᵀ X
        panel_gemm_tn(a1 - a0, I, N, dg + a0, ldd, packed, gw_ih + a0 * I, I)
    # dW_hh[a0:split] += dGh[:, a0:split]ᵀ H_prev
    panel_gemm_tn(split - a0, H, N, dg + hoff + a0, ldd, packed + px, gw_hh + a0 * H, H)
    if split < a1:
        # dW_hn[rows] += dG_n[:, rows]ᵀ (r ⊙ H_prev)
        panel_gemm_tn(a1 - split, H, N, dg + hoff + split, ldd, packed + px + ph,
                      gw_hh + split * H, H)


def layer_grads(int kind,
                const floating[:, :, ::1] dgates,
                const floating[:, :, ::1] x_keep,
                const floating[:, :, ::1] gates,
                const floating[:, :, ::1] h_prev,
                const floating[:, :, ::1] w_ih,
                floating[:, :, ::1] gw_ih,
                floating[:, :, ::1] gw_hh,
                floating[:, ::1] gb_ih,
                floating[:, ::1] gb_hh,
                const Py_ssize_t[:, ::1] inverse,
                floating[:, ::1] dx,
                int num_threads,
                const Py_ssize_t[:, ::1] keep_ids=None,
                float[::1] tn_work=None):
    """The all-steps products of BPTT for one layer, in fastrnn's threads.

    Adds dW_ih += dGxᵀ X, dW_hh += dGhᵀ H_prev (the n rows of the reset-before
    GRU: dG_nᵀ (r ⊙ H_prev)), db_ih += Σ dGx, db_hh += Σ dGh into gw_ih
    (D, G, I), gw_hh (D, G, H), gb_ih, gb_hh (D, G) (empty: no bias), and
    writes dx (T*B, I) = the sum over directions of dGx W_ih scattered to each
    packed row's step: inverse[d, t*B + b] is that packed row, or -1.
    dgates (D, N, grad_stride), x_keep (D, N, I), gates (D, N, gate_stride),
    h_prev (D, N, H): what forward and backward_layer kept; w_ih: the forward's
    weights. The products are split into row stripes, one task per stripe and
    direction. dW in float32 with the panel product: dGᵀ X on X, H_prev
    packed once into panels over the N rows (panel_gemm_tn; BLAS repacks its
    transposed operand per call; `python -m bench.limits` times both at the
    shapes of the benchmark's training steps; the panels go to tn_work when it
    has tn_workspace(...) elements, else to a new array); otherwise, and dX
    always, single-threaded BLAS calls. Token input (keep_ids (D, N)
    given, x_keep not used): dW_ih[:, k] += the dGx rows of token k, and dx is
    not written (token ids have no gradient).
    """
    cdef Py_ssize_t D = dgates.shape[0], N = dgates.shape[1], ldd = dgates.shape[2]
    cdef Py_ssize_t G = w_ih.shape[1], I = w_ih.shape[2], H = h_prev.shape[2]
    cdef Py_ssize_t lda = gates.shape[2], F = dx.shape[0]
    cdef Py_ssize_t hoff = 3 * H if kind == GRU_RESET_AFTER else 0   # dGh columns
    cdef Py_ssize_t S = num_threads if num_threads > 0 else 1
    cdef bint has_bias = gb_ih.shape[1] > 0
    cdef bint rh_rows = kind == GRU_RESET_BEFORE
    cdef bint tokens = keep_ids is not None
    dtype = np.float32 if floating is float else np.float64
    # (sized by T x B: not kept between calls)
    dxp_arr = np.empty((D, 0 if tokens else N, I), dtype=dtype)
    rh_arr = np.empty((D, N if rh_rows else 0, H if rh_rows else 0), dtype=dtype)
    cdef floating[:, :, ::1] dxp = dxp_arr
    cdef floating[:, :, ::1] rh = rh_arr
    cdef Py_ssize_t task, d, s, a0, a1, g, n, f, i, split, r
    cdef const floating* dg
    cdef const floating* row
    cdef floating* acc
    cdef floating* out
    # float32 with panels: X (or nothing, for tokens), H_prev and r ⊙ H_prev of
    # every direction packed in panels of 16 columns over the N rows, for the
    # transposed products dW = dGᵀ X on them (panel_gemm_tn)
    cdef bint panels = False
    cdef Py_ssize_t px = 0, ph = 0, pstride = 0
    cdef float[::1] packed
    cdef float* pbase = NULL
    if floating is float:
        panels = _use_panels
        if panels:
            px = 0 if tokens else panel_size(I, N)
            ph = panel_size(H, N)
            pstride = _tn_direction_size(kind, N, I, H, tokens)
            if tn_work is not None and tn_work.shape[0] >= D * pstride:
                packed = tn_work
            else:
                packed = np.empty(max(D * pstride, 1), np.float32)
            pbase = &packed[0]

    with nogil:
        if rh_rows:
            # r ⊙ h_{t-1}, the input of W_hn
            for task in prange(D * S, num_threads=num_threads, schedule="static"):
                d = task // S
                s = task % S
                for n in range(N * s // S, N * (s + 1) // S):
                    for i in range(H):
                        rh[d, n, i] = gates[d, n, i] * h_prev[d, n, i]

        if floating is float:
            if panels:
                for task in prange(D * S, num_threads=num_threads, schedule="static"):
                    d = task // S
                    s = task % S
                    if not tokens:
                        _pack_split(&x_keep[d, 0, 0], I, N, 1, I, pbase + d * pstride, s, S)
                    _pack_split(&h_prev[d, 0, 0], H, N, 1, H, pbase + d * pstride + px, s, S)
                    if rh_rows:
                        _pack_split(&rh[d, 0, 0], H, N, 1, H, pbase + d * pstride + px + ph,
                                    s, S)

        for task in prange(D * S, num_threads=num_threads, schedule="static"):
            d = task // S
            s = task % S
            a0 = G * s // S
            a1 = G * (s + 1) // S
            dg = &dgates[d, 0, 0]
            split = a1
            if rh_rows and a1 > 2 * H:
                split = a0 if a0 > 2 * H else 2 * H
            if tokens:
                # dW_ih[a0:a1, k] += dGx[n, a0:a1] for every packed row n of token k
                for n in range(N):
                    r = keep_ids[d, n]
                    row = dg + n * ldd
                    for g in range(a0, a1):
                        gw_ih[d, g, r] = gw_ih[d, g, r] + row[g]
            if panels:
                _weight_grads_tn(N, I, H, ldd, hoff, a0, a1, split, tokens, <const float*> dg,
                                 pbase + d * pstride, px, ph, <float*> &gw_ih[d, 0, 0],
                                 <float*> &gw_hh[d, 0, 0])
            else:
                if not tokens:
                    # dW_ih[a0:a1] += dGx[:, a0:a1]ᵀ X
                    gemm(c'T', c'N', <int> (a1 - a0), <int> I, <int> N, <floating> 1, dg + a0,
                         <int> ldd, &x_keep[d, 0, 0], <int> I, <floating> 1, &gw_ih[d, a0, 0],
                         <int> I)
                # dW_hh[a0:a1] += dGh[:, a0:a1]ᵀ H_prev (r ⊙ H_prev for the reset-before n rows)
                gemm(c'T', c'N', <int> (split - a0), <int> H, <int> N, <floating> 1,
                     dg + hoff + a0, <int> ldd, &h_prev[d, 0, 0], <int> H, <floating> 1,
                     &gw_hh[d, a0, 0], <int> H)
                if split < a1:
                    gemm(c'T', c'N', <int> (a1 - split), <int> H, <int> N, <floating> 1,
                         dg + hoff + split, <int> ldd, &rh[d, 0, 0], <int> H, <floating> 1,
                         &gw_hh[d, split, 0], <int> H)
            if has_bias:
                # db_ih[a0:a1] += Σ_n dGx[n, a0:a1], db_hh likewise with dGh
                for n in range(N):
                    row = dg + n * ldd
                    acc = &gb_ih[d, 0]
                    for g in range(a0, a1):
                        acc[g] = acc[g] + row[g]
                    acc = &gb_hh[d, 0]
                    for g in range(a0, a1):
                        acc[g] = acc[g] + row[hoff + g]

        for task in prange(0 if tokens else D * S, num_threads=num_threads,
                           schedule="static"):
            d = task // S
            s = task % S
            a0 = N * s // S
            a1 = N * (s + 1) // S
            # dX_packed[a0:a1] = dGx[a0:a1] W_ih
            gemm(c'N', c'N', <int> (a1 - a0), <int> I, <int> G, <floating> 1,
                 &dgates[d, 0, 0] + a0 * ldd, <int> ldd, &w_ih[d, 0, 0], <int> I,
                 <floating> 0, &dxp[d, 0, 0] + a0 * I, <int> I)

        for s in prange(0 if tokens else S, num_threads=num_threads, schedule="static"):
            # dx[t*B + b] = Σ_d dX_packed[d, its packed row]
            for f in range(F * s // S, F * (s + 1) // S):
                out = &dx[f, 0]
                for i in range(I):
                    out[i] = 0
                for d in range(D):
                    r = inverse[d, f]
                    if r >= 0:
                        row = &dxp[d, r, 0]
                        for i in range(I):
                            out[i] = out[i] + row[i]


def barrier_seconds(int num_threads, Py_ssize_t rounds, bint spin):
    """Seconds per barrier for a team of num_threads meeting ``rounds`` times
    in a row: fastrnn's spin barrier (spin=True, what the unit-split kernels
    use every step) or the OpenMP barrier (bench/limits.py)."""
    import time
    if num_threads < 1 or rounds < 1:
        raise ValueError(f"num_threads and rounds must be >= 1, got {num_threads}, {rounds}")
    cdef fastrnn_spin_barrier bar
    spin_init(&bar, num_threads)
    cdef Py_ssize_t i
    cdef int sense, nthreads
    start = time.perf_counter()
    with nogil, parallel(num_threads=num_threads):
        sense = 0
        nthreads = omp_get_num_threads()
        for i in range(rounds):
            if spin:
                spin_wait(&bar, nthreads, &sense)
            else:
                fastrnn_barrier()
    return (time.perf_counter() - start) / rounds


def panel_product(const float[:, ::1] a, const float[:, ::1] w, float[:, ::1] c,
                  bint accumulate, int reps=1):
    """C (m x n) = A (m x k) @ Wᵀ, or C += that, with the selected
    panel_kernel() (W packed into panels first; BLAS without them), reps
    times; returns the seconds per product, packing excluded (bench/limits.py
    measures the rates behind the README's physical limits with it; tests
    check every variant with it)."""
    import time
    cdef Py_ssize_t m = a.shape[0], k = a.shape[1], n = w.shape[0]
    if w.shape[1] != k or c.shape[0] != m or c.shape[1] != n or reps < 1 or m * n * k == 0:
        raise ValueError("panel_product: A (m, k), W (n, k), C (m, n), all non-empty, "
                         "reps >= 1")
    wp_arr = np.empty(panel_size(n, k), dtype=np.float32)
    cdef float[::1] wp = wp_arr
    cdef int r
    cdef bint panels = _use_panels
    if panels:
        pack_panels(&w[0, 0], n, k, k, 1, &wp[0])
    start = time.perf_counter()
    with nogil:
        for r in range(reps):
            if panels:
                panel_gemm(m, n, k, &a[0, 0], k, &wp[0], &c[0, 0], n, accumulate)
            else:
                _times_wt(m, n, k, &a[0, 0], k, &w[0, 0], k, <float> accumulate, &c[0, 0], n)
    return (time.perf_counter() - start) / reps


def panel_product_tn(const float[:, ::1] a, const float[:, ::1] b, float[:, ::1] c,
                     int reps=1):
    """C (m x n) += Aᵀ B over k rows (A: k x m, B: k x n), the shape of BPTT's
    weight gradients, with the selected panel_kernel() (B packed into panels
    first) or BLAS, reps times; returns the seconds per product, packing
    excluded (bench/limits.py, tests)."""
    import time
    cdef Py_ssize_t k = a.shape[0], m = a.shape[1], n = b.shape[1]
    if b.shape[0] != k or c.shape[0] != m or c.shape[1] != n or reps < 1 or m * n * k == 0:
        raise ValueError("panel_product_tn: A (k, m), B (k, n), C (m, n), all non-empty, "
                         "reps >= 1")
    bp_arr = np.empty(panel_size(n, k), dtype=np.float32)
    cdef float[::1] bp = bp_arr
    cdef int r
    cdef bint panels = _use_panels
    if panels:
        pack_panels(&b[0, 0], n, k, 1, n, &bp[0])
    start = time.perf_counter()
    with nogil:
        for r in range(reps):
            if panels:
                panel_gemm_tn(m, n, k, &a[0, 0], m, &bp[0], &c[0, 0], n)
            else:
                gemm(c'T', c'N', <int> m, <int> n, <int> k, <float> 1, &a[0, 0], <int> m,
                     &b[0, 0], <int> n, <float> 1, &c[0, 0], <int> n)
    return (time.perf_counter() - start) / reps


def backward_layer_units(int kind,
                         const floating[:, ::1] w_hh,
                         bint reverse,
                         const Py_ssize_t[::1] lengths,
                         const Py_ssize_t[::1] perm,
                         const Py_ssize_t[::1] n_active,
                         const floating[:, ::1] gates,
                         const floating[:, ::1] h_prev,
                         const floating[:, ::1] c_prev,
                         const floating[:, :, :] dy,
                         const floating[:, ::1] dh_n,
                         const floating[:, ::1] dc_n,
                         floating[:, ::1] dgates,
                         floating[:, ::1] dh0,
                         floating[:, ::1] dc0,
                         int num_threads):
    """BPTT through one direction with its hidden units split across threads.

    What forward_layer_units kept (one block of all B rows): gates (N,
    gate_stride), h_prev, c_prev (N, H); dy: (T, B, H) view of this
    direction's columns (unit stride on its last axis); dh_n, dc_n, dh0, dc0:
    (B, H); dgates: (N, grad_stride). See _unit_backward_worker.
    """
    cdef Py_ssize_t H = w_hh.shape[1], B = lengths.shape[0], N = gates.shape[0]
    # per thread, sized for a team of one: dh, dc (B, H) | stored (B, 4H) | h, c (B, H) |
    # dG (B, 6H) | drh (B, H)
    cdef Py_ssize_t per_thread = B * 15 * H
    cdef Py_ssize_t per_pack = panel_size(H, 3 * H) + panel_size(H, H) + panel_size(H, 4 * H)
    dtype = np.float32 if floating is float else np.float64
    work_arr = _scratch("work", num_threads * per_thread, dtype)
    cdef floating[::1] work = work_arr
    cdef float[::1] pack_space
    cdef float* pack_base = NULL
    if floating is float:
        if _use_panels:
            pack_arr = _scratch("panels", num_threads * per_pack, np.float32)
            pack_space = pack_arr
            pack_base = &pack_space[0]
    cdef Py_ssize_t isz = sizeof(floating)
    cdef bint is_lstm = kind == LSTM
    cdef int tid, nthreads
    cdef fastrnn_spin_barrier bar
    spin_init(&bar, num_threads)
    with nogil, parallel(num_threads=num_threads):
        tid = omp_get_thread_num()
        nthreads = omp_get_num_threads()
        _unit_backward_worker(kind, reverse, H, B, N, &w_hh[0, 0], &lengths[0], &perm[0],
                              &n_active[0], &gates[0, 0], &h_prev[0, 0],
                              &c_prev[0, 0] if is_lstm else NULL,
                              &dy[0, 0, 0], dy.strides[0] // isz, dy.strides[1] // isz,
                              &dh_n[0, 0], &dc_n[0, 0] if is_lstm else NULL, &dgates[0, 0],
                              &dh0[0, 0], &dc0[0, 0] if is_lstm else NULL,
                              &work[0] + tid * per_thread,
                              pack_base + tid * per_pack if pack_base != NULL else NULL,
                              tid, nthreads, &bar)
