"""hidden_gradient_norms against BPTT written out from the equations."""
import numpy as np
import pytest

import fastrnn
from fastrnn.diagnostics import hidden_gradient_norms


def test_rnn_norms_match_the_equations():
    """For a_t = tanh(W_ax x_t + W_aa a_{t-1} + b):
    dL/da_t = dy_t + W_aaᵀ (f'_{t+1} ⊙ dL/da_{t+1})."""
    rng = np.random.default_rng(0)
    layer = fastrnn.RNN(3, 5, dtype=np.float64, seed=1)
    x = rng.standard_normal((8, 2, 3))
    y, _ = layer(x)
    dy = np.zeros_like(y)
    dy[-1] = rng.standard_normal((2, 5))
    dy[4] = rng.standard_normal((2, 5))
    w_aa = layer.state_dict()["weight_hh_l0"]
    expected = np.empty(8)
    g = dy[-1]
    expected[-1] = np.linalg.norm(g)
    for t in range(6, -1, -1):
        g = dy[t] + (g * (1 - y[t + 1] ** 2)) @ w_aa
        expected[t] = np.linalg.norm(g)
    grads_before = {k: v.copy() for k, v in layer.grads.items()}
    np.testing.assert_allclose(hidden_gradient_norms(layer, x, dy), expected, rtol=1e-10)
    for k, v in layer.grads.items():
        np.testing.assert_array_equal(v, grads_before[k])


@pytest.mark.parametrize("cls", [fastrnn.GRU, fastrnn.LSTM])
def test_gated_cells_and_layout(cls):
    rng = np.random.default_rng(1)
    layer = cls(2, 4, num_layers=2, batch_first=True, dtype=np.float64, seed=2)
    x = rng.standard_normal((3, 6, 2))
    y, _ = layer(x)
    dy = np.zeros_like(y)
    dy[:, -1] = 1.0
    norms = hidden_gradient_norms(layer, x, dy)
    assert norms.shape == (6,) and np.all(np.isfinite(norms)) and np.all(norms > 0)
    assert norms[-1] == pytest.approx(np.sqrt(3 * 4))


def test_vanilla_rnn_gradient_vanishes_with_small_weights():
    layer = fastrnn.RNN(1, 8, dtype=np.float64, seed=3)
    layer.parameters()[1][...] *= 0.3          # weight_hh: contractive recurrence
    x = np.random.default_rng(2).standard_normal((30, 1))
    y, _ = layer(x)
    dy = np.zeros_like(y)
    dy[-1] = 1.0
    norms = hidden_gradient_norms(layer, x, dy)
    assert np.all(np.diff(norms) > 0)           # smaller the further from the loss
    assert norms[0] < 1e-6 * norms[-1]


def test_checks():
    with pytest.raises(ValueError, match="unidirectional"):
        hidden_gradient_norms(fastrnn.GRU(2, 3, bidirectional=True), np.zeros((4, 2)),
                              np.zeros((4, 6)))
    with pytest.raises(TypeError, match="layer must be a fastrnn RNN, GRU or LSTM"):
        hidden_gradient_norms(fastrnn.Dense(2, 3), np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"dy must have shape \(4, 3\)"):
        hidden_gradient_norms(fastrnn.GRU(2, 3), np.zeros((4, 2)), np.zeros((4, 2)))
