"""A plain numpy reference of docs/EQUATIONS.md, one sequence at a time.

Written from the equations, not from the kernels: each sequence of a batch is
run alone for exactly its own length, the reverse direction walks it from its
last valid step back, and the GRU uses the taught update gate z = 1 - z'
(parameters = the negated PyTorch z rows). Parameters come as a PyTorch-style
state dict; everything is computed in float64.
"""
import numpy as np


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _split(w, parts):
    return np.split(np.asarray(w, dtype=np.float64), parts, axis=0)


def rnn_step(x, a, p, nonlinearity):
    """a_t = f(W_ax x_t + W_aa a_{t-1} + b_a), b_a = b_ih + b_hh."""
    f = np.tanh if nonlinearity == "tanh" else (lambda v: np.maximum(v, 0.0))
    return f(p["W_ax"] @ x + p["W_aa"] @ a + p["b_a"])


def gru_step(x, h, p, reset_after):
    """The taught GRU: z weighs the candidate, h_t = (1 - z) h_{t-1} + z h~."""
    z = sigmoid(p["W_zx"] @ x + p["W_zh"] @ h + p["b_z"])
    r = sigmoid(p["W_rx"] @ x + p["W_rh"] @ h + p["b_r"])
    if reset_after:
        h_cand = np.tanh(p["W_hx"] @ x + p["b_hx"] + r * (p["W_hh"] @ h + p["b_hh"]))
    else:
        h_cand = np.tanh(p["W_hx"] @ x + p["W_hh"] @ (r * h) + p["b_hx"] + p["b_hh"])
    return (1.0 - z) * h + z * h_cand


def lstm_step(x, h, c, p):
    f = sigmoid(p["W_fx"] @ x + p["W_fh"] @ h + p["b_f"])
    i = sigmoid(p["W_ix"] @ x + p["W_ih"] @ h + p["b_i"])
    o = sigmoid(p["W_ox"] @ x + p["W_oh"] @ h + p["b_o"])
    c_cand = np.tanh(p["W_cx"] @ x + p["W_ch"] @ h + p["b_c"])
    c = f * c + i * c_cand
    return o * np.tanh(c), c


def equation_params(mode, sd, suffix):
    """Rename one direction's PyTorch weights into the equations' symbols."""
    w_ih = np.asarray(sd["weight_ih" + suffix], dtype=np.float64)
    w_hh = np.asarray(sd["weight_hh" + suffix], dtype=np.float64)
    rows = w_ih.shape[0]
    if "bias_ih" + suffix in sd:
        b_ih = np.asarray(sd["bias_ih" + suffix], dtype=np.float64)
        b_hh = np.asarray(sd["bias_hh" + suffix], dtype=np.float64)
    else:
        b_ih = b_hh = np.zeros(rows)
    if mode == "rnn":
        return dict(W_ax=w_ih, W_aa=w_hh, b_a=b_ih + b_hh)
    if mode == "gru":
        (xr, xz, xn), (hr, hz, hn) = _split(w_ih, 3), _split(w_hh, 3)
        (bir, biz, bin_), (bhr, bhz, bhn) = _split(b_ih, 3), _split(b_hh, 3)
        # PyTorch's z' = σ(a) is 1 - z with z = σ(-a): negate the z rows
        return dict(W_zx=-xz, W_zh=-hz, b_z=-(biz + bhz), W_rx=xr, W_rh=hr, b_r=bir + bhr,
                    W_hx=xn, W_hh=hn, b_hx=bin_, b_hh=bhn)
    (xi, xf, xg, xo), (hi, hf, hg, ho) = _split(w_ih, 4), _split(w_hh, 4)
    b = _split(b_ih + b_hh, 4)
    return dict(W_ix=xi, W_ih=hi, b_i=b[0], W_fx=xf, W_fh=hf, b_f=b[1],
                W_cx=xg, W_ch=hg, b_c=b[2], W_ox=xo, W_oh=ho, b_o=b[3])


def run_direction(mode, p, x, h0, c0, length, reverse, **opts):
    """One sequence x (T, I) through one direction; returns y (T, H), h, c."""
    H = h0.shape[0]
    y = np.zeros((x.shape[0], H))
    h, c = h0.astype(np.float64), c0.astype(np.float64)
    steps = range(length - 1, -1, -1) if reverse else range(length)
    for t in steps:
        if mode == "rnn":
            h = rnn_step(x[t], h, p, opts["nonlinearity"])
        elif mode == "gru":
            h = gru_step(x[t], h, p, opts["reset_after"])
        else:
            h, c = lstm_step(x[t], h, c, p)
        y[t] = h
    return y, h, c


def run_layer(mode, sd, x, num_layers=1, bidirectional=False, h0=None, c0=None,
              lengths=None, reverse=False, **opts):
    """A PyTorch-style multi-layer (bi)directional layer on x (T, B, I).

    Returns y (T, B, D*H), h_n and c_n (L*D, B, H). ``reverse`` runs a
    unidirectional layer from each sequence's end (a Bidirectional copy).
    """
    x = np.asarray(x, dtype=np.float64)
    T, B, _ = x.shape
    D = 2 if bidirectional else 1
    H = np.asarray(sd["weight_hh_l0"]).shape[1]
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    h0 = np.zeros((num_layers * D, B, H)) if h0 is None else np.asarray(h0, np.float64)
    c0 = np.zeros((num_layers * D, B, H)) if c0 is None else np.asarray(c0, np.float64)
    h_n, c_n = np.zeros_like(h0), np.zeros_like(c0)
    inp = x
    for layer in range(num_layers):
        out = np.zeros((T, B, D * H))
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            p = equation_params(mode, sd, sfx)
            k = layer * D + d
            for b in range(B):
                y, h, c = run_direction(mode, p, inp[:, b], h0[k, b], c0[k, b], lengths[b],
                                        reverse=(d == 1) != reverse, **opts)
                out[:, b, d * H:(d + 1) * H] = y
                h_n[k, b], c_n[k, b] = h, c
        inp = out
    return inp, h_n, c_n


def reverse_padded(x, lengths):
    """Reverse each sequence of x (T, B, F) within its own length (padding stays)."""
    out = np.zeros_like(x)
    for b, n in enumerate(lengths):
        out[:n, b] = x[:n, b][::-1]
    return out
