"""A layer's common call bound once per input signature (fastrnn._engine.bound_call).

``layer(x)`` for float32 C-contiguous x (time-major, or batch-major with
batch_first) without lengths, the state None or the layer's own arrays, on
panels, runs through UnitCalls (every layer's units split across the
threads) or TaskCalls (blocks of rows and directions as tasks) made once
per (T, B, thread count, kernel build). These tests hold it to the general
path bit for bit, show that anything else takes the general path (which
checks and names what is wrong), and that weights changed in place,
another team size, copies and threads are seen.
"""
import copy
import pickle

import numpy as np
import pytest

import fastrnn
from fastrnn import _engine
from fastrnn._kernels import _panels
from concurrent_calls import in_threads
from isolated import run_isolated

# with FASTRNN_PANEL=blas the products run on BLAS and nothing is bound
PANELS = _engine._k.panel_kernel() != "blas"

# (class, options): LSTM/GRU at H=64 take the unit split at B=1 and 2 (W_hh
# beyond half an L1d); the RNN needs H=128 for that
CASES = [("LSTM", {}), ("GRU", {}), ("GRU", {"reset_after": False}),
         ("RNN", {"nonlinearity": "relu"}), ("LSTM", {"bias": False}),
         ("LSTM", {"clip": 0.3, "peepholes": True}), ("LSTM", {"input_forget": True}),
         ("LSTM", {"num_layers": 2}), ("GRU", {"num_layers": 3}),
         ("LSTM", {"batch_first": True}), ("GRU", {"batch_first": True, "num_layers": 2}),
         # two directions: the batch split's tasks (TaskCall) at any batch
         ("LSTM", {"bidirectional": True}), ("RNN", {"bidirectional": True}),
         ("GRU", {"bidirectional": True, "num_layers": 2, "batch_first": True}),
         ("LSTM", {"bidirectional": True, "clip": 0.3, "peepholes": True, "num_layers": 2}),
         ("GRU", {"bidirectional": True, "reset_after": False, "bias": False})]


def _layer(name, opts, hidden=None, seed=3):
    hidden = hidden or (128 if name == "RNN" else 64)
    return getattr(fastrnn, name)(24, hidden, seed=seed, **opts)


def _general(layer, x, hx=None):
    """The call on the general path (the layer's call but for the binding):
    (y, state as the caller sees it)."""
    return layer._call(x, hx, None, False)


def _assert_same(got, want):
    np.testing.assert_array_equal(got[0], want[0])
    got_s = got[1] if isinstance(got[1], tuple) else (got[1],)
    want_s = want[1] if isinstance(want[1], tuple) else (want[1],)
    assert len(got_s) == len(want_s)
    for g, w in zip(got_s, want_s):
        np.testing.assert_array_equal(g, w)


def _bound(layer):
    """The layer's bound calls by signature (False: a signature not bound)."""
    return layer.__dict__.get("_bound", (None, {}))[1]


@pytest.mark.parametrize("name,opts", CASES)
@pytest.mark.parametrize("batch", [1, 2, 16])       # (16: the batch split's blocks of rows)
def test_bound_call_is_the_general_path(name, opts, batch, rng):
    layer = _layer(name, opts)
    x = rng.standard_normal((9, batch, 24)).astype(np.float32)
    if layer.batch_first:
        x = np.ascontiguousarray(x.transpose(1, 0, 2))
    before = x.copy()
    out = _engine.bound_call(layer, x)
    if not PANELS:
        assert out is None
        return
    assert out is not None, "this call should be bound"
    _assert_same(out, _general(layer, x))
    _assert_same(layer(x), out)                  # the front door takes it too
    np.testing.assert_array_equal(x, before)      # the input is not written
    assert len([e for e in _bound(layer).values() if e is not False]) == 1
    # a read-only input is read as it is
    x.flags.writeable = False
    _assert_same(_engine.bound_call(layer, x), out)


@pytest.mark.parametrize("name,opts,batch", [
    ("LSTM", {}, 2), ("GRU", {"num_layers": 2}, 2),
    ("LSTM", {"num_layers": 2, "peepholes": True}, 2), ("LSTM", {"batch_first": True}, 2),
    ("LSTM", {"bidirectional": True, "num_layers": 2}, 2),
    ("GRU", {"bidirectional": True, "batch_first": True}, 5), ("LSTM", {}, 16)])
