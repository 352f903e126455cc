"""Property-based fuzzing (hostile input, issue 10.8): random configurations
of every cell form (sizes, layers, directions, batch layout, lengths,
initial states, token ids, thread counts, input layouts) against the numpy
reference of the equations (tests/reference.py), and random directional
finite differences of the gradients in float64.

Hypothesis runs inside a child process (a crash fails this test with the
falsifying example printed, instead of killing the run), derandomized so CI
sees the same examples every time.
"""
import pytest

from isolated import run_isolated

STRATEGY = """
import layouts
import reference as ref
from hypothesis import given, settings, strategies as st, HealthCheck

FORMS = [("rnn", fastrnn.RNN, {"nonlinearity": "tanh"}), ("rnn", fastrnn.RNN, {"nonlinearity": "relu"}),
         ("gru", fastrnn.GRU, {"reset_after": True}), ("gru", fastrnn.GRU, {"reset_after": False}),
         ("lstm", fastrnn.LSTM, {})]
TOL = {np.float32: 3e-5, np.float64: 1e-10}
# the same examples on every run (CI), no example database on disk
SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))

@st.composite
def configs(draw):
    c = dict(form=draw(st.integers(0, 4)), dtype=draw(st.sampled_from([np.float32, np.float64])),
             I=draw(st.integers(1, 6)), H=draw(st.integers(1, 9)), L=draw(st.integers(1, 3)),
             bidi=draw(st.booleans()), B=draw(st.integers(1, 6)), T=draw(st.integers(1, 8)),
             batch_first=draw(st.booleans()), tokens=draw(st.booleans()),
             hx=draw(st.booleans()), threads=draw(st.sampled_from([1, 2])),
             layout=draw(st.sampled_from(["plain"] + list(layouts.VARIANTS))),
             seed=draw(st.integers(0, 2**31 - 1)))
    c["lengths"] = draw(st.none() | st.lists(st.integers(1, c["T"]), min_size=c["B"],
                                             max_size=c["B"]))
    return c

def build(c):
    mode, cls, opts = FORMS[c["form"]]
    layer = cls(c["I"], c["H"], num_layers=c["L"], bidirectional=c["bidi"],
                batch_first=c["batch_first"], dtype=c["dtype"], seed=c["seed"], **opts)
    rng = np.random.default_rng(c["seed"])
    if c["tokens"]:
        ids = rng.integers(0, c["I"], (c["T"], c["B"]))
        x_ref = np.eye(c["I"])[ids]
        x = ids
    else:
        x_ref = rng.standard_normal((c["T"], c["B"], c["I"]))
        x = x_ref.astype(c["dtype"])
        x_ref = x.astype(np.float64)
    if c["batch_first"]:
        x = np.ascontiguousarray(np.swapaxes(x, 0, 1))
    D = 2 if c["bidi"] else 1
    shape = (c["L"] * D, c["B"], c["H"])
    h0 = rng.standard_normal(shape).astype(c["dtype"]) if c["hx"] else None
    c0 = rng.standard_normal(shape).astype(c["dtype"]) if c["hx"] else None
    return mode, opts, layer, x, x_ref, h0, c0

def variant(c, a):
    if a is None or c["layout"] == "plain":
        return a
    return layouts.VARIANTS[c["layout"]](a) if c["layout"] != "broadcast" else a
"""

