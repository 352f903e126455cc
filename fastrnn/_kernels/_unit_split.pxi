# The unit split, for one direction and a small batch: each thread owns the
# hidden units [u0, u1) of every gate (its rows of W_ih and W_hh, packed once
# into its core's cache) and the threads meet at a barrier per step to
# exchange h_t. forward_layer_units, backward_layer_units. Included by
# _recurrent_impl.pxi.

ctypedef struct Team:
    int tid                       # this thread
    int nthreads                  # the team's size (as OpenMP gave it)
    fastrnn_spin_barrier* bar     # the call's barrier
    long long* waited             # this thread's time waiting for the others (ns)


cdef inline void _meet(const Team* team, int* arrivals) noexcept nogil:
    """The team's barrier; each thread adds its long waits to its team.waited."""
    spin_wait_timed(team.bar, team.nthreads, team.tid, arrivals, team.waited)


cdef extern from *:
    void __builtin_prefetch(const void*) nogil


cdef inline void _ask_rows(const void* a, Py_ssize_t n, Py_ssize_t nbytes,
                           Py_ssize_t stride) noexcept nogil:
    """Ask for every cache line of n rows of nbytes (stride bytes apart) at a,
    all at once, before a product of one or two rows reads them in place.

    Part of each row was just written by the partner thread, so its lines
    come from the other core's cache. The product reads a row in order, one
    element a step of k, and each step is a dozen loads and FMAs over the
    panels: the core's window of instructions ends long before the next
    line's load, so each line's trip from the other core would be waited for
    in turn. Asked for together they travel together."""
    cdef const char* row
    cdef Py_ssize_t j, i
    for j in range(n):
        row = <const char*> a + j * stride
        for i in range(0, nbytes, 64):
            __builtin_prefetch(row + i)


