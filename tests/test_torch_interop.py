"""fastrnn.from_torch / to_torch against PyTorch's own outputs (skipped without torch)."""
import numpy as np
import pytest

import fastrnn
from conftest import assert_close

torch = pytest.importorskip("torch")
nn = torch.nn

TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}


def _run_torch(module, *args):
    with torch.no_grad():
        return module(*(torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in args))


def _layer_cases():
    """Random configurations of every torch layer form (seeded)."""
    rng = np.random.default_rng(7)
    cases = []
    for kind in ("rnn-tanh", "rnn-relu", "gru", "lstm"):
        for i in range(3):
            cases.append(pytest.param(
                kind, int(rng.integers(1, 9)), int(rng.integers(1, 12)),
                int(rng.integers(1, 4)), bool(rng.integers(2)), bool(rng.integers(2)),
                bool(i != 1), np.float64 if i == 2 else np.float32,
                id=f"{kind}-{i}"))
    return cases


@pytest.mark.parametrize("kind,I,H,L,bidir,batch_first,bias,dtype", _layer_cases())
def test_layers_from_torch(kind, I, H, L, bidir, batch_first, bias, dtype):
    torch.manual_seed(0)
    cls = {"rnn-tanh": nn.RNN, "rnn-relu": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[kind]
    extra = {"nonlinearity": kind[4:]} if kind.startswith("rnn") else {}
    theirs = cls(I, H, num_layers=L, bias=bias, batch_first=batch_first, bidirectional=bidir,
                 **extra).to(TORCH_DTYPE[dtype])
    before = {k: v.clone() for k, v in theirs.state_dict().items()}
    ours = fastrnn.from_torch(theirs)
    assert type(ours).__name__ == cls.__name__ and ours.dtype is dtype
    assert (ours.num_layers, ours.bidirectional, ours.batch_first, ours.bias) == \
        (L, bidir, batch_first, bias)
    rng = np.random.default_rng(1)
    T, B = 6, 3
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(dtype)
    y, state = ours(x)
    y_t, state_t = _run_torch(theirs, x)
    assert_close(y, y_t.numpy(), dtype, "y")
    for a, b in zip(state if kind == "lstm" else (state,),
                    state_t if kind == "lstm" else (state_t,)):
        assert_close(a, b.numpy(), dtype, "state")
    # the source is untouched, and the copy independent of it
    for k, v in theirs.state_dict().items():
        assert torch.equal(v, before[k])
    ours.parameters()[0][...] = 0
    assert torch.equal(theirs.state_dict()["weight_ih_l0"], before["weight_ih_l0"])


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_layers_round_trip_to_torch(kind):
    cls = {"rnn": fastrnn.RNN, "gru": fastrnn.GRU, "lstm": fastrnn.LSTM}[kind]
    ours = cls(4, 5, num_layers=2, bidirectional=True, batch_first=True, seed=3)
    theirs = fastrnn.to_torch(ours)
    assert theirs.bidirectional and theirs.num_layers == 2 and theirs.batch_first
    x = np.random.default_rng(2).standard_normal((3, 7, 4)).astype(np.float32)
    y, _ = ours(x)
    y_t, _ = _run_torch(theirs, x)
    assert_close(y, y_t.numpy(), np.float32, "y")
    back = fastrnn.from_torch(theirs)
    for k, v in ours.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], v)


def test_bidirectional_to_torch():
    ours = fastrnn.Bidirectional(fastrnn.GRU(3, 4, seed=1), seed=2)
    theirs = fastrnn.to_torch(ours)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    lengths = np.array([5, 3])
    y, _ = ours(x, lengths=lengths)
    packed = nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths),
                                               enforce_sorted=False)
    with torch.no_grad():
        y_t, _ = nn.utils.rnn.pad_packed_sequence(theirs(packed)[0], total_length=5)
    assert_close(y, y_t.numpy(), np.float32, "y")
    with pytest.raises(ValueError, match="merge='concat'"):
        fastrnn.to_torch(fastrnn.Bidirectional(fastrnn.GRU(3, 4), merge="sum"))
    with pytest.raises(ValueError, match="one-layer"):
        fastrnn.to_torch(fastrnn.Bidirectional(fastrnn.GRU(3, 4, num_layers=2)))


