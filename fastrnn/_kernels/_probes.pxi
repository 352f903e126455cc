# Probes of this kernel build for the tests and bench.limits: its σ and tanh
# (compiled with this build's instruction set) and its barrier. Included by
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
