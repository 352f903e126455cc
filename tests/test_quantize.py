"""fastrnn.quantize: reduced-precision weights, their accuracy against float32
(the issue's bounds on random-weight layers, T=100), and inference only."""
import copy
import pickle

import numpy as np
import pytest

import fastrnn
from fastrnn.quantization import quantized_weights, round_weights

# max output error against float32, random (PyTorch-initialised) layers, T=100
BOUNDS = {"float16": 2e-3, "bfloat16": 2e-2, "int8": 3e-2}
FORMATS = list(BOUNDS)


def _modules():
    return {
        "lstm-2-bi": lambda: fastrnn.LSTM(64, 128, num_layers=2, bidirectional=True, seed=1),
        "gru-after": lambda: fastrnn.GRU(64, 128, seed=2),
        "gru-before": lambda: fastrnn.GRU(64, 128, reset_after=False, seed=3),
        "rnn-tanh": lambda: fastrnn.RNN(64, 128, seed=4),
        "lstm-proj-peep": lambda: fastrnn.LSTM(64, 128, proj_size=64, peepholes=True, seed=5),
        "stacked": lambda: fastrnn.Stacked([fastrnn.GRU(64, 96, seed=6),
                                            fastrnn.LSTM(96, 128, seed=7)]),
    }


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", list(_modules()))
@pytest.mark.parametrize("batch", [4, 1])
def test_output_error_within_bounds(fmt, name, batch, monkeypatch):
    """T=100; batch 1 with the reduced weights' products forced at every size
    (int8 on int8 dot products where the CPU has them: activations rounded too)."""
    from fastrnn import _engine
    if batch == 1:
        monkeypatch.setattr(_engine, "_UNIT_SPLIT_BYTES", 0)
    module = _modules()[name]()
    x = np.random.default_rng(0).standard_normal((100, batch, 64)).astype(np.float32)
    before = {k: v.copy() for k, v in module.state_dict().items()}
    q = fastrnn.quantize(module, fmt)
    y, _ = module(x)
    yq, _ = q(x)
    err = np.abs(yq - y)
    assert err.max() <= BOUNDS[fmt], (name, fmt, float(err.max()), float(err.mean()))
    assert err.max() > 0                      # the weights did change
    for k, v in module.state_dict().items():  # the original is untouched
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("fmt", FORMATS)
def test_stored_values_are_what_the_module_computes_with(fmt):
    layer = fastrnn.quantize(fastrnn.LSTM(5, 7, bidirectional=True, seed=1), fmt)
    kind, stored = quantized_weights(layer)
    assert kind == fmt
    assert set(stored) == {k for k in layer.state_dict() if k.startswith("weight")}
    for name, (codes, scale) in stored.items():
        w = layer.state_dict()[name]
        if fmt == "float16":
            assert codes.dtype == np.float16 and scale is None
            np.testing.assert_array_equal(codes.astype(np.float32), w)
        elif fmt == "bfloat16":
            assert codes.dtype == np.uint16 and scale is None
            np.testing.assert_array_equal((codes.astype(np.uint32) << 16).view(np.float32), w)
        else:
            assert codes.dtype == np.int8 and scale.shape == (w.shape[0],)
            assert np.abs(codes).max() == 127
            np.testing.assert_allclose(codes * scale[:, None], w, rtol=1e-6)
    # biases are not reduced
    assert not any(k.startswith("bias") for k in stored)


def test_rounding_rules():
    w = np.array([[1.0, 1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8, 1 + 2.0 ** -7 + 2.0 ** -9],
                  [3.0, -3.0, 0.5, 0.0]], np.float32)
    codes, _, widened = round_weights(w, "bfloat16")
    # bfloat16 keeps 7 bits of mantissa (a step of 2^-7 at 1): halfway cases go
    # to the even neighbour, the rest to the nearest
    np.testing.assert_array_equal(widened[0], [1.0, 1.0, 1 + 2.0 ** -6, 1 + 2.0 ** -7])
    codes, scale, widened = round_weights(w, "int8")
    np.testing.assert_allclose(scale, [(1 + 3 * 2.0 ** -8) / 127, 3 / 127], rtol=1e-6)
    assert codes[1].tolist() == [127, -127, 21, 0]
    zero_codes, zero_scale, zero = round_weights(np.zeros((2, 3), np.float32), "int8")
    assert not zero.any() and np.all(zero_scale == 1)
    with pytest.raises(ValueError, match="65504"):
        round_weights(np.array([[7e4]], np.float32), "float16")


def test_every_kind_of_module_quantizes():
    modules = [
        fastrnn.LSTMCell(4, 6, seed=1), fastrnn.GRUCell(4, 6, seed=2),
        fastrnn.Dense(4, 3, seed=3),
        fastrnn.Bidirectional(fastrnn.GRU(4, 5, seed=4), seed=5),
        fastrnn.Sequential([fastrnn.Embedding(9, 4, seed=6), fastrnn.LSTM(4, 5, seed=7),
                            fastrnn.Dense(5, 2, seed=8)]),
        fastrnn.FinalState(fastrnn.LSTM(4, 5, seed=9)),
        fastrnn.models.SequenceClassifier(vocab_size=9, num_classes=3, hidden_size=8, seed=1),
    ]
    for m in modules:
        q = fastrnn.quantize(m, "int8")
        assert type(q) is type(m)
        changed = [k for k, v in q.state_dict().items()
                   if not np.array_equal(v, m.state_dict()[k])]
        assert changed and all("weight" in k for k in changed), (m, changed)
        assert not any(k.endswith(("embedding.weight",)) or k.startswith("0.weight")
                       for k in changed if isinstance(m, fastrnn.Sequential))


