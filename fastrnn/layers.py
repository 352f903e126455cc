"""RNN, GRU and LSTM sequence layers (PyTorch's torch.nn.RNN/GRU/LSTM on numpy).

Weights are kept per layer as (D, G, in) / (D, G, H) blocks, D directions and
G = gates * hidden_size rows in PyTorch's gate order (RNN [h], GRU [r; z; n],
LSTM [i; f; g; o]); the state_dict entries are views of these blocks, so the
kernels read them without repacking and optimizers update them in place.
"""
import math

import numpy as np

from fastrnn import _checks, _engine, _general, _projection, _registry
from fastrnn._kernels._cells import CellKind, carries_cell_state
from fastrnn._kernels._panels import aligned_empty
from fastrnn._module import SequenceModule

# the activations each form computes by default (ONNX's defaults; an RNN's
# is its nonlinearity)
_DEFAULT_ACTIVATIONS = {"RNN": None, "GRU": ("sigmoid", "tanh"),
                        "LSTM": ("sigmoid", "tanh", "tanh")}


class _RecurrentLayer(SequenceModule):
    _takes_tokens = True
    _gates = 1

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32, seed=None, *, clip=None,
                 activations=None, activation_alpha=None, activation_beta=None, proj_size=0,
                 peepholes=False, input_forget=False):
        self.input_size, self.hidden_size = _sizes(input_size, hidden_size)
        self.num_layers = _checks.positive_int("num_layers", num_layers)
        self.bias = _checks.boolean("bias", bias)
        self.batch_first = _checks.boolean("batch_first", batch_first)
        self.dropout = _checks.probability("dropout", dropout)
        self.bidirectional = _checks.boolean("bidirectional", bidirectional)
        self.dtype = _checks.float_dtype(dtype)
        self._seed = _checks.seed(seed)
        self._set_variant(clip, activations, activation_alpha, activation_beta, proj_size,
                          peepholes, input_forget)
        D, G, H = self.num_directions, self._gates * self.hidden_size, self.hidden_size
        Hh = self._state_size
        self._w_ih, self._w_hh, self._b_ih, self._b_hh = [], [], [], []
        self._w_hr, self._peep = [], []
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else D * Hh
            self._w_ih.append(_zeros((D, G, in_size), self.dtype))
            self._w_hh.append(_zeros((D, G, Hh), self.dtype))
            if self.bias:
                self._b_ih.append(_zeros((D, G), self.dtype))
                self._b_hh.append(_zeros((D, G), self.dtype))
            if self.proj_size:
                self._w_hr.append(_zeros((D, self.proj_size, H), self.dtype))
            if self.peepholes:
                self._peep.append(_zeros((D, 3 * H), self.dtype))
        for name in _BLOCKS:
            setattr(self, "_g" + name[1:], [_zeros(a.shape, a.dtype)
                                            for a in getattr(self, name)])
        self._no_bias = np.zeros((D, G), self.dtype)
        self._no_bias.flags.writeable = False
        self._bind_views()
        self.reset_parameters(self._seed)
        self._dropout_rng = (self._seed if isinstance(self._seed, np.random.Generator)
                             else np.random.default_rng(None if self._seed is None
                                                        else [self._seed, 1]))

    # -- configuration -----------------------------------------------------
    def _set_variant(self, clip, activations, alpha, beta, proj_size, peepholes, input_forget):
        """The cell variant options (see fastrnn._general for the equations),
        checked, and which path runs the layer: the kernels (clip, peepholes,
        coupled gates), the kernels through fastrnn._projection (proj_size),
        or the general path (other activation functions)."""
        kind = type(self).__name__
        self.clip = None if clip is None else _checks.real("clip", clip, minimum=0.0,
                                                           inclusive=False)
        self.proj_size = _checks.positive_int("proj_size", proj_size, minimum=0)
        if self.proj_size and (kind != "LSTM" or self.proj_size >= self.hidden_size):
            raise ValueError(f"proj_size must be smaller than hidden_size "
                             f"({self.hidden_size}) and is for the LSTM only, got "
                             f"{self.proj_size}")
        self.peepholes = _checks.boolean("peepholes", peepholes)
        self.input_forget = _checks.boolean("input_forget", input_forget)
        if kind != "LSTM" and (self.peepholes or self.input_forget):
            raise ValueError("peepholes and input_forget are for the LSTM only")
        default = _DEFAULT_ACTIVATIONS[kind] or (self.nonlinearity,)
        if activations is None:
            if alpha is not None or beta is not None:
                raise ValueError("activation_alpha / activation_beta need activations")
            names = default
        else:
            if isinstance(activations, str) or not all(isinstance(a, str) for a in activations):
                raise TypeError(f"activations must be a list of function names, got "
                                f"{activations!r}")
            if kind == "RNN" and self.nonlinearity != "tanh":
                raise ValueError("give the RNN's function as nonlinearity or in activations, "
                                 "not both")
            names = list(activations)
        self.activations = None if activations is None else [str(a) for a in activations]
        self.activation_alpha = _numbers("activation_alpha", alpha)
        self.activation_beta = _numbers("activation_beta", beta)
        self._acts = _general.resolve_activations(len(default), self.num_directions, names,
                                                  self.activation_alpha, self.activation_beta)
        plain = _general.resolve_activations(len(default), self.num_directions, default,
                                             None, None)
        # the kernels compute clip, peepholes and coupled gates, and the
        # projection through fastrnn._projection; other activation functions
        # run on the general path
        self._general = bool(self._acts != plain)
        self._projected = bool(self.proj_size and not self._general)
        self._kernel_variant = bool(not self._general and (
            self.clip is not None or self.peepholes or self.input_forget))

    def _variant_config(self):
        """The cell variant options that differ from their defaults."""
        out = {}
        for key, default in (("clip", None), ("activations", None), ("activation_alpha", None),
                             ("activation_beta", None), ("proj_size", 0), ("peepholes", False),
                             ("input_forget", False)):
            if getattr(self, key) != default:
                out[key] = getattr(self, key)
        return out

    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def _state_size(self):
        """Units of the state h and of each direction's output: proj_size or hidden_size."""
        return self.proj_size or self.hidden_size

    @property
    def output_size(self):
        return self.num_directions * self._state_size

    def _config(self):
        return dict(input_size=self.input_size, hidden_size=self.hidden_size,
                    num_layers=self.num_layers, bias=self.bias, batch_first=self.batch_first,
                    dropout=self.dropout, bidirectional=self.bidirectional,
                    dtype=self.dtype, **self._variant_config())

    def _fresh_copy(self, seed):
        """A new layer of the same configuration with its own weights."""
        return type(self)(**self._config(), seed=seed)

    def __repr__(self):
        args = ", ".join(f"{k}={v.__name__ if isinstance(v, type) else v!r}"
                         for k, v in self._config().items())
        return f"{type(self).__name__}({args})"

    # -- parameters --------------------------------------------------------
    def _bind_views(self):
        """The state_dict and grads entries: views of the per-layer blocks the
        kernels read (made again for a copy: numpy copies a view as an
        independent array, which the kernels would never see)."""
        self._params = self._block_views(self._w_ih, self._w_hh, self._b_ih, self._b_hh,
                                         self._w_hr, self._peep)
        self._grads = self._block_views(self._gw_ih, self._gw_hh, self._gb_ih, self._gb_hh,
                                        self._gw_hr, self._gpeep)

    def _block_views(self, w_ih, w_hh, b_ih, b_hh, w_hr, peep):
        """{state_dict name: view of one direction of the per-layer blocks}."""
        views = {}
        for layer, d, sfx in _directions(self.num_layers, self.num_directions):
            views["weight_ih" + sfx] = w_ih[layer][d]
            views["weight_hh" + sfx] = w_hh[layer][d]
            if self.bias:
                views["bias_ih" + sfx] = b_ih[layer][d]
                views["bias_hh" + sfx] = b_hh[layer][d]
            if w_hr:
                views["weight_hr" + sfx] = w_hr[layer][d]
            if peep:
                views["peephole" + sfx] = peep[layer][d]
        return views

    @classmethod
    def _weight_shapes(cls, config):
        """{state_dict key: (shape, dtype)} of the layer ``config`` describes
        (see fastrnn._registry), sizes checked as __init__ checks them."""
        I, H = _sizes(config.get("input_size"), config.get("hidden_size"))
        L = _checks.positive_int("num_layers", config.get("num_layers", 1))
        if L > _registry.MAX_LAYERS:
            raise ValueError(f"num_layers must be at most {_registry.MAX_LAYERS} in a model "
                             f"file, got {L}")
        D = 2 if _checks.boolean("bidirectional", config.get("bidirectional", False)) else 1
        bias = _checks.boolean("bias", config.get("bias", True))
        dtype = _checks.float_dtype(config.get("dtype", np.float32))
        P = _checks.positive_int("proj_size", config.get("proj_size", 0), minimum=0)
        if P >= H:
            raise ValueError(f"proj_size must be smaller than hidden_size ({H}), got {P}")
        peepholes = _checks.boolean("peepholes", config.get("peepholes", False))
        G, Hh = cls._gates * H, P or H
        shapes = {}
        for layer, _, sfx in _directions(L, D):
            shapes["weight_ih" + sfx] = ((G, I if layer == 0 else D * Hh), dtype)
            shapes["weight_hh" + sfx] = ((G, Hh), dtype)
            if bias:
                shapes["bias_ih" + sfx] = shapes["bias_hh" + sfx] = ((G,), dtype)
            if P:
                shapes["weight_hr" + sfx] = ((P, H), dtype)
            if peepholes:
                shapes["peephole" + sfx] = ((3 * H,), dtype)
        return shapes

    def reset_parameters(self, seed=None):
        """PyTorch's initialisation: every weight and bias ~ U(-1/√H, 1/√H)."""
        rng = np.random.default_rng(_checks.seed(seed))
        bound = 1.0 / math.sqrt(self.hidden_size)
        for arr in self._params.values():
            arr[...] = rng.uniform(-bound, bound, arr.shape)

    def _biases(self, layer):
        """(b_ih, b_hh) of a layer, (D, G) each; zeros for a layer without bias."""
        if self.bias:
            return self._b_ih[layer], self._b_hh[layer]
        return self._no_bias, self._no_bias

    # -- state -------------------------------------------------------------
    def _state_shape(self, batch, batched, units=None):
        lead = self.num_layers * self.num_directions
        units = self._state_size if units is None else units
        return (lead, batch, units) if batched else (lead, units)

    def _check_state(self, hx, batch, batched, what="hx"):
        """hx (or a gradient of h_n, ``what`` = "dh_n") as a tuple of (L*D, B, H)
        arrays, one per state (h; h and c for the LSTM; h has proj_size units
        when the LSTM has a projection); gradient entries may be None."""
        if hx is None:
            return None
        names = (("h0", "c0") if what == "hx" else ("dh_n", "dc_n")) \
            if carries_cell_state(self._kind) else (what,)
        shapes = (self._state_shape(batch, batched),
                  self._state_shape(batch, batched, self.hidden_size))[:len(names)]
        parts = _checks.state_parts(what, hx, names, shapes, self.dtype, "LSTM",
                                    allow_none=what != "hx")
        return parts if batched else tuple(None if p is None else p[:, None, :] for p in parts)

    def _format_state(self, state, batched):
        if not batched:
            state = tuple(s[:, 0] for s in state)
        return state if carries_cell_state(self._kind) else state[0]

    # -- running (fastrnn._engine) -------------------------------------------
    def __call__(self, x, hx=None, *, lengths=None):
        if lengths is None and type(x) is np.ndarray:
            # the common call, bound once per input signature (or None)
            out = _engine.bound_call(self, x, hx)
            if out is not None:
                return out
        return self._call(x, hx, lengths, False)

    def _path(self):
        """The module that runs this layer: the kernels' driver (fastrnn._engine),
        the projection on the kernels (fastrnn._projection) or the general
        path (fastrnn._general)."""
        if self._general:
            return _general
        return _projection if self._projected else _engine

    def _blas_in_kernel_threads(self, steps):
        # the other paths run their products in this thread: BLAS keeps its threads
        return self._path() is _engine and _engine.blas_in_kernel_threads(self, steps)

    def _run(self, x, state, lengths, reverse):
        """x: (T, B, I) of self.dtype; state: tuple of (L*D, B, H) or None."""
        y, state, _ = self._path().forward(self, x, state, lengths, reverse, training=False)
        return y, state

    def _train_forward(self, x, state, lengths, reverse):
        return self._path().forward(self, x, state, lengths, reverse, training=True)

    def _train_backward(self, trace, dy, dstate):
        return self._path().backward(self, trace, dy, dstate)

    # -- copies --------------------------------------------------------------
    def __getstate__(self):
        # the bound kernels point into this layer's arrays, the pool holds
        # scratch and the state_dict entries are views of the blocks: a copy
        # (deepcopy, pickle) makes its own from its own blocks
        state = dict(self.__dict__)
        for key in ("_kernels", "_bound", "_pool", "_params", "_grads", "_shadows",
                    "_prepacked"):
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        # (an unpickled array is numpy's, at 16 bytes: the blocks go back to
        # lines, as __init__ placed them)
        for name in _BLOCKS + tuple("_g" + n[1:] for n in _BLOCKS):
            setattr(self, name, [_at_line(a) for a in getattr(self, name)])
        self._no_bias.flags.writeable = False
        self._bind_views()


