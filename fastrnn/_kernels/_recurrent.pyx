# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Recurrent kernels, compiled for baseline x86-64 (runs on any CPU).

See _recurrent_impl.pxi for what they compute and how.
"""
include "_recurrent_impl.pxi"