def test_bound_call_with_a_state(name, opts, batch, rng):
    """A state given as the layer's own arrays ((L*D, B, H) float32; a tuple
    of two for the LSTM) is read by the bound call; any other form goes to
    the general path, which converts it or names what is wrong."""
    layer = _layer(name, opts)
    L, lstm = layer.num_layers * layer.num_directions, name == "LSTM"
    x = rng.standard_normal((batch, 9, 24) if layer.batch_first
                            else (9, batch, 24)).astype(np.float32)
    h = rng.standard_normal((L, batch, 64)).astype(np.float32)
    c = rng.standard_normal((L, batch, 64)).astype(np.float32)
    hx = (h, c) if lstm else h
    before = [a.copy() for a in (x, h, c)]
    want = _general(layer, x, hx)
    out = _engine.bound_call(layer, x, hx)
    assert (out is not None) == PANELS
    _assert_same(layer(x, hx), want)
    for a, b in zip((x, h, c), before):
        np.testing.assert_array_equal(a, b)       # the state is read, not written
    if PANELS:
        _assert_same(out, want)
        # a state from the last call goes round again
        _assert_same(layer(x, out[1]), _general(layer, x, out[1]))
    # other forms of the same state: the general path converts them
    f_h = np.asfortranarray(h)
    same = ([list(hx), (h.astype(np.float64), c), (f_h, c), (h, c.tolist())] if lstm
            else [h.astype(np.float64), f_h, h.tolist()])
    for i, other in enumerate(same):
        assert _engine.bound_call(layer, x, other) is None, i
        _assert_same(layer(x, other), want)
    # wrong ones: the general path's error
    wrong = ([h, (h,), (h, c, c), (h[:, :1], c), (h, c[:, :, :5])] if lstm
             else [(h,), h[:, :1], h[:1]])
    for i, bad in enumerate(wrong):
        assert _engine.bound_call(layer, x, bad) is None, i
        with pytest.raises((ValueError, TypeError)):
            layer(x, bad)


@pytest.mark.parametrize("fmt", ["float32", "float16", "bfloat16", "int8"])
@pytest.mark.parametrize("batch,opts", [(1, {}), (16, {}), (1, {"bidirectional": True})])
def test_bound_call_of_quantized_layers(fmt, batch, opts, rng):
    """Quantized layers bind their packed or reduced weights as the general
    path reads them (the unit split's shares, the batch split's panels or
    prepacked weights)."""
    layer = fastrnn.quantize(_layer("LSTM", opts), fmt)
    x = rng.standard_normal((12, batch, 24)).astype(np.float32)
    out = _engine.bound_call(layer, x)
    assert (out is not None) == PANELS
    _assert_same(layer(x), _general(layer, x))


@pytest.mark.parametrize("opts,batch", [({}, 1), ({}, 16), ({"bidirectional": True}, 1)])
def test_bound_call_sees_weights_changed_in_place(opts, batch, rng):
    layer = _layer("GRU", opts)
    x = rng.standard_normal((8, batch, 24)).astype(np.float32)
    first = layer(x)
    assert (_engine.bound_call(layer, x) is not None) == PANELS
    live = dict(layer.named_parameters())          # views of the layer's blocks
    live["weight_hh_l0"][:] *= 0.5                 # (as an optimizer updates them)
    live["bias_ih_l0"][:] += 0.25
    if layer.bidirectional:
        live["weight_ih_l0_reverse"][:] *= 2
        live["bias_hh_l0_reverse"][:] -= 0.25
    _assert_same(layer(x), _general(layer, x))
    state = layer.state_dict()
    layer.load_state_dict(dict(state, weight_ih_l0=2 * state["weight_ih_l0"]))
    second = layer(x)
    assert not np.array_equal(second[0], first[0])
    _assert_same(second, _general(layer, x))


