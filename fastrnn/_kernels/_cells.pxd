# cython: language_level=3
"""The cell forms: their kinds, their row layouts and their gate passes.

The only file that knows cells by name. A driver (batch split, unit split,
streaming step) runs a cell step as a list of phases it does not need to
understand:

    forward:   for each phase p < forward_phases(kind):
                   the recurrent product forward_product(kind, p)
                   cell_forward(kind, p, ...)       the gate pass after it
    backward:  for each phase p < backward_phases(kind):
                   cell_backward(kind, p, ...)     a gate pass
                   the product backward_product(kind, p)

A Product says which rows of W_hh it reads, from which operand into which
result, and whether it adds. Gate rows are stored in PyTorch's order (RNN
[h], GRU [r; z; n], LSTM [i; f; g; o]) in blocks of ``width`` columns
(width = H, or a thread's U units in the unit split).

Forward gate passes: g holds the pre-activations (without bias) of n rows,
row stride ldg; each pass adds the bias, applies the gates, updates the state
and overwrites g with the activations backward needs. Backward gate passes:
from dh (= dL/dh_t) and the stored activations a, write the gate
pre-activation gradients dg and leave in dh the part of dL/dh_{t-1} that does
not go through W_hh.
"""
from cython cimport floating

from libc.math cimport INFINITY

from fastrnn._kernels._activations cimport (fastrnn_gru_after_rows_f32,
                                           fastrnn_gru_before_gates_f32,
                                           fastrnn_gru_before_update_f32, fastrnn_lstm_rows_f32,
                                           fastrnn_rnn_tanh_rows_f32, relu, sigmoid, tanh_)


cpdef enum CellKind:
    RNN_TANH = 0
    RNN_RELU = 1
    LSTM = 2
    GRU_RESET_AFTER = 3
    GRU_RESET_BEFORE = 4


cdef inline Py_ssize_t gates(int kind) noexcept nogil:
    """Gate blocks of W_ih and W_hh (rows = gates * H)."""
    if kind == LSTM:
        return 4
    if kind == GRU_RESET_AFTER or kind == GRU_RESET_BEFORE:
        return 3
    return 1


cdef inline Py_ssize_t gate_blocks(int kind) noexcept nogil:
    """Blocks of one stored activation row: the gates, plus W_hn h + b_hn for
    the reset-after GRU (r multiplies it, so backward needs it apart)."""
    return 4 if kind == GRU_RESET_AFTER else gates(kind)


cdef inline Py_ssize_t grad_blocks(int kind) noexcept nogil:
    """Blocks of one gate-gradient row: the gates, or for the reset-after GRU
    [dGx (3) | dGh (3)] (its input and recurrent n gradients differ)."""
    return 6 if kind == GRU_RESET_AFTER else gates(kind)


cdef inline Py_ssize_t recurrent_grad_block(int kind) noexcept nogil:
    """First block of dGh, the recurrent part of a gate-gradient row."""
    return 3 if kind == GRU_RESET_AFTER else 0


cdef inline Py_ssize_t shared_grad_rows(int kind, Py_ssize_t H) noexcept nogil:
    """Rows of W (gate units, from the first) whose recurrent gradients dGh
    hold the values of the input side's dGx: every row where dGh is dGx;
    the reset-after GRU's r and z (its dG_hn is dG_n ⊙ r)."""
    return 2 * H if kind == GRU_RESET_AFTER else gates(kind) * H


cdef inline bint has_cell_state(int kind) noexcept nogil:
    """Whether the cell carries c beside h (the LSTM)."""
    return kind == LSTM


cdef inline bint uses_reset_rows(int kind) noexcept nogil:
    """Whether W_hn multiplies r ⊙ h_{t-1} (the reset-before GRU): its n rows
    are packed and multiplied apart, and dW_hn is dG_nᵀ (r ⊙ H_prev)."""
    return kind == GRU_RESET_BEFORE


cdef inline bint uses_hn_bias(int kind) noexcept nogil:
    """Whether b_hn stays apart from b_in (the reset-after GRU: r multiplies it)."""
    return kind == GRU_RESET_AFTER


# ---------------------------------------------------------------------------
# the variants of ONNX's operators that the gate passes compute
# ---------------------------------------------------------------------------

