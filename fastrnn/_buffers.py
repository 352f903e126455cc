"""Work arrays of training calls, reused once whatever held them is gone.

A training forward keeps per layer the weights it ran with and the gate
activations, inputs and states of every step until backward; backward makes
the gate gradients. Fresh arrays of that size come from the operating system
as untouched pages, and every first write to a page is a page fault; a
pooled buffer has its pages already (``perf stat -e page-faults`` over a few
training steps of ``bench.engines``' train configurations shows the
difference).

``BufferPool.take`` returns a view of a free flat buffer at least as large
(or of a new one); ``give_back`` returns buffers to the pool at once
(scratch that never left the call), ``give_back_when_gone`` when an owner
object (a layer's training trace) is garbage, so nothing the caller can
still reach is ever reused.
"""
import os
import threading
import weakref

import numpy as np

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
        dtype = np.dtype(dtype)
        n = int(np.prod(shape, dtype=np.int64))
        with self._lock:
            free = self._free.get(dtype.str, [])
            fits = [i for i, buf in enumerate(free) if n <= buf.size <= 2 * n + 4096]
            buf = free.pop(min(fits, key=lambda i: free[i].size)) if fits else None
        if buf is None:
            buf = np.empty(max(n, 1), dtype)
        return buf[:n].reshape(shape)

    def copy(self, arr):
        """A copy of arr in a pooled array."""
        out = self.take(arr.shape, arr.dtype)
        np.copyto(out, arr)
        return out

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
