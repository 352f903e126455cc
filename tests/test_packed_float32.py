"""fastrnn.quantize(module, "float32"): an inference copy whose unit-split
calls read every thread's share of the weights packed once per team size
instead of packing it at every call. The outputs are the float module's bits."""
import copy
import os
import pickle
import threading

import numpy as np
import pytest

import fastrnn
from fastrnn._kernels import _panels
from fastrnn._kernels import recurrent as _k
from isolated import run_isolated


def _modules():
    return {
        "lstm": lambda: fastrnn.LSTM(24, 100, seed=1),
        "gru-after": lambda: fastrnn.GRU(24, 72, num_layers=2, seed=2),
        "gru-before": lambda: fastrnn.GRU(24, 40, reset_after=False, seed=3),
        "rnn-relu": lambda: fastrnn.RNN(24, 33, nonlinearity="relu", seed=4),
        "lstm-peep-clip": lambda: fastrnn.LSTM(24, 48, peepholes=True, clip=0.7, seed=5),
        "lstm-proj": lambda: fastrnn.LSTM(24, 48, proj_size=20, seed=9),
        "bi-lstm": lambda: fastrnn.LSTM(24, 36, bidirectional=True, seed=6),
        "stacked": lambda: fastrnn.Stacked([fastrnn.GRU(24, 30, seed=7),
                                            fastrnn.LSTM(30, 50, seed=8)]),
    }


def _flat(out):
    """Every array of (y, state), states nested in tuples and lists (Stacked)."""
    if isinstance(out, (tuple, list)):
        return [a for part in out for a in _flat(part)]
    return [np.asarray(out)]


def _shares_made(module, kind="shares"):
    """The (layer, team) of every share packed on the leaves of ``module``
    (kind "batch": the (layer,) of every batch split's panels)."""
    from fastrnn.quantization import _leaves_and_tree
    return {key[1:] for leaf in _leaves_and_tree(module)[0]
            for key in getattr(leaf, "_prepacked", {}) if key[0] == kind}


@pytest.fixture(params=[v for v in _panels.panel_kernels()])
def panel_variant(request):
    before = _panels.panel_kernel()
    _panels.set_panel_kernel(request.param)
    yield request.param
    _panels.set_panel_kernel(before)


@pytest.fixture
def panels():
    """The best panel variant this CPU runs (whatever FASTRNN_PANEL says), and
    the team policy reset."""
    best = _panels.panel_kernels()[0]
    if best == "blas":
        pytest.skip("this CPU runs no panel variant (neither AVX2 nor AVX-512)")
    before = _panels.panel_kernel()
    _panels.set_panel_kernel(best)
    # and the team policy's first state: a stretch of calls run alone, left by
    # an earlier test's late team (3 threads on 2 CPUs), packs its own panels
    _k.team_probe("reset")
    yield
    _k.team_probe("reset")
    _panels.set_panel_kernel(before)


@pytest.mark.parametrize("name", list(_modules()))
def test_outputs_are_the_float_modules_bits(name, panel_variant, monkeypatch):
    """Every batch (unit split and batch split), lengths, initial states, one
    step, teams of 2 and 3 threads: the float module's outputs, bit for bit;
    the shares are made on the unit split's calls (none on BLAS)."""
    from fastrnn import _engine
    monkeypatch.setattr(_engine, "_UNIT_MIN_BYTES", 0)    # small weights split their units too
    module = _modules()[name]()
    q = fastrnn.quantize(module, "float32")
    rng = np.random.default_rng(0)
    try:
        for threads in (2, 3, 1):
            fastrnn.set_num_threads(threads)
            for batch, steps in ((1, 9), (2, 5), (3, 1), (9, 6)):
                x = rng.standard_normal((steps, batch, 24)).astype(np.float32)
                lengths = rng.integers(1, steps + 1, batch) if batch > 1 else None
                kwargs = {} if name == "stacked" else {"lengths": lengths}
                calls = [(x,)]
                if name in ("gru-after", "gru-before", "rnn-relu"):    # an initial state
                    calls.append((x, rng.standard_normal(
                        (module.num_layers, batch, module.hidden_size)).astype(np.float32)))
                for args in calls:
                    want = module(*args, **kwargs)
                    got = q(*args, **kwargs)
                    for a, b in zip(_flat(got), _flat(want)):
                        if panel_variant == "blas":
                            # BLAS's own gemv rounds a row by where the call's
                            # rows start: the team policy (a late partner of 3
                            # threads on 2 CPUs: a call alone) moves them
                            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
                        else:
                            np.testing.assert_array_equal(a, b)
    finally:
        fastrnn.set_num_threads(None)
    made, batch = _shares_made(q), _shares_made(q, "batch")
    if panel_variant == "blas" or name == "lstm-proj":
        # BLAS on the weights as stored; the projection's own step loop
        # (fastrnn._projection)
        assert made == set() and batch == set()
    elif name == "bi-lstm":
        assert made == set() and batch == {(0,)}     # two directions: the batch split
    else:
        assert {team for _, team in made} == {2, 3}, made
        assert batch, batch                          # batch 9, and one thread


