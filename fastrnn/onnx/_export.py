"""fastrnn modules -> ONNX graphs (the RNN/GRU/LSTM operators and a few plain nodes).

Each recurrent layer becomes one ONNX RNN/GRU/LSTM node per layer (both
directions in one node), with its weights as initializers in the operator's
gate order; the layers of a stack are joined by Transpose + Reshape (the
operator's Y is (T, D, B, H)); Dense is MatMul (+ Add) (+ Tanh/Relu/Sigmoid);
Embedding is Gather. Everything runs time-major inside; a batch-first module
gets a Transpose at its input and output.
"""
import numpy as np

from fastrnn import _general
from fastrnn.cells import GRUCell, LSTMCell, RNNCell
from fastrnn.composition import Bidirectional, Stacked
from fastrnn.layers import GRU, LSTM, RNN
from fastrnn.linear import Dense, Embedding
from fastrnn.models._base import Model
from fastrnn.onnx._gates import to_onnx
from fastrnn.sequential import FinalState, Sequential, width_out

OPSET = 17
_OP = {RNN: "RNN", GRU: "GRU", LSTM: "LSTM"}
_EXPORTED = (RNN, GRU, LSTM, Stacked, Bidirectional, Sequential, FinalState, Dense,
             Embedding, RNNCell, GRUCell, LSTMCell, Model)
_DENSE_ACTIVATION = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid",
                     "softmax": "Softmax"}      # Softmax: axis -1 from opset 13


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("fastrnn.onnx needs the onnx package "
                          "(pip install 'fastrnn[onnx]')") from exc
    return onnx


class _Graph:
    """Nodes, initializers and unique names of the graph being built."""

    def __init__(self, dtype):
        self.onnx = _onnx()
        self.helper = self.onnx.helper
        self.elem = self.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        self.dtype = dtype
        self.nodes, self.initializers, self._count = [], [], 0
        self.inputs, self.outputs = [], []

    def input(self, name, shape, elem=None):
        """A graph input (of the graph's float type unless ``elem``); returns its name."""
        self.inputs.append(self.helper.make_tensor_value_info(
            name, self.elem if elem is None else elem, shape))
        return name

    def ids_input(self, name, shape):
        return self.input(name, shape, self.onnx.TensorProto.INT64)

    def output(self, name, value, shape):
        """Expose ``value`` as the float graph output ``name``."""
        self.outputs.append(self.helper.make_tensor_value_info(name, self.elem, shape))
        self.nodes.append(self.helper.make_node("Identity", [value], [name]))

    def name(self, hint):
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint, value):
        name = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(self, hint, value):
        return self.const(hint, np.ascontiguousarray(value, dtype=self.dtype))

    def node(self, op, inputs, outputs=1, hint=None, **attrs):
        """Add a node; returns its output names (one name when outputs == 1)."""
        names = [self.name(hint or op.lower()) for _ in range(outputs)]
        self.nodes.append(self.helper.make_node(op, list(inputs), names, **attrs))
        return names[0] if outputs == 1 else names

    def batch_major(self, x):
        """(T, B, F) <-> (B, T, F)."""
        return self.node("Transpose", [x], perm=[1, 0, 2])