@pytest.mark.parametrize("cls", ["RNNCell", "GRUCell", "LSTMCell"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cells_both_ways(cls, dtype):
    torch.manual_seed(1)
    theirs = getattr(nn, cls)(5, 6).to(TORCH_DTYPE[dtype])
    ours = fastrnn.from_torch(theirs)
    assert type(ours).__name__ == cls
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5)).astype(dtype)
    h = rng.standard_normal((3, 6)).astype(dtype)
    hx = (h, h * 0.5) if cls == "LSTMCell" else h
    out = ours(x, hx)
    out_t = _run_torch(theirs, x, tuple(map(torch.from_numpy, hx)) if cls == "LSTMCell"
                       else torch.from_numpy(hx))
    for a, b in zip(out if cls == "LSTMCell" else (out,),
                    out_t if cls == "LSTMCell" else (out_t,)):
        assert_close(a, b.numpy(), dtype, cls)
    again = fastrnn.to_torch(ours)
    assert type(again) is type(theirs)
    for k, v in theirs.state_dict().items():
        assert torch.equal(again.state_dict()[k], v)


@pytest.mark.parametrize("layer", [
    lambda: fastrnn.LSTM(3, 4, clip=1.0), lambda: fastrnn.LSTM(3, 4, peepholes=True),
    lambda: fastrnn.LSTM(3, 4, input_forget=True),
    lambda: fastrnn.GRU(3, 4, activations=["hardsigmoid", "tanh"]),
    lambda: fastrnn.RNN(3, 4, clip=2.0)])
def test_variants_torch_lacks_are_refused(layer):
    with pytest.raises(ValueError, match="only proj_size"):
        fastrnn.to_torch(layer())


def test_gru_reset_before_has_no_torch_form():
    with pytest.raises(ValueError, match="reset_after=False"):
        fastrnn.to_torch(fastrnn.GRU(2, 3, reset_after=False))
    with pytest.raises(ValueError, match="reset_after=False"):
        fastrnn.to_torch(fastrnn.GRUCell(2, 3, reset_after=False))


def test_sequential_with_activations_and_dropout():
    torch.manual_seed(2)
    theirs = nn.Sequential(nn.Embedding(11, 6), nn.Linear(6, 8), nn.Tanh(), nn.Dropout(0.3),
                           nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3)).eval()
    ours = fastrnn.from_torch(theirs)
    assert isinstance(ours, fastrnn.Sequential) and len(ours) == 4
    assert [getattr(m, "activation", None) for m in ours] == [None, "tanh", "relu", None]
    ids = np.random.default_rng(0).integers(0, 11, (4, 7))
    assert_close(ours(ids), _run_torch(theirs, torch.from_numpy(ids)).numpy(), np.float32, "y")


def test_sequential_ending_in_lstm_and_custom_module():
    torch.manual_seed(3)
    seq = nn.Sequential(nn.Embedding(9, 4), nn.LSTM(4, 5, num_layers=2, batch_first=True,
                                                    bidirectional=True))
    ours = fastrnn.from_torch(seq)
    ids = np.random.default_rng(1).integers(0, 9, (2, 6))
    y_t, _ = _run_torch(seq, torch.from_numpy(ids))
    assert_close(ours(ids), y_t.numpy(), np.float32, "y")

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(9, 4)
            self.rnn = nn.GRU(4, 5, batch_first=True)
            self.heads = nn.ModuleList([nn.Linear(5, 2), nn.Linear(5, 3)])

        def forward(self, ids):
            y, _ = self.rnn(self.embed(ids))
            return [head(y) for head in self.heads]

    model = Tagger()
    parts = fastrnn.from_torch(model)
    assert set(parts) == {"embed", "rnn", "heads"} and len(parts["heads"]) == 2
    y, _ = parts["rnn"](parts["embed"](ids))
    for head, expected in zip(parts["heads"], _run_torch(model, torch.from_numpy(ids))):
        assert_close(head(y), expected.numpy(), np.float32, "head")


