import numpy as np
import pytest

import fastrnn

# (mode, class, options) for every cell form fastrnn has
CELL_FORMS = [
    ("rnn", fastrnn.RNN, {"nonlinearity": "tanh"}),
    ("rnn", fastrnn.RNN, {"nonlinearity": "relu"}),
    ("gru", fastrnn.GRU, {"reset_after": True}),
    ("gru", fastrnn.GRU, {"reset_after": False}),
    ("lstm", fastrnn.LSTM, {}),
]
CELL_IDS = ["rnn-tanh", "rnn-relu", "gru-after", "gru-before", "lstm"]

# agreement with a float64 computation, relative to the output magnitude
TOL = {np.float32: 2e-5, np.float64: 1e-10}


def assert_close(actual, expected, dtype, what=""):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    err = float(np.abs(actual - expected).max(initial=0.0))
    assert err <= TOL[dtype] * scale, f"{what}: max abs error {err:.3g} (scale {scale:.3g})"


def ref_options(mode, options):
    """The reference's keyword options for a cell form."""
    if mode == "rnn":
        return {"nonlinearity": options["nonlinearity"]}
    if mode == "gru":
        return {"reset_after": options["reset_after"]}
    return {}


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True)
def _restore_threads():
    yield
    fastrnn.set_num_threads(None)
