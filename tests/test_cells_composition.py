"""Cells, Stacked and Bidirectional against the numpy reference."""
import numpy as np
import pytest

import fastrnn
from conftest import CELL_FORMS, CELL_IDS, assert_close
import reference as ref

# the cell of each layer form (RNN -> RNNCell, ...), same options and ids
CELLS = [(mode, getattr(fastrnn, cls.__name__ + "Cell"), opts)
         for mode, cls, opts in CELL_FORMS]


def _ref_step(mode, opts, sd, x, h, c):
    p = ref.equation_params(mode, sd, "")
    if mode == "rnn":
        return ref.rnn_step(x, h, p, opts["nonlinearity"]), None
    if mode == "gru":
        return ref.gru_step(x, h, p, opts["reset_after"]), None
    return ref.lstm_step(x, h, c, p)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode,cls,opts", CELLS, ids=CELL_IDS)
def test_cell_step_matches_reference(mode, cls, opts, dtype, rng):
    cell = cls(5, 3, dtype=dtype, seed=0, **opts)
    assert sorted(cell.state_dict()) == ["bias_hh", "bias_ih", "weight_hh", "weight_ih"]
    sd = cell.state_dict()
    x = rng.standard_normal((4, 5)).astype(dtype)
    h = rng.standard_normal((4, 3)).astype(dtype)
    c = rng.standard_normal((4, 3)).astype(dtype)
    out = cell(x, (h, c) if mode == "lstm" else h)
    for b in range(4):
        h_ref, c_ref = _ref_step(mode, opts, sd, x[b], h[b], c[b])
        if mode == "lstm":
            assert_close(out[0][b], h_ref, dtype, "h")
            assert_close(out[1][b], c_ref, dtype, "c")
        else:
            assert out.dtype == dtype
            assert_close(out[b], h_ref, dtype, "h")
    # hx=None is a zero state; unbatched input gives unbatched output
    zero = cell(x[0])
    h_ref, c_ref = _ref_step(mode, opts, sd, x[0], np.zeros(3), np.zeros(3))
    if mode == "lstm":
        assert zero[0].shape == (3,)
        assert_close(zero[0], h_ref, dtype, "h")
    else:
        assert zero.shape == (3,)
        assert_close(zero, h_ref, dtype, "h")


@pytest.mark.parametrize("mode,cls,opts", CELLS, ids=CELL_IDS)
def test_cell_steps_equal_layer(mode, cls, opts, rng):
    """Streaming: stepping a cell with its state carried equals the layer over the sequence."""
    layer_cls = {"rnn": fastrnn.RNN, "gru": fastrnn.GRU, "lstm": fastrnn.LSTM}[mode]
    layer = layer_cls(4, 5, dtype=np.float64, seed=1, **opts)
    cell = cls(4, 5, dtype=np.float64, **opts)
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
    x = rng.standard_normal((6, 2, 4))
    y, _ = layer(x)
    state = None
    for t in range(6):
        state = cell(x[t], state)
        h = state[0] if mode == "lstm" else state
        np.testing.assert_allclose(h, y[t], rtol=0, atol=1e-14)


def test_stacked_equals_layers_in_turn(rng):
    a = fastrnn.LSTM(3, 4, bidirectional=True, dtype=np.float64, seed=1)
    b = fastrnn.GRU(8, 5, reset_after=False, dtype=np.float64, seed=2)
    c = fastrnn.RNN(5, 2, nonlinearity="relu", num_layers=2, dtype=np.float64, seed=3)
    stack = fastrnn.Stacked([a, b, c])
    assert stack.input_size == 3 and stack.output_size == 2
    x = rng.standard_normal((6, 3, 3))
    lengths = np.array([6, 2, 5])
    hx = [(rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))),
          rng.standard_normal((1, 3, 5)), rng.standard_normal((2, 3, 2))]
    y, states = stack(x, hx, lengths=lengths)
    y1, s1 = a(x, hx[0], lengths=lengths)
    y2, s2 = b(y1, hx[1], lengths=lengths)
    y3, s3 = c(y2, hx[2], lengths=lengths)
    # the same products, but not always the same BLAS calls: a unit-split
    # call whose partner thread came late runs alone (fastrnn/_team.h), with
    # one share of the units instead of two, and float64 BLAS may then sum in
    # another order (seen once on a loaded machine: 1 ulp)
    same = dict(rtol=0, atol=1e-14)
    np.testing.assert_allclose(y, y3, **same)
    np.testing.assert_allclose(states[0][1], s1[1], **same)
    np.testing.assert_allclose(states[1], s2, **same)
    np.testing.assert_allclose(states[2], s3, **same)
    sd = stack.state_dict()
    assert "0.weight_ih_l0_reverse" in sd and "2.weight_hh_l1" in sd
    other = fastrnn.Stacked([fastrnn.LSTM(3, 4, bidirectional=True, dtype=np.float64),
                             fastrnn.GRU(8, 5, reset_after=False, dtype=np.float64),
                             fastrnn.RNN(5, 2, nonlinearity="relu", num_layers=2,
                                         dtype=np.float64)])
    other.load_state_dict(sd)
    np.testing.assert_array_equal(other(x, hx, lengths=lengths)[0], y)