def _recurrent(g, layer, x, reverse, lengths, state_in):
    """One fastrnn RNN/GRU/LSTM layer on the time-major x: (y, [h_n (, c_n)]).

    state_in: None, or the names of the initial h (and c) inputs, (L*D, B, H).
    """
    op = _OP[type(layer)]
    L, D, H = layer.num_layers, layer.num_directions, layer.hidden_size
    sd = layer.state_dict()
    attrs = dict(hidden_size=H,
                 direction="bidirectional" if D == 2 else ("reverse" if reverse else "forward"))
    if op == "GRU":
        attrs["linear_before_reset"] = int(layer.reset_after)
    if layer.proj_size:
        raise ValueError("an LSTM with proj_size has no ONNX operator (the LSTM operator "
                         "has no projection)")
    attrs.update(_variant_attributes(layer, D))
    finals = [[] for _ in range(2 if op == "LSTM" else 1)]
    for k in range(L):
        sfx = [f"_l{k}" + ("_reverse" if d else "") for d in range(D)]
        W = g.weight("W", np.stack([to_onnx(op, sd["weight_ih" + s]) for s in sfx]))
        R = g.weight("R", np.stack([to_onnx(op, sd["weight_hh" + s]) for s in sfx]))
        B = ""
        if layer.bias:
            B = g.weight("B", np.stack([np.concatenate([to_onnx(op, sd["bias_ih" + s]),
                                                        to_onnx(op, sd["bias_hh" + s])])
                                        for s in sfx]))
        inputs = [x, W, R, B, lengths or ""]
        if state_in is not None:
            rows = (g.const("starts", np.array([k * D], np.int64)),
                    g.const("ends", np.array([(k + 1) * D], np.int64)))
            inputs += [g.node("Slice", [s, *rows]) for s in state_in]
        if layer.peepholes:                  # fastrnn [i; f; o] -> ONNX P [i; o; f]
            peep = [np.split(sd["peephole" + s], 3) for s in sfx]
            inputs += [""] * (7 - len(inputs))
            inputs.append(g.weight("P", np.stack([np.concatenate([p[0], p[2], p[1]])
                                                  for p in peep])))
        outs = g.node(op, inputs, outputs=1 + len(finals), **attrs)
        for part, name in zip(finals, outs[1:]):
            part.append(name)
        # Y (T, D, B, H) -> (T, B, D * H)
        if D == 1:
            x = g.node("Squeeze", [outs[0], g.const("axes", np.array([1], np.int64))])
        else:
            y = g.node("Transpose", [outs[0]], perm=[0, 2, 1, 3])
            x = g.node("Reshape", [y, g.const("shape", np.array([0, 0, -1], np.int64))])
    states = [p[0] if L == 1 else g.node("Concat", p, axis=0) for p in finals]
    return x, states


def _sequence(g, module, x, reverse, lengths, state_in):
    """A sequence module on the time-major x: (y, flat list of final-state names).

    state_in: None or the flat list of initial-state input names, in the order
    _state_leaves gives them."""
    if isinstance(module, (RNN, GRU, LSTM)):
        return _recurrent(g, module, x, reverse, lengths, state_in)
    if isinstance(module, Stacked):
        states, used = [], 0
        for m in module.layers:
            n = len(_state_leaves(m))
            x, s = _sequence(g, m, x, reverse, lengths,
                             None if state_in is None else state_in[used:used + n])
            states += s
            used += n
        return x, states
    if isinstance(module, Bidirectional):
        n = len(_state_leaves(module.layer))
        y_f, s_f = _sequence(g, module.layer, x, False, lengths,
                             None if state_in is None else state_in[:n])
        y_r, s_r = _sequence(g, module.reverse_layer, x, True, lengths,
                             None if state_in is None else state_in[n:])
        y = (g.node("Concat", [y_f, y_r], axis=2) if module.merge == "concat"
             else g.node("Add", [y_f, y_r]))
        return y, s_f + s_r
    raise TypeError(f"cannot export {type(module).__name__}")


def _variant_attributes(layer, D):
    """The operator attributes of a layer's cell form: activations (always,
    with every alpha/beta written out), clip, input_forget."""
    attrs = {}
    names = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "affine": "Affine",
             "leakyrelu": "LeakyRelu", "thresholdedrelu": "ThresholdedRelu",
             "scaledtanh": "ScaledTanh", "hardsigmoid": "HardSigmoid", "elu": "Elu",
             "softsign": "Softsign", "softplus": "Softplus"}
    acts = [a for d in range(D) for a in layer._acts[d]]
    attrs["activations"] = [names[a.name] for a in acts]
    alphas = [a.alpha for a in acts if _general.takes(a.name)[0]]
    betas = [a.beta for a in acts if _general.takes(a.name)[1]]
    if alphas:
        attrs["activation_alpha"] = alphas
    if betas:
        attrs["activation_beta"] = betas
    if layer.clip is not None:
        attrs["clip"] = float(layer.clip)
    if getattr(layer, "input_forget", False):
        attrs["input_forget"] = 1
    return attrs


