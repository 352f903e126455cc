"""fastrnn layers against the numpy reference of docs/EQUATIONS.md (tests/reference.py)."""
import numpy as np
import pytest

import fastrnn
from fastrnn import _engine as engine
from conftest import CELL_FORMS, CELL_IDS, assert_close, ref_options
import reference as ref


def _random_state(rng, layer, batch, dtype):
    shape = (layer.num_layers * layer.num_directions, batch, layer.hidden_size)
    return rng.standard_normal(shape).astype(dtype) * 0.5


def _check_layer(layer, mode, opts, x, rng, lengths=None, with_state=False):
    dtype = layer.dtype
    T, B, _ = x.shape
    h0 = _random_state(rng, layer, B, dtype) if with_state else None
    c0 = _random_state(rng, layer, B, dtype) if with_state and mode == "lstm" else None
    hx = (h0, c0) if mode == "lstm" and with_state else h0
    y, state = layer(x, hx, lengths=lengths)
    y_ref, h_ref, c_ref = ref.run_layer(mode, layer.state_dict(), x, layer.num_layers,
                                        layer.bidirectional, h0, c0, lengths,
                                        **ref_options(mode, opts))
    assert y.dtype == dtype
    assert_close(y, y_ref, dtype, "y")
    if mode == "lstm":
        assert_close(state[0], h_ref, dtype, "h_n")
        assert_close(state[1], c_ref, dtype, "c_n")
    else:
        assert_close(state, h_ref, dtype, "h_n")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, False), (1, True),
                                                      (3, True)])
@pytest.mark.parametrize("mode,cls,opts", CELL_FORMS, ids=CELL_IDS)
def test_layer_matches_reference(mode, cls, opts, num_layers, bidirectional, dtype, rng):
    layer = cls(5, 6, num_layers=num_layers, bidirectional=bidirectional, dtype=dtype,
                seed=1, **opts)
    x = rng.standard_normal((7, 4, 5)).astype(dtype)
    _check_layer(layer, mode, opts, x, rng)
    lengths = np.array([3, 7, 1, 5])
    _check_layer(layer, mode, opts, x, rng, lengths=lengths, with_state=True)


@pytest.mark.parametrize("mode,cls,opts", CELL_FORMS, ids=CELL_IDS)
@pytest.mark.parametrize("T,B,I,H", [(1, 1, 1, 1), (1, 3, 2, 1), (6, 1, 1, 3), (4, 2, 3, 1)])
def test_odd_sizes(mode, cls, opts, T, B, I, H, rng):
    layer = cls(I, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=2, **opts)
    x = rng.standard_normal((T, B, I))
    _check_layer(layer, mode, opts, x, rng, with_state=True)
    _check_layer(layer, mode, opts, x, rng, lengths=rng.integers(1, T + 1, B))


@pytest.mark.parametrize("mode,cls,opts", CELL_FORMS, ids=CELL_IDS)
def test_without_bias(mode, cls, opts, rng):
    layer = cls(4, 5, num_layers=2, bias=False, bidirectional=True, dtype=np.float64,
                seed=3, **opts)
    assert not any(k.startswith("bias") for k in layer.state_dict())
    _check_layer(layer, mode, opts, rng.standard_normal((5, 3, 4)), rng,
                 lengths=np.array([5, 2, 4]), with_state=True)


@pytest.mark.parametrize("mode,cls,opts", CELL_FORMS, ids=CELL_IDS)
def test_padded_steps_are_zero_and_final_state_is_last_valid(mode, cls, opts, rng):
    layer = cls(3, 4, bidirectional=True, dtype=np.float64, seed=4, **opts)
    x = rng.standard_normal((6, 3, 3))
    lengths = np.array([2, 6, 4])
    y, state = layer(x, lengths=lengths)
    h_n = state[0] if mode == "lstm" else state
    for b, n in enumerate(lengths):
        assert np.all(y[n:, b] == 0.0)
        np.testing.assert_array_equal(h_n[0, b], y[n - 1, b, :4])   # forward: last valid step
        np.testing.assert_array_equal(h_n[1, b], y[0, b, 4:])       # reverse: ends at step 0
        # the padded values of x must not matter
        alone, _ = layer(x[:n, b:b + 1])
        np.testing.assert_allclose(y[:n, b:b + 1], alone, rtol=0, atol=1e-14)


