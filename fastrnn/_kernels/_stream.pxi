# The streaming step: one step of one layer and direction, no batch plan or
# packing (a cell, or a one-step call of a layer with few rows): on the
# calling thread, or for one float32 row split by hidden units across the
# threads (_split_step); a layer's one-step call runs every layer and
# direction's step in one entry (stream_layers). Included by
# _recurrent_impl.pxi.


cdef inline Py_ssize_t _step_space(floating* base, const LayerCall* call, floating** b_x,
                                   floating** b_hn, floating** task) noexcept nogil:
    """The step's workspace: the kernel biases b_x (G) and b_hn (H), then the
    space of the one forward task (task_space with the call's rows_max and
    cap, as _forward_task slices it). Sizes it (out pointers NULL) or slices it."""
    cdef Py_ssize_t head = call.dims.G + call.dims.H
    if b_x != NULL:
        b_x[0] = base
        b_hn[0] = base + call.dims.G
        task[0] = base + head
    return head + task_space(<floating*> NULL, &call.dims, call.rows_max, call.cap, NULL)


cdef void _step_run(LayerCall* call, const floating* b_ih, const floating* b_hh,
                    floating* ws) noexcept nogil:
    """One step for the call's B rows on this thread: the kernel biases into
    ws, then one forward task over all rows, one block of one step."""
    cdef floating* b_x
    cdef floating* b_hn
    cdef floating* task
    _step_space(ws, call, &b_x, &b_hn, &task)
    combine_biases(call.dims.kind, call.dims.G, call.dims.H, b_ih, b_hh, b_x, b_hn)
    call.w[0].b_x = b_x
    call.w[0].b_hn = b_hn
    _forward_task(call, 0, task)


# weights (bytes) from which a one-row float32 step splits its hidden units
# across the threads (CellKernel._shares). python -m bench.cell_split times
# both ways; one run on an AMD EPYC Zen 4 (1 MiB L2), LSTMCell step split /
# on the calling thread: 128 KiB of weights (H=64) 1.06, 288 KiB 0.90, 512
# KiB 0.74, 2 MiB 0.57.
SPLIT_STEP_BYTES = 192 << 10
cdef Py_ssize_t _split_step_bytes = SPLIT_STEP_BYTES


def set_split_step_bytes(Py_ssize_t nbytes):
    """Set the weights (bytes) from which a one-row step splits across the
    threads; returns the previous value (tests and bench.cell_split)."""
    global _split_step_bytes
    old = _split_step_bytes
    _split_step_bytes = nbytes
    return old


cdef Py_ssize_t _split_step_most = 0         # 0: the CPU plan's (CellKernel._shares)


def set_split_step_most(Py_ssize_t nbytes):
    """Set the weights (bytes) up to which a one-row step splits across the
    threads, 0 for the CPU plan's bound (half the L3); returns the previous
    value (bench.cell_split times the split at every size)."""
    global _split_step_most
    old = _split_step_most
    _split_step_most = nbytes
    return old


cdef inline Py_ssize_t _split_most(int shares) noexcept nogil:
    """The most bytes of weights a one-row step splits across ``shares``
    threads: set_split_step_most's, else half the CPU plan's L3 (unknown:
    every thread's L2)."""
    if _split_step_most > 0:
        return _split_step_most
    return cache_l3() // 2 if cache_l3() > 0 else shares * cache_l2()


def split_step_bounds():
    """(fewest, most) bytes of weights between which a one-row float32 step
    splits across two threads (the CPU plan's caches)."""
    return _split_step_bytes, _split_most(2)


