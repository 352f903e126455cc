"""Do denormal numbers slow the kernels down? (the reason they are not flushed)

    python -m bench.denormals

Runs an RNN and an LSTM (H=256, T=200, zero input) whose state stays at a
constant tiny value: 1e-30 (normal float32) or 1e-40 (denormal), and prints
the time of each and the ratio denormal / normal from the same run.
"""

import numpy as np

import fastrnn
from bench.timing import median_seconds


def holding_layer(kind, hidden):
    """A layer whose state stays where it starts: RNN h' = tanh(h) ≈ h for tiny
    h; LSTM c' = c (forget gate ~1, input gate ~0)."""
    layer = (fastrnn.RNN if kind == "rnn" else fastrnn.LSTM)(hidden, hidden, seed=0)
    sd = {k: np.zeros_like(v) for k, v in layer.state_dict().items()}
    if kind == "rnn":
        sd["weight_hh_l0"] = np.eye(hidden, dtype=np.float32)
    else:
        sd["bias_ih_l0"][:hidden] = -30.0                 # input gate ~0
        sd["bias_ih_l0"][hidden:2 * hidden] = 30.0        # forget gate ~1
    layer.load_state_dict(sd)
    return layer


def main():
    fastrnn.set_num_threads(2)
    hidden, steps = 256, 200
    print(f"fastrnn {fastrnn.__version__}, 2 threads, H={hidden}, T={steps}, zero input")
    for kind in ("rnn", "lstm"):
        layer = holding_layer(kind, hidden)
        for batch in (1, 64):
            x = np.zeros((steps, batch, hidden), np.float32)
            times = {}
            for scale in (1e-30, 1e-40):
                h0 = np.full((1, batch, hidden), scale, np.float32)
                hx = h0 if kind == "rnn" else (h0, h0)
                y, _ = layer(x, hx)
                assert np.all(y[-1] != 0), "the state should stay nonzero"
                times[scale] = median_seconds(layer, x, hx)
            print(f"{kind:4s} B={batch:<3d} state 1e-30: {times[1e-30] * 1e3:7.2f} ms, "
                  f"1e-40 (denormal): {times[1e-40] * 1e3:7.2f} ms, "
                  f"ratio {times[1e-40] / times[1e-30]:.2f}")


if __name__ == "__main__":
    main()