FORWARD = STRATEGY + """
@settings(max_examples=150, **SETTINGS)
@given(configs())
def forward_matches_reference(c):
    seen.append(c)
    mode, opts, layer, x, x_ref, h0, c0 = build(c)
    fastrnn.set_num_threads(c["threads"])
    is_lstm = mode == "lstm"
    hx = None if h0 is None else ((variant(c, h0), variant(c, c0)) if is_lstm else variant(c, h0))
    y, state = layer(variant(c, x), hx, lengths=c["lengths"] and variant(c, np.array(c["lengths"])))
    h_n, c_n = state if is_lstm else (state, None)
    y_ref, h_ref, c_ref = ref.run_layer(mode, layer.state_dict(), x_ref, c["L"], c["bidi"],
                                        h0=h0, c0=c0, lengths=c["lengths"],
                                        **({} if is_lstm else opts))
    if c["batch_first"]:
        y_ref = np.swapaxes(y_ref, 0, 1)
    tol = TOL[c["dtype"]]
    for got, want in ((y, y_ref), (h_n, h_ref)) + (((c_n, c_ref),) if is_lstm else ()):
        scale = max(1.0, float(np.abs(want).max()))
        err = float(np.abs(got.astype(np.float64) - want).max())
        assert err <= tol * scale, (c, err)

seen = []
forward_matches_reference()
assert len(seen) >= 150, len(seen)
print("forward ok", len(seen), "examples;", sum(c["tokens"] for c in seen), "with token ids")
"""

GRADIENTS = STRATEGY + """
@settings(max_examples=60, **SETTINGS)
@given(configs())
def gradients_match_finite_differences(c):
    seen.append(c)
    c = dict(c, dtype=np.float64, tokens=False, T=min(c["T"], 5))
    if c["lengths"] is not None:
        c["lengths"] = [min(n, c["T"]) for n in c["lengths"]]
    mode, opts, layer, x, x_ref, h0, c0 = build(c)
    fastrnn.set_num_threads(c["threads"])
    is_lstm = mode == "lstm"
    hx = None if h0 is None else ((h0, c0) if is_lstm else h0)
    rng = np.random.default_rng(c["seed"] + 1)
    y, state, ctx = layer.forward(x, hx, lengths=c["lengths"])
    dy = rng.standard_normal(y.shape)
    states = list(state) if is_lstm else [state]
    dstate = [rng.standard_normal(s.shape) for s in states]
    layer.zero_grad()
    dx, dhx = layer.backward(ctx, dy, tuple(dstate) if is_lstm else dstate[0])
    # one random direction through x, the initial states and every weight at once
    vx = rng.standard_normal(x.shape)
    vh = [rng.standard_normal(s.shape) for s in states] if hx is not None else []
    params = dict(layer.named_parameters())
    vp = {k: rng.standard_normal(p.shape) for k, p in params.items()}
    analytic = float(np.sum(dx * vx)) + sum(float(np.sum(g * v)) for g, v in
                                            zip(list(dhx) if is_lstm else [dhx], vh))
    analytic += sum(float(np.sum(layer.grads[k] * v)) for k, v in vp.items())
    base = {k: p.copy() for k, p in params.items()}
    states0 = [] if hx is None else ([h0, c0] if is_lstm else [h0])

    def loss(t):
        for k, p in params.items():
            p[...] = base[k] + t * vp[k]
        h = None if hx is None else [s + t * v for s, v in zip(states0, vh)]
        h = None if h is None else (tuple(h) if is_lstm else h[0])
        y2, s2 = layer(x + t * vx, h, lengths=c["lengths"])
        s2 = list(s2) if is_lstm else [s2]
        return float(np.sum(dy * y2) + sum(np.sum(d * s) for d, s in zip(dstate, s2)))

    eps = 1e-6
    numeric = (loss(eps) - loss(-eps)) / (2 * eps)
    loss(0.0)
    assert abs(analytic - numeric) <= 1e-6 * max(1.0, abs(numeric)), (c, analytic, numeric)

seen = []
gradients_match_finite_differences()
assert len(seen) >= 60, len(seen)
print("gradients ok", len(seen), "examples")
"""


@pytest.mark.parametrize("code,done", [(FORWARD, "forward ok"), (GRADIENTS, "gradients ok")],
                         ids=["forward", "gradients"])
def test_fuzzed_configurations_match_the_reference(code, done):
    out = run_isolated(code, timeout=600).stdout
    assert done in out, out