def test_inference_only_and_copies(tmp_path):
    clf = fastrnn.models.SequenceClassifier(vocab_size=5, num_classes=2, hidden_size=8, seed=0)
    X = [np.array([1, 2, 3]), np.array([4, 0])]
    clf.fit(X, [0, 1], epochs=1, verbose=False)
    q = fastrnn.quantize(clf, "float16")
    probs = q.predict_proba(X)
    with pytest.raises(ValueError, match="inference only, fit is refused"):
        q.fit(X, [0, 1], epochs=1, verbose=False)
    layer = fastrnn.quantize(fastrnn.GRU(3, 4, seed=1), "bfloat16")
    with pytest.raises(ValueError, match="bfloat16 weights"):
        layer.forward(np.zeros((2, 1, 3), np.float32))
    with pytest.raises(ValueError, match="load_state_dict is refused"):
        layer.load_state_dict(layer.state_dict())
    for other in (copy.deepcopy(q), pickle.loads(pickle.dumps(q))):
        np.testing.assert_array_equal(other.predict_proba(X), probs)
        with pytest.raises(ValueError, match="inference only"):
            other.fit(X, [0, 1], epochs=1, verbose=False)
    # the float model trains on
    clf.fit(X, [0, 1], epochs=1, verbose=False)


def test_bad_arguments():
    with pytest.raises(ValueError, match="weights must be one of"):
        fastrnn.quantize(fastrnn.LSTM(2, 3), "int4")
    with pytest.raises(TypeError, match="fastrnn module"):
        fastrnn.quantize(np.zeros(3))
    with pytest.raises(ValueError, match="already quantized"):
        fastrnn.quantize(fastrnn.quantize(fastrnn.GRU(2, 3), "int8"), "float16")
    layer = fastrnn.LSTM(2, 3)
    layer.parameters()[0][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        fastrnn.quantize(layer)


@pytest.mark.parametrize("fmt", FORMATS)
def test_files_keep_the_reduced_weights(fmt, tmp_path):
    import os
    models = {
        "lstm": fastrnn.LSTM(32, 64, num_layers=2, bidirectional=True, seed=1),
        "classifier": fastrnn.models.SequenceClassifier(vocab_size=7, num_classes=3,
                                                        hidden_size=64, seed=2),
        "sequential": fastrnn.Sequential([fastrnn.Embedding(9, 32, seed=3),
                                          fastrnn.GRU(32, 64, seed=4),
                                          fastrnn.Dense(64, 5, seed=5)]),
    }
    for name, model in models.items():
        q = fastrnn.quantize(model, fmt)
        full = model.save(tmp_path / f"{name}-f32.npz")
        small = q.save(tmp_path / f"{name}-{fmt}.npz")
        # the weight matrices dominate: 2 bytes (16-bit) or 1 (+ a scale per row)
        ratio = os.path.getsize(small) / os.path.getsize(full)
        assert ratio < (0.6 if fmt != "int8" else 0.4), (name, ratio)
        loaded = fastrnn.load(small)
        assert type(loaded) is type(q) and loaded._inference_only == fmt
        for k, v in q.state_dict().items():
            np.testing.assert_array_equal(loaded.state_dict()[k], v)
        with pytest.raises(ValueError, match="inference only"):
            loaded.load_state_dict(loaded.state_dict())
        from fastrnn.quantization import reduced_members
        got, want = reduced_members(loaded), reduced_members(q)
        assert set(got) == set(want)
        for k in want:
            np.testing.assert_array_equal(got[k][0], want[k][0])


def test_tampered_quantized_files_refused(tmp_path):
    import json
    import zipfile
    q = fastrnn.quantize(fastrnn.GRU(3, 4, seed=1), "int8")
    path = q.save(tmp_path / "q.npz")
    members = dict(np.load(path))
    meta = json.loads(str(members["__fastrnn__"]))

    def write(meta, arrays, name):
        out = tmp_path / name
        np.savez(out, __fastrnn__=np.array(json.dumps(meta)), **arrays)
        return out
    bad = dict(meta, quantized={"format": "int8", "weights": ["bias_ih_l0"]})
    with pytest.raises(ValueError, match="not a weight matrix"):
        fastrnn.load(write(bad, {k: v for k, v in members.items() if k != "__fastrnn__"},
                           "b1.npz"))
    bad = dict(meta, quantized={"format": "int4", "weights": []})
    with pytest.raises(ValueError, match="must name a format"):
        fastrnn.load(write(bad, {k: v for k, v in members.items() if k != "__fastrnn__"},
                           "b2.npz"))
    arrays = {k: v for k, v in members.items() if k != "__fastrnn__"}
    arrays["weight_ih_l0"] = arrays["weight_ih_l0"].astype(np.int16)
    with pytest.raises(ValueError, match="must hold int8 values"):
        fastrnn.load(write(meta, arrays, "b3.npz"))
    arrays = {k: v for k, v in members.items() if k not in ("__fastrnn__", "weight_hh_l0.scale")}
    with pytest.raises(ValueError, match="weight_hh_l0.scale"):
        fastrnn.load(write(meta, arrays, "b4.npz"))
    arrays = {k: v for k, v in members.items() if k != "__fastrnn__"}
    arrays["weight_hh_l0"] = arrays["weight_hh_l0"].copy()
    arrays["weight_hh_l0"][0, 0] = -128          # outside the quantizer's codes
    with pytest.raises(ValueError, match=r"codes must lie in \[-127, 127\], got -128"):
        fastrnn.load(write(meta, arrays, "b5.npz"))
    for bad_scale in (np.nan, -1.0, np.inf):
        arrays = {k: v for k, v in members.items() if k != "__fastrnn__"}
        arrays["weight_ih_l0.scale"] = arrays["weight_ih_l0.scale"].copy()
        arrays["weight_ih_l0.scale"][1] = bad_scale
        with pytest.raises(ValueError, match="scales must be finite and >= 0"):
            fastrnn.load(write(meta, arrays, "b6.npz"))
    assert zipfile.is_zipfile(path)


@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
@pytest.mark.parametrize("cls", ["LSTMCell", "GRUCell", "RNNCell"])
def test_cells_read_16_bit_weights(fmt, cls):
    """One-row float32 steps of a 16-bit cell read the 16-bit weights
    (rows_dot16): the bits of the float cell holding the widened weights on
    the same row-dot path (split forced at every size), alone or split."""
    from fastrnn._kernels import _panels
    from fastrnn import _engine
    if _panels.panel_kernel() == "blas":
        pytest.skip("no panel variant: one-row steps run BLAS's gemv")
    cell = getattr(fastrnn, cls)(48, 64, seed=1)
    q = fastrnn.quantize(cell, fmt)
    widened = getattr(fastrnn, cls)(48, 64, seed=1)
    widened._layer.load_state_dict(q._layer.state_dict())      # the same values, in float32
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 48)).astype(np.float32)
    h = rng.standard_normal((1, 64)).astype(np.float32)
    hx = (h, -h) if cls == "LSTMCell" else h
    kernel = _engine.step_kernels(q._layer)[0][0]
    assert kernel is not None
    # the float copies of the weights are not what these steps read: spoil
    # them (after the kernel is bound) and the outputs stay the widened cell's
    for arr in (q._layer._w_ih[0], q._layer._w_hh[0]):
        arr[...] = np.nan
    before = _engine._k.set_split_step_bytes(0)               # every size splits
    try:
        for threads in (2, 1):
            fastrnn.set_num_threads(threads)
            got, want = q(x, hx), widened(x, hx)
            for a, b in zip(got if cls == "LSTMCell" else (got,),
                            want if cls == "LSTMCell" else (want,)):
                if threads == 2:
                    np.testing.assert_array_equal(a, b)
                else:                     # the float cell alone runs BLAS's gemv
                    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    finally:
        _engine._k.set_split_step_bytes(before)
        fastrnn.set_num_threads(None)
    # a layer's one-step calls (streaming) take the same path; its calls over
    # several steps round the activations to bfloat16 where they run on
    # bfloat16 dot products
    layer = fastrnn.quantize(fastrnn.LSTM(48, 64, seed=3), fmt)
    seq = rng.standard_normal((5, 1, 48)).astype(np.float32)
    y, state = layer(seq)
    steps, s = [], None
    for t in range(5):
        y_t, s = layer(seq[t:t + 1], s)
        steps.append(y_t)
    rounded = fmt == "bfloat16" and _panels.bf16_dot_products()
    np.testing.assert_allclose(np.concatenate(steps), y, rtol=1e-5,
                               atol=5e-3 if rounded else 1e-6)


