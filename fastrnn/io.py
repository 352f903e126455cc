"""Model files: one .npz holding the weights and a JSON description of the module.

    layer.save("model.npz")            # any fastrnn module or fastrnn.models model
    same = fastrnn.load("model.npz")   # the same kind of module, same outputs

The file is a numpy .npz archive: one array per state_dict entry, plus
``__fastrnn__``, a string array holding JSON {"format", "version", "module"};
a model's description includes its vocabulary (its symbols and unknown token).
A quantized module (fastrnn.quantize) keeps its reduced weights: the JSON adds
{"quantized": {"format", "weights": [keys]}}, those members hold the stored
values (float32 as they are, float16, bfloat16 as uint16, int8 with a
``<key>.scale`` member of per-row float32 scales), and loading checks their
dtypes exactly.

Loading checks the file before it builds anything, so what a file declares
cannot make it allocate more than its own bytes back: it reads the zip
directory and the description (at most MAX_HEADER_BYTES, nested at most
MAX_DEPTH deep, every size as the constructors bound it, at most
fastrnn._registry.MAX_LAYERS layers), works out from the description the
name, shape and dtype of every weight, and compares
them with the .npy header of every member. Each member's declared size must
be what its header says, and a compressed member's declared size must be
one its compressed bytes can hold (deflate expands at most MAX_INFLATION
times). Only then does it build the module and read the weights (never
unpickling, never more bytes than declared). A file that is truncated,
corrupt, or does not match its description is a ValueError naming the file.
"""
import json
import math
import os
import zipfile

import numpy as np

from fastrnn import _checks, _registry
from fastrnn._registry import build, describe  # noqa: F401  (fastrnn.io.describe / build)

# bounds on what a file may declare (every failure names the file)
MAX_HEADER_BYTES = 64 << 20        # the JSON description (a vocabulary of ~1M words fits)
MAX_DEPTH = 16                     # nesting of containers (Stacked, Bidirectional) and JSON
# deflate's best ratio is 1032:1 (a stream of one repeated byte); a member that
# declares more bytes than that, plus slack for its headers, is not a real stream
MAX_INFLATION = 1032

FORMAT = "fastrnn-module"
SCALE = ".scale"          # the member of an int8 weight's per-row scales
VERSION = 1
HEADER = "__fastrnn__"


def save(module, path):
    """Write ``module`` (weights and architecture) to ``path`` as one .npz file."""
    _check_path(path)
    meta = {"format": FORMAT, "version": VERSION, "module": describe(module)}
    arrays = module.state_dict()
    fmt = getattr(module, "_inference_only", None)
    if fmt:
        # a quantized module (fastrnn.quantize) keeps its reduced weights
        from fastrnn import quantization
        reduced = quantization.reduced_members(module)
        for key, (codes, scale) in reduced.items():
            arrays[key] = codes
            if scale is not None:
                arrays[key + SCALE] = scale
        meta["quantized"] = {"format": fmt, "weights": sorted(reduced)}
    header = json.dumps(meta)
    with open(path, "wb") as f:
        np.savez(f, **{HEADER: np.array(header)}, **arrays)
    return path


def load(path):
    """The module saved in ``path`` (same kind, same weights, same outputs).

    FileNotFoundError when there is no such file; ValueError naming the file
    when it is not a fastrnn model file, is truncated or corrupt, declares
    more than the bounds above or than its bytes hold, or its weights do not
    match its architecture. Nothing is built before the file is checked.
    """
    name = os.fspath(_check_path(path))
    with open(path, "rb") as f:                # FileNotFoundError as open() gives it
        magic = f.read(4)
        if magic != b"PK\x03\x04":
            raise ValueError(f"{name}: not a fastrnn model file (not an .npz archive)")
        try:
            with zipfile.ZipFile(f) as archive:
                description, members, quantized = _read_directory(archive)
                expected = _registry.weight_shapes(description)
                fmt, reduced = _reduced_expectations(quantized, expected)
                _compare(members, expected, reduced)
                arrays = {key: _read_member(archive, info, shape, dtype)
                          for key, (info, shape, dtype) in members.items()}
            module = build(description)
            if fmt is None:
                module.load_state_dict(arrays)
            else:
                from fastrnn import quantization
                stored = {key: (arrays.pop(key), arrays.pop(key + SCALE, None))
                          for key in reduced}
                arrays.update((key, quantization.decode(codes, scale, fmt, np.float64))
                              for key, (codes, scale) in stored.items())
                module.load_state_dict(arrays)
                quantization.attach(module, fmt, stored)
        except (TypeError, ValueError, RecursionError, EOFError, OSError, zipfile.BadZipFile,
                zipfile.LargeZipFile, NotImplementedError, RuntimeError) as exc:
            # (RuntimeError: zipfile's "encrypted, password required")
            raise ValueError(f"{name}: {_reason(exc)}") from None
    return module


class _FileError(ValueError):
    """A refusal whose message is complete (no exception name added)."""


def _reason(exc):
    if isinstance(exc, (_FileError, TypeError)) or type(exc) is ValueError:
        return str(exc)
    if isinstance(exc, RecursionError):
        return f"its {HEADER} header is nested too deeply"
    return f"not a readable fastrnn model file ({type(exc).__name__}: {exc})"