cdef void _units_step(const LayerCall* call, const float* b_x, const float* b_hn,
                      Py_ssize_t share, Py_ssize_t shares, float* ws) noexcept nogil:
    """Share ``share`` of ``shares`` of one step of one row: the hidden units
    [u0, u1) of every gate, into their columns of h1 (and c1).

    A single step needs no exchange between the shares: each reads x and
    h_{t-1} of every unit and writes only its own units. The products are
    row dot products on the weights as stored (rows_dot), each row's sum in
    one order: any split gives the same bits. ws: this share's UnitSpace
    (one row; sized for a share of every unit). x: unit stride, or a token
    id (call.src[0].ids), whose projection is read from W_ih's columns."""
    cdef const Dims* d = &call.dims
    cdef const Ends* ends = &call.ends[0]
    cdef const float* x = <const float*> call.src[0].x
    cdef const float* w_ih = <const float*> call.w[0].w_ih
    cdef const float* w_hh = <const float*> call.w[0].w_hh
    cdef const float* h0 = <const float*> ends.h0
    cdef const float* c0 = <const float*> ends.c0
    cdef int kind = d.kind
    cdef Py_ssize_t H = d.H, I = d.n_in
    cdef Py_ssize_t u0 = H * share // shares
    cdef Py_ssize_t U = H * (share + 1) // shares - u0
    cdef Py_ssize_t ngates = gates(kind), q
    cdef bint with_c = has_cell_state(kind)
    cdef Product p = forward_product(kind, 0)
    cdef UnitSpace sp
    if U == 0:
        return
    unit_space(ws, d, 1, 1, &sp)
    cdef float* gx = <float*> sp.gx
    cdef float* target = <float*> sp.gh if p.own_target else gx + p.q0 * U
    cdef float* h = <float*> sp.h
    cdef float* c = <float*> sp.c
    cdef float* bx = <float*> sp.bx
    cdef const Weights* w = &call.w[0]
    cdef bint bf16 = w.q16 == 2
    cdef const Py_ssize_t* ids = call.src[0].ids
    for q in range(ngates):
        memcpy(bx + q * U, b_x + q * H + u0, U * sizeof(float))
        # Gx[q, my units] = W_ih[those rows of gate q] x (16-bit weights: widened)
        if ids != NULL:
            # token ids[0]: column ids[0] of those rows (the float32 values, a
            # 16-bit layer's widened ones: the same)
            copy_strided(gx + q * U, w_ih + (q * H + u0) * I + ids[0], U, I)
        elif w.q16:
            rows_dot16(U, I, w.q_ih + (q * H + u0) * I, I, x, gx + q * U, False, bf16)
        else:
            rows_dot(U, I, w_ih + (q * H + u0) * I, I, x, gx + q * U, False)
    for q in range(p.nq):
        # G (or Gh)[q0 + q, my units] (+)= W_hh[those rows of gate q0 + q] h_{t-1}
        if w.q16:
            rows_dot16(U, H, w.q_hh + ((p.q0 + q) * H + u0) * H, H, h0, target + q * U,
                       p.accumulate, bf16)
        else:
            rows_dot(U, H, w_hh + ((p.q0 + q) * H + u0) * H, H, h0, target + q * U,
                     p.accumulate)
    memcpy(<float*> sp.bhn, b_hn + u0, U * sizeof(float))
    memcpy(h, h0 + u0, U * sizeof(float))
    if with_c:
        memcpy(c, c0 + u0, U * sizeof(float))
    cell_forward(kind, 0, 1, U, gx, gate_blocks(kind) * U, <float*> sp.gh, bx, <float*> sp.bhn,
                 h, c, <float*> sp.rh, &call.var[0])
    memcpy(<float*> ends.h_n + u0, h, U * sizeof(float))
    if with_c:
        memcpy(<float*> ends.c_n + u0, c, U * sizeof(float))


cdef Py_ssize_t _split_space(const LayerCall* call, int shares) noexcept nogil:
    """Floats _split_step's workspace takes: the kernel biases (G + H), then a
    UnitSpace per share (a team of ``shares`` at most)."""
    return call.dims.G + call.dims.H + shares * unit_space(<float*> NULL, &call.dims, 1, 1, NULL)