# -- the reduced weights in the kernels: packed panels of half, bfloat16, int8 --------------
def _panel_variants():
    from fastrnn._kernels import _panels
    return _panels.panel_kernels()


@pytest.fixture
def panel_variant(request):
    from fastrnn._kernels import _panels
    before = _panels.panel_kernel()
    _panels.set_panel_kernel(request.param)
    yield request.param
    _panels.set_panel_kernel(before)


@pytest.mark.parametrize("panel_variant", _panel_variants(), indirect=True)
@pytest.mark.parametrize("fmt", ["float32"] + FORMATS)
def test_panel_product_on_reduced_weights(panel_variant, fmt):
    """panel_gemm_w on panels of each weight type, every tile shape (1 .. 17
    rows, partial panels, k not a multiple of anything): 16-bit weights give
    the bits of the float32 product on the widened weights (the same sums in
    the same order); int8 ones code x scale within float rounding of the
    float64 product; accumulate adds to C."""
    from fastrnn._kernels import _panels
    from fastrnn import _cpu
    rng = np.random.default_rng(7)
    wt = _panels.WEIGHT_TYPES[fmt]
    # (the variant's own conversions: with 8-lane ones under avx512, the AVX2
    # kernel's blocking of k, whose sums match the avx512 float32 product's
    # only while k fits one block; test_half_lanes_measured_or_forced)
    lanes = _panels.half_lanes()
    if panel_variant == "avx512":
        _panels.set_half_lanes(16)
    try:
        for m, n, k, l2 in ((1, 1024, 256, None), (2, 37, 19, None), (3, 100, 300, None),
                            (7, 16, 5, None), (9, 50, 64, None), (17, 130, 33, None),
                            (1, 5, 1, None), (2, 40, 2731, None),
                            # a 64 KiB L2's plan: k in several blocks (odd ones made even)
                            (1, 48, 301, 64 << 10), (3, 20, 517, 64 << 10)):
            caches = _cpu.plan().caches
            _panels.set_cache_sizes(caches.l1d, l2 or caches.l2)
            a = rng.standard_normal((m, k)).astype(np.float32)
            w = rng.standard_normal((n, k)).astype(np.float32)
            codes, scale, wide = (w, None, w) if fmt == "float32" else round_weights(w, fmt)
            panels, scales = _panels.pack_weight_panels(codes, scale)
            for accumulate in (False, True):
                c0 = rng.standard_normal((m, n)).astype(np.float32)
                c = c0.copy()
                _panels.panel_product_w(a, panels, wt, scales, c, accumulate)
                want = (a.astype(np.float64) @ wide.T.astype(np.float64)
                        + (c0 if accumulate else 0))
                np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5 * np.sqrt(k))
                if fmt != "int8" and panel_variant != "blas":
                    c32 = c0.copy()
                    _panels.panel_product(a, np.ascontiguousarray(wide), c32, accumulate)
                    np.testing.assert_array_equal(c, c32)
    finally:
        caches = _cpu.plan().caches
        _panels.set_cache_sizes(caches.l1d, caches.l2)
        if panel_variant == "avx512":
            _panels.set_half_lanes(lanes)


