# The batch split: tasks of (direction, block of batch rows), each
# independent (its own rows, state and output columns), in one prange with no
# barrier. forward_layer, backward_layer. Included by _recurrent_impl.pxi.
#
# Forward, per task, for each chunk of steps (bounded, so inference memory does
# not grow with T and each chunk's projection is still in cache when its steps
# run; training keeps every chunk's rows):
#   1. gather the chunk's active input rows into a packed block and project them
#      with one GEMM:  Gx = X_chunk @ W_ihᵀ;
#   2. for each step: the cell's recurrent products, each followed at once by
#      its gate pass (_cells.pxd), which updates h (and c), leaves the gate
#      activations in the gate block and writes the output row.
# Backward (BPTT), walking the steps from last to first: the cell's gate passes
# turn dL/dh_t (and dL/dc_t) into dG_t, and its products carry dh_{t-1}.


cdef void _gather_inputs(const Dims* d, bint reverse, const Rows* rows, Py_ssize_t r0,
                         Py_ssize_t nr, const Source* src, Py_ssize_t s0, Py_ssize_t s1,
                         floating* xp, floating* gx, Py_ssize_t* keep_ids) noexcept nogil:
    """The active rows of steps [s0, s1) of the block's rows [r0, r0 + nr),
    packed step after step: float rows into xp (rows of I), or for token ids
    their projections (rows of W_ihᵀ) into gx (rows of ldg) and, in training,
    the tokens into keep_ids."""
    cdef Py_ssize_t s, j, n, t, i, off = 0
    cdef const floating* x = <const floating*> src.x
    for s in range(s0, s1):
        n = _active(rows.n_active, s, r0, nr)
        for j in range(n):
            t = _time(reverse, rows.lengths, r0 + j, s)
            if src.ids != NULL:
                # token k: W_ih e_k is column k of W_ih, row k of x = W_ihᵀ
                i = src.ids[t * src.i0 + rows.perm[r0 + j] * src.i1]
                copy_strided(gx + (off + j) * d.ldg, x + i * src.s1, d.G, src.s2)
                if keep_ids != NULL:
                    keep_ids[off + j] = i
            else:
                copy_strided(xp + (off + j) * d.n_in, x + t * src.s0 + rows.perm[r0 + j] * src.s1,
                             d.n_in, src.s2)
        off += n