@pytest.mark.parametrize("merge", ["concat", "sum"])
def test_bidirectional_matches_reference(merge, rng):
    inner = fastrnn.GRU(3, 4, num_layers=2, dtype=np.float64, seed=1)
    bi = fastrnn.Bidirectional(inner, merge=merge, seed=2)
    x = rng.standard_normal((6, 3, 3))
    lengths = np.array([4, 6, 1])
    y, (h_f, h_r) = bi(x, lengths=lengths)
    sd = bi.state_dict()
    fwd = {k: v for k, v in sd.items() if not k.endswith("_reverse")}
    rev = {k[:-len("_reverse")]: v for k, v in sd.items() if k.endswith("_reverse")}
    y_f, hf_ref, _ = ref.run_layer("gru", fwd, x, 2, lengths=lengths, reset_after=True)
    # the reverse copy is the same stack run over each sequence reversed
    y_r, hr_ref, _ = ref.run_layer("gru", rev, ref.reverse_padded(x, lengths), 2,
                                   lengths=lengths, reset_after=True)
    y_r = ref.reverse_padded(y_r, lengths)
    expected = np.concatenate([y_f, y_r], axis=2) if merge == "concat" else y_f + y_r
    assert_close(y, expected, np.float64, "y")
    assert_close(h_f, hf_ref, np.float64, "h forward")
    assert_close(h_r, hr_ref, np.float64, "h reverse")


def test_bidirectional_single_layer_is_a_bidirectional_layer(rng):
    """Bidirectional(LSTM(I, H)) and LSTM(I, H, bidirectional=True) share state-dict keys."""
    bi = fastrnn.Bidirectional(fastrnn.LSTM(3, 4, dtype=np.float64, seed=1))
    layer = fastrnn.LSTM(3, 4, bidirectional=True, dtype=np.float64)
    layer.load_state_dict(bi.state_dict())
    x = rng.standard_normal((5, 2, 3))
    lengths = np.array([5, 3])
    y_bi, ((h_f, c_f), (h_r, c_r)) = bi(x, lengths=lengths)
    y_l, (h, c) = layer(x, lengths=lengths)
    np.testing.assert_allclose(y_bi, y_l, rtol=0, atol=1e-14)
    np.testing.assert_allclose(np.concatenate([h_f, h_r]), h, rtol=0, atol=1e-14)
    np.testing.assert_allclose(np.concatenate([c_f, c_r]), c, rtol=0, atol=1e-14)


def test_bidirectional_of_stacked_and_stacked_of_bidirectional(rng):
    stack = fastrnn.Stacked([fastrnn.LSTM(3, 4, dtype=np.float64, seed=1),
                             fastrnn.RNN(4, 2, dtype=np.float64, seed=2)])
    bi = fastrnn.Bidirectional(stack, seed=3)
    x = rng.standard_normal((5, 2, 3))
    lengths = np.array([2, 5])
    y, (s_f, s_r) = bi(x, lengths=lengths)
    assert y.shape == (5, 2, 4) and len(s_f) == 2 and len(s_r) == 2
    y_f, _ = stack(x, lengths=lengths)
    y_r, _ = bi.reverse_layer(ref.reverse_padded(x, lengths), lengths=lengths)
    np.testing.assert_allclose(y[..., :2], y_f, rtol=0, atol=1e-14)
    np.testing.assert_allclose(y[..., 2:], ref.reverse_padded(y_r, lengths), rtol=0, atol=1e-14)
    outer = fastrnn.Stacked([bi, fastrnn.GRU(4, 3, dtype=np.float64, seed=4)])
    y2, states = outer(x, lengths=lengths)
    np.testing.assert_array_equal(y2, outer.layers[1](y, lengths=lengths)[0])
    assert isinstance(states[0], tuple) and len(states[0]) == 2


