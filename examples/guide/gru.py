"""The GRU as the lecture writes it, and how its letters map to fastrnn's arrays.

    z_t  = σ(W_zx x_t + W_zh h_{t-1} + b_z)            update gate
    r_t  = σ(W_rx x_t + W_rh h_{t-1} + b_r)            reset gate
    h~_t = tanh(W_hx x_t + W_hh (r_t ⊙ h_{t-1}) + b_h)  candidate
    h_t  = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h~_t

That is GRU(..., reset_after=False) (Cho et al. 2014; Keras reset_after=False,
ONNX linear_before_reset=0). fastrnn keeps PyTorch's arrays: rows [r; z; n]
of weight_ih_l0 (W_·x), weight_hh_l0 (W_·h) and the two biases, and
PyTorch's update gate z' weighs the old state: h_t = (1 - z'_t) ⊙ n_t +
z'_t ⊙ h_{t-1}. So z = 1 - z', and since 1 - σ(a) = σ(-a), the taught
gate's parameters are PyTorch's z rows negated:
    W_zx = -weight_ih[H:2H], W_zh = -weight_hh[H:2H], b_z = -(b_ih + b_hh)[H:2H]
    W_rx =  weight_ih[0:H],  W_rh =  weight_hh[0:H],  b_r =  (b_ih + b_hh)[0:H]
    W_hx =  weight_ih[2H:],  W_hh =  weight_hh[2H:],  b_h =  (b_ih + b_hh)[2H:]
The default GRU (reset_after=True, PyTorch's and cuDNN's) applies r after the
product instead: h~_t = tanh(W_hx x_t + b_in + r_t ⊙ (W_hh h_{t-1} + b_hn)).

Run:  python examples/guide/gru.py
"""
import numpy as np

import fastrnn


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def lecture_gru(x, W_zx, W_zh, b_z, W_rx, W_rh, b_r, W_hx, W_hh, b_h):
    """The four equations above, one step at a time: x (T, I) -> h (T, H)."""
    h = np.zeros(W_zh.shape[0])
    out = []
    for x_t in x:
        z = sigmoid(W_zx @ x_t + W_zh @ h + b_z)
        r = sigmoid(W_rx @ x_t + W_rh @ h + b_r)
        h_tilde = np.tanh(W_hx @ x_t + W_hh @ (r * h) + b_h)
        h = (1 - z) * h + z * h_tilde
        out.append(h)
    return np.array(out)


def lecture_parameters(gru):
    """The taught GRU's nine arrays from a reset-before fastrnn/PyTorch GRU."""
    w = {k: v.astype(np.float64) for k, v in gru.state_dict().items()}
    H = gru.hidden_size
    W_i, W_h, b = w["weight_ih_l0"], w["weight_hh_l0"], w["bias_ih_l0"] + w["bias_hh_l0"]
    r, z, n = slice(0, H), slice(H, 2 * H), slice(2 * H, 3 * H)
    return dict(W_zx=-W_i[z], W_zh=-W_h[z], b_z=-b[z], W_rx=W_i[r], W_rh=W_h[r], b_r=b[r],
                W_hx=W_i[n], W_hh=W_h[n], b_h=b[n])


def main():
    rng = np.random.default_rng(0)
    gru = fastrnn.GRU(input_size=3, hidden_size=6, reset_after=False, seed=0)
    x = rng.standard_normal((15, 3)).astype(np.float32)          # one sequence, (T, I)
    y, _ = gru(x)
    mine = lecture_gru(x.astype(np.float64), **lecture_parameters(gru))
    diff = float(np.abs(y - mine).max())
    print(f"GRU(reset_after=False) against the lecture's equations: max |diff| = {diff:.1e}")
    return {"y": y, "numpy": mine, "diff": diff}


if __name__ == "__main__":
    main()