cdef void _forward_task(const LayerCall* call, Py_ssize_t task, floating* work) noexcept nogil:
    """Task ``task``: one block of rows (sorted order) of one direction
    through every step.

    Inference: the task's workspace holds the packed inputs and gate
    activations of one chunk of steps. Training (the call's Keep): the
    storage of every step (inputs, activations, h_{t-1}, c_{t-1}, tokens),
    this block's rows from its offset on, each chunk's rows after the
    previous chunk's (the projection still runs chunk by chunk: one product
    for all steps at once leaves its result out of cache by the time its
    steps run).
    """
    cdef const Dims* d = &call.dims
    cdef const Rows* rows = &call.rows
    cdef Py_ssize_t dd = task // call.n_blocks, blk = task % call.n_blocks
    cdef Py_ssize_t r0 = call.bounds[blk], r1 = call.bounds[blk + 1]
    cdef bint reverse = call.reverse[dd] != 0
    cdef const Source* src = &call.src[dd]
    cdef const Ends* ends = &call.ends[dd]
    cdef Py_ssize_t H = d.H, G = d.G, ldg = d.ldg
    cdef Py_ssize_t nr = r1 - r0
    cdef Py_ssize_t n_steps = rows.lengths[r0]     # longest row of the block
    cdef Py_ssize_t s0, s1, s, j, n, off, t, b
    cdef int phase
    cdef Product p
    cdef Weights w = call.w[dd]
    cdef Keep keep = call.keep[dd]
    cdef TaskSpace sp
    task_space(work + task * call.work_per, d, call.rows_max, call.cap, &sp)
    # a quantized module's weights packed once (then the call packed none)
    cdef const Prepacked* pre = &call.pre[dd]
    cdef bint tokens = src.ids != NULL
    # this task packs its direction and reads W_ih once (one chunk of steps),
    # whose panels exceed a quarter of L2 (_ih_as_it_goes): W_ih's groups of panels are packed
    # into L2 as the projection reaches them (panel_gemm_rows), not all
    # first, written out and read back (as the unit split's)
    cdef bint ih_rows = (floating is float and call.panels != NULL and call.pack_in_task
                         and not tokens and call.step_chunk >= n_steps and pre.ih == NULL
                         and _ih_as_it_goes(G, d.n_in))
    _task_panels(call, dd, False, &w, not ih_rows)
    cdef unsigned char* qwork = (call.qwork + task * call.qwork_per
                                 if call.qwork != NULL else NULL)
    cdef bint training = keep.gates != NULL
    cdef bint with_c = has_cell_state(d.kind)
    cdef Py_ssize_t o = call.block_offsets[blk] if training else 0
    cdef floating* xp = <floating*> sp.xp
    cdef floating* gx = <floating*> sp.gx
    cdef floating* hp = NULL
    cdef floating* cp = NULL
    cdef Py_ssize_t* keep_ids = NULL
    if training:
        xp = <floating*> keep.x + o * d.n_in if keep.x != NULL else NULL
        gx = <floating*> keep.gates + o * ldg
        hp = <floating*> keep.h + o * H
        cp = <floating*> keep.c + o * H if with_c else NULL
        keep_ids = keep.ids + o if keep.ids != NULL else NULL
    cdef floating* gh = <floating*> sp.gh
    cdef floating* h = <floating*> sp.h
    cdef floating* c = <floating*> sp.c
    cdef floating* rh = <floating*> sp.rh
    cdef const floating* w_hh = <const floating*> w.w_hh
    cdef const floating* b_x = <const floating*> w.b_x
    cdef const floating* b_hn = <const floating*> w.b_hn
    cdef const floating* h0 = <const floating*> ends.h0
    cdef const floating* c0 = <const floating*> ends.c0
    cdef floating* y = <floating*> ends.y
    cdef floating* gblk

    for j in range(nr):
        b = rows.perm[r0 + j]
        memcpy(h + j * H, h0 + b * H, H * sizeof(floating))
        if with_c:
            memcpy(c + j * H, c0 + b * H, H * sizeof(floating))

    s0 = 0
    while s0 < n_steps:
        s1 = s0 + call.step_chunk
        if s1 > n_steps:
            s1 = n_steps
        _gather_inputs(d, reverse, rows, r0, nr, src, s0, s1, xp, gx, keep_ids)
        off = 0
        for s in range(s0, s1):
            off += _active(rows.n_active, s, r0, nr)
        if floating is float:
            if ih_rows:
                # Gx = X_packed @ W_ihᵀ   (off x G, row stride ldg), packed as it goes
                panel_gemm_rows(off, G, d.n_in, xp, d.n_in, <const float*> w.w_ih, d.n_in, G,
                                0, w.wp_ih, gx, ldg, False)
        if not tokens and not ih_rows:
            # Gx = X_packed @ W_ihᵀ   (off x G, row stride ldg)
            gates_wt(off, 0, gates(d.kind), H, d.n_in, xp, <const floating*> w.w_ih, w.wp_ih,
                     pre, True, qwork, <floating> 0, gx, ldg)

        off = 0
        for s in range(s0, s1):
            n = _active(rows.n_active, s, r0, nr)
            gblk = gx + off * ldg
            if training:
                memcpy(hp + off * H, h, n * H * sizeof(floating))
                if with_c:
                    memcpy(cp + off * H, c, n * H * sizeof(floating))
            for phase in range(forward_phases(d.kind)):
                p = forward_product(d.kind, phase)
                # G[:, blocks q0..] (+)= (h_{t-1} or r ⊙ h_{t-1}) W_hh[blocks q0..]ᵀ
                gates_wt(n, p.q0, p.nq, H, H, rh if p.reset_rows else h, w_hh,
                         w.wp_n if p.n_panels else w.wp, pre, False, qwork,
                         <floating> p.accumulate, gh if p.own_target else gblk + p.q0 * H,
                         p.nq * H if p.own_target else ldg)
                cell_forward(d.kind, phase, n, H, gblk, ldg, gh, b_x, b_hn, h, c, rh,
                             &call.var[dd])
            for j in range(n):
                t = _time(reverse, rows.lengths, r0 + j, s)
                memcpy(y + t * ends.y0 + rows.perm[r0 + j] * ends.y1, h + j * H,
                       H * sizeof(floating))
            off += n
        if training:
            # the next chunk's rows follow this chunk's in the kept storage
            if not tokens:
                xp += off * d.n_in
            gx += off * ldg
            hp += off * H
            if with_c:
                cp += off * H
            if tokens:
                keep_ids += off
        s0 = s1

    for j in range(nr):
        b = rows.perm[r0 + j]
        memcpy(<floating*> ends.h_n + b * H, h + j * H, H * sizeof(floating))
        if with_c:
            memcpy(<floating*> ends.c_n + b * H, c + j * H, H * sizeof(floating))
        # outputs past the sequence's end are zero (y starts uninitialised)
        for t in range(rows.lengths[r0 + j], rows.T):
            memset(y + t * ends.y0 + b * ends.y1, 0, H * sizeof(floating))