# the per-layer parameter blocks (D, ...) the kernels read; their gradients
# are the same names with "_g" for "_"
_BLOCKS = ("_w_ih", "_w_hh", "_b_ih", "_b_hh", "_w_hr", "_peep")


def _zeros(shape, dtype):
    """np.zeros(shape, dtype) starting at a cache line (64 bytes). Every call
    packs a thread's share of W_hh (and W_ih) into panels and the one-row
    products read rows of them: from numpy's 16-byte alignment each 64-byte
    vector load of a row straddles two lines (packing a 6 MiB W from 16
    bytes past a line took 1.7x as long, AMD EPYC Zen 4: `python -m
    bench.limits`, packing)."""
    arr = aligned_empty(math.prod(shape), dtype).reshape(shape)
    arr.fill(0)
    return arr


def _at_line(arr):
    """arr's values in an array from _zeros (arr itself if it starts at a line)."""
    if arr.ctypes.data % 64 == 0:
        return arr
    out = _zeros(arr.shape, arr.dtype)
    np.copyto(out, arr)
    return out


def _numbers(name, values):
    """A list of finite floats (activation_alpha / activation_beta), or None."""
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a list of numbers, got {type(values).__name__}")
    return [_checks.real(f"{name}[{i}]", v, minimum=-math.inf) for i, v in enumerate(values)]


