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

    ctypedef struct fastrnn_spin_barrier:
        int count
        int sense
    void spin_init "fastrnn_spin_init"(fastrnn_spin_barrier* b, int nthreads) noexcept nogil
    void spin_wait "fastrnn_spin_wait"(fastrnn_spin_barrier* b, int nthreads,
                                       int* local_sense) noexcept nogil