ctypedef struct Variant:
    # A layer's cell options beyond its kind (fastrnn._general documents the
    # equations); the default cell is clip = inf, bounds ±inf, no coupling,
    # no peepholes (plain_variant), so every pass runs them with no branch.
    double clip              # each gate pre-activation clipped to [-clip, clip]
    double sig_lo, sig_hi    # σ(-clip), σ(clip): a stored σ at a bound was clipped
    double act_lo, act_hi    # the same for the other function (tanh; the RNN's relu)
    bint coupled             # the LSTM's input_forget: f = 1 - i
    const void* peep         # the LSTM's peepholes (3H,) [p_i; p_f; p_o], or NULL
    Py_ssize_t peep_offset   # the pass's first unit within each block (the unit split's u0)
    Py_ssize_t peep_stride   # H: from p_i to p_f to p_o


cdef inline Variant plain_variant() noexcept nogil:
    cdef Variant v
    v.clip = v.sig_hi = v.act_hi = INFINITY
    v.sig_lo = v.act_lo = -INFINITY
    v.coupled = False
    v.peep = NULL
    v.peep_offset = 0
    v.peep_stride = 0
    return v


cdef inline Variant make_variant(int kind, floating clip, bint coupled, const floating* peep,
                                 Py_ssize_t H) noexcept nogil:
    """A layer's variant; clip <= 0 or inf: none. The bounds are the stored
    activations of a clipped pre-activation, computed with this build's σ and
    tanh at the layer's precision, so backward recognises them exactly (a
    pre-activation just inside the bound whose activation rounds to the same
    value, where the derivative is below the rounding, is taken as clipped)."""
    cdef Variant v = plain_variant()
    v.coupled = coupled
    v.peep = peep
    v.peep_stride = H
    if clip > 0 and clip < INFINITY:
        v.clip = clip
        v.sig_lo = sigmoid(-clip)
        v.sig_hi = sigmoid(clip)
        if kind == RNN_RELU:
            v.act_lo = relu(-clip)
            v.act_hi = relu(clip)
        else:
            v.act_lo = tanh_(-clip)
            v.act_hi = tanh_(clip)
    return v


ctypedef struct Plain:
    # the tag of a pass that does not clip (the default cell)
    char unused

ctypedef struct Clipping:
    # the tag of a pass that clips its pre-activations
    char unused

ctypedef fused clip_mode:
    # the passes take one of these: each is compiled with and without
    # clipping, so the default cell's loops are exactly the unclipped ones
    # (a run-time flag measured 1.05-1.07x slower on GRU/RNN calls)
    Plain
    Clipping


cdef inline floating _clip(floating x, floating c, clip_mode mode) noexcept nogil:
    """x within [-c, c] (Clipping; NaN stays NaN), else x."""
    if clip_mode is Clipping:
        if x > c:
            return c
        if x < -c:
            return -c
    return x


cdef inline floating _kept(floating d, floating s, double lo, double hi,
                           clip_mode mode) noexcept nogil:
    """The gate gradient d, or 0 where clipping held the stored activation s
    at a bound (no gradient through the clip)."""
    if clip_mode is Clipping:
        if s <= <floating> lo or s >= <floating> hi:
            return 0
    return d


# ---------------------------------------------------------------------------
# the recurrent products of a step
# ---------------------------------------------------------------------------

ctypedef struct Product:
    # forward:  C[:, columns of blocks q0 .. q0+nq] (=, or += with accumulate)
    #           source @ W_hh[rows of blocks q0 .. q0+nq]ᵀ
    # backward: target (=, or +=) dG[:, blocks src0 .. src0+nq] @ W_hh[rows of blocks q0 ..]
    Py_ssize_t q0, nq
    Py_ssize_t src0          # backward: first block of dG read
    bint accumulate
    bint reset_rows          # forward: source is r ⊙ h_{t-1} (else h_{t-1}); backward:
                             # target is dL/d(r ⊙ h_{t-1}) (else dL/dh_{t-1})
    bint own_target          # forward: into the separate block gh (stride nq * width)
    bint n_panels            # on the packed panels of the n rows (the reset-before GRU)


cdef inline int forward_phases(int kind) noexcept nogil:
    return 2 if kind == GRU_RESET_BEFORE else 1


