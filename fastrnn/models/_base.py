"""What the ready-made models share: their parts, inputs, weights and files.

A model is a few fastrnn modules ("parts": recurrent layers, a Dense head)
with one weight dictionary whose keys are ``part.name`` (e.g.
``rnn.weight_ih_l0``, ``head.weight``), a configuration that rebuilds it (what
``save`` writes as JSON) and, when it was given one, its vocabulary.
"""
import inspect
import json

import numpy as np

from fastrnn import _checks, _registry, losses
from fastrnn._engine import dropout_mask
from fastrnn._module import Parameterized
from fastrnn.data import Vocabulary
from fastrnn.layers import GRU, LSTM, RNN

CELLS = {"rnn": RNN, "gru": GRU, "lstm": LSTM}


def recurrent_layer(cell, input_size, hidden_size, num_layers, bidirectional, dropout,
                    dtype, seed):
    """A batch-first RNN/GRU/LSTM layer (cell: "rnn", "gru" or "lstm").

    Weights are PyTorch's initialisation, except that an LSTM's forget gate
    starts with bias 1 (b_if = 1, b_hf = 0), as Keras does (unit_forget_bias;
    Jozefowicz et al. 2015): the cell state then starts out kept rather than
    halved every step, which lets gradients reach far back from the start.
    """
    layer = CELLS[cell](input_size, hidden_size, num_layers=num_layers, batch_first=True,
                        dropout=dropout, bidirectional=bidirectional, dtype=dtype, seed=seed)
    if cell == "lstm":
        forget = slice(hidden_size, 2 * hidden_size)       # gate rows [i; f; g; o]
        for name, arr in layer.named_parameters():
            if name.startswith("bias_ih"):
                arr[forget] = 1
            elif name.startswith("bias_hh"):
                arr[forget] = 0
    return layer


def check_vocabulary(name, vocab):
    """A Vocabulary, or None; a string or list of symbols becomes a Vocabulary."""
    if vocab is None or isinstance(vocab, Vocabulary):
        return vocab
    if isinstance(vocab, (str, list, tuple)):
        return Vocabulary(vocab)
    raise TypeError(f"{name} must be a fastrnn.data.Vocabulary (or a string / list of "
                    f"symbols), got {type(vocab).__name__}")


def vocabulary_to_json(vocab):
    """{"symbols": [...], "unknown": ...}; ValueError when JSON cannot hold the symbols."""
    if vocab is None:
        return None
    value = {"symbols": list(vocab.symbols), "unknown": vocab.unknown}
    try:
        same = vocabulary_from_json(json.loads(json.dumps(value))) == vocab
    except (TypeError, ValueError):
        same = False
    if not same:
        raise ValueError("only a vocabulary of strings and numbers can be saved in a model file")
    return value


def vocabulary_from_json(value):
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("symbols"), list):
        raise ValueError("a saved vocabulary must be an object with a list of 'symbols'")
    return Vocabulary(value["symbols"], unknown=value.get("unknown"))