cdef void _backward_task(const LayerCall* call, Py_ssize_t task, floating* work) noexcept nogil:
    """BPTT for task ``task``'s block of rows of one direction, from the last
    step back.

    The call's Keep: the stored activations, h_{t-1}, c_{t-1} of forward;
    its Ends, the gradients at the sequence's ends: dL/dh_n, dL/dc_n in (h0,
    c0) and dL/dh0, dL/dc0 out in (h_n, c_n), (B, H) caller order, and dL/dy
    in y (this direction's first column, unit stride over H). Writes the
    block's rows of dg (packed, rows of ldd). W_hhᵀ in panels (float32), or
    BLAS.
    """
    cdef const Dims* d = &call.dims
    cdef const Rows* rows = &call.rows
    cdef Py_ssize_t dd = task // call.n_blocks, blk = task % call.n_blocks
    cdef Py_ssize_t r0 = call.bounds[blk], r1 = call.bounds[blk + 1]
    cdef Py_ssize_t o = call.block_offsets[blk]
    cdef bint reverse = call.reverse[dd] != 0
    cdef const Ends* ends = &call.ends[dd]
    cdef Py_ssize_t H = d.H, lda = d.ldg, ldd = d.ldd
    cdef Py_ssize_t nr = r1 - r0
    cdef Py_ssize_t n_steps = rows.lengths[r0]
    cdef Py_ssize_t s, j, k, n, off, t, b
    cdef int phase
    cdef Product p
    cdef bint with_c = has_cell_state(d.kind)
    cdef Weights w = call.w[dd]
    _task_panels(call, dd, True, &w)
    cdef BackSpace sp
    back_space(work + task * call.work_per, d, call.rows_max, &sp)
    cdef const floating* a = <const floating*> call.keep[dd].gates + o * lda
    cdef const floating* hp = <const floating*> call.keep[dd].h + o * H
    cdef const floating* cp = <const floating*> call.keep[dd].c + o * H if with_c else NULL
    cdef floating* dg = <floating*> call.dg[dd] + o * ldd
    cdef const floating* w_hh = <const floating*> w.w_hh
    cdef const floating* dy = <const floating*> ends.y
    cdef floating* dh = <floating*> sp.dh
    cdef floating* dc = <floating*> sp.dc
    cdef floating* drh = <floating*> sp.drh
    cdef const floating* src
    cdef floating* dblk

    off = 0
    for s in range(n_steps):
        off += _active(rows.n_active, s, r0, nr)
    for j in range(nr):
        b = rows.perm[r0 + j]
        memcpy(dh + j * H, <const floating*> ends.h0 + b * H, H * sizeof(floating))
        if with_c:
            memcpy(dc + j * H, <const floating*> ends.c0 + b * H, H * sizeof(floating))

    for s in range(n_steps - 1, -1, -1):
        n = _active(rows.n_active, s, r0, nr)
        off -= n
        # dL/dh_t = (carried from step t+1) + dL/dy_t
        for j in range(n):
            t = _time(reverse, rows.lengths, r0 + j, s)
            src = dy + t * ends.y0 + rows.perm[r0 + j] * ends.y1
            for k in range(H):
                dh[j * H + k] += src[k]
        dblk = dg + off * ldd
        for phase in range(backward_phases(d.kind)):
            cell_backward(d.kind, phase, n, H, a + off * lda, hp + off * H,
                          cp + off * H if with_c else NULL, drh, dblk, dh, dc, &call.var[dd])
            p = backward_product(d.kind, phase)
            # dh_{t-1} (or dL/d(r ⊙ h_{t-1})) (+)= dG[:, blocks src0..] @ W_hh[blocks q0..]
            step_w(n, H, p.nq * H, dblk + p.src0 * H, ldd, w_hh + p.q0 * H * H, H,
                   w.wp_n if p.n_panels else w.wp, <floating> p.accumulate,
                   drh if p.reset_rows else dh, H)

    for j in range(nr):
        b = rows.perm[r0 + j]
        memcpy(<floating*> ends.h_n + b * H, dh + j * H, H * sizeof(floating))
        if with_c:
            memcpy(<floating*> ends.c_n + b * H, dc + j * H, H * sizeof(floating))