@pytest.mark.parametrize("opts", [{}, {"bidirectional": True}])
def test_bound_call_follows_the_team_size(opts, rng):
    """One binding per thread count (the unit split's team, the batch
    split's tasks), each call as the general path gives it at that count."""
    layer = _layer("LSTM", opts)
    x = rng.standard_normal((8, 1, 24)).astype(np.float32)
    before = fastrnn.get_num_threads()
    try:
        for n in (1, 2, 3):
            fastrnn.set_num_threads(n)
            if PANELS:
                _assert_same(layer(x), _general(layer, x))
            else:
                # nothing is bound; BLAS sums a team's shares of the units and
                # one thread's rows (the team policy may run a call alone,
                # e.g. after a fork) in other orders (tests/test_team.py)
                np.testing.assert_allclose(layer(x)[0], _general(layer, x)[0], rtol=0,
                                           atol=1e-6)
        keys = {key[2] for key in _bound(layer)}      # (shape, batch_first, team size, ...)
        assert keys >= ({2, 3} if PANELS else set())   # one binding per team size
    finally:
        fastrnn.set_num_threads(before)


def test_other_calls_take_the_general_path(rng):
    """Anything but a plain float32 time-major C-contiguous input without
    state or lengths is left to the general path: bound_call says None, and
    the layer's call gives what the general path gives (or its error)."""
    layer = _layer("LSTM", {})
    x = rng.standard_normal((8, 2, 24)).astype(np.float32)
    want = _general(layer, x)
    swapped = x.astype(x.dtype.newbyteorder())
    unaligned = np.frombuffer(b"\0" + x.tobytes(), np.float32, offset=1).reshape(x.shape)
    sub = x.view(type("Sub", (np.ndarray,), {}))
    same_values = [x.astype(np.float64), np.asfortranarray(x), swapped, unaligned,
                   x.transpose(1, 0, 2).copy().transpose(1, 0, 2)]
    for i, other in enumerate(same_values):
        assert _engine.bound_call(layer, other) is None, i
        _assert_same(layer(other), want)
    _assert_same(layer(sub), want)        # (a subclass: the layer's call leaves it alone)
    # shapes the layer refuses: the general path names what is wrong
    for bad, match in ((x[:, :, :20].copy(), "input_size=24"), (x[:0].copy(), "at least one")):
        with pytest.raises(ValueError, match=match):
            layer(bad)
    # too few steps for panels, float64 layers: not bound, same results
    short = x[:2].copy()
    assert _engine.bound_call(layer, short) is None
    _assert_same(layer(short), _general(layer, short))
    wide = _layer("LSTM", {"dtype": np.float64})
    assert _engine.bound_call(wide, x.astype(np.float64)) is None
    both = _layer("LSTM", {"bidirectional": True})
    assert _engine.bound_call(both, short) is None
    _assert_same(both(short), _general(both, short))
    both_wide = _layer("LSTM", {"bidirectional": True, "dtype": np.float64})
    assert _engine.bound_call(both_wide, x.astype(np.float64)) is None
    # state or lengths: the general path
    h0 = np.ones((1, 2, 64), np.float32)
    y, (h, c) = layer(x, (h0, h0))
    assert not np.array_equal(y, want[0])
    y, _ = layer(x, lengths=[8, 3])
    np.testing.assert_array_equal(y[3:, 1], 0)


def test_bound_signatures_are_bounded(rng):
    layer = _layer("GRU", {})
    for steps in range(4, 40):
        layer(rng.standard_normal((steps, 1, 24)).astype(np.float32))
        assert 1 <= len(_bound(layer)) <= _engine._BOUND_SIGNATURES


def test_copies_bind_their_own_weights(rng):
    layer = _layer("LSTM", {})
    x = rng.standard_normal((8, 1, 24)).astype(np.float32)
    want = layer(x)
    for other in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert "_bound" not in other.__dict__
        _assert_same(other(x), want)
        dict(other.named_parameters())["weight_hh_l0"][:] = 0   # the copy's only
        _assert_same(layer(x), want)
        assert not np.array_equal(other(x)[0], want[0])


@pytest.mark.parametrize("opts,batch", [({"num_layers": 2}, 1), ({"bidirectional": True}, 1),
                                        ({"num_layers": 2}, 16)])
