"""Many-to-one and many-to-many models: SequenceClassifier and SequenceTagger.

Both are a recurrent layer (RNN/GRU/LSTM, stacked, optionally
bidirectional) over the input sequences and a linear head Dense(D*H, C):

- SequenceClassifier: logits = head(h_T), h_T the top layer's final state at
  each sequence's own last step (both directions' final states, concatenated,
  when bidirectional); softmax cross-entropy per sequence.
- SequenceTagger: logits_t = head(y_t) at every step; cross-entropy per step
  over each sequence's valid steps.

X is a list of sequences of any lengths: 1-D token ids (vocab_size; symbols
when a vocab is given) or 2-D float rows (T_i, input_size). Token ids go into
the first layer as ids (rows of W_ih gathered, not one-hot products).
"""
import numpy as np

from fastrnn import _checks, _registry, losses
from fastrnn.linear import Dense
from fastrnn.models import _fit
from fastrnn.data import batches
from fastrnn.models._base import (Model, SequenceInput, correct_steps, final_states,
                                  final_states_grad, finite_logits, recurrent_layer,
                                  softmax, vocabulary_from_json)


class _Labeller(Model):
    """The shared part: input, layer, head, fit/evaluate/predict plumbing."""

    _outputs_key = None        # the constructor argument that counts the outputs

    def __init__(self, vocab_size, input_size, num_outputs, cell, hidden_size,
                 num_layers, bidirectional, dropout, dtype, seed, vocab):
        self._init_common(cell, hidden_size, num_layers, dropout, dtype, seed)
        self.input = SequenceInput(vocab_size, input_size, vocab)
        self.bidirectional = _checks.boolean("bidirectional", bidirectional)
        outputs_name = self._outputs_key
        num_outputs = _checks.positive_int(outputs_name, num_outputs)
        if num_outputs < 2:
            raise ValueError(f"{outputs_name} must be >= 2, got {num_outputs}")
        self.num_outputs = num_outputs
        self.rnn = recurrent_layer(self.cell, self.input.width, self.hidden_size,
                                   self.num_layers, self.bidirectional, self.dropout,
                                   self.dtype, self._part_seed())
        width = self.hidden_size * (2 if self.bidirectional else 1)
        self.head = Dense(width, num_outputs, dtype=self.dtype, seed=self._part_seed())
        self._parts = {"rnn": self.rnn, "head": self.head}

    @classmethod
    def _part_descriptions(cls, config):
        inp = SequenceInput(cls._arg(config, "vocab_size"), cls._arg(config, "input_size"),
                            vocabulary_from_json(cls._arg(config, "vocab")))
        hidden = _checks.positive_int("hidden_size", cls._arg(config, "hidden_size"))
        bidirectional = _checks.boolean("bidirectional", cls._arg(config, "bidirectional"))
        width = hidden * (2 if bidirectional else 1)
        return {"rnn": cls._recurrent_description(config, inp.width, hidden, bidirectional),
                "head": cls._dense_description(config, width,
                                               cls._arg(config, cls._outputs_key))}

    @property
    def vocab(self):
        return self.input.vocab

    @property
    def vocab_size(self):
        return self.input.vocab_size

    @property
    def input_size(self):
        return self.input.input_size

    def _config(self):
        return dict(**self.input.config(), **{self._outputs_key: self.num_outputs},
                    bidirectional=self.bidirectional, **self._common_config())

    # -- batches -------------------------------------------------------------------
    def _sequences(self, X, name="X"):
        return self.input.sequences(X, self.dtype, name)

    @staticmethod
    def _batches(seqs, targets, batch_size, rng=None):
        """Padded mini-batches (x, lengths, y) in order, or shuffled by rng
        (fastrnn.data.batches over the checked sequences and targets)."""
        return list(batches(seqs, targets, batch_size, shuffle=rng is not None, seed=rng))

    # -- the public loop -------------------------------------------------------------
    def fit(self, X, y, epochs=10, batch_size=32, lr=1e-2, validation_data=None, verbose=True,
            *, optimizer="adam", clip_norm=5.0, patience=None, shuffle=True, seed=None,
            client=None):
        """Train on (X, y) for ``epochs`` passes of shuffled mini-batches.

        X: list of sequences (see the class); y: the targets (see the class).
        lr: learning rate of ``optimizer`` ("adam", "adamw", "sgd" or a
        fastrnn.optim optimizer over this model); clip_norm: gradients are
        rescaled to this total norm when larger (None: no clipping);
        validation_data: (X_val, y_val), scored after every epoch;
        patience: stop when the validation loss has not improved for that
        many epochs; the model then ends with the weights of its best
        validation epoch (stopped early or not); shuffle/seed: the
        order of the mini-batches; verbose: a progress bar (tqdm when
        installed, else one line per epoch); client: a distributed.Client --
        each mini-batch's gradient is computed on shards of its rows across
        the workers and summed (synchronous data parallelism,
        fastrnn.distributed; the same weights as without it, to float
        rounding, when dropout is 0).
        Returns the history: {"loss", "accuracy", "val_loss", "val_accuracy"},
        one value per epoch (the val_ keys only with validation_data).
        """
        return _fit.fit_pairs(self, X, y, epochs=epochs, batch_size=batch_size, lr=lr,
                              validation_data=validation_data, verbose=verbose,
                              optimizer=optimizer, clip_norm=clip_norm, patience=patience,
                              shuffle=shuffle, seed=seed, client=client)

    def evaluate(self, X, y, batch_size=256):
        """{"loss": mean cross-entropy, "accuracy": fraction correct} on (X, y)."""
        seqs, targets = self._dataset(X, y)
        loss, accuracy = _fit.score(self, self._batches(
            seqs, targets, _checks.positive_int("batch_size", batch_size)))
        return {"loss": loss, "accuracy": accuracy}

    def _dataset(self, X, y, names=("X", "y")):
        seqs = self._sequences(X, names[0])
        return seqs, self._check_targets(y, seqs, names[1])

    def _logits_batches(self, X, batch_size):
        """[(logits, lengths)] over X in order, batch by batch."""
        seqs = self._sequences(X)
        batch_size = _checks.positive_int("batch_size", batch_size)
        return [(finite_logits(self._logits(x, lengths), "X"), lengths)
                for x, lengths, _ in batches(seqs, None, batch_size, shuffle=False)]