cdef void _task_panels(const LayerCall* call, Py_ssize_t dd, bint for_backward,
                       Weights* w, bint with_ih=True) noexcept nogil:
    """Direction dd's panels into w (NULL without them: BLAS), packed here
    when each task packs its own direction (one block per direction: in its
    own core's cache, with no separate thread team for packing); W_ih's
    only with with_ih (else its room is there, unpacked)."""
    cdef Panels panels
    w.wp = w.wp_n = w.wp_ih = NULL
    if call.panels == NULL:
        return
    recurrent_panels(&call.dims, call.dims.H, for_backward, False,
                     call.panels + dd * call.panels_per, &panels)
    w.wp = panels.wp
    w.wp_n = panels.wp_n
    if not for_backward:
        w.wp_ih = call.panels_ih + dd * call.panels_ih_per
    if call.pack_in_task:
        _pack_recurrent_part(&call.dims, <const float*> w.w_hh, for_backward, &panels, 0, 1)
        if not for_backward and with_ih:
            _pack_split(<const float*> w.w_ih, call.dims.G, call.dims.n_in, call.dims.n_in, 1,
                        call.panels_ih + dd * call.panels_ih_per, 0, 1)


def batch_panels(int kind, const float[:, :, ::1] w_ih, const float[:, :, ::1] w_hh):
    """Every direction's W_hh and W_ih, (D, G, H) and (D, G, I), packed as
    forward_layer packs them at each call: the ``panels`` argument of
    forward_layer (two read-only float32 arrays)."""
    cdef Py_ssize_t D = w_hh.shape[0], G = w_hh.shape[1], H = w_hh.shape[2]
    if (H < 1 or G != gates(kind) * H or w_ih.shape[0] != D or w_ih.shape[1] != G
            or w_ih.shape[2] < 1):
        raise ValueError(f"batch_panels: W_ih must be (D, {gates(kind)} H, I) and W_hh "
                         f"(D, {gates(kind)} H, H), got ({w_ih.shape[0]}, {w_ih.shape[1]}, "
                         f"{w_ih.shape[2]}) and ({D}, {G}, {H})")
    cdef Dims d = make_dims(kind, w_ih.shape[2], H)
    cdef Py_ssize_t hh_size = recurrent_panels(&d, H, False, False, NULL, NULL)
    cdef Py_ssize_t ih_size = panel_size(G, d.n_in)
    # (at a cache line, as the scratch a call packs them into)
    out = (aligned_empty(D * hh_size, np.float32), aligned_empty(D * ih_size, np.float32))
    _pack_recurrent(&d, &w_hh[0, 0, 0], D, False, 1, True, _data(out[0]))
    _pack_rows(&w_ih[0, 0, 0], D, G, d.n_in, 1, True, _data(out[1]))
    for arr in out:
        arr.flags.writeable = False
    return out