cdef void _split_step(const LayerCall* call, const float* b_ih, const float* b_hh, float* ws,
                      int shares) noexcept nogil:
    """One step of one row (_units_step), the hidden units split across a
    team of up to ``shares`` threads, or on this thread alone while the team
    policy says so (_team.h: a partner held off its core makes the whole
    step wait; the time between the first and the last share's end is what
    the call lost). The kernel biases go once into ws, the shares' spaces
    after them."""
    cdef Py_ssize_t G = call.dims.G, H = call.dims.H
    cdef Py_ssize_t per = unit_space(<float*> NULL, &call.dims, 1, 1, NULL)
    cdef int n = team_size(min(shares, BARRIER_SLOTS)), used = 1, tid, i
    cdef int* used_at = &used                  # (a name assigned in the region is private)
    cdef long long ends[BARRIER_SLOTS]
    cdef long long start, first, last
    combine_biases(call.dims.kind, G, H, b_ih, b_hh, ws, ws + G)
    if n < 2:
        _units_step(call, ws, ws + G, 0, 1, ws + G + H)
        return
    start = now_ns()
    with parallel(num_threads=n):
        tid = omp_get_thread_num()
        if tid == 0:
            used_at[0] = omp_get_num_threads()
        _units_step(call, ws, ws + G, tid, omp_get_num_threads(), ws + G + H + tid * per)
        ends[tid] = now_ns()
    first = last = ends[0]
    for i in range(1, used):
        first = min(first, ends[i])
        last = max(last, ends[i])
    team_report(used, last - first, now_ns() - start)


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
    cdef int q16                          # 16-bit weights read by one-row steps: 1 half, 2 bf16
    cdef const unsigned short[:, ::1] q_ih, q_hh
    cdef Py_ssize_t n_in, n_hidden       # (not I: complex.h's macro)
    cdef const float[:, ::1] f_ih, f_hh
    cdef const float[::1] fb_ih, fb_hh
    cdef const double[:, ::1] d_ih, d_hh
    cdef const double[::1] db_ih, db_hh
    cdef object _rows                     # call()'s (B, lengths of 1, identity order)

    def __init__(self, int kind, w_ih, w_hh, b_ih, b_hh, codes=None):
        """codes: None, or a quantized module's 16-bit weights (format,
        W_ih codes, W_hh codes) with format "float16" or "bfloat16", uint16
        arrays of w_ih's and w_hh's shapes, w_ih and w_hh their widened values:
        one-row float32 steps then read the 16-bit ones (the same bits)."""
        self.kind = kind
        self._rows = None
        self.q16 = 0
        if codes is not None:
            self.q16 = {"float16": 1, "bfloat16": 2}[codes[0]]
            self.q_ih, self.q_hh = codes[1], codes[2]
        self.n_in, self.n_hidden = w_ih.shape[1], w_hh.shape[1]
        self.wide = w_ih.dtype == np.float64
        if self.wide:
            self.d_ih, self.d_hh, self.db_ih, self.db_hh = w_ih, w_hh, b_ih, b_hh
        else:
            self.f_ih, self.f_hh, self.fb_ih, self.fb_hh = w_ih, w_hh, b_ih, b_hh

    cdef int _run(self, const void* x, Py_ssize_t xs0, Py_ssize_t xs1, const void* h0,
                  const void* c0, void* h1, void* c1, Py_ssize_t B, const Py_ssize_t* ones,
                  const Py_ssize_t* perm, const Py_ssize_t* ids, int threads) except -1:
        """One step on its arrays' data (the weights' dtype): x (B, I) with
        element strides (xs0, xs1), the states (B, H) C-contiguous, ones and
        perm (B,), ids (B,) or NULL."""
        cdef Py_ssize_t bounds[2]
        cdef Py_ssize_t n_active = B
        bounds[0], bounds[1] = 0, B
        cdef LayerCall call
        memset(&call, 0, sizeof(LayerCall))
        call.dims = make_dims(self.kind, self.n_in, self.n_hidden)
        call.var[0] = call.var[1] = plain_variant()       # a cell is the default form
        call.rows.lengths = ones
        call.rows.perm = perm
        call.rows.n_active = &n_active
        call.rows.B = B
        call.rows.T = 1
        call.bounds = bounds
        call.n_blocks = 1
        call.rows_max = B
        call.step_chunk = 1
        call.cap = B
        cdef int shares = self._shares(threads, B, ids != NULL or xs1 == 1, ids != NULL)
        cdef Py_ssize_t need = (_split_space(&call, shares) if shares > 0
                                else _step_space(<float*> NULL, &call, NULL, NULL, NULL))
        cdef double* dw
        cdef float* fw
        if self.wide:
            dw = <double*> _scratch_data("cell", need, np.float64)
            _step_call(&call, x, xs0, xs1, &self.d_ih[0, 0], &self.d_hh[0, 0], ids, h0, c0, h1, c1)
            with nogil:
                _step_run(&call, &self.db_ih[0], &self.db_hh[0], dw)
        else:
            fw = <float*> _scratch_data("cell", need, np.float32)
            _step_call(&call, x, xs0, xs1, &self.f_ih[0, 0], &self.f_hh[0, 0], ids, h0, c0, h1, c1)
            if self.q16 and shares > 0:
                call.w[0].q_ih, call.w[0].q_hh = &self.q_ih[0, 0], &self.q_hh[0, 0]
                call.w[0].q16 = self.q16
            with nogil:
                if shares > 0:
                    _split_step(&call, &self.fb_ih[0], &self.fb_hh[0], fw, shares)
                else:
                    _step_run(&call, &self.fb_ih[0], &self.fb_hh[0], fw)
        return 0

    cdef object _row_order(self, Py_ssize_t B, const Py_ssize_t** ones,
                           const Py_ssize_t** perm):
        """Set ones and perm to (B,) arrays of 1 and of 0..B-1 for a step of
        B rows: a static pair for one row, else arrays kept on the kernel,
        returned (the caller holds them while the step reads the pointers)."""
        cdef const Py_ssize_t[::1] one_v, perm_v
        if B == 1:
            ones[0], perm[0] = &_ONE_ROW[0], &_ONE_ROW[1]
            return None
        rows = self._rows              # one read: other threads may replace it
        if rows is None or (<tuple> rows)[0] != B:
            rows = (B, np.ones(B, np.intp), np.arange(B, dtype=np.intp))
            self._rows = rows
        one_v, perm_v = (<tuple> rows)[1], (<tuple> rows)[2]
        ones[0], perm[0] = &one_v[0], &perm_v[0]
        return rows

    cdef int _shares(self, int threads, Py_ssize_t B, bint unit_stride, bint tokens):
        """The threads a step of B rows splits its hidden units across
        (_split_step), or 0: the step runs on this thread as a layer's task
        (_step_run: BLAS's gemv for one row).

        Split: one float32 row on panels (the row dot products are the panel
        variant's), x with unit stride or a token id (tokens: its projection
        is a column of W_ih, not streamed), a cell whose step is one product
        (not the reset-before GRU: its second product reads r ⊙ h_{t-1} of
        every unit), at least two threads, and weights from
        _split_step_bytes (below, waking the team costs more than halving
        the weights' stream saves) to half the L3 (the CPU plan's; unknown:
        as many as fill every thread's L2). LSTMCell steps split / on the
        calling thread (where OpenBLAS's gemv takes two threads of its own
        from ~4 MiB of weights), two runs on an AMD EPYC Zen 4 (32 MiB L3):
        2 MiB 0.71, 0.54; 4.5 MiB 0.94, 0.92; 8 MiB 0.82, 0.94; 18 MiB 1.62,
        1.00 (bench.cell_split). More rows are a matrix product, which BLAS
        does better on one thread."""
        if (B != 1 or self.wide or not unit_stride or forward_phases(self.kind) != 1
                or not panels_on()):
            return 0
        # 16-bit weights (a quantized cell) are read by the row dot products
        # only: where a split does not pay, one share on this thread
        cdef int alone = 1 if self.q16 else 0
        if threads < 2:
            return alone
        cdef int shares = min(threads, self.n_hidden)
        cdef Py_ssize_t nbytes = (gates(self.kind) * self.n_hidden
                                  * ((0 if tokens else self.n_in) + self.n_hidden)
                                  * (2 if self.q16 else 4))
        if nbytes < _split_step_bytes or nbytes > _split_most(shares):
            return alone
        return shares

    def call(self, x, hx, bint pair):
        """A cell's call in its common case, checked and run here: x a
        C-contiguous (B, I) ndarray of the weights' dtype (B >= 1), hx None
        (zeros) or, of that dtype, C-contiguous (B, H): h, or the pair (h, c)
        when pair (LSTMCell). Returns (h,) or (h, c), new arrays; None for any
        other arguments (the caller then checks them in full and takes the
        general path, which also names what is wrong).

        The general path costs ~15 us of Python per call, as much as the step
        itself at H=128; this one checks the arrays' buffers (_c_rows)."""
        cdef Py_ssize_t B, B0, H = self.n_hidden
        if type(x) is not np.ndarray:
            return None
        if hx is None:
            h0 = c0 = None
        elif pair:
            if type(hx) is not tuple or len(<tuple> hx) != 2:
                return None
            h0, c0 = hx
        else:
            h0 = c0 = hx
        if h0 is not None and (type(h0) is not np.ndarray or type(c0) is not np.ndarray):
            return None
        cdef const void* px = _c_rows(x, self.n_in, self.wide, &B)
        if px == NULL or B < 1:
            return None
        cdef const void* ph0 = NULL
        cdef const void* pc0 = NULL
        if h0 is not None:
            ph0 = _c_rows(h0, H, self.wide, &B0)
            if ph0 == NULL or B0 != B:
                return None
            pc0 = _c_rows(c0, H, self.wide, &B0)
            if pc0 == NULL or B0 != B:
                return None
        dtype = np.float64 if self.wide else np.float32
        h1 = np.empty((B, H), dtype)
        c1 = np.empty((B, H), dtype) if pair else h1
        if h0 is None:
            h0 = np.zeros((B, H), dtype)
            ph0 = pc0 = _c_rows(h0, H, self.wide, &B0)
        cdef const Py_ssize_t* ones
        cdef const Py_ssize_t* perm
        rows = self._row_order(B, &ones, &perm)     # (held while the step runs)
        # (h1, c1: new arrays of that shape and dtype, which _c_rows accepts)
        cdef void* ph1 = <void*> _c_rows(h1, H, self.wide, &B0)
        cdef void* pc1 = <void*> _c_rows(c1, H, self.wide, &B0)
        if ph0 == NULL or ph1 == NULL or pc1 == NULL:
            return None
        self._run(px, self.n_in, 1, ph0, pc0, ph1, pc1, B, ones, perm, NULL,
                  1 if self.wide else get_num_threads())
        return (h1, c1) if pair else (h1,)