@_registry.saved
class SequenceClassifier(_Labeller):
    """Many-to-one: one class per sequence.

    ``SequenceClassifier(vocab_size=None, input_size=None, num_classes=2,
    cell="lstm", hidden_size=64, num_layers=1, bidirectional=False,
    dropout=0.0, seed=None, *, vocab=None, dtype=numpy.float32)``

    Give vocab_size (token ids in [0, vocab_size)) or a ``vocab``
    (fastrnn.data.Vocabulary; X may then hold strings of its symbols) for
    token input, or input_size for float rows. dropout applies between the
    recurrent layers and to the final state before the head, in training.
    y: class ids (B,). predict(X) -> (B,) class ids; predict_proba(X) -> (B, C).
    """

    _outputs_key = "num_classes"

    def __init__(self, vocab_size=None, input_size=None, num_classes=2, cell="lstm",
                 hidden_size=64, num_layers=1, bidirectional=False, dropout=0.0, seed=None,
                 *, vocab=None, dtype=np.float32):
        super().__init__(vocab_size, input_size, num_classes, cell, hidden_size,
                         num_layers, bidirectional, dropout, dtype, seed, vocab)

    @property
    def num_classes(self):
        return self.num_outputs

    def _check_targets(self, y, seqs, name):
        t = _checks.token_ids(name, y, self.num_classes)
        if t.shape != (len(seqs),):
            raise ValueError(f"{name} must hold one class id per sequence ({len(seqs)}), got "
                             f"shape {t.shape}")
        return t

    def _logits(self, x, lengths):
        _, h_n = self.rnn(x, lengths=lengths)
        return self.head(final_states(self.rnn, h_n))

    def _score_batch(self, batch):
        x, lengths, t = batch
        logits = self._logits(x, lengths)
        loss, _ = losses.softmax_cross_entropy(logits, t)
        return loss, int(np.sum(logits.argmax(axis=1) == t)), len(t)

    def _train_batch(self, batch):
        x, lengths, t = batch
        y, h_n, rnn_ctx = self.rnn.forward(x, lengths=lengths)
        loss, logits, dfeature = self._head_loss(final_states(self.rnn, h_n), t)
        # only the final states feed the loss: dy = 0, dh_n from the head
        self.rnn.backward(rnn_ctx, np.zeros_like(y), final_states_grad(self.rnn, h_n, dfeature))
        return loss, int(np.sum(logits.argmax(axis=1) == t)), len(t)

    def predict_proba(self, X, batch_size=256):
        """(B, num_classes) class probabilities (softmax of the logits)."""
        return np.concatenate([softmax(logits) for logits, _ in
                               self._logits_batches(X, batch_size)])

    def predict(self, X, batch_size=256):
        """(B,) the most probable class of each sequence."""
        return np.concatenate([logits.argmax(axis=1) for logits, _ in
                               self._logits_batches(X, batch_size)])


