# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Forward (inference) kernels for one recurrent layer: RNN, GRU, LSTM.

One call runs one layer in one or two directions over a whole batch. The work
is split into tasks (direction x block of batch rows); each task is independent
(its own rows, its own state, its own output columns) so the tasks run in one
OpenMP ``prange`` with no barrier, the GIL released.

Per task, for each chunk of steps (bounded, so memory does not grow with T):
  1. gather the chunk's active input rows into a packed block and project them
     with one GEMM:  Gx = X_chunk @ W_ihᵀ;
  2. for each step: one recurrent GEMM (G += h_{t-1} @ W_hhᵀ) followed at once
     by the fused gate pass that updates h (and c) and writes the output row.

Rows are sorted by length (longest first) by the caller, so the rows still
active at step s are a prefix of the batch and the cost follows sum(lengths).
The reverse direction reads row b's step s at time lengths[b] - 1 - s.

Weights use PyTorch's layout: gates stacked along rows, RNN [h], GRU [r; z; n],
LSTM [i; f; g; o]. Nothing here validates: fastrnn.layers checks every shape.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memcpy, memset

import numpy as np

from fastrnn._blas cimport gemm_abt
from fastrnn._kernels._activations cimport sigmoid, tanh_, relu

# cell kinds (kept in sync with fastrnn.layers._KIND)
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


cdef inline void _rnn_rows(bint use_relu, Py_ssize_t n, Py_ssize_t H,
                           const floating* g, const floating* b,
                           floating* h) noexcept nogil:
    """h_t = f(g + b) for n rows; g (n, H) = x_t W_ihᵀ + h_{t-1} W_hhᵀ."""
    cdef Py_ssize_t j, k
    for j in range(n):
        if use_relu:
            for k in range(H):
                h[j * H + k] = relu(g[j * H + k] + b[k])
        else:
            for k in range(H):
                h[j * H + k] = tanh_(g[j * H + k] + b[k])


cdef inline void _lstm_rows(Py_ssize_t n, Py_ssize_t H, const floating* g,
                            const floating* b, floating* h,
                            floating* c) noexcept nogil:
    """LSTM update for n rows; g (n, 4H) = x_t W_ihᵀ + h_{t-1} W_hhᵀ, rows [i; f; g; o].

    c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g);  h_t = σ(o) ⊙ tanh(c_t)
    """
    cdef Py_ssize_t j, k
    cdef const floating* gj
    cdef floating ig, fg, cg, og, ct
    for j in range(n):
        gj = g + j * 4 * H
        for k in range(H):
            ig = sigmoid(gj[k] + b[k])
            fg = sigmoid(gj[H + k] + b[H + k])
            cg = tanh_(gj[2 * H + k] + b[2 * H + k])
            og = sigmoid(gj[3 * H + k] + b[3 * H + k])
            ct = fg * c[j * H + k] + ig * cg
            c[j * H + k] = ct
            h[j * H + k] = og * tanh_(ct)


cdef inline void _gru_after_rows(Py_ssize_t n, Py_ssize_t H, const floating* gx,
                                 const floating* gh, const floating* b,
                                 const floating* b_hn, floating* h) noexcept nogil:
    """GRU, reset after the product (PyTorch), n rows; rows [r; z; n].

    gx = x_t W_ihᵀ, gh = h_{t-1} W_hhᵀ (both (n, 3H)), b = b_ih + [b_hr; b_hz; 0]:
    r = σ(gx_r + gh_r + b_r), z' = σ(gx_z + gh_z + b_z),
    n = tanh(gx_n + b_in + r ⊙ (gh_n + b_hn)),  h_t = n + z' ⊙ (h_{t-1} - n)
    """
    cdef Py_ssize_t j, k
    cdef const floating* xj
    cdef const floating* hj
    cdef floating r, z, nn
    for j in range(n):
        xj = gx + j * 3 * H
        hj = gh + j * 3 * H
        for k in range(H):
            r = sigmoid(xj[k] + hj[k] + b[k])
            z = sigmoid(xj[H + k] + hj[H + k] + b[H + k])
            nn = tanh_(xj[2 * H + k] + b[2 * H + k] + r * (hj[2 * H + k] + b_hn[k]))
            h[j * H + k] = nn + z * (h[j * H + k] - nn)


