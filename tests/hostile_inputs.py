"""Checks of a layer's calls against hostile inputs, shared by the tests'
child processes (tests/isolated.py puts this folder on sys.path)."""
import numpy as np


def check_extreme_inputs(layer, shape, hx):
    """layer(x, hx) for float32 x of ``shape`` (T, B, I) full of NaN, inf
    and 3e38 gives the general path's answer bit for bit (NaN where it has
    NaN); a batch of no rows is refused naming it; one of 10000 rows runs,
    finite."""
    steps, _, n_in = shape
    for value in (np.nan, np.inf, 3e38):
        x = np.full(shape, value, np.float32)
        y = layer(x, hx)[0]
        want = layer._call(x, hx, None, False)[0]
        assert np.array_equal(y, want, equal_nan=True), value
    try:
        layer(np.ones((steps, 0, n_in), np.float32))
    except ValueError as e:
        assert "at least one" in str(e), e
    else:
        raise AssertionError("an empty batch was run")
    y, _ = layer(np.ones((steps, 10000, n_in), np.float32))
    assert y.shape == (steps, 10000, layer.output_size) and np.isfinite(y).all()


def check_refused(run, cases, name):
    """run(*args) raises a ValueError naming ``name`` for each args of
    ``cases`` and writes none of the arrays among args[3:] (the outputs)."""
    for i, args in enumerate(cases):
        outputs = [a for a in args[3:] if isinstance(a, np.ndarray)]
        before = [a.copy() for a in outputs]
        try:
            run(*args)
        except ValueError as e:
            assert name in str(e), e
        else:
            raise AssertionError(f"case {i} was run")
        for a, b in zip(outputs, before):
            np.testing.assert_array_equal(a, b)
