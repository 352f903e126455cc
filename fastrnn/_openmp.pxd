# cython: language_level=3
"""OpenMP entry points with serial stand-ins when built without OpenMP.

Kernels cimport these instead of ``cython.parallel.openmp`` so the package
builds and runs (single-threaded) with a compiler that has no OpenMP.
"""

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define FASTRNN_HAVE_OPENMP 1
    /* wait for every thread of the enclosing parallel region */
    #define fastrnn_barrier() _Pragma("omp barrier")
    #else
    #define FASTRNN_HAVE_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    static int omp_get_thread_num(void) { return 0; }
    static int omp_get_num_threads(void) { return 1; }
    #define fastrnn_barrier()
    #endif
    """
    bint FASTRNN_HAVE_OPENMP
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil
    int omp_get_num_threads() noexcept nogil
    void fastrnn_barrier() noexcept nogil
