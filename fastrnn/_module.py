"""What every sequence module shares: the call, the weight dictionary protocol.

A sequence module (RNN/GRU/LSTM, Stacked, Bidirectional) provides
  input_size, output_size, dtype, batch_first,
  _check_state(hx, batch, batched) -> its state in batched form (or None),
  _run(x, state, lengths, reverse) -> (y (T, B, output_size), state),
  _format_state(state, batched) -> the state as the caller sees it,
  _named_parameters() -> ordered {name: array} of the live parameter arrays,
  _named_grads() -> the gradient arrays, same keys and shapes,
  _train_forward(x, state, lengths, reverse) -> (y, state, trace),
  _train_backward(trace, dy, dstate) -> (dx, dstate0), all time-major.
``reverse=True`` runs every recurrence from each sequence's last valid step
back to its first (how Bidirectional runs its reverse copy).
"""
from collections.abc import Mapping

import numpy as np

from fastrnn import _checks, io
from fastrnn._threads import serial_blas


class Parameterized:
    """The weight protocol: parameters(), state_dict(), load_state_dict(), grads.

    Subclasses keep ``_params`` and ``_grads`` (ordered {name: live array},
    same keys and shapes) or override ``_named_parameters()`` and
    ``_named_grads()`` (composites gather their parts').
    """

    _inference_only = None      # the weight format after fastrnn.quantize (training refused)

    def _check_trainable(self, what):
        """Refuse ``what`` (training, loading weights) on a quantized module."""
        if self._inference_only:
            raise ValueError(f"this {type(self).__name__} has {self._inference_only} weights "
                             f"(fastrnn.quantize): it is for inference only, {what} is refused; "
                             f"train or load the float module and quantize it again")

    def _named_parameters(self):
        return self._params

    def _named_grads(self):
        return self._grads

    def parameters(self):
        """The live parameter arrays (an optimizer may update them in place);
        read-only views for a quantized module (below)."""
        return [arr for _, arr in self.named_parameters()]

    def named_parameters(self):
        """(name, array) pairs of the live parameters, in state_dict order.

        A quantized module (fastrnn.quantize) gives read-only views: its
        calls read copies of the weights packed once (and its stored reduced
        values), which a write in place would not reach -- the outputs would
        silently mix old and new weights -- so writing raises ValueError
        (quantize the float module again instead)."""
        pairs = list(self._named_parameters().items())
        if self._inference_only:
            pairs = [(name, _read_only(arr)) for name, arr in pairs]
        return pairs

    @property
    def grads(self):
        """{name: gradient array}, keys and shapes as state_dict(); backward adds into it."""
        return self._named_grads()

    def zero_grad(self):
        """Set every gradient to zero."""
        for g in self._named_grads().values():
            g[...] = 0

    def save(self, path):
        """Write this module (architecture and weights) to one .npz file; see fastrnn.load."""
        return io.save(self, path)

    @classmethod
    def _from_config(cls, config):
        """A new instance from a saved configuration (see fastrnn._registry)."""
        return cls(**config)

    def state_dict(self):
        """{name: copy of the array}: PyTorch's names, shapes and meaning."""
        return {name: arr.copy() for name, arr in self._named_parameters().items()}

    def load_state_dict(self, state_dict):
        """Copy weights in from ``state_dict`` (numpy arrays, tensors, lists).

        Every key and shape is checked before anything is copied, so a failed
        load leaves the module as it was.
        """
        self._check_trainable("load_state_dict")
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping of names to arrays, "
                            f"got {type(state_dict).__name__}")
        own = self._named_parameters()
        _checks.same_keys(own, state_dict)
        staged = {}
        for name, target in own.items():
            arr = _checks.float_array(f"state_dict[{name!r}]", state_dict[name], self.dtype)
            _checks.expect_shape(f"state_dict[{name!r}]", arr, target.shape)
            # a source that is (part of) this module's own arrays, e.g. two
            # entries swapped, must be read before any of them is written
            if any(np.may_share_memory(arr, t) for t in own.values()):
                arr = arr.copy()
            staged[name] = arr
        for name, arr in staged.items():
            np.copyto(own[name], arr)


def _array_or_none(value):
    """np.asarray(value), or None when numpy cannot convert it (the input
    checks then convert again and say what is wrong)."""
    try:
        return np.asarray(value)
    except Exception:  # ragged lists and the like
        return None