def _state_leaves(module):
    """[(name, H)] of every final-state array of a sequence module, in the
    order of its state structure (h before c; Stacked by layer; Bidirectional
    forward then reverse). Names: h_n / c_n with the path inside."""
    if isinstance(module, (RNN, GRU, LSTM)):
        return [("h_n", module), ("c_n", module)] if isinstance(module, LSTM) \
            else [("h_n", module)]
    if isinstance(module, Stacked):
        return [(f"{name}.{i}", m) for i, inner in enumerate(module.layers)
                for name, m in _state_leaves(inner)]
    return ([(f"{name}.forward", m) for name, m in _state_leaves(module.layer)]
            + [(f"{name}.reverse", m) for name, m in _state_leaves(module.reverse_layer)])


def _top_state(g, module, flat):
    """The ONNX value of FinalState: the top layer's final h, (B, D*H), from
    the flat final-state names of ``module`` (in _state_leaves order)."""
    if isinstance(module, Stacked):
        below = sum(len(_state_leaves(m)) for m in module.layers[:-1])
        return _top_state(g, module.layers[-1], flat[below:])
    if isinstance(module, Bidirectional):
        n = len(_state_leaves(module.layer))
        f = _top_state(g, module.layer, flat[:n])
        r = _top_state(g, module.reverse_layer, flat[n:])
        return (g.node("Concat", [f, r], axis=-1) if module.merge == "concat"
                else g.node("Add", [f, r]))
    h, D = flat[0], module.num_directions
    if module.num_layers > 1:
        h = g.node("Slice", [h, g.const("starts", np.array([-D], np.int64)),
                             g.const("ends", np.array([np.iinfo(np.int64).max], np.int64)),
                             g.const("axes", np.array([0], np.int64))])
    h = g.node("Transpose", [h], perm=[1, 0, 2])                      # (B, D, H)
    return g.node("Reshape", [h, g.const("shape", np.array([0, -1], np.int64))])


def _dense(g, dense, x):
    sd = dense.state_dict()
    y = g.node("MatMul", [x, g.weight("weight_T", sd["weight"].T)])
    if dense.bias:
        y = g.node("Add", [y, g.weight("bias", sd["bias"])])
    if dense.activation is not None:
        y = g.node(_DENSE_ACTIVATION[dense.activation], [y])
    return y


def _embedding(g, emb, ids):
    return g.node("Gather", [g.weight("embedding", emb.state_dict()["weight"]), ids], axis=0)


