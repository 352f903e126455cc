# Probes of this kernel build for the tests and bench.limits: its σ and tanh
# (compiled with this build's instruction set), its barrier, its gate passes, and its
# vector passes beside the scalar loops they replace. Included by _recurrent_impl.pxi.


def activations(const floating[::1] x, floating[::1] sig, floating[::1] tnh):
    """The kernels' σ and tanh of x, into sig and tnh (for the accuracy tests)."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(x.shape[0]):
            sig[i] = sigmoid(x[i])
            tnh[i] = tanh_(x[i])


def forward_pass(int kind, int phase, float[:, ::1] g, const float[:, ::1] gh,
                 const float[::1] b, const float[::1] b_hn, float[:, ::1] h,
                 float[:, ::1] c, float[:, ::1] rh, bint vector):
    """Forward gate pass ``phase`` of the plain float32 cell ``kind`` over
    the n rows of g (n, gate_blocks(kind) H), in place, as cell_forward
    leaves g, h, c (the LSTM's) and rh (the reset-before GRU's r ⊙ h_{t-1});
    gh (n, 3H) the reset-after GRU's recurrent product (else unread), b
    (gates(kind) H,), b_hn (H,). vector: cell_forward (the vector passes of
    _gate_math.h where a kind has one); else the scalar loops, for the
    tests, which compare their bits."""
    if kind < <int> RNN_TANH or kind > <int> GRU_RESET_BEFORE or phase < 0 \
            or phase >= forward_phases(kind):
        raise ValueError(f"forward_pass: a cell kind and one of its phases, got {kind}, {phase}")
    cdef Py_ssize_t n = h.shape[0], H = h.shape[1]
    cdef Py_ssize_t ldg = gate_blocks(kind) * H
    if (H < 1 or g.shape[0] != n or g.shape[1] != ldg or gh.shape[0] != n
            or gh.shape[1] != 3 * H or b.shape[0] != gates(kind) * H or b_hn.shape[0] != H
            or c.shape[0] != n or c.shape[1] != H or rh.shape[0] != n or rh.shape[1] != H):
        raise ValueError(f"forward_pass: h (n, H), g (n, {gate_blocks(kind)}H), gh (n, 3H), "
                         f"b ({gates(kind)}H,), b_hn (H,), c and rh (n, H)")
    cdef Variant v = plain_variant()
    cdef Plain plain
    plain.unused = 0
    with nogil:
        if vector:
            cell_forward(kind, phase, n, H, &g[0, 0], ldg, &gh[0, 0], &b[0], &b_hn[0],
                         &h[0, 0], &c[0, 0], &rh[0, 0], &v)
        elif kind == LSTM:
            lstm_rows_scalar(n, H, &g[0, 0], ldg, &b[0], &h[0, 0], &c[0, 0])
        else:
            _gate_pass(kind, phase, n, H, &g[0, 0], ldg, &gh[0, 0], &b[0], &b_hn[0],
                       &h[0, 0], &rh[0, 0], <float> INFINITY, plain)


def barrier_seconds(int num_threads, Py_ssize_t rounds, bint spin):
    """Seconds per barrier for a team of num_threads meeting ``rounds`` times
    in a row: fastrnn's spin barrier (spin=True, what the unit-split kernels
    use every step) or the OpenMP barrier (bench.limits)."""
    import time
    if num_threads < 1 or rounds < 1:
        raise ValueError(f"num_threads and rounds must be >= 1, got {num_threads}, {rounds}")
    num_threads = min(num_threads, BARRIER_SLOTS)
    cdef fastrnn_spin_barrier bar
    spin_init(&bar, num_threads)
    cdef Py_ssize_t i
    cdef int arrivals, nthreads
    start = time.perf_counter()
    with nogil, parallel(num_threads=num_threads):
        arrivals = 0
        nthreads = omp_get_num_threads()
        for i in range(rounds):
            if spin:
                spin_wait(&bar, nthreads, omp_get_thread_num(), &arrivals)
            else:
                fastrnn_barrier()
    return (time.perf_counter() - start) / rounds


def gate_pass_seconds(int kind, Py_ssize_t rows, Py_ssize_t hidden, Py_ssize_t reps):
    """Seconds per forward gate pass (phase 0 of cell kind ``kind``, a
    fastrnn._kernels._cells.CellKind) over ``rows`` rows of ``hidden``
    float32 units on one thread: the elementwise pass after every step's
    product (bench.limits prints it for each kernel build). Every rep starts
    from the same pre-activations, uniform in [-2, 2]."""
    import time
    import numpy as np
    if (kind < <int> RNN_TANH or kind > <int> GRU_RESET_BEFORE or rows < 1 or hidden < 1
            or reps < 1):
        raise ValueError(f"gate_pass_seconds: a cell kind, rows, hidden and reps >= 1, got "
                         f"{kind}, {rows}, {hidden}, {reps}")
    cdef Py_ssize_t ldg = gate_blocks(kind) * hidden
    rng = np.random.default_rng(0)
    g0 = rng.uniform(-2, 2, (rows, ldg)).astype(np.float32)
    cdef float[:, ::1] g = g0.copy()
    cdef const float[:, ::1] gsrc = g0
    cdef float[:, ::1] gh = rng.uniform(-2, 2, (rows, ldg)).astype(np.float32)
    cdef float[::1] b = np.zeros(ldg, np.float32)
    cdef float[:, ::1] h = np.zeros((rows, hidden), np.float32)
    cdef float[:, ::1] c = np.zeros((rows, hidden), np.float32)
    cdef float[:, ::1] rh = np.zeros((rows, hidden), np.float32)
    cdef Variant v = plain_variant()
    cdef Py_ssize_t r
    start = time.perf_counter()
    with nogil:
        for r in range(reps):
            # the pass overwrites g with activations: a fresh copy each rep (one
            # memcpy of rows x ldg floats, in cache, timed with it)
            memcpy(&g[0, 0], &gsrc[0, 0], rows * ldg * sizeof(float))
            cell_forward(kind, 0, rows, hidden, &g[0, 0], ldg, &gh[0, 0], &b[0], &b[0],
                         &h[0, 0], &c[0, 0], &rh[0, 0], &v)
    return (time.perf_counter() - start) / reps
