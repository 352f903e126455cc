"""Sequential and FinalState: outputs, BPTT gradients by finite differences,
files and copies (no other engine needed)."""
import copy

import numpy as np
import pytest

import fastrnn
from gradcheck import assert_grad_close, numeric_grad


def _final_modules(dtype=np.float64):
    return [
        fastrnn.LSTM(3, 4, num_layers=2, dtype=dtype, seed=1),
        fastrnn.GRU(3, 4, bidirectional=True, batch_first=True, dtype=dtype, seed=2),
        fastrnn.Stacked([fastrnn.RNN(3, 4, dtype=dtype, seed=3),
                         fastrnn.Bidirectional(fastrnn.LSTM(4, 2, dtype=dtype, seed=4),
                                               seed=5)]),
        fastrnn.Bidirectional(fastrnn.GRU(3, 3, num_layers=2, dtype=dtype, seed=6),
                              merge="sum", seed=7),
    ]


@pytest.mark.parametrize("index,directions", [(0, 1), (1, 2), (2, 2)])
def test_final_state_is_the_output_at_each_last_step(index, directions):
    """For a forward direction the final state is y at t = lengths - 1; for
    a reverse one, y at t = 0 (it read the sequence back to its start)."""
    module = _final_modules()[index]
    bf = module.batch_first
    rng = np.random.default_rng(index)
    x = rng.standard_normal((3, 6, 3) if bf else (6, 3, 3))
    lengths = np.array([6, 2, 4])
    y, _ = module(x, lengths=lengths)
    y = y.transpose(1, 0, 2) if bf else y
    h = fastrnn.FinalState(module)(x, lengths=lengths)
    assert h.shape == (3, y.shape[-1])
    half = y.shape[-1] // directions
    np.testing.assert_allclose(h[:, :half], y[lengths - 1, np.arange(3), :half], atol=1e-14)
    if directions == 2:
        np.testing.assert_allclose(h[:, half:], y[0, :, half:], atol=1e-14)


@pytest.mark.parametrize("index", range(4))
def test_final_state_gradients(index):
    module = _final_modules()[index]
    final = fastrnn.FinalState(module)
    rng = np.random.default_rng(10 + index)
    x = rng.standard_normal((3, 5, 3) if module.batch_first else (5, 3, 3))
    lengths = np.array([5, 1, 3])
    h, ctx = final.forward(x, lengths=lengths)
    np.testing.assert_array_equal(h, final(x, lengths=lengths))
    dh = rng.standard_normal(h.shape)
    final.zero_grad()
    dx = final.backward(ctx, dh)
    loss = lambda: float(np.sum(final(x, lengths=lengths) * dh))  # noqa: E731
    assert_grad_close(dx, numeric_grad(loss, x), "dx")
    for name, p in list(final.named_parameters())[:4]:
        assert_grad_close(final.grads[name], numeric_grad(loss, p), name)


def test_sequential_gradients_with_tokens_and_final_state():
    seq = fastrnn.Sequential([
        fastrnn.Embedding(7, 3, dtype=np.float64, seed=1),
        fastrnn.GRU(3, 4, batch_first=True, dtype=np.float64, seed=2),
        fastrnn.Dense(4, 4, activation="tanh", dtype=np.float64, seed=3),
        fastrnn.FinalState(fastrnn.LSTM(4, 3, batch_first=True, bidirectional=True,
                                        dtype=np.float64, seed=4)),
        fastrnn.Dense(6, 2, activation="softmax", dtype=np.float64, seed=5)])
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 7, (2, 5))
    lengths = np.array([5, 3])
    y, ctx = seq.forward(ids, lengths=lengths)
    assert y.shape == (2, 2)
    dy = rng.standard_normal(y.shape)
    seq.zero_grad()
    assert seq.backward(ctx, dy) is None                     # token ids: no dx
    loss = lambda: float(np.sum(seq(ids, lengths=lengths) * dy))  # noqa: E731
    for name, p in seq.named_parameters():
        assert_grad_close(seq.grads[name], numeric_grad(loss, p), name)
    with pytest.raises(ValueError, match="dy must have shape"):
        seq.backward(seq.forward(ids)[1], np.zeros((3, 2)))


def test_sequence_after_final_state_refused():
    with pytest.raises(ValueError, match="FinalState before it"):
        fastrnn.Sequential([fastrnn.FinalState(fastrnn.LSTM(3, 4)), fastrnn.GRU(4, 2)])
    with pytest.raises(TypeError, match="sequence module"):
        fastrnn.FinalState(fastrnn.Dense(3, 3))


def test_sequential_save_load_copy(tmp_path):
    seq = fastrnn.Sequential([fastrnn.Embedding(7, 3, seed=1), fastrnn.LSTM(3, 4, seed=2),
                              fastrnn.Dense(4, 2, activation="sigmoid", seed=3),
                              fastrnn.FinalState(fastrnn.GRU(2, 3, bidirectional=True, seed=4))])
    ids = np.random.default_rng(0).integers(0, 7, (5, 2))
    expected = seq(ids, lengths=np.array([5, 2]))
    for other in (fastrnn.load(seq.save(tmp_path / "seq.npz")), copy.deepcopy(seq)):
        assert isinstance(other, fastrnn.Sequential) and repr(other) == repr(seq)
        np.testing.assert_array_equal(other(ids, lengths=np.array([5, 2])), expected)
    with pytest.raises(ValueError, match="can only come first"):
        fastrnn.Sequential([fastrnn.Dense(3, 3), fastrnn.Embedding(3, 3)])
    with pytest.raises(TypeError, match=r"modules\[1\]"):
        fastrnn.Sequential([fastrnn.Dense(3, 3), fastrnn.LSTMCell(3, 3)])
    with pytest.raises(ValueError, match="dtype"):
        fastrnn.Sequential([fastrnn.Dense(3, 3), fastrnn.Dense(3, 3, dtype=np.float64)])