def test_bound_call_from_threads(opts, batch, rng):
    """Python threads calling one layer at once: each call's own copy of the
    bound call and its own scratch."""
    layer = _layer("GRU", opts)
    xs = [rng.standard_normal((10, batch, 24)).astype(np.float32) for _ in range(4)]
    want = [_general(layer, x) for x in xs]

    def work(i):
        for _ in range(50):
            _assert_same(layer(xs[i]), want[i])
    errors = in_threads(work, 4)
    assert not errors, errors[0]


@pytest.mark.skipif(not PANELS, reason="FASTRNN_PANEL=blas binds no UnitCall")
def test_unit_call_refuses_arrays_of_another_signature():
    """UnitCall.run checks every array's shape, dtype, layout and (outputs)
    writability, in a child process: a refusal is a ValueError, never a
    crash."""
    run_isolated('''
        from fastrnn import _engine
        layer = fastrnn.LSTM(24, 64, seed=0)
        x = np.zeros((8, 1, 24), np.float32)
        assert _engine.bound_call(layer, x) is not None
        (call,), zeros, units = [e for e in layer._bound[1].values() if e][0]
        assert units and zeros.shape == (1, 64)    # (a unit-split call's (B, H))
        y = np.empty((8, 1, 64), np.float32)
        h, c = np.empty((1, 64), np.float32), np.empty((1, 64), np.float32)
        call.run(x, zeros, zeros, y, h, c)
        frozen = y.copy()
        frozen.flags.writeable = False
        bad = [(x[:7], zeros, zeros, y, h, c), (x.astype(np.float64), zeros, zeros, y, h, c),
               (x, zeros[:, :63], zeros, y, h, c), (x, zeros, zeros, frozen, h, c),
               (x, zeros, zeros, y, zeros, c), (x, zeros, zeros, y[:, :, ::2], h, c),
               (None, zeros, zeros, y, h, c), (x.tolist(), zeros, zeros, y, h, c),
               (x, zeros, zeros, np.empty((8, 1, 64), np.float64), h, c)]
        from hostile_inputs import check_refused
        check_refused(call.run, bad, "UnitCall.run")
        # a plan that does not fit the steps it is bound with
        from fastrnn._kernels import recurrent as k
        weights = (layer._w_ih[0][0], layer._w_hh[0][0], layer._b_ih[0], layer._b_hh[0])
        ip = lambda *a: np.array(a, np.intp)
        good = (False, ip(8), ip(0), np.full(8, 1, np.intp))
        k.UnitCall(layer._kind, weights, good, 8, 8, 2)
        bad = [(False, ip(9), ip(0), np.full(8, 1, np.intp)),          # longer than 8 steps
               (False, ip(8), ip(0), np.full(7, 1, np.intp)),          # n_active too short
               (False, ip(8), ip(1), np.full(8, 1, np.intp)),          # perm past the rows
               (False, ip(8), ip(0, 1), np.full(8, 1, np.intp)),       # perm of another B
               (False, ip(3, 8), ip(0, 1), np.full(8, 2, np.intp)),    # not longest first
               (False, ip(8, 3), ip(0, 1), np.full(8, 2, np.intp)),    # row 1 ends at 3
               (False, ip(8), ip(0), np.full(8, 2, np.intp)),          # more rows than B
               (False, ip(), ip(), np.full(8, 0, np.intp))]            # no rows
        for i, plan in enumerate(bad):
            try:
                k.UnitCall(layer._kind, weights, plan, 8, 8, 2)
            except ValueError as e:
                assert str(e).startswith("plan:"), e
            else:
                raise AssertionError(f"plan {i} was bound")
        print("ok")
    ''')