cdef inline Product forward_product(int kind, int phase) noexcept nogil:
    cdef Product p
    p.src0 = 0
    p.reset_rows = False
    p.own_target = False
    p.n_panels = False
    p.accumulate = True
    p.q0 = 0
    p.nq = gates(kind)
    if kind == GRU_RESET_AFTER:
        # Gh = h_{t-1} W_hhᵀ, kept apart: its n part is gated by r
        p.accumulate = False
        p.own_target = True
    elif kind == GRU_RESET_BEFORE:
        if phase == 0:
            p.nq = 2         # [G_r, G_z] += h_{t-1} [W_hr; W_hz]ᵀ
        else:
            p.q0 = 2         # G_n += (r ⊙ h_{t-1}) W_hnᵀ
            p.nq = 1
            p.reset_rows = True
            p.n_panels = True
    # LSTM, RNN: G_t = x_t W_ihᵀ + h_{t-1} W_hhᵀ (accumulated into Gx)
    return p


cdef inline int backward_phases(int kind) noexcept nogil:
    return 2 if kind == GRU_RESET_BEFORE else 1


cdef inline Product backward_product(int kind, int phase) noexcept nogil:
    cdef Product p
    p.own_target = False
    p.reset_rows = False
    p.n_panels = False
    p.accumulate = False
    p.q0 = 0
    p.src0 = 0
    p.nq = gates(kind)
    if kind == GRU_RESET_AFTER:
        # dh_{t-1} = dh_t ⊙ z' + [da_r, da_z, da_n ⊙ r] @ W_hh
        p.src0 = 3
        p.accumulate = True
    elif kind == GRU_RESET_BEFORE:
        if phase == 0:
            # dL/d(r ⊙ h_{t-1}) = dG_n @ W_hn
            p.src0 = 2
            p.q0 = 2
            p.nq = 1
            p.reset_rows = True
            p.n_panels = True
        else:
            # dh_{t-1} += [dG_r, dG_z] @ [W_hr; W_hz]
            p.nq = 2
            p.accumulate = True
    # LSTM, RNN: dh_{t-1} = dG_t @ W_hh
    return p


cdef inline Py_ssize_t backward_written(int kind, int phase, Py_ssize_t* first) noexcept nogil:
    """The blocks of dG that backward gate pass ``phase`` writes: [first, return)."""
    if kind == GRU_RESET_BEFORE:
        first[0] = 1 if phase == 0 else 0      # z, n first; r once dL/d(r ⊙ h) is known
        return 3 if phase == 0 else 1
    first[0] = 0
    return grad_blocks(kind)


# ---------------------------------------------------------------------------
# the one dispatch: forward and backward gate passes of every form
# ---------------------------------------------------------------------------

cdef inline void cell_forward(int kind, int phase, Py_ssize_t n, Py_ssize_t width,
                              floating* g, Py_ssize_t ldg, const floating* gh,
                              const floating* b, const floating* b_hn, floating* h,
                              floating* c, floating* rh, const Variant* v) noexcept nogil:
    """The gate pass after forward product ``phase`` for n rows of ``width``
    units: g (row stride ldg) the gate block, gh the separate product (the
    reset-after GRU), b, b_hn the kernel biases, h and c (n x width, updated),
    rh (n x width) receives r ⊙ h_{t-1} (the reset-before GRU's phase 0);
    v the layer's variant (clip; the LSTM's coupling and peepholes)."""
    cdef Plain plain
    cdef Clipping clipping
    plain.unused = clipping.unused = 0
    cdef floating cl = <floating> v.clip
    if kind == LSTM:
        # the default LSTM keeps passes of its own (its backward measured 1.1x
        # slower over a whole training call with the clip masks folded in)
        if v.coupled or v.peep != NULL or v.clip < INFINITY:
            _lstm_rows_variant(n, width, g, ldg, b, h, c, v, clipping)
        elif floating is float:
            # the same bits as lstm_rows_scalar, on vectors (_gate_math.h)
            fastrnn_lstm_rows_f32(n, width, g, ldg, b, h, c)
        else:
            lstm_rows_scalar(n, width, g, ldg, b, h, c)
    elif v.clip < INFINITY:
        _gate_pass(kind, phase, n, width, g, ldg, gh, b, b_hn, h, rh, cl, clipping)
    elif floating is float and kind != RNN_RELU:
        # the same bits as _gate_pass's loops, on vectors (_gate_math.h)
        if kind == RNN_TANH:
            fastrnn_rnn_tanh_rows_f32(n, width, g, ldg, b, h)
        elif kind == GRU_RESET_AFTER:
            fastrnn_gru_after_rows_f32(n, width, g, gh, b, b_hn, h)
        elif phase == 0:
            fastrnn_gru_before_gates_f32(n, width, g, b, h, rh)
        else:
            fastrnn_gru_before_update_f32(n, width, g, b, h)
    else:
        _gate_pass(kind, phase, n, width, g, ldg, gh, b, b_hn, h, rh, cl, plain)


