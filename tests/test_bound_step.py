"""A layer's one-step call bound once per input signature (fastrnn._engine.bound_step).

``layer(x, hx)`` with one step (T = 1: a streaming loop, a generation)
runs every layer's step on the calling thread, as a cell does
(fastrnn._engine.stream_step). For float input of the layer's dtype or
intp token ids, C-contiguous, with no state or the layer's own state
arrays and no lengths, it is worked out once per (input shape, team size,
kernel build) and its layers' steps run in one kernel call
(_kernels.stream_layers). These tests hold it to the general path bit for
bit, to a whole-sequence call for a loop of steps, show that anything else
takes the general path (which converts or names what is wrong), and that
weights changed in place, another team size, copies and threads are seen.
"""
import copy
import pickle

import numpy as np
import pytest

import fastrnn
from fastrnn import _engine
from concurrent_calls import in_threads
from isolated import run_isolated

CASES = [("LSTM", {}), ("GRU", {}), ("GRU", {"reset_after": False}),
         ("RNN", {"nonlinearity": "relu"}), ("LSTM", {"bias": False}),
         ("LSTM", {"num_layers": 2}), ("GRU", {"num_layers": 3}),
         ("LSTM", {"bidirectional": True}), ("GRU", {"bidirectional": True, "num_layers": 2}),
         ("RNN", {"bidirectional": True, "num_layers": 3}),
         ("LSTM", {"batch_first": True, "num_layers": 2}),
         ("GRU", {"batch_first": True, "bidirectional": True, "num_layers": 2}),
         ("LSTM", {"dtype": np.float64, "num_layers": 2}),
         ("GRU", {"dtype": np.float64, "bidirectional": True})]


def _general(layer, x, hx=None):
    """The call on the general path: (y, state as the caller sees it)."""
    return layer._call(x, hx, None, False)


def _states(out):
    return out[1] if isinstance(out[1], tuple) else (out[1],)


def _assert_same(got, want):
    np.testing.assert_array_equal(got[0], want[0])
    assert len(_states(got)) == len(_states(want))
    for g, w in zip(_states(got), _states(want)):
        np.testing.assert_array_equal(g, w)


def _step_keys(layer):
    """The layer's bound one-step signatures (those bound, not refused)."""
    return [key for key, e in layer.__dict__.get("_bound", (None, {}))[1].items()
            if key[0] == "step" and e]


def _step_input(layer, batch, rng):
    x = rng.standard_normal((1, batch, layer.input_size)).astype(layer.dtype)
    return np.ascontiguousarray(x.transpose(1, 0, 2)) if layer.batch_first else x


@pytest.mark.parametrize("name,opts", CASES)
@pytest.mark.parametrize("hidden", [40, 128])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("threads", [1, 2])
def test_bound_step_is_the_general_path(name, opts, hidden, batch, threads, rng):
    """With and without a state; H=128 at B=1 splits each float32 step's
    units across two threads (CellKernel), H=40 runs on the calling thread.
    Two directions stream on one thread only (with more, each direction's
    step is a task of its own: the general path)."""
    fastrnn.set_num_threads(threads)
    layer = getattr(fastrnn, name)(24, hidden, seed=3, **opts)
    if layer.bidirectional and threads > 1:
        x = _step_input(layer, batch, rng)
        assert _engine.bound_step(layer, x) is None
        _assert_same(layer(x), _general(layer, x))
        return
    x = _step_input(layer, batch, rng)
    rows = layer.num_layers * layer.num_directions
    h = rng.standard_normal((rows, batch, hidden)).astype(layer.dtype)
    c = rng.standard_normal((rows, batch, hidden)).astype(layer.dtype)
    before = [a.copy() for a in (x, h, c)]
    for hx in (None, (h, c) if name == "LSTM" else h):
        out = _engine.bound_step(layer, x, hx)
        assert out is not None, "this step should be bound"
        _assert_same(out, _general(layer, x, hx))
        _assert_same(layer(x, hx), out)              # the front door takes it too
        assert out[0].shape == x.shape[:2] + (layer.num_directions * hidden,)
        # its state goes round again
        _assert_same(layer(x, out[1]), _general(layer, x, out[1]))
    for a, b in zip((x, h, c), before):
        np.testing.assert_array_equal(a, b)          # nothing the caller passed is written
    assert len(_step_keys(layer)) == 1
    x.flags.writeable = False                        # a read-only input is read as it is
    _assert_same(_engine.bound_step(layer, x), _general(layer, x))


@pytest.mark.parametrize("name,opts", [("LSTM", {"num_layers": 2}), ("GRU", {}),
                                       ("GRU", {"reset_after": False, "bidirectional": True}),
                                       ("RNN", {"num_layers": 2})])
