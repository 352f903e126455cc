"""The LSTM as the lecture writes it: a cell memory c_t with forget, update
(input) and output gates.

    Γ_f = σ(W_f [h_{t-1}, x_t] + b_f)      forget gate
    Γ_u = σ(W_u [h_{t-1}, x_t] + b_u)      update (input) gate
    c~_t = tanh(W_c [h_{t-1}, x_t] + b_c)  candidate memory
    Γ_o = σ(W_o [h_{t-1}, x_t] + b_o)      output gate
    c_t = Γ_f ⊙ c_{t-1} + Γ_u ⊙ c~_t
    h_t = Γ_o ⊙ tanh(c_t)

fastrnn keeps PyTorch's arrays: rows [i; f; g; o] of weight_ih_l0 (the x
columns of each W) and weight_hh_l0 (the h columns), so W_u = [weight_hh[0:H],
weight_ih[0:H]], W_f the rows H:2H, W_c 2H:3H, W_o 3H:4H, each b the sum of
bias_ih and bias_hh's rows. The memory's additive update (c_t = Γ_f ⊙ c_{t-1}
+ ...) is the path along which gradients travel far back when Γ_f stays near
1 (see the vanishing-gradient section); fastrnn's ready models start the
forget gates with bias 1 for that reason.

Run:  python examples/guide/lstm.py
"""
import numpy as np

import fastrnn


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def lecture_lstm(x, W_f, b_f, W_u, b_u, W_c, b_c, W_o, b_o):
    """The equations above on [h_{t-1}, x_t]: x (T, I) -> h (T, H), c_T."""
    H = W_f.shape[0]
    h, c = np.zeros(H), np.zeros(H)
    out = []
    for x_t in x:
        hx = np.concatenate([h, x_t])
        forget, update = sigmoid(W_f @ hx + b_f), sigmoid(W_u @ hx + b_u)
        c_tilde, output = np.tanh(W_c @ hx + b_c), sigmoid(W_o @ hx + b_o)
        c = forget * c + update * c_tilde
        h = output * np.tanh(c)
        out.append(h)
    return np.array(out), c


def lecture_parameters(lstm):
    """The taught LSTM's arrays (W acting on [h, x]) from fastrnn/PyTorch's."""
    w = {k: v.astype(np.float64) for k, v in lstm.state_dict().items()}
    H = lstm.hidden_size
    W = np.concatenate([w["weight_hh_l0"], w["weight_ih_l0"]], axis=1)   # [h, x] columns
    b = w["bias_ih_l0"] + w["bias_hh_l0"]
    i, f, g, o = (slice(k * H, (k + 1) * H) for k in range(4))
    return dict(W_f=W[f], b_f=b[f], W_u=W[i], b_u=b[i], W_c=W[g], b_c=b[g], W_o=W[o],
                b_o=b[o])


def main():
    rng = np.random.default_rng(0)
    lstm = fastrnn.LSTM(input_size=3, hidden_size=6, seed=0)
    x = rng.standard_normal((15, 3)).astype(np.float32)
    y, (h_n, c_n) = lstm(x)
    mine, c_T = lecture_lstm(x.astype(np.float64), **lecture_parameters(lstm))
    diff = max(float(np.abs(y - mine).max()), float(np.abs(c_n[0] - c_T).max()))
    print(f"LSTM against the lecture's equations (outputs and final memory): "
          f"max |diff| = {diff:.1e}")
    return {"y": y, "numpy": mine, "diff": diff}


if __name__ == "__main__":
    main()
