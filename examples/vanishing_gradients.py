"""Vanishing gradients, shown: how far back a loss at the last step reaches in
an RNN, a GRU and an LSTM, before and after training on a long-range task.

Task (Hochreiter & Schmidhuber's "temporal order"): sequences of T noise
tokens with two markers, one early and one in the middle; the class (4) is
which markers came in which order, asked at the end.
For each cell, fastrnn.diagnostics.hidden_gradient_norms gives ‖dL/dh_t‖ for
every step t of the cross-entropy loss at the last step, on 64 sequences,
relative to ‖dL/dh_T‖, at initialisation and after training; the plot shows
both (log scale).

Run:  pip install -e ".[plot]" && python examples/vanishing_gradients.py
      (--steps T, --epochs N, --out PATH; without matplotlib it prints the numbers)
"""
import argparse
import time

import numpy as np

from fastrnn import losses
from fastrnn.diagnostics import hidden_gradient_norms
from fastrnn.models import SequenceClassifier

CELLS = ("rnn", "gru", "lstm")


def temporal_order(n, steps, seed):
    """(n, steps) token ids and labels (n,) of the temporal-order task.

    Two marker tokens (0 or 1) sit at a random step in [0.1 T, 0.2 T) and at
    one in [0.5 T, 0.6 T); every other token is noise (2..5). The label is
    2 * first marker + second marker: what the model must still know at the
    end is ~40-90 steps old.
    """
    rng = np.random.default_rng(seed)
    x = rng.integers(2, 6, (n, steps))
    y = rng.integers(0, 4, n)
    rows = np.arange(n)
    x[rows, rng.integers(steps // 10, steps // 5, n)] = y // 2
    x[rows, rng.integers(steps // 2, 3 * steps // 5, n)] = y % 2
    return x, y


def gradient_norms(model, x, y):
    """‖dL/dh_t‖ / ‖dL/dh_T‖ for t = 1..T, L the cross-entropy of the last step's
    prediction; computed in float64 (in float32 the smallest norms underflow)."""
    config = dict(model.rnn._config(), dtype=np.float64)
    layer = type(model.rnn)(**config)
    layer.load_state_dict(model.rnn.state_dict())
    out, _ = layer(x)
    head = model.head.state_dict()
    logits = out[:, -1] @ head["weight"].T + head["bias"]
    _, dlogits = losses.softmax_cross_entropy(logits, y)
    dy = np.zeros_like(out)
    dy[:, -1] = dlogits @ head["weight"]              # dL/dh_T through the head
    norms = hidden_gradient_norms(layer, x, dy)
    return norms / norms[-1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--out", default="docs/vanishing_gradients.png")
    args = parser.parse_args(argv)

    x, y = temporal_order(4000, args.steps, 0)
    x_val, y_val = temporal_order(500, args.steps, 1)
    x_probe, y_probe = temporal_order(64, args.steps, 2)
    results = {}
    for cell in CELLS:
        model = SequenceClassifier(vocab_size=6, num_classes=4, cell=cell, hidden_size=32,
                                   seed=0)
        before = gradient_norms(model, x_probe, y_probe)
        start = time.perf_counter()
        model.fit(list(x), y, epochs=args.epochs, lr=1e-2, verbose=False, seed=0)
        seconds = time.perf_counter() - start
        after = gradient_norms(model, x_probe, y_probe)
        accuracy = model.evaluate(list(x_val), y_val)["accuracy"]
        results[cell] = before, after, accuracy
        print(f"{cell:5s} T={args.steps}: validation accuracy {accuracy:.3f} after "
              f"{args.epochs} epochs ({seconds:.1f} s); ‖dL/dh_1‖ / ‖dL/dh_T‖ = "
              f"{before[0]:.1e} at init, {after[0]:.1e} trained")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e \".[plot]\"); no plot written")
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    t = np.arange(1, args.steps + 1)
    for panel, (ax, title) in enumerate(zip(axes, ["at initialisation", "after training"])):
        for cell in CELLS:
            norms = results[cell][panel]
            label = cell.upper() + (f" (accuracy {results[cell][2]:.2f})" if panel else "")
            ax.semilogy(t, norms, label=label)
        ax.set_title(title)
        ax.set_xlabel("step t")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("‖dL/dh_t‖ / ‖dL/dh_T‖  (loss at the last step T)")
    fig.suptitle(f"How far back the gradient reaches: temporal order over {args.steps} steps")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