@pytest.mark.parametrize("hidden", [40, 128])
def test_a_loop_of_steps_is_the_sequence(name, opts, hidden, rng):
    """Steps fed one at a time with the state carried give the whole
    sequence's outputs (one direction; a bidirectional layer's single step
    is its own sequence of one step, checked against that)."""
    layer = getattr(fastrnn, name)(24, hidden, seed=5, **opts)
    x = rng.standard_normal((7, 2, 24)).astype(np.float32)
    if layer.bidirectional:
        for t in range(7):
            _assert_same(layer(x[t:t + 1]), _general(layer, x[t:t + 1].copy()))
        return
    want, want_state = layer(x)
    state = None
    for t in range(7):
        y, state = layer(np.ascontiguousarray(x[t:t + 1]), state)
        np.testing.assert_allclose(y[0], want[t], rtol=2e-5, atol=2e-6)
    for s, w in zip(_states((None, state)), _states((None, want_state))):
        np.testing.assert_allclose(s, w, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("hidden,batch", [(32, 3), (128, 1)])
def test_bound_step_of_token_ids(name, batch_first, hidden, batch, rng):
    """intp token ids (1, B) ((B, 1) batch_first): the first layer reads
    columns of W_ih, as the general path does; the ids are checked. One row
    of H=128 splits each step's units across two threads (CellKernel: its
    W_hh from 192 KiB; a token's W_ih column is not streamed)."""
    if name == "RNN":
        hidden *= 2                                   # (its W_hh past 192 KiB too)
    layer = getattr(fastrnn, name)(50, hidden, num_layers=2, batch_first=batch_first, seed=1)
    ids = rng.integers(0, 50, (batch, 1) if batch_first else (1, batch)).astype(np.intp)
    before = ids.copy()
    out = _engine.bound_step(layer, ids)
    assert out is not None
    _assert_same(out, _general(layer, ids))
    _assert_same(layer(ids), out)
    np.testing.assert_array_equal(ids, before)
    # the same as the one-hot rows (a product instead of a column read); on
    # the split, both are row dot products and a one-hot row's are exact
    onehot = np.eye(50, dtype=np.float32)[ids]
    if batch == 1:
        _assert_same(layer(onehot), out)
    else:
        np.testing.assert_allclose(layer(onehot)[0], out[0], rtol=1e-5, atol=1e-6)
    # ids out of range and other integer types: the general path's check or conversion
    for bad in (-1, 50):
        wrong = ids.copy()
        wrong.flat[-1] = bad
        assert _engine.bound_step(layer, wrong) is None
        with pytest.raises(ValueError, match="x"):
            layer(wrong)
    small = ids.astype(np.int32)
    assert _engine.bound_step(layer, small) is None
    _assert_same(layer(small), out)


def test_other_steps_take_the_general_path(rng):
    """Anything but the common one-step call is left to the general path:
    bound_step says None, and the layer's call gives what the general path
    gives (or its error)."""
    layer = fastrnn.LSTM(24, 64, num_layers=2, seed=0)
    x = rng.standard_normal((1, 3, 24)).astype(np.float32)
    want = _general(layer, x)
    swapped = x.astype(x.dtype.newbyteorder())
    unaligned = np.frombuffer(b"\0" + x.tobytes(), np.float32, offset=1).reshape(x.shape)
    strided = np.repeat(x, 2, axis=2)[:, :, ::2]
    for i, other in enumerate([x.astype(np.float64), swapped, unaligned, strided]):
        assert _engine.bound_step(layer, other) is None, i
        _assert_same(layer(other), want)
    # states in other forms: converted by the general path; wrong ones refused
    h = rng.standard_normal((2, 3, 64)).astype(np.float32)
    want = _general(layer, x, (h, h))
    unaligned_h = np.frombuffer(b"\0" + h.tobytes(), np.float32, offset=1).reshape(h.shape)
    for i, other in enumerate([[h, h], (h.astype(np.float64), h), (np.asfortranarray(h), h),
                               (h, h.tolist()), (h, unaligned_h)]):
        assert _engine.bound_step(layer, x, other) is None, i
        _assert_same(layer(x, other), want)
    for i, bad in enumerate([h, (h,), (h, h, h), (h[:1], h), (h, h[:, :, :5])]):
        assert _engine.bound_step(layer, x, bad) is None, i
        with pytest.raises((ValueError, TypeError)):
            layer(x, bad)
    # shapes the layer refuses: the general path names what is wrong
    with pytest.raises(ValueError, match="input_size=24"):
        layer(x[:, :, :20].copy())
    empty = np.zeros((1, 0, 24), np.float32)
    assert _engine.bound_step(layer, empty) is None
    with pytest.raises(ValueError, match="at least one"):
        layer(empty)
    # lengths: the general path
    np.testing.assert_array_equal(layer(x, lengths=[1, 1, 1])[0], layer(x)[0])
    # cell variants (clip, peepholes, coupled gates) run as layer calls
    for opts in ({"clip": 0.3}, {"peepholes": True}, {"input_forget": True}):
        variant = fastrnn.LSTM(24, 64, seed=0, **opts)
        assert _engine.bound_step(variant, x) is None
        _assert_same(variant(x), _general(variant, x))
    # weights beyond what one core streams well split every step across the team
    before = _engine._CELL_SPLIT_BYTES
    try:
        _engine._CELL_SPLIT_BYTES = 1024
        fresh = fastrnn.GRU(24, 64, seed=0)
        assert _engine.bound_step(fresh, x) is None
        _assert_same(fresh(x), _general(fresh, x))
    finally:
        _engine._CELL_SPLIT_BYTES = before


def test_bound_step_sees_weights_changed_in_place(rng):
    layer = fastrnn.GRU(24, 64, num_layers=2, seed=0)
    x = rng.standard_normal((1, 1, 24)).astype(np.float32)
    first = layer(x)
    assert _step_keys(layer)
    live = dict(layer.named_parameters())
    live["weight_hh_l1"][:] *= 0.5
    live["bias_ih_l0"][:] += 0.25
    second = layer(x)
    assert not np.array_equal(second[0], first[0])
    _assert_same(second, _general(layer, x))
    layer.load_state_dict(dict(layer.state_dict(), weight_ih_l0=np.zeros((192, 24))))
    _assert_same(layer(x), _general(layer, x))


def test_bound_step_follows_the_team_size(rng):
    layer = fastrnn.LSTM(128, 128, seed=0)           # a row whose steps split at 2 threads
    x = rng.standard_normal((1, 1, 128)).astype(np.float32)
    before = fastrnn.get_num_threads()
    try:
        for n in (1, 2, 3):
            fastrnn.set_num_threads(n)
            _assert_same(layer(x), _general(layer, x))
        assert {key[4] for key in _step_keys(layer)} == {1, 2, 3}
    finally:
        fastrnn.set_num_threads(before)


def test_copies_and_threads(rng):
    """Copies bind their own kernels; Python threads stepping one layer at
    once each get their own scratch."""
    layer = fastrnn.LSTM(24, 64, num_layers=2, seed=0)
    xs = [rng.standard_normal((1, 2, 24)).astype(np.float32) for _ in range(4)]
    want = [_general(layer, x) for x in xs]
    for other in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        _assert_same(other(xs[0]), want[0])
        dict(other.named_parameters())["weight_hh_l0"][:] = 0     # the copy's only
        _assert_same(layer(xs[0]), want[0])

    def work(i):
        state = None
        for _ in range(50):
            got = layer(xs[i], state)
            _assert_same(got, _general(layer, xs[i], state))
            state = got[1]
    errors = in_threads(work, 4)
    assert not errors, errors[0]


def test_stream_layers_refuses_arrays_it_cannot_read():
    """The kernels' one-step entry returns False, writing nothing, for an
    array of another size, dtype or layout or an id out of range (the
    callers then take the general path)."""
    layer = fastrnn.LSTM(8, 16, num_layers=2, seed=0)
    kernels = _engine.step_kernels(layer)
    x = np.ones((3, 8), np.float32)
    h_n, c_n, y = (np.full((2, 3, 16), 7, np.float32), np.full((2, 3, 16), 7, np.float32),
                   np.full((3, 16), 7, np.float32))
    k = _engine._k
    assert k.stream_layers(kernels, x, None, None, None, h_n, c_n, y, 1)
    h_n[...], c_n[...], y[...] = 7, 7, 7
    frozen = y.copy()
    frozen.flags.writeable = False
    ids = np.array([0, 9, 1], np.intp)
    bad = [(x[:, :7], None, None, None, h_n, c_n, y), (x.astype(np.float64), None, None, None,
                                                         h_n, c_n, y),
           (x, None, None, None, h_n[:1], c_n, y), (x, None, None, None, h_n, c_n, frozen),
           (x, None, h_n[:, :2], c_n[:, :2], h_n, c_n, y), (None, ids, None, None, h_n, c_n, y),
           (None, ids[:0], None, None, h_n[:, :0], c_n[:, :0], y[:0]),
           (x, None, None, None, h_n, c_n, np.empty((3, 16), np.float64))]
    for i, args in enumerate(bad):
        assert k.stream_layers(kernels, *args, 1) is False, i
        assert (h_n == 7).all() and (c_n == 7).all() and (y == 7).all(), i


@pytest.mark.parametrize("hidden", [40, 128])
def test_cells_read_unaligned_and_strided_arrays(hidden, rng):
    """A cell's step (the same kernels) takes an unaligned or strided x and
    state as the general path passes them: the values of aligned copies."""
    cell = fastrnn.LSTMCell(24, hidden, seed=0)
    x = rng.standard_normal((2, 24)).astype(np.float32)
    h = rng.standard_normal((2, hidden)).astype(np.float32)
    want = cell(x, (h, -h))

    def unaligned(a):
        return np.frombuffer(b"\0" + a.tobytes(), np.float32, offset=1).reshape(a.shape)
    for i, (xi, hi) in enumerate([(unaligned(x), h), (x, unaligned(h)),
                                  (np.repeat(x, 2, axis=1)[:, ::2], h)]):
        got = cell(xi, (hi, -h))
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w, err_msg=str(i))


