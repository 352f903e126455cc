"""Vanishing gradients, shown with the adding problem: the gated cells learn
it, the vanilla RNN does not, and ‖dL/dh_t‖ says why.

Task (Hochreiter & Schmidhuber 1997; a benchmark in Le, Jaitly & Hinton 2015
and Arjovsky, Shah & Bengio 2016): T pairs (value u_t ~ U[0, 1], marker m_t),
exactly two markers, one in each half of the sequence; the target is the sum
of the two marked values. Predicting their mean, 1, gives the baseline MSE
Var(u + u') = 1/6 = 0.167.

Model, per cell (tanh RNN, GRU, LSTM): one recurrent layer of 64 units, its
final state h_T, Dense(64, 1); MSE; Adam (lr 1e-2), the gradient's norm
clipped at 1, each iteration a batch of 64 fresh sequences; test MSE on 1000
held-out sequences every 100 iterations. The LSTM's forget gates start with
bias 1 (Gers et al. 2000; Jozefowicz et al. 2015): it starts by keeping its
memory. For each cell, fastrnn.diagnostics.hidden_gradient_norms gives
‖dL/dh_t‖ at every step t for the loss at the end, on 64 sequences, at
initialisation and after training.

Run:  pip install -e ".[plot]" && python examples/vanishing_gradients.py
      (--steps T [T ...], --iterations N [N ...] (one per T), --out PATH;
      without matplotlib it prints the numbers only)
"""
import argparse
import time

import numpy as np

import fastrnn
from fastrnn import losses, optim
from fastrnn.diagnostics import hidden_gradient_norms
from fastrnn.linear import Dense
from fastrnn.sequential import FinalState, Sequential

CELLS = ("rnn", "gru", "lstm")
BASELINE = 1 / 6          # the MSE of always predicting the mean sum, 1
SOLVED = 0.01             # the test MSE that counts as solved