cdef inline void _gate_pass(int kind, int phase, Py_ssize_t n, Py_ssize_t width, floating* g,
                            Py_ssize_t ldg, const floating* gh, const floating* b,
                            const floating* b_hn, floating* h, floating* rh, floating cl,
                            clip_mode mode) noexcept nogil:
    """cell_forward of the RNN and the GRU, with or without clipping (float64,
    clipping and the relu RNN; the plain float32 cells run their vector
    passes, _gate_math.h, whose bits the tests compare with these loops')."""
    if kind == RNN_TANH or kind == RNN_RELU:
        _rnn_rows(kind == RNN_RELU, n, width, g, ldg, b, h, cl, mode)
    elif kind == GRU_RESET_AFTER:
        _gru_after_rows(n, width, g, gh, b, b_hn, h, cl, mode)
    elif phase == 0:
        _gru_before_gates(n, width, g, b, h, rh, cl, mode)
    else:
        _gru_before_update(n, width, g, b, h, cl, mode)


cdef inline void cell_backward(int kind, int phase, Py_ssize_t n, Py_ssize_t width,
                               const floating* a, const floating* hp, const floating* cp,
                               const floating* drh, floating* dg, floating* dh,
                               floating* dc, const Variant* v) noexcept nogil:
    """Backward gate pass ``phase`` for n rows of ``width`` units: a the
    stored activations, hp, cp h_{t-1} and c_{t-1}, drh = dL/d(r ⊙ h_{t-1})
    (the reset-before GRU's phase 1), dg the gate gradients, dh and dc
    (updated in place); v the variant forward ran with."""
    cdef Plain plain
    cdef Clipping clipping
    plain.unused = clipping.unused = 0
    if kind == LSTM:
        if v.coupled or v.peep != NULL or v.clip < INFINITY:
            _lstm_rows_back_variant(n, width, a, cp, dg, dh, dc, v, clipping)
        else:
            _lstm_rows_back(n, width, a, cp, dg, dh, dc)
    elif v.clip < INFINITY:
        _gate_pass_back(kind, phase, n, width, a, hp, drh, dg, dh, v, clipping)
    else:
        _gate_pass_back(kind, phase, n, width, a, hp, drh, dg, dh, v, plain)


cdef inline void _gate_pass_back(int kind, int phase, Py_ssize_t n, Py_ssize_t width,
                                 const floating* a, const floating* hp, const floating* drh,
                                 floating* dg, floating* dh, const Variant* v,
                                 clip_mode mode) noexcept nogil:
    """cell_backward of the RNN and the GRU, with or without clipping."""
    if kind == RNN_TANH or kind == RNN_RELU:
        _rnn_rows_back(kind == RNN_RELU, n, width, a, dg, dh, v, mode)
    elif kind == GRU_RESET_AFTER:
        _gru_after_rows_back(n, width, a, hp, dg, dh, v, mode)
    elif phase == 0:
        _gru_before_rows_back1(n, width, a, hp, dg, dh, v, mode)
    else:
        _gru_before_rows_back2(n, width, a, hp, drh, dg, dh, v, mode)


cdef inline void reset_input(Py_ssize_t H, const floating* a, const floating* hp,
                             floating* out) noexcept nogil:
    """out = r ⊙ h_{t-1} of one row from its stored activations a (the
    reset-before GRU: the input of W_hn, for its weight gradient)."""
    cdef Py_ssize_t i
    for i in range(H):
        out[i] = a[i] * hp[i]


cdef inline void combine_biases(int kind, Py_ssize_t G, Py_ssize_t H, const floating* b_ih,
                                const floating* b_hh, floating* b_x,
                                floating* b_hn) noexcept nogil:
    """One direction's kernel biases: b_x (G) = b_ih + b_hh, except the n rows
    of the reset-after GRU (b_in only), and b_hn (H), that GRU's b_hn (else 0)."""
    cdef Py_ssize_t i
    for i in range(G):
        b_x[i] = b_ih[i] + b_hh[i]
    for i in range(H):
        b_hn[i] = 0
    if uses_hn_bias(kind):
        for i in range(H):
            b_x[2 * H + i] = b_ih[2 * H + i]
            b_hn[i] = b_hh[2 * H + i]


