"""ONNX files -> a graph of fastrnn layers and numpy steps (``fastrnn.onnx.load``).

Every RNN/GRU/LSTM node becomes a fastrnn layer (its weights converted to
PyTorch's gate order once, at load time); the nodes that exporters put around
them (shape arithmetic, the zero initial states, transposes, the embedding
Gather, the output MatMul/Gemm, activations) run as numpy steps. The whole
file is checked before anything runs: an op, attribute or input outside the
supported set is a ValueError naming the node.
"""
import os

import numpy as np

from fastrnn import _general
from fastrnn.layers import GRU, LSTM, RNN
from fastrnn.onnx._gates import from_onnx

_RECURRENT = {"RNN": (RNN, 1), "GRU": (GRU, 3), "LSTM": (LSTM, 4)}
# ONNX's default activations of each operator
_DEFAULT_ACTIVATIONS = {"RNN": ("tanh",), "GRU": ("sigmoid", "tanh"),
                        "LSTM": ("sigmoid", "tanh", "tanh")}
MAX_NODES = 100_000
MAX_FILL = 1 << 31           # elements a ConstantOfShape may make (8 GiB of float32)


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("fastrnn.onnx.load needs the onnx package "
                          "(pip install 'fastrnn[onnx]')") from exc
    return onnx


# -- numpy steps -----------------------------------------------------------------------
def _sigmoid(x):
    return (0.5 * (1 + np.tanh(0.5 * x))).astype(x.dtype, copy=False)


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _softmax_legacy(x, axis):
    """Softmax before opset 13: over the flattened dims from ``axis`` on."""
    axis = axis % x.ndim if x.ndim else 0
    flat = x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)
    return _softmax(flat, 1).reshape(x.shape)


def _axes(args, attrs):
    """Squeeze/Unsqueeze/Slice axes: an input from opset 13 (10 for Slice), an attribute before."""
    if len(args) > 1 and args[1] is not None:
        return [int(a) for a in np.asarray(args[1]).ravel()]
    return list(attrs.get("axes", []))


def _reshape(x, shape, allowzero):
    shape = [int(s) for s in np.asarray(shape).ravel()]
    if not allowzero:
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _slice(x, starts, ends, axes, steps):
    index = [slice(None)] * x.ndim
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    for s, e, a, k in zip(starts, ends, axes, steps, strict=True):
        # ONNX clamps like Python slicing; INT64_MAX/MIN mean "to the end"
        index[int(a)] = slice(int(s), int(max(min(int(e), 2**62), -2**62)), int(k))
    return x[tuple(index)]


def _slice_step(args, attrs, opset):
    x = args[0]
    if opset < 10:
        return _slice(x, attrs["starts"], attrs["ends"], attrs.get("axes"), None)
    starts, ends = (np.asarray(a).ravel() for a in args[1:3])
    axes = None if len(args) < 4 or args[3] is None else np.asarray(args[3]).ravel()
    steps = None if len(args) < 5 or args[4] is None else np.asarray(args[4]).ravel()
    return _slice(x, starts, ends, axes, steps)


def _squeeze(args, attrs, opset):
    x = args[0]
    axes = _axes(args, attrs)
    return np.squeeze(x, axis=tuple(axes)) if axes else np.squeeze(x)


def _unsqueeze(args, attrs, opset):
    x = args[0]
    axes = _axes(args, attrs)
    out_ndim = x.ndim + len(axes)
    return np.expand_dims(x, tuple(a % out_ndim for a in axes))


def _gemm(args, attrs, opset):
    a, b = args[0], args[1]
    a = a.T if attrs.get("transA", 0) else a
    b = b.T if attrs.get("transB", 0) else b
    y = a @ b
    alpha = attrs.get("alpha", 1.0)
    if alpha != 1.0:
        y = y * y.dtype.type(alpha)
    if len(args) > 2 and args[2] is not None:
        beta = attrs.get("beta", 1.0)
        y = y + (args[2] if beta == 1.0 else args[2] * y.dtype.type(beta))
    return y


def _shape(args, attrs, opset):
    shape = np.array(args[0].shape, np.int64)
    start, end = attrs.get("start", 0), attrs.get("end")
    return shape[start:end]


def _constant_of_shape(args, attrs, opset):
    value = attrs.get("value", np.zeros(1, np.float32))
    shape = [int(s) for s in np.asarray(args[0]).ravel()]
    if any(s < 0 for s in shape) or np.prod(shape, dtype=float) > MAX_FILL:
        raise ValueError(f"shape must be non-negative with at most {MAX_FILL} elements, "
                         f"got {shape}")
    return np.full(shape, value.ravel()[0], value.dtype)


