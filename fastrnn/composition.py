"""Stacked and Bidirectional: sequence modules built from other sequence modules."""
import numpy as np

from fastrnn import _checks, _registry
from fastrnn._module import SequenceModule
from fastrnn._engine import dropout_mask


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


@_registry.saved
class Stacked(SequenceModule):
    """Layers applied in turn: layer k reads the output sequence of layer k-1.

    ``y, states = stacked(x, hx=None, *, lengths=None)``; ``hx`` and ``states``
    are lists with one entry per layer, each in that layer's own form. Every
    layer must have the same dtype and batch_first, and each layer's
    input_size must equal the previous layer's output size. ``dropout`` is
    applied between layers in ``forward`` only (never when called), drawn
    from ``seed``.
    State-dict keys are the inner keys prefixed with the layer index ("0.weight_ih_l0").
    """

    def __init__(self, layers, dropout=0.0, seed=None):
        if not isinstance(layers, (list, tuple)) or not layers:
            raise TypeError("layers must be a non-empty list of fastrnn sequence layers")
        self.layers = [_check_module(f"layers[{i}]", m) for i, m in enumerate(layers)]
        self.dropout = _checks.probability("dropout", dropout)
        self._dropout_rng = np.random.default_rng(_checks.seed(seed))
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

    @property
    def _takes_tokens(self):
        return self.layers[0]._takes_tokens

    def __repr__(self):
        inner = ", ".join(map(repr, self.layers))
        return f"Stacked([{inner}], dropout={self.dropout})"

    def _config(self):
        return {"layers": [_registry.describe(m) for m in self.layers], "dropout": self.dropout}

    @classmethod
    def _from_config(cls, config):
        config = dict(config)
        layers = config.pop("layers", None)
        if not isinstance(layers, list):
            raise ValueError("a Stacked description needs a list of 'layers'")
        return cls([_registry.build(d) for d in layers], **config)

    @classmethod
    def _weight_shapes(cls, config):
        return _registry.listed_weight_shapes(config, "layers", "Stacked")

    def _fresh_copy(self, seed):
        rng = np.random.default_rng(seed)
        return Stacked([m._fresh_copy(int(rng.integers(2**63))) for m in self.layers],
                       self.dropout, int(rng.integers(2**63)))

    def _named_parameters(self):
        return {f"{i}.{name}": arr for i, m in enumerate(self.layers)
                for name, arr in m._named_parameters().items()}

    def _named_grads(self):
        return {f"{i}.{name}": arr for i, m in enumerate(self.layers)
                for name, arr in m._named_grads().items()}

    def _check_state(self, hx, batch, batched, what="hx"):
        if hx is None:
            return None
        hx = _state_list(what, hx, len(self.layers))
        return [m._check_state(h, batch, batched, what) for m, h in zip(self.layers, hx)]

    def _format_state(self, state, batched):
        return [m._format_state(s, batched) for m, s in zip(self.layers, state)]

    def _run(self, x, state, lengths, reverse):
        states = []
        for i, m in enumerate(self.layers):
            x, s = m._run(x, None if state is None else state[i], lengths, reverse)
            states.append(s)
        return x, states

    def _train_forward(self, x, state, lengths, reverse):
        states, traces = [], []
        for i, m in enumerate(self.layers):
            mask = None
            if i > 0 and self.dropout > 0:
                mask = dropout_mask(self._dropout_rng, x.shape, self.dropout, self.dtype)
                x = x * mask
            x, s, trace = m._train_forward(x, None if state is None else state[i], lengths,
                                           reverse)
            states.append(s)
            traces.append((trace, mask))
        return x, states, traces

    def _train_backward(self, traces, dy, dstate):
        dstates = [None] * len(self.layers)
        for i in range(len(self.layers) - 1, -1, -1):
            trace, mask = traces[i]
            dy, dstates[i] = self.layers[i]._train_backward(
                trace, dy, None if dstate is None else dstate[i])
            if mask is not None:
                dy = dy * mask
        return dy, dstates


@_registry.saved
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

    @property
    def _takes_tokens(self):
        return self.layer._takes_tokens

    def __repr__(self):
        return f"Bidirectional({self.layer!r}, merge={self.merge!r})"

    def _config(self):
        return {"layer": _registry.describe(self.layer), "merge": self.merge}

    @classmethod
    def _from_config(cls, config):
        config = dict(config)
        return cls(_registry.build(config.pop("layer", None)), **config)

    @classmethod
    def _weight_shapes(cls, config):
        inner = _registry.weight_shapes(config.get("layer"))
        return {**inner, **{k + "_reverse": v for k, v in inner.items()}}

    def _named_parameters(self):
        params = dict(self.layer._named_parameters())
        params.update((name + "_reverse", arr)
                      for name, arr in self.reverse_layer._named_parameters().items())
        return params

    def _named_grads(self):
        grads = dict(self.layer._named_grads())
        grads.update((name + "_reverse", arr)
                     for name, arr in self.reverse_layer._named_grads().items())
        return grads

    def _check_state(self, hx, batch, batched, what="hx"):
        if hx is None:
            return None
        if not isinstance(hx, (list, tuple)) or len(hx) != 2:
            raise TypeError(f"{what} must be a pair (forward state, reverse state), "
                            f"got {type(hx).__name__}")
        return (self.layer._check_state(hx[0], batch, batched, what),
                self.reverse_layer._check_state(hx[1], batch, batched, what))

    def _format_state(self, state, batched):
        return (self.layer._format_state(state[0], batched),
                self.reverse_layer._format_state(state[1], batched))

    def _run(self, x, state, lengths, reverse):
        fwd, rev = (None, None) if state is None else state
        y_f, s_f = self.layer._run(x, fwd, lengths, False)
        y_r, s_r = self.reverse_layer._run(x, rev, lengths, True)
        return self._merge(y_f, y_r), (s_f, s_r)

    def _train_forward(self, x, state, lengths, reverse):
        fwd, rev = (None, None) if state is None else state
        y_f, s_f, t_f = self.layer._train_forward(x, fwd, lengths, False)
        y_r, s_r, t_r = self.reverse_layer._train_forward(x, rev, lengths, True)
        return self._merge(y_f, y_r), (s_f, s_r), (t_f, t_r)

    def _train_backward(self, traces, dy, dstate):
        d_fwd, d_rev = (None, None) if dstate is None else dstate
        if self.merge == "concat":
            width = self.layer.output_size
            dy_f, dy_r = dy[..., :width], dy[..., width:]
        else:
            dy_f = dy_r = dy
        dx_f, ds_f = self.layer._train_backward(traces[0], dy_f, d_fwd)
        dx_r, ds_r = self.reverse_layer._train_backward(traces[1], dy_r, d_rev)
        dx = None if dx_f is None else dx_f + dx_r      # None: token ids have no gradient
        return dx, (ds_f, ds_r)

    def _merge(self, y_f, y_r):
        return np.concatenate((y_f, y_r), axis=2) if self.merge == "concat" else y_f + y_r


def _has_reverse(module):
    if isinstance(module, Bidirectional):
        return True
    if isinstance(module, Stacked):
        return any(_has_reverse(m) for m in module.layers)
    return bool(getattr(module, "bidirectional", False))