# ---------------------------------------------------------------------------
# forward gate passes
# ---------------------------------------------------------------------------

cdef inline void _rnn_rows(bint use_relu, Py_ssize_t n, Py_ssize_t H, floating* g,
                           Py_ssize_t ldg, const floating* b, floating* h,
                           floating cl, clip_mode mode) noexcept nogil:
    """h_t = f(clip(g + b)), f = tanh or relu; g := h_t."""
    cdef Py_ssize_t j, k
    cdef floating v
    for j in range(n):
        if use_relu:
            for k in range(H):
                v = relu(_clip(g[j * ldg + k] + b[k], cl, mode))
                g[j * ldg + k] = v
                h[j * H + k] = v
        else:
            for k in range(H):
                v = tanh_(_clip(g[j * ldg + k] + b[k], cl, mode))
                g[j * ldg + k] = v
                h[j * H + k] = v


cdef inline void lstm_rows_scalar(Py_ssize_t n, Py_ssize_t H, floating* g, Py_ssize_t ldg,
                                  const floating* b, floating* h,
                                  floating* c) noexcept nogil:
    """LSTM, rows [i; f; g; o]: c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g),
    h_t = σ(o) ⊙ tanh(c_t); g := [σ(i), σ(f), tanh(g), σ(o)]. The float64
    pass; float32 runs fastrnn_lstm_rows_f32, whose bits the tests compare
    with this one's.

    Row by row (4H values, in L1), one loop per activation and then one for
    c and h: each loop keeps its few constants in registers (one loop of five
    activations left AVX2's 16 registers short, and its constants were
    reloaded from the stack)."""
    cdef Py_ssize_t j, k
    cdef floating* gj
    cdef floating ct
    for j in range(n):
        gj = g + j * ldg
        for k in range(2 * H):                     # σ(i), σ(f)
            gj[k] = sigmoid(gj[k] + b[k])
        for k in range(2 * H, 3 * H):              # tanh(g)
            gj[k] = tanh_(gj[k] + b[k])
        for k in range(3 * H, 4 * H):              # σ(o)
            gj[k] = sigmoid(gj[k] + b[k])
        for k in range(H):
            ct = gj[H + k] * c[j * H + k] + gj[k] * gj[2 * H + k]
            c[j * H + k] = ct
            h[j * H + k] = gj[3 * H + k] * tanh_(ct)


cdef inline void _lstm_rows_variant(Py_ssize_t n, Py_ssize_t H, floating* g, Py_ssize_t ldg,
                                    const floating* b, floating* h, floating* c,
                                    const Variant* v, clip_mode mode) noexcept nogil:
    """lstm_rows_scalar with clipping, ONNX's peepholes (i, f see c_{t-1}; o sees
    c_t) and coupled gates (f = 1 - i); the same stored activations."""
    cdef Py_ssize_t j, k
    cdef floating* gj
    cdef floating ig, fg, cg, og, cp, ct, a_i, a_f, a_o
    cdef floating cl = <floating> v.clip
    cdef const floating* pi = NULL
    cdef const floating* pf = NULL
    cdef const floating* po = NULL
    if v.peep != NULL:
        pi = <const floating*> v.peep + v.peep_offset
        pf = pi + v.peep_stride
        po = pf + v.peep_stride
    for j in range(n):
        gj = g + j * ldg
        for k in range(H):
            cp = c[j * H + k]
            a_i = gj[k] + b[k]
            a_f = gj[H + k] + b[H + k]
            a_o = gj[3 * H + k] + b[3 * H + k]
            if pi != NULL:
                a_i = a_i + pi[k] * cp
                a_f = a_f + pf[k] * cp
            ig = sigmoid(_clip(a_i, cl, mode))
            fg = 1 - ig if v.coupled else sigmoid(_clip(a_f, cl, mode))
            cg = tanh_(_clip(gj[2 * H + k] + b[2 * H + k], cl, mode))
            ct = fg * cp + ig * cg
            if po != NULL:
                a_o = a_o + po[k] * ct
            og = sigmoid(_clip(a_o, cl, mode))
            c[j * H + k] = ct
            h[j * H + k] = og * tanh_(ct)
            gj[k] = ig
            gj[H + k] = fg
            gj[2 * H + k] = cg
            gj[3 * H + k] = og