def _read_directory(archive):
    """(description, {state_dict key: (ZipInfo, shape, dtype)}) from the zip
    directory, the description member and every other member's .npy header."""
    infos = archive.infolist()
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise _FileError("not a readable fastrnn model file (a member name appears twice)")
    members = {}
    header = None
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise _FileError(f"not a fastrnn model file (member {info.filename!r} is not .npy)")
        key = info.filename[:-4]
        shape, dtype, offset = _npy_header(archive, info)
        _check_member_size(info, shape, dtype, offset)
        if key == HEADER:
            header = (info, shape, dtype)
        else:
            members[key] = (info, shape, dtype)
    if header is None:
        raise _FileError(f"not a fastrnn model file (no {HEADER} header)")
    info, shape, dtype = header
    if shape != () or dtype.kind != "U":
        raise _FileError(f"not a fastrnn model file (its {HEADER} header is not a string)")
    if info.file_size > MAX_HEADER_BYTES:
        raise _FileError(f"its {HEADER} header declares {info.file_size} bytes, more than "
                         f"the {MAX_HEADER_BYTES} a model file may have")
    text = str(_read_member(archive, info, shape, dtype))
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise _FileError(f"its {HEADER} header is not valid JSON ({exc})") from None
    _check_depth(meta)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _FileError(f"not a fastrnn model file (format {meta!r:.60})")
    if meta.get("version") != VERSION:
        raise _FileError(f"file version {meta.get('version')!r}, this fastrnn reads "
                         f"version {VERSION}")
    return meta.get("module"), members, meta.get("quantized")


def _npy_header(archive, info):
    """(shape, dtype, data offset) of one .npy member, reading only its header."""
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise _FileError(f"member {info.filename!r}: .npy format {version} is not read")
        offset = f.tell()
    if dtype.hasobject:
        raise _FileError(f"not a readable fastrnn model file (member {info.filename!r} "
                         f"holds Python objects, which are never unpickled)")
    if fortran or dtype.fields is not None or dtype.subdtype is not None:
        raise _FileError(f"not a readable fastrnn model file (member {info.filename!r} is "
                         f"not a plain C-ordered array)")
    return shape, dtype, offset


def _check_member_size(info, shape, dtype, offset):
    """The member's declared size must be its header's, and its compressed
    bytes must be able to hold that."""
    nbytes = math.prod(shape) * dtype.itemsize
    if info.file_size != offset + nbytes:
        raise _FileError(f"member {info.filename!r} declares {info.file_size} bytes, its "
                         f"header {offset + nbytes} (shape {shape}, {dtype})")
    if info.compress_type == zipfile.ZIP_STORED:
        ok = info.compress_size == info.file_size
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        ok = info.file_size <= MAX_INFLATION * info.compress_size + 4096
    else:
        raise _FileError(f"member {info.filename!r}: compression method "
                         f"{info.compress_type} is not read (stored or deflate only)")
    if not ok:
        raise _FileError(f"member {info.filename!r} declares {info.file_size} bytes in "
                         f"{info.compress_size} compressed bytes, which cannot hold them")


def _read_member(archive, info, shape, dtype):
    """The member's array (of native byte order): exactly its declared bytes,
    CRC checked."""
    out = np.empty(shape, dtype)
    with archive.open(info) as f:
        f.seek(info.file_size - out.nbytes)    # past the .npy header
        view = memoryview(out.reshape(-1).view(np.uint8))
        done = 0
        while done < len(view):
            n = f.readinto(view[done:])
            if not n:
                raise _FileError(f"member {info.filename!r} is truncated")
            done += n
        if f.read(1):                          # at the end: zipfile checks the CRC here
            raise _FileError(f"member {info.filename!r} is longer than declared")
    return out if dtype.isnative else out.astype(dtype.newbyteorder("="))


def _check_depth(value, depth=0):
    if depth > MAX_DEPTH:
        raise _FileError(f"its {HEADER} header is nested more than {MAX_DEPTH} deep")
    if isinstance(value, dict):
        for v in value.values():
            _check_depth(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, (dict, list)):
                _check_depth(v, depth + 1)


def _reduced_expectations(quantized, expected):
    """(format, {key: stored dtype}) of a quantized module's file, its members
    added to ``expected`` (an int8 weight's scales as key + SCALE); (None, {})
    for a float module."""
    if quantized is None:
        return None, {}
    from fastrnn import quantization
    if (not isinstance(quantized, dict) or quantized.get("format") not in quantization.FORMATS
            or not isinstance(quantized.get("weights"), list)):
        raise _FileError(f"its 'quantized' entry must name a format of "
                         f"{quantization.FORMATS} and list its weights, got {quantized!r:.80}")
    fmt = quantized["format"]
    reduced = {}
    for key in quantized["weights"]:
        if not isinstance(key, str) or key not in expected or len(expected[key][0]) != 2:
            raise _FileError(f"its 'quantized' entry lists {key!r}, not a weight matrix of "
                             f"the module")
        reduced[key] = quantization.CODE_DTYPES[fmt]
        if fmt == "int8":
            expected[key + SCALE] = ((expected[key][0][0],), np.float32)
    return fmt, reduced


def _compare(members, expected, reduced):
    """Every member is a weight the description declares, with its shape and a
    floating-point dtype (load_state_dict converts it to the module's), or for
    a quantized module's reduced weights exactly their stored dtype."""
    _checks.same_keys(expected, members)
    for key, (shape, dtype) in expected.items():
        _, got_shape, got_dtype = members[key]
        if got_shape != shape:
            raise _FileError(f"state_dict[{key!r}] must have shape {shape}, got {got_shape}")
        if key in reduced:
            if got_dtype != reduced[key]:
                raise _FileError(f"state_dict[{key!r}] must hold {reduced[key]} values, got "
                                 f"dtype {got_dtype}")
        elif got_dtype.kind != "f":
            raise _FileError(f"state_dict[{key!r}] must hold floating-point numbers, "
                             f"got dtype {got_dtype}")


def _check_path(path):
    """Paths are strings or os.PathLike (anything open() takes)."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"path must be a file path, got {type(path).__name__}")
    return path
