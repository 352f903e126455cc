"""fastrnn.from_keras against Keras 3's own outputs (torch backend; skipped without keras)."""
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

import fastrnn  # noqa: E402

L = keras.layers
# Keras' own numpy conversions warn under numpy 2 (not fastrnn's)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _np(value):
    return keras.ops.convert_to_numpy(value)


def _close(actual, expected, what, tol=2e-5):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    err = float(np.abs(actual - expected).max(initial=0))
    assert err <= tol * max(1.0, float(np.abs(expected).max(initial=0))), (what, err)


def _randomize(layer, seed):
    """Random values in every weight (Keras starts biases at zero)."""
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(w.dtype)
                       for w in layer.get_weights()])


def _recurrent_cases():
    out = []
    for kind, extra in (("SimpleRNN", {}), ("SimpleRNN", {"activation": "relu"}),
                        ("GRU", {"reset_after": True}), ("GRU", {"reset_after": False}),
                        ("LSTM", {})):
        for sequences in (True, False):
            for bias in (True, False):
                tag = "-".join(f"{k}={v}" for k, v in extra.items())
                out.append(pytest.param(kind, extra, sequences, bias,
                                        id=f"{kind}-{tag}-seq={sequences}-bias={bias}"))
    return out


@pytest.mark.parametrize("kind,extra,sequences,bias", _recurrent_cases())
def test_recurrent_layers(kind, extra, sequences, bias):
    layer = getattr(L, kind)(6, return_sequences=sequences, return_state=True, use_bias=bias,
                             **extra)
    x = np.random.default_rng(0).standard_normal((3, 7, 4)).astype(np.float32)
    layer(x)
    _randomize(layer, 1)
    expected = [_np(v) for v in layer(x)]
    ours = fastrnn.from_keras(layer)
    if sequences:
        y, state = ours(x)
        _close(y, expected[0], "y")
    else:
        assert isinstance(ours, fastrnn.FinalState)
        _close(ours(x), expected[0], "last output")
        _, state = ours.module(x)
    states = state if kind == "LSTM" else (state,)
    for ours_s, keras_s in zip(states, expected[1:], strict=True):
        _close(ours_s[0], keras_s, "state")


@pytest.mark.parametrize("merge", ["concat", "sum"])
@pytest.mark.parametrize("kind", ["SimpleRNN", "GRU", "LSTM"])
@pytest.mark.parametrize("sequences", [True, False])
def test_bidirectional(kind, merge, sequences):
    layer = L.Bidirectional(getattr(L, kind)(5, return_sequences=sequences), merge_mode=merge)
    x = np.random.default_rng(2).standard_normal((2, 6, 3)).astype(np.float32)
    layer(x)
    _randomize(layer, 3)
    ours = fastrnn.from_keras(layer)
    out = ours(x)
    _close(out[0] if sequences else out, _np(layer(x)), f"{kind} {merge}")


def test_sequential_model():
    model = keras.Sequential([
        keras.Input((None,), dtype="int32"),
        L.Embedding(12, 4),
        L.Bidirectional(L.LSTM(5, return_sequences=True)),
        L.Dropout(0.5),
        L.GRU(6, reset_after=False),
        L.Dense(7), L.Activation("relu"),
        L.Dense(3, activation="softmax")])
    for layer in model.layers:
        if layer.get_weights():
            _randomize(layer, 4)
    ids = np.random.default_rng(5).integers(0, 12, (4, 9))
    ours = fastrnn.from_keras(model)
    assert isinstance(ours, fastrnn.Sequential)
    assert [type(m).__name__ for m in ours] == ["Embedding", "Bidirectional", "FinalState",
                                                "Dense", "Dense"]
    assert [m.activation for m in ours[3:]] == ["relu", "softmax"]
    _close(ours(ids), _np(model(ids, training=False)), "model")


