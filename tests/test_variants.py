"""The cell variants of the general path (fastrnn._general): proj_size,
peepholes, input_forget, clip, ONNX activations.

- with the default options forced onto the general path it gives the
  kernels' results (outputs, states and every gradient);
- BPTT gradients of every variant by finite differences (float64);
- PyTorch's LSTM with proj_size: outputs and autograd's gradients, and the
  conversions both ways;
- files, copies, composition.
ONNX Runtime's results for the ONNX variants: tests/test_onnx_load.py."""
import copy

import numpy as np
import pytest

import fastrnn
from conftest import assert_close
from gradcheck import assert_grad_close, flat_states, like_state, numeric_grad

VARIANTS = [
    ("lstm-proj", lambda **kw: fastrnn.LSTM(3, 4, proj_size=2, **kw)),
    ("lstm-peep", lambda **kw: fastrnn.LSTM(3, 4, peepholes=True, **kw)),
    ("lstm-coupled-clip", lambda **kw: fastrnn.LSTM(3, 4, input_forget=True, clip=0.8, **kw)),
    ("lstm-all", lambda **kw: fastrnn.LSTM(3, 4, proj_size=3, peepholes=True, clip=1.0,
                                           activations=["hardsigmoid", "softsign", "elu"],
                                           activation_alpha=[0.3, 0.7], **kw)),
    ("gru-after-acts", lambda **kw: fastrnn.GRU(3, 4, activations=["hardsigmoid", "softplus"],
                                                clip=1.5, **kw)),
    ("gru-before-clip", lambda **kw: fastrnn.GRU(3, 4, reset_after=False, clip=0.6, **kw)),
    ("rnn-elu", lambda **kw: fastrnn.RNN(3, 4, activations=["elu"], activation_alpha=[0.5],
                                         **kw)),
    ("rnn-scaledtanh-clip", lambda **kw: fastrnn.RNN(3, 4, activations=["scaledtanh"],
                                                     activation_alpha=[1.3],
                                                     activation_beta=[0.7], clip=0.9, **kw)),
]
IDS = [v[0] for v in VARIANTS]


def _random_like_torch(layer, seed, scale=0.6):
    rng = np.random.default_rng(seed)
    for arr in layer.parameters():
        arr[...] = rng.uniform(-scale, scale, arr.shape)
    return layer


@pytest.mark.parametrize("mode,options", [
    ("rnn", {"nonlinearity": "tanh"}), ("rnn", {"nonlinearity": "relu"}),
    ("gru", {"reset_after": True}), ("gru", {"reset_after": False}), ("lstm", {})],
    ids=["rnn-tanh", "rnn-relu", "gru-after", "gru-before", "lstm"])
def test_general_path_equals_the_kernels(mode, options):
    """The default forms forced onto the general path: the kernels' results."""
    cls = {"rnn": fastrnn.RNN, "gru": fastrnn.GRU, "lstm": fastrnn.LSTM}[mode]
    kernel = cls(3, 5, num_layers=2, bidirectional=True, dtype=np.float64, seed=1, **options)
    general = copy.deepcopy(kernel)
    general._general = True
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 3, 3))
    lengths = np.array([6, 2, 4])
    hx = like_state(kernel(x)[1], lambda a: rng.standard_normal(a.shape))
    outs = []
    for layer in (kernel, general):
        layer.zero_grad()
        y, state, ctx = layer.forward(x, hx, lengths=lengths)
        dy = np.random.default_rng(3).standard_normal(y.shape)
        dstate = like_state(state, lambda a: np.random.default_rng(4).standard_normal(a.shape))
        dx, dhx = layer.backward(ctx, dy, dstate)
        outs.append((y, flat_states(state), dx, flat_states(dhx),
                     {k: v.copy() for k, v in layer.grads.items()}))
    (y0, s0, dx0, dh0, g0), (y1, s1, dx1, dh1, g1) = outs
    assert_close(y1, y0, np.float64, "y")
    assert_close(dx1, dx0, np.float64, "dx")
    for a, b in zip(s1 + dh1, s0 + dh0, strict=True):
        assert_close(a, b, np.float64, "states")
    for name in g0:
        assert_close(g1[name], g0[name], np.float64, name)