class Model(Parameterized):
    """Base of the ready-made models: parts, weights, dropout, files.

    Subclasses set ``self._parts`` (an ordered {name: module}) in __init__,
    and implement ``_config()`` (JSON-able keyword arguments of __init__,
    vocabularies as vocabulary_to_json gives them).
    """

    def _init_common(self, cell, hidden_size, num_layers, dropout, dtype, seed):
        self.cell = _checks.choice("cell", cell, tuple(CELLS))
        self.hidden_size = _checks.positive_int("hidden_size", hidden_size)
        self.num_layers = _checks.positive_int("num_layers", num_layers)
        self.dropout = _checks.probability("dropout", dropout)
        self.dtype = _checks.float_dtype(dtype)
        self.seed = _checks.seed(seed)
        self._rng = np.random.default_rng(self.seed)

    def _common_config(self):
        """The configuration every model shares (JSON-able; a Generator seed is not saved)."""
        return dict(cell=self.cell, hidden_size=self.hidden_size, num_layers=self.num_layers,
                    dropout=self.dropout, dtype=np.dtype(self.dtype).name,
                    seed=self.seed if isinstance(self.seed, int) else None)

    def _part_seed(self):
        """A seed for one part's weights, drawn from the model's seed."""
        return int(self._rng.integers(2**31 - 1))

    # -- weights ---------------------------------------------------------------
    def _named_parameters(self):
        return {f"{part}.{key}": arr for part, module in self._parts.items()
                for key, arr in module._named_parameters().items()}

    def _named_grads(self):
        return {f"{part}.{key}": arr for part, module in self._parts.items()
                for key, arr in module._named_grads().items()}

    def __repr__(self):
        config = self._config()
        for key in ("vocab", "src_vocab", "tgt_vocab"):
            if key in config:
                config[key] = getattr(self, key)
        args = ", ".join(f"{k}={v!r}" for k, v in config.items() if v is not None)
        return f"{type(self).__name__}({args})"

    @classmethod
    def _arg(cls, config, key):
        """config[key], or the constructor's default for it."""
        if key in config:
            return config[key]
        return inspect.signature(cls.__init__).parameters[key].default

    @classmethod
    def _recurrent_description(cls, config, input_size, hidden_size, bidirectional):
        """A part made by recurrent_layer, as fastrnn.io describes modules (the
        keys that fix its weights)."""
        cell = _checks.choice("cell", cls._arg(config, "cell"), tuple(CELLS))
        return {"type": CELLS[cell].__name__, "input_size": input_size,
                "hidden_size": hidden_size, "num_layers": cls._arg(config, "num_layers"),
                "bidirectional": bidirectional, "dtype": cls._arg(config, "dtype")}

    @classmethod
    def _dense_description(cls, config, in_features, out_features):
        """The Dense head, as fastrnn.io describes modules."""
        return {"type": "Dense", "in_features": in_features, "out_features": out_features,
                "dtype": cls._arg(config, "dtype")}

    @classmethod
    def _part_descriptions(cls, config):
        """{part: fastrnn.io description} of the parts the saved ``config``
        builds, worked out without building them (fastrnn.load compares a
        file's arrays with it before it allocates anything)."""
        raise NotImplementedError

    @classmethod
    def _weight_shapes(cls, config):
        return _registry.prefixed({part: _registry.weight_shapes(d)
                                   for part, d in cls._part_descriptions(config).items()})

    @classmethod
    def _from_config(cls, config):
        """The model a saved configuration describes (fresh weights)."""
        config = dict(config)
        for key in ("vocab", "src_vocab", "tgt_vocab"):
            if key in config:
                config[key] = vocabulary_from_json(config[key])
        if "dtype" in config:
            config["dtype"] = np.dtype(config["dtype"]).type
        return cls(**config)

    # -- training helpers --------------------------------------------------------
    def _head_loss(self, features, targets, **loss_options):
        """The training step after the recurrent layers: dropout on the
        features, the head, softmax cross-entropy (``loss_options``: lengths,
        batch_first) and back through the head and the dropout.

        Returns (loss, logits, dL/dfeatures); the head's gradients are added.
        """
        mask = None if self.dropout == 0 else dropout_mask(self._rng, features.shape,
                                                            self.dropout, self.dtype)
        if mask is not None:
            features = features * mask
        logits, head_ctx = self.head.forward(features)
        loss, dlogits = losses.softmax_cross_entropy(logits, targets, **loss_options)
        dfeatures = self.head.backward(head_ctx, dlogits)
        if mask is not None:
            dfeatures *= mask
        return loss, logits, dfeatures