@pytest.mark.parametrize("mode,cls,opts", CELLS, ids=CELL_IDS)
def test_cell_with_large_weights(mode, cls, opts, rng, monkeypatch):
    """Above _engine._CELL_SPLIT_BYTES (the L3; 1 MiB here) a cell step splits
    its units across threads."""
    from fastrnn import _engine
    monkeypatch.setattr(_engine, "_CELL_SPLIT_BYTES", 1 << 20)
    I = H = 384
    cell = cls(I, H, dtype=np.float64, seed=3, **opts)
    assert cell._layer._w_hh[0].nbytes + cell._layer._w_ih[0].nbytes > _engine._CELL_SPLIT_BYTES
    fastrnn.set_num_threads(2)
    x = rng.standard_normal((2, I))
    h = rng.standard_normal((2, H))
    c = rng.standard_normal((2, H))
    out = cell(x, (h, c) if mode == "lstm" else h)
    sd = cell.state_dict()
    for b in range(2):
        h_ref, c_ref = _ref_step(mode, opts, sd, x[b], h[b], c[b])
        got = out[0][b] if mode == "lstm" else out[b]
        assert_close(got, h_ref, np.float64, "h")
        if mode == "lstm":
            assert_close(out[1][b], c_ref, np.float64, "c")


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("mode,cls,opts", CELLS, ids=CELL_IDS)
def test_cell_step_split_across_threads(mode, cls, opts, threads, rng):
    """One float32 row's step with its hidden units split across the threads
    (forced from 0 bytes of weights on) matches the reference, gives the same
    bits on any number of threads and when the team policy runs it alone
    (the row dot products sum each row in one order), and a layer's one-step
    call of one row is the same step. (The reset-before GRU's step does not
    split: its second product reads r ⊙ h of every unit.)"""
    from fastrnn import _engine
    kernels = _engine._k
    cell = cls(5, 37, seed=0, **opts)
    sd = cell.state_dict()
    x = rng.standard_normal((1, 5)).astype(np.float32)
    h = rng.standard_normal((1, 37)).astype(np.float32)
    c = rng.standard_normal((1, 37)).astype(np.float32)
    hx = (h, c) if mode == "lstm" else h
    layer = {"rnn": fastrnn.RNN, "gru": fastrnn.GRU, "lstm": fastrnn.LSTM}[mode](5, 37, **opts)
    layer.load_state_dict({k + "_l0": v for k, v in sd.items()})
    old = kernels.set_split_step_bytes(0)
    kernels.team_probe("reset")
    try:
        fastrnn.set_num_threads(threads)
        split = cell(x, hx)
        counts = kernels.team_probe("counts")
        if mode == "gru" and not opts["reset_after"] or kernels.panel_kernel() == "blas":
            assert counts["team"] + counts["alone"] == 0     # not split
        else:
            assert counts["team"] + counts["alone"] == 1
        kernels.team_probe("report", 2, 90_000, 100_000)     # late: the next call alone
        alone = cell(x, hx)
        fastrnn.set_num_threads(2)
        _, state = layer(x[None], (h[None], c[None]) if mode == "lstm" else h[None])
    finally:
        kernels.set_split_step_bytes(old)
        kernels.team_probe("reset")
        fastrnn.set_num_threads(None)
    split, alone, state = ((v if mode == "lstm" else (v,)) for v in (split, alone, state))
    for got, same, from_layer in zip(split, alone, state):
        np.testing.assert_array_equal(got, same)
        np.testing.assert_array_equal(got, from_layer[0])
    h_ref, c_ref = _ref_step(mode, opts, sd, x[0], h[0], c[0])
    assert_close(split[0][0], h_ref, np.float32, "h")
    if mode == "lstm":
        assert_close(split[1][0], c_ref, np.float32, "c")