@pytest.mark.skipif(not PANELS, reason="FASTRNN_PANEL=blas binds no TaskCall")
def test_task_call_refuses_arrays_of_another_signature():
    """TaskCall.run (a bidirectional layer's bound call) checks every
    array's shape, dtype, layout and (outputs) writability, in a child
    process: a refusal is a ValueError and writes nothing, never a crash;
    a plan or weights that do not fit are refused when it is bound."""
    run_isolated('''
        from fastrnn import _engine
        layer = fastrnn.GRU(24, 64, bidirectional=True, seed=0)
        x = np.zeros((8, 3, 24), np.float32)
        assert _engine.bound_call(layer, x) is not None
        (call,), zeros, units = [e for e in layer._bound[1].values() if e][0]
        assert not units and zeros.shape == (2, 3, 64)
        y = np.empty((8, 3, 128), np.float32)
        h = np.empty((2, 3, 64), np.float32)
        call.run(x, zeros, zeros, y, h, h)
        np.testing.assert_array_equal(y, layer(x)[0])
        frozen = y.copy()
        frozen.flags.writeable = False
        bad = [(x[:7], zeros, zeros, y, h, h), (x.astype(np.float64), zeros, zeros, y, h, h),
               (x, zeros[:1], zeros, y, h, h), (x, zeros, zeros, frozen, h, h),
               (x, zeros, zeros, y, zeros, h), (x, zeros, zeros, y[:, :, ::2], h, h),
               (x, zeros, zeros, y[:, :, :64].copy(), h, h), (x, zeros[0], zeros, y, h, h),
               (None, zeros, zeros, y, h, h), (x.tolist(), zeros, zeros, y, h, h),
               (x, zeros, zeros, np.empty((8, 3, 128), np.float64), h, h),
               (x.transpose(1, 0, 2), zeros, zeros, y, h, h)]
        from hostile_inputs import check_refused
        check_refused(call.run, bad, "TaskCall.run")           # (and writes nothing)
        from fastrnn._kernels import recurrent as k
        weights = (layer._w_ih[0], layer._w_hh[0], layer._b_ih[0], layer._b_hh[0])
        ip = lambda *a: np.array(a, np.intp)
        flags = np.array([0, 1], np.intc)
        good = (flags, np.full(3, 8, np.intp), ip(0, 1, 2), np.full(8, 3, np.intp), ip(0, 3),
                None)
        k.TaskCall(layer._kind, weights, good, 8, 8, 2)
        wrong = [(weights, (flags, np.full(3, 9, np.intp)) + good[2:]),   # longer than 8 steps
                 (weights, good[:4] + (ip(0, 2), None)),                  # blocks miss a row
                 (weights, good[:4] + (ip(0, 4), None)),                  # a block past B
                 (weights, (flags[:1],) + good[1:]),                      # one flag, two W
                 (weights, good[:2] + (ip(0, 1, 3),) + good[3:]),         # perm past the rows
                 ((layer._w_ih[0][:1],) + weights[1:], good),             # one W_ih, two flags
                 (weights[:1] + (layer._w_hh[0][:, :64].copy(),) + weights[2:], good),
                 (weights[:2] + (layer._b_ih[0][:, :5].copy(), weights[3]), good)]
        for i, (w, plan) in enumerate(wrong):
            try:
                k.TaskCall(layer._kind, w, plan, 8, 8, 2)
            except ValueError as e:
                assert str(e).startswith(("plan:", "forward_layer: one or two", "weights[")), e
            else:
                raise AssertionError(f"case {i} was bound")
        print("ok")
    ''')


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_scratch_and_outputs_start_at_a_cache_line(dtype, rng):
    """The kernels' scratch and a layer's y start at 64 bytes, so that the
    unit split's threads, each writing its own columns, share no line."""
    for n in (1, 3, 17, 1000):
        arr = _panels.aligned_empty(n, dtype)
        assert arr.shape == (n,) and arr.dtype == dtype and arr.ctypes.data % 64 == 0
    layer = _layer("LSTM", {})
    for steps in (2, 9):                # (one step runs on the calling thread alone)
        for x in (rng.standard_normal((steps, 1, 24)).astype(np.float32),
                  rng.standard_normal((steps, 3, 24)).astype(np.float32)[:, ::2]):
            y, _ = layer(x)
            assert y.ctypes.data % 64 == 0 and y.flags.c_contiguous
    layer(rng.standard_normal((9, 1, 24)).astype(np.float32))
    for buf in _engine._k.scratch_arrays().values():
        assert buf.ctypes.data % 64 == 0
    # the training storage (pooled: its parts at 64 bytes from the buffer's start)
    from fastrnn._buffers import BufferPool
    pool = BufferPool(keep=8)
    for n in (1, 7, 100, 1000, 50000, 300000):
        for dtype in (np.float32, np.float64):
            assert pool.take((n,), dtype).ctypes.data % 64 == 0
            buf, parts = pool.take_parts(((3, n), None, (n,)), dtype)
            assert all(p.ctypes.data % 64 == 0 for p in parts if p is not None)
    _, _, ctx = layer.forward(rng.standard_normal((9, 2, 24)).astype(np.float32))
    (trace,) = ctx.trace[2]
    for arr in (trace.x, trace.gates, trace.h_prev, trace.c_prev, trace.w_ih, trace.w_hh):
        assert arr.ctypes.data % 64 == 0


