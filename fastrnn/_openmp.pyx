# cython: language_level=3
"""What the build's OpenMP support is, for ``fastrnn.show_config``."""


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(FASTRNN_HAVE_OPENMP)


def openmp_max_threads():
    """OpenMP's default team size (OMP_NUM_THREADS or the CPU count); 1 without OpenMP."""
    return omp_get_max_threads()
