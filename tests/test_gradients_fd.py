"""Backward against central finite differences in float64, for every cell and option."""
import numpy as np
import pytest

import fastrnn
from conftest import CELL_FORMS, CELL_IDS
from gradcheck import assert_grad_close, check_module_gradients, like_state, numeric_grad


def _state(rng, module, batch):
    """A random initial state in the module's own form."""
    _, state = module(np.zeros((1, batch, module.input_size)))
    return like_state(state, lambda a: rng.standard_normal(a.shape) * 0.5)


@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True)])
@pytest.mark.parametrize("mode,cls,opts", CELL_FORMS, ids=CELL_IDS)
def test_layer_gradients(mode, cls, opts, num_layers, bidirectional):
    rng = np.random.default_rng(1)
    layer = cls(3, 4, num_layers=num_layers, bidirectional=bidirectional, dtype=np.float64,
                seed=2, **opts)
    x = rng.standard_normal((5, 3, 3))
    check_module_gradients(layer, x)
    check_module_gradients(layer, x, hx=_state(rng, layer, 3), lengths=np.array([2, 5, 4]))


@pytest.mark.parametrize("mode,cls,opts", CELL_FORMS, ids=CELL_IDS)
def test_layer_gradients_batch_first_unbatched_no_bias(mode, cls, opts):
    rng = np.random.default_rng(3)
    layer = cls(2, 3, bias=False, batch_first=True, dtype=np.float64, seed=4, **opts)
    check_module_gradients(layer, rng.standard_normal((2, 4, 2)), lengths=np.array([4, 1]))
    check_module_gradients(layer, rng.standard_normal((4, 2)))


@pytest.mark.parametrize("mode,cls,opts", CELL_FORMS, ids=CELL_IDS)
def test_dropout_between_layers(mode, cls, opts):
    """The mask drawn in forward is the one backward uses."""
    rng = np.random.default_rng(5)
    layer = cls(3, 4, num_layers=3, dropout=0.4, dtype=np.float64, seed=6, **opts)

    def reseed():
        layer._dropout_rng = np.random.default_rng(7)

    check_module_gradients(layer, rng.standard_normal((4, 2, 3)), reseed=reseed)
    # dropout is applied in forward only, and it does change the output
    x = rng.standard_normal((4, 2, 3))
    y_call, _ = layer(x)
    y_train, _, _ = layer.forward(x)
    assert not np.allclose(y_call, y_train)


@pytest.mark.parametrize("mode,cls,opts", [CELL_FORMS[1], CELL_FORMS[3], CELL_FORMS[4]],
                         ids=["rnn-relu", "gru-before", "lstm"])
def test_long_sequence_gradients(mode, cls, opts):
    """Enough steps that the recurrent gradient path dominates."""
    rng = np.random.default_rng(8)
    layer = cls(2, 3, dtype=np.float64, seed=9, **opts)
    check_module_gradients(layer, rng.standard_normal((25, 2, 2)), lengths=np.array([25, 13]))


def test_stacked_gradients():
    rng = np.random.default_rng(10)
    stack = fastrnn.Stacked([fastrnn.LSTM(3, 4, bidirectional=True, dtype=np.float64, seed=1),
                             fastrnn.GRU(8, 3, reset_after=False, dtype=np.float64, seed=2),
                             fastrnn.RNN(3, 2, dtype=np.float64, seed=3)], dropout=0.3, seed=4)

    def reseed():
        stack._dropout_rng = np.random.default_rng(11)

    x = rng.standard_normal((4, 3, 3))
    check_module_gradients(stack, x, hx=_state(rng, stack, 3), lengths=np.array([4, 2, 3]),
                           reseed=reseed)


@pytest.mark.parametrize("merge", ["concat", "sum"])
def test_bidirectional_gradients(merge):
    rng = np.random.default_rng(12)
    inner = fastrnn.Stacked([fastrnn.GRU(3, 4, dtype=np.float64, seed=1),
                             fastrnn.LSTM(4, 2, dtype=np.float64, seed=2)])
    bi = fastrnn.Bidirectional(inner, merge=merge, seed=3)
    x = rng.standard_normal((4, 2, 3))
    check_module_gradients(bi, x, hx=_state(rng, bi, 2), lengths=np.array([3, 4]))


CELLS = [(fastrnn.RNNCell, {"nonlinearity": "tanh"}), (fastrnn.RNNCell, {"nonlinearity": "relu"}),
         (fastrnn.GRUCell, {"reset_after": True}), (fastrnn.GRUCell, {"reset_after": False}),
         (fastrnn.LSTMCell, {})]


@pytest.mark.parametrize("cls,opts", CELLS, ids=["rnn-tanh", "rnn-relu", "gru-after",
                                                 "gru-before", "lstm"])
def test_cell_gradients(cls, opts):
    rng = np.random.default_rng(13)
    cell = cls(3, 4, dtype=np.float64, seed=1, **opts)
    lstm = cls is fastrnn.LSTMCell
    x = rng.standard_normal((2, 3))
    hx = (rng.standard_normal((2, 4)), rng.standard_normal((2, 4))) if lstm else \
        rng.standard_normal((2, 4))
    out, ctx = cell.forward(x, hx)
    dh = (rng.standard_normal((2, 4)), rng.standard_normal((2, 4))) if lstm else \
        rng.standard_normal((2, 4))
    cell.zero_grad()
    dx, dhx = cell.backward(ctx, dh)

    def loss():
        o, _ = cell.forward(x, hx)
        return float(sum(np.sum(a * b) for a, b in zip(o, dh))) if lstm else float(np.sum(o * dh))

    assert_grad_close(dx, numeric_grad(loss, x), "dx")
    for i, (a, h) in enumerate(zip(dhx if lstm else (dhx,), hx if lstm else (hx,))):
        assert_grad_close(a, numeric_grad(loss, h), f"dhx[{i}]")
    for name, p in cell.named_parameters():
        assert_grad_close(cell.grads[name], numeric_grad(loss, p), name)
