"""Argument checks. Everything a kernel will trust is checked here first.

Each check raises TypeError (wrong kind of value) or ValueError (right kind,
wrong shape or range) with a message that names the argument and says what
was expected and what was given.
"""
import math
import numbers
import operator

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# BLAS takes int32 sizes: the packed rows of a sequence batch must fit
MAX_ROWS = 2**31 - 1


def positive_int(name, value, minimum=1):
    """An integer >= minimum (bools are refused)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def size(name, value, rows=1):
    """A layer size: an integer >= 1 whose ``rows`` multiple (the gate rows
    it makes) BLAS can index with a 32-bit integer."""
    value = positive_int(name, value)
    if value * rows > MAX_ROWS:
        raise ValueError(f"{name} must be at most {MAX_ROWS // rows} (BLAS indexes rows with "
                         f"32-bit integers), got {value}")
    return value


def boolean(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def real(name, value, minimum=0.0, inclusive=True, allow_none=False):
    """A finite real number >= minimum (> minimum when not inclusive), as a
    float; None passes with ``allow_none``. Bools and strings are refused."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
        raise ValueError(f"{name} must be {'>=' if inclusive else '>'} {minimum:g} "
                         f"(a finite number), got {value}")
    return value


def probability(name, value):
    """A float in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in [0, 1), got {type(value).__name__}")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return value


def float_dtype(dtype):
    """numpy.float32 or numpy.float64 (any spelling numpy accepts)."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be numpy.float32 or numpy.float64, got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be numpy.float32 or numpy.float64, got {dt}")
    return dt.type


def choice(name, value, options):
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")
    return value


def seed(value, name="seed"):
    """None, a numpy Generator, or an integer >= 0 (what numpy.random.default_rng takes)."""
    if value is None or isinstance(value, np.random.Generator):
        return value
    if isinstance(value, bool):
        raise TypeError(f"{name} must be None, an integer or a numpy Generator, got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be None, an integer or a numpy Generator, "
                        f"got {type(value).__name__}") from None
    if value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value}")
    return value


def kernel_layout(arr):
    """``arr`` (an ndarray) in a layout every kernel can read: native byte
    order, aligned, every stride a whole number of items (negative and zero
    strides are fine: the kernels index by element strides). Anything else
    becomes a C-contiguous copy.

    The one normalisation every array a kernel reads goes through (the input
    checks below call it): a stride that is not a multiple of the item size
    (a field of a structured array, an ``as_strided`` view) would otherwise
    be divided down to a wrong element stride inside the kernel.
    """
    if (arr.dtype.isnative and arr.flags.aligned
            and not any(s % arr.itemsize for s in arr.strides)):
        return arr
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))


def float_array(name, value, dtype):
    """``value`` as an array of ``dtype`` without copying when it already is one.

    Strided, Fortran-ordered, broadcast and read-only arrays are kept as they
    are (the kernels read through strides and never write to inputs), unless
    ``kernel_layout`` must copy them. Refuses values that are not real
    floating-point numbers.
    """
    if type(value) is np.ndarray and value.dtype == dtype and value.flags.c_contiguous:
        return value                      # the common case, checked cheaply
    try:
        arr = np.asarray(value)
    except Exception as exc:  # e.g. a tensor that requires grad, ragged lists
        raise TypeError(f"{name} must be a floating-point array, could not convert "
                        f"{type(value).__name__}: {exc}") from None
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must hold floating-point numbers, got dtype {arr.dtype}")
    return kernel_layout(arr.astype(dtype, copy=False))


def integer_array(name, value, what):
    """``value`` as an integer array (bools refused); ``what`` names its items.

    An empty sequence (``[]``, which numpy makes float64) counts as integers.
    """
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be an array of {what}, could not convert "
                        f"{type(value).__name__}: {exc}") from None
    if arr.size == 0 and arr.dtype == np.float64 and not isinstance(value, np.ndarray):
        arr = arr.astype(np.intp)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold {what}, got dtype {arr.dtype}")
    return arr