cdef inline Py_ssize_t _unit_bound(Py_ssize_t t, Py_ssize_t n, Py_ssize_t H,
                                    bint whole_panels) noexcept nogil:
    """The first unit of thread t of n (t = n: H): H t / n, or with whole_panels
    the multiple of PANEL nearest it (the shares of weights packed once per
    module start at whole panels)."""
    cdef Py_ssize_t u = H * t // n
    if whole_panels and t < n:
        u = (u + PANEL // 2) // PANEL * PANEL
        if u > H:
            u = H
    return u


cdef inline Py_ssize_t _units_from(const Team* team, Py_ssize_t H,
                                   bint whole_panels=False) noexcept nogil:
    return _unit_bound(team.tid, team.nthreads, H, whole_panels)


cdef inline Py_ssize_t _units(const Team* team, Py_ssize_t H,
                              bint whole_panels=False) noexcept nogil:
    return (_unit_bound(team.tid + 1, team.nthreads, H, whole_panels)
            - _unit_bound(team.tid, team.nthreads, H, whole_panels))


cdef void _pack_unit_rows(const float* w, Py_ssize_t q0, Py_ssize_t nq, Py_ssize_t U,
                          Py_ssize_t u0, Py_ssize_t H, Py_ssize_t K, float* dst) noexcept nogil:
    """Pack the rows of gates q0 .. q0+nq-1, units [u0, u0+U), of W (H rows per
    gate, rows of length K) in panels (local row r = gate (q0 + r // U), unit
    u0 + r % U)."""
    pack_rows(nq * U, K, w + (q0 * H + u0) * K, K, U, H * K, dst)


cdef void _pack_unit_share(const Dims* d, const float* w_ih, const float* w_hh, Py_ssize_t U,
                           Py_ssize_t u0, const Panels* panels, bint with_ih) noexcept nogil:
    """A thread's share of one direction's weights in panels (recurrent_panels'
    layout with W_ih): the rows of every gate for units [u0, u0 + U); W_ih's
    only with with_ih."""
    cdef Py_ssize_t ngates = gates(d.kind), first = panel_gate_blocks(d.kind)
    _pack_unit_rows(w_hh, 0, first, U, u0, d.H, d.H, panels.wp)
    if panels.wp_n != NULL:
        _pack_unit_rows(w_hh, first, ngates - first, U, u0, d.H, d.H, panels.wp_n)
    if with_ih:
        _pack_unit_rows(w_ih, 0, ngates, U, u0, d.H, d.n_in, panels.wp_ih)


cdef void _unit_worker(const LayerCall* call, floating* work, long long* waited,
                       fastrnn_spin_barrier* bar) noexcept nogil:
    """One thread of the unit-split forward: hidden units [u0, u1) of every gate.

    For small batches the recurrent product is a matrix-vector product, so
    splitting the batch leaves threads idle; here each thread owns the rows of
    W_ih and W_hh of its units (each thread streams only its part of the
    weights every step) and the threads meet at one barrier per step (two for
    a cell whose second product reads r ⊙ h_{t-1} of every unit) to exchange
    h_t. The call: as _forward_task's for one block of all B rows
    (direction 0); its shared exchange (unit_shared); per
    thread its workspace (unit_space) and room for its rows of W_hh and W_ih
    in panels (float32), or none: BLAS. Training (the Keep; one chunk of
    every step): the packed inputs (gathered once, by thread 0),
    activations, h_{t-1} and c_{t-1}; each thread writes its units' columns.
    Token input as in _forward_task (each thread copies its units' columns of
    W_ihᵀ).
    """
    cdef Team team_
    team_.tid = omp_get_thread_num()
    team_.nthreads = omp_get_num_threads()
    team_.bar = bar
    team_.waited = waited + team_.tid
    cdef const Team* team = &team_
    cdef const Dims* d = &call.dims
    cdef const Rows* rows = &call.rows
    cdef bint reverse = call.reverse[0] != 0
    cdef const Source* src = &call.src[0]
    cdef const Weights* w = &call.w[0]
    cdef const Ends* ends = &call.ends[0]
    cdef const Keep* keep = &call.keep[0]
    cdef Py_ssize_t step_chunk = call.step_chunk
    cdef floating* shared = <floating*> call.shared
    cdef UnitSpace sp
    unit_space(work + team.tid * call.work_per, d, rows.B, step_chunk * rows.B, &sp)
    cdef float* pw = call.panels + team.tid * call.panels_per if call.panels != NULL else NULL
    # the module's shares packed once, when made for a team of this size
    cdef bint shared_panels = call.shares != NULL and call.shares_team == team.nthreads
    if shared_panels:
        pw = <float*> call.shares + team.tid * call.panels_per    # (read only)
    cdef const Prepacked* pre = &call.pre[0]
    cdef bint prepacked = pre.hh != NULL
    cdef unsigned char* qwork = (call.qwork + team.tid * call.qwork_per
                                 if call.qwork != NULL else NULL)
    cdef int kind = d.kind
    cdef Py_ssize_t H = d.H, I = d.n_in, B = rows.B
    cdef Py_ssize_t ngates = gates(kind)
    cdef Py_ssize_t u0 = _units_from(team, H, prepacked)
    cdef Py_ssize_t U = _units(team, H, prepacked)
    cdef Py_ssize_t blocks = gate_blocks(kind)                         # stored gate blocks
    cdef Py_ssize_t ldg = blocks * U
    cdef Py_ssize_t n_steps = rows.lengths[0]
    cdef Py_ssize_t s0, s1, s, j, i, q, n, off, t, b
    cdef int phase
    cdef Product p
    cdef bint training = keep.gates != NULL
    cdef bint tokens = src.ids != NULL
    cdef bint with_c = has_cell_state(kind)
    cdef const floating* x = <const floating*> src.x
    cdef const floating* w_ih = <const floating*> w.w_ih
    cdef const floating* w_hh = <const floating*> w.w_hh
    cdef floating* xp = <floating*> keep.x if training else <floating*> sp.xp
    cdef floating* gx = <floating*> sp.gx
    cdef floating* gh = <floating*> sp.gh
    cdef floating* h = <floating*> sp.h
    cdef floating* c = <floating*> sp.c
    cdef floating* rh = <floating*> sp.rh
    cdef floating* bx = <floating*> sp.bx
    cdef floating* bhn = <floating*> sp.bhn
    cdef floating* keep_g = <floating*> keep.gates
    cdef floating* keep_h = <floating*> keep.h
    cdef floating* keep_c = <floating*> keep.c
    cdef floating* y = <floating*> ends.y
    cdef UnitShared ex
    unit_shared(shared, d, B, &ex)
    cdef floating* h_prev = <floating*> ex.h_prev
    cdef floating* h_next = <floating*> ex.h_next
    cdef floating* rh_all = <floating*> ex.rh
    cdef floating* swap
    cdef floating* gblk
    cdef Panels panels
    panels.wp = panels.wp_n = panels.wp_ih = NULL
    cdef int arrivals = 0                      # this thread's arrivals at the barrier
    cdef Variant var = call.var[0]
    var.peep_offset = u0                       # my units of each peephole block

    # W_ih read once (one chunk of steps) and its share in panels beyond a
    # quarter of L2 (_ih_as_it_goes): its groups of panels are packed into L2
    # as the projection reaches them (panel_gemm_rows), not all of them
    # first, written out and read back (a thread's share of a GRU's W_ih with
    # H = 1024 is 6 MiB); token ids have no projection.
    cdef bint ih_rows = False
    if floating is float:
        if pw != NULL and U > 0 and not prepacked:
            # this thread's rows of W_hh and W_ih, packed once: they stay in its core's cache
            recurrent_panels(d, U, False, True, pw, &panels)
            if not shared_panels:
                ih_rows = (step_chunk >= n_steps and not tokens
                           and _ih_as_it_goes(ngates * U, I))
                _pack_unit_share(d, <const float*> w_ih, <const float*> w_hh, U, u0, &panels,
                                 not (ih_rows or tokens))

    if keep.w_hh != NULL:
        # (training) the weights backward will read: my units' rows of every
        # gate, W_hh's just read by the packing above, in this core's cache
        for q in range(ngates):
            memcpy(<floating*> keep.w_hh + (q * H + u0) * H, w_hh + (q * H + u0) * H,
                   U * H * sizeof(floating))
            memcpy(<floating*> keep.w_ih + (q * H + u0) * I, w_ih + (q * H + u0) * I,
                   U * I * sizeof(floating))
    for q in range(ngates):
        memcpy(bx + q * U, <const floating*> w.b_x + q * H + u0, U * sizeof(floating))
    memcpy(bhn, <const floating*> w.b_hn + u0, U * sizeof(floating))
    for j in range(B):
        b = rows.perm[j]
        memcpy(h + j * U, <const floating*> ends.h0 + b * H + u0, U * sizeof(floating))
        memcpy(h_prev + j * H + u0, <const floating*> ends.h0 + b * H + u0,
               U * sizeof(floating))
        if with_c:
            memcpy(c + j * U, <const floating*> ends.c0 + b * H + u0, U * sizeof(floating))
    _meet(team, &arrivals)

    s0 = 0
    while s0 < n_steps:
        s1 = s0 + step_chunk
        if s1 > n_steps:
            s1 = n_steps
        off = 0
        for s in range(s0, s1):
            n = rows.n_active[s]
            if tokens:
                for j in range(n):
                    t = _time(reverse, rows.lengths, j, s)
                    i = src.ids[t * src.i0 + rows.perm[j] * src.i1]
                    for q in range(ngates):
                        # my units of gate q of row i of x = W_ihᵀ (strides s1, s2)
                        copy_strided(gx + (off + j) * ldg + q * U,
                                     x + i * src.s1 + (q * H + u0) * src.s2, U, src.s2)
                    if keep.ids != NULL and team.tid == 0:
                        keep.ids[off + j] = i
            elif not training or team.tid == 0:
                for j in range(n):
                    t = _time(reverse, rows.lengths, j, s)
                    copy_strided(xp + (off + j) * I, x + t * src.s0 + rows.perm[j] * src.s1,
                                 I, src.s2)
            off += n
        if training and not tokens:
            _meet(team, &arrivals)  # the shared inputs are gathered
        # Gx[:, every gate, my units] = X_packed @ W_ih[those rows]ᵀ
        if U > 0 and not tokens:
            if floating is float:
                if ih_rows:
                    # gx = X_packed @ W_ih[rows u0..u0+U of every gate]ᵀ, packed as it goes
                    panel_gemm_rows(off, ngates * U, I, xp, I, <const float*> w_ih + u0 * I, I,
                                    U, H * I, panels.wp_ih, gx, ldg, False)
            if not ih_rows:
                unit_wt(off, 0, ngates, U, u0, H, I, xp, w_ih, panels.wp_ih, pre, True, qwork,
                        <floating> 0, gx, ldg)
        off = 0
        for s in range(s0, s1):
            n = rows.n_active[s]
            gblk = gx + off * ldg
            trace_mark(team.tid, 0)    # (FASTRNN_TRACE builds: the step's start, ...)
            if training:
                for j in range(n):
                    memcpy(keep_h + (off + j) * H + u0, h + j * U, U * sizeof(floating))
                    if with_c:
                        memcpy(keep_c + (off + j) * H + u0, c + j * U, U * sizeof(floating))
            for phase in range(forward_phases(kind)):
                p = forward_product(kind, phase)
                if p.reset_rows:
                    # the product reads r ⊙ h_{t-1} of every unit
                    for j in range(n):
                        memcpy(rh_all + j * H + u0, rh + j * U, U * sizeof(floating))
                    _meet(team, &arrivals)
                if U > 0:
                    if n <= 2:
                        _ask_rows(rh_all if p.reset_rows else h_prev, n, H * sizeof(floating),
                                  H * sizeof(floating))
                    # G[:, blocks q0.., my units] (+)= (h_{t-1} or r ⊙ h_{t-1}) W_hh[those rows]ᵀ
                    unit_wt(n, p.q0, p.nq, U, u0, H, H, rh_all if p.reset_rows else h_prev,
                            w_hh, panels.wp_n if p.n_panels else panels.wp, pre, False,
                            qwork, <floating> p.accumulate,
                            gh if p.own_target else gblk + p.q0 * U,
                            p.nq * U if p.own_target else ldg)
                    trace_mark(team.tid, 1)                      # its products done
                    cell_forward(kind, phase, n, U, gblk, ldg, gh, bx, bhn, h, c, rh, &var)
                    trace_mark(team.tid, 2)                      # its gate passes done
            for j in range(n):
                memcpy(h_next + j * H + u0, h + j * U, U * sizeof(floating))
                t = _time(reverse, rows.lengths, j, s)
                memcpy(y + t * ends.y0 + rows.perm[j] * ends.y1 + u0, h + j * U,
                       U * sizeof(floating))
                if training:
                    for q in range(blocks):
                        memcpy(keep_g + (off + j) * d.ldg + q * H + u0,
                               gblk + j * ldg + q * U, U * sizeof(floating))
            trace_mark(team.tid, 3)    # its arrival at the meeting
            _meet(team, &arrivals)  # h_t is complete before anyone reads it
            trace_mark(team.tid, 4)    # its departure
            swap = h_prev
            h_prev = h_next
            h_next = swap
            off += n
        s0 = s1

    for j in range(B):
        b = rows.perm[j]
        memcpy(<floating*> ends.h_n + b * H + u0, h + j * U, U * sizeof(floating))
        if with_c:
            memcpy(<floating*> ends.c_n + b * H + u0, c + j * U, U * sizeof(floating))
        for t in range(rows.lengths[j], rows.T):
            memset(y + t * ends.y0 + b * ends.y1 + u0, 0, U * sizeof(floating))


cdef void _unit_backward_worker(const LayerCall* call, floating* work, long long* waited,
                                fastrnn_spin_barrier* bar) noexcept nogil:
    """One thread of the unit-split BPTT: the hidden units [u0, u1).

    The storage is one block of all B rows (forward_layer_units in training).
    Each step, for each of the cell's backward phases, the thread turns
    dL/dh_t of its units into their columns of dG_t (the gate pass reads a
    contiguous copy of its units' stored activations), writes them to dg, and
    after a barrier computes its units of the phase's product (dh_{t-1} =
    dG_t @ W_hh[:, units], or dL/d(r ⊙ h_{t-1})) from every thread's
    columns. The call's Ends as in _backward_task; per thread its workspace
    (unit_back_space) and room for its slice of W_hhᵀ in panels, or none:
    BLAS.
    """
    cdef Team team_
    team_.tid = omp_get_thread_num()
    team_.nthreads = omp_get_num_threads()
    team_.bar = bar
    team_.waited = waited + team_.tid
    cdef const Team* team = &team_
    cdef const Dims* d = &call.dims
    cdef const Rows* rows = &call.rows
    cdef bint reverse = call.reverse[0] != 0
    cdef const Weights* w = &call.w[0]
    cdef const Keep* keep = &call.keep[0]
    cdef const Ends* ends = &call.ends[0]
    cdef Py_ssize_t N = call.N
    cdef floating* dg = <floating*> call.dg[0]
    cdef floating* ws = work + team.tid * call.work_per
    cdef float* pw = call.panels + team.tid * call.panels_per if call.panels != NULL else NULL
    cdef int kind = d.kind
    cdef Py_ssize_t H = d.H, B = rows.B
    cdef Py_ssize_t ngates = gates(kind)
    cdef Py_ssize_t u0 = _units_from(team, H)
    cdef Py_ssize_t U = _units(team, H)
    cdef Py_ssize_t ablk = gate_blocks(kind)                         # stored blocks
    cdef Py_ssize_t lda_g = d.ldg, ldd_g = d.ldd
    cdef Py_ssize_t lda_l = ablk * U, ldd_l = grad_blocks(kind) * U
    cdef Py_ssize_t s, j, k, q, n, off, t, q1
    cdef Py_ssize_t q0 = 0
    cdef int phase
    cdef Product p
    cdef bint with_c = has_cell_state(kind)
    cdef UnitBackSpace sp
    unit_back_space(ws, d, B, U, &sp)
    cdef floating* dh = <floating*> sp.dh
    cdef floating* dc = <floating*> sp.dc
    cdef floating* al = <floating*> sp.a
    cdef floating* hl = <floating*> sp.hp
    cdef floating* cl = <floating*> sp.cp
    cdef floating* dgl = <floating*> sp.dg
    cdef floating* drh = <floating*> sp.drh
    cdef const floating* a = <const floating*> keep.gates
    cdef const floating* hp = <const floating*> keep.h
    cdef const floating* cp = <const floating*> keep.c
    cdef const floating* dy = <const floating*> ends.y
    cdef const floating* w_hh = <const floating*> w.w_hh
    cdef const floating* src
    cdef Panels panels
    panels.wp = panels.wp_n = NULL
    cdef Py_ssize_t first = panel_gate_blocks(kind)
    cdef int arrivals = 0                      # this thread's arrivals at the barrier
    cdef Variant var = call.var[0]
    var.peep_offset = u0                       # my units of each peephole block

    if floating is float:
        if pw != NULL and U > 0:
            # my columns of W_hh, transposed into panels once
            recurrent_panels(d, U, True, False, pw, &panels)
            pack_panels(<const float*> w_hh + u0, U, first * H, 1, H, panels.wp)
            if panels.wp_n != NULL:
                pack_panels(<const float*> w_hh + first * H * H + u0, U, (ngates - first) * H,
                            1, H, panels.wp_n)

    for j in range(B):
        memcpy(dh + j * U, <const floating*> ends.h0 + rows.perm[j] * H + u0,
               U * sizeof(floating))
        if with_c:
            memcpy(dc + j * U, <const floating*> ends.c0 + rows.perm[j] * H + u0,
                   U * sizeof(floating))

    off = N
    for s in range(rows.lengths[0] - 1, -1, -1):
        n = rows.n_active[s]
        off -= n
        for j in range(n):
            t = _time(reverse, rows.lengths, j, s)
            src = dy + t * ends.y0 + rows.perm[j] * ends.y1 + u0
            for k in range(U):
                dh[j * U + k] += src[k]
            for q in range(ablk):
                memcpy(al + j * lda_l + q * U, a + (off + j) * lda_g + q * H + u0,
                       U * sizeof(floating))
            memcpy(hl + j * U, hp + (off + j) * H + u0, U * sizeof(floating))
            if with_c:
                memcpy(cl + j * U, cp + (off + j) * H + u0, U * sizeof(floating))
        for phase in range(backward_phases(kind)):
            cell_backward(kind, phase, n, U, al, hl, cl, drh, dgl, dh, dc, &var)
            # my columns of the blocks of dG_t this gate pass wrote
            q1 = backward_written(kind, phase, &q0)
            for j in range(n):
                for q in range(q0, q1):
                    memcpy(dg + (off + j) * ldd_g + q * H + u0, dgl + j * ldd_l + q * U,
                           U * sizeof(floating))
            _meet(team, &arrivals)  # every column of them is written
            p = backward_product(kind, phase)
            if n <= 2:
                _ask_rows(dg + off * ldd_g + p.src0 * H, n, p.nq * H * sizeof(floating),
                          ldd_g * sizeof(floating))
            # dh_{t-1}[:, mine] (or dL/d(r ⊙ h_{t-1})) (+)= dG_t[:, blocks src0..] @ W_hh[.., mine]
            step_w(n, U, p.nq * H, dg + off * ldd_g + p.src0 * H, ldd_g,
                   w_hh + p.q0 * H * H + u0, H, panels.wp_n if p.n_panels else panels.wp,
                   <floating> p.accumulate, drh if p.reset_rows else dh, U)

    for j in range(B):
        memcpy(<floating*> ends.h_n + rows.perm[j] * H + u0, dh + j * U, U * sizeof(floating))
        if with_c:
            memcpy(<floating*> ends.c_n + rows.perm[j] * H + u0, dc + j * U,
                   U * sizeof(floating))


def step_trace():
    """The per-step time stamps of the unit split's forward since the last
    read, then cleared: None unless these kernels were built with
    FASTRNN_TRACE=1 (see fastrnn/_trace.h), else a list with one int64 array
    (steps, 5) per traced thread (the first two of a team): each step's
    start, its last product done, its last gate pass done, its arrival at
    the end-of-step meeting and its departure, in the ticks of trace_clock()."""
    if not FASTRNN_TRACE:
        return None
    out = []
    cdef int t, rows
    for t in range(TRACE_THREADS):
        rows = trace_count(t)
        arr = np.zeros(rows * TRACE_POINTS, np.int64)
        if rows:
            arr[:] = <long long[:rows * TRACE_POINTS]> <long long*> trace_stamps(t)
        out.append(arr.reshape(rows, TRACE_POINTS))
    trace_clear()
    return out


def trace_ticks():
    """The trace's clock now (time-stamp counter ticks on x86, else ns): two
    readings around a known interval give its rate."""
    return trace_clock()


# the largest team a unit-split call runs (the spin barrier's slots)
TEAM_MAX = BARRIER_SLOTS


def unit_shares(int kind, const float[:, ::1] w_ih, const float[:, ::1] w_hh, int team):
    """Every thread's share of one direction's weights, W_ih (G, I) and W_hh
    (G, H), packed as the unit split's threads pack them in a team of
    ``team``: the ``shares`` argument of forward_layer_units (float32, team
    x the per-thread size)."""
    cdef Py_ssize_t G = w_ih.shape[0], H = w_hh.shape[1]
    if H < 1 or G != gates(kind) * H or w_hh.shape[0] != G:
        raise ValueError(f"unit_shares: W_ih must be ({gates(kind)} H, I) and W_hh "
                         f"({gates(kind)} H, H), got ({w_ih.shape[0]}, {w_ih.shape[1]}) "
                         f"and ({w_hh.shape[0]}, {w_hh.shape[1]})")
    if not 1 <= team <= BARRIER_SLOTS:
        raise ValueError(f"unit_shares: team must be between 1 and {BARRIER_SLOTS}, got {team}")
    cdef Dims d = make_dims(kind, w_ih.shape[1], H)
    cdef Py_ssize_t per = recurrent_panels(&d, H, False, True, NULL, NULL)
    out = aligned_empty(team * per, np.float32)
    out[:] = 0
    cdef float[::1] o = out
    cdef Panels panels
    cdef Py_ssize_t t, u0, U
    with nogil:
        for t in range(team):
            u0 = _unit_bound(t, team, H, False)
            U = _unit_bound(t + 1, team, H, False) - u0
            if U > 0:
                recurrent_panels(&d, U, False, True, &o[0] + t * per, &panels)
                _pack_unit_share(&d, &w_ih[0, 0], &w_hh[0, 0], U, u0, &panels, True)
    out.flags.writeable = False
    return out


def forward_layer_units(int kind, const floating[:, :, :] x, weights, plan, ends,
                        Py_ssize_t step_chunk, int num_threads, bint pack_weights=True,
                        keep=None, ids=None, variant=None, prepacked=None, shares=None,
                        weights_into=None):
    """One direction of one layer with its hidden units split across threads.

    For small batches (see _unit_worker). As forward_layer for one direction:
    weights = (w_ih (G, I), w_hh (G, H), b_ih, b_hh (1, G)); plan = (reverse
    (bint), lengths, perm, n_active); ends = (h0, c0, y, h_n, c_n): h0, c0,
    h_n, c_n (B, H), y (T, B, H) or a view of y's columns for this direction
    (unit stride on the last axis); keep = (keep_x (N, I), keep_gates (N,
    gate_stride), keep_h, keep_c (N, H), keep_ids (N,)) for a single block
    (step_chunk is then ignored); ids (T, B) with x = W_ihᵀ (1, I, G).
    pack_weights=False keeps BLAS on the weights as they are (cheaper than
    packing for a step or two). prepacked (float32, inference): (W_ih's,
    W_hh's) weights packed once, each (weight type, panels, padded scales
    (int8) or None) with every gate block packed by
    _panels.pack_weight_panels (W_ih's None: none, e.g. token input): the
    products read them and the call packs nothing. shares (float32
    inference, panels on): (team, unit_shares(kind, W_ih, W_hh, team)): a
    team of that size reads its threads' panels there instead of packing
    them (another size, when the team policy runs the call alone, packs).
    UnitCall binds all but the arrays of a call once. weights_into (with
    keep): (w_ih (G, I), w_hh (G, H)) C-contiguous arrays that receive a copy
    of weights[0] and weights[1], each thread copying its units' rows (the
    weights the training forward ran with, for backward).
    """
    cdef const floating[:, ::1] b_ih = weights[2]
    cdef const floating[:, ::1] b_hh = weights[3]
    cdef const floating[:, ::1] h0 = ends[0]
    cdef const floating[:, ::1] c0 = ends[1]
    cdef floating[:, :, ::1] y = ends[2]
    cdef floating[:, ::1] h_n = ends[3]
    cdef floating[:, ::1] c_n = ends[4]
    cdef floating[:, ::1] keep_x = None
    cdef floating[:, ::1] keep_gates = None
    cdef floating[:, ::1] keep_h = None
    cdef floating[:, ::1] keep_c = None
    cdef Py_ssize_t[::1] keep_ids = None
    cdef floating[:, ::1] into_ih = None
    cdef floating[:, ::1] into_hh = None
    if keep is not None:
        keep_x, keep_gates, keep_h, keep_c, keep_ids = keep
    if weights_into is not None:
        if keep is None:
            raise ValueError("forward_layer_units: weights_into is for training calls "
                             "(with keep)")
        into_ih, into_hh = weights_into
    cdef const Py_ssize_t[:, :] id_v = ids
    cdef bint tokens = ids is not None
    cdef bint training = keep is not None
    cdef bint with_c = has_cell_state(kind)
    cdef Py_ssize_t isz = sizeof(floating)
    cdef LayerCall call
    _units_setup(&call, <floating*> NULL, kind, weights, plan,
                 id_v.shape[0] if tokens else x.shape[0], step_chunk, num_threads,
                 training, tokens, variant, prepacked, shares)
    _check_forward(&call, 1, &x.shape[0], id_v, &h0.shape[0], &c0.shape[0], &y.shape[0],
                   &h_n.shape[0], &c_n.shape[0], _keep_shapes(keep), True)
    call.src[0] = _call_source(&x[0, 0, 0], x.strides[0] // isz, x.strides[1] // isz,
                               x.strides[2] // isz, &id_v[0, 0] if tokens else NULL,
                               id_v.strides[0] // sizeof(Py_ssize_t) if tokens else 0,
                               id_v.strides[1] // sizeof(Py_ssize_t) if tokens else 0)
    call.ends[0] = _call_ends(&h0[0, 0], &c0[0, 0] if with_c else NULL, &h_n[0, 0],
                              &c_n[0, 0] if with_c else NULL, &y[0, 0, 0],
                              y.strides[0] // isz, y.strides[1] // isz)
    call.keep[0] = _no_keep()
    if training:
        call.keep[0].x = &keep_x[0, 0] if not tokens else NULL
        call.keep[0].gates = &keep_gates[0, 0]
        call.keep[0].h = &keep_h[0, 0]
        call.keep[0].c = &keep_c[0, 0] if with_c else NULL
        call.keep[0].ids = &keep_ids[0] if tokens else NULL
    if into_ih is not None:
        if not (_is(&into_ih.shape[0], call.dims.G, call.dims.n_in)
                and _is(&into_hh.shape[0], call.dims.G, call.dims.H)):
            raise ValueError(f"forward_layer_units: weights_into must be arrays of shapes "
                             f"({call.dims.G}, {call.dims.n_in}) and ({call.dims.G}, "
                             f"{call.dims.H}), got ({into_ih.shape[0]}, {into_ih.shape[1]}) and "
                             f"({into_hh.shape[0]}, {into_hh.shape[1]})")
        call.keep[0].w_ih = &into_ih[0, 0]
        call.keep[0].w_hh = &into_hh[0, 0]
    cdef void* work = _units_scratch(&call, &b_ih[0, 0], &b_hh[0, 0], num_threads,
                                     pack_weights, prepacked is not None)
    _run_team(<void*> &call, work, num_threads, False, floating is double)


cdef object _units_setup(LayerCall* call, const floating* like, int kind, weights, plan,
                         Py_ssize_t steps, Py_ssize_t step_chunk, int num_threads,
                         bint training, bint tokens, variant, prepacked, shares):
    """What a unit-split forward call's weights, plan and options fix, every
    argument checked: its sizes and sorted rows, W_ih and W_hh, the cell
    variant, the prepacked weights or the shares and the workspaces' sizes
    (like: NULL of the call's precision). The caller sets the input, the
    ends and the storage, then _units_scratch. Returns what call points into
    (for UnitCall to hold)."""
    cdef const floating[:, ::1] w_ih = weights[0]
    cdef const floating[:, ::1] w_hh = weights[1]
    cdef const floating[:, ::1] b_ih = weights[2]
    cdef const floating[:, ::1] b_hh = weights[3]
    cdef const Py_ssize_t[::1] lengths = plan[1]
    cdef const Py_ssize_t[::1] perm = plan[2]
    cdef const Py_ssize_t[::1] n_active = plan[3]
    _check_rows(lengths, perm, n_active, steps)
    _call_rows(call, kind, w_ih.shape[1], w_hh.shape[1], lengths, perm, n_active, steps)
    _check_weights(call, 1, &w_ih.shape[0], &w_hh.shape[0], &b_ih.shape[0], &b_hh.shape[0],
                   True)
    cdef Py_ssize_t H = call.dims.H, B = call.rows.B
    call.step_chunk = call.rows.T if training else step_chunk
    call.reverse[0] = plan[0]
    call.w[0] = _call_weights(&w_ih[0, 0], &w_hh[0, 0], NULL, NULL)
    cdef const floating[:, ::1] peep = None if variant is None else variant[2]
    _call_variants(call, variant, peep, 1)
    if prepacked is not None:
        if floating is double or training:
            raise ValueError("prepacked weights are for float32 inference")
        _call_prepacked(call, prepacked, tokens, 0)
    # per thread, sized for a team of one (any share of the units fits)
    call.work_per = unit_space(<floating*> NULL, &call.dims, B, call.step_chunk * B, NULL)
    call.panels_per = recurrent_panels(&call.dims, H, False, True, NULL, NULL)
    cdef const float[::1] share_v
    if shares is not None:
        if (not isinstance(shares, tuple) or len(shares) != 2
                or not 1 <= shares[0] <= BARRIER_SLOTS
                or not _packed_array(shares[1], np.float32, shares[0] * call.panels_per)):
            raise ValueError(f"shares: (team, {call.panels_per} float32 panels per thread "
                             f"of the team), from unit_shares")
        if floating is double or training or prepacked is not None:
            raise ValueError("shares are for float32 inference without prepacked weights")
        if panels_on():
            share_v = shares[1]
            call.shares = &share_v[0]
            call.shares_team = shares[0]
    return (weights, plan, variant, prepacked, shares)


cdef void* _units_scratch(LayerCall* call, const floating* b_ih, const floating* b_hh,
                          int num_threads, bint pack_weights, bint prepacked) except NULL:
    """This thread's scratch for a unit-split forward call set up by
    _units_setup: its kernel biases from b_ih and b_hh (G,), read now, the
    team's exchange, the packed panels, the dot products' rows; returns the
    workspace."""
    cdef Py_ssize_t B = call.rows.B
    _bias_scratch(call, b_ih, b_hh, 1)
    if prepacked:
        # per thread: B rows of h_{t-1}, or a chunk's inputs
        _call_qwork(call, 1, B, call.step_chunk * B, num_threads)
    dtype = np.float32 if floating is float else np.float64
    cdef void* work = _scratch_data("work", num_threads * call.work_per, dtype)
    call.shared = _scratch_data("shared", unit_shared(<floating*> NULL, &call.dims, B, NULL),
                                dtype)
    if floating is float:
        if panels_on() and pack_weights:
            call.panels = <float*> _scratch_data("panels", num_threads * call.panels_per,
                                                 np.float32)
    return work


cdef class UnitCall:
    """One layer's unit-split float32 inference call bound to its weights and
    to one input signature (steps, rows): what forward_layer_units works out
    from its weights, plan and options, done once (_units_setup), so a call
    converts only its input and ends, time-major, or batch-major with
    batch_first (read and written in place through their strides: no
    transposed copy). The weights and biases are read at every call
    (in-place updates are seen); the caller holds a UnitCall
    only while its weight arrays stay the same objects and its plan, team
    size and options stay right for the call (fastrnn._engine.bound_call)."""
    cdef LayerCall call
    cdef object held
    cdef const float* b_ih
    cdef const float* b_hh
    cdef int num_threads
    cdef bint pack_weights, prepacked, batch_first
    cdef Py_ssize_t shape_x[3]
    cdef Py_ssize_t shape_y[3]
    cdef Py_ssize_t shape_h[2]

    def __init__(self, int kind, weights, plan, Py_ssize_t steps, Py_ssize_t step_chunk,
                 int num_threads, bint pack_weights=True, variant=None, prepacked=None,
                 shares=None, bint batch_first=False):
        """As forward_layer_units' arguments (float32, inference, input of
        (steps, B, I) floats, or (B, steps, I) with batch_first)."""
        cdef const float[:, ::1] b_ih = weights[2]
        cdef const float[:, ::1] b_hh = weights[3]
        self.held = _units_setup(&self.call, <float*> NULL, kind, weights, plan, steps,
                                 step_chunk, num_threads, False, False, variant, prepacked,
                                 shares)
        self.b_ih, self.b_hh = &b_ih[0, 0], &b_hh[0, 0]
        self.num_threads = num_threads
        self.pack_weights, self.prepacked = pack_weights, prepacked is not None
        self.batch_first = batch_first
        cdef Py_ssize_t T = self.call.rows.T, B = self.call.rows.B
        if batch_first:
            self.shape_x[:] = [B, T, self.call.dims.n_in]
            self.shape_y[:] = [B, T, self.call.dims.H]
        else:
            self.shape_x[:] = [T, B, self.call.dims.n_in]
            self.shape_y[:] = [T, B, self.call.dims.H]
        self.shape_h[:] = [B, self.call.dims.H]

    def run(self, x, h0, c0, y, h_n, c_n):
        """Run the call: x (T, B, I) in; h0, c0 (B, H) in (RNN and GRU: c0
        unused, pass h0); y (T, B, H), h_n, c_n (B, H) out (RNN and GRU: c_n
        unused, pass h_n); x and y (B, T, ·) with batch_first; every one a
        C-contiguous native float32 array of exactly that shape (else
        ValueError), the outputs writable."""
        cdef LayerCall call = self.call       # (each call fills its own copy)
        cdef BoundArrays a
        _bound_arrays("UnitCall.run", x, h0, c0, y, h_n, c_n, self.shape_x, 2, self.shape_h,
                      self.shape_y, self.batch_first, &a)
        cdef bint with_c = has_cell_state(call.dims.kind)
        call.src[0] = _call_source(a.x, a.xt, a.xb, 1, NULL, 0, 0)
        call.ends[0] = _call_ends(a.h0, a.c0 if with_c else NULL, a.h_n,
                                  a.c_n if with_c else NULL, a.y, a.yt, a.yb)
        call.keep[0] = _no_keep()
        cdef void* work = _units_scratch(&call, self.b_ih, self.b_hh, self.num_threads,
                                         self.pack_weights, self.prepacked)
        _run_team(<void*> &call, work, self.num_threads, False, False)


cdef void _call_prepacked(LayerCall* call, prepacked, bint tokens, Py_ssize_t dd) except *:
    """call.pre[dd] from a prepacked tuple of direction dd (forward_layer_units'
    prepacked, one of forward_layer's), every size checked (W_ih's panels are
    not read for token input)."""
    cdef Py_ssize_t G = gates(call.dims.kind), H = call.dims.H, I = call.dims.n_in
    cdef Py_ssize_t Hp = (H + PANEL - 1) // PANEL * PANEL
    if not isinstance(prepacked, tuple) or len(prepacked) != 2:
        raise ValueError("prepacked: (W_ih's (weight type, panels, scales, sums), W_hh's)")
    parts = []
    for name, part, K in (("W_ih", prepacked[0], I), ("W_hh", prepacked[1], H)):
        if part is None and name == "W_ih":
            parts.append((0, None, None, None))
            continue
        if not isinstance(part, tuple) or len(part) != 4:
            raise ValueError(f"prepacked: {name}'s (weight type, panels, scales, sums)")
        wt, arr, scale, sums = part
        if wt >= INT8_DOT and not dot_on(wt):
            raise ValueError(f"prepacked: {name} on dot products this CPU (or the selected "
                             f"panel variant) lacks")
        if wt not in _WEIGHT_DTYPES:
            raise ValueError(f"prepacked: {name}'s weight type must be one of "
                             f"{sorted(_WEIGHT_DTYPES)}, got {wt!r}")
        dtype = _WEIGHT_DTYPES[wt]
        size = G * panel_weights(H, K, wt)
        if not _packed_array(arr, dtype, size):
            raise ValueError(f"prepacked: {name}'s panels must be a contiguous {dtype} array "
                             f"of {size} weights")
        int8 = wt in (WEIGHT_TYPES["int8"], INT8_DOT)
        if (scale is None) == int8 or (sums is None) == (wt == INT8_DOT):
            raise ValueError(f"prepacked: {name}'s scales are for int8 weights only (and "
                             f"required by them), its column sums for int8 dot products")
        for what, arr, dt in (("scales", scale, np.float32), ("sums", sums, np.int32)):
            if arr is not None and (not isinstance(arr, np.ndarray) or arr.dtype != dt
                                    or arr.shape != (G * Hp,) or not arr.flags.c_contiguous):
                raise ValueError(f"prepacked: {name}'s {what} must be {np.dtype(dt)} of shape "
                                 f"({G * Hp},)")
        parts.append(part)
    cdef Prepacked* pre = &call.pre[dd]
    pre.Hp = Hp
    pre.ih_wt, pre.hh_wt = parts[0][0], parts[1][0]
    # (the caller holds the arrays for the call)
    pre.ih = _address(parts[0][1]) if not tokens else NULL
    pre.ih_scale = <const float*> _address(parts[0][2]) if not tokens else NULL
    pre.ih_sums = <const int*> _address(parts[0][3]) if not tokens else NULL
    pre.hh = _address(parts[1][1])
    pre.hh_scale = <const float*> _address(parts[1][2])
    pre.hh_sums = <const int*> _address(parts[1][3])


cdef void _call_qwork(LayerCall* call, Py_ssize_t D, Py_ssize_t rows, Py_ssize_t chunk_rows,
                      Py_ssize_t n_workers) except *:
    """call.qwork: per worker (thread or task), the rows of a product prepared
    for the dot products (dot_work) of any direction's prepacked weights: up
    to ``rows`` rows of h_{t-1}, or ``chunk_rows`` of a chunk's inputs. NULL
    without dot products."""
    cdef Py_ssize_t dd, need = 0
    for dd in range(D):
        if call.pre[dd].hh_wt >= INT8_DOT:
            need = max(need, dot_work(call.pre[dd].hh_wt, rows, call.dims.H))
        if call.pre[dd].ih_wt >= INT8_DOT:
            need = max(need, dot_work(call.pre[dd].ih_wt, chunk_rows, call.dims.n_in))
    if need > 0:
        call.qwork_per = need
        call.qwork = <unsigned char*> _address(_scratch("qwork", n_workers * need, np.uint8))


cdef bint _packed_array(arr, dtype, Py_ssize_t size):
    """Whether arr is a C-contiguous array of ``size`` elements of dtype: weights
    packed once, which a kernel reads as they are."""
    return (isinstance(arr, np.ndarray) and arr.dtype == dtype and arr.size == size
            and arr.flags.c_contiguous)


cdef const void* _address(arr):
    """The first byte of a contiguous array, NULL for None."""
    if arr is None:
        return NULL
    cdef const unsigned char[::1] raw = arr.reshape(-1).view(np.uint8)
    return &raw[0]


def backward_layer_units(int kind, const floating[:, ::1] w_hh, plan, stored,
                         const floating[:, :, :] dy, ends, floating[:, ::1] dgates,
                         int num_threads, variant=None):
    """BPTT through one direction with its hidden units split across threads.

    As backward_layer for one direction: plan = (reverse (bint), lengths,
    perm, n_active); stored = (gates (N, gate_stride), h_prev, c_prev (N,
    H)), what forward_layer_units kept (one block of all B rows); dy: (T, B,
    H) view of this direction's columns (unit stride on its last axis); ends
    = (dh_n, dc_n, dh0, dc0), (B, H); dgates: (N, grad_stride). See
    _unit_backward_worker.
    """
    cdef bint reverse = plan[0]
    cdef const Py_ssize_t[::1] lengths = plan[1]
    cdef const Py_ssize_t[::1] perm = plan[2]
    cdef const Py_ssize_t[::1] n_active = plan[3]
    cdef const floating[:, ::1] gates = stored[0]
    cdef const floating[:, ::1] h_prev = stored[1]
    cdef const floating[:, ::1] c_prev = stored[2]
    cdef const floating[:, ::1] dh_n = ends[0]
    cdef const floating[:, ::1] dc_n = ends[1]
    cdef floating[:, ::1] dh0 = ends[2]
    cdef floating[:, ::1] dc0 = ends[3]
    cdef bint with_c = has_cell_state(kind)
    cdef Py_ssize_t isz = sizeof(floating)
    cdef LayerCall call
    _check_rows(lengths, perm, n_active, dy.shape[0])
    _call_rows(&call, kind, 0, w_hh.shape[1], lengths, perm, n_active, dy.shape[0])
    cdef Py_ssize_t H = call.dims.H, B = call.rows.B
    _check_backward(&call, 1, &w_hh.shape[0], &dy.shape[0], &gates.shape[0],
                    &h_prev.shape[0], &c_prev.shape[0], &dh_n.shape[0], &dc_n.shape[0],
                    &dh0.shape[0], &dc0.shape[0], &dgates.shape[0], True)
    call.N = gates.shape[0]
    call.reverse[0] = reverse
    call.w[0] = _call_weights(NULL, &w_hh[0, 0], NULL, NULL)
    cdef const floating[:, ::1] peep = None if variant is None else variant[2]
    _call_variants(&call, variant, peep, 1)
    call.keep[0] = _no_keep()
    # (read only in backward)
    call.keep[0].gates = <void*> &gates[0, 0]
    call.keep[0].h = <void*> &h_prev[0, 0]
    call.keep[0].c = <void*> &c_prev[0, 0] if with_c else NULL
    call.ends[0] = _call_ends(&dh_n[0, 0], &dc_n[0, 0] if with_c else NULL, &dh0[0, 0],
                              &dc0[0, 0] if with_c else NULL, <void*> &dy[0, 0, 0],
                              dy.strides[0] // isz, dy.strides[1] // isz)
    call.dg[0] = &dgates[0, 0]
    # per thread, sized for a team of one (any share of the units fits)
    call.work_per = unit_back_space(<floating*> NULL, &call.dims, B, H, NULL)
    call.panels_per = recurrent_panels(&call.dims, H, True, False, NULL, NULL)
    dtype = np.float32 if floating is float else np.float64
    work_arr = _scratch("work", num_threads * call.work_per, dtype)
    cdef floating[::1] work = work_arr
    if floating is float:
        if panels_on():
            call.panels = <float*> _scratch_data("panels", num_threads * call.panels_per,
                                                 np.float32)
    _run_team(<void*> &call, <void*> &work[0], num_threads, True, floating is double)


cdef void _run_team(void* call, void* work, int num_threads, bint backward,
                    bint wide) noexcept:
    """Run the call's unit-split workers as a team of num_threads, or on this
    thread alone while the team's threads keep coming late (_team.h), and
    report the time the team lost waiting: while one thread is off its core
    (taken by another pool's spinning thread, or by another process) the
    others wait, so the sum of their waits over (team size - 1) is the time
    the call made no progress."""
    # at most the spin barrier's slots (a split over more threads gives each few units)
    cdef int n = team_size(min(num_threads, BARRIER_SLOTS))
    cdef int used = 1
    cdef int* used_at = &used                  # (a name assigned in the region is private)
    cdef long long start, lost = 0
    cdef long long waited[BARRIER_SLOTS]       # each thread's waits
    cdef int i
    memset(waited, 0, n * sizeof(long long))
    cdef fastrnn_spin_barrier bar
    spin_init(&bar, n)
    with nogil:
        start = now_ns()
        with parallel(num_threads=n):
            if omp_get_thread_num() == 0:
                used_at[0] = omp_get_num_threads()
            if wide:
                if backward:
                    _unit_backward_worker(<const LayerCall*> call, <double*> work, waited, &bar)
                else:
                    _unit_worker(<const LayerCall*> call, <double*> work, waited, &bar)
            else:
                if backward:
                    _unit_backward_worker(<const LayerCall*> call, <float*> work, waited, &bar)
                else:
                    _unit_worker(<const LayerCall*> call, <float*> work, waited, &bar)
        for i in range(used):
            lost += waited[i]
        if used > 1:
            lost = lost // (used - 1)
        team_report(used, lost, now_ns() - start)


def team_probe(str action, int nthreads=2, long long waited_ns=0, long long total_ns=0):
    """The team policy of _team.h, for the tests and bench.coexist: "size"
    returns the team size a unit-split call asking for nthreads gets now (and
    counts the call); "report" records such a call; "counts" returns
    {"team": team calls, "late": of them late, "alone": calls run alone}
    since the last "reset", which also forgets every report."""
    if action == "size":
        return team_size(nthreads)
    if action == "report":
        team_report(nthreads, waited_ns, total_ns)
        return None
    if action == "counts":
        return {"team": team_count(0), "late": team_count(1), "alone": team_count(2)}
    if action == "reset":
        team_reset()
        return None
    raise ValueError(f"action must be 'size', 'report', 'counts' or 'reset', got {action!r}")
