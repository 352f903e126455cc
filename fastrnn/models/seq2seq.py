"""Seq2Seq: an encoder-decoder for sequence-to-sequence maps of different lengths.

The encoder (RNN/GRU/LSTM over source token ids, optionally bidirectional)
reads the source; its final states start the decoder, a unidirectional layer
of D*H units per layer (the two directions' final states concatenated when
the encoder is bidirectional). The decoder reads <start> y_1 .. y_n and is
trained to output y_1 .. y_n <end> (teacher forcing); the model adds the
<start> input and the <end> output itself, so targets are plain id arrays
(ids in [0, tgt_vocab_size), possibly empty). predict decodes greedily: it
feeds back the most probable id until <end> or max_len.
"""
import numpy as np

from fastrnn import _checks, _registry, losses
from fastrnn._threads import single_threaded_blas
from fastrnn.linear import Dense
from fastrnn.models import _fit
from fastrnn.data import pad_sequences
from fastrnn.models._base import (Model, SequenceInput, chunks, correct_steps, finite_logits,
                                  recurrent_layer, vocabulary_from_json, vocabulary_to_json)


@_registry.saved
class Seq2Seq(Model):
    """Encoder-decoder over token ids; source and target lengths may differ.

    ``Seq2Seq(src_vocab_size, tgt_vocab_size, cell="lstm", hidden_size=64,
    num_layers=1, bidirectional=False, dropout=0.0, seed=None, *,
    src_vocab=None, tgt_vocab=None, dtype=numpy.float32)``

    bidirectional applies to the encoder. With src_vocab / tgt_vocab
    (fastrnn.data.Vocabulary) X and y may hold strings of their symbols and
    the sizes may be None. fit(X, y): X a list of source id arrays, y a list
    of target id arrays. predict(X, max_len=100) -> a list of id arrays.
    """

    def __init__(self, src_vocab_size=None, tgt_vocab_size=None, cell="lstm", hidden_size=64,
                 num_layers=1, bidirectional=False, dropout=0.0, seed=None, *, src_vocab=None,
                 tgt_vocab=None, dtype=np.float32):
        self._init_common(cell, hidden_size, num_layers, dropout, dtype, seed)
        self.source = SequenceInput(src_vocab_size, None, src_vocab)
        self.target = SequenceInput(tgt_vocab_size, None, tgt_vocab)
        self.bidirectional = _checks.boolean("bidirectional", bidirectional)
        directions = 2 if self.bidirectional else 1
        self.encoder = recurrent_layer(self.cell, self.source.vocab_size, self.hidden_size,
                                       self.num_layers, self.bidirectional, self.dropout,
                                       self.dtype, self._part_seed())
        # decoder input ids: the target ids and START = tgt_vocab_size;
        # its output classes: the target ids and END = tgt_vocab_size
        self.start = self.end = self.target.vocab_size
        self.decoder = recurrent_layer(self.cell, self.target.vocab_size + 1,
                                       directions * self.hidden_size, self.num_layers, False,
                                       self.dropout, self.dtype, self._part_seed())
        self.head = Dense(directions * self.hidden_size, self.target.vocab_size + 1,
                          dtype=self.dtype, seed=self._part_seed())
        self._parts = {"encoder": self.encoder, "decoder": self.decoder, "head": self.head}

    @classmethod
    def _part_descriptions(cls, config):
        source = SequenceInput(cls._arg(config, "src_vocab_size"), None,
                               vocabulary_from_json(cls._arg(config, "src_vocab")))
        target = SequenceInput(cls._arg(config, "tgt_vocab_size"), None,
                               vocabulary_from_json(cls._arg(config, "tgt_vocab")))
        hidden = _checks.positive_int("hidden_size", cls._arg(config, "hidden_size"))
        bidirectional = _checks.boolean("bidirectional", cls._arg(config, "bidirectional"))
        width = hidden * (2 if bidirectional else 1)
        return {"encoder": cls._recurrent_description(config, source.vocab_size, hidden,
                                                      bidirectional),
                "decoder": cls._recurrent_description(config, target.vocab_size + 1, width,
                                                      False),
                "head": cls._dense_description(config, width, target.vocab_size + 1)}

    @property
    def src_vocab_size(self):
        return self.source.vocab_size

    @property
    def tgt_vocab_size(self):
        return self.target.vocab_size

    @property
    def src_vocab(self):
        return self.source.vocab

    @property
    def tgt_vocab(self):
        return self.target.vocab

    def _config(self):
        return dict(src_vocab_size=None if self.src_vocab is not None else self.src_vocab_size,
                    tgt_vocab_size=None if self.tgt_vocab is not None else self.tgt_vocab_size,
                    bidirectional=self.bidirectional, src_vocab=vocabulary_to_json(self.src_vocab),
                    tgt_vocab=vocabulary_to_json(self.tgt_vocab), **self._common_config())

    # -- the encoder's final states start the decoder ---------------------------------
    def _bridge(self, state):
        """Encoder h_n (L*D, B, H) -> decoder h0 (L, B, D*H) (for an LSTM, h and c)."""
        if isinstance(state, tuple):
            return tuple(self._bridge(s) for s in state)
        layers, batch = self.num_layers, state.shape[1]
        directions = state.shape[0] // layers
        return np.ascontiguousarray(
            state.reshape(layers, directions, batch, self.hidden_size).transpose(0, 2, 1, 3)
            .reshape(layers, batch, directions * self.hidden_size))

    def _bridge_grad(self, dstate):
        """The inverse map, for the gradient: (L, B, D*H) -> (L*D, B, H)."""
        if isinstance(dstate, tuple):
            return tuple(self._bridge_grad(s) for s in dstate)
        layers, batch = self.num_layers, dstate.shape[1]
        directions = dstate.shape[2] // self.hidden_size
        return np.ascontiguousarray(
            dstate.reshape(layers, batch, directions, self.hidden_size).transpose(0, 2, 1, 3)
            .reshape(layers * directions, batch, self.hidden_size))

    # -- data ------------------------------------------------------------------------
    def _targets(self, y, count, name):
        if isinstance(y, (str, bytes)) or not hasattr(y, "__len__"):
            raise TypeError(f"{name} must be a list of target sequences, got {type(y).__name__}")
        if len(y) != count:
            raise ValueError(f"{name} must hold one target per source sequence ({count}), "
                             f"got {len(y)}")
        # read like source sequences, but a target may be empty (only <end>)
        return [self.target._one(f"{name}[{i}]", t, self.dtype, allow_empty=True)
                for i, t in enumerate(y)]

    def _dataset(self, X, y, names=("X", "y")):
        src = self.source.sequences(X, self.dtype, names[0])
        return src, self._targets(y, len(src), names[1])

    def _batches(self, src, tgt, batch_size, rng=None):
        out = []
        for rows in chunks(len(src), batch_size, rng):
            x, src_lengths = pad_sequences([src[i] for i in rows])
            tgt_lengths = np.array([len(tgt[i]) + 1 for i in rows], dtype=np.intp)
            dec_in = np.zeros((len(rows), int(tgt_lengths.max())), dtype=np.intp)
            dec_out = np.zeros_like(dec_in)
            for b, i in enumerate(rows):
                n = len(tgt[i])
                dec_in[b, 0] = self.start
                dec_in[b, 1:n + 1] = tgt[i]
                dec_out[b, :n] = tgt[i]
                dec_out[b, n] = self.end
            out.append((x, src_lengths, dec_in, dec_out, tgt_lengths))
        return out

    # -- training --------------------------------------------------------------------
    def fit(self, X, y, epochs=10, batch_size=32, lr=1e-2, validation_data=None, verbose=True,
            *, optimizer="adam", clip_norm=5.0, patience=None, shuffle=True, seed=None,
            client=None):
        """Train with teacher forcing on source sequences X and target sequences y.

        Options and the returned history as SequenceClassifier.fit; loss and
        accuracy are per target step (the <end> step included).
        """
        return _fit.fit_pairs(self, X, y, epochs=epochs, batch_size=batch_size, lr=lr,
                              validation_data=validation_data, verbose=verbose,
                              optimizer=optimizer, clip_norm=clip_norm, patience=patience,
                              shuffle=shuffle, seed=seed, client=client)

    def evaluate(self, X, y, batch_size=256):
        """{"loss", "accuracy"} per target step with teacher forcing, and
        "exact": the fraction of sequences that greedy decoding gets exactly right."""
        src, tgt = self._dataset(X, y)
        batch_size = _checks.positive_int("batch_size", batch_size)
        loss, accuracy = _fit.score(self, self._batches(src, tgt, batch_size))
        decoded = self._decode(src, max(len(t) for t in tgt) + 1, batch_size)
        exact = np.mean([np.array_equal(d, t) for d, t in zip(decoded, tgt)])
        return {"loss": loss, "accuracy": accuracy, "exact": float(exact)}

    def _score_batch(self, batch):
        x, src_lengths, dec_in, dec_out, tgt_lengths = batch
        _, state = self.encoder(x, lengths=src_lengths)
        y, _ = self.decoder(dec_in, self._bridge(state), lengths=tgt_lengths)
        logits = self.head(y)
        loss, _ = losses.softmax_cross_entropy(logits, dec_out, lengths=tgt_lengths,
                                               batch_first=True)
        return loss, correct_steps(logits, dec_out, tgt_lengths), int(tgt_lengths.sum())

    def _train_batch(self, batch):
        x, src_lengths, dec_in, dec_out, tgt_lengths = batch
        enc_y, state, enc_ctx = self.encoder.forward(x, lengths=src_lengths)
        y, _, dec_ctx = self.decoder.forward(dec_in, self._bridge(state), lengths=tgt_lengths)
        loss, logits, dy = self._head_loss(y, dec_out, lengths=tgt_lengths, batch_first=True)
        _, dstate0 = self.decoder.backward(dec_ctx, dy)
        # the encoder's loss is through its final states only
        self.encoder.backward(enc_ctx, np.zeros_like(enc_y), self._bridge_grad(dstate0))
        return loss, correct_steps(logits, dec_out, tgt_lengths), int(tgt_lengths.sum())

    # -- decoding --------------------------------------------------------------------
    def predict(self, X, max_len=100, batch_size=256):
        """Greedy decoding: a list of target id arrays (without <end>), at most max_len long."""
        src = self.source.sequences(X, self.dtype)
        max_len = _checks.positive_int("max_len", max_len)
        batch_size = _checks.positive_int("batch_size", batch_size)
        return self._decode(src, max_len, batch_size)

    def _decode(self, src, max_len, batch_size):
        with single_threaded_blas():          # the head's product runs between steps
            return self._decode_batches(src, max_len, batch_size)

    def _decode_batches(self, src, max_len, batch_size):
        out = []
        for rows in chunks(len(src), batch_size):
            x, lengths = pad_sequences([src[i] for i in rows])
            _, state = self.encoder(x, lengths=lengths)
            state = self._bridge(state)
            token = np.full((len(rows), 1), self.start, dtype=np.intp)
            columns = []                   # one per step taken (max_len may be huge)
            finished = np.zeros(len(rows), dtype=bool)
            # one step per output symbol; stops when every sequence has said <end>
            # (max_len ids and then <end> is the longest possible answer)
            while len(columns) <= max_len and not finished.all():
                y, state = self.decoder(token, state)
                best = finite_logits(self.head(y[:, 0])).argmax(axis=1)
                columns.append(best)
                finished |= best == self.end
                token = best[:, None]
            produced = np.stack(columns[:max_len], axis=1)     # max_len >= 1
            for b in range(len(rows)):
                seq = produced[b]
                stop = np.flatnonzero(seq == self.end)
                out.append(seq[:stop[0]] if len(stop) else seq.copy())
        return out