def export(module, path, *, lengths=False, initial_state=False):
    """Write ``module`` as an ONNX model that ONNX Runtime runs with its outputs.

    module: RNN/GRU/LSTM, Stacked, Bidirectional, Sequential, FinalState,
    Dense, Embedding, an RNNCell/GRUCell/LSTMCell, or a ready-made model
    (fastrnn.models; its inputs and outputs: fastrnn.onnx._models).
    Graph inputs (dynamic T and B):
      ``input``: what the module takes -- (T, B, I) floats ((B, T, I) with
      batch_first) for sequence modules and FinalState, int64 ids for an
      Embedding (first),
      (B, I) for cells, (..., in_features) for Dense;
      ``lengths`` (int32, (B,)) when lengths=True: each sequence's valid steps
      (a Sequential gives them to each of its sequence modules);
      the initial states when initial_state=True (cells always take theirs):
      ``h0`` (``c0``), for composites ``h0.<path>`` in the state's order
      (Stacked: ``.0``, ``.1``, ... per layer; Bidirectional: ``.forward``,
      ``.reverse``), each (num_layers * D, B, H).
    Graph outputs: ``output`` (y); a sequence module's final states ``h_n``
    (``c_n``), composites ``h_n.<path>``; a cell ``h`` (and ``c``); a
    Sequential or FinalState only ``output``.
    The graph is in the module's dtype (ONNX Runtime's recurrent operators
    run float32 only). Returns ``path``.
    """
    if not isinstance(module, _EXPORTED):
        raise TypeError(f"module must be a fastrnn RNN/GRU/LSTM, Stacked, Bidirectional, "
                        f"Sequential, FinalState, Dense, Embedding, cell or ready-made model, "
                        f"got {type(module).__name__}")
    onnx = _onnx()
    helper = onnx.helper
    g = _Graph(module.dtype)
    if isinstance(module, (RNNCell, GRUCell, LSTMCell)):
        _export_cell(g, module)
    elif isinstance(module, Dense):
        g.output("output", _dense(g, module, g.input("input", ["N", module.in_features])),
                 ["N", module.out_features])
    elif isinstance(module, Embedding):
        g.output("output", _embedding(g, module, g.ids_input("input", ["B", "T"])),
                 ["B", "T", module.embedding_dim])
    elif isinstance(module, Model):
        from fastrnn.onnx._models import export_model
        if lengths or initial_state:
            raise ValueError("a model's graph has the inputs it needs (see "
                             "fastrnn.onnx._models); lengths / initial_state are for layers")
        export_model(g, module)
    else:
        _export_sequence(g, module, lengths, initial_state)
    graph = helper.make_graph(g.nodes, f"fastrnn_{type(module).__name__}", g.inputs,
                              g.outputs, initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="fastrnn")
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _export_sequence(g, module, lengths, initial_state):
    pipeline = isinstance(module, (Sequential, FinalState))
    if pipeline and initial_state:
        raise ValueError("initial_state=True needs a sequence module (a Sequential or "
                         "FinalState starts its layers from zeros and returns only its output)")
    seq = module.modules if isinstance(module, Sequential) else [module]
    recurrent = [m.module if isinstance(m, FinalState) else m for m in seq
                 if not isinstance(m, (Dense, Embedding))]
    # each sequence module reads its input in its own layout; the graph's
    # input is in the first one's (batch-first when there is none)
    layout = recurrent[0].batch_first if recurrent else True
    steps = ["B", "T"] if layout else ["T", "B"]
    first = seq[0]
    if isinstance(first, Embedding):
        x = g.ids_input("input", steps)
    else:
        x = g.input("input", steps + [first.in_features if isinstance(first, Dense)
                                      else first.input_size])
    lens = g.input("lengths", ["B"], g.onnx.TensorProto.INT32) if lengths else None
    final = []
    for m in seq:
        if isinstance(m, Embedding):
            x = _embedding(g, m, x)
        elif isinstance(m, Dense):
            x = _dense(g, m, x)
        elif isinstance(m, FinalState):
            if m.module.batch_first:
                x = g.batch_major(x)
            _, flat = _sequence(g, m.module, x, False, lens, None)
            x = _top_state(g, m.module, flat)
            layout = None                       # one vector per sequence: (B, F)
        else:
            if m.batch_first:
                x = g.batch_major(x)
            leaves = _state_leaves(m)
            state_in = None
            if initial_state:
                state_in = [g.input(name.replace("_n", "0", 1),
                                    [_lead(inner), "B", inner.hidden_size])
                            for name, inner in leaves]
            x, final = _sequence(g, m, x, False, lens, state_in)
            final = list(zip(leaves, final))
            layout = m.batch_first
            if layout:
                x = g.batch_major(x)
    lead = ["B"] if layout is None else (["B", "T"] if layout else ["T", "B"])
    g.output("output", x, lead + [width_out(seq[-1])])
    if not pipeline:
        for (name, inner), value in final:
            g.output(name, value, [_lead(inner), "B", inner.hidden_size])


def _lead(layer):
    """The leading size of an RNN/GRU/LSTM layer's states: num_layers * D."""
    return layer.num_layers * layer.num_directions


def _export_cell(g, cell):
    layer = cell._layer
    x = g.input("input", ["B", cell.input_size])
    names = ("h", "c") if isinstance(cell, LSTMCell) else ("h",)
    states = [g.input(n + "0", ["B", cell.hidden_size]) for n in names]
    axes = g.const("axes", np.array([0], np.int64))
    x3 = g.node("Unsqueeze", [x, axes])
    states3 = [g.node("Unsqueeze", [s, axes]) for s in states]
    _, finals = _recurrent(g, layer, x3, False, None, states3)
    for n, value in zip(names, finals):
        g.output(n, g.node("Squeeze", [value, axes]), ["B", cell.hidden_size])
