"""Sequential: modules applied in turn, each to the previous one's output.

The pipeline that PyTorch's ``nn.Sequential`` and Keras' ``Sequential`` hold
and that ONNX exporters emit around a recurrent layer, e.g. Embedding ->
LSTM -> Dense:

- Embedding maps token ids (any integer shape) to vectors;
- a sequence module (RNN/GRU/LSTM, Stacked, Bidirectional) passes on its
  output sequence y (its final states are not passed on; call the module
  itself for them), with ``lengths`` given to every sequence module;
- FinalState(module) runs a sequence module and passes on its top layer's
  final hidden state, (B, D*H): many-to-one (Keras' return_sequences=False);
- Dense maps the last axis (every step at once).

State-dict keys are the inner keys prefixed with the module's index, as
nn.Sequential's ("0.weight", "1.weight_ih_l0", ...), so a PyTorch
Sequential's state_dict loads directly.
"""
import numpy as np

from fastrnn import _checks, _registry
from fastrnn._module import Context, Parameterized, SequenceModule, check_context
from fastrnn.composition import Bidirectional, Stacked
from fastrnn.layers import LSTM
from fastrnn.linear import Dense, Embedding


def _top_state(module, state):
    """The top layer's final hidden state of a sequence module's (user-form)
    state: (B, D*H), directions concatenated (summed for merge="sum")."""
    if isinstance(module, Stacked):
        return _top_state(module.layers[-1], state[-1])
    if isinstance(module, Bidirectional):
        f = _top_state(module.layer, state[0])
        r = _top_state(module.reverse_layer, state[1])
        return np.concatenate((f, r), axis=-1) if module.merge == "concat" else f + r
    h = state[0] if isinstance(module, LSTM) else state
    D = module.num_directions
    return np.concatenate(list(h[-D:]), axis=-1)


def _top_state_grad(module, state, d):
    """The gradient of a module's state (user form, None where zero) for the
    loss whose gradient with respect to _top_state(module, state) is d."""
    if isinstance(module, Stacked):
        return [None] * (len(module.layers) - 1) + [
            _top_state_grad(module.layers[-1], state[-1], d)]
    if isinstance(module, Bidirectional):
        if module.merge == "concat":
            width = _top_width(module.layer)
            d_f, d_r = d[..., :width], d[..., width:]
        else:
            d_f = d_r = d
        return (_top_state_grad(module.layer, state[0], d_f),
                _top_state_grad(module.reverse_layer, state[1], d_r))
    h = state[0] if isinstance(module, LSTM) else state
    D, H = module.num_directions, module._state_size
    dh = np.zeros_like(h)
    for k in range(D):
        dh[h.shape[0] - D + k] = d[..., k * H:(k + 1) * H]
    return (dh, None) if isinstance(module, LSTM) else dh


def _top_width(module):
    if isinstance(module, Stacked):
        return _top_width(module.layers[-1])
    if isinstance(module, Bidirectional):
        return _top_width(module.layer) * (2 if module.merge == "concat" else 1)
    return module.output_size                # D * (proj_size or hidden_size)


@_registry.saved
class FinalState(Parameterized):
    """``h = FinalState(module)(x, *, lengths=None)``: a sequence module's top
    layer's final hidden state, (B, D*H), directions concatenated (the state
    at each sequence's own last step; the reverse direction's after reading
    back to step 0). What Keras' return_sequences=False returns, and a
    many-to-one model's features. Weights: the module's (same names).
    """

    def __init__(self, module):
        if not isinstance(module, SequenceModule):
            raise TypeError(f"module must be a fastrnn sequence module (RNN, GRU, LSTM, "
                            f"Stacked, Bidirectional), got {type(module).__name__}")
        self.module = module
        self.dtype = module.dtype
        self.input_size = module.input_size
        self.output_size = _top_width(module)

    def __repr__(self):
        return f"FinalState({self.module!r})"

    def _config(self):
        return {"module": _registry.describe(self.module)}

    @classmethod
    def _from_config(cls, config):
        if set(config) != {"module"}:
            raise ValueError("a FinalState description needs exactly a 'module'")
        return cls(_registry.build(config["module"]))

    @classmethod
    def _weight_shapes(cls, config):
        return _registry.weight_shapes(config.get("module"))

    def _named_parameters(self):
        return self.module._named_parameters()

    def _named_grads(self):
        return self.module._named_grads()

    def __call__(self, x, *, lengths=None):
        _, state = self.module(x, lengths=lengths)
        return _top_state(self.module, state)

    def forward(self, x, *, lengths=None):
        """Training forward: ``h, ctx``."""
        self._check_trainable("forward (training)")
        y, state, inner = self.module.forward(x, lengths=lengths)
        h = _top_state(self.module, state)
        return h, Context(self, (inner, state, y.shape, h.shape))

    def backward(self, ctx, dh):
        """dx (None for token ids) for the loss sum(dh * h); adds into grads."""
        check_context(ctx, self)
        inner, state, y_shape, h_shape = ctx.trace
        dh = _checks.state_array("dh", dh, h_shape, self.dtype)
        ctx.used = True
        ctx.trace = None
        dx, _ = self.module.backward(inner, np.zeros(y_shape, self.dtype),
                                     _top_state_grad(self.module, state, dh))
        return dx