# a row's length and place for a one-row call: {1, 0}
cdef Py_ssize_t _ONE_ROW[2]
_ONE_ROW[0], _ONE_ROW[1] = 1, 0


def stream_layers(tuple kernels, x, ids, h0, c0, h_n, c_n, y, int threads):
    """One step of every layer and direction of a module on the calling
    thread (fastrnn._engine.stream_step; a streaming call, one step at a
    time), each layer's kernels run here in turn with their arrays' data read
    once: no Python between them.

    kernels: per layer, a tuple of its directions' CellKernels (one dtype,
    layer l + 1's input size D*H); x (B, I) of their dtype, any strides, the
    first layer's input, or None with ids: (B,) intp token ids, C-contiguous
    (x is then not read; each id is checked to be in [0, I)); h0 and c0
    (L*D, B, H) C-contiguous or None (zeros; c0 is h0 again for a cell with
    no c); h_n, c_n (L*D, B, H) C-contiguous and writable, the new state
    (c_n: h_n again for a cell with no c); y (B, D*H) C-contiguous and
    writable, the last layer's output, or None (h_n holds it: a cell).
    Returns True; False, with nothing
    written, when an array is not as described or an id is out of range (the
    caller then checks in full, and names what is wrong)."""
    cdef CellKernel k = <CellKernel> (<tuple> kernels[0])[0]
    cdef bint wide = k.wide
    cdef Py_ssize_t L = len(kernels), D = len(<tuple> kernels[0])
    cdef Py_ssize_t H = k.n_hidden, I = k.n_in, B = -1, s0 = 0, s1 = 1, b, layer, d, r
    cdef size_t item = 8 if wide else 4
    cdef const Py_ssize_t[::1] id_v
    cdef const Py_ssize_t* pid = NULL
    cdef const char* px = NULL
    if ids is not None:
        id_v = ids
        B = id_v.shape[0]
        pid = &id_v[0] if B > 0 else NULL
        for b in range(B):
            if not 0 <= pid[b] < I:
                return False
    else:
        px = <const char*> _rows_of(x, I, wide, &B, &s0, &s1)
        if px == NULL:
            return False
    if B < 1:
        return False
    cdef Py_ssize_t n = L * D * B * H
    cdef char* hn = <char*> _c_elements(h_n, n, wide, True)
    cdef char* cn = <char*> _c_elements(c_n, n, wide, True)
    cdef char* out = NULL
    if y is not None:
        out = <char*> _c_elements(y, B * D * H, wide, True)
        if out == NULL:
            return False
    cdef const char* ph0 = NULL
    cdef const char* pc0 = NULL
    if h0 is not None:
        ph0 = <const char*> _c_elements(h0, n, wide, False)
        pc0 = <const char*> _c_elements(c0, n, wide, False)
        if ph0 == NULL or pc0 == NULL:
            return False
    if hn == NULL or cn == NULL:
        return False
    # zeros for a missing state, then two buffers for the inner layers'
    # outputs of two directions (a layer reads one while it writes the other)
    # (the slot held: its array outlives the steps' own scratch requests)
    cdef _ScratchSlot held = _scratch_of("stream", B * H * (1 + 2 * D),
                                         np.float64 if wide else np.float32)
    cdef char* space = <char*> held.data
    cdef char* zeros = space
    cdef char* mid[2]
    mid[0] = space + B * H * item
    mid[1] = mid[0] + B * D * H * item
    if ph0 == NULL:
        memset(zeros, 0, B * H * item)
    cdef const Py_ssize_t* ones
    cdef const Py_ssize_t* perm
    rows = k._row_order(B, &ones, &perm)          # (held while the steps run)
    cdef Py_ssize_t block = B * H * item          # one (B, H) state, in bytes
    cdef const char* inp = px
    cdef const char* h_in
    cdef const char* c_in
    cdef char* dst
    cdef char* h1
    for layer in range(L):
        dst = out if layer == L - 1 else mid[layer % 2]
        for d in range(D):
            r = layer * D + d
            k = <CellKernel> (<tuple> kernels[layer])[d]
            h_in = zeros if ph0 == NULL else ph0 + r * block
            c_in = zeros if ph0 == NULL else pc0 + r * block
            h1 = hn + r * block
            if layer == 0 and pid != NULL:
                k._run(h_in, H, 1, h_in, c_in, h1, cn + r * block, B, ones, perm, pid, threads)
            else:
                k._run(inp, s0, s1, h_in, c_in, h1, cn + r * block, B, ones, perm, NULL,
                       threads)
            if dst != NULL and (D > 1 or layer == L - 1):
                # this direction's h_t: its columns of the layer's output
                for b in range(B):
                    memcpy(dst + (b * D + d) * H * item, h1 + b * H * item, H * item)
        # the next layer reads this one's output: h_t itself for one direction
        inp = <const char*> (dst if D > 1 else hn + layer * block)
        s0, s1 = D * H, 1
    return True