def test_cell_split_stops_at_half_the_l3():
    """A one-row step splits across the threads only while its weights fit
    half the CPU plan's L3 (beyond, the calling thread's BLAS gemv)."""
    from fastrnn import _cpu, _engine
    from fastrnn._kernels import _panels
    kernels = _engine._k
    cell = fastrnn.LSTMCell(16, 16, seed=0)              # 8 KiB of weights
    x = np.ones((1, 16), np.float32)
    old = kernels.set_split_step_bytes(0)
    try:
        fastrnn.set_num_threads(2)
        runs = {}
        for l3 in (1 << 20, 8 << 10):                    # half: 512 KiB, 4 KiB
            _panels.set_cache_sizes(None, None, l3)
            kernels.team_probe("reset")
            runs[l3] = (cell(x), kernels.team_probe("counts")["team"])
    finally:
        _panels.set_cache_sizes(None, None, _cpu.plan().caches.l3 or 0)
        kernels.set_split_step_bytes(old)
        kernels.team_probe("reset")
        fastrnn.set_num_threads(None)
    split = kernels.panel_kernel() != "blas"
    assert runs[1 << 20][1] == (1 if split else 0) and runs[8 << 10][1] == 0
    for a, b in zip(runs[1 << 20][0], runs[8 << 10][0]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("cls", [fastrnn.RNNCell, fastrnn.GRUCell, fastrnn.LSTMCell])
def test_copied_cells_use_their_own_weights(cls):
    """A cell binds its weights to its step kernel once: in-place updates are
    seen, and copies and pickles bind their own arrays."""
    import copy
    import pickle
    cell = cls(3, 4, seed=0)
    x = np.ones((2, 3), np.float32)
    before = np.asarray(cell(x))
    twins = [copy.deepcopy(cell), pickle.loads(pickle.dumps(cell))]
    for arr in cell.parameters():
        arr[...] *= 2.0                      # change the original only
    assert not np.array_equal(np.asarray(cell(x)), before)
    for twin in twins:
        np.testing.assert_array_equal(np.asarray(twin(x)), before)


@pytest.mark.parametrize("cls", [fastrnn.RNN, fastrnn.GRU, fastrnn.LSTM])
def test_copied_layers_stream_with_their_own_weights(cls):
    """One-step calls bind the layer's weights to step kernels; copies bind theirs."""
    import copy
    import pickle
    fastrnn.set_num_threads(1)
    layer = cls(3, 4, num_layers=2, seed=0)
    x = np.ones((1, 2, 3), np.float32)
    before = layer(x)[0]
    twins = [copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))]
    for arr in layer.parameters():
        arr[...] *= 2.0
    assert not np.array_equal(layer(x)[0], before)
    for twin in twins:
        np.testing.assert_array_equal(twin(x)[0], before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode,cls,opts", CELLS, ids=CELL_IDS)
def test_cell_fast_call_is_the_general_path(mode, cls, opts, dtype, rng):
    """A cell call in the common case (C-contiguous batched arrays of the
    cell's dtype) is checked and run by the step kernel itself; it gives the
    general path's numbers bit for bit, and anything else falls back to it."""
    from fastrnn import _engine
    cell = cls(5, 7, dtype=dtype, seed=2, **opts)
    x = rng.standard_normal((3, 5)).astype(dtype)
    h = rng.standard_normal((3, 7)).astype(dtype)
    c = rng.standard_normal((3, 7)).astype(dtype)
    hx = (h, c) if mode == "lstm" else h
    kernel = _engine.cell_stream_kernel(cell._layer)
    pair = mode == "lstm"
    fast = kernel.call(x, hx, pair)
    assert fast is not None and kernel.call(x, None, pair) is not None
    general = _engine.cell_step(cell._layer, x[None], (h, c) if pair else (h,))
    for got, want in zip(fast, general):
        np.testing.assert_array_equal(got, want)
    out = cell(x, hx)
    np.testing.assert_array_equal(out[0] if pair else out, general[0])
    other = np.float64 if dtype == np.float32 else np.float32
    unaligned = np.frombuffer(b"\0" + x.tobytes(), dtype, offset=1).reshape(x.shape)
    swapped = x.astype(x.dtype.newbyteorder())            # same values, other byte order
    sub = x.view(type("Sub", (np.ndarray,), {}))
    h_wrong = h.astype(other)
    bad = [(x[0], hx), (x.astype(other), hx), (np.asfortranarray(x), hx),
           (x.tolist(), hx), (unaligned, hx), (x, [h, c] if pair else h.T),
           (x[:, :4], hx), (x[:2], hx), (x[:0], hx), (swapped, hx), (sub, hx),
           (x[None], hx), (x, (h_wrong, c) if pair else h_wrong),
           (x, (h, c[:2]) if pair else h[:2]), (x, (h, c[:, :6]) if pair else h[:, :6]),
           (x, (h, np.asfortranarray(c)) if pair else np.asfortranarray(h))]
    for i, (bad_x, bad_hx) in enumerate(bad):
        assert kernel.call(bad_x, bad_hx, pair) is None, i
    # a read-only input is read as it is, and nothing passed in is written
    frozen = [a.copy() for a in (x, h, c)]
    for a in frozen:
        a.flags.writeable = False
    before = [a.copy() for a in frozen]
    got = kernel.call(frozen[0], tuple(frozen[1:]) if pair else frozen[1], pair)
    for g, w in zip(got, fast):
        np.testing.assert_array_equal(g, w)
    for a, b in zip(frozen, before):
        np.testing.assert_array_equal(a, b)