def adding_problem(n, steps, rng):
    """x (steps, n, 2) float32: (value, marker) per step; y (n, 1): the sum of
    the two marked values. One marker in [0, T/2), the other in [T/2, T)."""
    x = np.zeros((steps, n, 2), np.float32)
    x[:, :, 0] = rng.random((steps, n))
    rows = np.arange(n)
    first = rng.integers(0, steps // 2, n)
    second = rng.integers(steps // 2, steps, n)
    x[first, rows, 1] = 1.0
    x[second, rows, 1] = 1.0
    y = (x[first, rows, 0] + x[second, rows, 0])[:, None]
    return x, y


def make_model(cell, hidden=64, seed=0):
    """Sequential([FinalState(layer), Dense(hidden, 1)]): many-to-one regression."""
    layer = {"rnn": fastrnn.RNN, "gru": fastrnn.GRU, "lstm": fastrnn.LSTM}[cell](
        2, hidden, seed=seed)
    if cell == "lstm":
        # forget gates start at bias 1 (rows [i; f; g; o]: the second block)
        state = layer.state_dict()
        state["bias_ih_l0"][hidden:2 * hidden] = 1.0
        layer.load_state_dict(state)
    return Sequential([FinalState(layer), Dense(hidden, 1, seed=seed + 1)])


def train(model, steps, iterations, seed=0, batch=64, lr=1e-2, every=100):
    """Adam on fresh batches; returns [(iteration, test MSE)] every ``every``
    iterations (and at 0)."""
    rng = np.random.default_rng(seed)
    x_test, y_test = adding_problem(1000, steps, np.random.default_rng(seed + 1000))
    opt = optim.Adam(model, lr=lr)
    curve = [(0, losses.mse(model(x_test), y_test)[0])]
    for it in range(1, iterations + 1):
        x, y = adding_problem(batch, steps, rng)
        model.zero_grad()
        prediction, ctx = model.forward(x)
        _, grad = losses.mse(prediction, y)
        model.backward(ctx, grad)
        optim.clip_grad_norm(model, 1.0)
        opt.step()
        if it % every == 0 or it == iterations:
            curve.append((it, losses.mse(model(x_test), y_test)[0]))
    return curve


def gradient_norms(model, x, y):
    """‖dL/dh_t‖ for t = 1..T, L the MSE of the prediction from h_T; in float64
    (in float32 a vanilla RNN's smallest norms underflow)."""
    rnn = model.modules[0].module
    layer = type(rnn)(**dict(rnn._config(), dtype=np.float64))
    layer.load_state_dict(rnn.state_dict())
    head = model.modules[1].state_dict()
    out, _ = layer(x.astype(np.float64))
    prediction = out[-1] @ head["weight"].T + head["bias"]
    _, dprediction = losses.mse(prediction, y.astype(np.float64))
    dy = np.zeros_like(out)
    dy[-1] = dprediction @ head["weight"]              # dL/dh_T through the head
    return hidden_gradient_norms(layer, x.astype(np.float64), dy)


def first_solved(curve):
    """The first iteration whose test MSE is below SOLVED, or None."""
    return next((it for it, mse in curve if mse < SOLVED), None)


def run(steps, iterations, hidden=64, seed=0):
    """{cell: (curve, norms at init, norms trained, seconds)} at T = steps."""
    x_probe, y_probe = adding_problem(64, steps, np.random.default_rng(seed + 2000))
    results = {}
    for cell in CELLS:
        model = make_model(cell, hidden, seed)
        before = gradient_norms(model, x_probe, y_probe)
        start = time.perf_counter()
        curve = train(model, steps, iterations, seed)
        seconds = time.perf_counter() - start
        after = gradient_norms(model, x_probe, y_probe)
        results[cell] = curve, before, after, seconds
        solved = first_solved(curve)
        print(f"{cell:5s} T={steps}: test MSE {curve[-1][1]:.4f} after {iterations} iterations "
              f"({seconds:.0f} s; below {SOLVED} from iteration "
              f"{solved if solved is not None else '-'}); ‖dL/dh_1‖ / ‖dL/dh_T‖ = "
              f"{before[0] / before[-1]:.1e} at init, {after[0] / after[-1]:.1e} trained",
              flush=True)
    return results


def plot(all_results, out):
    """Per T: the learning curves, and ‖dL/dh_t‖ / ‖dL/dh_T‖ at init and trained."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e \".[plot]\"); no plot written")
        return
    fig, axes = plt.subplots(len(all_results), 2, figsize=(11, 3.8 * len(all_results)),
                             squeeze=False)
    colors = dict(zip(CELLS, ("tab:red", "tab:blue", "tab:green")))
    for row, (steps, results) in enumerate(all_results.items()):
        curves, norms = axes[row]
        for cell, (curve, before, after, _) in results.items():
            it, mse = zip(*curve)
            curves.semilogy(it, mse, color=colors[cell], label=cell.upper())
            t = np.arange(1, steps + 1)
            norms.semilogy(t, before / before[-1], color=colors[cell], linestyle=":",
                           label=f"{cell.upper()} at init")
            norms.semilogy(t, after / after[-1], color=colors[cell],
                           label=f"{cell.upper()} trained")
        curves.axhline(BASELINE, color="gray", linestyle="--", label="predict the mean (1/6)")
        curves.axhline(SOLVED, color="gray", linestyle=":", label=f"solved ({SOLVED})")
        curves.set_title(f"adding problem, T={steps}: test MSE")
        curves.set_xlabel("iteration (batches of 64)")
        norms.set_title(f"‖dL/dh_t‖ / ‖dL/dh_T‖, loss at the end (T={steps})")
        norms.set_xlabel("step t")
        for ax in (curves, norms):
            ax.grid(True, which="major", alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 200])
    parser.add_argument("--iterations", type=int, nargs="+", default=[1500, 3000])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/vanishing_gradients.png")
    args = parser.parse_args(argv)
    if len(args.iterations) != len(args.steps):
        parser.error("--iterations: one count per --steps value")
    all_results = {}
    for steps, iterations in zip(args.steps, args.iterations):
        all_results[steps] = run(steps, iterations, args.hidden, args.seed)
    plot(all_results, args.out)
    return all_results


if __name__ == "__main__":
    main()