def test_panel_probes_refuse_what_does_not_fit():
    """The products' probes and packers check every operand before the
    kernels run: a weight type the product does not take (the dot products'
    panels have another layout), panels of the wrong size or dtype, scales
    and sums of the wrong length."""
    from fastrnn._kernels import _panels
    a, c = np.ones((1, 8), np.float32), np.empty((1, 20), np.float32)
    panels, scales = _panels.pack_weight_panels(np.ones((20, 8), np.int8), np.ones(20))
    quads, qs, sums = _panels.pack_weight_quads(np.ones((20, 8), np.int8), np.ones(20))
    for wt in (_panels.INT8_DOT, _panels.BF16_DOT, 9):
        with pytest.raises(ValueError, match="wt must be one of"):
            _panels.panel_product_w(a, quads, wt, qs, c, False)
    with pytest.raises(ValueError, match="panels of W"):
        _panels.panel_product_w(a, panels[:1], _panels.WEIGHT_TYPES["int8"], scales, c, False)
    with pytest.raises(ValueError, match="panels of W"):
        _panels.panel_product_w(a, panels.view(np.uint8), _panels.WEIGHT_TYPES["int8"],
                                scales, c, False)
    with pytest.raises(ValueError, match="W must be 2-D"):
        _panels.pack_weight_panels(np.ones((20, 8), np.float64))
    with pytest.raises(ValueError, match="W must be 2-D int8"):
        _panels.pack_weight_quads(np.ones((20, 8), np.float32), np.ones(20))
    with pytest.raises(ValueError, match=r"codes must lie in \[-127, 127\]"):
        _panels.pack_weight_quads(np.full((20, 8), -128, np.int8), np.ones(20))
    if _panels.int8_dot_products():
        with pytest.raises(ValueError, match="quads of W"):
            _panels.panel_product_q8(a, quads[:1], qs, sums, c, False)
        with pytest.raises(ValueError, match="scales and sums"):
            _panels.panel_product_q8(a, quads, qs[:3], sums, c, False)
    if _panels.bf16_dot_products():
        with pytest.raises(ValueError, match="bfloat16 panels of W"):
            _panels.panel_product_bd(a, panels, c, False)


def _layer_cases():
    return {
        "rnn": lambda: fastrnn.RNN(24, 40, num_layers=2, seed=1),
        "gru-after": lambda: fastrnn.GRU(24, 100, seed=2),
        "gru-before": lambda: fastrnn.GRU(24, 40, reset_after=False, seed=3),
        "lstm": lambda: fastrnn.LSTM(24, 256, seed=4),
        "lstm-variants": lambda: fastrnn.LSTM(24, 20, peepholes=True, clip=0.5, seed=5),
        "bi-lstm": lambda: fastrnn.LSTM(24, 36, bidirectional=True, num_layers=2, seed=6),
    }


