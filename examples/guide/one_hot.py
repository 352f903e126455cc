"""Sequence data: a vocabulary, one-hot vectors, and token ids instead of them.

The lecture's example: the string "AACG" over the vocabulary "ATCG" is the
sequence of one-hot vectors e_A, e_A, e_C, e_G. Multiplying W by e_k selects
column k of W, so a layer can take the token ids themselves (a gather of
columns instead of a matrix product): the same outputs.

Run:  python examples/guide/one_hot.py
"""
import numpy as np

import fastrnn
from fastrnn.data import Vocabulary


def main():
    vocab = Vocabulary("ATCG")
    x = vocab.one_hot("AACG")                      # (T, V) = (4, 4)
    ids = vocab.encode("AACG")                     # [0, 0, 2, 3]
    for symbol, row in zip("AACG", x):
        print(f"{symbol} -> {row.astype(int).tolist()}")
    print(f"token ids: {ids.tolist()}")

    rnn = fastrnn.RNN(input_size=len(vocab), hidden_size=3, seed=0)
    y_one_hot, _ = rnn(x)                          # unbatched: (T, V) in, (T, H) out
    y_ids, _ = rnn(ids[:, None])                   # token ids: (T, B=1) in, (T, 1, H) out
    diff = float(np.abs(y_one_hot - y_ids[:, 0]).max())
    print(f"one-hot input and token ids give the same outputs: max |diff| = {diff:.1e}")
    return {"one_hot": x, "ids": ids, "diff": diff}


if __name__ == "__main__":
    main()
