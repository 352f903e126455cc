"""fastrnn's backward against torch autograd (skipped when PyTorch is not installed)."""
import numpy as np
import pytest

import fastrnn

torch = pytest.importorskip("torch")

from test_torch_compat import random_case, torch_outputs  # noqa: E402

GRAD_TOL = {np.float32: 1e-4, np.float64: 1e-9}


def assert_grad_match(ours, theirs, dtype, what):
    theirs = np.asarray(theirs, dtype=np.float64)
    scale = max(1.0, float(np.abs(theirs).max(initial=0.0)))
    err = float(np.abs(np.asarray(ours, dtype=np.float64) - theirs).max(initial=0.0))
    assert err <= GRAD_TOL[dtype] * scale, f"{what}: {err:.3g} (scale {scale:.3g})"


def _torch_grads(module, x, hx, lengths, batch_first, dy, dh_n):
    xt = torch.from_numpy(np.ascontiguousarray(x)).requires_grad_()
    hxt = None
    if hx is not None:
        hxt = tuple(torch.from_numpy(h).requires_grad_() for h in hx) \
            if isinstance(hx, tuple) else torch.from_numpy(hx).requires_grad_()
    y, state = torch_outputs(module, xt, hxt, lengths, batch_first)
    states = state if isinstance(state, tuple) else (state,)
    dstates = dh_n if isinstance(dh_n, tuple) else (dh_n,)
    loss = (y * torch.from_numpy(dy)).sum() + sum(
        (s * torch.from_numpy(d)).sum() for s, d in zip(states, dstates))
    loss.backward()
    dhx = None
    if hx is not None:
        dhx = tuple(h.grad.numpy() for h in hxt) if isinstance(hxt, tuple) else hxt.grad.numpy()
    return xt.grad.numpy(), dhx, {k: p.grad.numpy() for k, p in module.named_parameters()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(12))
def test_random_configurations_match_autograd(seed, dtype):
    rng = np.random.default_rng(100 + seed)
    mode, kw, ours, theirs, x, lengths, hx, shape = random_case(rng, seed, dtype, 25, 7, 12, 16,
                                                                p_state=0.7)
    y, h_n, ctx = ours.forward(x, hx, lengths=lengths)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dh_n = rng.standard_normal(shape).astype(dtype)
    if mode == "lstm":
        dh_n = (dh_n, rng.standard_normal(shape).astype(dtype))
    dx, dhx = ours.backward(ctx, dy, dh_n)
    dx_t, dhx_t, grads_t = _torch_grads(theirs, x, hx, lengths, kw["batch_first"], dy, dh_n)
    assert_grad_match(dx, dx_t, dtype, f"dx {mode} {kw}")
    if hx is not None:
        for a, b in zip(dhx if mode == "lstm" else (dhx,), dhx_t if mode == "lstm" else (dhx_t,)):
            assert_grad_match(a, b, dtype, f"dhx {mode} {kw}")
    assert set(ours.grads) == set(grads_t)
    for k, g in grads_t.items():
        assert_grad_match(ours.grads[k], g, dtype, f"{k} {mode} {kw}")


@pytest.mark.parametrize("name,kw", [("RNNCell", {"nonlinearity": "relu"}), ("GRUCell", {}),
                                     ("LSTMCell", {})])
def test_cells_match_autograd(name, kw):
    dtype = np.float32
    rng = np.random.default_rng(0)
    theirs = getattr(torch.nn, name)(6, 5, **kw)
    ours = getattr(fastrnn, name)(6, 5, **kw)
    ours.load_state_dict(theirs.state_dict())
    x = rng.standard_normal((3, 6)).astype(dtype)
    lstm = name == "LSTMCell"
    hx = tuple(rng.standard_normal((3, 5)).astype(dtype) for _ in range(2)) if lstm else \
        rng.standard_normal((3, 5)).astype(dtype)
    dh = tuple(rng.standard_normal((3, 5)).astype(dtype) for _ in range(2)) if lstm else \
        rng.standard_normal((3, 5)).astype(dtype)
    out, ctx = ours.forward(x, hx)
    dx, dhx = ours.backward(ctx, dh)
    xt = torch.from_numpy(x).requires_grad_()
    hxt = tuple(torch.from_numpy(h).requires_grad_() for h in hx) if lstm else \
        torch.from_numpy(hx).requires_grad_()
    out_t = theirs(xt, hxt)
    outs = out_t if lstm else (out_t,)
    sum((o * torch.from_numpy(d)).sum() for o, d in zip(outs, dh if lstm else (dh,))).backward()
    assert_grad_match(dx, xt.grad.numpy(), dtype, "dx")
    for a, h in zip(dhx if lstm else (dhx,), hxt if lstm else (hxt,)):
        assert_grad_match(a, h.grad.numpy(), dtype, "dhx")
    for k, p in theirs.named_parameters():
        assert_grad_match(ours.grads[k], p.grad.numpy(), dtype, k)