def _int8_dot_variants():
    """The panel variants with int8 dot products here (AVX-512 VNNI's, AVX2's)."""
    return [v for v in _panel_variants() if v in ("avx512", "avx2")]


@pytest.mark.parametrize("panel_variant", _int8_dot_variants(), indirect=True)
def test_int8_dot_products_are_the_quantized_sums(panel_variant):
    """panel_gemm_q8 (AVX-512 VNNI's vpdpbusd, or AVX2's vpmaddubsw on the
    magnitudes of A's codes): each row of A rounded to 255 levels (s = max
    |a| / 127, round half to even), integer sums with the int8 codes, then s
    x scale x sum: the numpy emulation of exactly that, in float32 where the
    kernel rounds, to float rounding; and within the activations' rounding
    of the float product."""
    from fastrnn._kernels import _panels
    assert _panels.int8_dot_products()
    rng = np.random.default_rng(11)
    for m, n, k in ((1, 1024, 256), (2, 37, 19), (3, 100, 300), (1, 5, 1), (2, 40, 2731),
                    (1, 20, 4), (4, 129, 67), (9, 33, 40)):
        a = rng.standard_normal((m, k)).astype(np.float32)
        a[0, :3] = 0.0
        if m > 1:
            a[1] = 0.0                                    # an all-zero row
        w = rng.standard_normal((n, k)).astype(np.float32)
        codes, scale, wide = round_weights(w, "int8")
        quads, scales, sums = _panels.pack_weight_quads(codes, scale)
        np.testing.assert_array_equal(sums[:n], codes.astype(np.int64).sum(1))
        for accumulate in (False, True):
            c0 = rng.standard_normal((m, n)).astype(np.float32)
            c = c0.copy()
            _panels.panel_product_q8(a, quads, scales, sums, c, accumulate)
            amax = np.abs(a).max(axis=1)
            s = np.where(amax > 0, amax / np.float32(127), np.float32(1)).astype(np.float32)
            q = np.rint(a * (np.float32(1) / s)[:, None]).astype(np.int64)
            dot = (q @ codes.T.astype(np.int64)).astype(np.float32)
            want = dot * (s[:, None] * scale[None, :]) + (c0 if accumulate else 0)
            np.testing.assert_allclose(c, want, rtol=2e-6, atol=1e-6)
            exact = a.astype(np.float64) @ wide.T.astype(np.float64)
            bound = (s[:, None] / 2) * np.abs(wide).sum(axis=1)[None, :]
            assert np.all(np.abs(c - (c0 if accumulate else 0) - exact) <= bound + 1e-5)


def test_int8_dot_products_agree_across_variants_and_propagate_nan():
    """The AVX2 kernel (the AVX-512 variant's on CPUs without VNNI) gives the
    bits of the VNNI one: the same quantized rows and the same int32 sums
    (codes at +-127, activations at the extremes: the AVX2 pair sums reach
    2 x 127 x 127 without saturating). A row of A holding NaN gives NaN
    outputs (its scale is NaN), not a silently wrong number, in every
    position of the row (vector body and scalar tail)."""
    from fastrnn._kernels import _panels
    rng = np.random.default_rng(13)
    m, n, k = 5, 70, 131
    a = rng.standard_normal((m, k)).astype(np.float32)
    a[2] = np.where(np.arange(k) % 2, 3.0, -3.0)              # every code +-127
    w = rng.standard_normal((n, k)).astype(np.float32)
    w[:3] = np.where(np.arange(k) % 3 == 0, -1.0, 1.0)        # codes +-127
    codes, scale, _ = round_weights(w, "int8")
    assert codes.min() == -127 and codes.max() == 127
    quads, scales, sums = _panels.pack_weight_quads(codes, scale)
    variants = _int8_dot_variants()
    before = _panels.panel_kernel()
    out = {}
    try:
        for v in variants:
            _panels.set_panel_kernel(v)
            out[v] = np.empty((m, n), np.float32)
            _panels.panel_product_q8(a, quads, scales, sums, out[v], False)
            for col in (0, 17, k - 1):                       # body and tail
                bad = a.copy()
                bad[1, col] = np.nan
                c = np.zeros((m, n), np.float32)
                _panels.panel_product_q8(bad, quads, scales, sums, c, False)
                assert np.isnan(c[1]).all(), (v, col)
                assert not np.isnan(np.delete(c, 1, axis=0)).any()
                np.testing.assert_array_equal(np.delete(c, 1, axis=0),
                                              np.delete(out[v], 1, axis=0))
    finally:
        _panels.set_panel_kernel(before)
    for v in variants[1:]:                   # (an AVX2-only CPU has the one)
        np.testing.assert_array_equal(out[v], out[variants[0]])