def _softmax_step(args, attrs, opset):
    if opset < 13:
        return _softmax_legacy(args[0], attrs.get("axis", 1))
    return _softmax(args[0], attrs.get("axis", -1))


def _gather(args, attrs, opset):
    data, indices = args
    axis = attrs.get("axis", 0)
    size = data.shape[axis]
    if indices.size and (indices.min() < -size or indices.max() >= size):
        raise ValueError(f"indices must be in [{-size}, {size - 1}], got values from "
                         f"{indices.min()} to {indices.max()}")
    return np.take(data, indices, axis=axis)


_NUMPY_STEPS = {
    "Add": lambda args, attrs, opset: args[0] + args[1],
    "Sub": lambda args, attrs, opset: args[0] - args[1],
    "Mul": lambda args, attrs, opset: args[0] * args[1],
    "MatMul": lambda args, attrs, opset: np.matmul(args[0], args[1]),
    "Gemm": _gemm,
    "Concat": lambda args, attrs, opset: np.concatenate(args, axis=attrs["axis"]),
    "ConstantOfShape": _constant_of_shape,
    "Gather": _gather,
    "Reshape": lambda args, attrs, opset: _reshape(args[0], args[1], attrs.get("allowzero", 0)),
    "Shape": _shape,
    "Slice": _slice_step,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Transpose": lambda args, attrs, opset: np.transpose(args[0], attrs.get("perm")),
    "Identity": lambda args, attrs, opset: args[0],
    "Cast": lambda args, attrs, opset: args[0].astype(attrs["to"]),
    "Relu": lambda args, attrs, opset: np.maximum(args[0], args[0].dtype.type(0)),
    "Tanh": lambda args, attrs, opset: np.tanh(args[0]),
    "Sigmoid": lambda args, attrs, opset: _sigmoid(args[0]),
    "Softmax": _softmax_step,
}
SUPPORTED_OPS = tuple(sorted([*_NUMPY_STEPS, "Constant", *_RECURRENT]))


class _Step:
    """One node: its op, input/output names, python attributes and, for the
    recurrent operators, the fastrnn layer (and whether it runs reversed)."""

    __slots__ = ("op", "name", "inputs", "outputs", "attrs", "layer", "reverse")

    def __init__(self, op, name, inputs, outputs, attrs, layer=None, reverse=False):
        self.op, self.name, self.inputs, self.outputs = op, name, inputs, outputs
        self.attrs, self.layer, self.reverse = attrs, layer, reverse


class OnnxModel:
    """An ONNX graph run by fastrnn: ``outputs = model(*inputs, **named_inputs)``.

    Inputs are the graph's (``input_names``, in order), numpy arrays or
    anything numpy converts; the result is the graph's outputs
    (``output_names``), one array when there is one, else a tuple.
    ``layers`` maps each RNN/GRU/LSTM node's name to its fastrnn layer.
    """

    def __init__(self, inputs, outputs, steps, constants, opset, source):
        self._inputs = inputs              # [(name, numpy dtype, declared shape)]
        self.output_names = list(outputs)
        self._steps = steps
        self._constants = constants
        self.opset = opset
        self.source = source

    @property
    def input_names(self):
        return [name for name, _, _ in self._inputs]

    @property
    def layers(self):
        return {s.name: s.layer for s in self._steps if s.layer is not None}

    def __repr__(self):
        kinds = ", ".join(f"{type(layer).__name__}" for layer in self.layers.values())
        return (f"OnnxModel({self.source!r}, inputs={self.input_names}, "
                f"outputs={self.output_names}, layers=[{kinds}])")

    def __call__(self, *args, **kwargs):
        names = self.input_names
        if len(args) > len(names):
            raise TypeError(f"the model takes {len(names)} inputs {names}, got {len(args)}")
        given = dict(zip(names, args))
        for key, value in kwargs.items():
            if key not in names:
                raise TypeError(f"unknown input {key!r}; the model's inputs are {names}")
            if key in given:
                raise TypeError(f"input {key!r} given twice")
            given[key] = value
        missing = [n for n in names if n not in given]
        if missing:
            raise TypeError(f"missing inputs {missing}; the model's inputs are {names}")
        env = dict(self._constants)
        for name, dtype, shape in self._inputs:
            env[name] = _check_input(name, given[name], dtype, shape)
        for step in self._steps:
            args_ = [env[n] if n else None for n in step.inputs]
            try:
                results = _run_step(step, args_, self.opset)
            except (ValueError, IndexError, TypeError) as exc:
                raise ValueError(f"node {step.name!r} ({step.op}): {exc}") from exc
            for name, value in zip(step.outputs, results):
                if name:
                    env[name] = value
        out = tuple(env[n] for n in self.output_names)
        return out[0] if len(out) == 1 else out


