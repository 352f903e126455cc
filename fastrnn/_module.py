"""What every sequence module shares: the call, the weight dictionary protocol.

A sequence module (RNN/GRU/LSTM, Stacked, Bidirectional) provides
  input_size, output_size, dtype, batch_first,
  _check_state(hx, batch, batched) -> its state in batched form (or None),
  _run(x, state, lengths, reverse) -> (y (T, B, output_size), state),
  _format_state(state, batched) -> the state as the caller sees it,
  _named_parameters() -> ordered {name: array} of the live parameter arrays.
``reverse=True`` runs every recurrence from each sequence's last valid step
back to its first (how Bidirectional runs its reverse copy).
"""
from collections.abc import Mapping

import numpy as np

from fastrnn import _checks
from fastrnn._threads import serial_blas


class Parameterized:
    """The weight protocol: parameters(), state_dict(), load_state_dict().

    Subclasses provide ``_named_parameters()``: an ordered {name: live array}.
    """

    def parameters(self):
        """The live parameter arrays (an optimizer may update them in place)."""
        return list(self._named_parameters().values())

    def named_parameters(self):
        """(name, array) pairs of the live parameters, in state_dict order."""
        return list(self._named_parameters().items())

    def state_dict(self):
        """{name: copy of the array}: PyTorch's names, shapes and meaning."""
        return {name: arr.copy() for name, arr in self._named_parameters().items()}

    def load_state_dict(self, state_dict):
        """Copy weights in from ``state_dict`` (numpy arrays, tensors, lists).

        Every key and shape is checked before anything is copied, so a failed
        load leaves the module as it was.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping of names to arrays, "
                            f"got {type(state_dict).__name__}")
        own = self._named_parameters()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"missing keys {missing}")
            if unexpected:
                parts.append(f"unexpected keys {unexpected}")
            raise ValueError("state_dict does not match this module: " + "; ".join(parts))
        staged = {}
        for name, target in own.items():
            arr = _checks.float_array(f"state_dict[{name!r}]", state_dict[name], self.dtype)
            staged[name] = _checks.expect_shape(f"state_dict[{name!r}]", arr, target.shape)
        for name, arr in staged.items():
            np.copyto(own[name], arr)


class SequenceModule(Parameterized):
    """Base of the layers: ``y, h_n = module(x, hx=None, *, lengths=None)``."""

    def __call__(self, x, hx=None, *, lengths=None):
        x3, batched = _checks.sequence_input(x, self.input_size, self.dtype, self.batch_first)
        steps, batch = x3.shape[:2]
        lengths = _checks.lengths(lengths, batch, steps, batched)
        state = self._check_state(hx, batch, batched)
        with serial_blas():
            y, state = self._run(x3, state, lengths, False)
        if not batched:
            y = y[:, 0]
        elif self.batch_first:
            y = np.ascontiguousarray(y.transpose(1, 0, 2))
        return y, self._format_state(state, batched)
