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


def lstm_pass(float[:, ::1] g, const float[::1] b, float[:, ::1] h, float[:, ::1] c,
              bint vector):
    """The plain LSTM's float32 forward gate pass over the rows of g (n, 4H),
    in place (g, h, c as cell_forward leaves them; b (4H,)): on vectors
    (fastrnn_lstm_rows_f32, what the layers run) or, vector=False, the
    scalar loops it replaces (for the tests, which compare their bits)."""
    cdef Py_ssize_t n = g.shape[0], H = g.shape[1] // 4
    if (g.shape[1] != 4 * H or H < 1 or b.shape[0] != 4 * H or h.shape[0] != n
            or c.shape[0] != n or h.shape[1] != H or c.shape[1] != H):
        raise ValueError(f"lstm_pass: g (n, 4H), b (4H,), h and c (n, H), got "
                         f"({g.shape[0]}, {g.shape[1]}), {b.shape[0]}, ({h.shape[0]}, "
                         f"{h.shape[1]}), ({c.shape[0]}, {c.shape[1]})")
    with nogil:
        if vector:
            fastrnn_lstm_rows_f32(n, H, &g[0, 0], 4 * H, &b[0], &h[0, 0], &c[0, 0])
        else:
            lstm_rows_scalar(n, H, &g[0, 0], 4 * H, &b[0], &h[0, 0], &c[0, 0])


def gru_after_pass(float[:, ::1] g, const float[:, ::1] gh, const float[::1] b,
                   const float[::1] b_hn, float[:, ::1] h, bint vector):
    """The plain reset-after GRU's float32 forward gate pass over the rows of
    g (n, 4H), gh (n, 3H), in place (g, h as cell_forward leaves them; b
    (3H,), b_hn (H,)): on vectors (fastrnn_gru_after_rows_f32) or, vector=False,
    the scalar loops (as lstm_pass)."""
    cdef Py_ssize_t n = g.shape[0], H = g.shape[1] // 4
    if (g.shape[1] != 4 * H or H < 1 or gh.shape[0] != n or gh.shape[1] != 3 * H
            or b.shape[0] != 3 * H or b_hn.shape[0] != H or h.shape[0] != n
            or h.shape[1] != H):
        raise ValueError("gru_after_pass: g (n, 4H), gh (n, 3H), b (3H,), b_hn (H,), h (n, H)")
    cdef Plain plain
    plain.unused = 0
    with nogil:
        if vector:
            fastrnn_gru_after_rows_f32(n, H, &g[0, 0], &gh[0, 0], &b[0], &b_hn[0], &h[0, 0])
        else:
            _gru_after_rows(n, H, &g[0, 0], &gh[0, 0], &b[0], &b_hn[0], &h[0, 0],
                            <float> INFINITY, plain)


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