def test_bfloat16_dot_products_are_the_rounded_sums():
    """panel_gemm_bd (AVX512-BF16): each row of A rounded to bfloat16 (to
    nearest even), the products of bfloat16 pairs summed in float32: the
    float64 product of the rounded values, to float32 rounding; within the
    activations' rounding of the float product."""
    from fastrnn._kernels import _panels
    if not _panels.bf16_dot_products():
        pytest.skip("this CPU (or the selected panel variant) has no bfloat16 dot products")
    rng = np.random.default_rng(12)
    for m, n, k in ((1, 1024, 256), (2, 37, 19), (3, 100, 300), (1, 5, 1), (2, 40, 2731),
                    (5, 20, 33), (9, 129, 64)):
        a = rng.standard_normal((m, k)).astype(np.float32)
        w = rng.standard_normal((n, k)).astype(np.float32)
        codes, _, wide = round_weights(w, "bfloat16")
        panels, _ = _panels.pack_weight_panels(codes)
        a16 = round_weights(a, "bfloat16")[2].astype(np.float64)
        for accumulate in (False, True):
            c0 = rng.standard_normal((m, n)).astype(np.float32)
            c = c0.copy()
            _panels.panel_product_bd(a, panels, c, accumulate)
            want = a16 @ wide.T.astype(np.float64) + (c0 if accumulate else 0)
            np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5 * np.sqrt(k))
            exact = a.astype(np.float64) @ wide.T.astype(np.float64)
            bound = 2.0 ** -8 * np.abs(a) @ np.abs(wide).T
            assert np.all(np.abs(c - (c0 if accumulate else 0) - exact) <= bound + 1e-4)


@pytest.mark.parametrize("panel_variant", [v for v in _panel_variants() if v != "blas"],
                         indirect=True)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", list(_layer_cases()))
def test_layer_calls_read_the_reduced_weights(panel_variant, fmt, name, monkeypatch):
    """Layer calls of a quantized layer read its reduced W_hh packed once
    (the thresholds forced open), on the unit split (batch 1 and 2, two
    threads) and on the batch split (one thread; bidirectional; and for dot
    products, which pay at every batch, batch 24 on two threads): the
    outputs and states of the float layer holding the widened weights -- the
    same bits for 16-bit weights, float rounding for widened int8, and
    within the rounding of the activations for dot products -- with its
    float W_hh spoiled to NaN after quantizing (so the reduced copy is what
    is read), at hidden sizes that do not fill whole panels."""
    from fastrnn import _engine
    from fastrnn._kernels import _panels
    dot = ((fmt == "int8" and _panels.int8_dot_products())
           or (fmt == "bfloat16" and _panels.bf16_dot_products()))
    monkeypatch.setattr(_engine, "_UNIT_SPLIT_BYTES", 0)       # every size pays
    layer = _layer_cases()[name]()
    q = fastrnn.quantize(layer, fmt)
    widened = copy.deepcopy(layer)
    widened.load_state_dict(q.state_dict())
    for arr in q._w_hh:
        arr[...] = np.nan                    # not read: the reduced panels are
    rng = np.random.default_rng(3)
    try:
        for threads, batch in ((2, 1), (2, 2), (1, 1), (1, 2)) + (((2, 24),) if dot else ()):
            fastrnn.set_num_threads(threads)
            x = rng.standard_normal((7, batch, 24)).astype(np.float32)
            got, want = q(x), widened(x)
            for a, b in zip(jax_flat(got), jax_flat(want)):
                if dot:
                    # the activations rounded (int8: 255 levels, ~1e-3 per step here;
                    # bfloat16: 8 bits of mantissa), T=7
                    np.testing.assert_allclose(a, b, rtol=0,
                                               atol=2e-2 if fmt == "int8" else 5e-3)
                elif fmt == "int8":
                    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
                else:
                    np.testing.assert_array_equal(a, b)
    finally:
        fastrnn.set_num_threads(None)


def _dot_cases():
    """(panel variant, format) of every dot product this CPU runs."""
    from fastrnn._kernels import _panels
    before, cases = _panels.panel_kernel(), []
    try:
        for v in _panel_variants():
            _panels.set_panel_kernel(v)
            cases += [(v, f) for f, on in (("int8", _panels.int8_dot_products()),
                                           ("bfloat16", _panels.bf16_dot_products())) if on]
    finally:
        _panels.set_panel_kernel(before)
    return cases


@pytest.mark.parametrize("panel_variant, fmt", _dot_cases(), indirect=["panel_variant"])
@pytest.mark.parametrize("kind", ["lstm", "gru-before", "bi-gru"])
def test_dot_product_outputs_do_not_depend_on_the_batch(panel_variant, fmt, kind):
    """On dot products each row of the activations is rounded on its own, and
    both splits read the same packed weights: a row's outputs and states are
    the same bits whether it runs alone (the unit split), with one other
    row, or in a batch of 40 (the batch split), at every thread count, with
    rows of different lengths."""
    layer = {"lstm": lambda: fastrnn.LSTM(24, 70, seed=1),
             "gru-before": lambda: fastrnn.GRU(24, 50, reset_after=False, seed=2),
             "bi-gru": lambda: fastrnn.GRU(24, 40, bidirectional=True, num_layers=2,
                                           seed=3)}[kind]()
    q = fastrnn.quantize(layer, fmt)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((9, 40, 24)).astype(np.float32)
    lengths = rng.integers(1, 10, 40)
    try:
        for threads in (1, 2):
            fastrnn.set_num_threads(threads)
            y, state = q(x, lengths=lengths)
            for rows in ([0], [7], [3, 4], [39]):
                ys, ss = q(x[:, rows], lengths=lengths[rows])
                np.testing.assert_array_equal(ys, y[:, rows])
                # (h_n, or the LSTM's (h_n, c_n))
                for got, want in zip(ss if isinstance(ss, tuple) else (ss,),
                                     state if isinstance(state, tuple) else (state,)):
                    np.testing.assert_array_equal(got, want[:, rows])
    finally:
        fastrnn.set_num_threads(None)


