"""RNN, GRU and LSTM sequence layers (PyTorch's torch.nn.RNN/GRU/LSTM on numpy).

Weights are kept per layer as (D, G, in) / (D, G, H) blocks, D directions and
G = gates * hidden_size rows in PyTorch's gate order (RNN [h], GRU [r; z; n],
LSTM [i; f; g; o]); the state_dict entries are views of these blocks, so the
kernels read them without repacking and optimizers update them in place.
"""
import math

import numpy as np

from fastrnn import _checks
from fastrnn._kernels._recurrent import forward_layer
from fastrnn._module import SequenceModule
from fastrnn._threads import get_num_threads

# cell kinds, as in fastrnn/_kernels/_recurrent.pyx
_RNN_TANH, _RNN_RELU, _LSTM, _GRU_RESET_AFTER, _GRU_RESET_BEFORE = range(5)

# bound on the packed input/gate block of one task, in elements (x the itemsize)
_STEP_CHUNK_ELEMENTS = 1 << 18


class _BatchPlan:
    """Row order and work split shared by every layer of one call.

    Rows are sorted by length, longest first (stable), so the rows running at
    step s are a prefix; ``n_active[s]`` counts them. ``bounds`` splits the
    sorted rows into blocks of about equal total length, one task per block
    and direction.
    """

    def __init__(self, lengths, steps, batch, directions):
        if lengths is None:
            self.perm = np.arange(batch, dtype=np.intp)
            self.lengths = np.full(batch, steps, dtype=np.intp)
            self.n_active = np.full(steps, batch, dtype=np.intp)
        else:
            self.perm = np.argsort(-lengths, kind="stable").astype(np.intp)
            self.lengths = np.ascontiguousarray(lengths[self.perm])
            ascending = self.lengths[::-1]
            self.n_active = (batch - np.searchsorted(ascending, np.arange(steps),
                                                     side="right")).astype(np.intp)
        blocks = max(1, min(batch, -(-get_num_threads() // directions)))
        total = np.cumsum(self.lengths)
        cuts = np.searchsorted(total, total[-1] * np.arange(1, blocks) / blocks) + 1
        self.bounds = np.unique(np.concatenate(([0], cuts, [batch]))).astype(np.intp)
        self.rows_max = int(np.diff(self.bounds).max())


class _RecurrentLayer(SequenceModule):
    _gates = 1
    _mode = ""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32, seed=None):
        self.input_size = _checks.positive_int("input_size", input_size)
        self.hidden_size = _checks.positive_int("hidden_size", hidden_size)
        self.num_layers = _checks.positive_int("num_layers", num_layers)
        self.bias = _checks.boolean("bias", bias)
        self.batch_first = _checks.boolean("batch_first", batch_first)
        self.dropout = _checks.probability("dropout", dropout)
        self.bidirectional = _checks.boolean("bidirectional", bidirectional)
        self.dtype = _checks.float_dtype(dtype)
        self._seed = _checks.seed(seed)
        D, G, H = self.num_directions, self._gates * self.hidden_size, self.hidden_size
        self._w_ih, self._w_hh, self._b_ih, self._b_hh = [], [], [], []
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else D * H
            self._w_ih.append(np.zeros((D, G, in_size), self.dtype))
            self._w_hh.append(np.zeros((D, G, H), self.dtype))
            if self.bias:
                self._b_ih.append(np.zeros((D, G), self.dtype))
                self._b_hh.append(np.zeros((D, G), self.dtype))
        self._params = self._build_param_views()
        self.reset_parameters(self._seed)

    # -- configuration -----------------------------------------------------
    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def output_size(self):
        return self.num_directions * self.hidden_size

    def _config(self):
        return dict(input_size=self.input_size, hidden_size=self.hidden_size,
                    num_layers=self.num_layers, bias=self.bias, batch_first=self.batch_first,
                    dropout=self.dropout, bidirectional=self.bidirectional,
                    dtype=self.dtype)

    def _fresh_copy(self, seed):
        """A new layer of the same configuration with its own weights."""
        return type(self)(**self._config(), seed=seed)

    def __repr__(self):
        args = ", ".join(f"{k}={v.__name__ if isinstance(v, type) else v!r}"
                         for k, v in self._config().items())
        return f"{type(self).__name__}({args})"

    # -- parameters --------------------------------------------------------
    def _build_param_views(self):
        views = {}
        for layer in range(self.num_layers):
            for d in range(self.num_directions):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                views["weight_ih" + sfx] = self._w_ih[layer][d]
                views["weight_hh" + sfx] = self._w_hh[layer][d]
                if self.bias:
                    views["bias_ih" + sfx] = self._b_ih[layer][d]
                    views["bias_hh" + sfx] = self._b_hh[layer][d]
        return views

    def _named_parameters(self):
        return self._params

    def reset_parameters(self, seed=None):
        """PyTorch's initialisation: every weight and bias ~ U(-1/√H, 1/√H)."""
        rng = np.random.default_rng(_checks.seed(seed))
        bound = 1.0 / math.sqrt(self.hidden_size)
        for arr in self._params.values():
            arr[...] = rng.uniform(-bound, bound, arr.shape)

    def _kernel_biases(self, layer):
        """(b_x (D, G), b_hn (D, H)): the bias added to the input projection and,
        for the reset-after GRU, the recurrent n bias that r multiplies."""
        D, H = self.num_directions, self.hidden_size
        b_hn = np.zeros((D, H), self.dtype)
        if not self.bias:
            return np.zeros((D, self._gates * H), self.dtype), b_hn
        b_x = self._b_ih[layer] + self._b_hh[layer]
        if self._kind == _GRU_RESET_AFTER:
            b_x[:, 2 * H:] = self._b_ih[layer][:, 2 * H:]
            b_hn[...] = self._b_hh[layer][:, 2 * H:]
        return b_x, b_hn

    # -- state -------------------------------------------------------------
    def _state_shape(self, batch, batched):
        lead = self.num_layers * self.num_directions
        return (lead, batch, self.hidden_size) if batched else (lead, self.hidden_size)

    def _check_state(self, hx, batch, batched):
        if hx is None:
            return None
        shape = self._state_shape(batch, batched)
        if self._kind == _LSTM:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"hx must be a pair (h0, c0) for an LSTM, got {type(hx).__name__}")
            parts = [_checks.state_array(n, v, shape, self.dtype) for n, v in zip(("h0", "c0"), hx)]
        else:
            parts = [_checks.state_array("hx", hx, shape, self.dtype)]
        if not batched:
            parts = [p[:, None, :] for p in parts]
        return tuple(parts)

    def _format_state(self, state, batched):
        if not batched:
            state = tuple(s[:, 0] for s in state)
        return state if self._kind == _LSTM else state[0]

    # -- forward -----------------------------------------------------------
    def _run(self, x, state, lengths, reverse):
        """x: (T, B, I) of self.dtype; state: tuple of (L*D, B, H) or None."""
        steps, batch = x.shape[:2]
        D, H, L = self.num_directions, self.hidden_size, self.num_layers
        G = self._gates * H
        plan = _BatchPlan(lengths, steps, batch, D)
        reverse_flags = np.array([1, 0] if reverse else [0, 1], dtype=np.intc)[:D]
        is_lstm = self._kind == _LSTM
        h_n = np.empty((L * D, batch, H), self.dtype)
        c_n = np.empty((L * D, batch, H), self.dtype) if is_lstm else None
        unused = np.empty((D, 0, 0), self.dtype)
        new_output = np.zeros if lengths is not None else np.empty
        inp = x
        for layer in range(L):
            rows = slice(layer * D, (layer + 1) * D)
            if state is None:
                h0 = np.zeros((D, batch, H), self.dtype)
                c0 = h0
            else:
                h0 = state[0][rows]
                c0 = state[1][rows] if is_lstm else None
            y = new_output((steps, batch, D * H), self.dtype)
            b_x, b_hn = self._kernel_biases(layer)
            step_chunk = max(1, min(steps, _STEP_CHUNK_ELEMENTS
                                    // (plan.rows_max * max(G, inp.shape[2]))))
            forward_layer(self._kind, inp, self._w_ih[layer], self._w_hh[layer], b_x, b_hn,
                          reverse_flags, plan.lengths, plan.perm, plan.n_active, plan.bounds,
                          h0, c0 if is_lstm else unused, y, h_n[rows],
                          c_n[rows] if is_lstm else unused, step_chunk, get_num_threads())
            inp = y
        return inp, ((h_n, c_n) if is_lstm else (h_n,))


class RNN(_RecurrentLayer):
    """Elman RNN: h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), f = tanh or relu.

    ``y, h_n = rnn(x, hx=None, *, lengths=None)``; x (T, B, input_size)
    ((B, T, input_size) with batch_first; (T, input_size) unbatched), hx and
    h_n (num_layers * D, B, hidden_size), y (T, B, D * hidden_size).
    """

    _gates = 1
    _mode = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, dtype=np.float32,
                 seed=None):
        self.nonlinearity = _checks.choice("nonlinearity", nonlinearity, ("tanh", "relu"))
        self._kind = _RNN_TANH if nonlinearity == "tanh" else _RNN_RELU
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed)

    def _config(self):
        return dict(super()._config(), nonlinearity=self.nonlinearity)


class GRU(_RecurrentLayer):
    """Gated recurrent unit; PyTorch's gate rows [r; z; n].

    r = σ(W_ir x + b_ir + W_hr h + b_hr), z = σ(W_iz x + b_iz + W_hz h + b_hz),
    reset_after=True (PyTorch, cuDNN): n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn));
    reset_after=False (Cho et al.):    n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn);
    h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}. Shapes as RNN.
    """

    _gates = 3
    _mode = "gru"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32, seed=None,
                 reset_after=True):
        self.reset_after = _checks.boolean("reset_after", reset_after)
        self._kind = _GRU_RESET_AFTER if reset_after else _GRU_RESET_BEFORE
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed)

    def _config(self):
        return dict(super()._config(), reset_after=self.reset_after)


class LSTM(_RecurrentLayer):
    """Long short-term memory; PyTorch's gate rows [i; f; g; o].

    c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g), h_t = σ(o) ⊙ tanh(c_t).
    ``y, (h_n, c_n) = lstm(x, (h0, c0), *, lengths=None)``; states
    (num_layers * D, B, hidden_size); otherwise as RNN.
    """

    _gates = 4
    _mode = "lstm"
    _kind = _LSTM
