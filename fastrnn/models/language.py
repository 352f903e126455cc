"""LanguageModel: next-symbol prediction over a vocabulary, and generation.

A unidirectional recurrent layer over token ids and a head Dense(H, V):
p(s_{t+1} | s_1..s_t) = softmax(head(h_t)). Training cuts the text into
windows of ``seq_len`` + 1 symbols (inputs s_1..s_n, targets s_2..s_{n+1});
each window starts from the zero state, and each epoch shifts the cut by a
random offset and shuffles the windows. Generation (one-to-many) runs the
prefix, then feeds back one sampled symbol per step.
"""
import math

import numpy as np

from fastrnn import _checks, _registry, losses
from fastrnn._threads import single_threaded_blas
from fastrnn.linear import Dense
from fastrnn.models import _fit
from fastrnn.models._base import (Model, check_vocabulary, chunks, finite_logits,
                                  recurrent_layer, softmax, vocabulary_from_json,
                                  vocabulary_to_json)


@_registry.saved
class LanguageModel(Model):
    """Next-symbol model over ``vocab`` (one-to-many generation).

    ``LanguageModel(vocab, cell="lstm", hidden_size=128, num_layers=1,
    dropout=0.0, seed=None, *, dtype=numpy.float32)``

    vocab: a fastrnn.data.Vocabulary (or a string / list of symbols);
    Vocabulary.from_text(text) builds one from the training text. dropout
    applies between layers and to the outputs before the head, in training.
    Text is a string (character vocabularies) or a list of symbols.
    """

    def __init__(self, vocab, cell="lstm", hidden_size=128, num_layers=1, dropout=0.0,
                 seed=None, *, dtype=np.float32):
        self._init_common(cell, hidden_size, num_layers, dropout, dtype, seed)
        self.vocab = check_vocabulary("vocab", vocab)
        if self.vocab is None:
            raise TypeError("vocab must be a fastrnn.data.Vocabulary, got None")
        size = len(self.vocab)
        self.rnn = recurrent_layer(self.cell, size, self.hidden_size, self.num_layers, False,
                                   self.dropout, self.dtype, self._part_seed())
        self.head = Dense(self.hidden_size, size, dtype=self.dtype, seed=self._part_seed())
        self._parts = {"rnn": self.rnn, "head": self.head}

    def _config(self):
        return dict(vocab=vocabulary_to_json(self.vocab), **self._common_config())

    @classmethod
    def _part_descriptions(cls, config):
        vocab = vocabulary_from_json(config.get("vocab"))
        if vocab is None:
            raise TypeError("vocab must be a fastrnn.data.Vocabulary, got None")
        hidden = _checks.positive_int("hidden_size", cls._arg(config, "hidden_size"))
        return {"rnn": cls._recurrent_description(config, len(vocab), hidden, False),
                "head": cls._dense_description(config, hidden, len(vocab))}

    # -- data --------------------------------------------------------------------
    def _ids(self, text, name="text", minimum=2):
        if isinstance(text, np.ndarray) and text.dtype.kind in "iu":
            ids = _checks.token_ids(name, text, len(self.vocab))
        elif isinstance(text, (str, list, tuple)):
            ids = self.vocab.encode(text)
        else:
            raise TypeError(f"{name} must be a string or a list of symbols, got "
                            f"{type(text).__name__}")
        if ids.ndim != 1 or len(ids) < minimum:
            raise ValueError(f"{name} must hold at least {minimum} symbol"
                             f"{'s' if minimum > 1 else ''}, got {len(ids)}")
        return ids

    @staticmethod
    def _windows(ids, seq_len, offset=0):
        """(N, seq_len + 1) windows cut from ids[offset:] (at least one, shorter
        when the text is)."""
        width = min(seq_len + 1, len(ids))
        usable = ids[offset:] if len(ids) - offset >= width else ids
        count = len(usable) // width
        return usable[:count * width].reshape(count, width)

    def _batches(self, windows, batch_size, rng=None):
        return [(windows[rows, :-1], windows[rows, 1:])
                for rows in chunks(len(windows), batch_size, rng)]

    # -- training ------------------------------------------------------------------
    def fit(self, text, seq_len=64, epochs=10, batch_size=32, lr=1e-2, validation_data=None,
            verbose=True, *, optimizer="adam", clip_norm=5.0, patience=None, seed=None,
            client=None):
        """Train on ``text`` (a string or list of symbols) to predict each next symbol.

        seq_len: steps per training window (backpropagation reaches that far);
        validation_data: a held-out text; other options as
        SequenceClassifier.fit. Returns the history {"loss", "accuracy",
        "val_loss", "val_accuracy"} (loss: mean cross-entropy per symbol in
        nats, so perplexity = exp(loss); accuracy: of the most probable next symbol).
        """
        epochs, batch_size, lr, clip_norm, patience, verbose = _fit.check_fit_options(
            epochs, batch_size, lr, clip_norm, patience, verbose)
        seq_len = _checks.positive_int("seq_len", seq_len)
        ids = self._ids(text)
        validation = None
        if validation_data is not None:
            vids = self._ids(validation_data, "validation_data")
            validation = self._batches(self._windows(vids, seq_len), batch_size)

        def epoch_batches(rng):
            offset = int(rng.integers(min(seq_len, len(ids) - 1)))
            return self._batches(self._windows(ids, seq_len, offset), batch_size, rng)

        return _fit.run(self, epoch_batches, validation, epochs=epochs, lr=lr,
                        optimizer=optimizer, clip_norm=clip_norm, patience=patience, seed=seed,
                        verbose=verbose, client=client)

    def evaluate(self, text, seq_len=64, batch_size=256):
        """{"loss", "accuracy", "perplexity"} of next-symbol prediction over text."""
        windows = self._windows(self._ids(text), _checks.positive_int("seq_len", seq_len))
        loss, accuracy = _fit.score(self, self._batches(
            windows, _checks.positive_int("batch_size", batch_size)))
        return {"loss": loss, "accuracy": accuracy, "perplexity": math.exp(loss)}

    def _score_batch(self, batch):
        x, t = batch
        y, _ = self.rnn(x)
        logits = self.head(y)
        loss, _ = losses.softmax_cross_entropy(logits, t, batch_first=True)
        return loss, int(np.sum(logits.argmax(axis=2) == t)), t.size

    def _train_batch(self, batch):
        x, t = batch
        y, _, rnn_ctx = self.rnn.forward(x)
        loss, logits, dy = self._head_loss(y, t, batch_first=True)
        self.rnn.backward(rnn_ctx, dy)
        return loss, int(np.sum(logits.argmax(axis=2) == t)), t.size

    # -- use -------------------------------------------------------------------------
    def predict_proba(self, prefix):
        """(V,) probabilities of the symbol that follows ``prefix``."""
        ids = self._ids(prefix, "prefix", minimum=1)
        y, _ = self.rnn(ids[None, :])
        return softmax(finite_logits(self.head(y[0, -1]).astype(np.float64), "prefix"))

    def predict(self, prefix):
        """The most probable symbol after ``prefix``."""
        return self.vocab[int(np.argmax(self.predict_proba(prefix)))]

    def generate(self, prefix, length, temperature=1.0, seed=None):
        """``length`` symbols sampled after ``prefix`` (the prefix is not repeated).

        temperature: the logits are divided by it before the softmax (< 1:
        more likely symbols, > 1: more varied); 0 picks the most probable
        symbol every step. seed: an int or numpy Generator for reproducible
        samples. Returns a string for a vocabulary of characters, else a list
        of symbols.
        """
        ids = self._ids(prefix, "prefix", minimum=1)
        length = _checks.positive_int("length", length, minimum=0)
        temperature = _checks.real("temperature", temperature)
        rng = np.random.default_rng(_checks.seed(seed))
        with single_threaded_blas():          # the head's product runs between steps
            out = self._sample(ids, length, temperature, rng)
        return self.vocab.decode(out, sep="" if self.vocab._chars() else None)

    def _sample(self, ids, length, temperature, rng):
        """``length`` token ids sampled after the prefix ids."""
        out = np.empty(length, dtype=np.intp)
        y, state = self.rnn(ids[None, :])
        h = y[0, -1]
        token = np.empty((1, 1), dtype=np.intp)
        last = len(self.vocab) - 1
        for step in range(length):
            logits = finite_logits(self.head._apply(h).astype(np.float64), "prefix")
            if temperature == 0:
                nxt = int(np.argmax(logits))
            else:
                # inverse-CDF sampling from softmax(logits / temperature)
                cdf = np.cumsum(softmax(logits, temperature))
                nxt = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")),
                          last)
            out[step] = nxt
            if step + 1 < length:
                token[0, 0] = nxt
                y, state = self.rnn(token, state)
                h = y[0, -1]
        return out
