"""Every bad argument gets a ValueError/TypeError that names it, before any kernel runs."""
import numpy as np
import pytest

import fastrnn

LAYERS = [fastrnn.RNN, fastrnn.GRU, fastrnn.LSTM]


# -- constructors -------------------------------------------------------------
@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("kwargs,exc,name", [
    (dict(input_size=0), ValueError, "input_size"),
    (dict(input_size=2.5), TypeError, "input_size"),
    (dict(input_size=True), TypeError, "input_size"),
    (dict(hidden_size=-3), ValueError, "hidden_size"),
    (dict(hidden_size="8"), TypeError, "hidden_size"),
    (dict(num_layers=0), ValueError, "num_layers"),
    (dict(bias="yes"), TypeError, "bias"),
    (dict(batch_first=1), TypeError, "batch_first"),
    (dict(bidirectional=None), TypeError, "bidirectional"),
    (dict(dropout=1.0), ValueError, "dropout"),
    (dict(dropout=-0.1), ValueError, "dropout"),
    (dict(dropout="0.5"), TypeError, "dropout"),
    (dict(dtype=np.float16), TypeError, "dtype"),
    (dict(dtype=np.int32), TypeError, "dtype"),
    (dict(dtype="not a dtype"), TypeError, "dtype"),
    (dict(seed="abc"), TypeError, "seed"),
    (dict(seed=1.5), TypeError, "seed"),
])
def test_constructor_arguments(cls, kwargs, exc, name):
    args = dict(input_size=3, hidden_size=4)
    args.update(kwargs)
    with pytest.raises(exc, match=name):
        cls(**args)


def test_cell_specific_constructor_arguments():
    with pytest.raises(ValueError, match="nonlinearity"):
        fastrnn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="nonlinearity"):
        fastrnn.RNNCell(3, 4, nonlinearity="gelu")
    with pytest.raises(TypeError, match="reset_after"):
        fastrnn.GRU(3, 4, reset_after="no")
    with pytest.raises(ValueError, match="hidden_size"):
        fastrnn.LSTMCell(3, 0)


# -- x --------------------------------------------------------------------------
@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("x,exc,match", [
    (np.zeros(3), ValueError, r"x must be 3-D .* got shape \(3,\)"),
    (np.zeros((2, 2, 2, 3)), ValueError, r"x must be 3-D"),
    (np.zeros((4, 2, 5)), ValueError, r"x must have input_size=3 .* got shape \(4, 2, 5\)"),
    (np.zeros((4, 5)), ValueError, r"input_size=3"),
    (np.zeros((0, 2, 3)), ValueError, r"at least one step"),
    (np.zeros((4, 0, 3)), ValueError, r"at least one step and one sequence"),
    # integer x is token ids (issue 5): (T, B) or (T,), each in [0, input_size)
    (np.zeros((4, 2, 3), dtype=np.int64), ValueError, r"token ids x must be 2-D \(T, B\)"),
    (np.full((4, 2), 3), ValueError, r"x must be in \[0, 3\), got values from 3 to 3"),
    (np.zeros((0, 2), dtype=int), ValueError, r"at least one step"),
    (np.zeros((4, 2, 3), dtype=complex), TypeError, r"x must hold floating-point"),
    (np.zeros((4, 2, 3), dtype=bool), TypeError, r"x must hold floating-point"),
    ("hello", TypeError, r"x must hold floating-point"),
    ([[1.0, 2.0], [3.0]], TypeError, r"x must be a floating-point array"),
    (None, TypeError, r"x must hold floating-point"),
])
def test_bad_x(cls, x, exc, match):
    with pytest.raises(exc, match=match):
        cls(3, 4)(x)


def test_too_many_rows_for_blas():
    huge = np.lib.stride_tricks.as_strided(np.zeros(3), shape=(2**16, 2**15 + 1, 3),
                                           strides=(0, 0, 8), writeable=False)
    with pytest.raises(ValueError, match="at most 2147483647 steps x sequences"):
        fastrnn.GRU(3, 4, dtype=np.float64)(huge)


def test_batch_first_names_its_layout():
    with pytest.raises(ValueError, match=r"\(B, T, input_size\)"):
        fastrnn.GRU(3, 4, batch_first=True)(np.zeros(3))


# -- states ---------------------------------------------------------------------
@pytest.mark.parametrize("cls", [fastrnn.RNN, fastrnn.GRU])
@pytest.mark.parametrize("shape", [(2, 2, 4), (4, 3, 4), (4, 2, 5), (4, 4), (2, 4, 2, 4)])
def test_bad_hx_shape(cls, shape):
    layer = cls(3, 4, num_layers=2, bidirectional=True)
    with pytest.raises(ValueError, match=r"hx must have shape \(4, 2, 4\), got " +
                       str(shape).replace("(", r"\(").replace(")", r"\)")):
        layer(np.zeros((5, 2, 3)), np.zeros(shape))