class SequenceModule(Parameterized):
    """Base of the layers: ``y, h_n = module(x, hx=None, *, lengths=None)``."""

    _takes_tokens = False       # whether integer x means token ids (first layer RNN/GRU/LSTM)

    def _check_input(self, x):
        """x time-major: (T, B, input_size) floats, or (T, B) token ids in
        [0, input_size) when the first layer is an RNN/GRU/LSTM; and whether
        the input was batched."""
        if self._takes_tokens:
            arr = x if isinstance(x, np.ndarray) else _array_or_none(x)
            if arr is not None and arr.dtype.kind in "iu":
                return _checks.token_sequence(arr, self.input_size, self.batch_first)
            if arr is not None:
                x = arr                        # converted once; the checks reuse it
        return _checks.sequence_input(x, self.input_size, self.dtype, self.batch_first)

    def _blas_in_kernel_threads(self, steps):
        """Whether a call of ``steps`` steps may run BLAS inside fastrnn's
        threads (then scipy's BLAS is held to one thread around it)."""
        return True

    def __call__(self, x, hx=None, *, lengths=None):
        return self._call(x, hx, lengths, False)

    def _call(self, x, hx, lengths, reverse):
        """The call; ``reverse`` runs every recurrence from each sequence's last
        valid step back to its first (an ONNX operator's direction="reverse")."""
        x3, batched = self._check_input(x)
        steps, batch = x3.shape[:2]
        lengths = _checks.lengths(lengths, batch, steps, batched)
        state = self._check_state(hx, batch, batched)
        if self._blas_in_kernel_threads(steps):
            with serial_blas():
                y, state = self._run(x3, state, lengths, reverse)
        else:
            y, state = self._run(x3, state, lengths, reverse)
        return self._user_layout(y, batched), self._format_state(state, batched)

    def forward(self, x, hx=None, *, lengths=None):
        """Training forward: ``y, h_n, ctx``; ctx keeps what backward needs.

        Applies inter-layer dropout when the module has dropout > 0.
        """
        self._check_trainable("forward (training)")
        x3, batched = self._check_input(x)
        steps, batch = x3.shape[:2]
        lengths = _checks.lengths(lengths, batch, steps, batched)
        state = self._check_state(hx, batch, batched)
        with serial_blas():
            y, state, trace = self._train_forward(x3, state, lengths, False)
        ctx = Context(self, trace, batched, steps, batch)
        return self._user_layout(y, batched), self._format_state(state, batched), ctx

    def backward(self, ctx, dy, dh_n=None):
        """BPTT: ``dx, dhx`` for the loss sum(dy * y) + sum(dh_n * h_n).

        ctx: from this module's forward, used once; dy: y's shape; dh_n: h_n's
        shape (None = zeros; for an LSTM a pair whose entries may be None).
        Adds the parameter gradients into ``grads``. dx is None for token-id input.
        """
        check_context(ctx, self)
        out_shape = (ctx.steps, ctx.batch, self.output_size)
        if not ctx.batched:
            user_shape = (ctx.steps, self.output_size)
        elif self.batch_first:
            user_shape = (ctx.batch, ctx.steps, self.output_size)
        else:
            user_shape = out_shape
        arr = _checks.state_array("dy", dy, user_shape, self.dtype)
        dy3 = arr.reshape(out_shape) if not ctx.batched else (
            arr.transpose(1, 0, 2) if self.batch_first else arr)
        dstate = self._check_state(dh_n, ctx.batch, ctx.batched, what="dh_n")
        ctx.used = True
        with serial_blas():
            dx, dstate0 = self._train_backward(ctx.trace, np.ascontiguousarray(dy3), dstate)
        ctx.trace = None                   # free the stored activations
        return self._user_layout(dx, ctx.batched), self._format_state(dstate0, ctx.batched)

    def _user_layout(self, y, batched):
        """A time-major (T, B, F) result in the caller's layout (None stays None:
        the gradient of token ids)."""
        if y is None:
            return None
        if not batched:
            return y[:, 0]
        if self.batch_first:
            return np.ascontiguousarray(y.transpose(1, 0, 2))
        return y


class Context:
    """What a training forward kept for backward; backpropagated once, by its module."""

    __slots__ = ("module", "trace", "batched", "steps", "batch", "used")

    def __init__(self, module, trace, batched=True, steps=0, batch=0):
        self.module, self.trace = module, trace
        self.batched, self.steps, self.batch = batched, steps, batch
        self.used = False



def check_context(ctx, module):
    """Check that ``ctx`` came from ``module.forward`` and was not backpropagated yet.

    Callers set ``ctx.used = True`` once the other arguments are checked too,
    so a call refused for a bad argument leaves the context usable."""
    if not isinstance(ctx, Context):
        raise TypeError(f"ctx must be the context returned by forward, got {type(ctx).__name__}")
    if ctx.module is not module:
        raise ValueError("ctx was made by another module's forward; pass it to that module's "
                         "backward")
    if ctx.used:
        raise ValueError("ctx has already been backpropagated; run forward again")


def _read_only(arr):
    """A view of ``arr`` that refuses writes."""
    view = arr.view()
    view.flags.writeable = False
    return view