cdef inline void _gru_before_gates(Py_ssize_t n, Py_ssize_t H, floating* g,
                                   const floating* b, const floating* h,
                                   floating* rh) noexcept nogil:
    """GRU, reset before the product, first half: r, z' and r ⊙ h_{t-1}.

    g (n, 3H) holds x_t W_ihᵀ (+ h_{t-1} W_hhᵀ in its r and z columns). Writes
    z' = σ(g_z + b_z) over g's z columns and rh = σ(g_r + b_r) ⊙ h_{t-1}.
    """
    cdef Py_ssize_t j, k
    cdef floating* gj
    for j in range(n):
        gj = g + j * 3 * H
        for k in range(H):
            rh[j * H + k] = sigmoid(gj[k] + b[k]) * h[j * H + k]
            gj[H + k] = sigmoid(gj[H + k] + b[H + k])


cdef inline void _gru_before_update(Py_ssize_t n, Py_ssize_t H, const floating* g,
                                    const floating* b, floating* h) noexcept nogil:
    """Second half: n = tanh(g_n + b_in + b_hn), h_t = n + z' ⊙ (h_{t-1} - n).

    g's n columns hold x_t W_inᵀ + (r ⊙ h_{t-1}) W_hnᵀ, its z columns hold z'.
    """
    cdef Py_ssize_t j, k
    cdef const floating* gj
    cdef floating nn
    for j in range(n):
        gj = g + j * 3 * H
        for k in range(H):
            nn = tanh_(gj[2 * H + k] + b[2 * H + k])
            h[j * H + k] = nn + gj[H + k] * (h[j * H + k] - nn)


cdef inline Py_ssize_t _active(const Py_ssize_t* n_active, Py_ssize_t s,
                               Py_ssize_t r0, Py_ssize_t nr) noexcept nogil:
    """Rows of the block [r0, r0 + nr) still running at step s (a prefix)."""
    cdef Py_ssize_t n = n_active[s] - r0
    if n < 0:
        return 0
    return n if n < nr else nr


cdef void _run_task(int kind, bint reverse,
                    const floating* x, Py_ssize_t xs0, Py_ssize_t xs1, Py_ssize_t xs2,
                    Py_ssize_t I, Py_ssize_t H,
                    const floating* w_ih, const floating* w_hh,
                    const floating* b_x, const floating* b_hn,
                    const Py_ssize_t* lengths, const Py_ssize_t* perm,
                    const Py_ssize_t* n_active, Py_ssize_t r0, Py_ssize_t r1,
                    const floating* h0, const floating* c0,
                    floating* y, Py_ssize_t ys0, Py_ssize_t ys1,
                    floating* h_n, floating* c_n, Py_ssize_t step_chunk,
                    floating* xp, floating* gx, floating* gh, floating* h,
                    floating* c, floating* rh) noexcept nogil:
    """Run rows [r0, r1) (sorted order) of one direction through every step.

    x: input, element strides (xs0, xs1, xs2) over (T, B, I); y: output at this
    direction's first column, element strides (ys0, ys1) over (T, B), unit
    stride over H. h0/c0/h_n/c_n: (B, H) in the caller's row order (perm maps
    sorted row -> caller row). Workspace: xp (step_chunk*nr, I), gx
    (step_chunk*nr, G), gh (nr, G), h, c, rh (nr, H).
    """
    cdef Py_ssize_t G = _gates(kind) * H
    cdef Py_ssize_t nr = r1 - r0
    cdef Py_ssize_t n_steps = lengths[r0]     # longest row of the block
    cdef Py_ssize_t s0, s1, s, j, i, n, off, t, b
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
                t = lengths[r0 + j] - 1 - s if reverse else s
                src = x + t * xs0 + perm[r0 + j] * xs1
                dst = xp + (off + j) * I
                if xs2 == 1:
                    memcpy(dst, src, I * sizeof(floating))
                else:
                    for i in range(I):
                        dst[i] = src[i * xs2]
            off += n
        # Gx = X_packed @ W_ihᵀ   (off x G)
        gemm_abt(<int> off, <int> G, <int> I, xp, <int> I, w_ih, <int> I,
                 <floating> 0, gx, <int> G)

        off = 0
        for s in range(s0, s1):
            n = _active(n_active, s, r0, nr)
            gblk = gx + off * G
            if kind == LSTM or kind == RNN_TANH or kind == RNN_RELU:
                # G_t = x_t W_ihᵀ + h_{t-1} W_hhᵀ   (accumulated into Gx)
                gemm_abt(<int> n, <int> G, <int> H, h, <int> H, w_hh, <int> H,
                         <floating> 1, gblk, <int> G)
                if kind == LSTM:
                    _lstm_rows(n, H, gblk, b_x, h, c)
                else:
                    _rnn_rows(kind == RNN_RELU, n, H, gblk, b_x, h)
            elif kind == GRU_RESET_AFTER:
                # Gh = h_{t-1} W_hhᵀ   (kept apart: its n part is gated by r)
                gemm_abt(<int> n, <int> G, <int> H, h, <int> H, w_hh, <int> H,
                         <floating> 0, gh, <int> G)
                _gru_after_rows(n, H, gblk, gh, b_x, b_hn, h)
            else:
                # [G_r, G_z] += h_{t-1} [W_hr; W_hz]ᵀ
                gemm_abt(<int> n, <int> (2 * H), <int> H, h, <int> H, w_hh, <int> H,
                         <floating> 1, gblk, <int> G)
                _gru_before_gates(n, H, gblk, b_x, h, rh)
                # G_n += (r ⊙ h_{t-1}) W_hnᵀ
                gemm_abt(<int> n, <int> H, <int> H, rh, <int> H, w_hh + 2 * H * H,
                         <int> H, <floating> 1, gblk + 2 * H, <int> G)
                _gru_before_update(n, H, gblk, b_x, h)
            for j in range(n):
                t = lengths[r0 + j] - 1 - s if reverse else s
                memcpy(y + t * ys0 + perm[r0 + j] * ys1, h + j * H,
                       H * sizeof(floating))
            off += n
        s0 = s1

    for j in range(nr):
        b = perm[r0 + j]
        memcpy(h_n + b * H, h + j * H, H * sizeof(floating))
        if kind == LSTM:
            memcpy(c_n + b * H, c + j * H, H * sizeof(floating))