@pytest.mark.parametrize("make", [v[1] for v in VARIANTS], ids=IDS)
def test_variant_gradients(make):
    layer = _random_like_torch(make(num_layers=2, bidirectional=True, dtype=np.float64, seed=3),
                               5)
    assert layer._general or layer._projected or layer._kernel_variant
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 3, 3))
    lengths = np.array([5, 1, 3])
    hx = like_state(layer(x)[1], lambda a: rng.standard_normal(a.shape))
    y, state, ctx = layer.forward(x, hx, lengths=lengths)
    dy = rng.standard_normal(y.shape)
    dstate = like_state(state, lambda a: rng.standard_normal(a.shape))
    layer.zero_grad()
    dx, dhx = layer.backward(ctx, dy, dstate)

    def loss():
        y2, s2 = layer(x, hx, lengths=lengths)
        return float(np.sum(y2 * dy) + sum(np.sum(a * b) for a, b in
                                           zip(flat_states(s2), flat_states(dstate))))
    assert_grad_close(dx, numeric_grad(loss, x), "dx")
    for got, h in zip(flat_states(dhx), flat_states(hx)):
        assert_grad_close(got, numeric_grad(loss, h), "dhx")
    for name, p in layer.named_parameters():
        assert_grad_close(layer.grads[name], numeric_grad(loss, p), name)


