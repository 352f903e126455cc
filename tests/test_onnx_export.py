"""fastrnn.onnx.export: ONNX Runtime runs the exported graph with fastrnn's outputs
(float32, within 1e-5; skipped without onnx and onnxruntime)."""
import numpy as np
import pytest

import fastrnn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
import fastrnn.onnx  # noqa: E402
from onnx_helpers import close, session  # noqa: E402





def _flat_states(state):
    """A fastrnn state structure as the flat list of its arrays (h before c;
    Stacked by layer; Bidirectional forward then reverse)."""
    if isinstance(state, np.ndarray):
        return [state]
    return [a for part in state for a in _flat_states(part)]


def _layer(kind, I, H, seed, **kw):
    if kind.startswith("rnn"):
        return fastrnn.RNN(I, H, nonlinearity=kind[4:], seed=seed, **kw)
    if kind.startswith("gru"):
        return fastrnn.GRU(I, H, reset_after=kind == "gru-after", seed=seed, **kw)
    return fastrnn.LSTM(I, H, seed=seed, **kw)


KINDS = ["rnn-tanh", "rnn-relu", "gru-after", "gru-before", "lstm"]


def _cases():
    rng = np.random.default_rng(11)
    out = []
    for kind in KINDS:
        for i in range(3):
            out.append(pytest.param(kind, int(rng.integers(1, 3)), bool(rng.integers(2)),
                                    bool(rng.integers(2)), i != 2, i == 1, i == 0,
                                    id=f"{kind}-{i}"))
    return out


@pytest.mark.parametrize("kind,L,bidir,batch_first,bias,lengths,initial", _cases())
def test_layer_export(tmp_path, kind, L, bidir, batch_first, bias, lengths, initial):
    rng = np.random.default_rng(3)
    I, H, T, B = 5, 6, 7, 4
    layer = _layer(kind, I, H, 2, num_layers=L, bidirectional=bidir, batch_first=batch_first,
                   bias=bias)
    path = fastrnn.onnx.export(layer, tmp_path / "m.onnx", lengths=lengths,
                               initial_state=initial)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(np.float32)
    feed = {"input": x}
    lens = np.array([7, 2, 5, 1], np.int32) if lengths else None
    if lengths:
        feed["lengths"] = lens
    hx = None
    if initial:
        shape = (L * layer.num_directions, B, H)
        hx = tuple(rng.standard_normal(shape).astype(np.float32)
                   for _ in range(2 if kind == "lstm" else 1))
        feed.update(zip(("h0", "c0"), hx))
        hx = hx if kind == "lstm" else hx[0]
    y, state = layer(x, hx, lengths=lens)
    got = session(path).run(None, feed)
    close(got[0], y, "y")
    for a, b in zip(got[1:], _flat_states(state), strict=True):
        close(a, b, "state")


def test_composites_export(tmp_path):
    rng = np.random.default_rng(4)
    stacked = fastrnn.Stacked([fastrnn.GRU(3, 4, seed=1, reset_after=False),
                               fastrnn.LSTM(4, 5, num_layers=2, seed=2),
                               fastrnn.RNN(5, 3, bidirectional=True, seed=3)])
    bi = fastrnn.Bidirectional(fastrnn.Stacked([fastrnn.LSTM(3, 4, seed=4),
                                                fastrnn.GRU(4, 2, seed=5)]), seed=6)
    bi_sum = fastrnn.Bidirectional(fastrnn.LSTM(3, 4, num_layers=2, seed=7), merge="sum",
                                   seed=8)
    x = rng.standard_normal((6, 3, 3)).astype(np.float32)
    lens = np.array([6, 4, 1], np.int32)
    for i, module in enumerate((stacked, bi, bi_sum)):
        path = fastrnn.onnx.export(module, tmp_path / f"c{i}.onnx", lengths=True,
                                   initial_state=True)
        sess = session(path)
        names = [n.name for n in sess.get_inputs()][2:]
        h0 = [rng.standard_normal([x.shape[1] if d == "B" else d for d in inp.shape])
              .astype(np.float32) for inp in sess.get_inputs()[2:]]
        feed = {"input": x, "lengths": lens, **dict(zip(names, h0))}
        # rebuild the module's state structure from the flat list
        if module is stacked:
            hx = [h0[0], (h0[1], h0[2]), h0[3]]
        elif module is bi:
            hx = ([(h0[0], h0[1]), h0[2]], [(h0[3], h0[4]), h0[5]])
        else:
            hx = ((h0[0], h0[1]), (h0[2], h0[3]))
        y, state = module(x, hx, lengths=lens)
        got = sess.run(None, feed)
        close(got[0], y, f"y of {module!r}")
        for a, b in zip(got[1:], _flat_states(state), strict=True):
            close(a, b, f"state of {module!r}")