def forward_layer(int kind,
                  const floating[:, :, :] x,
                  const floating[:, :, ::1] w_ih,
                  const floating[:, :, ::1] w_hh,
                  const floating[:, ::1] b_x,
                  const floating[:, ::1] b_hn,
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
                  int num_threads):
    """Run one layer (D directions) over a batch; fills y, h_n (and c_n).

    x: (T, B, I) any strides; w_ih: (D, G, I); w_hh: (D, G, H); b_x: (D, G)
    (bias added to the input projection); b_hn: (D, H) (GRU reset-after only);
    reverse: (D,) 0/1; lengths: (B,) sorted descending, perm: (B,) sorted row
    -> caller row, n_active: (T,) rows with length > s; bounds: (K+1,) row
    blocks; h0, c0, h_n, c_n: (D, B, H) (c0/c_n used by the LSTM only);
    y: (T, B, D*H) with unit stride on its last axis. All shapes are the
    caller's responsibility (fastrnn.layers checks them).
    """
    cdef Py_ssize_t D = w_ih.shape[0], G = w_ih.shape[1], I = w_ih.shape[2]
    cdef Py_ssize_t H = w_hh.shape[2]
    cdef Py_ssize_t n_blocks = bounds.shape[0] - 1
    cdef Py_ssize_t n_tasks = D * n_blocks
    cdef Py_ssize_t rows_max = 0, k, task, d, r0, r1
    cdef Py_ssize_t isz = sizeof(floating)
    for k in range(n_blocks):
        if bounds[k + 1] - bounds[k] > rows_max:
            rows_max = bounds[k + 1] - bounds[k]
    cdef Py_ssize_t cap = step_chunk * rows_max
    # per-task workspace: xp (cap, I) | gx (cap, G) | gh (rows, G) | h, c, rh (rows, H)
    cdef Py_ssize_t per_task = cap * (I + G) + rows_max * (G + 3 * H)
    work_arr = np.empty(n_tasks * per_task,
                        dtype=np.float32 if floating is float else np.float64)
    cdef floating[::1] work = work_arr
    cdef floating* ws
    cdef bint is_lstm = kind == LSTM

    with nogil:
        for task in prange(n_tasks, num_threads=num_threads, schedule="dynamic"):
            d = task // n_blocks
            r0 = bounds[task % n_blocks]
            r1 = bounds[task % n_blocks + 1]
            ws = &work[0] + task * per_task
            _run_task(kind, reverse[d] != 0,
                      &x[0, 0, 0], x.strides[0] // isz, x.strides[1] // isz,
                      x.strides[2] // isz, I, H,
                      &w_ih[d, 0, 0], &w_hh[d, 0, 0], &b_x[d, 0], &b_hn[d, 0],
                      &lengths[0], &perm[0], &n_active[0], r0, r1,
                      &h0[d, 0, 0], &c0[d, 0, 0] if is_lstm else NULL,
                      &y[0, 0, d * H], y.strides[0] // isz, y.strides[1] // isz,
                      &h_n[d, 0, 0], &c_n[d, 0, 0] if is_lstm else NULL,
                      step_chunk,
                      ws, ws + cap * I, ws + cap * (I + G),
                      ws + cap * (I + G) + rows_max * G,
                      ws + cap * (I + G) + rows_max * (G + H),
                      ws + cap * (I + G) + rows_max * (G + 2 * H))