def test_bad_hx_unbatched_and_dtype():
    layer = fastrnn.GRU(3, 4, num_layers=2)
    with pytest.raises(ValueError, match=r"hx must have shape \(2, 4\)"):
        layer(np.zeros((5, 3)), np.zeros((2, 1, 4)))
    with pytest.raises(TypeError, match="hx must hold floating-point"):
        layer(np.zeros((5, 1, 3)), np.zeros((2, 1, 4), dtype=int))


def test_bad_lstm_state():
    lstm = fastrnn.LSTM(3, 4)
    x = np.zeros((5, 2, 3))
    good = np.zeros((1, 2, 4))
    with pytest.raises(TypeError, match=r"hx must be a pair \(h0, c0\)"):
        lstm(x, good)
    with pytest.raises(TypeError, match=r"hx must be a pair"):
        lstm(x, (good,))
    with pytest.raises(ValueError, match=r"h0 must have shape \(1, 2, 4\)"):
        lstm(x, (np.zeros((1, 3, 4)), good))
    with pytest.raises(ValueError, match=r"c0 must have shape \(1, 2, 4\)"):
        lstm(x, (good, np.zeros((1, 2, 5))))


# -- lengths --------------------------------------------------------------------
@pytest.mark.parametrize("lengths,exc,match", [
    (np.array([2.0, 3.0]), TypeError, r"lengths must hold integers, got dtype float64"),
    (np.array([True, True]), TypeError, r"lengths must hold integers"),
    (["a", "b"], TypeError, r"lengths must hold integers"),
    (np.array([[2, 3]]), ValueError, r"lengths must have shape \(2,\)"),
    (np.array([2, 3, 4]), ValueError, r"lengths must have shape \(2,\)"),
    (np.array([0, 3]), ValueError, r"lengths must be in \[1, 5\].* from 0 to 3"),
    (np.array([-1, 3]), ValueError, r"lengths must be in \[1, 5\]"),
    (np.array([2, 6]), ValueError, r"lengths must be in \[1, 5\].* from 2 to 6"),
    (np.array([2, 2**40]), ValueError, r"lengths must be in \[1, 5\]"),
    (np.array([2, 3], dtype=np.uint8), None, None),
    ([5, 1], None, None),
])
@pytest.mark.parametrize("cls", LAYERS)
def test_lengths(cls, lengths, exc, match):
    layer = cls(3, 4)
    x = np.zeros((5, 2, 3))
    if exc is None:
        layer(x, lengths=lengths)
    else:
        with pytest.raises(exc, match=match):
            layer(x, lengths=lengths)


def test_lengths_with_unbatched_input():
    with pytest.raises(ValueError, match="lengths is only for batched input"):
        fastrnn.RNN(3, 4)(np.zeros((5, 3)), lengths=[5])


# -- load_state_dict ------------------------------------------------------------
def _assert_unchanged(layer, before):
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("cls", LAYERS)
def test_load_state_dict_checks_everything_first(cls):
    layer = cls(3, 4, num_layers=2, bidirectional=True, seed=0)
    before = layer.state_dict()
    good = {k: np.ones_like(v) for k, v in before.items()}

    missing = dict(good)
    del missing["bias_hh_l1_reverse"]
    with pytest.raises(ValueError, match=r"missing keys \['bias_hh_l1_reverse'\]"):
        layer.load_state_dict(missing)
    _assert_unchanged(layer, before)

    extra = dict(good, weight_ih_l2=np.ones((4, 8)))
    with pytest.raises(ValueError, match=r"unexpected keys \['weight_ih_l2'\]"):
        layer.load_state_dict(extra)
    _assert_unchanged(layer, before)

    wrong = dict(good)
    wrong["weight_hh_l1"] = np.ones((3, 3))       # the last key checked, after others passed
    with pytest.raises(ValueError, match=r"state_dict\['weight_hh_l1'\] must have shape"):
        layer.load_state_dict(wrong)
    _assert_unchanged(layer, before)

    bad_type = dict(good, bias_ih_l0=np.array(["a"] * before["bias_ih_l0"].size))
    with pytest.raises(TypeError, match=r"state_dict\['bias_ih_l0'\] must hold floating"):
        layer.load_state_dict(bad_type)
    _assert_unchanged(layer, before)

    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        layer.load_state_dict([("weight_ih_l0", 1)])

    layer.load_state_dict(good)
    assert all(np.all(v == 1) for v in layer.state_dict().values())
    # the loaded arrays are copied, not kept
    good["weight_ih_l0"][...] = 5
    assert np.all(layer.state_dict()["weight_ih_l0"] == 1)


def test_state_dict_is_a_copy():
    layer = fastrnn.GRU(3, 4, seed=0)
    sd = layer.state_dict()
    sd["weight_ih_l0"][...] = 0
    assert np.any(layer.state_dict()["weight_ih_l0"] != 0)
    # parameters() are the live arrays
    layer.parameters()[0][...] = 0
    assert np.all(layer.state_dict()["weight_ih_l0"] == 0)