def jax_flat(out):
    """(y, state) as a flat list of arrays."""
    y, state = out
    return [np.asarray(y)] + [np.asarray(s) for s in (state if isinstance(state, tuple)
                                                      else (state,))]


@pytest.mark.parametrize("panel_variant", [v for v in _panel_variants() if v != "blas"][:1],
                         indirect=True)
def test_reduced_layer_token_input_copies_and_bad_panels(panel_variant, monkeypatch):
    """Token ids into a quantized layer (W_ih's columns, no input product);
    deepcopy and pickle of a quantized layer after calls (the packed panels
    are rebuilt, not copied) give the same outputs; panels of the wrong size
    or type never reach the kernels."""
    from fastrnn import _engine
    monkeypatch.setattr(_engine, "_UNIT_SPLIT_BYTES", 0)
    layer = fastrnn.LSTM(30, 48, seed=6)
    q = fastrnn.quantize(layer, "float16")
    widened = copy.deepcopy(layer)
    widened.load_state_dict(q.state_dict())
    ids = np.random.default_rng(0).integers(0, 30, (9, 1))
    np.testing.assert_array_equal(q(ids)[0], widened(ids)[0])
    x = np.random.default_rng(1).standard_normal((9, 1, 30)).astype(np.float32)
    y = q(x)[0]
    assert "_prepacked" in q.__dict__
    for other in (copy.deepcopy(q), pickle.loads(pickle.dumps(q))):
        assert "_prepacked" not in other.__dict__
        np.testing.assert_array_equal(other(x)[0], y)
    # the kernels' entry refuses panels that do not match the layer
    pre = _engine.prepacked(q, 0)
    (ih_wt, ih, ih_s, _), (hh_wt, hh, hh_s, _) = pre
    args = _unit_call_args(q, x)
    ih_part = (ih_wt, ih, ih_s, None)
    np.testing.assert_array_equal(
        _engine._k.forward_layer_units(*args, prepacked=pre) or args[4][2], q(x)[0])
    for bad in ((ih_part, (hh_wt, hh[:-1], hh_s, None)),
                (ih_part, (ih_wt, hh, hh_s, None)),
                (ih_part, (3, hh.view(np.int8), None, None)),         # int8 without scales
                (ih_part, (hh_wt, hh, np.ones(4, np.float32), None)),  # scales for bfloat16
                (ih_part, (hh_wt, hh, hh_s, np.zeros(4, np.int32))),   # sums for bfloat16
                (ih_part, (_engine._k.INT8_DOT, hh.view(np.int8), None, None)),
                ((_engine._k.INT8_DOT, ih, ih_s, None), (hh_wt, hh, hh_s, None)),
                ((9, ih, ih_s, None), (hh_wt, hh, hh_s, None)),
                (ih_part, (hh_wt, hh, hh_s)),
                "panels"):
        with pytest.raises(ValueError, match="prepacked"):
            _engine._k.forward_layer_units(*args, prepacked=bad)


def test_batch_split_entry_refuses_prepacked_that_does_not_fit():
    """forward_layer (the batch split) takes one prepacked tuple per
    direction, float32 inference only, each checked as the unit split's; the
    matching one gives the layer's own outputs."""
    from fastrnn import _engine
    if _engine._k.panel_kernel() == "blas":
        pytest.skip("FASTRNN_PANEL=blas: no prepacked weights")
    layer = fastrnn.GRU(12, 20, bidirectional=True, seed=2)
    q = fastrnn.quantize(layer, "int8")
    x = np.random.default_rng(4).standard_normal((6, 16, 12)).astype(np.float32)
    T, B, _ = x.shape
    H, D = 20, 2
    plan = _engine._plan(None, T, B, D, single_block=False)
    b_ih, b_hh = q._biases(0)
    zeros = np.zeros((D, B, H), np.float32)

    def call(pre, **kw):
        y = np.empty((T, B, D * H), np.float32)
        _engine._k.forward_layer(
            q._kind, x, (q._w_ih[0], q._w_hh[0], b_ih, b_hh),
            (_engine.direction_flags(q, False), plan.lengths, plan.perm, plan.n_active,
             plan.bounds, None),
            (zeros, zeros, y, np.empty((D, B, H), np.float32), np.empty((D, B, H), np.float32)),
            T, 2, prepacked=pre, **kw)
        return y
    both = (_engine.prepacked(q, 0, 0), _engine.prepacked(q, 0, 1))
    np.testing.assert_array_equal(call(both), q(x)[0])
    (ih_wt, ih, ih_s, ih_c), (hh_wt, hh, hh_s, hh_c) = both[1]
    for bad in (both[:1], both + both[:1], [both[0], both[1]],
                (both[0], ((ih_wt, ih, ih_s, ih_c), (hh_wt, hh[:-1], hh_s, hh_c))),
                (both[0], "panels")):
        with pytest.raises(ValueError, match="prepacked"):
            call(bad)


