# The all-steps products of BPTT: the weight and input gradients of one layer
# as one product each over every packed row (layer_grads). Included by
# _recurrent_impl.pxi.


cdef enum:
    # rows of dGx from which dX = dGx W_ih runs on W_ih packed in panels (float32):
    # the packing moves G x I elements once, the product takes N x G x I FMAs
    _DX_PANEL_ROWS = 64

DX_PANEL_ROWS = _DX_PANEL_ROWS


cdef inline Py_ssize_t _dx_panels(const Dims* d, Py_ssize_t N, bint tokens) noexcept nogil:
    """Floats of one direction's W_ih transposed into panels (I rows of G) for
    dX = dGx W_ih; 0 when dX stays on BLAS (few rows) or has no rows (tokens)."""
    return 0 if tokens or N < _DX_PANEL_ROWS else panel_size(d.n_in, d.G)


def tn_workspace(int kind, Py_ssize_t D, Py_ssize_t N, Py_ssize_t I, Py_ssize_t H,
                 bint tokens):
    """float32 elements layer_grads packs its operands into (0 without panels):
    those of the weight gradients, then W_ih's panels for dX."""
    if not panels_on():
        return 0
    cdef Dims dims = make_dims(kind, I, H)
    return D * (grad_panels(&dims, N, tokens, NULL, NULL) + _dx_panels(&dims, N, tokens))


cdef void _weight_grads_tn(const Dims* d, Py_ssize_t N, Py_ssize_t a0, Py_ssize_t a1,
                           Py_ssize_t split, bint tokens, const float* dg, const Panels* p,
                           float* gw_ih, float* gw_hh, float* gb_ih,
                           float* gb_hh) noexcept nogil:
    """Rows [a0, a1) of one direction's weight gradients on panels (see
    layer_grads): p holds X (none for tokens), H_prev and, for the rows from
    ``split`` on, r ⊙ H_prev, each in panels over N (grad_panels). With
    gb_ih, gb_hh (NULL: no biases), also their rows [a0, a1) += Σ dGh, and
    Σ dGx unless tokens (the caller sums those), from the products' reads of
    dG."""
    cdef Py_ssize_t hoff = recurrent_grad_block(d.kind) * d.H       # dGh columns
    cdef bint bias = gb_hh != NULL
    cdef Py_ssize_t I = d.n_in, H = d.H, lo, hi
    # rows [a0, mid): dW_ih and dW_hh read the same values of dG (dGh = dGx
    # there), one call's two products on dG's columns, copied into the
    # register tiles' strips once for both; the bias gradients from the
    # same reads
    cdef Py_ssize_t mid = a0
    if not tokens:
        mid = max(a0, min(a1, shared_grad_rows(d.kind, H)))
        # dW_ih[a0:hi] += dG[:, a0:hi]ᵀ X, dW_hh[a0:hi] += dG[:, a0:hi]ᵀ H_prev
        hi = min(mid, split)
        if hi > a0:
            panel_gemm_tn_pair(hi - a0, N, dg + a0, d.ldd, p.wp_ih, I, gw_ih + a0 * I, I,
                               gb_ih + a0 if bias else NULL, p.wp, H, gw_hh + a0 * H, H,
                               gb_hh + a0 if bias else NULL)
        # the rows that read r ⊙ h_{t-1}: dW_hn[lo:mid] += dG_n[:, lo:mid]ᵀ (r ⊙ H_prev)
        lo = max(a0, split)
        if mid > lo:
            panel_gemm_tn_pair(mid - lo, N, dg + lo, d.ldd, p.wp_ih, I, gw_ih + lo * I, I,
                               gb_ih + lo if bias else NULL, p.wp_n, H, gw_hh + lo * H, H,
                               gb_hh + lo if bias else NULL)
        if a1 > mid:
            # dW_ih[mid:a1] += dGx[:, mid:a1]ᵀ X; db_ih[mid:a1] += Σ_n dGx[n, mid:a1]
            panel_gemm_tn(a1 - mid, I, N, dg + mid, d.ldd, p.wp_ih, gw_ih + mid * I, I,
                          gb_ih + mid if bias else NULL)
    # the rest of dW_hh apart: dW_hh[mid:split] += dGh[:, mid:split]ᵀ H_prev, db_hh likewise
    if split > mid:
        panel_gemm_tn(split - mid, H, N, dg + hoff + mid, d.ldd, p.wp, gw_hh + mid * H, H,
                      gb_hh + mid if bias else NULL)
    lo = max(mid, split)
    if a1 > lo:
        # dW_hn[lo:a1] += dG_n[:, lo:a1]ᵀ (r ⊙ H_prev)
        panel_gemm_tn(a1 - lo, H, N, dg + hoff + lo, d.ldd, p.wp_n, gw_hh + lo * H, H,
                      gb_hh + lo if bias else NULL)