KERNEL_VARIANTS = [
    ("lstm-peep", lambda **kw: fastrnn.LSTM(5, 6, peepholes=True, **kw)),
    ("lstm-coupled", lambda **kw: fastrnn.LSTM(5, 6, input_forget=True, **kw)),
    ("lstm-all", lambda **kw: fastrnn.LSTM(5, 6, peepholes=True, input_forget=True, clip=0.7,
                                           **kw)),
    ("lstm-clip", lambda **kw: fastrnn.LSTM(5, 6, clip=0.5, **kw)),
    ("gru-after-clip", lambda **kw: fastrnn.GRU(5, 6, clip=0.6, **kw)),
    ("gru-before-clip", lambda **kw: fastrnn.GRU(5, 6, reset_after=False, clip=0.6, **kw)),
    ("rnn-tanh-clip", lambda **kw: fastrnn.RNN(5, 6, clip=0.4, **kw)),
    ("rnn-relu-clip", lambda **kw: fastrnn.RNN(5, 6, nonlinearity="relu", clip=0.4, **kw)),
    ("lstm-proj", lambda **kw: fastrnn.LSTM(5, 6, proj_size=3, **kw)),
    ("lstm-proj-peep-clip", lambda **kw: fastrnn.LSTM(5, 6, proj_size=4, peepholes=True,
                                                      clip=0.8, **kw)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch,threads", [(1, 2), (2, 3), (9, 2), (9, 1)])
@pytest.mark.parametrize("make", [v[1] for v in KERNEL_VARIANTS],
                         ids=[v[0] for v in KERNEL_VARIANTS])
def test_kernel_variants_equal_the_general_path(make, batch, threads, dtype):
    """clip, peepholes and coupled gates in the kernels (batch split, unit
    split, one thread): the general path's outputs, states and gradients."""
    fastrnn.set_num_threads(threads)
    kernel = _random_like_torch(make(num_layers=2, dtype=dtype, seed=1), 2, scale=0.9)
    assert (kernel._kernel_variant or kernel._projected) and not kernel._general
    general = copy.deepcopy(kernel)
    general._general, general._projected = True, False
    rng = np.random.default_rng(3)
    x = 2 * rng.standard_normal((7, batch, 5)).astype(dtype)
    lengths = np.maximum(1, 7 - np.arange(batch) % 7)
    hx = like_state(kernel(x)[1], lambda a: rng.standard_normal(a.shape).astype(dtype))
    dy = rng.standard_normal((7, batch, kernel.output_size)).astype(dtype)
    outs = []
    for layer in (kernel, general):
        layer.zero_grad()
        y, state, ctx = layer.forward(x, hx, lengths=lengths)
        dx, dhx = layer.backward(ctx, dy, like_state(state, lambda a: 0.5 * a))
        outs.append((y, flat_states(state), dx, flat_states(dhx),
                     {k: v.copy() for k, v in layer.grads.items()}))
        np.testing.assert_array_equal(layer(x, hx, lengths=lengths)[0], y)
    (y0, s0, dx0, dh0, g0), (y1, s1, dx1, dh1, g1) = outs
    assert_close(y0, y1, dtype, "y")
    assert_close(dx0, dx1, dtype, "dx")
    for a, b in zip(s0 + dh0, s1 + dh1, strict=True):
        assert_close(a, b, dtype, "states")
    for name in g0:
        assert_close(g0[name], g1[name], dtype, name)


def test_token_ids_on_the_general_path():
    layer = fastrnn.GRU(6, 4, clip=0.5, dtype=np.float64, seed=1)
    ids = np.array([[0, 5], [3, 3], [1, 0]])
    one_hot = np.eye(6)[ids]
    np.testing.assert_allclose(layer(ids)[0], layer(one_hot)[0], atol=1e-14)
    y, _, ctx = layer.forward(ids)
    layer.zero_grad()
    assert layer.backward(ctx, np.ones_like(y))[0] is None
    g_ids = layer.grads["weight_ih_l0"].copy()
    y, _, ctx = layer.forward(one_hot)
    layer.zero_grad()
    layer.backward(ctx, np.ones_like(y))
    np.testing.assert_allclose(g_ids, layer.grads["weight_ih_l0"], atol=1e-13)


def test_options_checked():
    with pytest.raises(ValueError, match="proj_size must be smaller"):
        fastrnn.LSTM(3, 4, proj_size=4)
    with pytest.raises(TypeError):
        fastrnn.GRU(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="clip"):
        fastrnn.RNN(3, 4, clip=0)
    with pytest.raises(ValueError, match="unknown function 'gelu'"):
        fastrnn.LSTM(3, 4, activations=["sigmoid", "tanh", "gelu"])
    with pytest.raises(ValueError, match="must list 2 functions"):
        fastrnn.GRU(3, 4, activations=["sigmoid"])
    with pytest.raises(ValueError, match="not both"):
        fastrnn.RNN(3, 4, nonlinearity="relu", activations=["elu"])
    with pytest.raises(ValueError, match="need activations"):
        fastrnn.RNN(3, 4, activation_alpha=[1.0])
    with pytest.raises(ValueError, match=r"activation_alpha\[1\] must be"):
        fastrnn.RNN(3, 4, activations=["elu"], activation_alpha=[1.0, float("nan")])
    with pytest.raises(TypeError, match="activation_beta must be a list"):
        fastrnn.RNN(3, 4, activations=["affine"], activation_beta=0.5)
    with pytest.raises(ValueError, match=r"hx|h0|must have shape"):
        fastrnn.LSTM(3, 4, proj_size=2)(np.zeros((2, 1, 3)),
                                        (np.zeros((1, 1, 4)), np.zeros((1, 1, 4))))
    # the default activations spelled out stay on the kernels
    assert not fastrnn.LSTM(3, 4, activations=["Sigmoid", "Tanh", "Tanh"])._general


@pytest.mark.parametrize("make", [v[1] for v in VARIANTS], ids=IDS)
def test_files_copies_and_composition(make, tmp_path):
    layer = make(seed=2, batch_first=True)
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    y, _ = layer(x)
    loaded = fastrnn.load(layer.save(tmp_path / "v.npz"))
    assert repr(loaded) == repr(layer)
    for other in (loaded, copy.deepcopy(layer)):
        np.testing.assert_array_equal(other(x)[0], y)
    bi = fastrnn.Bidirectional(layer, seed=3)
    stacked = fastrnn.Stacked([bi, fastrnn.LSTM(bi.output_size, 2, batch_first=True, seed=4)])
    final = fastrnn.FinalState(stacked)
    h = final(x, lengths=[5, 2])
    assert h.shape == (2, 2)
    np.testing.assert_array_equal(fastrnn.load(final.save(tmp_path / "f.npz"))(x, lengths=[5, 2]),
                                  h)


# -- PyTorch's projection ------------------------------------------------------------
torch = pytest.importorskip("torch")


@pytest.mark.parametrize("path", ["kernels", "general"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bidir,batch_first", [(False, False), (True, True)])
def test_proj_size_matches_torch(dtype, bidir, batch_first, path):
    """On the kernels (fastrnn._projection) and on the general path."""
    tdtype = torch.float32 if dtype is np.float32 else torch.float64
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(4, 6, num_layers=2, proj_size=3, bidirectional=bidir,
                           batch_first=batch_first).to(tdtype)
    ours = fastrnn.from_torch(theirs)
    assert ours.proj_size == 3 and ours._projected
    if path == "general":
        ours._general, ours._projected = True, False
    rng = np.random.default_rng(1)
    D = 2 if bidir else 1
    x = rng.standard_normal((3, 7, 4) if batch_first else (7, 3, 4)).astype(dtype)
    h0 = rng.standard_normal((2 * D, 3, 3)).astype(dtype)
    c0 = rng.standard_normal((2 * D, 3, 6)).astype(dtype)
    lengths = np.array([7, 2, 5])
    xt = torch.from_numpy(x).requires_grad_()
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.from_numpy(lengths),
                                                     batch_first=batch_first,
                                                     enforce_sorted=False)
    out, (ht, ct) = theirs(packed, (torch.from_numpy(h0), torch.from_numpy(c0)))
    yt, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=batch_first,
                                                   total_length=7)
    y, (h, c), ctx = ours.forward(x, (h0, c0), lengths=lengths)
    assert_close(y, yt.detach().numpy(), dtype, "y")
    assert_close(h, ht.detach().numpy(), dtype, "h_n")
    assert_close(c, ct.detach().numpy(), dtype, "c_n")
    dy = rng.standard_normal(y.shape).astype(dtype)
    dh = rng.standard_normal(h.shape).astype(dtype)
    ((yt * torch.from_numpy(dy)).sum() + (ht * torch.from_numpy(dh)).sum()).backward()
    ours.zero_grad()
    dx, _ = ours.backward(ctx, dy, (dh, None))
    assert_close(dx, xt.grad.numpy(), dtype, "dx")
    for name, p in theirs.named_parameters():
        assert_close(ours.grads[name], p.grad.numpy(), dtype, name)
    back = fastrnn.to_torch(ours)
    assert back.proj_size == 3
    for k, v in theirs.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)


def test_projection_streams_and_threads():
    """One step at a time equals the whole sequence; Python threads sharing one
    projected layer get the answers it gives alone; copies work."""
    layer = fastrnn.LSTM(3, 8, proj_size=4, num_layers=2, seed=5)
    x = np.random.default_rng(2).standard_normal((6, 2, 3)).astype(np.float32)
    y, state = layer(x)
    state_i, steps = None, []
    for t in range(6):
        y_t, state_i = layer(x[t:t + 1], state_i)
        steps.append(y_t)
    assert_close(np.concatenate(steps), y, np.float32, "streamed")
    import threading
    results = [None] * 4

    def call(i):
        results[i] = layer(x)[0]
    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, y)
    np.testing.assert_array_equal(copy.deepcopy(layer)(x)[0], y)
