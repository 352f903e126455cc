"""Work arrays of training calls, reused once whatever held them is gone.

A training forward keeps per layer the weights it ran with and the gate
activations, inputs and states of every step until backward; backward makes
the gate gradients. Fresh arrays of that size come from the operating system
as untouched pages, and every first write to a page is a page fault; a
pooled buffer has its pages already (``perf stat -e page-faults`` over a few
training steps of ``bench.engines``' train configurations shows the
difference).

``BufferPool.take`` returns a view of a free flat buffer at least as large
(or of a new one), ``take_parts`` several arrays in one such buffer (a
layer's kept arrays: one pool operation for all); ``give_back`` returns
buffers to the pool at once
(scratch that never left the call), ``give_back_when_gone`` when an owner
object (a layer's training trace) is garbage, so nothing the caller can
still reach is ever reused.
"""
import math
import os
import threading
import weakref

import numpy as np

from fastrnn._kernels._panels import aligned_empty

_pools = weakref.WeakSet()        # every pool, for a forked child to renew their locks


class BufferPool:
    """Free flat buffers by dtype; at most ``keep`` per dtype (the largest)."""

    def __init__(self, keep):
        self._keep = keep
        self._free = {}
        self._lock = threading.Lock()
        _pools.add(self)

    def take(self, shape, dtype):
        """An array of shape and dtype (a view of a pooled buffer), contents undefined."""
        # (math.prod and a plain loop: with np.prod and lists a take cost ~10 us)
        dtype = dtype if isinstance(dtype, np.dtype) else np.dtype(dtype)
        n = math.prod(shape)
        buf = None
        with self._lock:
            free = self._free.get(dtype.str)
            if free:
                best = -1
                for i, cand in enumerate(free):
                    if n <= cand.size <= 2 * n + 4096 and (best < 0 or cand.size < free[best].size):
                        best = i
                if best >= 0:
                    buf = free.pop(best)
        if buf is None:
            buf = aligned_empty(max(n, 1), dtype)       # (take_parts' parts at 64 bytes)
        return buf[:n].reshape(shape)

    def take_parts(self, shapes, dtype):
        """(buffer, views): one pooled buffer holding an array of each shape
        in ``shapes`` (None: no array, None in its place), each at a whole
        multiple of 64 bytes from the buffer's start; contents undefined.
        Give back ``buffer``: one pool operation for them all."""
        dtype = dtype if isinstance(dtype, np.dtype) else np.dtype(dtype)
        align = max(1, 64 // dtype.itemsize)
        sizes = [0 if shape is None else math.prod(shape) for shape in shapes]
        room = [-(-n // align) * align for n in sizes]         # each part's, rounded up
        buf = self.take((sum(room),), dtype)
        views, o = [], 0
        for shape, n, r in zip(shapes, sizes, room):
            views.append(None if shape is None else buf[o:o + n].reshape(shape))
            o += r
        return buf, views

    def give_back(self, *arrays):
        """Return the buffers of arrays (from take) that nothing else refers to."""
        with self._lock:
            for arr in arrays:
                buf = arr if arr.base is None else arr.base
                free = self._free.setdefault(buf.dtype.str, [])
                free.append(buf)
                if len(free) > self._keep:
                    free.pop(min(range(len(free)), key=lambda i: free[i].size))

    def give_back_when_gone(self, owner, *arrays):
        """Return the buffers of arrays when owner is garbage; owner must hold
        the only other references to them."""
        weakref.finalize(owner, self.give_back, *arrays)


def _after_fork_in_child():
    # a thread of the parent that the child does not have may have held a lock
    for pool in list(_pools):
        pool._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
