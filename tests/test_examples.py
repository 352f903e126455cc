"""The examples run (small sizes) and say what they should."""
import importlib.util
import pathlib

import numpy as np

from fastrnn.models import SequenceClassifier

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vanishing_gradients_example(tmp_path, capsys):
    """The adding-problem example end to end at a small size: a line per cell
    and T, and the figure (with matplotlib)."""
    example = load_example("vanishing_gradients")
    out = tmp_path / "plot.png"
    results = example.main(["--steps", "12", "16", "--iterations", "20", "20", "--hidden",
                            "8", "--out", str(out)])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines[:6]] == [
        [cell, f"T={t}:"] for t in (12, 16) for cell in ("rnn", "gru", "lstm")]
    assert set(results) == {12, 16}
    for steps, per_cell in results.items():
        for cell, (curve, before, after, _) in per_cell.items():
            assert curve[0][0] == 0 and curve[-1][0] == 20
            assert before.shape == after.shape == (steps,)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no plot written" in lines[6]
    else:
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_adding_problem_is_what_it_says():
    """Two markers, one in each half; the target is the sum of the marked
    values; predicting the mean (1) scores about 1/6."""
    example = load_example("vanishing_gradients")
    x, y = example.adding_problem(4000, 30, np.random.default_rng(0))
    assert x.shape == (30, 4000, 2) and y.shape == (4000, 1) and x.dtype == np.float32
    markers = x[:, :, 1]
    assert set(np.unique(markers)) == {0.0, 1.0} and np.all(markers.sum(axis=0) == 2)
    first, second = (np.argmax(markers[:15], axis=0),
                     15 + np.argmax(markers[15:], axis=0))
    rows = np.arange(4000)
    assert np.all(markers[:15].sum(axis=0) == 1)
    np.testing.assert_allclose(y[:, 0], x[first, rows, 0] + x[second, rows, 0], rtol=1e-6)
    assert abs(np.mean((y - 1.0) ** 2) - example.BASELINE) < 0.01


def test_gated_cells_learn_the_short_adding_problem_and_gradients_decay():
    """The example's training at T=20: a GRU gets well under the baseline in
    400 iterations; a vanilla RNN's ‖dL/dh_1‖ / ‖dL/dh_T‖ at init is small
    (the norm decays step by step back)."""
    example = load_example("vanishing_gradients")
    gru = example.make_model("gru", hidden=16)
    curve = example.train(gru, 20, 400, every=400)
    assert curve[0][1] > 0.1 and curve[-1][1] < 0.05
    rnn = example.make_model("rnn", hidden=16)
    x, y = example.adding_problem(32, 40, np.random.default_rng(1))
    norms = example.gradient_norms(rnn, x, y)
    assert norms.shape == (40,) and norms[0] / norms[-1] < 1e-3


def test_lstm_of_the_example_starts_its_forget_gates_at_one():
    example = load_example("vanishing_gradients")
    w = example.make_model("lstm", hidden=4).modules[0].module.state_dict()
    np.testing.assert_array_equal(w["bias_ih_l0"][4:8], 1)


def test_quickstart_runs(capsys):
    load_example("quickstart").main()
    assert "reloaded" in capsys.readouterr().out.lower()


def test_models_start_lstm_forget_gates_at_one():
    model = SequenceClassifier(vocab_size=3, cell="lstm", hidden_size=4, num_layers=2,
                               bidirectional=True, seed=0)
    for name, arr in model.named_parameters():
        if "bias_ih" in name:
            np.testing.assert_array_equal(arr[4:8], 1, err_msg=name)
        elif "bias_hh" in name:
            np.testing.assert_array_equal(arr[4:8], 0, err_msg=name)
    plain = SequenceClassifier(vocab_size=3, cell="gru", hidden_size=4, seed=0)
    assert not np.any(plain.state_dict()["rnn.bias_ih_l0"] == 1)


def test_adding_problem_result_at_t100():
    """The example's result at T=100, its full budget (about 40 s on 2 cores):
    the GRU and the LSTM reach test MSE < 0.01, the tanh RNN stays near the
    0.167 of predicting the mean."""
    example = load_example("vanishing_gradients")
    final = {}
    for cell in example.CELLS:
        curve = example.train(example.make_model(cell), 100, 1500)
        final[cell] = curve[-1][1]
    assert final["gru"] < example.SOLVED and final["lstm"] < example.SOLVED, final
    assert final["rnn"] > 0.1, final
