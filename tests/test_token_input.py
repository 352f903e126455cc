"""Token ids in place of one-hot rows: the same results, by gathering W_ih's columns."""
import numpy as np
import pytest

import fastrnn
from fastrnn import _engine
from conftest import CELL_FORMS, CELL_IDS

V = 7


def _one_hot(ids, dtype):
    return np.eye(V, dtype=dtype)[ids]


@pytest.mark.parametrize("copy_w_ih", [True, False], ids=["W_ih-copied", "W_ih-strided"])
@pytest.mark.parametrize("split_units", [False, True], ids=["batch-split", "unit-split"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode,cls,opts", CELL_FORMS, ids=CELL_IDS)
def test_tokens_equal_one_hot_rows(mode, cls, opts, dtype, split_units, copy_w_ih, monkeypatch):
    """Token ids read W_ih's columns from a transposed copy (many tokens) or
    from W_ih itself (few tokens); both equal the one-hot product."""
    monkeypatch.setattr(_engine, "_split_units", lambda b, d, *rest: split_units and d == 1)
    monkeypatch.setattr(_engine, "_TOKENS_PER_COPY", 10**6 if copy_w_ih else 0)
    rng = np.random.default_rng(0)
    for bidirectional in (False, True):
        layer = cls(V, 6, num_layers=2, bidirectional=bidirectional, dtype=dtype, seed=1,
                    **opts)
        ids = rng.integers(0, V, (9, 4))
        lengths = np.array([9, 3, 6, 1])
        tol = 1e-6 if dtype == np.float32 else 1e-13
        y_ids, s_ids = layer(ids, lengths=lengths)
        y_hot, s_hot = layer(_one_hot(ids, dtype), lengths=lengths)
        np.testing.assert_allclose(y_ids, y_hot, rtol=0, atol=tol)

        # training: the same gradients, and no gradient for the ids
        grads = []
        for x in (ids, _one_hot(ids, dtype)):
            layer.zero_grad()
            y, _, ctx = layer.forward(x, lengths=lengths)
            dx, _ = layer.backward(ctx, np.ones_like(y))
            grads.append({k: v.copy() for k, v in layer.grads.items()})
            if x is ids:
                assert dx is None
        for k in grads[0]:
            np.testing.assert_allclose(grads[0][k], grads[1][k], rtol=0,
                                       atol=tol * max(1, np.abs(grads[1][k]).max()), err_msg=k)


def test_token_layouts_and_compositions():
    rng = np.random.default_rng(1)
    ids = rng.integers(0, V, (5, 3))
    bf = fastrnn.GRU(V, 4, batch_first=True, dtype=np.float64, seed=2)
    np.testing.assert_allclose(bf(ids.T)[0], bf(_one_hot(ids.T, np.float64))[0], atol=1e-14)
    one, _ = bf(ids[:, 0])                          # unbatched (T,)
    np.testing.assert_allclose(one, bf(_one_hot(ids[:, 0], np.float64))[0], atol=1e-14)
    stack = fastrnn.Stacked([fastrnn.LSTM(V, 4, dtype=np.float64, seed=3),
                             fastrnn.RNN(4, 2, dtype=np.float64, seed=4)])
    np.testing.assert_allclose(stack(ids)[0], stack(_one_hot(ids, np.float64))[0], atol=1e-14)
    bi = fastrnn.Bidirectional(fastrnn.GRU(V, 3, dtype=np.float64, seed=5))
    np.testing.assert_allclose(bi(ids)[0], bi(_one_hot(ids, np.float64))[0], atol=1e-14)
    y, _, ctx = bi.forward(ids)
    dx, _ = bi.backward(ctx, np.ones_like(y))
    assert dx is None
    # ids outside [0, input_size) are refused
    with pytest.raises(ValueError, match=r"x must be in \[0, 7\)"):
        fastrnn.LSTM(V, 3)(np.array([[0], [7]]))