def test_sequential_dense_embedding_export(tmp_path):
    rng = np.random.default_rng(5)
    seq = fastrnn.Sequential([fastrnn.Embedding(10, 4, seed=1),
                              fastrnn.LSTM(4, 6, batch_first=True, bidirectional=True, seed=2),
                              fastrnn.Dense(12, 5, activation="tanh", seed=3),
                              fastrnn.GRU(5, 3, seed=4),          # time-major: reads (B, T) as (T, B)
                              fastrnn.Dense(3, 2, seed=5)])
    ids = rng.integers(0, 10, (3, 8))
    sess = session(fastrnn.onnx.export(seq, tmp_path / "s.onnx"))
    close(sess.run(None, {"input": ids})[0], seq(ids), "sequential")
    dense = fastrnn.Dense(4, 3, activation="sigmoid", seed=1)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    close(session(fastrnn.onnx.export(dense, tmp_path / "d.onnx")).run(None, {"input": x})[0],
           dense(x), "dense")
    emb = fastrnn.Embedding(7, 3, seed=2)
    ids = rng.integers(0, 7, (2, 5))
    close(session(fastrnn.onnx.export(emb, tmp_path / "e.onnx")).run(None, {"input": ids})[0],
           emb(ids), "embedding")


def test_sequential_lengths_export(tmp_path):
    seq = fastrnn.Sequential([fastrnn.Embedding(10, 4, seed=1),
                              fastrnn.GRU(4, 6, batch_first=True, seed=2),
                              fastrnn.Dense(6, 2, seed=3)])
    ids = np.random.default_rng(6).integers(0, 10, (3, 8))
    lens = np.array([8, 2, 5], np.int32)
    sess = session(fastrnn.onnx.export(seq, tmp_path / "s.onnx", lengths=True))
    close(sess.run(None, {"input": ids, "lengths": lens})[0], seq(ids, lengths=lens), "y")
    with pytest.raises(ValueError, match="initial_state"):
        fastrnn.onnx.export(seq, tmp_path / "t.onnx", initial_state=True)


@pytest.mark.parametrize("kind", KINDS)
def test_cell_export(tmp_path, kind):
    rng = np.random.default_rng(7)
    if kind == "lstm":
        cell = fastrnn.LSTMCell(4, 5, seed=1)
    elif kind.startswith("gru"):
        cell = fastrnn.GRUCell(4, 5, reset_after=kind == "gru-after", seed=1)
    else:
        cell = fastrnn.RNNCell(4, 5, nonlinearity=kind[4:], seed=1)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    h = rng.standard_normal((3, 5)).astype(np.float32)
    hx = (h, -h) if kind == "lstm" else h
    feed = {"input": x, "h0": h, **({"c0": -h} if kind == "lstm" else {})}
    got = session(fastrnn.onnx.export(cell, tmp_path / "c.onnx")).run(None, feed)
    out = cell(x, hx)
    for a, b in zip(got, out if kind == "lstm" else (out,), strict=True):
        close(a, b, kind)


def test_trained_model_runs_unchanged(tmp_path):
    """A Sequential trained in fastrnn (a few Adam steps) exports with its new weights."""
    rng = np.random.default_rng(8)
    seq = fastrnn.Sequential([fastrnn.LSTM(3, 8, batch_first=True, seed=1),
                              fastrnn.Dense(8, 1, seed=2)])
    x = rng.standard_normal((16, 10, 3)).astype(np.float32)
    target = x.cumsum(axis=1)[..., :1]
    opt = fastrnn.optim.Adam(seq, lr=1e-2)
    before = seq(x).copy()
    for _ in range(5):
        seq.zero_grad()
        y, ctx = seq.forward(x)
        seq.backward(ctx, 2 * (y - target) / y.size)
        opt.step()
    assert np.abs(seq(x) - before).max() > 1e-3
    sess = session(fastrnn.onnx.export(seq, tmp_path / "t.onnx"))
    close(sess.run(None, {"input": x})[0], seq(x), "trained")


def test_export_refusals(tmp_path):
    with pytest.raises(TypeError, match="got dict"):
        fastrnn.onnx.export({}, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("inner", [
    lambda: fastrnn.LSTM(4, 5, num_layers=2, batch_first=True, seed=2),
    lambda: fastrnn.GRU(4, 5, bidirectional=True, batch_first=True, seed=2),
    lambda: fastrnn.Stacked([fastrnn.RNN(4, 3, batch_first=True, seed=2),
                             fastrnn.Bidirectional(fastrnn.LSTM(3, 5, batch_first=True,
                                                                num_layers=2, seed=3))]),
    lambda: fastrnn.Bidirectional(fastrnn.GRU(4, 5, batch_first=True, seed=4), merge="sum"),
], ids=["lstm2", "bigru", "stacked-bi", "bi-sum"])
def test_final_state_classifier_export(tmp_path, inner):
    """Embedding -> FinalState(...) -> Dense(softmax): a many-to-one classifier."""
    module = inner()
    seq = fastrnn.Sequential([fastrnn.Embedding(9, 4, seed=1), fastrnn.FinalState(module),
                              fastrnn.Dense(fastrnn.FinalState(module).output_size, 3,
                                            activation="softmax", seed=5)])
    ids = np.random.default_rng(9).integers(0, 9, (4, 6))
    lens = np.array([6, 1, 3, 5], np.int32)
    sess = session(fastrnn.onnx.export(seq, tmp_path / "f.onnx", lengths=True))
    got = sess.run(None, {"input": ids, "lengths": lens})[0]
    assert got.shape == (4, 3)
    close(got, seq(ids, lengths=lens), "classifier")
