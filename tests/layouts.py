"""Arrays with the same values in layouts a kernel must not trust.

Each variant takes a C-contiguous array and returns an array of equal values
(same shape, same numeric type) stored differently: strides that are not a
multiple of the item size, negative and zero strides, another byte order, an
unaligned start, Fortran order, a memory map. ``broadcast`` changes the
values (it repeats the first entry of axis 0) and says so.
"""
import tempfile

import numpy as np


def structured_field(a):
    """A field of a packed structured array: stride itemsize + 1, unaligned."""
    rec = np.zeros(a.shape, dtype=np.dtype([("v", a.dtype), ("pad", "u1")], align=False))
    rec["v"] = a
    return rec["v"]


def odd_strides(a):
    """A view over a byte buffer whose innermost stride is itemsize + 3."""
    step = a.itemsize + 3
    strides = [step]
    for n in a.shape[:0:-1]:
        strides.insert(0, strides[0] * n)
    buf = np.zeros(max(a.size, 1) * step, np.uint8)
    out = np.ndarray(a.shape, dtype=a.dtype, buffer=buf, strides=strides)
    out[...] = a
    return out


def negative_strides(a):
    """Every axis read backwards (a reversed copy, reversed again)."""
    axes = tuple(range(a.ndim))
    return np.flip(np.flip(a, axes).copy(), axes)


def big_endian(a):
    return a.astype(a.dtype.newbyteorder(">" if a.dtype.isnative else "<"))


def unaligned(a):
    """Native order, contiguous, starting one byte past an aligned address."""
    buf = np.zeros(a.nbytes + 1, np.uint8)
    out = np.ndarray(a.shape, dtype=a.dtype, buffer=buf, offset=1)
    out[...] = a
    return out


def fortran(a):
    return np.asfortranarray(a)


_FILES = tempfile.TemporaryDirectory()     # removed when the process ends


def memory_map(a):
    path = tempfile.mktemp(suffix=".dat", dir=_FILES.name)
    out = np.memmap(path, dtype=a.dtype, mode="w+", shape=a.shape)
    out[...] = a
    return out


def read_only_view(a):
    out = a.copy()
    out.flags.writeable = False
    return out


def broadcast(a):
    """A zero stride on axis 0: every entry of axis 0 is a[0] (values change)."""
    return np.broadcast_to(a[:1], a.shape)


VARIANTS = {
    "structured-field": structured_field,
    "odd-strides": odd_strides,
    "negative-strides": negative_strides,
    "big-endian": big_endian,
    "unaligned": unaligned,
    "fortran": fortran,
    "memmap": memory_map,
    "read-only": read_only_view,
    "broadcast": broadcast,
}


def plain(a):
    """The values of ``a`` as a fresh C-contiguous native array (the reference input)."""
    return np.array(a, dtype=a.dtype.newbyteorder("="), order="C", copy=True)
