"""Sequence data: vocabularies, token ids, one-hot rows, padding, mini-batches.

A sequence over a vocabulary of size V is a list of symbols; symbol k is the
one-hot vector e_k in R^V, and since W e_k is column k of W, its token id k can
be fed instead (docs/EQUATIONS.md, "Sequence data").

    vocab = Vocabulary("ATCG")
    vocab.encode("AACG")      -> array([0, 0, 2, 3])
    vocab.decode([0, 0, 2, 3]) -> "AACG"
    vocab.one_hot("AACG")     -> (4, 4) float32, rows e_A, e_A, e_C, e_G
    ids, lengths = pad_sequences([vocab.encode(s) for s in strings])
"""
import collections
import operator

import numpy as np

from fastrnn import _checks


class Vocabulary:
    """An ordered set of symbols; a symbol's id is its position.

    symbols: a string (each character is a symbol) or an iterable of symbols
    (any hashable values, e.g. words), in id order; duplicates are refused.
    unknown: a symbol that stands for every symbol not in the vocabulary; it
    is appended when not among ``symbols``. Without it, unknown symbols are a
    ValueError naming the symbol.
    """

    def __init__(self, symbols, unknown=None):
        try:
            items = list(symbols)
        except TypeError:
            raise TypeError("symbols must be a string or an iterable of symbols, got "
                            f"{type(symbols).__name__}") from None
        if unknown is not None and unknown not in items:
            items.append(unknown)
        if not items:
            raise ValueError("symbols must hold at least one symbol")
        index = {}
        for i, symbol in enumerate(items):
            try:
                if symbol in index:
                    raise ValueError(f"symbols must be distinct; {symbol!r} appears twice")
            except TypeError:
                raise TypeError(f"symbols must be hashable, got {type(symbol).__name__}") from None
            index[symbol] = i
        self._symbols = tuple(items)
        self._index = index
        self.unknown = unknown

    @classmethod
    def from_text(cls, text, unknown=None, min_count=1, max_size=None):
        """The symbols of a corpus, most frequent first (ties: first seen first).

        text: a string (character symbols) or an iterable of symbols (e.g. a
        list of words); symbols seen fewer than ``min_count`` times are left
        out; ``max_size`` caps the number of symbols (the unknown token, when
        given, is counted in it).
        """
        min_count = _checks.positive_int("min_count", min_count)
        counts = collections.Counter()
        first = {}
        for position, symbol in enumerate(text):
            counts[symbol] += 1
            first.setdefault(symbol, position)
        ordered = sorted((s for s, n in counts.items() if n >= min_count and s != unknown),
                         key=lambda s: (-counts[s], first[s]))
        if max_size is not None:
            max_size = _checks.positive_int("max_size", max_size)
            ordered = ordered[:max_size - (unknown is not None)]
        return cls(ordered, unknown=unknown)

    # -- the mapping ---------------------------------------------------------
    def __len__(self):
        return len(self._symbols)

    def __iter__(self):
        return iter(self._symbols)

    def __contains__(self, symbol):
        try:
            return symbol in self._index
        except TypeError:
            return False

    def __getitem__(self, token_id):
        return self._symbols[self._check_id(token_id)]

    def __eq__(self, other):
        return (isinstance(other, Vocabulary) and self._symbols == other._symbols
                and self.unknown == other.unknown)

    def __hash__(self):
        return hash((self._symbols, self.unknown))

    def __repr__(self):
        shown = "".join(self._symbols) if self._chars() else list(self._symbols[:10])
        more = "" if len(self) <= 10 or self._chars() else f" ... ({len(self)} symbols)"
        return f"Vocabulary({shown!r}{more}, unknown={self.unknown!r})"

    @property
    def symbols(self):
        """The symbols in id order (a tuple)."""
        return self._symbols

    def index(self, symbol):
        """The id of ``symbol`` (the unknown token's for unknown symbols, if any)."""
        try:
            return self._index[symbol]
        except (KeyError, TypeError):
            if self.unknown is not None:
                return self._index[self.unknown]
            raise ValueError(f"symbol {symbol!r} is not in the vocabulary "
                             f"(and it has no unknown token)") from None

    # -- sequences -------------------------------------------------------------
    def encode(self, sequence):
        """Token ids (1-D intp array) of a sequence of symbols (e.g. a string)."""
        return np.fromiter((self.index(s) for s in sequence), dtype=np.intp)

    def decode(self, ids, sep=""):
        """The symbols of token ids: joined with ``sep`` when every symbol is a
        string, else (or with sep=None) a list."""
        ids = _checks.token_ids("ids", ids, len(self))
        if ids.ndim != 1:
            raise ValueError(f"ids must be 1-D (one sequence), got shape {ids.shape}")
        symbols = [self._symbols[i] for i in ids]
        if sep is not None and all(isinstance(s, str) for s in self._symbols):
            return sep.join(symbols)
        return symbols

    def one_hot(self, sequence, dtype=np.float32):
        """(T, V) rows e_{id} of a sequence of symbols (or of token ids)."""
        dtype = _checks.float_dtype(dtype)
        ids = self._ids(sequence)
        out = np.zeros((len(ids), len(self)), dtype=dtype)
        out[np.arange(len(ids)), ids] = 1
        return out

    def _ids(self, sequence):
        """Token ids of a sequence given as symbols or as an integer id array."""
        if isinstance(sequence, np.ndarray) and sequence.dtype.kind in "iu":
            ids = _checks.token_ids("sequence", sequence, len(self))
            if ids.ndim != 1:
                raise ValueError(f"sequence must be 1-D, got shape {ids.shape}")
            return ids
        return self.encode(sequence)

    def _check_id(self, token_id):
        if isinstance(token_id, bool):
            raise TypeError("a token id must be an integer, got bool")
        try:
            i = operator.index(token_id)
        except TypeError:
            raise TypeError(f"a token id must be an integer, got {type(token_id).__name__}") \
                from None
        if not 0 <= i < len(self):
            raise ValueError(f"token id must be in [0, {len(self)}), got {i}")
        return i

    def _chars(self):
        return all(isinstance(s, str) and len(s) == 1 for s in self._symbols)


