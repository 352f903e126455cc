# The streaming step: one step of one layer and direction on the calling
# thread, no batch plan, thread team or packing (a cell, or a one-step call of
# a layer with few rows). Included by _recurrent_impl.pxi.


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
    cdef object _rows                     # call()'s (B, lengths of 1, identity order)

    def __init__(self, int kind, w_ih, w_hh, b_ih, b_hh):
        self.kind = kind
        self._rows = None
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
        cdef Py_ssize_t B = h0.shape[0]
        cdef Dims dims = make_dims(self.kind, self.n_in, self.n_hidden)
        cdef const Py_ssize_t[::1] one_v = ones
        cdef const Py_ssize_t[::1] perm_v = perm
        cdef Py_ssize_t bounds[2]
        cdef Py_ssize_t n_active = B
        bounds[0], bounds[1] = 0, B
        cdef LayerCall call
        memset(&call, 0, sizeof(LayerCall))
        call.dims = dims
        call.rows.lengths = &one_v[0]
        call.rows.perm = &perm_v[0]
        call.rows.n_active = &n_active
        call.rows.B = B
        call.rows.T = 1
        call.bounds = bounds
        call.n_blocks = 1
        call.rows_max = B
        call.step_chunk = 1
        call.cap = B
        cdef Py_ssize_t need = _step_space(<float*> NULL, &call, NULL, NULL, NULL)
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
            _step_call(&call, &dx[0, 0], dx.strides[0] // 8, dx.strides[1] // 8,
                       &self.d_ih[0, 0], &self.d_hh[0, 0], id_p, &dh0[0, 0], &dc0[0, 0],
                       &dh1[0, 0], &dc1[0, 0])
            with nogil:
                _step_run(&call, &self.db_ih[0], &self.db_hh[0], &dw[0])
        else:
            fx, fh0, fc0, fh1, fc1 = x, h0, c0, h1, c1
            fw = _scratch("cell", need, np.float32)
            _step_call(&call, &fx[0, 0], fx.strides[0] // 4, fx.strides[1] // 4,
                       &self.f_ih[0, 0], &self.f_hh[0, 0], id_p, &fh0[0, 0], &fc0[0, 0],
                       &fh1[0, 0], &fc1[0, 0])
            with nogil:
                _step_run(&call, &self.fb_ih[0], &self.fb_hh[0], &fw[0])


    def call(self, x, hx, bint pair):
        """A cell's call in its common case, checked and run here: x a
        C-contiguous (B, I) ndarray of the weights' dtype (B >= 1), hx None
        (zeros) or, of that dtype, C-contiguous (B, H): h, or the pair (h, c)
        when pair (LSTMCell). Returns (h,) or (h, c), new arrays; None for any
        other arguments (the caller then checks them in full and takes the
        general path, which also names what is wrong).

        The general path costs ~15 us of Python per call, as much as the step
        itself at H=128; this one checks with typed memoryviews."""
        cdef Py_ssize_t B, H = self.n_hidden
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
        cdef bint fits
        dtype = np.float64 if self.wide else np.float32
        try:                 # the typed arguments refuse another dtype, layout or ndim
            if self.wide:
                fits = _call_fits[double](x, h0, c0, self.n_in, H)
            else:
                fits = _call_fits[float](x, h0, c0, self.n_in, H)
        except (ValueError, TypeError, BufferError):
            return None
        if not fits:
            return None
        B = x.shape[0]
        if h0 is None:
            h0 = c0 = np.zeros((B, H), dtype)
        h1 = np.empty((B, H), dtype)
        c1 = np.empty((B, H), dtype) if pair else h1
        rows = self._rows                  # one read: other threads may replace it
        if rows is None or (<tuple> rows)[0] != B:
            rows = (B, np.ones(B, np.intp), np.arange(B, dtype=np.intp))
            self._rows = rows
        self.step(x, h0, c0, h1, c1, (<tuple> rows)[1], (<tuple> rows)[2])
        return (h1, c1) if pair else (h1,)


cdef inline bint _aligned(const void* p, size_t size) noexcept:
    """Whether p is a multiple of size (kernel_layout copies unaligned arrays)."""
    return (<size_t> p) % size == 0


cdef bint _call_fits(const floating[:, ::1] x, const floating[:, ::1] h0,
                     const floating[:, ::1] c0, Py_ssize_t n_in, Py_ssize_t H) noexcept:
    """Whether CellKernel.call may run these as they are: x (B, n_in) with B
    >= 1, h0 and c0 None or (B, H), all aligned to their items (C-contiguous
    and of the dtype already, or the conversion to these arguments refused
    them)."""
    cdef Py_ssize_t B = x.shape[0]
    if B < 1 or x.shape[1] != n_in or not _aligned(&x[0, 0], sizeof(floating)):
        return False
    if h0 is None:
        return True
    return (h0.shape[0] == c0.shape[0] == B and h0.shape[1] == c0.shape[1] == H
            and _aligned(&h0[0, 0], sizeof(floating)) and _aligned(&c0[0, 0], sizeof(floating)))


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