def forward_layer(int kind, const floating[:, :, :] x, weights, plan, ends,
                  Py_ssize_t step_chunk, int num_threads, keep=None, ids=None, variant=None,
                  prepacked=None, panels=None):
    """Run one layer (D directions) over a batch; fills y, h_n (and c_n).

    x: (T, B, I) any strides.
    weights = (w_ih (D, G, I), w_hh (D, G, H), b_ih, b_hh (D, G)) (zero
      biases for a layer without bias), C-contiguous.
    plan = (reverse (D,) intc 0/1, lengths (B,) sorted descending, perm (B,)
      sorted row -> caller row, n_active (T,) rows with length > s, bounds
      (K+1,) row blocks, block_offsets (K,) first packed row of each block
      or None in inference), intp unless said.
    ends = (h0, c0, y, h_n, c_n): h0, c0, h_n, c_n (D, B, H) (c0/c_n used by
      the LSTM only), y (T, B, D*H), C-contiguous.
    keep (training) = (keep_x (D, N, I) or None for token ids, keep_gates
      (D, N, gate_stride), keep_h (D, N, H), keep_c (D, N, H) (LSTM),
      keep_ids (D, N) intp for token ids else None): receive the packed
      inputs (or tokens), gate activations, h_{t-1} and c_{t-1}, N =
      sum(lengths).
    ids: token input, (T, B) intp any strides, each in [0, I); x is then
      W_ihᵀ (D, I, G), any strides (a transposed copy of W_ih, or a view of it).
    variant: None (the default cell) or (clip (<= 0: none), coupled (LSTM
      input_forget), peep: (D, 3H) the LSTM's peepholes [p_i; p_f; p_o] or
      None), the cell options of fastrnn._cells.Variant.
    prepacked (float32 inference): one per direction, as forward_layer_units'
      (each direction's W_ih and W_hh packed once): the products read them
      and the call packs nothing.
    panels (float32 inference): batch_panels(kind, W_ih, W_hh), the panels
      this call would pack, packed once (read when the panel variant is on).
    TaskCall binds all but the arrays of a float32 inference call once.
    """
    cdef const floating[:, ::1] b_ih = weights[2]
    cdef const floating[:, ::1] b_hh = weights[3]
    cdef const floating[:, :, ::1] h0 = ends[0]
    cdef const floating[:, :, ::1] c0 = ends[1]
    cdef floating[:, :, ::1] y = ends[2]
    cdef floating[:, :, ::1] h_n = ends[3]
    cdef floating[:, :, ::1] c_n = ends[4]
    cdef floating[:, :, ::1] keep_x = None
    cdef floating[:, :, ::1] keep_gates = None
    cdef floating[:, :, ::1] keep_h = None
    cdef floating[:, :, ::1] keep_c = None
    cdef Py_ssize_t[:, ::1] keep_ids = None
    if keep is not None:
        keep_x, keep_gates, keep_h, keep_c, keep_ids = keep
    cdef const Py_ssize_t[:, :] id_v = ids
    cdef bint tokens = ids is not None
    cdef bint training = keep is not None
    cdef Py_ssize_t dd
    cdef Py_ssize_t isz = sizeof(floating)
    cdef bint with_c = has_cell_state(kind)
    cdef LayerCall call
    _tasks_setup(&call, <floating*> NULL, kind, weights, plan,
                 id_v.shape[0] if tokens else x.shape[0], step_chunk, training, tokens,
                 variant, prepacked, panels)
    cdef Py_ssize_t D = b_ih.shape[0]          # (W_ih's: _tasks_setup checked them)
    _check_forward(&call, D, &x.shape[0], id_v, &h0.shape[0], &c0.shape[0], &y.shape[0],
                   &h_n.shape[0], &c_n.shape[0], _keep_shapes(keep), False)
    for dd in range(D):
        call.src[dd] = _call_source(&x[dd, 0, 0] if tokens else &x[0, 0, 0],
                                    x.strides[0] // isz, x.strides[1] // isz,
                                    x.strides[2] // isz, &id_v[0, 0] if tokens else NULL,
                                    id_v.strides[0] // sizeof(Py_ssize_t) if tokens else 0,
                                    id_v.strides[1] // sizeof(Py_ssize_t) if tokens else 0)
        call.ends[dd] = _call_ends(&h0[dd, 0, 0], &c0[dd, 0, 0] if with_c else NULL,
                                   &h_n[dd, 0, 0], &c_n[dd, 0, 0] if with_c else NULL,
                                   &y[0, 0, dd * call.dims.H], y.strides[0] // isz,
                                   y.strides[1] // isz)
        if training:
            call.keep[dd].x = &keep_x[dd, 0, 0] if not tokens else NULL
            call.keep[dd].gates = &keep_gates[dd, 0, 0]
            call.keep[dd].h = &keep_h[dd, 0, 0]
            call.keep[dd].c = &keep_c[dd, 0, 0] if with_c else NULL
            call.keep[dd].ids = &keep_ids[dd, 0] if tokens else NULL
    _tasks_run(&call, &b_ih[0, 0], &b_hh[0, 0], D, num_threads, prepacked is not None, panels)


cdef object _tasks_setup(LayerCall* call, const floating* like, int kind, weights, plan,
                         Py_ssize_t steps, Py_ssize_t step_chunk, bint training, bint tokens,
                         variant, prepacked, panels):
    """What a batch-split forward call's weights, plan and options fix, every
    argument checked (forward_layer's): its sizes, sorted rows and row
    blocks, each direction's flag and weights, the cell variant, the
    prepacked weights and the workspace's size (like: NULL of the call's
    precision). Given panels are checked here and read by _tasks_run if
    the panel variant is on then. The caller sets the input, the ends and
    the storage, then _tasks_run. Returns what call points into (for
    TaskCall to hold)."""
    cdef const floating[:, :, ::1] w_ih = weights[0]
    cdef const floating[:, :, ::1] w_hh = weights[1]
    cdef const floating[:, ::1] b_ih = weights[2]
    cdef const floating[:, ::1] b_hh = weights[3]
    cdef const int[::1] reverse = plan[0]
    cdef const Py_ssize_t[::1] lengths = plan[1]
    cdef const Py_ssize_t[::1] perm = plan[2]
    cdef const Py_ssize_t[::1] n_active = plan[3]
    cdef const Py_ssize_t[::1] bounds = plan[4]
    cdef const Py_ssize_t[::1] block_offsets = plan[5]
    cdef Py_ssize_t D = w_ih.shape[0], dd
    _check_rows(lengths, perm, n_active, steps)
    _check_blocks(bounds, block_offsets, lengths, training)
    _check_directions("forward_layer", D, reverse.shape[0])
    _call_rows(call, kind, w_ih.shape[2], w_hh.shape[2], lengths, perm, n_active, steps)
    _call_blocks(call, bounds, block_offsets)
    _check_weights(call, D, &w_ih.shape[0], &w_hh.shape[0], &b_ih.shape[0], &b_hh.shape[0],
                   False)
    call.step_chunk = step_chunk
    call.cap = 0 if training else step_chunk * call.rows_max
    for dd in range(D):
        call.reverse[dd] = reverse[dd]
        call.w[dd] = _call_weights(&w_ih[dd, 0, 0], &w_hh[dd, 0, 0], NULL, NULL)
        call.keep[dd] = _no_keep()
    cdef const floating[:, ::1] peep = None if variant is None else variant[2]
    _call_variants(call, variant, peep, D)
    call.work_per = task_space(<floating*> NULL, &call.dims, call.rows_max, call.cap, NULL)
    if prepacked is not None:
        if floating is double or training:
            raise ValueError("prepacked weights are for float32 inference")
        if not isinstance(prepacked, tuple) or len(prepacked) != D:
            raise ValueError(f"prepacked: a tuple of one per direction ({D})")
        for dd in range(D):
            _call_prepacked(call, prepacked[dd], tokens, dd)
    # one block per direction: each task packs its own direction's weights
    call.pack_in_task = call.n_blocks == 1
    cdef Py_ssize_t hh_size, ih_size
    if panels is not None:
        hh_size = recurrent_panels(&call.dims, call.dims.H, False, False, NULL, NULL)
        ih_size = panel_size(call.dims.G, call.dims.n_in)
        if (not isinstance(panels, tuple) or len(panels) != 2
                or not _packed_array(panels[0], np.float32, D * hh_size)
                or not _packed_array(panels[1], np.float32, D * ih_size)):
            raise ValueError(f"panels: (W_hh's {D * hh_size}, W_ih's {D * ih_size}) float32 "
                             f"panels, from batch_panels")
        if floating is double or training or prepacked is not None:
            raise ValueError("panels are for float32 inference without prepacked weights")
    return (weights, plan, variant, prepacked, panels)


cdef int _tasks_run(LayerCall* call, const floating* b_ih, const floating* b_hh, Py_ssize_t D,
                    int num_threads, bint prepacked, panels) except -1:
    """Run a batch-split forward call set up by _tasks_setup (its input, ends
    and storage set): its kernel biases from b_ih, b_hh (D, G), read now; the
    dot products' rows; the workspace; the panels: ``panels`` (checked by
    _tasks_setup) as they are when the panel variant is on, else the call's
    own, packed here or by each task (none for prepacked weights or BLAS);
    then the tasks, the GIL released."""
    cdef Py_ssize_t n_tasks = D * call.n_blocks, task
    cdef const float[::1] given_hh
    cdef const float[::1] given_ih
    _bias_scratch(call, b_ih, b_hh, D)
    if prepacked:
        # per task: a step's rows of h_{t-1}, or a chunk's inputs
        _call_qwork(call, D, call.rows_max, call.cap, n_tasks)
    cdef floating* work = <floating*> _scratch_data(
        "work", n_tasks * call.work_per, np.float32 if floating is float else np.float64)
    if floating is float:
        if panels is not None and panels_on():
            given_hh, given_ih = panels
            call.panels = <float*> &given_hh[0]             # (read only)
            call.panels_per = given_hh.shape[0] // D
            call.panels_ih = <float*> &given_ih[0]
            call.panels_ih_per = given_ih.shape[0] // D
            call.pack_in_task = False
        elif panels_on() and not prepacked:
            call.panels_per = recurrent_panels(&call.dims, call.dims.H, False, False, NULL, NULL)
            call.panels = _pack_recurrent(&call.dims, <const float*> call.w[0].w_hh, D, False,
                                          num_threads, not call.pack_in_task)
            call.panels_ih_per = panel_size(call.dims.G, call.dims.n_in)
            call.panels_ih = _pack_rows(<const float*> call.w[0].w_ih, D, call.dims.G,
                                        call.dims.n_in, num_threads, not call.pack_in_task)
    with nogil:
        for task in prange(n_tasks, num_threads=num_threads, schedule="dynamic"):
            _forward_task(call, task, work)
    return 0


cdef class TaskCall:
    """One layer's batch-split float32 inference call (one or two
    directions) bound to its weights and to one input signature (steps,
    rows): what forward_layer works out from its weights, plan and options,
    done once (_tasks_setup), so a call converts only its input and ends,
    time-major, or batch-major with batch_first (read and written in place
    through their strides: no transposed copy). The weights and biases are
    read at every call (in-place updates are seen: W_hh and W_ih are packed
    at every call as forward_layer packs them, unless panels or prepacked
    weights are given); the caller holds a TaskCall only while its weight
    arrays stay the same objects and its plan, thread count and options stay
    right for the call (fastrnn._engine.bound_call)."""
    cdef LayerCall call
    cdef object held
    cdef object panels
    cdef const float* b_ih
    cdef const float* b_hh
    cdef Py_ssize_t D
    cdef int num_threads
    cdef bint prepacked, batch_first
    cdef Py_ssize_t shape_x[3]
    cdef Py_ssize_t shape_y[3]
    cdef Py_ssize_t shape_h[3]

    def __init__(self, int kind, weights, plan, Py_ssize_t steps, Py_ssize_t step_chunk,
                 int num_threads, variant=None, prepacked=None, panels=None,
                 bint batch_first=False):
        """As forward_layer's arguments (float32, inference, input of (steps,
        B, I) floats, or (B, steps, I) with batch_first)."""
        self.held = _tasks_setup(&self.call, <float*> NULL, kind, weights, plan, steps,
                                 step_chunk, False, False, variant, prepacked, panels)
        cdef const float[:, ::1] b_ih = weights[2]
        cdef const float[:, ::1] b_hh = weights[3]
        self.b_ih, self.b_hh = &b_ih[0, 0], &b_hh[0, 0]
        self.D = b_ih.shape[0]
        self.panels = panels
        self.num_threads = num_threads
        self.prepacked = prepacked is not None
        self.batch_first = batch_first
        cdef Py_ssize_t T = self.call.rows.T, B = self.call.rows.B
        cdef Py_ssize_t I = self.call.dims.n_in, H = self.call.dims.H
        if batch_first:
            self.shape_x[:] = [B, T, I]
            self.shape_y[:] = [B, T, self.D * H]
        else:
            self.shape_x[:] = [T, B, I]
            self.shape_y[:] = [T, B, self.D * H]
        self.shape_h[:] = [self.D, B, H]

    def run(self, x, h0, c0, y, h_n, c_n):
        """Run the call: x (T, B, I) in; h0, c0 (D, B, H) in (RNN and GRU: c0
        unused, pass h0); y (T, B, D H), h_n, c_n (D, B, H) out (RNN and GRU:
        c_n unused, pass h_n); x and y (B, T, ·) with batch_first; every one
        a C-contiguous native float32 array of exactly that shape (else
        ValueError), the outputs writable."""
        cdef LayerCall call = self.call       # (each call fills its own copy)
        cdef BoundArrays a
        _bound_arrays("TaskCall.run", x, h0, c0, y, h_n, c_n, self.shape_x, 3, self.shape_h,
                      self.shape_y, self.batch_first, &a)
        cdef bint with_c = has_cell_state(call.dims.kind)
        cdef Py_ssize_t H = call.dims.H, D = self.D, dd
        cdef Py_ssize_t o = call.rows.B * H           # one direction's rows of a state
        for dd in range(D):
            call.src[dd] = _call_source(a.x, a.xt, a.xb, 1, NULL, 0, 0)
            call.ends[dd] = _call_ends(
                <const float*> a.h0 + dd * o, <const float*> a.c0 + dd * o if with_c else NULL,
                <float*> a.h_n + dd * o, <float*> a.c_n + dd * o if with_c else NULL,
                <float*> a.y + dd * H, a.yt, a.yb)
        _tasks_run(&call, self.b_ih, self.b_hh, D, self.num_threads, self.prepacked,
                   self.panels)


def backward_layer(int kind, const floating[:, :, ::1] w_hh, plan, stored,
                   const floating[:, :, :] dy, ends, floating[:, :, ::1] dgates,
                   int num_threads, variant=None):
    """BPTT through one layer (D directions) with the plan of its forward.

    w_hh: (D, G, H) the weights forward ran with; plan: forward_layer's
    (with block_offsets); stored = (gates (D, N, gate_stride), h_prev,
    c_prev (D, N, H)): what forward_layer kept; dy: (T, B, D*H) any strides,
    unit stride on its last axis; ends = (dh_n, dc_n, dh0, dc0), (D, B, H):
    the gradients of the final states in, of the initial states out (dc_n,
    dc0 used by the LSTM only). Writes dgates (D, N, grad_stride).
    variant: as forward_layer's (the one forward ran with).
    """
    cdef const int[::1] reverse = plan[0]
    cdef const Py_ssize_t[::1] lengths = plan[1]
    cdef const Py_ssize_t[::1] perm = plan[2]
    cdef const Py_ssize_t[::1] n_active = plan[3]
    cdef const Py_ssize_t[::1] bounds = plan[4]
    cdef const Py_ssize_t[::1] block_offsets = plan[5]
    cdef const floating[:, :, ::1] gates = stored[0]
    cdef const floating[:, :, ::1] h_prev = stored[1]
    cdef const floating[:, :, ::1] c_prev = stored[2]
    cdef const floating[:, :, ::1] dh_n = ends[0]
    cdef const floating[:, :, ::1] dc_n = ends[1]
    cdef floating[:, :, ::1] dh0 = ends[2]
    cdef floating[:, :, ::1] dc0 = ends[3]
    cdef Py_ssize_t D = w_hh.shape[0], dd, task
    cdef Py_ssize_t isz = sizeof(floating)
    cdef bint with_c = has_cell_state(kind)
    cdef LayerCall call
    _check_rows(lengths, perm, n_active, dy.shape[0])
    _check_blocks(bounds, block_offsets, lengths, True)
    _check_directions("backward_layer", D, reverse.shape[0])
    _call_rows(&call, kind, 0, w_hh.shape[2], lengths, perm, n_active, dy.shape[0])
    _call_blocks(&call, bounds, block_offsets)
    _check_backward(&call, D, &w_hh.shape[0], &dy.shape[0], &gates.shape[0],
                    &h_prev.shape[0], &c_prev.shape[0], &dh_n.shape[0], &dc_n.shape[0],
                    &dh0.shape[0], &dc0.shape[0], &dgates.shape[0], False)
    for dd in range(D):
        call.reverse[dd] = reverse[dd]
        call.w[dd] = _call_weights(NULL, &w_hh[dd, 0, 0], NULL, NULL)
        # the gradients at the ends: dh_n, dc_n in; dh0, dc0 out; dy in
        call.ends[dd] = _call_ends(&dh_n[dd, 0, 0], &dc_n[dd, 0, 0] if with_c else NULL,
                                   &dh0[dd, 0, 0], &dc0[dd, 0, 0] if with_c else NULL,
                                   <void*> &dy[0, 0, dd * call.dims.H], dy.strides[0] // isz,
                                   dy.strides[1] // isz)
        call.keep[dd] = _no_keep()
        # (read only in backward)
        call.keep[dd].gates = <void*> &gates[dd, 0, 0]
        call.keep[dd].h = <void*> &h_prev[dd, 0, 0]
        call.keep[dd].c = <void*> &c_prev[dd, 0, 0] if with_c else NULL
        call.dg[dd] = &dgates[dd, 0, 0]
    cdef const floating[:, ::1] peep = None if variant is None else variant[2]
    _call_variants(&call, variant, peep, D)
    call.work_per = back_space(<floating*> NULL, &call.dims, call.rows_max, NULL)
    cdef Py_ssize_t n_tasks = D * call.n_blocks
    work_arr = _scratch("work", n_tasks * call.work_per,
                        np.float32 if floating is float else np.float64)
    cdef floating[::1] work = work_arr
    call.pack_in_task = call.n_blocks == 1
    if floating is float:
        if panels_on():
            call.panels_per = recurrent_panels(&call.dims, call.dims.H, True, False, NULL, NULL)
            call.panels = _pack_recurrent(&call.dims, &w_hh[0, 0, 0], D, True, num_threads,
                                          not call.pack_in_task)
    with nogil:
        for task in prange(n_tasks, num_threads=num_threads, schedule="dynamic"):
            _backward_task(&call, task, &work[0])