def test_functional_chain_and_branches():
    inp = keras.Input((None, 3))
    h = L.LSTM(4, return_sequences=True)(inp)
    out = L.Dense(2, activation="tanh")(h)
    chain = keras.Model(inp, out)
    _randomize(chain.layers[1], 6)
    x = np.random.default_rng(7).standard_normal((2, 5, 3)).astype(np.float32)
    _close(fastrnn.from_keras(chain)(x), _np(chain(x)), "functional")
    a = L.Dense(2)(inp)
    b = L.Dense(2)(inp)
    branches = keras.Model(inp, L.Add()([a, b]))
    with pytest.raises((ValueError, TypeError), match="chain|Add"):
        fastrnn.from_keras(branches)


@pytest.mark.parametrize("make", [
    lambda: L.LSTM(5, recurrent_activation="hard_sigmoid", return_sequences=True),
    lambda: L.GRU(5, activation="softsign", recurrent_activation="hard_sigmoid",
                  return_sequences=True),
    lambda: L.SimpleRNN(5, activation="sigmoid", return_sequences=True),
    lambda: L.SimpleRNN(5, activation="elu", return_sequences=True),
    lambda: L.LSTM(5, activation="linear", return_sequences=True),
], ids=["lstm-hard-sigmoid", "gru-softsign", "rnn-sigmoid", "rnn-elu", "lstm-linear"])
def test_other_activations(make):
    """Keras' other activations (those ONNX lists) on fastrnn's general path."""
    layer = make()
    x = np.random.default_rng(4).standard_normal((2, 6, 3)).astype(np.float32)
    layer(x)
    _randomize(layer, 5)
    ours = fastrnn.from_keras(layer)
    assert ours._general
    _close(ours(x)[0], _np(layer(x)), "y")


def test_float64_layer_and_dtype_argument():
    layer = L.GRU(3, return_sequences=True, dtype="float64")
    x = np.random.default_rng(8).standard_normal((2, 4, 2))
    layer(x)
    _randomize(layer, 9)
    ours = fastrnn.from_keras(layer)
    assert ours.dtype is np.float64
    _close(ours(x)[0], _np(layer(x)), "float64", tol=1e-12)
    assert fastrnn.from_keras(layer, dtype=np.float32).dtype is np.float32


@pytest.mark.parametrize("make,error,match", [
    (lambda: L.LSTM(3, stateful=True), ValueError, "stateful"),
    (lambda: L.GRU(3, go_backwards=True), ValueError, "go_backwards"),
    (lambda: L.LSTM(3, activation="selu"), ValueError, "activation 'selu' has no ONNX"),
    (lambda: L.SimpleRNN(3, activation="gelu"), ValueError, "activation 'gelu'"),
    (lambda: L.Bidirectional(L.LSTM(3), merge_mode="ave"), ValueError, "merge_mode 'ave'"),
    (lambda: L.Dense(3, activation="elu"), ValueError, "activation 'elu'"),
    (lambda: L.Conv1D(2, 3), TypeError, "cannot convert a Conv1D"),
])
def test_refusals(make, error, match):
    layer = make()
    x = np.zeros((1, 4, 2), np.float32)
    try:
        layer(x)
    except Exception:               # stateful layers want a fixed batch; building is enough
        layer.build(x.shape)
    with pytest.raises(error, match=match):
        fastrnn.from_keras(layer)


def test_mask_zero_and_non_layers_refused():
    emb = L.Embedding(5, 2, mask_zero=True)
    emb(np.zeros((1, 3), np.int32))
    with pytest.raises(ValueError, match="lengths"):
        fastrnn.from_keras(emb)
    with pytest.raises(TypeError, match="Keras layer or model"):
        fastrnn.from_keras(np.zeros(3))


@pytest.mark.parametrize("make", [lambda: L.LSTM(3), lambda: L.Dense(2),
                                  lambda: L.Embedding(4, 2),
                                  lambda: L.Bidirectional(L.GRU(2)),
                                  lambda: keras.Sequential([L.LSTM(3)])])
def test_unbuilt_layers_refused(make):
    with pytest.raises(ValueError, match="not built"):
        fastrnn.from_keras(make())