@pytest.mark.parametrize("fmt", ["float32", "float16", "bfloat16", "int8"])
@pytest.mark.parametrize("hidden", [40, 128])
def test_bound_step_of_quantized_layers(fmt, hidden, rng):
    """Quantized layers step on the weights the general path's step reads
    (16-bit ones on their codes)."""
    layer = fastrnn.quantize(fastrnn.LSTM(24, hidden, num_layers=2, seed=0), fmt)
    x = rng.standard_normal((1, 1, 24)).astype(np.float32)
    out = _engine.bound_step(layer, x)
    assert out is not None
    _assert_same(out, _general(layer, x))
    _assert_same(layer(x, out[1]), _general(layer, x, out[1]))


@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
def test_token_steps_of_16_bit_layers(fmt, rng):
    """A 16-bit layer's token step (its W_hh read as codes, the token's W_ih
    column from the widened weights, the same values) gives the float32
    layer's step on those values, on the split and on one thread."""
    base = fastrnn.LSTM(50, 128, num_layers=2, seed=2)
    q = fastrnn.quantize(base, fmt)
    widened = fastrnn.LSTM(50, 128, num_layers=2, seed=2)
    widened.load_state_dict(q.state_dict())
    ids = np.array([[7]], np.intp)
    before = fastrnn.get_num_threads()
    try:
        for threads in (2, 1):
            fastrnn.set_num_threads(threads)
            out = _engine.bound_step(q, ids)
            assert out is not None
            _assert_same(out, _general(q, ids))
            np.testing.assert_allclose(out[0], widened(ids)[0], rtol=1e-5, atol=1e-6)
    finally:
        fastrnn.set_num_threads(before)