def test_the_shares_are_what_the_calls_read(panels):
    """Once a team size's shares (the unit split's) and a layer's batch
    panels (the batch split's) are made, the calls read them: with the
    module's own float weights spoiled to NaN the outputs stay right;
    another team size then packs the (spoiled) weights itself."""
    layer = fastrnn.GRU(16, 64, seed=1)
    q = fastrnn.quantize(layer, "float32")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 1, 16)).astype(np.float32)
    xb = rng.standard_normal((6, 12, 16)).astype(np.float32)
    try:
        fastrnn.set_num_threads(2)
        want, want_b = layer(x), layer(xb)
        for a, b in zip(_flat(q(x)) + _flat(q(xb)), _flat(want) + _flat(want_b)):
            np.testing.assert_array_equal(a, b)
        assert _shares_made(q) == {(0, 2)} and _shares_made(q, "batch") == {(0,)}
        q._w_hh[0][...] = np.nan
        q._w_ih[0][...] = np.nan
        for a, b in zip(_flat(q(x)) + _flat(q(xb)), _flat(want) + _flat(want_b)):
            np.testing.assert_array_equal(a, b)
        fastrnn.set_num_threads(3)      # new shares, from the spoiled weights
        assert np.isnan(q(x)[0]).all()
    finally:
        fastrnn.set_num_threads(None)


def test_a_team_run_alone_packs_for_itself(panels):
    """When the team policy runs a call on one thread (its partner came late),
    the team's shares do not fit that thread: it packs its own, and the
    outputs are the same."""
    layer = fastrnn.LSTM(20, 80, seed=2)
    q = fastrnn.quantize(layer, "float32")
    x = np.random.default_rng(2).standard_normal((8, 1, 20)).astype(np.float32)
    try:
        fastrnn.set_num_threads(2)
        want = _flat(layer(x))
        q(x)                                   # the shares of a team of 2
        _k.team_probe("reset")
        _k.team_probe("report", 2, 10 ** 9, 10 ** 9)   # a late team call: the next runs alone
        got = _flat(q(x))
        assert _k.team_probe("counts")["alone"] >= 1
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    finally:
        _k.team_probe("reset")
        fastrnn.set_num_threads(None)


def test_float64_module_rounds_to_float32():
    """A float64 module quantized to float32 computes in float64 with its
    weight matrices rounded to float32 (no packed shares: those are float32
    kernels'); biases unchanged."""
    layer = fastrnn.GRU(5, 7, dtype=np.float64, seed=3)
    q = fastrnn.quantize(layer, "float32")
    rounded = copy.deepcopy(layer)
    sd = {k: (v.astype(np.float32).astype(np.float64) if k.startswith("weight") else v)
          for k, v in layer.state_dict().items()}
    rounded.load_state_dict(sd)
    x = np.random.default_rng(3).standard_normal((4, 2, 5))
    for a, b in zip(_flat(q(x)), _flat(rounded(x))):
        np.testing.assert_array_equal(a, b)
    for k, v in q.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])
    assert _shares_made(q) == set()


