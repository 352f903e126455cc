"""Deep RNNs: layers stacked, each layer's output sequence the next one's input.

a^[l]_t = tanh(W_ax^[l] a^[l-1]_t + W_aa^[l] a^[l]_{t-1} + b^[l])  (a^[0]_t = x_t)

fastrnn.LSTM(..., num_layers=3) is that (PyTorch's layout: weight_ih_l1 is
layer 2's W_ax, h_n holds one final state per layer); Stacked composes any
layers the same way, and the two give the same outputs with the same
weights.

Run:  python examples/guide/deep.py
"""
import numpy as np

import fastrnn


def main():
    rng = np.random.default_rng(0)
    deep = fastrnn.LSTM(input_size=4, hidden_size=8, num_layers=3, seed=0)
    x = rng.standard_normal((20, 2, 4)).astype(np.float32)      # (T, B, I)
    y, (h_n, c_n) = deep(x)
    print(f"x {x.shape} -> y {y.shape} (the top layer's outputs); h_n {h_n.shape}, "
          f"c_n {c_n.shape} (one per layer)")
    for name, arr in deep.named_parameters():
        if name.startswith("weight"):
            print(f"  {name:14s} {arr.shape}")

    # the same network as three single layers in a Stacked
    layers = [fastrnn.LSTM(4 if k == 0 else 8, 8) for k in range(3)]
    w = deep.state_dict()
    for k, layer in enumerate(layers):
        layer.load_state_dict({name.replace(f"_l{k}", "_l0"): w[name]
                               for name in w if name.endswith(f"_l{k}")})
    y_stacked, _ = fastrnn.Stacked(layers)(x)
    diff = float(np.abs(y - y_stacked).max())
    print(f"LSTM(num_layers=3) == Stacked of three LSTMs: max |diff| = {diff:.1e}")
    return {"y": y, "h_n": h_n, "diff": diff}


if __name__ == "__main__":
    main()