cdef const void* _rows_of(object a, Py_ssize_t cols, bint wide, Py_ssize_t* rows,
                          Py_ssize_t* s0, Py_ssize_t* s1):
    """The data of ``a`` when it exports a 2-D buffer of ``cols`` columns of
    native float32 (float64: wide), any strides that are multiples of the
    item, aligned to its items: its rows in rows[0], its element strides in
    s0[0], s1[0]; else NULL."""
    cdef Py_buffer view
    cdef const void* data = NULL
    if _get_buffer(a, &view, PyBUF_STRIDES | PyBUF_FORMAT) != 0:
        PyErr_Clear()
        return NULL
    if (view.ndim == 2 and view.shape[1] == cols and _native_floats(&view, wide)
            and view.strides[0] % view.itemsize == 0 and view.strides[1] % view.itemsize == 0):
        data = view.buf
        rows[0] = view.shape[0]
        s0[0] = view.strides[0] // view.itemsize
        s1[0] = view.strides[1] // view.itemsize
    PyBuffer_Release(&view)
    return data


cdef void* _c_elements(object a, Py_ssize_t n, bint wide, bint writable):
    """The data of ``a`` when it exports a C-contiguous buffer of native
    float32 (float64: wide), aligned to its items, of n items in all (any
    shape), writable if asked; else NULL."""
    cdef Py_buffer view
    cdef void* data = NULL
    cdef int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (PyBUF_WRITABLE if writable else 0)
    if _get_buffer(a, &view, flags) != 0:
        PyErr_Clear()
        return NULL
    if _native_floats(&view, wide) and view.len == n * view.itemsize:
        data = view.buf
    PyBuffer_Release(&view)
    return data


