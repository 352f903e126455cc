"""Reduced-precision weights for inference: ``fastrnn.quantize(module, weights=...)``.

    q = fastrnn.quantize(model, weights="float16")   # or "bfloat16", "int8", "float32"
    q(x)                                             # inference; training refused

Returns a new module (the original is untouched) whose weight matrices --
W_ih, W_hh and W_hr of every RNN/GRU/LSTM layer and cell, every Dense's
weight, in any composite or ready-made model -- are rounded to the reduced
format; biases, peepholes and embeddings stay as they were. The reduced
values are kept (``quantized_weights()``: float16 arrays, bfloat16 as their
uint16 bit patterns, int8 codes with one float32 scale per output row) and
the module computes in its own dtype with those values (the weights widened: w =
code for the 16-bit formats, w = code * scale for int8; on the dot products
below the activations are rounded too).

- float32: the weights as they are (a float64 module's rounded to float32):
  no rounding error; the copy only packs them once (below), as an ONNX
  Runtime session does when it is made.
- float16: round to nearest (IEEE half); |w| must stay below 65504.
- bfloat16: round to nearest even of the float32 value's upper 16 bits.
- int8: per output row, scale = max|w_row| / 127, code = round(w / scale).

``save`` writes the reduced weights (a 16-bit file is about half the float32
one, int8 a quarter); ``fastrnn.load`` gives the quantized module back.

Speed: float32 -- unit-split layer calls (one direction, small batches)
read every thread's share of W_ih and W_hh packed once per module and team
size (fastrnn._engine.unit_shares), batch-split calls every direction's
panels packed once (fastrnn._engine.batch_panels), instead of packing them
at every call: the same panels, the same products, the float module's bits
(packing was 5-15% of a batch-1 call: bench.quantize_speed's "f32
packed"). The reduced
formats -- layer calls on the unit split (small batches) read the reduced
weights, packed once per module (fastrnn._engine.prepacked): int8 on int8
dot products (AVX-512 VNNI's, else AVX2's vpmaddubsw with the same bits; the
rows of h_{t-1} and of the inputs quantized to 255 levels per row on the
fly), bfloat16 on
bfloat16 dot products (AVX512-BF16; those rows rounded to bfloat16), both at
every size and batch; elsewhere every format is widened to float32 in
registers, only for one- and two-row calls whose weights exceed half a
core's L2 per thread, where the bytes bound a step (16-bit ones then give
the float32 step's bits on the widened weights, with the same kernel's
blocking of k). One-row float32 steps of cells and one-step layer calls
read the 16-bit weights widened (fastrnn_rows_dot16). Everything else
(larger batches, weights the caches hold anyway) runs on the widened
float32 weights, as fast as the float32 module. ``python -m fastrnn info``
says which way each format goes on this CPU; ``python -m bench.quantize_speed``
and ``python -m bench.quantize_accuracy`` measure the speed and the error
(README).
"""
import copy

import numpy as np

from fastrnn import _checks
from fastrnn._module import Parameterized

FORMATS = ("float32", "float16", "bfloat16", "int8")


def _leaves_and_tree(module):
    """(the modules that own weights, every module of the tree) of ``module``."""
    from fastrnn.cells import _Cell
    from fastrnn.composition import Bidirectional, Stacked
    from fastrnn.models._base import Model
    from fastrnn.sequential import FinalState, Sequential
    tree, leaves, todo = [], [], [module]
    while todo:
        m = todo.pop()
        tree.append(m)
        if isinstance(m, Stacked):
            todo.extend(m.layers)
        elif isinstance(m, Bidirectional):
            todo.extend((m.layer, m.reverse_layer))
        elif isinstance(m, Sequential):
            todo.extend(m.modules)
        elif isinstance(m, FinalState):
            todo.append(m.module)
        elif isinstance(m, _Cell):
            todo.append(m._layer)
        elif isinstance(m, Model):
            todo.extend(m._parts.values())
        else:
            leaves.append(m)
    return leaves, tree


def _reducible(owner, name):
    """Whether weight ``name`` of ``owner`` is one the formats reduce: the
    weight matrices of the recurrent layers and of Dense (not biases,
    peepholes or embeddings)."""
    from fastrnn.linear import Dense
    if isinstance(owner, Dense):
        return name == "weight"
    return name.startswith(("weight_ih", "weight_hh", "weight_hr"))