def test_float16_module_needs_dtype():
    theirs = nn.Linear(3, 2).to(torch.float16)
    with pytest.raises(ValueError, match="pass dtype"):
        fastrnn.from_torch(theirs)
    ours = fastrnn.from_torch(theirs, dtype=np.float32)
    np.testing.assert_array_equal(ours.state_dict()["weight"],
                                  theirs.weight.detach().float().numpy())
    with pytest.raises(ValueError, match="float32 or float64"):
        fastrnn.from_torch(theirs, dtype=np.int32)


@pytest.mark.parametrize("module,error,match", [
    (lambda: nn.Conv1d(2, 2, 3), TypeError, r"Conv1d: cannot convert torch\.nn"),
    (lambda: nn.Sequential(nn.Linear(2, 2), nn.Conv1d(2, 2, 1)), TypeError,
     r"Sequential\[1\]: cannot convert"),
    (lambda: nn.Embedding(5, 3, max_norm=1.0), ValueError, "max_norm"),
    (lambda: nn.Sequential(nn.Embedding(5, 3), nn.ReLU()), TypeError, "does not follow a Linear"),
    (lambda: nn.Sequential(nn.Dropout()), ValueError, "nothing to convert"),
    (lambda: nn.Sequential(nn.LSTMCell(2, 3)), TypeError, "cell inside"),
    (lambda: nn.Sequential(nn.Linear(2, 3), nn.Linear(4, 1)), ValueError, "reads 4 features"),
])
def test_refusals(module, error, match):
    with pytest.raises(error, match=match):
        fastrnn.from_torch(module())


def test_refuses_non_modules_and_unknown_fastrnn_modules():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        fastrnn.from_torch({"weight": np.zeros(3)})
    with pytest.raises(TypeError, match="fastrnn RNN/GRU/LSTM"):
        fastrnn.to_torch(fastrnn.Stacked([fastrnn.LSTM(2, 3)]))


def test_sequential_training_matches_torch_autograd():
    """Sequential.forward/backward: the gradients PyTorch's autograd gives."""
    torch.manual_seed(4)
    theirs = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.GRU(4, 5)).double()
    ours = fastrnn.from_torch(theirs)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 2, 3))
    dy = rng.standard_normal((6, 2, 5))
    y, ctx = ours.forward(x)
    dx = ours.backward(ctx, dy)
    xt = torch.from_numpy(x).requires_grad_()
    yt, _ = theirs(xt)
    (yt * torch.from_numpy(dy)).sum().backward()
    assert_close(y, yt.detach().numpy(), np.float64, "y")
    assert_close(dx, xt.grad.numpy(), np.float64, "dx")
    torch_grads = dict(theirs.named_parameters())
    names = {"0.weight": "0.weight", "0.bias": "0.bias", "1.weight_hh_l0": "2.weight_hh_l0",
             "1.weight_ih_l0": "2.weight_ih_l0", "1.bias_ih_l0": "2.bias_ih_l0"}
    for ours_name, torch_name in names.items():
        assert_close(ours.grads[ours_name], torch_grads[torch_name].grad.numpy(), np.float64,
                     ours_name)
    with pytest.raises(ValueError, match="already been backpropagated"):
        ours.backward(ctx, dy)


def test_meta_device_module_refused():
    with pytest.raises(ValueError, match="meta device"):
        fastrnn.from_torch(nn.LSTM(3, 4, device="meta"))