cdef inline void _gru_after_rows(Py_ssize_t n, Py_ssize_t H, floating* g,
                                 const floating* gh, const floating* b,
                                 const floating* b_hn, floating* h,
                                 floating cl, clip_mode mode) noexcept nogil:
    """GRU, reset after the product (PyTorch); g rows [r; z; n; -] (stride 4H).

    g = x_t W_ihᵀ, gh = h_{t-1} W_hhᵀ (stride 3H), b = b_ih + [b_hr; b_hz; 0]:
    r = σ(g_r + gh_r + b_r), z' = σ(g_z + gh_z + b_z),
    n = tanh(g_n + b_in + r ⊙ (gh_n + b_hn)),  h_t = n + z' ⊙ (h_{t-1} - n);
    g := [r, z', n, gh_n + b_hn].
    """
    cdef Py_ssize_t j, k
    cdef floating* gj
    cdef const floating* hj
    cdef floating nn, hn
    for j in range(n):
        gj = g + j * 4 * H
        hj = gh + j * 3 * H
        # row by row, σ(r), σ(z) in one loop, then n and h: one loop of the
        # three activations left AVX2's registers short (as lstm_rows_scalar)
        for k in range(2 * H):
            gj[k] = sigmoid(_clip(gj[k] + hj[k] + b[k], cl, mode))
        for k in range(H):
            hn = hj[2 * H + k] + b_hn[k]
            nn = tanh_(_clip(gj[2 * H + k] + b[2 * H + k] + gj[k] * hn, cl, mode))
            h[j * H + k] = nn + gj[H + k] * (h[j * H + k] - nn)
            gj[2 * H + k] = nn
            gj[3 * H + k] = hn


cdef inline void _gru_before_gates(Py_ssize_t n, Py_ssize_t H, floating* g,
                                   const floating* b, const floating* h,
                                   floating* rh, floating cl, clip_mode mode) noexcept nogil:
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
            r = sigmoid(_clip(gj[k] + b[k], cl, mode))
            gj[k] = r
            rh[j * H + k] = r * h[j * H + k]
            gj[H + k] = sigmoid(_clip(gj[H + k] + b[H + k], cl, mode))


cdef inline void _gru_before_update(Py_ssize_t n, Py_ssize_t H, floating* g,
                                    const floating* b, floating* h,
                                    floating cl, clip_mode mode) noexcept nogil:
    """Second half: g_n holds x_t W_inᵀ + (r ⊙ h_{t-1}) W_hnᵀ;
    n = tanh(g_n + b_in + b_hn), h_t = n + z' ⊙ (h_{t-1} - n); g_n := n."""
    cdef Py_ssize_t j, k
    cdef floating* gj
    cdef floating nn
    for j in range(n):
        gj = g + j * 3 * H
        for k in range(H):
            nn = tanh_(_clip(gj[2 * H + k] + b[2 * H + k], cl, mode))
            gj[2 * H + k] = nn
            h[j * H + k] = nn + gj[H + k] * (h[j * H + k] - nn)


# ---------------------------------------------------------------------------
# backward gate passes
# ---------------------------------------------------------------------------

cdef inline void _rnn_rows_back(bint use_relu, Py_ssize_t n, Py_ssize_t H,
                                const floating* a, floating* dg,
                                const floating* dh, const Variant* var,
                                clip_mode mode) noexcept nogil:
    """a = h_t; dG = dh ⊙ f'(a): tanh' = 1 - h², relu' = [h > 0]; 0 where clipped."""
    cdef Py_ssize_t j, k
    cdef floating v
    for j in range(n):
        for k in range(H):
            v = a[j * H + k]
            if use_relu:
                dg[j * H + k] = _kept(dh[j * H + k], v, var.act_lo, var.act_hi, mode) \
                    if v > 0 else 0
            else:
                dg[j * H + k] = _kept(dh[j * H + k] * (1 - v * v), v, var.act_lo, var.act_hi,
                                      mode)


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