@pytest.mark.parametrize("mode,cls,opts", CELL_FORMS, ids=CELL_IDS)
def test_batch_first_and_unbatched(mode, cls, opts, rng):
    tm = cls(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=5, **opts)
    bf = cls(3, 4, num_layers=2, bidirectional=True, batch_first=True, dtype=np.float64,
             **opts)
    bf.load_state_dict(tm.state_dict())
    x = rng.standard_normal((5, 2, 3))
    lengths = np.array([5, 3])
    y_tm, s_tm = tm(x, lengths=lengths)
    y_bf, s_bf = bf(x.transpose(1, 0, 2), lengths=lengths)
    assert y_bf.shape == (2, 5, 8) and y_bf.flags.c_contiguous
    np.testing.assert_array_equal(y_bf, y_tm.transpose(1, 0, 2))
    for a, b in zip(np.atleast_1d(s_tm) if mode != "lstm" else s_tm,
                    np.atleast_1d(s_bf) if mode != "lstm" else s_bf):
        np.testing.assert_array_equal(a, b)
    # unbatched (T, I) is a batch of one without the batch axis
    y_u, s_u = tm(x[:, 0])
    y_1, s_1 = tm(x[:, :1])
    assert y_u.shape == (5, 8)
    np.testing.assert_array_equal(y_u, y_1[:, 0])
    if mode == "lstm":
        assert s_u[0].shape == (4, 4) and s_u[1].shape == (4, 4)
        np.testing.assert_array_equal(s_u[1], s_1[1][:, 0])
    else:
        assert s_u.shape == (4, 4)
        np.testing.assert_array_equal(s_u, s_1[:, 0])


@pytest.mark.parametrize("mode,cls,opts", CELL_FORMS, ids=CELL_IDS)
def test_unbatched_initial_state(mode, cls, opts, rng):
    layer = cls(3, 4, num_layers=2, dtype=np.float64, seed=6, **opts)
    x = rng.standard_normal((5, 3))
    h0 = rng.standard_normal((2, 4))
    hx = (h0, rng.standard_normal((2, 4))) if mode == "lstm" else h0
    y, _ = layer(x, hx)
    hx_b = tuple(s[:, None] for s in hx) if mode == "lstm" else h0[:, None]
    y_b, _ = layer(x[:, None], hx_b)
    np.testing.assert_array_equal(y, y_b[:, 0])


@pytest.mark.parametrize("mode,cls,opts", CELL_FORMS, ids=CELL_IDS)
def test_step_chunks_do_not_change_results(mode, cls, opts, rng, monkeypatch):
    """Long sequences are projected in chunks of steps; the chunk size is invisible."""
    layer = cls(4, 5, bidirectional=True, dtype=np.float64, seed=7, **opts)
    x = rng.standard_normal((40, 3, 4))
    lengths = np.array([40, 17, 33])
    y_one, s_one = layer(x, lengths=lengths)
    monkeypatch.setattr(engine, "_STEP_CHUNK_ELEMENTS", 1)   # one step per chunk
    y_small, s_small = layer(x, lengths=lengths)
    np.testing.assert_allclose(y_small, y_one, rtol=0, atol=1e-13)
    _check_layer(layer, mode, opts, x, rng, lengths=lengths, with_state=True)


@pytest.mark.parametrize("tokens", [False, True], ids=["floats", "token-ids"])
@pytest.mark.parametrize("mode,cls,opts", CELL_FORMS, ids=CELL_IDS)
def test_step_chunks_do_not_change_training(mode, cls, opts, tokens, rng, monkeypatch):
    """Training keeps every chunk's rows one after the other (batch split,
    two layers, ragged lengths): forward outputs and every gradient equal
    those of one chunk of all steps."""
    layer = cls(4, 5, num_layers=2, bidirectional=True, dtype=np.float64, seed=7, **opts)
    x = rng.integers(0, 4, (23, 5)) if tokens else rng.standard_normal((23, 5, 4))
    lengths = np.array([23, 9, 17, 1, 23])
    dy = rng.standard_normal((23, 5, 10))

    def run():
        layer.zero_grad()
        y, h_n, ctx = layer.forward(x, lengths=lengths)
        dx, dh0 = layer.backward(ctx, dy)
        return y, h_n, dx, dh0, {k: v.copy() for k, v in layer.grads.items()}

    one = run()
    monkeypatch.setattr(engine, "_STEP_CHUNK_ELEMENTS", 1)   # one step per chunk
    small = run()
    for a, b in zip(_leaves(one), _leaves(small)):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-12)


def _leaves(tree):
    """The arrays of nested tuples/dicts (None skipped), in order."""
    if tree is None:
        return []
    if isinstance(tree, dict):
        return [a for k in sorted(tree) for a in _leaves(tree[k])]
    if isinstance(tree, (tuple, list)):
        return [a for t in tree for a in _leaves(t)]
    return [tree]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode,cls,opts", CELL_FORMS, ids=CELL_IDS)
def test_thread_counts_agree(mode, cls, opts, dtype, rng):
    """The batch is split into blocks per thread; results do not depend on the split
    beyond rounding (a block of one row uses a matrix-vector product)."""
    layer = cls(6, 8, num_layers=2, bidirectional=True, dtype=dtype, seed=8, **opts)
    x = rng.standard_normal((9, 11, 6)).astype(dtype)
    lengths = rng.integers(1, 10, 11)
    results = []
    for n in (1, 2, 3, 7):
        fastrnn.set_num_threads(n)
        results.append(layer(x, lengths=lengths)[0])
    for r in results[1:]:
        assert_close(r, results[0], dtype, "threads")