cdef inline bint _aligned(const void* p, size_t size) noexcept:
    """Whether p is a multiple of size (kernel_layout copies unaligned arrays)."""
    return (<size_t> p) % size == 0


cdef inline bint _native_floats(const Py_buffer* view, bint wide) noexcept:
    """Whether an exported buffer (asked with PyBUF_FORMAT) holds native
    float32 (float64: wide) aligned to its items: what the kernels read.
    (numpy exports an unaligned array's items as "=f", which the format
    test refuses already.)"""
    cdef char code = b'd' if wide else b'f'
    return (view.format != NULL and view.format[0] == code and view.format[1] == 0
            and _aligned(view.buf, view.itemsize))


cdef const void* _c_rows(object a, Py_ssize_t cols, bint wide, Py_ssize_t* rows):
    """The data of ``a`` when it exports a C-contiguous 2-D buffer of ``cols``
    columns of native float32 (float64: wide) aligned to its items, its
    number of rows then in rows[0]; else NULL (_c_array). CellKernel.call
    reads its arrays' data this way: typed memoryviews, one made, checked
    and released per array (five a call), took ~10% of an LSTMCell step at
    H=128 (`python -m bench.ab OLD --only lstmcell-h128-b1`: 0.86-0.87 of
    the time with this in two runs, AMD EPYC Zen 4)."""
    cdef Py_ssize_t shape[2]
    shape[0], shape[1] = -1, cols
    cdef const void* data = _c_array(a, 2, shape, wide, False)
    rows[0] = shape[0]
    return data