def _unit_call_args(layer, x):
    """forward_layer_units' arguments for one call of a one-layer layer on x."""
    from fastrnn import _engine
    T, B, _ = x.shape
    H = layer.hidden_size
    plan = _engine._plan(None, T, B, 1, single_block=True)
    b_ih, b_hh = layer._biases(0)
    zeros = np.zeros((B, H), np.float32)
    return (layer._kind, x, (layer._w_ih[0][0], layer._w_hh[0][0], b_ih, b_hh),
            (False, plan.lengths, plan.perm, plan.n_active),
            (zeros, zeros, np.empty((T, B, H), np.float32), np.empty((B, H), np.float32),
             np.empty((B, H), np.float32)), T, 2)


def test_half_lanes_measured_or_forced(monkeypatch):
    """Half weights of one-row products widen with 8- or 16-lane conversions
    under the avx512 variant (measured once, FASTRNN_HALF_LANES overrides): the
    same outputs either way, the choice reported by info."""
    from fastrnn import _config, _engine
    from fastrnn._kernels import _panels
    if "avx512" not in _panels.panel_kernels():
        pytest.skip("no avx512 panel variant here")
    before_variant = _panels.panel_kernel()
    _panels.set_panel_kernel("avx512")
    monkeypatch.setattr(_engine, "_UNIT_SPLIT_BYTES", 0)
    chosen = _engine.half_lanes("avx512")
    try:
        assert chosen in (8, 16) and _panels.half_lanes() == chosen
        assert f"F16C, {chosen} lanes" in _config.reduced_weight_kernels()["float16"]
        q = fastrnn.quantize(fastrnn.GRU(40, 100, seed=4), "float16")
        x = np.random.default_rng(0).standard_normal((6, 1, 40)).astype(np.float32)
        outs = []
        for lanes in (8, 16):
            _panels.set_half_lanes(lanes)
            assert _panels.half_lanes() == lanes
            outs.append(q(x)[0])
        np.testing.assert_array_equal(outs[0], outs[1])
        monkeypatch.setenv("FASTRNN_HALF_LANES", "16")
        assert _engine.half_lanes.__wrapped__("avx512") == 16
        monkeypatch.setenv("FASTRNN_HALF_LANES", "12")
        with pytest.raises(ValueError, match="FASTRNN_HALF_LANES must be 8 or 16"):
            _engine.half_lanes.__wrapped__("avx512")
        with pytest.raises(ValueError, match="lanes must be 8 or 16"):
            _panels.set_half_lanes(4)
        # the lanes given per product (how the choice is measured) leave the choice alone
        panels, _ = _panels.pack_weight_panels(np.ones((40, 24), np.float16))
        a, c8, c16 = np.ones((1, 24), np.float32), np.empty((1, 40), np.float32), None
        _panels.set_half_lanes(16)
        _panels.panel_product_w(a, panels, _panels.WEIGHT_TYPES["float16"], None, c8, False,
                                half_lanes=8)
        assert _panels.half_lanes() == 16
        c16 = np.empty_like(c8)
        _panels.panel_product_w(a, panels, _panels.WEIGHT_TYPES["float16"], None, c16, False)
        np.testing.assert_array_equal(c8, c16)
        np.testing.assert_array_equal(c8, 24.0)
        with pytest.raises(ValueError, match="half_lanes must be 0, 8 or 16"):
            _panels.panel_product_w(a, panels, _panels.WEIGHT_TYPES["float16"], None, c8,
                                    False, half_lanes=4)
    finally:
        _panels.set_half_lanes(chosen)
        _panels.set_panel_kernel(before_variant)


@pytest.mark.parametrize("fmt", ["float32"] + FORMATS)
def test_weights_of_a_quantized_module_refuse_writes(fmt):
    """A quantized module's calls read weights packed once: parameters() and
    named_parameters() give read-only views (a write in place would silently
    reach some products and not others), in copies too; the float module's
    stay writable."""
    model = fastrnn.models.SequenceClassifier(vocab_size=6, num_classes=2, hidden_size=16,
                                              seed=1)
    q = fastrnn.quantize(model, fmt)
    X = [np.array([1, 2, 3, 4, 5] * 4), np.array([2, 0])]
    before = q.predict_proba(X)
    for module in (q, copy.deepcopy(q), pickle.loads(pickle.dumps(q))):
        params = module.parameters()
        assert params and all(not p.flags.writeable for p in params)
        for name, p in module.named_parameters():
            with pytest.raises(ValueError, match="read-only"):
                p[...] = 0
        np.testing.assert_array_equal(module.predict_proba(X), before)
        with pytest.raises(ValueError, match="every parameter must be a writeable array"):
            fastrnn.optim.SGD(module, lr=0.1)
    model.parameters()[0][...] += 1          # the float module's: live and writable