def _check_input(name, value, dtype, shape):
    arr = np.asarray(value) if not isinstance(value, np.ndarray) else value
    if np.dtype(dtype).kind in "iu":
        if arr.dtype.kind not in "iu":
            raise TypeError(f"input {name!r} must hold integers ({np.dtype(dtype).name}), "
                            f"got {arr.dtype}")
    elif arr.dtype.kind not in "fiub":
        raise TypeError(f"input {name!r} must hold numbers, got {arr.dtype}")
    arr = arr.astype(dtype, copy=False)
    if shape is not None:
        if arr.ndim != len(shape) or any(d is not None and d != s
                                         for d, s in zip(shape, arr.shape)):
            want = "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"
            raise ValueError(f"input {name!r} must have shape {want}, got {arr.shape}")
    return arr


def _run_step(step, args, opset):
    if step.layer is None:
        out = _NUMPY_STEPS[step.op](args, step.attrs, opset)
        return (out,)
    return _run_recurrent(step, args)


def _run_recurrent(step, args):
    """ONNX RNN/GRU/LSTM semantics on a fastrnn layer: X (T, B, I) (layout 1:
    (B, T, I)) -> Y (T, D, B, H) (layout 1: (B, T, D, H)), Y_h, Y_c (D, B, H)
    (layout 1: (B, D, H))."""
    layer, layout = step.layer, step.attrs["layout"]
    args = args + [None] * (8 - len(args))
    x, seq_lens, h0, c0 = args[0], args[4], args[5], args[6]
    if x.ndim != 3:
        raise ValueError(f"X must be 3-D, got shape {x.shape}")
    if layout:
        x = x.transpose(1, 0, 2)
        h0, c0 = (None if s is None else s.transpose(1, 0, 2) for s in (h0, c0))
    T, B = x.shape[:2]
    D, H = layer.num_directions, layer.hidden_size
    hx = None
    if h0 is not None or c0 is not None:
        zeros = np.zeros((D, B, H), layer.dtype)
        h0 = zeros if h0 is None else h0
        hx = (h0, zeros if c0 is None else c0) if isinstance(layer, LSTM) else h0
    lengths = None if seq_lens is None else np.asarray(seq_lens)
    y, state = layer._call(x, hx, lengths, step.reverse)
    Y = y.reshape(T, B, D, H).transpose((1, 0, 2, 3) if layout else (0, 2, 1, 3))
    states = state if isinstance(layer, LSTM) else (state,)
    if layout:
        states = tuple(s.transpose(1, 0, 2) for s in states)
    return (np.ascontiguousarray(Y), *states)


# -- loading ---------------------------------------------------------------------------
def load(path):
    """An ONNX file as an OnnxModel running fastrnn (see the module docstring).

    Supported: the RNN/GRU/LSTM operators with every attribute and input of
    the spec (direction, layout, sequence_lens, initial_h/initial_c,
    linear_before_reset, clip, input_forget, peepholes P, activations with
    activation_alpha/beta; W, R, B, P must be constants; the variants run on
    fastrnn's general path, see fastrnn._general) and the nodes in
    ``SUPPORTED_OPS``. Refused with a ValueError naming the node before
    anything runs: any other op, a custom domain, unknown activation
    functions, tensors stored outside the file. A file that is not ONNX:
    ValueError naming it.
    """
    onnx = _onnx()
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path, got {type(path).__name__}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {os.fspath(path)!r}")
    try:
        # external data would name other files to read: refused below, never followed
        model = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ValueError(f"{os.fspath(path)!r} is not a readable ONNX model: {exc}") from exc
    try:
        return _build(onnx, model, os.fspath(path))
    except ValueError as exc:
        raise ValueError(f"{os.fspath(path)!r}: {exc}") from exc


def _opset(model):
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise ValueError("the model imports no default-domain opset")
    return int(versions[0])