cdef inline void _lstm_rows_back_variant(Py_ssize_t n, Py_ssize_t H, const floating* a,
                                         const floating* cp, floating* dg, const floating* dh,
                                         floating* dc, const Variant* v,
                                         clip_mode mode) noexcept nogil:
    """_lstm_rows_back with clipping, peepholes and coupled gates: o's
    gradient reaches c_t through p_o, i's and f's reach c_{t-1} through p_i,
    p_f; with f = 1 - i, i takes f's gradient (negated) and f's own is 0."""
    cdef Py_ssize_t j, k
    cdef const floating* aj
    cdef floating* dj
    cdef floating ig, fg, cg, og, tc, c_p, d_h, d_c, da_i, da_f, da_o
    cdef const floating* pi = NULL
    cdef const floating* pf = NULL
    cdef const floating* po = NULL
    if v.peep != NULL:
        pi = <const floating*> v.peep + v.peep_offset
        pf = pi + v.peep_stride
        po = pf + v.peep_stride
    for j in range(n):
        aj = a + j * 4 * H
        dj = dg + j * 4 * H
        for k in range(H):
            ig = aj[k]
            fg = aj[H + k]
            cg = aj[2 * H + k]
            og = aj[3 * H + k]
            c_p = cp[j * H + k]
            tc = tanh_(fg * c_p + ig * cg)
            d_h = dh[j * H + k]
            da_o = _kept(d_h * tc * og * (1 - og), og, v.sig_lo, v.sig_hi, mode)
            d_c = dc[j * H + k] + d_h * og * (1 - tc * tc)
            if po != NULL:
                d_c = d_c + da_o * po[k]
            if v.coupled:
                da_i = _kept(d_c * (cg - c_p) * ig * (1 - ig), ig, v.sig_lo, v.sig_hi, mode)
                da_f = 0
            else:
                da_i = _kept(d_c * cg * ig * (1 - ig), ig, v.sig_lo, v.sig_hi, mode)
                da_f = _kept(d_c * c_p * fg * (1 - fg), fg, v.sig_lo, v.sig_hi, mode)
            dj[k] = da_i
            dj[H + k] = da_f
            dj[2 * H + k] = _kept(d_c * ig * (1 - cg * cg), cg, v.act_lo, v.act_hi, mode)
            dj[3 * H + k] = da_o
            d_c = d_c * fg
            if pi != NULL:
                d_c = d_c + da_i * pi[k] + da_f * pf[k]
            dc[j * H + k] = d_c


cdef inline void _gru_after_rows_back(Py_ssize_t n, Py_ssize_t H, const floating* a,
                                      const floating* hp, floating* dg,
                                      floating* dh, const Variant* v,
                                      clip_mode mode) noexcept nogil:
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
            da_n = _kept(d_h * (1 - z) * (1 - nn * nn), nn, v.act_lo, v.act_hi, mode)
            da_z = _kept(d_h * (hp[j * H + k] - nn) * z * (1 - z), z, v.sig_lo, v.sig_hi, mode)
            da_r = _kept(da_n * hn * r * (1 - r), r, v.sig_lo, v.sig_hi, mode)
            dj[k] = da_r
            dj[H + k] = da_z
            dj[2 * H + k] = da_n
            dj[3 * H + k] = da_r
            dj[4 * H + k] = da_z
            dj[5 * H + k] = da_n * r
            dh[j * H + k] = d_h * z


cdef inline void _gru_before_rows_back1(Py_ssize_t n, Py_ssize_t H, const floating* a,
                                        const floating* hp, floating* dg,
                                        floating* dh, const Variant* v,
                                        clip_mode mode) noexcept nogil:
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
            dj[H + k] = _kept(d_h * (hp[j * H + k] - nn) * z * (1 - z), z, v.sig_lo, v.sig_hi,
                              mode)
            dj[2 * H + k] = _kept(d_h * (1 - z) * (1 - nn * nn), nn, v.act_lo, v.act_hi, mode)
            dh[j * H + k] = d_h * z


cdef inline void _gru_before_rows_back2(Py_ssize_t n, Py_ssize_t H, const floating* a,
                                        const floating* hp, const floating* drh,
                                        floating* dg, floating* dh,
                                        const Variant* v, clip_mode mode) noexcept nogil:
    """Second half, drh = dG_n @ W_hn = dL/d(r ⊙ h_{t-1}):
    dG_r = drh ⊙ h_{t-1} ⊙ r(1-r); dh += drh ⊙ r."""
    cdef Py_ssize_t j, k
    cdef floating r
    for j in range(n):
        for k in range(H):
            r = a[j * 3 * H + k]
            dg[j * 3 * H + k] = _kept(drh[j * H + k] * hp[j * H + k] * r * (1 - r), r,
                                      v.sig_lo, v.sig_hi, mode)
            dh[j * H + k] += drh[j * H + k] * r
