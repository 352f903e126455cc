"""Compiled kernels (Cython). Nothing here validates its arguments: callers do."""
