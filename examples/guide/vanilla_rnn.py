"""The vanilla (Elman) RNN with an output layer, as the lecture writes it:

    a_t = tanh(W_ax x_t + W_aa a_{t-1} + b_a)
    y^_t = softmax(W_ya a_t + b_y)

In fastrnn it is two modules in a Sequential: the RNN layer (its weights
keep PyTorch's names: W_ax = weight_ih_l0, W_aa = weight_hh_l0, b_a =
bias_ih_l0 + bias_hh_l0) and a Dense layer applied at every step (W_ya =
weight, b_y = bias). Here the model predicts, at every step of "AACG", a
distribution over the next symbol; the same loop written out in numpy gives
the same numbers.

Run:  python examples/guide/vanilla_rnn.py
"""
import numpy as np

import fastrnn
from fastrnn.data import Vocabulary
from fastrnn.linear import Dense
from fastrnn.sequential import Sequential


def lecture_rnn(x, W_ax, W_aa, b_a, W_ya, b_y):
    """The equations above, one step at a time: x (T, V) -> y^ (T, V)."""
    a = np.zeros(W_aa.shape[0])
    out = []
    for x_t in x:
        a = np.tanh(W_ax @ x_t + W_aa @ a + b_a)
        logits = W_ya @ a + b_y
        e = np.exp(logits - logits.max())
        out.append(e / e.sum())
    return np.array(out)


def main(hidden=5):
    vocab = Vocabulary("ATCG")
    V = len(vocab)
    model = Sequential([fastrnn.RNN(V, hidden, nonlinearity="tanh", seed=0),
                        Dense(hidden, V, activation="softmax", seed=1)])
    x = vocab.one_hot("AACG")[:, None, :]          # (T, B=1, V)
    y = model(x)[:, 0]                             # (T, V): one distribution per step

    w = model.state_dict()
    mine = lecture_rnn(x[:, 0].astype(np.float64), w["0.weight_ih_l0"], w["0.weight_hh_l0"],
                       w["0.bias_ih_l0"] + w["0.bias_hh_l0"], w["1.weight"], w["1.bias"])
    diff = float(np.abs(y - mine).max())
    print(f"W_ax {w['0.weight_ih_l0'].shape}, W_aa {w['0.weight_hh_l0'].shape}, "
          f"W_ya {w['1.weight'].shape}")
    for t, row in enumerate(y):
        print(f"step {t + 1}: P(next symbol) = "
              + ", ".join(f"{s} {p:.2f}" for s, p in zip(vocab, row)))
    print(f"fastrnn against the equations in numpy: max |diff| = {diff:.1e}")
    return {"y": y, "numpy": mine, "diff": diff}


if __name__ == "__main__":
    main()
