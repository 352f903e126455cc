"""Small synthetic sequence tasks, generated on the fly (for demos and tests).

    X, y = dna_motif(2000, seed=0)       # DNA strings; y = 1 when "TATA" occurs
    X, Y = reversal(1000, seed=0)        # id sequences and the same reversed
"""
import numpy as np

from fastrnn import _checks

BASES = "ATCG"


def dna_motif(n, motif="TATA", min_len=20, max_len=60, seed=None):
    """n DNA strings over ATCG of random length in [min_len, max_len], and
    labels (n,): 1 when ``motif`` occurs in the string, else 0.

    Every other string (odd positions) has the motif written over it at a
    random place; the others are drawn again until they do not hold it, so
    the classes are balanced and the label is exactly "motif present".
    """
    n = _checks.positive_int("n", n)
    if not isinstance(motif, str) or not motif or set(motif) - set(BASES):
        raise ValueError(f"motif must be a non-empty string over {BASES}, got {motif!r}")
    min_len = _checks.positive_int("min_len", min_len, minimum=len(motif))
    max_len = _checks.positive_int("max_len", max_len, minimum=min_len)
    rng = np.random.default_rng(_checks.seed(seed))
    letters = np.array(list(BASES))
    X, y = [], np.arange(n) % 2
    for label in y:
        length = int(rng.integers(min_len, max_len + 1))
        while True:
            s = "".join(letters[rng.integers(0, 4, length)])
            if motif not in s:
                break
        if label:
            at = int(rng.integers(0, length - len(motif) + 1))
            s = s[:at] + motif + s[at + len(motif):]
        X.append(s)
    return X, y


def reversal(n, vocab_size=10, min_len=3, max_len=8, seed=None):
    """n random id sequences (lengths in [min_len, max_len]) and their reversals."""
    n = _checks.positive_int("n", n)
    vocab_size = _checks.positive_int("vocab_size", vocab_size)
    min_len = _checks.positive_int("min_len", min_len)
    max_len = _checks.positive_int("max_len", max_len, minimum=min_len)
    rng = np.random.default_rng(_checks.seed(seed))
    X = [rng.integers(0, vocab_size, int(rng.integers(min_len, max_len + 1)))
         for _ in range(n)]
    return X, [x[::-1].copy() for x in X]
