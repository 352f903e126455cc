# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Recurrent kernels, compiled for x86-64-v4 (AVX-512): used where the CPU has it.

The same source as _recurrent.pyx (_recurrent_impl.pxi); the gate passes and
copies vectorise with 512-bit registers (32 of them: the LSTM pass keeps its
constants in registers). Against the x86-64-v3 build on Zen 5 (bench.ab, 11
rounds): LSTM H=64 B=1, H=256 B=64 and bidirectional H=128 B=32 1.09-1.13x
faster, GRU H=256 B=1 unchanged.
"""
include "_recurrent_impl.pxi"
