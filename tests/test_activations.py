"""The kernels' σ and tanh against float64, over dense grids (DESIGN.md item 5)."""
import numpy as np
import pytest

from fastrnn import _kernels
from fastrnn._kernels._cells import CellKind

MODULES = [module for _, module in _kernels.builds()]

# measured maxima (module docstring of fastrnn/_kernels/_activations.pxd), with margin
FLOAT32_MAX_ABS_ERROR = 1.0e-7


@pytest.fixture(params=MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def module(request):
    return request.param


def _run(module, x):
    sig, tnh = np.empty_like(x), np.empty_like(x)
    module.activations(x, sig, tnh)
    return sig, tnh


def _grid(dtype):
    dense = np.linspace(-20, 20, 2_000_001)
    wide = np.concatenate([-np.geomspace(1e-30, 1e4, 20001), np.geomspace(1e-30, 1e4, 20001)])
    return np.concatenate([dense, wide, [0.0, -0.0]]).astype(dtype)


def test_float32_error_bounds(module):
    x = _grid(np.float32)
    sig, tnh = _run(module, x)
    x64 = x.astype(np.float64)
    sig_ref = 0.5 * (1 + np.tanh(0.5 * x64))
    assert np.abs(sig - sig_ref).max() <= FLOAT32_MAX_ABS_ERROR
    assert np.abs(tnh - np.tanh(x64)).max() <= FLOAT32_MAX_ABS_ERROR
    # near zero tanh keeps its relative accuracy
    small = np.abs(x64) < 0.0625
    nonzero = small & (x64 != 0)
    assert np.max(np.abs(tnh[nonzero] - np.tanh(x64[nonzero])) / np.abs(x64[nonzero])) < 1e-6
    # the range is kept: σ in [0, 1], tanh in [-1, 1], both monotone on the dense grid
    assert sig.min() >= 0 and sig.max() <= 1 and np.abs(tnh).max() <= 1
    dense = slice(0, 2_000_001)
    assert np.all(np.diff(sig[dense]) >= 0) and np.all(np.diff(tnh[dense]) >= 0)


def test_float64_is_libm(module):
    x = _grid(np.float64)
    sig, tnh = _run(module, x)
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(sig, 1 / (1 + np.exp(-x)), rtol=1e-15, atol=0)
    np.testing.assert_allclose(tnh, np.tanh(x), rtol=1e-15, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(module, dtype):
    x = np.array([np.inf, -np.inf, np.nan, 0.0], dtype)
    sig, tnh = _run(module, x)
    # σ(-inf) is 0 up to the smallest normal float (float32 gives 4.5e-39)
    np.testing.assert_allclose(sig[[0, 1, 3]], np.array([1, 0, 0.5], dtype), rtol=0, atol=1e-37)
    np.testing.assert_array_equal(tnh[[0, 1, 3]], np.array([1, -1, 0], dtype))
    assert np.isnan(sig[2]) and np.isnan(tnh[2])


# -- the vector passes (_gate_math.h) against the scalar loops they replace ----------------
# The plain cells' float32 forward passes run on vectors, several at once;
# every operation is the scalar one's, so every bit must match. Widths with
# every kind of rest after whole blocks (blocks of 32 floats on AVX2 and
# AVX-512, 16 on the baseline build): none, a group of one to three vectors,
# a partial vector, both.
PASS_SHAPES = [(1, 1), (1, 3), (2, 7), (1, 8), (3, 17), (1, 31), (1, 33), (32, 64), (2, 100),
               (1, 257)]
SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, -1e-30, 100.0, -100.0,
                    0.0625, -0.0625, 0.06249999, 88.3, -87.3, 89.0, -88.0], np.float32)


def _pass_inputs(rng, n, width):
    g = rng.uniform(-12, 12, (n, width)).astype(np.float32)
    flat = g.reshape(-1)
    k = min(flat.size, SPECIAL.size)
    flat[:k] = SPECIAL[:k]
    return g


def _assert_same_bits(a, b):
    """Equal bits, NaN where NaN (a NaN's sign and payload may differ)."""
    nan = np.isnan(a)
    np.testing.assert_array_equal(nan, np.isnan(b))
    np.testing.assert_array_equal(a[~nan].view(np.uint32), b[~nan].view(np.uint32))


