# cython: language_level=3
"""OpenMP entry points with serial stand-ins when built without OpenMP.

Kernels cimport these instead of ``cython.parallel.openmp`` so the package
builds and runs (single-threaded) with a compiler that has no OpenMP.
"""

cdef extern from "_openmp.h":
    bint FASTRNN_HAVE_OPENMP
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil
    int omp_get_num_threads() noexcept nogil
    void fastrnn_barrier() noexcept nogil

    # the most threads one spin barrier serves (a unit-split team's cap); a
    # compile-time constant (it sizes the team's stack array of waits)
    enum: BARRIER_SLOTS "FASTRNN_BARRIER_SLOTS"
    ctypedef struct fastrnn_spin_barrier:
        int spins
    void spin_init "fastrnn_spin_init"(fastrnn_spin_barrier* b, int nthreads) noexcept nogil
    # thread tid of nthreads arrives (arrivals: its own count, from 0) and waits for all
    void spin_wait "fastrnn_spin_wait"(fastrnn_spin_barrier* b, int nthreads, int tid,
                                       int* arrivals) noexcept nogil
    void spin_wait_timed "fastrnn_spin_wait_timed"(fastrnn_spin_barrier* b, int nthreads,
                                                   int tid, int* arrivals,
                                                   long long* waited) noexcept nogil
    long long now_ns "fastrnn_now_ns"() noexcept nogil

cdef extern from "_team.h":
    # when the unit split runs as a team (see _team.h)
    int team_size "fastrnn_team_size"(int nthreads) noexcept nogil
    void team_report "fastrnn_team_report"(int nthreads, long long waited_ns,
                                           long long total_ns) noexcept nogil
    void team_reset "fastrnn_team_reset"() noexcept nogil
    long long team_count "fastrnn_team_count"(int which) noexcept nogil

cdef extern from "_trace.h":
    # per-step time stamps of the unit split (built with FASTRNN_TRACE=1; see _trace.h)
    bint FASTRNN_TRACE
    enum: TRACE_THREADS "FASTRNN_TRACE_THREADS"
    enum: TRACE_POINTS "FASTRNN_TRACE_POINTS"
    long long trace_clock "fastrnn_trace_clock"() noexcept nogil
    void trace_mark "fastrnn_trace_mark"(int tid, int point) noexcept nogil
    int trace_count "fastrnn_trace_count"(int tid) noexcept nogil
    const long long* trace_stamps "fastrnn_trace_stamps"(int tid) noexcept nogil
    void trace_clear "fastrnn_trace_clear"() noexcept nogil