class SequenceInput:
    """How a classifier or tagger reads X: token ids (vocab / vocab_size) or
    float feature rows (input_size); lists of sequences of any lengths."""

    def __init__(self, vocab_size, input_size, vocab):
        self.vocab = check_vocabulary("vocab", vocab)
        if self.vocab is not None:
            if vocab_size is not None and vocab_size != len(self.vocab):
                raise ValueError(f"vocab_size ({vocab_size}) must equal len(vocab) "
                                 f"({len(self.vocab)}) when both are given")
            vocab_size = len(self.vocab)
        if (vocab_size is None) == (input_size is None):
            raise ValueError("give exactly one of vocab_size (token-id input, or vocab) and "
                             "input_size (float feature input)")
        self.vocab_size = None if vocab_size is None else _checks.positive_int(
            "vocab_size", vocab_size)
        self.input_size = None if input_size is None else _checks.positive_int(
            "input_size", input_size)

    @property
    def tokens(self):
        return self.vocab_size is not None

    @property
    def width(self):
        """The first recurrent layer's input_size."""
        return self.vocab_size if self.tokens else self.input_size

    def sequences(self, X, dtype, name="X"):
        """X as a list of arrays: 1-D intp ids, or 2-D (T_i, input_size) of dtype."""
        if isinstance(X, str) or not hasattr(X, "__len__") and not hasattr(X, "__iter__"):
            raise TypeError(f"{name} must be a list of sequences, got {type(X).__name__}")
        seqs = list(X)
        if not seqs:
            raise ValueError(f"{name} must hold at least one sequence")
        out = []
        for i, seq in enumerate(seqs):
            out.append(self._one(f"{name}[{i}]", seq, dtype))
        return out

    def _one(self, name, seq, dtype, allow_empty=False):
        """One checked sequence (empty only with allow_empty: a seq2seq target)."""
        if self.tokens:
            if self.vocab is not None and not (isinstance(seq, np.ndarray)
                                               and seq.dtype.kind in "iu"):
                if isinstance(seq, np.ndarray) and seq.dtype.kind == "f":
                    raise TypeError(f"{name} must be token ids or symbols, got float values")
                try:
                    ids = self.vocab.encode(seq)
                except ValueError as exc:        # (name the sequence, as every check here)
                    raise ValueError(f"{name}: {exc}") from None
            else:
                ids = _checks.token_ids(name, seq, self.vocab_size)
            if ids.ndim != 1:
                raise ValueError(f"{name} must be a 1-D sequence of token ids, got shape "
                                 f"{ids.shape}")
        else:
            ids = _checks.float_array(name, seq, dtype)
            if ids.ndim != 2 or ids.shape[1] != self.input_size:
                raise ValueError(f"{name} must be (steps, input_size={self.input_size}), "
                                 f"got shape {ids.shape}")
        if ids.shape[0] == 0 and not allow_empty:
            raise ValueError(f"{name} is empty; every sequence needs a step")
        return ids

    def config(self):
        return {"vocab_size": None if self.vocab is not None else self.vocab_size,
                "input_size": self.input_size, "vocab": vocabulary_to_json(self.vocab)}


def chunks(n, batch_size, rng=None):
    """Index arrays of mini-batches over n items, shuffled by rng when given."""
    order = np.arange(n) if rng is None else rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def correct_steps(logits, targets, lengths):
    """How many valid steps (t < lengths[b]) the most probable class gets right;
    logits (B, T, C), targets (B, T)."""
    valid = np.arange(targets.shape[1])[None, :] < lengths[:, None]
    return int(np.sum((logits.argmax(axis=2) == targets) & valid))


def softmax(logits, temperature=1.0):
    """softmax(logits / temperature) on the last axis, for any temperature > 0:
    the largest logit is subtracted before dividing, so a tiny temperature
    gives (a share of) 1 at the largest logits, never inf / inf."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    if temperature != 1.0:
        with np.errstate(over="ignore"):      # -inf: a share of exactly 0
            shifted = shifted / temperature
    p = np.exp(shifted)
    return p / p.sum(axis=-1, keepdims=True)


def finite_logits(logits, source="the input"):
    """logits, refused when not finite: an argmax or a sample of NaN would
    pass for an answer (NaN or inf in the weights or in ``source``)."""
    if not np.isfinite(logits).all():
        raise ValueError(f"the model's outputs are not finite: its weights or {source} "
                         f"hold NaN or inf")
    return logits


def final_states(layer, h_n):
    """The top layer's final hidden state, directions concatenated: (B, D*H).

    h_n: the layer's h_n (for an LSTM the pair (h_n, c_n); h is used).
    """
    h = h_n[0] if isinstance(h_n, tuple) else h_n
    directions = 2 if layer.bidirectional else 1
    return np.concatenate(list(h[-directions:]), axis=1)


def final_states_grad(layer, h_n, dfeature):
    """dh_n for the loss whose gradient with respect to final_states(layer, h_n) is dfeature."""
    h = h_n[0] if isinstance(h_n, tuple) else h_n
    directions = 2 if layer.bidirectional else 1
    dh = np.zeros_like(h)
    size = layer.hidden_size
    for d in range(directions):
        dh[h.shape[0] - directions + d] = dfeature[:, d * size:(d + 1) * size]
    return (dh, None) if isinstance(h_n, tuple) else dh
