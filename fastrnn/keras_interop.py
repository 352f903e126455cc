"""Keras 3 layers and models in: ``fastrnn.from_keras(layer_or_model)``.

Keras is needed only by this function (never imported otherwise); its
weights are read with ``get_weights()``, so any Keras backend works.

==========================================  ==========================================
Keras 3                                     fastrnn
==========================================  ==========================================
SimpleRNN (tanh / relu)                     RNN(batch_first=True)
GRU (reset_after True / False)              GRU(batch_first=True, reset_after=...)
LSTM                                        LSTM(batch_first=True)
... with return_sequences=False             FinalState(layer): the last step's output
Bidirectional (merge_mode concat / sum)     Bidirectional(layer, merge=...)
Embedding (without mask_zero)               Embedding
Dense (linear, tanh, relu, sigmoid,         Dense
softmax; an Activation layer after it
is folded in)
Sequential, or a Functional model that is   Sequential (Dropout / InputLayer dropped)
a chain of the layers above
==========================================  ==========================================

Layouts: Keras' kernel is (I, G*H) and recurrent_kernel (H, G*H), the
transposes of fastrnn's; the LSTM's gate order [i, f, c, o] is PyTorch's; the
GRU's [z, r, h] becomes [r, z, n] (Keras' z weighs h_{t-1} as PyTorch's z
does); a reset-after GRU's bias (2, 3H) is (input, recurrent); the other
biases are input biases (recurrent ones zero). Refused with a ValueError
naming the layer: stateful layers, go_backwards outside a Bidirectional,
activations outside ONNX's list (tanh, sigmoid, relu, hard_sigmoid, linear,
elu, softsign and softplus convert; other than tanh/sigmoid they run on
fastrnn's general path), mask_zero (pass ``lengths`` to fastrnn instead),
merge modes ave / mul / None, and layers outside the table (TypeError).
"""
import sys

import numpy as np

from fastrnn.composition import Bidirectional
from fastrnn.layers import GRU, LSTM, RNN
from fastrnn.linear import Dense, Embedding
from fastrnn.sequential import FinalState, Sequential

_KERAS_GRU_ROWS = (1, 0, 2)           # fastrnn block k = Keras block _KERAS_GRU_ROWS[k]
_DENSE_ACTIVATIONS = {"linear": None, "tanh": "tanh", "relu": "relu", "sigmoid": "sigmoid",
                      "softmax": "softmax"}
_SKIPPED = ("InputLayer", "Dropout", "SpatialDropout1D", "GaussianDropout", "AlphaDropout")


def _keras():
    keras = sys.modules.get("keras")
    if keras is None:
        try:
            import keras
        except ImportError as exc:
            raise ImportError("fastrnn.from_keras needs Keras 3 (pip install keras)") from exc
    return keras


def from_keras(layer_or_model, *, dtype=None):
    """The fastrnn equivalent of a Keras 3 layer or model (see the module docstring).

    dtype: float32 or float64; None takes the layer's variable dtype (a
    float16/bfloat16 policy needs it). Outputs equal Keras' (float32 within
    rounding); a recurrent layer's fastrnn form is batch-first, its call
    returns (y, h_n) whatever return_state says.
    """
    keras = _keras()
    if not isinstance(layer_or_model, keras.layers.Layer):
        raise TypeError(f"layer_or_model must be a Keras layer or model, got "
                        f"{type(layer_or_model).__name__}")
    if not layer_or_model.built:
        raise ValueError(f"{layer_or_model.name}: the layer is not built (call it once, or "
                         f"give the model an Input) so its weights do not exist yet")
    if isinstance(layer_or_model, keras.Model):
        return _model(keras, layer_or_model, dtype)
    converted = _convert_chain(keras, [layer_or_model], dtype, type(layer_or_model).__name__)
    if len(converted) != 1:
        raise ValueError(f"{layer_or_model.name}: nothing to convert (it does nothing at "
                         f"inference)")
    return converted[0]


def _model(keras, model, dtype):
    layers = list(model.layers)
    if type(model).__name__ == "Functional":
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ValueError(f"{model.name}: only a chain of layers (one input, one output) "
                             f"converts")
        for prev, cur in zip(layers, layers[1:]):
            if cur.input is not prev.output:          # (a list for a layer of several inputs)
                raise ValueError(f"{model.name}: layer {cur.name!r} does not read the output "
                                 f"of {prev.name!r}; only a chain of layers converts")
    elif not isinstance(model, keras.Sequential):
        raise TypeError(f"{model.name}: a subclassed Keras model ({type(model).__name__}) "
                        f"does not convert; convert its layers one by one")
    converted = _convert_chain(keras, layers, dtype, model.name)
    if not converted:
        raise ValueError(f"{model.name}: the model holds nothing to convert")
    return Sequential(converted)


