"""The guide's examples (docs/guide.md) run and show what the guide says,
and the course's own small cases hold."""
import importlib.util
import pathlib

import numpy as np

GUIDE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "guide"


def load(name):
    spec = importlib.util.spec_from_file_location(f"guide_{name}", GUIDE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_guide_example_is_in_the_guide():
    text = (GUIDE.parent.parent / "docs" / "guide.md").read_text()
    for path in GUIDE.glob("*.py"):
        assert f"examples/guide/{path.name}" in text, path.name


def test_one_hot_aacg_over_atcg(capsys):
    """"AACG" over "ATCG" is e_A, e_A, e_C, e_G; token ids give the one-hot
    input's outputs."""
    out = load("one_hot").main()
    np.testing.assert_array_equal(out["one_hot"], [[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0],
                                                   [0, 0, 0, 1]])
    assert out["ids"].tolist() == [0, 0, 2, 3]
    assert out["diff"] < 1e-6
    assert "A -> [1, 0, 0, 0]" in capsys.readouterr().out


def test_vanilla_rnn_with_an_output_layer_is_the_lecture_s():
    """Sequential([RNN, Dense(softmax)]) is a_t = tanh(W_ax x_t + W_aa a_{t-1}
    + b_a), y^_t = softmax(W_ya a_t + b_y) written out in numpy."""
    out = load("vanilla_rnn").main()
    assert out["diff"] < 1e-6
    np.testing.assert_allclose(out["y"].sum(axis=1), 1, rtol=1e-6)


def test_taught_gru_equals_reset_before_gru():
    """GRU(reset_after=False) is the lecture's GRU with the update gate's
    parameters the negated PyTorch z rows."""
    module = load("gru")
    out = module.main()
    assert out["diff"] < 1e-6
    # the sign convention matters: PyTorch's z rows taken as they are give
    # another function
    import fastrnn
    gru = fastrnn.GRU(3, 6, reset_after=False, seed=0)
    params = module.lecture_parameters(gru)
    wrong = dict(params, W_zx=-params["W_zx"], W_zh=-params["W_zh"], b_z=-params["b_z"])
    x = np.random.default_rng(0).standard_normal((15, 3))
    assert np.abs(module.lecture_gru(x, **wrong) - gru(x.astype(np.float32))[0]).max() > 1e-2


def test_lstm_is_the_lecture_s():
    assert load("lstm").main()["diff"] < 1e-6


def test_deep_rnn_is_a_stack():
    out = load("deep").main()
    assert out["diff"] < 1e-6 and out["h_n"].shape == (3, 2, 8)


def test_types_of_rnn(capsys):
    """Each type trains and predicts (a few epochs at a small size): the
    scores are what their names say, above chance for the easy ones."""
    out = load("types").main(n=300, epochs=4)
    for key in ("many-to-one accuracy", "many-to-many accuracy", "encoder-decoder exact"):
        assert 0 <= out[key] <= 1, key
    assert out["many-to-many accuracy"] > 0.7        # C/G per symbol: easy
    assert isinstance(out["one-to-many"], str) and len(out["one-to-many"]) >= 12
    printed = capsys.readouterr().out
    for name in ("many-to-one", "many-to-many", "one-to-many", "encoder-decoder"):
        assert name in printed


def test_bidirectional_beats_unidirectional_when_the_future_matters():
    """Tagging each symbol with the next one: a unidirectional tagger stays
    near chance, a bidirectional one reads the answer from its reverse
    direction."""
    accuracy = load("bidirectional").main()
    assert accuracy["unidirectional"] < 0.45
    assert accuracy["bidirectional"] > 0.9