def test_inference_only_files_copies_and_threads(tmp_path):
    """Training refused; the file keeps float32 weights (the float file's
    size) and loads as the same inference module; deepcopy and pickle after
    calls (the shares are rebuilt, not copied); four Python threads calling
    one module get the answers of one."""
    layer = fastrnn.LSTM(12, 64, num_layers=2, seed=4)
    q = fastrnn.quantize(layer, "float32")
    x = np.random.default_rng(4).standard_normal((10, 1, 12)).astype(np.float32)
    want = _flat(layer(x))
    with pytest.raises(ValueError, match="float32 weights"):
        q.forward(x)
    with pytest.raises(ValueError, match="already quantized"):
        fastrnn.quantize(q, "float16")
    full = layer.save(tmp_path / "f32.npz")
    packed = q.save(tmp_path / "packed.npz")
    assert 0.9 < os.path.getsize(packed) / os.path.getsize(full) < 1.1
    loaded = fastrnn.load(packed)
    assert loaded._inference_only == "float32"
    for other in (loaded, copy.deepcopy(q), pickle.loads(pickle.dumps(q))):
        for a, b in zip(_flat(other(x)), want):
            np.testing.assert_array_equal(a, b)
    results = [None] * 4

    def call(i):
        results[i] = [_flat(q(x)) for _ in range(20)]
    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for res in results:
        for out in res:
            for a, b in zip(out, want):
                np.testing.assert_array_equal(a, b)


def test_the_kernels_refuse_shares_that_do_not_fit(panels):
    """unit_shares and batch_panels check the weights' shapes and the team;
    forward_layer_units the shares' team, size and type, forward_layer the
    panels': none reaches a kernel (in a child process: a bad pointer there
    would crash it, not the test run)."""
    run_isolated(_REFUSED_PANELS)


_REFUSED_PANELS = """
import pytest
from fastrnn._kernels import _panels
from fastrnn._kernels import recurrent as _k
_panels.set_panel_kernel(_panels.panel_kernels()[0])
rng = np.random.default_rng(5)
G, H, I = 4 * 32, 32, 8
w_ih = rng.standard_normal((G, I)).astype(np.float32)
w_hh = rng.standard_normal((G, H)).astype(np.float32)
kind = fastrnn.LSTM(I, H)._kind
with pytest.raises(ValueError, match="W_ih must be"):
    _k.unit_shares(kind, w_ih[:-1], w_hh, 2)
with pytest.raises(ValueError, match="team must be between 1 and"):
    _k.unit_shares(kind, w_ih, w_hh, 0)
shares = _k.unit_shares(kind, w_ih, w_hh, 2)
assert not shares.flags.writeable
layer = fastrnn.LSTM(I, H, seed=6)
layer._w_ih[0][0] = w_ih
layer._w_hh[0][0] = w_hh
x = rng.standard_normal((5, 1, I)).astype(np.float32)
T, B = x.shape[:2]
b = np.zeros((1, G), np.float32)
plan = (False, np.full(B, T, np.intp), np.zeros(B, np.intp), np.full(T, B, np.intp))

def call(shares):
    y = np.zeros((T, B, H), np.float32)
    h_n, c_n = np.zeros((B, H), np.float32), np.zeros((B, H), np.float32)
    z = np.zeros((B, H), np.float32)
    _k.forward_layer_units(kind, x, (w_ih, w_hh, b, b), plan, (z, z, y, h_n, c_n),
                           T, 2, shares=shares)
    return y
want = call(None)
np.testing.assert_array_equal(call((2, shares)), want)
for bad in ((3, shares), (2, shares[:-1]), (2, shares.astype(np.float64)),
            (0, shares[:0]), (2, list(shares)), shares,
            (2, _k.unit_shares(kind, w_ih, w_hh, 1))):
    with pytest.raises(ValueError, match="shares"):
        call(bad)
# the batch split's panels
wb_ih, wb_hh = w_ih[None], w_hh[None]
with pytest.raises(ValueError, match="W_ih must be"):
    _k.batch_panels(kind, wb_ih[:, :-1], wb_hh)
hh, ih = _k.batch_panels(kind, wb_ih, wb_hh)
assert not hh.flags.writeable and not ih.flags.writeable
xb = rng.standard_normal((5, 6, I)).astype(np.float32)
Bb = xb.shape[1]
plan_b = (np.zeros(1, np.intc), np.full(Bb, T, np.intp), np.arange(Bb, dtype=np.intp),
          np.full(T, Bb, np.intp), np.array([0, 3, Bb], np.intp), None)

def call_b(given):
    y = np.zeros((T, Bb, H), np.float32)
    z = np.zeros((1, Bb, H), np.float32)
    _k.forward_layer(kind, xb, (wb_ih, wb_hh, b, b), plan_b,
                     (z, z, y, z.copy(), z.copy()), T, 2, panels=given)
    return y
np.testing.assert_array_equal(call_b((hh, ih)), call_b(None))
for bad in ((ih, hh), (hh,), (hh[:-1], ih), (hh.astype(np.float64), ih), [hh, ih],
            (hh, ih[::2])):
    with pytest.raises(ValueError, match="panels"):
        call_b(bad)
# float64 calls have no panels to read
y64, z64 = np.zeros((T, B, H)), np.zeros((B, H))
with pytest.raises(ValueError, match="shares are for float32 inference"):
    _k.forward_layer_units(kind, x.astype(np.float64),
                           (w_ih.astype(np.float64), w_hh.astype(np.float64),
                            b.astype(np.float64), b.astype(np.float64)),
                           plan, (z64, z64, y64, z64.copy(), z64.copy()), T, 2,
                           shares=(2, shares))
"""


