# Probes of this kernel build for the tests and bench.limits: its σ and tanh
# (compiled with this build's instruction set), its barrier and its gate pass. Included by
# _recurrent_impl.pxi.


def activations(const floating[::1] x, floating[::1] sig, floating[::1] tnh):
    """The kernels' σ and tanh of x, into sig and tnh (for the accuracy tests)."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(x.shape[0]):
            sig[i] = sigmoid(x[i])
            tnh[i] = tanh_(x[i])


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
