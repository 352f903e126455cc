"""Optimizers and clipping against torch.optim (skipped without PyTorch)."""
import numpy as np
import pytest

from fastrnn import clip_grad_norm, optim

torch = pytest.importorskip("torch")

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.5, dampening=0.3)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.5, eps=1e-6)),
]


@pytest.mark.parametrize("name,kw", CASES)
def test_optimizer_matches_torch(name, kw):
    rng = np.random.default_rng(0)
    params = [rng.standard_normal((4, 3)), rng.standard_normal(5)]
    grads = [np.zeros_like(p) for p in params]
    ours = getattr(optim, name)(list(zip(params, grads)), **kw)
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    theirs = getattr(torch.optim, name)(tparams, **kw)
    for _ in range(6):
        new = [rng.standard_normal(p.shape) for p in params]
        for g, t, n in zip(grads, tparams, new):
            g[...] = n
            t.grad = torch.tensor(n)
        ours.step()
        theirs.step()
        for p, t in zip(params, tparams):
            np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-12, atol=1e-13)


def test_clip_grad_norm_matches_torch():
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal((4, 3)) * 3, rng.standard_normal(5)]
    params = [np.zeros_like(g) for g in grads]
    tparams = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for t, g in zip(tparams, grads):
        t.grad = torch.tensor(g.copy())
    norm = clip_grad_norm(list(zip(params, grads)), 2.0)
    tnorm = torch.nn.utils.clip_grad_norm_(tparams, 2.0)
    assert norm == pytest.approx(float(tnorm), rel=1e-12)
    for g, t in zip(grads, tparams):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-12)