@pytest.mark.parametrize("cls,options", [
    ("LSTM", {}), ("GRU", {}), ("RNN", {}), ("LSTM", {"proj_size": 7, "num_layers": 2}),
    ("LSTM", {"peepholes": True, "bidirectional": True}),
    ("GRU", {"dtype": np.float64, "num_layers": 2, "bidirectional": True}),
])
def test_weights_and_gradients_start_at_a_cache_line(cls, options, rng):
    """Every parameter block a layer's kernels read (and their gradients)
    starts at 64 bytes, in a new layer, a deep copy and an unpickled one
    (numpy places an unpickled array at 16 bytes): packing W_hh into panels
    and the cells' row products load whole lines. The copies keep their
    values, and their state_dict entries stay views of their own blocks."""
    layer = getattr(fastrnn, cls)(24, 20, seed=0, **options)
    for other in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        for name in ("_w_ih", "_w_hh", "_b_ih", "_b_hh", "_w_hr", "_peep"):
            for own, got in zip(getattr(layer, name), getattr(other, name)):
                np.testing.assert_array_equal(got, own)
        x = rng.standard_normal((5, 2, 24)).astype(layer.dtype)
        _assert_same(other(x), layer(x))
        sd = other.state_dict()
        sd[next(iter(sd))] = np.zeros_like(sd[next(iter(sd))])
        other.load_state_dict(sd)
        assert not np.array_equal(other(x)[0], layer(x)[0])    # its blocks were written
        for m in (layer, other):
            blocks = [a for name in ("_w_ih", "_w_hh", "_b_ih", "_b_hh", "_w_hr", "_peep")
                      for a in getattr(m, name) + getattr(m, "_g" + name[1:])]
            assert len(blocks) >= 4
            for arr in blocks:
                assert arr.ctypes.data % 64 == 0, arr.shape
    cell = fastrnn.LSTMCell(24, 20, seed=0)
    for c in (cell, copy.deepcopy(cell), pickle.loads(pickle.dumps(cell))):
        assert all(a.ctypes.data % 64 == 0 for a in c._layer._w_hh + c._layer._w_ih)