def _tensor(onnx, tensor, what):
    if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
        raise ValueError(f"{what} is stored outside the file (external data is not read)")
    try:
        arr = onnx.numpy_helper.to_array(tensor)
    except Exception as exc:
        raise ValueError(f"{what} cannot be read: {exc}") from exc
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{what} has dtype {arr.dtype}; only numeric tensors are supported")
    return arr


def _build(onnx, model, source):
    graph = model.graph
    opset = _opset(model)
    if len(graph.node) > MAX_NODES:
        raise ValueError(f"the graph has {len(graph.node)} nodes (at most {MAX_NODES})")
    constants = {t.name: _tensor(onnx, t, f"initializer {t.name!r}") for t in graph.initializer}
    inputs = []
    for vi in graph.input:
        if vi.name in constants:
            continue                      # IR < 4: initializers listed as inputs too
        inputs.append(_input_spec(onnx, vi))
    defined = set(constants) | {name for name, _, _ in inputs}
    steps = []
    for index, node in enumerate(graph.node):
        label = node.name or f"#{index}"
        where = f"node {label!r} ({node.op_type})"
        if node.domain not in ("", "ai.onnx"):
            raise ValueError(f"{where}: domain {node.domain!r} is not supported")
        if node.op_type not in SUPPORTED_OPS:
            raise ValueError(f"{where}: op {node.op_type!r} is not supported (fastrnn runs "
                             f"{', '.join(SUPPORTED_OPS)})")
        for name in node.input:
            if name and name not in defined:
                raise ValueError(f"{where}: input {name!r} is not defined before the node "
                                 f"(the graph must be in topological order)")
        attrs = _attributes(onnx, node, where)
        if node.op_type == "Constant":
            constants[node.output[0]] = _constant_value(onnx, node, attrs, where)
        elif node.op_type in _RECURRENT:
            steps.append(_recurrent_step(node, label, attrs, constants, where))
        else:
            _check_numpy_node(onnx, node, attrs, opset, where)
            steps.append(_Step(node.op_type, label, list(node.input), list(node.output), attrs))
        defined.update(n for n in node.output if n)
    for vi in graph.output:
        if vi.name not in defined:
            raise ValueError(f"graph output {vi.name!r} is computed by no node")
    return OnnxModel(inputs, [vi.name for vi in graph.output], steps, constants, opset, source)


def _input_spec(onnx, vi):
    t = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        raise ValueError(f"graph input {vi.name!r} is not a tensor")
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type))
    except Exception as exc:
        raise ValueError(f"graph input {vi.name!r} has an unsupported element type") from exc
    if dtype.kind not in "fiub":
        raise ValueError(f"graph input {vi.name!r} has dtype {dtype}; only numbers are supported")
    shape = None
    if t.HasField("shape"):
        shape = tuple(int(d.dim_value) if d.HasField("dim_value") else None
                      for d in t.shape.dim)
    return vi.name, dtype.type, shape


def _attributes(onnx, node, where):
    attrs = {}
    for a in node.attribute:
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            raise ValueError(f"{where}: subgraph attributes are not supported")
        if a.type == onnx.AttributeProto.TENSOR:
            attrs[a.name] = _tensor(onnx, a.t, f"{where} attribute {a.name!r}")
            continue
        value = onnx.helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, list):
            value = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
        attrs[a.name] = value
    return attrs


def _constant_value(onnx, node, attrs, where):
    if len(attrs) != 1:
        raise ValueError(f"{where}: a Constant needs exactly one value attribute")
    (key, value), = attrs.items()
    if key == "value":
        return value
    if key in ("value_float", "value_floats"):
        return np.array(value, np.float32)
    if key in ("value_int", "value_ints"):
        return np.array(value, np.int64)
    raise ValueError(f"{where}: attribute {key!r} is not supported")


def _check_numpy_node(onnx, node, attrs, opset, where):
    if node.op_type == "Cast":
        try:
            attrs["to"] = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(attrs["to"])).type
        except Exception as exc:
            raise ValueError(f"{where}: unsupported target type {attrs.get('to')!r}") from exc
        if np.dtype(attrs["to"]).kind not in "fiub":
            raise ValueError(f"{where}: cast to {np.dtype(attrs['to'])} is not supported")
    if node.op_type == "Concat" and "axis" not in attrs:
        raise ValueError(f"{where}: Concat needs an axis")
    if node.op_type == "ConstantOfShape" and "value" in attrs and attrs["value"].size != 1:
        raise ValueError(f"{where}: value must hold one element")
    if node.op_type == "Slice" and opset < 10 and not {"starts", "ends"} <= set(attrs):
        raise ValueError(f"{where}: Slice needs starts and ends")