def test_hostile_one_step_calls_in_a_child():
    """One-step calls a hostile caller makes, in a child process with a
    timeout: extreme and negative token ids, ids of every integer type,
    states of the wrong shape, dtype or layout, NaN and huge inputs, a
    batch of 0 and of 10000 rows, an input changed between calls. Each is
    refused with a ValueError/TypeError naming x or hx, or answered as the
    general path answers; nothing crashes or hangs, nothing passed is
    written."""
    run_isolated('''
        from fastrnn import _engine
        lm = fastrnn.LSTM(50, 128, num_layers=2, batch_first=True, seed=0)
        fastrnn.set_num_threads(2)
        for bad in (2**62, -2**62, 50, -1):
            ids = np.array([[bad]], np.intp)
            try:
                lm(ids)
            except ValueError as e:
                assert "x" in str(e), e
            else:
                raise AssertionError(f"id {bad} was run")
        for dt in (np.int8, np.uint8, np.int16, np.int32, np.uint32, np.int64, np.uint64):
            ids = np.array([[3], [49]], dt)
            y, _ = lm(ids)
            assert np.isfinite(y).all() and y.shape == (2, 1, 128)
        layer = fastrnn.GRU(24, 128, num_layers=2, seed=0)
        x = np.ones((1, 1, 24), np.float32)
        h = np.zeros((2, 1, 128), np.float32)
        for bad in (h[:1], h[:, :, :64], h.astype(np.complex64), "h", [[1.0]], (h, h),
                    np.zeros((2, 2, 128), np.float32)):
            frozen = None if isinstance(bad, (str, list, tuple)) else np.array(bad, copy=True)
            try:
                layer(x, bad)
            except (ValueError, TypeError) as e:
                assert str(e).startswith("hx must"), e
            else:
                raise AssertionError(f"state {type(bad).__name__} was run")
            if frozen is not None:
                assert np.array_equal(bad, frozen, equal_nan=True)
        from hostile_inputs import check_extreme_inputs
        check_extreme_inputs(layer, (1, 1, 24), h)
        x = np.random.default_rng(0).standard_normal((1, 1, 24)).astype(np.float32)
        a = layer(x)[0].copy()
        x[...] = 0
        b = layer(x)[0]
        assert not np.array_equal(a, b)                   # the new values are read
        print("ok")
    ''')
