"""fastrnn in one page: build, call, stream, save and reload an LSTM on numpy arrays.

Run:  python examples/quickstart.py
"""
import os
import tempfile
import time

import numpy as np

import fastrnn


def main():
    fastrnn.show_config()
    rng = np.random.default_rng(0)

    # A 2-layer bidirectional LSTM, PyTorch's constructor and shapes.
    lstm = fastrnn.LSTM(input_size=32, hidden_size=64, num_layers=2, bidirectional=True,
                        batch_first=True, seed=0)
    x = rng.standard_normal((8, 50, 32)).astype(np.float32)     # (B, T, input_size)
    lengths = rng.integers(10, 51, size=8)                       # variable-length batch
    y, (h_n, c_n) = lstm(x, lengths=lengths)
    print(f"\ny {y.shape}, h_n {h_n.shape}, c_n {c_n.shape}; lengths {lengths.tolist()}")
    padding_zero = all(np.all(y[b, n:] == 0) for b, n in enumerate(lengths))
    print(f"outputs past each sequence's end are zero: {padding_zero}")

    # Streaming: a cell carries its state one step at a time.
    cell = fastrnn.GRUCell(32, 64, seed=1)
    layer = fastrnn.GRU(32, 64)
    layer.load_state_dict({k + "_l0": v for k, v in cell.state_dict().items()})
    h = None
    for t in range(50):
        h = cell(x[0, t], h)
    y_layer, h_layer = layer(x[0])            # unbatched (T, input_size)
    print(f"streamed GRUCell == GRU layer on the same sequence: "
          f"max |diff| = {np.abs(h - h_layer[0]).max():.2e}")

    # A model file (weights + architecture), and weights in PyTorch's names.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "lstm.npz")
        lstm.save(path)
        restored = fastrnn.load(path)
    print(f"reloaded model gives identical outputs: "
          f"{np.array_equal(restored(x, lengths=lengths)[0], y)}")
    twin = fastrnn.LSTM(32, 64, num_layers=2, bidirectional=True, batch_first=True)
    twin.load_state_dict(lstm.state_dict())          # a torch module's state_dict loads too
    print(f"state_dict keys: {list(lstm.state_dict())[:4]} ...")

    # Inference speed on this machine (one run; see bench/ for comparisons).
    big = rng.standard_normal((64, 100, 32)).astype(np.float32)
    lstm(big)
    start = time.perf_counter()
    for _ in range(5):
        lstm(big)
    per_call = (time.perf_counter() - start) / 5
    print(f"B=64, T=100: {per_call * 1e3:.1f} ms per call, "
          f"{64 * 100 / per_call:,.0f} sequence steps/s with {fastrnn.get_num_threads()} threads")


if __name__ == "__main__":
    main()