# -- cells ----------------------------------------------------------------------
@pytest.mark.parametrize("cls", [fastrnn.RNNCell, fastrnn.GRUCell, fastrnn.LSTMCell])
def test_cell_checks(cls):
    cell = cls(3, 4)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 3\) or \(3,\), got \(2, 5\)"):
        cell(np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"x must have shape"):
        cell(np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match=r"at least one row"):
        cell(np.zeros((0, 3)))
    with pytest.raises(TypeError, match=r"x must hold floating-point"):
        cell(np.zeros((2, 3), dtype=int))
    h = np.zeros((2, 4))
    if cls is fastrnn.LSTMCell:
        with pytest.raises(TypeError, match=r"hx must be a pair \(h, c\)"):
            cell(np.zeros((2, 3)), h)
        with pytest.raises(ValueError, match=r"c must have shape \(2, 4\)"):
            cell(np.zeros((2, 3)), (h, np.zeros((2, 5))))
    else:
        with pytest.raises(ValueError, match=r"hx must have shape \(2, 4\), got \(3, 4\)"):
            cell(np.zeros((2, 3)), np.zeros((3, 4)))
        with pytest.raises(ValueError, match=r"hx must have shape \(4,\)"):
            cell(np.zeros(3), h)
    with pytest.raises(ValueError, match="missing keys"):
        cell.load_state_dict({})


# -- composition ----------------------------------------------------------------
def test_stacked_checks():
    with pytest.raises(TypeError, match="layers must be a non-empty list"):
        fastrnn.Stacked([])
    with pytest.raises(TypeError, match=r"layers\[1\] must be a fastrnn sequence layer"):
        fastrnn.Stacked([fastrnn.RNN(3, 4), "lstm"])
    with pytest.raises(ValueError, match=r"layers\[1\].input_size must equal .* \(8\), got 4"):
        fastrnn.Stacked([fastrnn.RNN(3, 4, bidirectional=True), fastrnn.GRU(4, 4)])
    with pytest.raises(ValueError, match=r"layers\[1\].dtype"):
        fastrnn.Stacked([fastrnn.RNN(3, 4), fastrnn.GRU(4, 4, dtype=np.float64)])
    with pytest.raises(ValueError, match=r"layers\[1\].batch_first"):
        fastrnn.Stacked([fastrnn.RNN(3, 4), fastrnn.GRU(4, 4, batch_first=True)])
    with pytest.raises(ValueError, match="dropout"):
        fastrnn.Stacked([fastrnn.RNN(3, 4)], dropout=2)
    stack = fastrnn.Stacked([fastrnn.RNN(3, 4), fastrnn.LSTM(4, 2)])
    x = np.zeros((5, 2, 3))
    with pytest.raises(TypeError, match=r"hx must be a list with one state per inner layer \(2\)"):
        stack(x, [None])
    with pytest.raises(TypeError, match=r"hx must be a pair \(h0, c0\)"):
        stack(x, [None, np.zeros((1, 2, 2))])


def test_bidirectional_checks():
    with pytest.raises(ValueError, match="layer must run forward only"):
        fastrnn.Bidirectional(fastrnn.GRU(3, 4, bidirectional=True))
    with pytest.raises(ValueError, match="layer must run forward only"):
        fastrnn.Bidirectional(fastrnn.Stacked([fastrnn.Bidirectional(fastrnn.GRU(3, 4))]))
    with pytest.raises(ValueError, match="merge must be one of 'concat', 'sum'"):
        fastrnn.Bidirectional(fastrnn.GRU(3, 4), merge="mean")
    with pytest.raises(TypeError, match="layer must be a fastrnn sequence layer"):
        fastrnn.Bidirectional(fastrnn.GRUCell(3, 4))
    bi = fastrnn.Bidirectional(fastrnn.GRU(3, 4))
    with pytest.raises(TypeError, match=r"hx must be a pair \(forward state, reverse state\)"):
        bi(np.zeros((5, 2, 3)), np.zeros((1, 2, 4)))


def test_thread_count_checks():
    from fastrnn._threads import max_threads
    for n in (0, -1, max_threads() + 1, 1000, 2**31 - 1, 2**70):
        with pytest.raises(ValueError, match=f"n must be between 1 and {max_threads()}"):
            fastrnn.set_num_threads(n)
    fastrnn.set_num_threads(max_threads())
    assert fastrnn.get_num_threads() in (1, max_threads())
    with pytest.raises(TypeError, match="n must be a positive integer"):
        fastrnn.set_num_threads(1.5)
    with pytest.raises(TypeError, match="n must be a positive integer"):
        fastrnn.set_num_threads(True)
    fastrnn.set_num_threads(3)
    assert fastrnn.get_num_threads() in (1, 3)    # 1 when built without OpenMP
