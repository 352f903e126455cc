"""Stacked and Bidirectional: sequence modules built from other sequence modules."""
import numpy as np

from fastrnn import _checks
from fastrnn._module import SequenceModule


def _check_module(name, module):
    if not isinstance(module, SequenceModule):
        raise TypeError(f"{name} must be a fastrnn sequence layer (RNN, GRU, LSTM, Stacked "
                        f"or Bidirectional), got {type(module).__name__}")
    return module


def _state_list(name, hx, count):
    if not isinstance(hx, (list, tuple)) or len(hx) != count:
        raise TypeError(f"{name} must be a list with one state per inner layer ({count}), "
                        f"got {type(hx).__name__}"
                        + (f" of length {len(hx)}" if isinstance(hx, (list, tuple)) else ""))
    return hx


class Stacked(SequenceModule):
    """Layers applied in turn: layer k reads the output sequence of layer k-1.

    ``y, states = stacked(x, hx=None, *, lengths=None)``; ``hx`` and ``states``
    are lists with one entry per layer, each in that layer's own form. Every
    layer must have the same dtype and batch_first, and each layer's
    input_size must equal the previous layer's output size. ``dropout`` is
    applied between layers in training only (never when called).
    State-dict keys are the inner keys prefixed with the layer index ("0.weight_ih_l0").
    """

    def __init__(self, layers, dropout=0.0):
        if not isinstance(layers, (list, tuple)) or not layers:
            raise TypeError("layers must be a non-empty list of fastrnn sequence layers")
        self.layers = [_check_module(f"layers[{i}]", m) for i, m in enumerate(layers)]
        self.dropout = _checks.probability("dropout", dropout)
        first = self.layers[0]
        for i in range(1, len(self.layers)):
            prev, cur = self.layers[i - 1], self.layers[i]
            if cur.input_size != prev.output_size:
                raise ValueError(f"layers[{i}].input_size must equal the output size of "
                                 f"layers[{i - 1}] ({prev.output_size}), got {cur.input_size}")
            if cur.dtype is not first.dtype:
                raise ValueError(f"layers[{i}].dtype must equal layers[0].dtype "
                                 f"({first.dtype.__name__}), got {cur.dtype.__name__}")
            if cur.batch_first != first.batch_first:
                raise ValueError(f"layers[{i}].batch_first must equal layers[0].batch_first "
                                 f"({first.batch_first})")
        self.input_size = first.input_size
        self.output_size = self.layers[-1].output_size
        self.dtype = first.dtype
        self.batch_first = first.batch_first

    def __repr__(self):
        inner = ", ".join(map(repr, self.layers))
        return f"Stacked([{inner}], dropout={self.dropout})"

    def _fresh_copy(self, seed):
        seeds = np.random.SeedSequence(seed).spawn(len(self.layers))
        return Stacked([m._fresh_copy(int(s.generate_state(1)[0])) for m, s in
                        zip(self.layers, seeds)], self.dropout)

    def _named_parameters(self):
        return {f"{i}.{name}": arr for i, m in enumerate(self.layers)
                for name, arr in m._named_parameters().items()}

    def _check_state(self, hx, batch, batched):
        if hx is None:
            return None
        hx = _state_list("hx", hx, len(self.layers))
        return [m._check_state(h, batch, batched) for m, h in zip(self.layers, hx)]

    def _format_state(self, state, batched):
        return [m._format_state(s, batched) for m, s in zip(self.layers, state)]

    def _run(self, x, state, lengths, reverse):
        states = []
        for i, m in enumerate(self.layers):
            x, s = m._run(x, None if state is None else state[i], lengths, reverse)
            states.append(s)
        return x, states


class Bidirectional(SequenceModule):
    """A layer and a reverse copy with its own weights, merged per step.

    The copy reads each sequence from its last valid step back to its first;
    the output at step t is [y_forward_t ; y_reverse_t] (merge="concat") or
    their sum (merge="sum"). ``y, (h_fwd, h_rev) = bi(x, hx=None, *, lengths=None)``:
    states are pairs (forward, reverse), each in the layer's own form.
    State-dict keys: the layer's, and the copy's with the suffix "_reverse",
    so Bidirectional(LSTM(I, H)) loads a PyTorch LSTM(I, H, bidirectional=True).
    """

    def __init__(self, layer, merge="concat", seed=None):
        self.layer = _check_module("layer", layer)
        if _has_reverse(layer):
            raise ValueError("layer must run forward only (not bidirectional, and not "
                             "containing a Bidirectional)")
        self.merge = _checks.choice("merge", merge, ("concat", "sum"))
        self.reverse_layer = layer._fresh_copy(_checks.seed(seed))
        self.input_size = layer.input_size
        self.output_size = layer.output_size * (2 if merge == "concat" else 1)
        self.dtype = layer.dtype
        self.batch_first = layer.batch_first

    def __repr__(self):
        return f"Bidirectional({self.layer!r}, merge={self.merge!r})"

    def _named_parameters(self):
        params = dict(self.layer._named_parameters())
        params.update((name + "_reverse", arr)
                      for name, arr in self.reverse_layer._named_parameters().items())
        return params

    def _check_state(self, hx, batch, batched):
        if hx is None:
            return None
        if not isinstance(hx, (list, tuple)) or len(hx) != 2:
            raise TypeError("hx must be a pair (forward state, reverse state), "
                            f"got {type(hx).__name__}")
        return (self.layer._check_state(hx[0], batch, batched),
                self.reverse_layer._check_state(hx[1], batch, batched))

    def _format_state(self, state, batched):
        return (self.layer._format_state(state[0], batched),
                self.reverse_layer._format_state(state[1], batched))

    def _run(self, x, state, lengths, reverse):
        fwd, rev = (None, None) if state is None else state
        y_f, s_f = self.layer._run(x, fwd, lengths, False)
        y_r, s_r = self.reverse_layer._run(x, rev, lengths, True)
        y = np.concatenate((y_f, y_r), axis=2) if self.merge == "concat" else y_f + y_r
        return y, (s_f, s_r)


def _has_reverse(module):
    if isinstance(module, Bidirectional):
        return True
    if isinstance(module, Stacked):
        return any(_has_reverse(m) for m in module.layers)
    return bool(getattr(module, "bidirectional", False))