def _convert_chain(keras, layers, dtype, where):
    out, i = [], 0
    while i < len(layers):
        layer = layers[i]
        name = type(layer).__name__
        here = f"{where}: layer {layer.name!r} ({name})"
        if name in _SKIPPED:
            i += 1
            continue
        if isinstance(layer, keras.layers.Dense):
            activation = _dense_activation(layer.get_config()["activation"], here)
            if (i + 1 < len(layers) and isinstance(layers[i + 1], keras.layers.Activation)
                    and activation is None):
                activation = _dense_activation(layers[i + 1].get_config()["activation"],
                                               f"{where}: layer {layers[i + 1].name!r}")
                i += 1
            out.append(_dense(layer, activation, dtype, here))
        elif isinstance(layer, keras.layers.Embedding):
            out.append(_embedding(layer, dtype, here))
        elif isinstance(layer, keras.layers.Bidirectional):
            out.append(_bidirectional(keras, layer, dtype, here))
        elif isinstance(layer, (keras.layers.SimpleRNN, keras.layers.GRU, keras.layers.LSTM)):
            converted, sequences = _recurrent(keras, layer, dtype, here)
            out.append(converted if sequences else FinalState(converted))
        else:
            raise TypeError(f"{here}: cannot convert a {name}; fastrnn converts SimpleRNN, GRU, "
                            f"LSTM, Bidirectional, Embedding, Dense (+ Activation), Dropout "
                            f"and InputLayer")
        i += 1
    return out


def _dtype(layer, dtype, where):
    if dtype is not None:
        dt = np.dtype(dtype)
        if dt not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dt}")
        return dt.type
    policy = layer.dtype_policy
    names = {str(policy.variable_dtype), str(policy.compute_dtype)}
    if names == {"float32"}:
        return np.float32
    if names == {"float64"}:
        return np.float64
    raise ValueError(f"{where} computes in {policy.compute_dtype} (variables "
                     f"{policy.variable_dtype}); fastrnn computes in float32 or float64: pass "
                     f"dtype=numpy.float32 (or numpy.float64) to convert it")


def _weights(layer):
    return [np.asarray(w, np.float64) for w in layer.get_weights()]


def _dense_activation(activation, where):
    name = activation if isinstance(activation, str) else getattr(activation, "__name__", None)
    if name not in _DENSE_ACTIVATIONS:
        raise ValueError(f"{where}: activation {name or activation!r} is not supported "
                         f"({', '.join(_DENSE_ACTIVATIONS)})")
    return _DENSE_ACTIVATIONS[name]


def _dense(layer, activation, dtype, where):
    cfg = layer.get_config()
    weights = _weights(layer)
    kernel = weights[0]
    if kernel.ndim != 2:
        raise ValueError(f"{where}: only a 2-D kernel converts, got {kernel.shape}")
    dense = Dense(kernel.shape[0], kernel.shape[1], activation=activation,
                  bias=cfg["use_bias"], dtype=_dtype(layer, dtype, where))
    sd = {"weight": kernel.T}
    if cfg["use_bias"]:
        sd["bias"] = weights[1]
    dense.load_state_dict(sd)
    return dense


def _embedding(layer, dtype, where):
    cfg = layer.get_config()
    if cfg.get("mask_zero"):
        raise ValueError(f"{where}: mask_zero=True is not supported: fastrnn takes the valid "
                         f"length of each sequence instead (lengths=...); convert a copy "
                         f"without mask_zero and pass lengths")
    (table,) = _weights(layer)
    emb = Embedding(table.shape[0], table.shape[1], dtype=_dtype(layer, dtype, where))
    emb.load_state_dict({"weight": table})
    return emb


