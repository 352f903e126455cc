# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Recurrent kernels, compiled for x86-64-v3 (AVX2, FMA): used where the CPU has them.

The same source as _recurrent.pyx (_recurrent_impl.pxi); the gate passes and
copies vectorise with 256-bit registers and fused multiply-adds.
"""
include "_recurrent_impl.pxi"