def test_ready_made_models_and_token_input(panels):
    """Token ids into the first layer (W_ih's columns gathered; the shares'
    W_ih panels unread) and the ready-made models: the float model's
    outputs, bit for bit, at batch 1 (the unit split) and beyond."""
    clf = fastrnn.models.SequenceClassifier(vocab_size=7, num_classes=3, hidden_size=40,
                                            seed=1)
    lm = fastrnn.models.LanguageModel(fastrnn.data.Vocabulary("abcdefg"), hidden_size=48,
                                      seed=2)
    X = [np.array([1, 2, 3, 4, 5, 6] * 3), np.array([2, 0, 1])]
    try:
        fastrnn.set_num_threads(2)
        q = fastrnn.quantize(clf, "float32")
        for batch in (X[:1], X):
            np.testing.assert_array_equal(q.predict_proba(batch), clf.predict_proba(batch))
        assert _shares_made(q)
        qlm = fastrnn.quantize(lm, "float32")
        assert qlm.generate("abc", 20, temperature=0, seed=0) == lm.generate(
            "abc", 20, temperature=0, seed=0)
        np.testing.assert_array_equal(qlm.evaluate("abcdefgabc" * 3, seq_len=8)["perplexity"],
                                      lm.evaluate("abcdefgabc" * 3, seq_len=8)["perplexity"])
    finally:
        fastrnn.set_num_threads(None)


def test_threads_without_units(panels, monkeypatch):
    """More threads than hidden units: the threads with none pack and read
    nothing; the outputs are still the float layer's."""
    from fastrnn import _engine
    monkeypatch.setattr(_engine, "_UNIT_MIN_BYTES", 0)    # (these weights would not split)
    try:
        fastrnn.set_num_threads(4)
        for H in (1, 3):
            layer = fastrnn.GRU(3, H, seed=H)
            q = fastrnn.quantize(layer, "float32")
            x = np.random.default_rng(H).standard_normal((7, 1, 3)).astype(np.float32)
            for a, b in zip(_flat(q(x)), _flat(layer(x))):
                np.testing.assert_array_equal(a, b)
            assert _shares_made(q) == {(0, 4)}
    finally:
        fastrnn.set_num_threads(None)