# (kind, phase): every plain float32 forward pass with a vector form
PASSES = [(CellKind.RNN_TANH, 0), (CellKind.LSTM, 0), (CellKind.GRU_RESET_AFTER, 0),
          (CellKind.GRU_RESET_BEFORE, 0), (CellKind.GRU_RESET_BEFORE, 1)]
GATES = {CellKind.RNN_TANH: 1, CellKind.LSTM: 4, CellKind.GRU_RESET_AFTER: 3,
         CellKind.GRU_RESET_BEFORE: 3}


def _forward_pass(module, kind, phase, arrays, vector):
    g, gh, b, b_hn, h, c, rh = (a.copy() for a in arrays)
    module.forward_pass(int(kind), phase, g, gh, b, b_hn, h, c, rh, vector)
    return g, h, c, rh


@pytest.mark.parametrize("kind, phase", PASSES, ids=lambda p: str(getattr(p, "name", p)))
@pytest.mark.parametrize("n, H", PASS_SHAPES)
def test_vector_pass_has_the_scalar_bits(module, kind, phase, n, H):
    rng = np.random.default_rng(n * 1000 + H + int(kind) * 10 + phase)
    blocks = 4 if kind == CellKind.GRU_RESET_AFTER else GATES[kind]
    arrays = (_pass_inputs(rng, n, blocks * H),                       # g
              _pass_inputs(rng, n, 3 * H)[:, ::-1].copy(),            # gh
              rng.uniform(-1, 1, GATES[kind] * H).astype(np.float32),  # b
              rng.uniform(-1, 1, H).astype(np.float32),               # b_hn
              rng.uniform(-1, 1, (n, H)).astype(np.float32),          # h
              rng.uniform(-3, 3, (n, H)).astype(np.float32),          # c
              np.full((n, H), 5.0, np.float32))                       # rh
    vec = _forward_pass(module, kind, phase, arrays, True)
    ref = _forward_pass(module, kind, phase, arrays, False)
    for a, s in zip(vec, ref):
        _assert_same_bits(a, s)
    # the pass ran: its activations are in range where they are numbers
    if kind == CellKind.GRU_RESET_BEFORE:      # phase 0 writes r, z'; phase 1 n
        acts = vec[0][:, :2 * H] if phase == 0 else vec[0][:, 2 * H:]
    else:
        acts = vec[0][:, :GATES[kind] * H]
    acts = acts[~np.isnan(acts)]
    assert np.all((acts >= -1) & (acts <= 1))


def test_vector_activations_over_the_grid(module):
    """σ and tanh of the vector passes are the scalar ones (module.activations)
    at every float of the accuracy grid: the LSTM pass with a zero bias
    leaves σ(x) in its i, f, o rows and tanh(x) in its g row."""
    x = _grid(np.float32)
    sig, tnh = _run(module, x)
    H = x.size
    g = np.tile(x, 4).reshape(1, 4 * H)
    one = np.zeros((1, H), np.float32)
    module.forward_pass(int(CellKind.LSTM), 0, g, np.zeros((1, 3 * H), np.float32),
                        np.zeros(4 * H, np.float32), one[0], one.copy(), one.copy(),
                        one.copy(), True)
    for q in (0, 1, 3):
        _assert_same_bits(g[0, q * H:(q + 1) * H], sig)
    _assert_same_bits(g[0, 2 * H:3 * H], tnh)


def test_forward_pass_probe_checks_its_arguments(module):
    z = np.zeros((2, 8), np.float32)
    args = (z, np.zeros((2, 6), np.float32), np.zeros(8, np.float32), np.zeros(2, np.float32),
            np.zeros((2, 2), np.float32), np.zeros((2, 2), np.float32),
            np.zeros((2, 2), np.float32), True)
    module.forward_pass(int(CellKind.LSTM), 0, *args)          # (2, 4 x 2): right
    with pytest.raises(ValueError, match="forward_pass"):
        module.forward_pass(int(CellKind.RNN_TANH), 0, *args)   # g should be (2, 2)
    with pytest.raises(ValueError, match="forward_pass"):
        module.forward_pass(int(CellKind.LSTM), 1, *args)       # the LSTM has one phase
    with pytest.raises(ValueError, match="forward_pass"):
        module.forward_pass(9, 0, *args)