_ELEMENTS = (Embedding, Dense, SequenceModule, FinalState)


def width_out(module):
    """The last-axis size a module produces (Embedding, Dense, sequence
    modules, FinalState)."""
    if isinstance(module, Embedding):
        return module.embedding_dim
    if isinstance(module, Dense):
        return module.out_features
    return module.output_size


def _width_in(module):
    """The last-axis size a module reads (None: token ids)."""
    if isinstance(module, Embedding):
        return None
    if isinstance(module, Dense):
        return module.in_features
    return module.input_size


@_registry.saved
class Sequential(Parameterized):
    """``y = seq(x, *, lengths=None)``: the modules applied in turn.

    modules: a non-empty list of Embedding, Dense and sequence modules
    (RNN/GRU/LSTM, Stacked, Bidirectional), all of one dtype, each reading the
    last-axis size the previous one produces. x: what the first module takes
    (token ids for an Embedding; (T, B, I) floats, or ids, for a recurrent
    layer; (..., in_features) for a Dense); lengths: as for the recurrent
    layers (given to each sequence module). Training: ``y, ctx =
    seq.forward(x, lengths=None)``, ``dx = seq.backward(ctx, dy)`` (None for
    token-id input).
    """

    def __init__(self, modules):
        if not isinstance(modules, (list, tuple)) or not modules:
            raise TypeError("modules must be a non-empty list of fastrnn modules (Embedding, "
                            "Dense, RNN/GRU/LSTM, Stacked, Bidirectional, FinalState)")
        for i, m in enumerate(modules):
            if not isinstance(m, _ELEMENTS):
                raise TypeError(f"modules[{i}] must be an Embedding, Dense, FinalState or "
                                f"sequence layer (RNN, GRU, LSTM, Stacked, Bidirectional), got "
                                f"{type(m).__name__}")
        self.modules = list(modules)
        first = self.modules[0]
        for i in range(1, len(self.modules)):
            prev, cur = self.modules[i - 1], self.modules[i]
            if cur.dtype is not first.dtype:
                raise ValueError(f"modules[{i}].dtype must equal modules[0].dtype "
                                 f"({first.dtype.__name__}), got {cur.dtype.__name__}")
            need = _width_in(cur)
            if need is None:
                raise ValueError(f"modules[{i}] is an Embedding: it reads token ids, so it "
                                 f"can only come first")
            if need != width_out(prev):
                raise ValueError(f"modules[{i}] reads {need} features but modules[{i - 1}] "
                                 f"produces {width_out(prev)}")
            if isinstance(cur, (SequenceModule, FinalState)) and any(
                    isinstance(m, FinalState) for m in self.modules[:i]):
                raise ValueError(f"modules[{i}] reads sequences, but a FinalState before it "
                                 f"leaves one vector per sequence")
        self.dtype = first.dtype

    @property
    def output_size(self):
        return width_out(self.modules[-1])

    def __repr__(self):
        return "Sequential([" + ", ".join(map(repr, self.modules)) + "])"

    def __len__(self):
        return len(self.modules)

    def __getitem__(self, index):
        return self.modules[index]

    def _config(self):
        return {"modules": [_registry.describe(m) for m in self.modules]}

    @classmethod
    def _from_config(cls, config):
        modules = config.get("modules")
        if not isinstance(modules, list) or set(config) != {"modules"}:
            raise ValueError("a Sequential description needs exactly a list of 'modules'")
        return cls([_registry.build(d) for d in modules])

    @classmethod
    def _weight_shapes(cls, config):
        return _registry.listed_weight_shapes(config, "modules", "Sequential")

    def _named_parameters(self):
        return {f"{i}.{name}": arr for i, m in enumerate(self.modules)
                for name, arr in m._named_parameters().items()}

    def _named_grads(self):
        return {f"{i}.{name}": arr for i, m in enumerate(self.modules)
                for name, arr in m._named_grads().items()}

    def __call__(self, x, *, lengths=None):
        for m in self.modules:
            if isinstance(m, SequenceModule):
                x = m(x, lengths=lengths)[0]
            elif isinstance(m, FinalState):
                x = m(x, lengths=lengths)
            else:
                x = m(x)
        return x

    def forward(self, x, *, lengths=None):
        """Training forward: ``y, ctx`` (dropout of the inner layers applied)."""
        self._check_trainable("forward (training)")
        contexts = []
        for m in self.modules:
            if isinstance(m, SequenceModule):
                x, _, ctx = m.forward(x, lengths=lengths)
            elif isinstance(m, FinalState):
                x, ctx = m.forward(x, lengths=lengths)
            else:
                x, ctx = m.forward(x)
            contexts.append(ctx)
        return x, Context(self, (contexts, x.shape))

    def backward(self, ctx, dy):
        """dx (None for token-id input) for the loss sum(dy * y); adds into grads."""
        check_context(ctx, self)
        contexts, shape = ctx.trace
        dy = _checks.state_array("dy", dy, shape, self.dtype)
        ctx.used = True
        ctx.trace = None
        for m, inner in zip(reversed(self.modules), reversed(contexts)):
            dy = m.backward(inner, dy)
            if isinstance(m, SequenceModule):
                dy = dy[0]
        return dy