def pad_sequences(sequences, pad=0, dtype=None):
    """Stack sequences of different lengths: ``(padded, lengths)``.

    sequences: a non-empty list of 1-D arrays (token ids, or any values) ->
    padded (B, T_max); or of 2-D arrays (T_i, F) (feature rows) -> (B, T_max, F).
    Steps past a sequence's end hold ``pad``. lengths: (B,) intp, each >= 1.
    dtype: of the padded array (default: the sequences' common dtype).
    """
    if isinstance(sequences, np.ndarray) or not hasattr(sequences, "__len__"):
        sequences = list(sequences)
    if len(sequences) == 0:
        raise ValueError("sequences must hold at least one sequence")
    arrays = []
    for i, seq in enumerate(sequences):
        arr = np.asarray(seq)
        if arr.dtype.kind not in "iuf":
            raise TypeError(f"sequences[{i}] must hold numbers, got dtype {arr.dtype}")
        if arr.ndim not in (1, 2):
            raise ValueError(f"sequences[{i}] must be 1-D (ids) or 2-D (steps, features), "
                             f"got shape {arr.shape}")
        if arr.shape[0] == 0:
            raise ValueError(f"sequences[{i}] is empty; every sequence needs a step")
        if arrays and (arr.ndim != arrays[0].ndim or arr.shape[1:] != arrays[0].shape[1:]):
            raise ValueError(f"sequences[{i}] has shape {arr.shape}, unlike sequences[0] "
                             f"{arrays[0].shape} (all must share ndim and feature size)")
        arrays.append(arr)
    lengths = np.array([a.shape[0] for a in arrays], dtype=np.intp)
    out_dtype = np.result_type(*arrays) if dtype is None else np.dtype(dtype)
    out = np.full((len(arrays), int(lengths.max())) + arrays[0].shape[1:], pad, dtype=out_dtype)
    for b, arr in enumerate(arrays):
        out[b, :arr.shape[0]] = arr
    return out, lengths


def batches(sequences, targets=None, batch_size=32, shuffle=True, seed=None, pad=0):
    """Mini-batches of sequences, padded per batch.

    Yields ``(x, lengths, y)``: x and lengths from pad_sequences over the
    batch's sequences (batch-first), y the batch's targets: an array when the
    targets are one per sequence (class ids), padded like x when they are
    sequences (per-step targets, padded with ``pad``), None without targets.
    shuffle: a new order each pass, drawn from ``seed`` (an int, a numpy
    Generator reused across calls, or None); the last batch may be smaller.
    """
    n = len(sequences)
    if n == 0:
        raise ValueError("sequences must hold at least one sequence")
    batch_size = _checks.positive_int("batch_size", batch_size)
    if targets is not None and len(targets) != n:
        raise ValueError(f"targets must have one entry per sequence ({n}), got {len(targets)}")
    order = np.arange(n)
    if _checks.boolean("shuffle", shuffle):
        np.random.default_rng(_checks.seed(seed)).shuffle(order)
    per_step = targets is not None and np.ndim(targets[0]) > 0
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]
        x, lengths = pad_sequences([sequences[i] for i in rows], pad=pad)
        if targets is None:
            y = None
        elif per_step:
            y, _ = pad_sequences([targets[i] for i in rows], pad=pad)
        else:
            y = np.asarray([targets[i] for i in rows])
        yield x, lengths, y
