"""RNNCell, GRUCell, LSTMCell: one step, PyTorch's torch.nn.*Cell on numpy.

A cell is a one-layer, one-direction layer run for a single step; it shares
the layer's kernel and validation, with PyTorch's cell names for the weights
(weight_ih, weight_hh, bias_ih, bias_hh).
"""
import numpy as np

from fastrnn import _checks
from fastrnn._module import Context, Parameterized, check_context
from fastrnn._threads import serial_blas
from fastrnn.layers import GRU, LSTM, RNN


class _Cell(Parameterized):
    _layer_type = None

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float32, seed=None, **kind):
        self._layer = self._layer_type(input_size, hidden_size, 1, bias=bias, dtype=dtype,
                                       seed=seed, **kind)
        # PyTorch's cell names: the layer's without the "_l0" suffix
        self._params = {name[:-3]: arr for name, arr in self._layer._named_parameters().items()}
        self._grads = {name[:-3]: arr for name, arr in self._layer._named_grads().items()}

    input_size = property(lambda self: self._layer.input_size)
    hidden_size = property(lambda self: self._layer.hidden_size)
    bias = property(lambda self: self._layer.bias)
    dtype = property(lambda self: self._layer.dtype)

    def __repr__(self):
        return repr(self._layer).replace(type(self._layer).__name__, type(self).__name__, 1)

    def __call__(self, x, hx=None):
        x3, state, batched = self._check_step(x, hx)
        with serial_blas():
            _, state = self._layer._run(x3, state, None, False)
        return self._format(state, batched)

    def forward(self, x, hx=None):
        """Training step: ``h, ctx`` (LSTMCell: ``(h, c), ctx``)."""
        x3, state, batched = self._check_step(x, hx)
        with serial_blas():
            _, state, trace = self._layer._train_forward(x3, state, None, False)
        return self._format(state, batched), Context(self, trace, batched, 1, x3.shape[1])

    def backward(self, ctx, dh):
        """``dx, dhx`` for the loss sum(dh * h') (+ sum(dc * c') for the LSTMCell,
        dh = (dh, dc), entries may be None); adds the weight gradients into grads."""
        check_context(ctx, self)
        batch = ctx.batch
        shape = (batch, self.hidden_size) if ctx.batched else (self.hidden_size,)
        if self._is_lstm:
            if not isinstance(dh, (tuple, list)) or len(dh) != 2:
                raise TypeError(f"dh must be a pair (dh, dc) for an LSTMCell, got {type(dh).__name__}")
            names, values = ("dh", "dc"), dh
        else:
            names, values = ("dh",), (dh,)
        dstate = tuple(None if v is None else
                       _checks.state_array(n, v, shape, self.dtype).reshape(1, batch, -1)
                       for n, v in zip(names, values))
        ctx.used = True
        dy = np.zeros((1, batch, self.hidden_size), self.dtype)
        with serial_blas():
            dx, dstate0 = self._layer._train_backward(ctx.trace, dy, dstate)
        ctx.trace = None
        dx = dx[0] if ctx.batched else dx[0, 0]
        return dx, self._format(dstate0, ctx.batched)

    @property
    def _is_lstm(self):
        return isinstance(self._layer, LSTM)

    def _check_step(self, x, hx):
        arr = _checks.float_array("x", x, self.dtype)
        if arr.ndim not in (1, 2) or arr.shape[-1] != self.input_size:
            raise ValueError(f"x must have shape (B, {self.input_size}) or ({self.input_size},), "
                             f"got {arr.shape}")
        batched = arr.ndim == 2
        if batched and arr.shape[0] == 0:
            raise ValueError(f"x must have at least one row, got shape {arr.shape}")
        x3 = arr[None] if batched else arr[None, None]
        return x3, self._check_cell_state(hx, x3.shape[1], batched), batched

    @staticmethod
    def _format(state, batched):
        """The layer's (1, B, H) states as the cell's (B, H) or (H,)."""
        out = tuple(s[0] if batched else s[0, 0] for s in state)
        return out if len(out) == 2 else out[0]

    def _check_cell_state(self, hx, batch, batched):
        if hx is None:
            return None
        # a cell's state is the layer's state without the leading (layers * directions) axis
        if self._is_lstm:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"hx must be a pair (h, c) for an LSTMCell, got {type(hx).__name__}")
            names, values = ("h", "c"), hx
        else:
            names, values = ("hx",), (hx,)
        shape = (batch, self.hidden_size) if batched else (self.hidden_size,)
        parts = [_checks.state_array(n, v, shape, self.dtype) for n, v in zip(names, values)]
        return tuple(p.reshape(1, batch, self.hidden_size) for p in parts)

    # weights (PyTorch cell names)
    def _named_parameters(self):
        return self._params

    def _named_grads(self):
        return self._grads

    def reset_parameters(self, seed=None):
        self._layer.reset_parameters(seed)


class RNNCell(_Cell):
    """h' = f(W_ih x + b_ih + W_hh h + b_hh). ``h = cell(x, hx=None)``; x (B, I) or (I,)."""

    _layer_type = RNN

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh",
                 dtype=np.float32, seed=None):
        super().__init__(input_size, hidden_size, bias, dtype, seed, nonlinearity=nonlinearity)


class GRUCell(_Cell):
    """One GRU step (see fastrnn.GRU). ``h = cell(x, hx=None)``; x (B, I) or (I,)."""

    _layer_type = GRU

    def __init__(self, input_size, hidden_size, bias=True, reset_after=True,
                 dtype=np.float32, seed=None):
        super().__init__(input_size, hidden_size, bias, dtype, seed, reset_after=reset_after)


class LSTMCell(_Cell):
    """One LSTM step (see fastrnn.LSTM). ``h, c = cell(x, (h, c)=None)``."""

    _layer_type = LSTM

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float32, seed=None):
        super().__init__(input_size, hidden_size, bias, dtype, seed)