def same_keys(expected, given):
    """Refuse a state dict whose keys are not exactly ``expected``'s, naming
    the missing and the unexpected ones."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected}")
        raise ValueError("state_dict does not match this module: " + "; ".join(parts))


def expect_shape(name, arr, shape):
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {arr.shape}")
    return arr


def sequence_input(x, input_size, dtype, batch_first):
    """Check a layer input; return it time-major (T, B, I) and whether it was batched."""
    arr = float_array("x", x, dtype)
    layout = "(B, T, input_size)" if batch_first else "(T, B, input_size)"
    if arr.ndim == 2:
        x3, batched = arr[:, None, :], False
    elif arr.ndim == 3:
        x3, batched = (arr.transpose(1, 0, 2) if batch_first else arr), True
    else:
        raise ValueError(f"x must be 3-D {layout} or 2-D (T, input_size) unbatched, "
                         f"got shape {arr.shape}")
    if arr.shape[-1] != input_size:
        raise ValueError(f"x must have input_size={input_size} features on its last axis, "
                         f"got shape {arr.shape}")
    if x3.shape[0] == 0 or x3.shape[1] == 0:
        raise ValueError(f"x must have at least one step and one sequence, got shape {arr.shape}")
    if x3.shape[0] * x3.shape[1] > MAX_ROWS:
        raise ValueError(f"x must have at most {MAX_ROWS} steps x sequences (BLAS indexes "
                         f"rows with 32-bit integers), got shape {arr.shape}")
    return x3, batched


def token_sequence(x, vocab_size, batch_first):
    """Token-id input: (T, B) ((B, T) batch_first) or (T,) unbatched integer ids in
    [0, vocab_size); returns them time-major (T, B) as intp, and whether batched."""
    ids = token_ids("x", x, vocab_size)
    if ids.ndim == 1:
        ids2, batched = ids[:, None], False
    elif ids.ndim == 2:
        ids2, batched = (ids.T if batch_first else ids), True
    else:
        layout = "(B, T)" if batch_first else "(T, B)"
        raise ValueError(f"token ids x must be 2-D {layout} or 1-D (T,) unbatched, "
                         f"got shape {ids.shape}")
    if ids2.shape[0] == 0 or ids2.shape[1] == 0:
        raise ValueError(f"x must have at least one step and one sequence, got shape {ids.shape}")
    if ids2.shape[0] * ids2.shape[1] > MAX_ROWS:
        raise ValueError(f"x must have at most {MAX_ROWS} steps x sequences, got {ids.shape}")
    return ids2, batched


def lengths(value, batch, steps, batched):
    """Sequence lengths as an intp array of shape (batch,), each in [1, steps]."""
    if value is None:
        return None
    if not batched:
        raise ValueError("lengths is only for batched input; x is unbatched (2-D)")
    arr = integer_array("lengths", value, "integers")
    if arr.shape != (batch,):
        raise ValueError(f"lengths must have shape ({batch},) (one per sequence), got {arr.shape}")
    lo, hi = arr.min(), arr.max()
    if lo < 1 or hi > steps:
        raise ValueError(f"lengths must be in [1, {steps}] (the number of steps), "
                         f"got values from {lo} to {hi}")
    return kernel_layout(arr.astype(np.intp, copy=False))


def state_array(name, value, shape, dtype):
    """An initial state: float array of ``shape``, returned C-contiguous."""
    if (type(value) is np.ndarray and value.shape == shape and value.dtype == dtype
            and value.flags.c_contiguous):
        return value                      # the common case, checked cheaply
    arr = float_array(name, value, dtype)
    expect_shape(name, arr, shape)
    return np.ascontiguousarray(arr)


def state_parts(what, value, names, shape, dtype, owner, allow_none=False):
    """A recurrent state (or its gradient) as a tuple of C-contiguous arrays of
    ``shape`` (or of shape[k] for part k, when ``shape`` is a tuple of shapes):
    one for RNN and GRU states, a pair named ``names`` for an LSTM's
    (``owner`` names the module in the error); entries may be None with
    ``allow_none``."""
    shapes = shape if isinstance(shape[0], tuple) else (shape,) * len(names)
    if len(names) == 2:
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise TypeError(f"{what} must be a pair ({', '.join(names)}) for an {owner}, "
                            f"got {type(value).__name__}")
        values = value
    else:
        names, values = (what,), (value,)
    return tuple(None if v is None and allow_none else state_array(n, v, shp, dtype)
                 for n, v, shp in zip(names, values, shapes))


def token_ids(name, value, vocab_size):
    """Integer ids in [0, vocab_size), any shape, as an intp array."""
    arr = integer_array(name, value, "integer ids")
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        raise ValueError(f"{name} must be in [0, {vocab_size}), got values from "
                         f"{arr.min()} to {arr.max()}")
    return kernel_layout(arr.astype(np.intp, copy=False))