def _sizes(input_size, hidden_size):
    """(input_size, hidden_size), checked: the widest row the kernels index is
    6H (the reset-after GRU's gate gradients), and BLAS indexes with int32."""
    return (_checks.size("input_size", input_size),
            _checks.size("hidden_size", hidden_size, rows=6))


def _directions(num_layers, num_directions):
    """(layer, direction, state_dict suffix) of every layer and direction, in
    state_dict order: _l0, _l0_reverse, _l1, ..."""
    for layer in range(num_layers):
        for d in range(num_directions):
            yield layer, d, f"_l{layer}" + ("_reverse" if d else "")


@_registry.saved
class RNN(_RecurrentLayer):
    """Elman RNN: h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), f = tanh or relu.

    ``y, h_n = rnn(x, hx=None, *, lengths=None)``; x (T, B, input_size)
    ((B, T, input_size) with batch_first; (T, input_size) unbatched), hx and
    h_n (num_layers * D, B, hidden_size), y (T, B, D * hidden_size).

    Keyword-only variants (ONNX's): ``clip`` (every gate pre-activation
    clipped to [-clip, clip]; in the kernels) and ``activations`` (ONNX's
    function names, one per function of the cell -- RNN f, GRU f and g, LSTM
    f, g and h -- or per direction too) with ``activation_alpha`` /
    ``activation_beta`` (consumed in order by the functions that take them,
    as ONNX Runtime does; other than the defaults they run on the slower
    general path, fastrnn._general).
    """

    _gates = 1

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, dtype=np.float32,
                 seed=None, *, clip=None, activations=None, activation_alpha=None,
                 activation_beta=None):
        self.nonlinearity = _checks.choice("nonlinearity", nonlinearity, ("tanh", "relu"))
        self._kind = CellKind.RNN_TANH if nonlinearity == "tanh" else CellKind.RNN_RELU
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed, clip=clip, activations=activations,
                         activation_alpha=activation_alpha, activation_beta=activation_beta)

    def _config(self):
        return dict(super()._config(), nonlinearity=self.nonlinearity)


