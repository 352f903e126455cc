"""RNNCell, GRUCell, LSTMCell: one step, PyTorch's torch.nn.*Cell on numpy.

A cell is a one-layer, one-direction layer run for a single step; it shares
the layer's kernel and validation, with PyTorch's cell names for the weights
(weight_ih, weight_hh, bias_ih, bias_hh).
"""
import numpy as np

from fastrnn import _checks, _engine, _registry
from fastrnn._module import Context, Parameterized, check_context
from fastrnn._threads import serial_blas
from fastrnn.layers import GRU, LSTM, RNN


class _Cell(Parameterized):
    _layer_type = None
    _options = ()              # the cell form's own constructor arguments (of its layer)

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float32, seed=None, **kind):
        self._layer = self._layer_type(input_size, hidden_size, 1, bias=bias, dtype=dtype,
                                       seed=seed, **kind)
        self._bind_views()
        self._is_lstm = isinstance(self._layer, LSTM)

    input_size = property(lambda self: self._layer.input_size)
    hidden_size = property(lambda self: self._layer.hidden_size)
    bias = property(lambda self: self._layer.bias)
    dtype = property(lambda self: self._layer.dtype)

    def __repr__(self):
        return repr(self._layer).replace(type(self._layer).__name__, type(self).__name__, 1)

    def _config(self):
        layer = self._layer._config()
        return {key: layer[key] for key in ("input_size", "hidden_size", "bias", "dtype",
                                            *self._options)}

    @classmethod
    def _weight_shapes(cls, config):
        # the one-layer, one-direction layer's, without its "_l0" suffix
        return {name[:-3]: v for name, v in cls._layer_type._weight_shapes(config).items()}

    def __call__(self, x, hx=None):
        kernel = _engine.cell_stream_kernel(self._layer)
        if kernel is not None:
            out = kernel.call(x, hx, self._is_lstm)   # batched arrays as they come
            if out is not None:
                return out if self._is_lstm else out[0]
        x3, batched = self._check_x(x)
        batch, H, dtype = x3.shape[1], self._layer.hidden_size, self._layer.dtype
        state = self._check_pair("hx", hx, ("h", "c"), batch, batched)
        if state is None:
            state = (np.zeros((batch, H), dtype),) * (2 if self._is_lstm else 1)
        out = _engine.cell_step(self._layer, x3, state)
        if not batched:
            out = tuple(s[0] for s in out)
        return out if self._is_lstm else out[0]

    def forward(self, x, hx=None):
        """Training step: ``h, ctx`` (LSTMCell: ``(h, c), ctx``)."""
        self._check_trainable("forward (training)")
        x3, batched = self._check_x(x)
        state = self._check_pair("hx", hx, ("h", "c"), x3.shape[1], batched)
        if state is not None:
            state = tuple(s[None] for s in state)
        with serial_blas():
            _, state, trace = self._layer._train_forward(x3, state, None, False)
        return self._format(state, batched), Context(self, trace, batched, 1, x3.shape[1])

    def backward(self, ctx, dh):
        """``dx, dhx`` for the loss sum(dh * h') (+ sum(dc * c') for the LSTMCell,
        dh = (dh, dc), entries may be None); adds the weight gradients into grads."""
        check_context(ctx, self)
        batch = ctx.batch
        dstate = self._check_pair("dh", dh, ("dh", "dc"), batch, ctx.batched, allow_none=True)
        dstate = tuple(None if d is None else d[None] for d in dstate)
        ctx.used = True
        dy = np.zeros((1, batch, self.hidden_size), self.dtype)
        with serial_blas():
            dx, dstate0 = self._layer._train_backward(ctx.trace, dy, dstate)
        ctx.trace = None
        dx = dx[0] if ctx.batched else dx[0, 0]
        return dx, self._format(dstate0, ctx.batched)

    def _bind_views(self):
        """PyTorch's cell names for the layer's arrays: its names without "_l0"."""
        self._params = {name[:-3]: arr for name, arr in self._layer._named_parameters().items()}
        self._grads = {name[:-3]: arr for name, arr in self._layer._named_grads().items()}

    def __getstate__(self):
        # the names are views of the layer's arrays: a copy binds its own
        state = dict(self.__dict__)
        for key in ("_params", "_grads"):
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._bind_views()

    def _check_x(self, x):
        """x as a one-step sequence (1, B, I) and whether it was batched."""
        arr = _checks.float_array("x", x, self.dtype)
        if arr.ndim not in (1, 2) or arr.shape[-1] != self.input_size:
            raise ValueError(f"x must have shape (B, {self.input_size}) or ({self.input_size},), "
                             f"got {arr.shape}")
        batched = arr.ndim == 2
        if batched and arr.shape[0] == 0:
            raise ValueError(f"x must have at least one row, got shape {arr.shape}")
        return (arr[None] if batched else arr[None, None]), batched

    def _check_pair(self, what, value, names, batch, batched, allow_none=False):
        """A cell state (or its gradient) as a tuple of C-contiguous (B, H) arrays:
        one for RNN/GRU cells, a pair named ``names`` for the LSTMCell; entries
        may be None with ``allow_none``. None as a whole is returned as is,
        except with ``allow_none`` where it stands for zeros."""
        if value is None:
            return (None,) * (2 if self._is_lstm else 1) if allow_none else None
        shape = (batch, self.hidden_size) if batched else (self.hidden_size,)
        parts = _checks.state_parts(what, value, names if self._is_lstm else (what,), shape,
                                    self.dtype, "LSTMCell", allow_none)
        return parts if batched else tuple(None if p is None else p.reshape(1, -1)
                                           for p in parts)

    @staticmethod
    def _format(state, batched):
        """The layer's (1, B, H) states as the cell's (B, H) or (H,)."""
        out = tuple(s[0] if batched else s[0, 0] for s in state)
        return out if len(out) == 2 else out[0]

    # weights (PyTorch cell names)
    def reset_parameters(self, seed=None):
        self._layer.reset_parameters(seed)


@_registry.saved
class RNNCell(_Cell):
    """h' = f(W_ih x + b_ih + W_hh h + b_hh). ``h = cell(x, hx=None)``; x (B, I) or (I,)."""

    _layer_type = RNN
    _options = ("nonlinearity",)

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh",
                 dtype=np.float32, seed=None):
        super().__init__(input_size, hidden_size, bias, dtype, seed, nonlinearity=nonlinearity)


@_registry.saved
class GRUCell(_Cell):
    """One GRU step (see fastrnn.GRU). ``h = cell(x, hx=None)``; x (B, I) or (I,)."""

    _layer_type = GRU
    _options = ("reset_after",)

    def __init__(self, input_size, hidden_size, bias=True, reset_after=True,
                 dtype=np.float32, seed=None):
        super().__init__(input_size, hidden_size, bias, dtype, seed, reset_after=reset_after)


@_registry.saved
class LSTMCell(_Cell):
    """One LSTM step (see fastrnn.LSTM). ``h, c = cell(x, (h, c)=None)``."""

    _layer_type = LSTM

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float32, seed=None):
        super().__init__(input_size, hidden_size, bias, dtype, seed)