def _arrays(obj):
    """Every ndarray in nested tuples, lists and dicts."""
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _arrays(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _arrays(o)


@pytest.mark.skipif(not PANELS, reason="FASTRNN_PANEL=blas packs no weights")
@pytest.mark.parametrize("fmt,batch", [("float32", 1), ("float32", 32), ("float16", 1),
                                       ("int8", 1)])
def test_weights_packed_once_start_at_a_cache_line(fmt, batch, rng):
    """A quantized layer's weights packed once (the unit split's shares, the
    batch split's panels, reduced weights' gate blocks) start at 64 bytes."""
    # (H=512: a thread's share of the weights beyond half of any L2, where
    # float16 weights pay at one row)
    layer = fastrnn.quantize(_layer("LSTM", {}, hidden=512), fmt)
    layer(rng.standard_normal((9, batch, 24)).astype(np.float32))
    packed = list(_arrays(layer.__dict__.get("_prepacked", {})))
    assert packed
    for arr in packed:
        assert arr.ctypes.data % 64 == 0, arr.shape


def test_bound_call_follows_batch_first(rng):
    """A square input read time-major, then with batch_first set on the
    layer: each call as the general path gives it."""
    layer = _layer("GRU", {})
    x = rng.standard_normal((4, 4, 24)).astype(np.float32)
    first = layer(x)
    _assert_same(first, _general(layer, x))
    layer.batch_first = True
    second = layer(x)
    _assert_same(second, _general(layer, x))
    assert not np.array_equal(first[0], second[0])
    assert (len([e for e in _bound(layer).values() if e]) == 2) == PANELS


def test_scratch_slots_are_the_threads_own(rng):
    """The kernels' scratch: by (name, dtype), one array per Python thread,
    which bench.call_cost may replace (any 1-D array of the slot's dtype,
    even off a cache line) and compare.py clear; the kernels write it
    before they read it, and a thread never sees another's."""
    k = _engine._k
    cell = fastrnn.LSTMCell(24, 128, seed=0)
    x = rng.standard_normal((1, 24)).astype(np.float32)
    want = cell(x)
    arrays = k.scratch_arrays()
    key = ("cell", np.float32)
    assert key in arrays and arrays[key].ndim == 1
    placed = np.full(arrays[key].shape[0] + 3, np.nan, np.float32)[3:]   # off a line, NaN
    k.set_scratch_arrays({key: placed})
    try:
        for g, w in zip(cell(x), want):
            np.testing.assert_array_equal(g, w)
        assert k.scratch_arrays()[key] is placed and not np.isnan(placed).all()
        for bad in ({key: placed.astype(np.float64)}, {key: placed.reshape(1, -1)},
                    {key: [1.0, 2.0]}, {key: placed[::2]}):
            with pytest.raises(ValueError, match="scratch"):
                k.set_scratch_arrays(bad)
        other = []
        errors = in_threads(lambda i: other.append(k.scratch_arrays()), 1)
        assert not errors and other == [{}]          # a new thread has none yet
    finally:
        k.clear_scratch()
    assert k.scratch_arrays() == {}
    for g, w in zip(cell(x), want):                  # (new arrays, the same results)
        np.testing.assert_array_equal(g, w)


def test_hostile_sequence_calls_in_a_child():
    """Calls a hostile caller makes to bound layers (a bidirectional one, on
    the batch split's tasks, and a unit-split one), in a child process with
    a timeout: states of the wrong shape, dtype, layout or type, NaN, inf
    and huge inputs, an empty and a 10000-row batch, an input changed
    between calls, a state passed back that the caller then writes. Each is
    refused with a ValueError/TypeError naming x or hx (h0 for the LSTM's),
    or answered as the general path answers; nothing crashes or hangs,
    nothing passed is written."""
    run_isolated('''
        from fastrnn import _engine
        from hostile_inputs import check_extreme_inputs
        fastrnn.set_num_threads(2)
        for layer in (fastrnn.LSTM(24, 64, bidirectional=True, num_layers=2, seed=0),
                      fastrnn.GRU(24, 64, seed=0)):
            L = layer.num_layers * layer.num_directions
            lstm = isinstance(layer, fastrnn.LSTM)
            x = np.random.default_rng(0).standard_normal((9, 2, 24)).astype(np.float32)
            h = np.zeros((L, 2, 64), np.float32)
            good = (h, h.copy()) if lstm else h
            for bad in (h[:1], h[:, :, :32], h.astype(np.complex64), "h", [[1.0]],
                        np.zeros((L, 3, 64), np.float32), h[:, ::-1]):
                hx = (bad, h) if lstm else bad
                frozen = None if isinstance(bad, (str, list)) else np.array(bad, copy=True)
                try:
                    out = layer(x, hx)
                except (ValueError, TypeError) as e:
                    assert str(e).startswith(("hx must", "h0 must")), e
                else:
                    # (a reversed view has the right shape: converted and run)
                    want = layer._call(x, hx, None, False)
                    assert np.array_equal(out[0], want[0]), type(bad)
                if frozen is not None:
                    assert np.array_equal(bad, frozen, equal_nan=True)
            check_extreme_inputs(layer, (5, 2, 24), good)
            a = layer(x)[0].copy()
            x[...] = 0
            b = layer(x)[0]
            assert not np.array_equal(a, b)                  # the new values are read
            y, state = layer(x)
            again = layer(x, state)[0].copy()
            (state[0] if lstm else state)[...] = 5           # the caller's own arrays now
            assert not np.array_equal(layer(x, state)[0], again)
            bound = _engine.bound_call(layer, x, state)
            assert (bound is not None) == (_engine._k.panel_kernel() != "blas")
        print("ok")
    ''')