def _recurrent_step(node, label, attrs, constants, where):
    op = node.op_type
    cls, gates = _RECURRENT[op]
    inputs = list(node.input) + [""] * (8 - len(node.input))
    max_out = 3 if op == "LSTM" else 2
    if len(node.output) > max_out:
        raise ValueError(f"{where}: at most {max_out} outputs")

    def const(k, what):
        name = inputs[k]
        if not name:
            return None
        if name not in constants:
            raise ValueError(f"{where}: {what} must be a constant (an initializer), "
                             f"got the computed value {name!r}")
        return constants[name]

    W, R, B = const(1, "W"), const(2, "R"), const(3, "B")
    if W is None or R is None:
        raise ValueError(f"{where}: W and R are required")
    if W.dtype not in (np.float32, np.float64) or R.dtype != W.dtype or (
            B is not None and B.dtype != W.dtype):
        raise ValueError(f"{where}: W, R and B must be float32 or float64 alike, got "
                         f"{W.dtype}, {R.dtype}" + ("" if B is None else f", {B.dtype}"))
    direction = attrs.get("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ValueError(f"{where}: direction must be forward, reverse or bidirectional, "
                         f"got {direction!r}")
    D = 2 if direction == "bidirectional" else 1
    if W.ndim != 3 or W.shape[0] != D:
        raise ValueError(f"{where}: W must be ({D}, {gates}*hidden_size, input_size), "
                         f"got {W.shape}")
    H = attrs.get("hidden_size", W.shape[1] // gates)
    G, I = gates * H, W.shape[2]
    for what, arr, shape in (("W", W, (D, G, I)), ("R", R, (D, G, H)),
                             ("B", B, (D, 2 * G))):
        if arr is not None and arr.shape != shape:
            raise ValueError(f"{where}: {what} must have shape {shape} (hidden_size={H}), "
                             f"got {arr.shape}")
    if attrs.get("layout", 0) not in (0, 1):
        raise ValueError(f"{where}: layout must be 0 or 1, got {attrs['layout']}")
    options = {}
    if "clip" in attrs:
        if not attrs["clip"] > 0:
            raise ValueError(f"{where}: clip must be positive, got {attrs['clip']}")
        options["clip"] = float(attrs["clip"])
    if op == "LSTM" and attrs.get("input_forget", 0):
        options["input_forget"] = True
    P = const(7, "P") if op == "LSTM" else None
    if P is not None:
        if P.shape != (D, 3 * H) or P.dtype != W.dtype:
            raise ValueError(f"{where}: P must be ({D}, {3 * H}) of {W.dtype}, got {P.shape} "
                             f"of {P.dtype}")
        if np.any(P):
            options["peepholes"] = True
    acts = [str(a).lower() for a in attrs.get("activations", [])]
    default = list(_DEFAULT_ACTIVATIONS[op])
    if op == "RNN" and acts and set(acts) == {"relu"} and len(acts) in (1, D):
        options["nonlinearity"] = "relu"          # the kernels' RNN form
    elif acts and acts not in (default, default * D):
        options["activations"] = acts
        for key in ("activation_alpha", "activation_beta"):
            if key in attrs:
                options[key] = list(attrs[key])
    try:
        _general.resolve_activations(len(default), D, options.get("activations", default),
                                     options.get("activation_alpha"),
                                     options.get("activation_beta"))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if op == "GRU":
        options["reset_after"] = bool(attrs.get("linear_before_reset", 0))
    layer = cls(I, H, bias=B is not None, bidirectional=D == 2, dtype=W.dtype.type, **options)
    sd = {}
    for d in range(D):
        sfx = "_l0" + ("_reverse" if d else "")
        sd["weight_ih" + sfx] = from_onnx(op, W[d])
        sd["weight_hh" + sfx] = from_onnx(op, R[d])
        if B is not None:
            sd["bias_ih" + sfx] = from_onnx(op, B[d, :G])
            sd["bias_hh" + sfx] = from_onnx(op, B[d, G:])
        if layer.peepholes:
            p_i, p_o, p_f = np.split(P[d], 3)            # ONNX [i; o; f] -> [i; f; o]
            sd["peephole" + sfx] = np.concatenate([p_i, p_f, p_o])
    layer.load_state_dict(sd)
    attrs = {"layout": attrs.get("layout", 0)}
    return _Step(op, label, inputs, list(node.output), attrs, layer, direction == "reverse")