def round_weights(w, fmt):
    """(stored values, scale or None, the values widened to w's dtype) of a
    weight matrix w (rows = outputs) in format ``fmt``."""
    w = np.asarray(w)
    if fmt == "float32":
        codes = w.astype(np.float32)
        return codes, None, codes.astype(w.dtype)
    if fmt == "float16":
        if np.abs(w).max(initial=0) >= 65504:
            raise ValueError("a weight has magnitude >= 65504, beyond float16's range")
        codes = w.astype(np.float16)
        return codes, None, codes.astype(w.dtype)
    if fmt == "bfloat16":
        bits = np.ascontiguousarray(w, dtype=np.float32).view(np.uint32)
        # round to nearest even on the 16 bits dropped (NaN/inf are refused upstream)
        rounded = bits + 0x7FFF + ((bits >> 16) & 1)
        codes = (rounded >> 16).astype(np.uint16)
        return codes, None, (codes.astype(np.uint32) << 16).view(np.float32).astype(w.dtype)
    scale = np.abs(w).max(axis=-1, keepdims=True) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    codes = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return codes, scale[..., 0], (codes * scale).astype(w.dtype)


def quantize(module, weights="float16"):
    """A new module with the weight matrices in ``weights`` format (see the
    module docstring; "float32": the same weights, packed once for the
    kernels); inference only: forward / backward / fit and load_state_dict
    of it are refused and its parameters() are read-only (quantize the
    float module again)."""
    fmt = _checks.choice("weights", weights, FORMATS)
    if not isinstance(module, Parameterized):
        raise TypeError(f"module must be a fastrnn module or model, got {type(module).__name__}")
    if module._inference_only:
        raise ValueError(f"module is already quantized ({module._inference_only}); quantize "
                         f"the float module (rounding twice loses more)")
    leaves, _ = _leaves_and_tree(module)
    for leaf in leaves:                 # checked before anything is made
        for name, arr in leaf._named_parameters().items():
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{type(leaf).__name__} weight {name!r} holds NaN or inf")
    out = copy.deepcopy(module)
    leaves, tree = _leaves_and_tree(out)
    for leaf in leaves:
        reduced = {}
        for name, arr in leaf._named_parameters().items():
            if _reducible(leaf, name):
                codes, scale, widened = round_weights(arr, fmt)
                arr[...] = widened
                # (float32 weights of a float32 module: the stored values are the weights)
                reduced[name] = (arr if codes.dtype == arr.dtype else codes, scale)
        if reduced:
            leaf._quantized = (fmt, reduced)
    for m in tree:
        m._inference_only = fmt
    return out


CODE_DTYPES = {"float32": np.dtype(np.float32), "float16": np.dtype(np.float16),
               "bfloat16": np.dtype(np.uint16), "int8": np.dtype(np.int8)}


def decode(codes, scale, fmt, dtype):
    """The weights that stored values stand for, in ``dtype``."""
    if fmt in ("float32", "float16"):
        return codes.astype(dtype)
    if fmt == "bfloat16":
        return (codes.astype(np.uint32) << 16).view(np.float32).astype(dtype)
    return (codes * scale[:, None].astype(np.float32)).astype(dtype)


def _owners(module):
    """{full state_dict key: (leaf module, its own name)} of every weight."""
    leaves, _ = _leaves_and_tree(module)
    by_id = {id(arr): (leaf, name) for leaf in leaves
             for name, arr in leaf._named_parameters().items()}
    return {key: by_id[id(arr)] for key, arr in module._named_parameters().items()}


def reduced_members(module):
    """{full state_dict key: (stored values, scale or None)} of a quantized
    module (what its model file holds instead of the widened weights)."""
    out = {}
    for key, (leaf, name) in _owners(module).items():
        fmt, reduced = quantized_weights(leaf)
        if name in reduced:
            out[key] = reduced[name]
    return out


def attach(module, fmt, members):
    """Make a module whose weights were loaded widened from ``members`` ({full
    key: (stored values, scale)}) the quantized module they came from; ValueError
    for a key that is not one of the weights the formats reduce."""
    owners = _owners(module)
    per_leaf = {}
    for key, value in members.items():
        leaf, name = owners[key]
        if not _reducible(leaf, name):
            raise ValueError(f"{key!r} is not a weight matrix that {fmt} reduces")
        codes, scale = value
        if fmt == "int8" and codes.size and codes.min() < -127:
            # (the quantizer's codes are symmetric; AVX2's int8 products negate codes)
            raise ValueError(f"{key!r}: int8 codes must lie in [-127, 127], got "
                             f"{int(codes.min())}")
        if fmt == "int8" and not np.all(np.isfinite(scale) & (scale >= 0)):
            raise ValueError(f"{key + '.scale'!r}: scales must be finite and >= 0")
        per_leaf.setdefault(id(leaf), (leaf, {}))[1][name] = value
    for leaf, reduced in per_leaf.values():
        leaf._quantized = (fmt, reduced)
    for m in _leaves_and_tree(module)[1]:
        m._inference_only = fmt


def quantized_weights(module):
    """{owner's weight name: (codes, scale or None)} of a quantized leaf module
    (a layer or Dense), and its format: (format, dict); (None, {}) otherwise."""
    return getattr(module, "_quantized", (None, {}))