@_registry.saved
class SequenceTagger(_Labeller):
    """Many-to-many: one tag per step.

    ``SequenceTagger(vocab_size=None, input_size=None, num_tags=2, cell="lstm",
    hidden_size=64, num_layers=1, bidirectional=False, dropout=0.0, seed=None,
    *, vocab=None, dtype=numpy.float32)``; inputs as SequenceClassifier.
    y: a list of tag-id arrays, one per sequence, each as long as its sequence.
    predict(X) -> a list of tag-id arrays; predict_proba(X) -> a list of
    (T_i, num_tags) arrays. Accuracy counts steps.
    """

    _outputs_key = "num_tags"

    def __init__(self, vocab_size=None, input_size=None, num_tags=2, cell="lstm",
                 hidden_size=64, num_layers=1, bidirectional=False, dropout=0.0, seed=None,
                 *, vocab=None, dtype=np.float32):
        super().__init__(vocab_size, input_size, num_tags, cell, hidden_size,
                         num_layers, bidirectional, dropout, dtype, seed, vocab)

    @property
    def num_tags(self):
        return self.num_outputs

    def _check_targets(self, y, seqs, name):
        if isinstance(y, (str, bytes)) or not hasattr(y, "__len__"):
            raise TypeError(f"{name} must be a list of tag-id arrays, got {type(y).__name__}")
        if len(y) != len(seqs):
            raise ValueError(f"{name} must hold one tag sequence per sequence ({len(seqs)}), "
                             f"got {len(y)}")
        tags = []
        for i, (seq, t) in enumerate(zip(seqs, y)):
            t = _checks.token_ids(f"{name}[{i}]", t, self.num_tags)
            if t.shape != (len(seq),):
                raise ValueError(f"{name}[{i}] must hold one tag per step ({len(seq)}), got "
                                 f"shape {t.shape}")
            tags.append(t)
        return tags

    def _logits(self, x, lengths):
        y, _ = self.rnn(x, lengths=lengths)
        return self.head(y)

    def _score_batch(self, batch):
        x, lengths, t = batch
        logits = self._logits(x, lengths)
        loss, _ = losses.softmax_cross_entropy(logits, t, lengths=lengths, batch_first=True)
        return loss, correct_steps(logits, t, lengths), int(lengths.sum())

    def _train_batch(self, batch):
        x, lengths, t = batch
        y, _, rnn_ctx = self.rnn.forward(x, lengths=lengths)
        loss, logits, dy = self._head_loss(y, t, lengths=lengths, batch_first=True)
        self.rnn.backward(rnn_ctx, dy)
        return loss, correct_steps(logits, t, lengths), int(lengths.sum())

    def predict_proba(self, X, batch_size=256):
        """A list of (T_i, num_tags) tag probabilities, one array per sequence."""
        return [softmax(logits[b, :n]) for logits, lengths in
                self._logits_batches(X, batch_size) for b, n in enumerate(lengths)]

    def predict(self, X, batch_size=256):
        """A list of (T_i,) tag ids, the most probable tag at each step."""
        return [logits[b, :n].argmax(axis=1) for logits, lengths in
                self._logits_batches(X, batch_size) for b, n in enumerate(lengths)]