cdef void _pack_grad_operands(const Dims* d, Py_ssize_t N, bint tokens, const float* x_keep,
                              const float* h_prev, const float* rh, float* base,
                              Py_ssize_t part, Py_ssize_t parts) noexcept nogil:
    """Part ``part`` of ``parts`` of one direction's operands of the weight
    gradients packed in panels over the N rows (grad_panels' layout)."""
    cdef Panels p
    grad_panels(d, N, tokens, base, &p)
    if not tokens:
        _pack_split(x_keep, d.n_in, N, 1, d.n_in, p.wp_ih, part, parts)
    _pack_split(h_prev, d.H, N, 1, d.H, p.wp, part, parts)
    if p.wp_n != NULL:
        _pack_split(rh, d.H, N, 1, d.H, p.wp_n, part, parts)


def layer_grads(int kind, const floating[:, :, ::1] dgates, stored, grads,
                const Py_ssize_t[:, ::1] inverse, floating[:, ::1] dx, int num_threads,
                keep_ids=None, float[::1] tn_work=None):
    """The all-steps products of BPTT for one layer, in fastrnn's threads.

    Adds dW_ih += dGxᵀ X, dW_hh += dGhᵀ H_prev (the rows of W_hh that read
    r ⊙ h_{t-1}: dG_nᵀ (r ⊙ H_prev)), db_ih += Σ dGx, db_hh += Σ dGh into
    grads = (gw_ih (D, G, I), gw_hh (D, G, H), gb_ih, gb_hh (D, G) (empty:
    no bias)), and writes dx (T*B, I) = the sum over directions of dGx W_ih
    scattered to each packed row's step: inverse[d, t*B + b] is that packed
    row, or -1. dgates (D, N, grad_stride) and stored = (x_keep (D, N, I),
    gates (D, N, gate_stride), h_prev (D, N, H), w_ih (D, G, I)): what
    forward and backward_layer kept, and the forward's weights. The products are split into row stripes, one task per stripe and
    direction. dW in float32 with the panel product: dGᵀ X on X, H_prev
    packed once into panels over the N rows (panel_gemm_tn; BLAS repacks its
    transposed operand per call; `python -m bench.limits` times both at the
    shapes of the benchmark's training steps; the rows where dW_ih and dW_hh
    read the same values of dG, all but the reset-after GRU's n rows
    (shared_grad_rows), in one call, panel_gemm_tn_pair, which copies dG
    into the register tiles' strips once: 0.96-0.98 of the time of two at the shapes of train-bilstm-h128-b32
    and train-lstm-h256-b64, bench.limits; the panels go to tn_work when it
    has tn_workspace(...) elements, else to a new array), and from
    DX_PANEL_ROWS rows on dX = dGx W_ih on W_ih packed in panels
    (panel_gemm); otherwise single-threaded BLAS calls. Token input (keep_ids (D, N)
    given, x_keep not used): dW_ih[:, k] += the dGx rows of token k, and dx is
    not written (token ids have no gradient).
    """
    cdef const floating[:, :, ::1] x_keep = stored[0]
    cdef const floating[:, :, ::1] gates = stored[1]
    cdef const floating[:, :, ::1] h_prev = stored[2]
    cdef const floating[:, :, ::1] w_ih = stored[3]
    cdef floating[:, :, ::1] gw_ih = grads[0]
    cdef floating[:, :, ::1] gw_hh = grads[1]
    cdef floating[:, ::1] gb_ih = grads[2]
    cdef floating[:, ::1] gb_hh = grads[3]
    cdef const Py_ssize_t[:, ::1] id_v = keep_ids
    cdef Py_ssize_t D = dgates.shape[0], N = dgates.shape[1], ldd = dgates.shape[2]
    cdef Py_ssize_t G = w_ih.shape[1], I = w_ih.shape[2], H = h_prev.shape[2]
    cdef Py_ssize_t F = dx.shape[0]
    cdef Dims dims = make_dims(kind, I, H)
    cdef Py_ssize_t hoff = recurrent_grad_block(kind) * H              # dGh columns
    cdef Py_ssize_t S = num_threads if num_threads > 0 else 1
    cdef bint has_bias = gb_ih.shape[1] > 0
    cdef bint rh_rows = uses_reset_rows(kind)
    cdef Py_ssize_t reset_from = panel_gate_blocks(kind) * H     # first row reading r ⊙ h
    cdef bint tokens = keep_ids is not None
    _check_grads(&dims, D, N, F, &dgates.shape[0], &x_keep.shape[0], &gates.shape[0],
                 &h_prev.shape[0], &w_ih.shape[0], &gw_ih.shape[0], &gw_hh.shape[0],
                 &gb_ih.shape[0], &gb_hh.shape[0], inverse, &dx.shape[0], id_v, tokens)
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
    cdef Py_ssize_t pstride = 0
    cdef float[::1] packed
    cdef float* pbase = NULL
    # and, from DX_PANEL_ROWS rows on, W_ih of every direction transposed into
    # panels after them, for dX = dGx W_ih (wx; NULL: BLAS)
    cdef bint dx_panels = False
    cdef Py_ssize_t xstride = 0
    cdef float* wx = NULL
    if floating is float:
        panels = panels_on()
        if panels:
            pstride = grad_panels(&dims, N, tokens, NULL, NULL)
            xstride = _dx_panels(&dims, N, tokens)
            if tn_work is not None and tn_work.shape[0] >= D * (pstride + xstride):
                packed = tn_work
            else:
                packed = aligned_empty(max(D * (pstride + xstride), 1), np.float32)
            pbase = &packed[0]
            dx_panels = xstride > 0
            if dx_panels:
                wx = pbase + D * pstride

    with nogil:
        if rh_rows:
            # r ⊙ h_{t-1}, the input of W_hn
            for task in prange(D * S, num_threads=num_threads, schedule="static"):
                d = task // S
                s = task % S
                for n in range(N * s // S, N * (s + 1) // S):
                    reset_input(H, &gates[d, n, 0], &h_prev[d, n, 0], &rh[d, n, 0])

        if floating is float:
            if panels:
                for task in prange(D * S, num_threads=num_threads, schedule="static"):
                    d = task // S
                    _pack_grad_operands(&dims, N, tokens,
                                        &x_keep[d, 0, 0] if not tokens else NULL,
                                        &h_prev[d, 0, 0], &rh[d, 0, 0] if rh_rows else NULL,
                                        pbase + d * pstride, task % S, S)
                    if dx_panels:
                        # W_ih[d]ᵀ: its row i is column i of W_ih (elements I apart)
                        _pack_split(<const float*> &w_ih[d, 0, 0], I, G, 1, I,
                                    wx + d * xstride, task % S, S)

        for task in prange(D * S, num_threads=num_threads, schedule="static"):
            d = task // S
            s = task % S
            a0 = G * s // S
            a1 = G * (s + 1) // S
            dg = &dgates[d, 0, 0]
            split = a1
            if rh_rows and a1 > reset_from:
                split = a0 if a0 > reset_from else reset_from
            if tokens:
                # dW_ih[a0:a1, k] += dGx[n, a0:a1] for every packed row n of token k
                for n in range(N):
                    r = id_v[d, n]
                    row = dg + n * ldd
                    for g in range(a0, a1):
                        gw_ih[d, g, r] = gw_ih[d, g, r] + row[g]
            if panels:
                # (and the bias gradients from the same reads of dG)
                _grad_panels_of(&dims, N, tokens, pbase + d * pstride, a0, a1, split,
                                <const float*> dg, <float*> &gw_ih[d, 0, 0],
                                <float*> &gw_hh[d, 0, 0],
                                <float*> &gb_ih[d, 0] if has_bias else NULL,
                                <float*> &gb_hh[d, 0] if has_bias else NULL)
            else:
                if not tokens:
                    # dW_ih[a0:a1] += dGx[:, a0:a1]ᵀ X
                    gemm(c'T', c'N', <int> (a1 - a0), <int> I, <int> N, <floating> 1, dg + a0,
                         <int> ldd, &x_keep[d, 0, 0], <int> I, <floating> 1, &gw_ih[d, a0, 0],
                         <int> I)
                # dW_hh[a0:a1] += dGh[:, a0:a1]ᵀ H_prev (r ⊙ H_prev for the rows reading it)
                gemm(c'T', c'N', <int> (split - a0), <int> H, <int> N, <floating> 1,
                     dg + hoff + a0, <int> ldd, &h_prev[d, 0, 0], <int> H, <floating> 1,
                     &gw_hh[d, a0, 0], <int> H)
                if split < a1:
                    gemm(c'T', c'N', <int> (a1 - split), <int> H, <int> N, <floating> 1,
                         dg + hoff + split, <int> ldd, &rh[d, 0, 0], <int> H, <floating> 1,
                         &gw_hh[d, split, 0], <int> H)
            if has_bias and (tokens or not panels):
                # db_ih[a0:a1] += Σ_n dGx[n, a0:a1], db_hh likewise with dGh
                # (on panels the products sum them, but for tokens no product
                # reads dGx)
                for n in range(N):
                    row = dg + n * ldd
                    acc = &gb_ih[d, 0]
                    for g in range(a0, a1):
                        acc[g] = acc[g] + row[g]
                    if not panels:
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
            step_w(a1 - a0, I, G, &dgates[d, 0, 0] + a0 * ldd, ldd, &w_ih[d, 0, 0], I,
                   wx + d * xstride if dx_panels else NULL, <floating> 0,
                   &dxp[d, 0, 0] + a0 * I, I)

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


cdef int _check_grads(const Dims* d, Py_ssize_t D, Py_ssize_t N, Py_ssize_t F,
                      const Py_ssize_t* dgates, const Py_ssize_t* x_keep,
                      const Py_ssize_t* gates, const Py_ssize_t* h_prev,
                      const Py_ssize_t* w_ih, const Py_ssize_t* gw_ih,
                      const Py_ssize_t* gw_hh, const Py_ssize_t* gb_ih,
                      const Py_ssize_t* gb_hh, const Py_ssize_t[:, ::1] inverse,
                      const Py_ssize_t* dx, const Py_ssize_t[:, ::1] id_v,
                      bint tokens) except -1:
    """That layer_grads' arrays agree with dgates' D and N rows and W_ih's
    and h_prev's sizes (G, I, H), and every packed row or token they index
    exists: the products index them unchecked. A ValueError naming the
    first that does not."""
    cdef Py_ssize_t G = d.G, I = d.n_in, H = d.H, dd, n, f
    bad = None
    if not _is(dgates, D, N, d.ldd):
        bad = ("dgates", (D, N, d.ldd))
    elif not _is(w_ih, D, G, I):
        bad = ("stored[3] (W_ih)", (D, G, I))
    elif not _is(gates, D, N, d.ldg):
        bad = ("stored[1] (gate activations)", (D, N, d.ldg))
    elif not _is(h_prev, D, N, H):
        bad = ("stored[2] (h_{t-1})", (D, N, H))
    elif not tokens and not _is(x_keep, D, N, I):
        bad = ("stored[0] (inputs)", (D, N, I))
    elif not _is(gw_ih, D, G, I) or not _is(gw_hh, D, G, H):
        bad = ("grads[0], grads[1] (dW_ih, dW_hh)", ((D, G, I), (D, G, H)))
    elif not (_is(gb_ih, D, G) and _is(gb_hh, D, G)
              or _is(gb_ih, D, 0) and _is(gb_hh, D, 0)):
        bad = ("grads[2], grads[3] (db_ih, db_hh)", (D, G))
    elif tokens and not (id_v.shape[0] == D and id_v.shape[1] == N):
        bad = ("keep_ids", (D, N))
    elif not tokens and not (inverse.shape[0] == D and inverse.shape[1] == F
                             and dx[1] == I):
        bad = ("inverse, dx", ((D, "T*B"), ("T*B", I)))
    if bad is not None:
        raise ValueError(f"layer_grads: {bad[0]} must have shape {bad[1]} (D={D}, N={N}, "
                         f"G={G}, I={I}, H={H})")
    for dd in range(D):
        if tokens:
            for n in range(N):
                if not 0 <= id_v[dd, n] < I:
                    raise ValueError(f"layer_grads: keep_ids must be in [0, {I})")
        else:
            for f in range(F):
                if not -1 <= inverse[dd, f] < N:
                    raise ValueError(f"layer_grads: inverse must be in [-1, {N})")
    return 0


cdef void _grad_panels_of(const Dims* d, Py_ssize_t N, bint tokens, float* base,
                          Py_ssize_t a0, Py_ssize_t a1, Py_ssize_t split, const float* dg,
                          float* gw_ih, float* gw_hh, float* gb_ih,
                          float* gb_hh) noexcept nogil:
    """_weight_grads_tn on one direction's packed operands at base."""
    cdef Panels p
    grad_panels(d, N, tokens, base, &p)
    _weight_grads_tn(d, N, a0, a1, split, tokens, dg, &p, gw_ih, gw_hh, gb_ih, gb_hh)