@_registry.saved
class GRU(_RecurrentLayer):
    """Gated recurrent unit; PyTorch's gate rows [r; z; n].

    r = σ(W_ir x + b_ir + W_hr h + b_hr), z = σ(W_iz x + b_iz + W_hz h + b_hz),
    reset_after=True (PyTorch, cuDNN): n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn));
    reset_after=False (Cho et al.):    n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn);
    h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}. Shapes as RNN.
    """

    _gates = 3

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32, seed=None,
                 reset_after=True, *, clip=None, activations=None, activation_alpha=None,
                 activation_beta=None):
        self.reset_after = _checks.boolean("reset_after", reset_after)
        self._kind = CellKind.GRU_RESET_AFTER if reset_after else CellKind.GRU_RESET_BEFORE
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed, clip=clip, activations=activations,
                         activation_alpha=activation_alpha, activation_beta=activation_beta)

    def _config(self):
        return dict(super()._config(), reset_after=self.reset_after)


@_registry.saved
class LSTM(_RecurrentLayer):
    """Long short-term memory; PyTorch's gate rows [i; f; g; o].

    c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g), h_t = σ(o) ⊙ tanh(c_t).
    ``y, (h_n, c_n) = lstm(x, (h0, c0), *, lengths=None)``; states
    (num_layers * D, B, hidden_size); otherwise as RNN.

    Keyword-only variants (the imports' forms): ``proj_size`` (PyTorch: h_t =
    W_hr (o ⊙ tanh(c_t)), weight_hr (proj_size, hidden_size); h, y and
    weight_hh's columns have proj_size units; on the kernels through
    fastrnn._projection), ``peepholes`` (ONNX's P: i and f see c_{t-1}, o
    sees c_t; ``peephole_l{k}`` (3 * hidden_size,) in the order [i; f; o]),
    ``input_forget`` (f = 1 - i), and ``clip`` / ``activations`` as RNN.
    """

    _gates = 4
    _kind = CellKind.LSTM
