"""RNNCell, GRUCell, LSTMCell: one step, PyTorch's torch.nn.*Cell on numpy.

A cell is a one-layer, one-direction layer run for a single step; it shares
the layer's kernel and validation, with PyTorch's cell names for the weights
(weight_ih, weight_hh, bias_ih, bias_hh).
"""
import numpy as np

from fastrnn import _checks
from fastrnn._kernels import recurrent as _k
from fastrnn._module import Context, Parameterized, check_context
from fastrnn import layers
from fastrnn._threads import get_num_threads, serial_blas
from fastrnn.layers import GRU, LSTM, RNN


class _Cell(Parameterized):
    _layer_type = None

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float32, seed=None, **kind):
        self._layer = self._layer_type(input_size, hidden_size, 1, bias=bias, dtype=dtype,
                                       seed=seed, **kind)
        self._bind_views()
        self._is_lstm = isinstance(self._layer, LSTM)
        self._weight_bytes = self._layer._w_hh[0].nbytes + self._layer._w_ih[0].nbytes

    input_size = property(lambda self: self._layer.input_size)
    hidden_size = property(lambda self: self._layer.hidden_size)
    bias = property(lambda self: self._layer.bias)
    dtype = property(lambda self: self._layer.dtype)

    def __repr__(self):
        return repr(self._layer).replace(type(self._layer).__name__, type(self).__name__, 1)

    def __call__(self, x, hx=None):
        x3, batched = self._check_x(x)
        batch, H, dtype = x3.shape[1], self._layer.hidden_size, self._layer.dtype
        state = self._check_pair("hx", hx, ("h", "c"), batch, batched)
        if state is None:
            state = (np.zeros((batch, H), dtype),) * (2 if self._is_lstm else 1)
        layer = self._layer
        if self._weight_bytes > layers._CELL_SPLIT_BYTES and \
                layers._split_units(batch, 1, get_num_threads()):
            # large weights: every thread streams its share (see layers._split_units)
            with serial_blas():
                _, out = layer._run(x3, tuple(s[None] for s in state), None, False)
            return self._format(out, batched)
        h = np.empty((batch, H), dtype)
        c = np.empty((batch, H), dtype) if self._is_lstm else h
        ones, rows = layers._single_step_rows(batch)
        # the streaming path: one step on this thread, no batch plan or thread team
        self._step_kernel().step(x3[0], state[0], state[-1], h, c, ones, rows)
        if not batched:
            h, c = h[0], c[0]
        return (h, c) if self._is_lstm else h

    def forward(self, x, hx=None):
        """Training step: ``h, ctx`` (LSTMCell: ``(h, c), ctx``)."""
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
        # the bound kernel points into this cell's arrays and the names are
        # views of the layer's: a copy binds its own
        state = dict(self.__dict__)
        for key in ("_kernel", "_params", "_grads"):
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._bind_views()

    def _step_kernel(self):
        """The kernel of the streaming step, its weights bound once (rebound
        if the kernel build in use changes)."""
        kernel = self.__dict__.get("_kernel")
        if kernel is None or kernel[0] is not _k:
            layer = self._layer
            b_ih, b_hh = layer._biases(0)
            kernel = self._kernel = (_k, _k.CellKernel(layer._kind, layer._w_ih[0][0],
                                                       layer._w_hh[0][0], b_ih[0], b_hh[0]))
        return kernel[1]

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
        if self._is_lstm:
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise TypeError(f"{what} must be a pair ({', '.join(names)}) for an LSTMCell, "
                                f"got {type(value).__name__}")
        else:
            names, value = (what,), (value,)
        shape = (batch, self.hidden_size) if batched else (self.hidden_size,)
        out = []
        for name, v in zip(names, value):
            if v is None and allow_none:
                out.append(None)
                continue
            arr = _checks.state_array(name, v, shape, self.dtype)
            out.append(arr if batched else arr.reshape(1, -1))
        return tuple(out)

    @staticmethod
    def _format(state, batched):
        """The layer's (1, B, H) states as the cell's (B, H) or (H,)."""
        out = tuple(s[0] if batched else s[0, 0] for s in state)
        return out if len(out) == 2 else out[0]

    # weights (PyTorch cell names)
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