@pytest.mark.parametrize("mode,cls,opts", CELL_FORMS, ids=CELL_IDS)
def test_strided_fortran_readonly_inputs(mode, cls, opts, rng):
    layer = cls(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=9, **opts)
    base = rng.standard_normal((12, 6, 7))
    x = base[::2, 1:4, 2:5]                       # strided on every axis
    expected, _ = layer(np.ascontiguousarray(x))
    fortran = np.asfortranarray(x)
    readonly = x.copy()
    readonly.flags.writeable = False
    reversed_view = np.ascontiguousarray(x[::-1])[::-1]   # negative strides
    for arr in (x, fortran, readonly, reversed_view, x.tolist(), x.astype(np.float32)):
        y, _ = layer(arr)
        tol = 1e-6 if getattr(arr, "dtype", None) == np.float32 else 0
        np.testing.assert_allclose(y, expected, rtol=0, atol=tol)
    snapshot = base.copy()
    layer(x, lengths=np.array([6, 1, 3]))
    np.testing.assert_array_equal(base, snapshot)


@pytest.mark.parametrize("mode,cls,opts", CELL_FORMS, ids=CELL_IDS)
def test_inputs_and_states_not_modified(mode, cls, opts, rng):
    layer = cls(3, 4, num_layers=2, dtype=np.float64, seed=10, **opts)
    x = rng.standard_normal((4, 2, 3))
    lengths = np.array([4, 2])
    h0 = rng.standard_normal((2, 2, 4))
    c0 = rng.standard_normal((2, 2, 4))
    hx = (h0, c0) if mode == "lstm" else h0
    copies = [a.copy() for a in (x, lengths, h0, c0)]
    sd = layer.state_dict()
    layer(x, hx, lengths=lengths)
    for a, b in zip((x, lengths, h0, c0), copies):
        np.testing.assert_array_equal(a, b)
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])


@pytest.mark.parametrize("split_units", [False, True], ids=["batch-split", "unit-split"])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("mode,cls,opts", CELL_FORMS, ids=CELL_IDS)
def test_both_thread_splits_match_reference(mode, cls, opts, threads, split_units, rng,
                                            monkeypatch):
    """Small batches split the hidden units across threads, others the batch;
    both give the reference's answer, forwards and in reverse (Bidirectional)."""
    monkeypatch.setattr(engine, "_split_units", lambda *a: split_units)
    fastrnn.set_num_threads(threads)
    layer = cls(4, 7, num_layers=2, dtype=np.float64, seed=11, **opts)
    x = rng.standard_normal((9, 3, 4))
    lengths = np.array([4, 9, 1])
    _check_layer(layer, mode, opts, x, rng, lengths=lengths, with_state=True)
    bi = fastrnn.Bidirectional(layer, seed=12)
    y, _ = bi(x, lengths=lengths)
    y_r, _, _ = ref.run_layer(mode, {k[:-8]: v for k, v in bi.state_dict().items()
                                     if k.endswith("_reverse")},
                              x, 2, lengths=lengths, reverse=True, **ref_options(mode, opts))
    assert_close(y[..., 7:], y_r, np.float64, "reverse copy")
    # float32, and a step chunk smaller than the sequence
    monkeypatch.setattr(engine, "_STEP_CHUNK_ELEMENTS", 1)
    layer32 = cls(4, 7, num_layers=2, dtype=np.float32, seed=11, **opts)
    _check_layer(layer32, mode, opts, x.astype(np.float32), rng, lengths=lengths,
                 with_state=True)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode,cls,opts", CELL_FORMS, ids=CELL_IDS)
def test_one_step_calls_stream_on_the_calling_thread(mode, cls, opts, dtype, threads, rng,
                                                     monkeypatch):
    """A one-step call with few rows runs every layer on the calling thread
    (as a cell does); it equals the thread team's answer and, step by step,
    the whole sequence."""
    fastrnn.set_num_threads(threads)
    for bidirectional in (False, True):
        layer = cls(5, 6, num_layers=2, bidirectional=bidirectional, dtype=dtype, seed=3,
                    **opts)
        D = 2 if bidirectional else 1
        batch = 2
        for tokens in (False, True):
            x = (rng.integers(0, 5, (4, batch)) if tokens
                 else rng.standard_normal((4, batch, 5)).astype(dtype))
            h0 = rng.standard_normal((2 * D, batch, 6)).astype(dtype)
            hx = (h0, h0 * 0.5) if mode == "lstm" else h0
            streams = engine.streams(layer, batch, threads)
            assert streams == (threads == 1 or not bidirectional)
            got = layer(x[:1], hx)
            with monkeypatch.context() as m:
                m.setattr(engine, "streams", lambda *a: False)
                want = layer(x[:1], hx)
            tol = 1e-6 if dtype == np.float32 else 1e-13
            assert_close(got[0], want[0], dtype, "y")
            for a, b in zip(np.atleast_1d(got[1]) if mode != "lstm" else got[1],
                            np.atleast_1d(want[1]) if mode != "lstm" else want[1]):
                np.testing.assert_allclose(a, b, rtol=0, atol=tol)
            if not bidirectional:
                y_all, _ = layer(x, hx)
                state = hx
                for t in range(4):
                    y_t, state = layer(x[t:t + 1], state)
                    np.testing.assert_allclose(y_t[0], y_all[t], rtol=0, atol=10 * tol)
