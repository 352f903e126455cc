"""fastrnn against torch.nn (skipped when PyTorch is not installed)."""
import numpy as np
import pytest

import fastrnn
from conftest import assert_close

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}


def _torch_pair(mode, I, H, dtype, seed, **kw):
    """A fastrnn layer and a torch layer holding the same weights (moved fastrnn -> torch)."""
    opts = {k: v for k, v in kw.items() if k not in ("reset_after",)}
    ours = {"rnn": fastrnn.RNN, "gru": fastrnn.GRU, "lstm": fastrnn.LSTM}[mode](
        I, H, dtype=dtype, seed=seed, **kw)
    theirs = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[mode](
        I, H, dtype=TORCH_DTYPE[dtype], **opts)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    return ours, theirs


def torch_outputs(module, xt, hxt, lengths, batch_first):
    """(y, state) of a torch layer on tensors; variable lengths go through
    pack_padded_sequence(enforce_sorted=False) and pad_packed_sequence."""
    if lengths is None:
        return module(xt, hxt)
    packed = pack_padded_sequence(xt, torch.from_numpy(lengths), batch_first=batch_first,
                                  enforce_sorted=False)
    y, state = module(packed, hxt)
    y, _ = pad_packed_sequence(y, batch_first=batch_first,
                               total_length=xt.shape[1 if batch_first else 0])
    return y, state


def _torch_run(module, x, hx, lengths, batch_first):
    with torch.no_grad():
        xt = torch.from_numpy(np.ascontiguousarray(x))
        if hx is not None:
            hx = tuple(map(torch.from_numpy, hx)) if isinstance(hx, tuple) else torch.from_numpy(hx)
        y, state = torch_outputs(module, xt, hx, lengths, batch_first)
    state = tuple(s.numpy() for s in state) if isinstance(state, tuple) else state.numpy()
    return y.numpy(), state


def _random_config(rng):
    mode = str(rng.choice(["rnn", "gru", "lstm"]))
    kw = dict(num_layers=int(rng.integers(1, 4)), bidirectional=bool(rng.integers(2)),
              batch_first=bool(rng.integers(2)), bias=bool(rng.random() < 0.85))
    if mode == "rnn":
        kw["nonlinearity"] = str(rng.choice(["tanh", "relu"]))
    return mode, kw


def random_case(rng, seed, dtype, max_steps, max_batch, max_input, max_hidden, p_state):
    """A random layer pair (fastrnn, torch) with an input, lengths (60% of the
    time) and an initial state (``p_state`` of the time, else None)."""
    mode, kw = _random_config(rng)
    T, B = int(rng.integers(1, max_steps)), int(rng.integers(1, max_batch))
    I, H = int(rng.integers(1, max_input)), int(rng.integers(1, max_hidden))
    ours, theirs = _torch_pair(mode, I, H, dtype, seed, **kw)
    D = 2 if kw["bidirectional"] else 1
    x = rng.standard_normal((B, T, I) if kw["batch_first"] else (T, B, I)).astype(dtype)
    lengths = rng.integers(1, T + 1, B) if rng.random() < 0.6 else None
    shape = (kw["num_layers"] * D, B, H)
    hx = None
    if rng.random() < p_state:
        hx = rng.standard_normal(shape).astype(dtype)
        if mode == "lstm":
            hx = (hx, rng.standard_normal(shape).astype(dtype))
    return mode, kw, ours, theirs, x, lengths, hx, shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(12))
def test_random_configurations_match_torch(seed, dtype):
    rng = np.random.default_rng(seed)
    mode, kw, ours, theirs, x, lengths, hx, _ = random_case(rng, seed, dtype, 30, 9, 20, 24,
                                                             p_state=0.6)
    y, state = ours(x, hx, lengths=lengths)
    y_t, state_t = _torch_run(theirs, x, hx, lengths, kw["batch_first"])
    assert_close(y, y_t, dtype, f"y {mode} {kw}")
    for ours_s, theirs_s in zip(state if mode == "lstm" else (state,),
                                state_t if mode == "lstm" else (state_t,)):
        assert_close(ours_s, theirs_s, dtype, f"state {mode} {kw}")


@pytest.mark.parametrize("mode", ["rnn", "gru", "lstm"])
def test_long_sequence_float32_matches_torch(mode):
    """T = 100, as in DESIGN.md's float32 guarantee."""
    rng = np.random.default_rng(7)
    ours, theirs = _torch_pair(mode, 32, 48, np.float32, 3, num_layers=2, bidirectional=True)
    x = rng.standard_normal((100, 5, 32)).astype(np.float32)
    lengths = np.array([100, 37, 64, 1, 99])
    y, _ = ours(x, lengths=lengths)
    y_t, _ = _torch_run(theirs, x, None, lengths, False)
    assert_close(y, y_t, np.float32, mode)


def test_torch_state_dict_loads_directly():
    """A PyTorch module's state_dict (tensors) loads as it is, and back again."""
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(4, 6, num_layers=2, bidirectional=True)
    ours = fastrnn.LSTM(4, 6, num_layers=2, bidirectional=True)
    ours.load_state_dict(theirs.state_dict())
    x = np.random.default_rng(0).standard_normal((5, 3, 4)).astype(np.float32)
    y, _ = ours(x)
    y_t, _ = _torch_run(theirs, x, None, None, False)
    assert_close(y, y_t, np.float32)
    back = torch.nn.LSTM(4, 6, num_layers=2, bidirectional=True)
    back.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    for k, v in theirs.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)


CELLS = [("RNNCell", {"nonlinearity": "tanh"}), ("RNNCell", {"nonlinearity": "relu"}),
         ("GRUCell", {}), ("LSTMCell", {})]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kw", CELLS, ids=["rnn-tanh", "rnn-relu", "gru", "lstm"])
def test_cells_match_torch(name, kw, dtype):
    rng = np.random.default_rng(1)
    theirs = getattr(torch.nn, name)(7, 5, dtype=TORCH_DTYPE[dtype], **kw)
    ours = getattr(fastrnn, name)(7, 5, dtype=dtype, **kw)
    ours.load_state_dict(theirs.state_dict())
    x = rng.standard_normal((3, 7)).astype(dtype)
    h = rng.standard_normal((3, 5)).astype(dtype)
    hx = (h, rng.standard_normal((3, 5)).astype(dtype)) if name == "LSTMCell" else h
    with torch.no_grad():
        thx = tuple(map(torch.from_numpy, hx)) if name == "LSTMCell" else torch.from_numpy(hx)
        expected = theirs(torch.from_numpy(x), thx)
    got = ours(x, hx)
    if name == "LSTMCell":
        assert_close(got[0], expected[0].numpy(), dtype)
        assert_close(got[1], expected[1].numpy(), dtype)
    else:
        assert_close(got, expected.numpy(), dtype)
