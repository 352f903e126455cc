"""A plain batched numpy implementation of the equations: the benchmarks' baseline.

One matrix product per step for the recurrence (after one for the whole input
projection), numpy's own BLAS; no variable lengths. Weights: a fastrnn / PyTorch
state dict.
"""
import numpy as np


def _sigmoid(v):
    return 0.5 * (1.0 + np.tanh(0.5 * v))


def _direction(kind, x, w_ih, w_hh, b_ih, b_hh, reverse, reset_after=True):
    T, B, _ = x.shape
    H = w_hh.shape[1]
    steps = range(T - 1, -1, -1) if reverse else range(T)
    gx = (x.reshape(T * B, -1) @ w_ih.T + b_ih).reshape(T, B, -1)
    h = np.zeros((B, H), x.dtype)
    c = np.zeros((B, H), x.dtype)
    y = np.empty((T, B, H), x.dtype)
    for t in steps:
        if kind == "gru":
            gh = h @ w_hh.T + b_hh
            r = _sigmoid(gx[t, :, :H] + gh[:, :H])
            z = _sigmoid(gx[t, :, H:2 * H] + gh[:, H:2 * H])
            n = np.tanh(gx[t, :, 2 * H:] + r * gh[:, 2 * H:])
            h = n + z * (h - n)
        else:
            g = gx[t] + h @ w_hh.T + b_hh
            if kind == "lstm":
                i, f, o = _sigmoid(g[:, :H]), _sigmoid(g[:, H:2 * H]), _sigmoid(g[:, 3 * H:])
                c = f * c + i * np.tanh(g[:, 2 * H:3 * H])
                h = o * np.tanh(c)
            else:
                h = np.tanh(g)
        y[t] = h
    return y


def run(kind, sd, x, num_layers=1, bidirectional=False):
    """y for x (T, B, I) through a (bi)directional multi-layer layer."""
    inp = x
    for layer in range(num_layers):
        outs = []
        for d, sfx in enumerate(["", "_reverse"][: 2 if bidirectional else 1]):
            k = f"_l{layer}{sfx}"
            outs.append(_direction(kind, inp, sd["weight_ih" + k], sd["weight_hh" + k],
                                   sd["bias_ih" + k], sd["bias_hh" + k], reverse=d == 1))
        inp = np.concatenate(outs, axis=2) if len(outs) > 1 else outs[0]
    return inp
