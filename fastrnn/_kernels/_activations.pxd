# cython: language_level=3
"""Elementwise activations for the gate passes; float uses the float libm calls.

σ(v) = 1 / (1 + exp(-v)); for v very negative exp(-v) overflows to inf and
σ(v) is exactly 0, so no NaN appears for finite input.
"""
from cython cimport floating
from libc.math cimport exp, expf, tanh, tanhf


cdef inline floating sigmoid(floating v) noexcept nogil:
    if floating is float:
        return 1.0 / (1.0 + expf(-v))
    else:
        return 1.0 / (1.0 + exp(-v))


cdef inline floating tanh_(floating v) noexcept nogil:
    if floating is float:
        return tanhf(v)
    else:
        return tanh(v)


cdef inline floating relu(floating v) noexcept nogil:
    return 0 if v < 0 else v      # NaN passes through, as in PyTorch