cdef const void* _c_array(object a, int ndim, Py_ssize_t* shape, bint wide, bint writable):
    """The data of ``a`` when it exports a C-contiguous buffer of ndim axes
    of ``shape`` (an axis given as -1: any length, written there) of native
    float32 (float64: wide), aligned to its items, and writable if asked;
    else NULL. The caller keeps ``a`` alive while it uses the data (a numpy
    array's data does not move)."""
    cdef Py_buffer view
    cdef const void* data = NULL
    cdef int i
    cdef int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (PyBUF_WRITABLE if writable else 0)
    if _get_buffer(a, &view, flags) != 0:
        PyErr_Clear()
        return NULL
    if view.ndim == ndim and _native_floats(&view, wide):
        data = view.buf
        for i in range(ndim):
            if shape[i] < 0:
                shape[i] = view.shape[i]
            elif view.shape[i] != shape[i]:
                data = NULL
    PyBuffer_Release(&view)
    return data


cdef void _step_call(LayerCall* call, const void* x, Py_ssize_t xs0, Py_ssize_t xs1,
                     const void* w_ih, const void* w_hh, const Py_ssize_t* ids,
                     const void* h0, const void* c0, void* h1, void* c1) noexcept:
    """The step's input, weights and ends: x (B, I) with element strides
    (xs0, xs1), or token ids (B,) whose projections are columns of W_ih read
    in place; h1 receives both the state and the step's output."""
    cdef bint with_c = has_cell_state(call.dims.kind)
    if ids != NULL:
        # token k's projection is column k of W_ih: token stride 1, gate stride I
        call.src[0] = _call_source(w_ih, 0, 1, call.dims.n_in, ids, 0, 1)
    else:
        call.src[0] = _call_source(x, 0, xs0, xs1, NULL, 0, 0)
    call.w[0] = _call_weights(w_ih, w_hh, NULL, NULL)
    call.ends[0] = _call_ends(h0, c0 if with_c else NULL, h1, c1 if with_c else NULL, h1, 0,
                              call.dims.H)
    call.keep[0] = _no_keep()
