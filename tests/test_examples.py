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
    example = load_example("vanishing_gradients")
    out = tmp_path / "plot.png"
    example.main(["--steps", "12", "--epochs", "1", "--out", str(out)])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["rnn", "gru", "lstm"]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no plot written" in lines[3]
    else:
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gradient_norms_of_the_example_are_relative_and_decay():
    example = load_example("vanishing_gradients")
    x, y = example.temporal_order(16, 30, 0)
    model = SequenceClassifier(vocab_size=6, num_classes=4, cell="rnn", hidden_size=8, seed=0)
    norms = example.gradient_norms(model, x, y)
    assert norms.shape == (30,) and norms[-1] == 1
    assert norms[0] < 1e-3                         # a vanilla RNN at init forgets fast


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


def test_temporal_order_task_is_what_it_says():
    example = load_example("vanishing_gradients")
    x, y = example.temporal_order(200, 50, 1)
    for row, label in zip(x, y):
        markers = np.flatnonzero(row < 2)
        assert len(markers) == 2
        assert 5 <= markers[0] < 10 and 25 <= markers[1] < 30
        assert 2 * row[markers[0]] + row[markers[1]] == label
    assert set(y) == {0, 1, 2, 3}
