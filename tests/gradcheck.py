"""Central finite differences in float64 for the gradient tests."""
import numpy as np


def numeric_grad(f, arr, eps=1e-6):
    """d f() / d arr by central differences, perturbing ``arr`` in place (restored)."""
    grad = np.zeros(arr.shape)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + eps
        f_plus = f()
        arr[idx] = old - eps
        f_minus = f()
        arr[idx] = old
        grad[idx] = (f_plus - f_minus) / (2 * eps)
    return grad


def assert_grad_close(analytic, numeric, what, rtol=1e-7):
    analytic = np.asarray(analytic, dtype=np.float64)
    scale = max(1.0, float(np.abs(numeric).max(initial=0.0)))
    err = float(np.abs(analytic - numeric).max(initial=0.0))
    assert err <= rtol * scale, f"{what}: max abs error {err:.3g} (scale {scale:.3g})"


def flat_states(state):
    """Every array of a (possibly nested) state, in a fixed order."""
    if state is None:
        return []
    if isinstance(state, np.ndarray):
        return [state]
    return [a for s in state for a in flat_states(s)]


def like_state(state, make):
    """A state of the same nesting with ``make(array)`` at every leaf."""
    if isinstance(state, np.ndarray):
        return make(state)
    return type(state)(like_state(s, make) for s in state)


def check_module_gradients(module, x, hx=None, lengths=None, seed=0, reseed=None):
    """Compare module.backward with finite differences of
    L = sum(dy * y) + sum(dh_n * h_n) for x, every state entry and every parameter.

    reseed: called before each forward (to fix dropout masks)."""
    rng = np.random.default_rng(seed)
    if reseed:
        reseed()
    y, h_n, ctx = module.forward(x, hx, lengths=lengths)
    dy = rng.standard_normal(y.shape)      # nonzero at padded steps too: they must not count
    dh_n = like_state(h_n, lambda a: rng.standard_normal(a.shape))
    module.zero_grad()
    dx, dhx = module.backward(ctx, dy, dh_n)

    def loss():
        if reseed:
            reseed()
        y2, h2, _ = module.forward(x, hx, lengths=lengths)
        return float(np.sum(dy * y2) + sum(np.sum(a * b) for a, b in
                                           zip(flat_states(dh_n), flat_states(h2))))

    assert_grad_close(dx, numeric_grad(loss, x), "dx")
    for i, (analytic, arr) in enumerate(zip(flat_states(dhx), flat_states(hx))):
        assert_grad_close(analytic, numeric_grad(loss, arr), f"dhx[{i}]")
    if hx is None:
        assert all(np.isfinite(a).all() for a in flat_states(dhx))
    for name, param in module.named_parameters():
        assert_grad_close(module.grads[name], numeric_grad(loss, param), name)
    return dx, dhx
