"""The kernels' σ and tanh against float64, over dense grids (DESIGN.md item 5)."""
import numpy as np
import pytest

from fastrnn import _kernels

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