def _recurrent(keras, layer, dtype, where, inside_bidirectional=False):
    """(fastrnn RNN/GRU/LSTM with the layer's weights, return_sequences)."""
    cfg = layer.get_config()
    if cfg.get("stateful"):
        raise ValueError(f"{where}: stateful layers are not supported (pass the state "
                         f"explicitly: fastrnn's calls take hx and return h_n)")
    if cfg.get("go_backwards") and not inside_bidirectional:
        raise ValueError(f"{where}: go_backwards=True is supported inside a Bidirectional "
                         f"only (Keras returns its outputs in reversed order)")
    units = int(cfg["units"])
    activation = _keras_function(cfg.get("activation"), where)
    options = {}
    if isinstance(layer, keras.layers.SimpleRNN):
        cls, gates = RNN, 1
        functions = [activation]
    else:
        cls, gates = (GRU, 3) if isinstance(layer, keras.layers.GRU) else (LSTM, 4)
        gate = _keras_function(cfg.get("recurrent_activation"), where)
        # ONNX's order: f (the gates), g (the candidate), h (the LSTM's output)
        functions = [gate, activation] + ([activation] if cls is LSTM else [])
        if cls is GRU:
            options["reset_after"] = bool(cfg.get("reset_after", True))
    if [f[0] for f in functions] == (["relu"] if cls is RNN else []):
        options["nonlinearity"] = "relu"
    elif [f[0] for f in functions] not in (["tanh"], ["sigmoid", "tanh"],
                                            ["sigmoid", "tanh", "tanh"]):
        # other functions: ONNX's names, with alpha/beta, on the general path
        options["activations"] = [f[0] for f in functions]
        options["activation_alpha"] = [f[1] for f in functions if f[1] is not None]
        options["activation_beta"] = [f[2] for f in functions if f[2] is not None]
    weights = _weights(layer)
    kernel, recurrent = weights[0], weights[1]
    in_size = kernel.shape[0]
    G = gates * units
    if kernel.shape != (in_size, G) or recurrent.shape != (units, G):
        raise ValueError(f"{where}: unexpected weight shapes {kernel.shape}, {recurrent.shape}")
    fast = cls(in_size, units, bias=bool(cfg["use_bias"]), batch_first=True,
               dtype=_dtype(layer, dtype, where), **options)

    def rows(w):                       # Keras columns -> fastrnn gate rows
        w = np.asarray(w).T
        if cls is not GRU:
            return w
        blocks = np.split(w, 3, axis=0)
        return np.concatenate([blocks[k] for k in _KERAS_GRU_ROWS], axis=0)

    sd = {"weight_ih_l0": rows(kernel), "weight_hh_l0": rows(recurrent)}
    if cfg["use_bias"]:
        bias = weights[2]
        if bias.ndim == 2:             # reset-after GRU: (input, recurrent)
            sd["bias_ih_l0"], sd["bias_hh_l0"] = rows(bias[0]), rows(bias[1])
        else:
            sd["bias_ih_l0"], sd["bias_hh_l0"] = rows(bias), np.zeros(G)
    fast.load_state_dict(sd)
    return fast, bool(cfg.get("return_sequences", False))


# Keras 3's activations that ONNX's list holds: (ONNX name, alpha, beta);
# Keras' hard_sigmoid is relu6(x + 3) / 6 = HardSigmoid(1/6, 1/2)
_KERAS_FUNCTIONS = {"tanh": ("tanh", None, None), "sigmoid": ("sigmoid", None, None),
                    "relu": ("relu", None, None), "hard_sigmoid": ("hardsigmoid", 1 / 6, 0.5),
                    "linear": ("affine", 1.0, 0.0), "elu": ("elu", 1.0, None),
                    "softsign": ("softsign", None, None), "softplus": ("softplus", None, None)}


def _keras_function(name, where):
    name = name if isinstance(name, str) else getattr(name, "__name__", repr(name))
    if name not in _KERAS_FUNCTIONS:
        raise ValueError(f"{where}: activation {name!r} has no ONNX equivalent fastrnn computes "
                         f"({', '.join(_KERAS_FUNCTIONS)})")
    return _KERAS_FUNCTIONS[name]


def _bidirectional(keras, layer, dtype, where):
    merge = layer.get_config().get("merge_mode")
    if merge not in ("concat", "sum"):
        raise ValueError(f"{where}: merge_mode {merge!r} is not supported (concat or sum)")
    fwd, sequences = _recurrent(keras, layer.forward_layer, dtype, where + " forward")
    bwd, _ = _recurrent(keras, layer.backward_layer, dtype, where + " backward",
                        inside_bidirectional=True)
    if type(fwd) is not type(bwd) or fwd._config() != bwd._config():
        raise ValueError(f"{where}: the forward and backward layers differ in kind or size")
    both = Bidirectional(fwd, merge=merge)
    both.reverse_layer.load_state_dict(bwd.state_dict())
    return both if sequences else FinalState(both)
