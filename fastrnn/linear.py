"""Dense (per-step linear map + activation) and Embedding (token id -> vector).

Both are linear maps: Dense computes y = f(x Wᵀ + b) on the last axis of an
array of any leading shape (so on every step of a sequence at once; the seed's
output layer y_t = f(W_ya a_t + b_y)); Embedding is the product of a one-hot
row with its weight, done as a row lookup. Each has __call__, forward/backward,
grads/zero_grad and state_dict/load_state_dict like the recurrent layers.
"""
import math

import numpy as np

from fastrnn import _checks, _registry
from fastrnn._module import Context, Parameterized, check_context

_ACTIVATIONS = (None, "tanh", "relu", "sigmoid", "softmax")


def _activate(name, a):
    if name == "softmax":                      # over the last axis
        e = np.exp(a - a.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if name == "tanh":
        return np.tanh(a)
    if name == "relu":
        return np.maximum(a, 0)
    if name == "sigmoid":
        return 0.5 * (1 + np.tanh(0.5 * a))    # σ(a) without overflow in exp
    return a


def _activation_grad(name, y, dy):
    """dL/da from dL/dy and the output y = f(a)."""
    if name == "softmax":                      # J = diag(y) - y yᵀ per row
        return y * (dy - (dy * y).sum(axis=-1, keepdims=True))
    if name == "tanh":
        return dy * (1 - y * y)
    if name == "relu":
        return dy * (y > 0)
    if name == "sigmoid":
        return dy * y * (1 - y)
    return dy


@_registry.saved
class Dense(Parameterized):
    """y = f(x @ weightᵀ + bias) on the last axis; x (..., in_features) -> (..., out_features).

    activation: None (linear), "tanh", "relu", "sigmoid" or "softmax" (over
    the last axis: class probabilities, as Keras' Dense(activation="softmax")). Weights as
    PyTorch's nn.Linear: weight (out_features, in_features), bias (out_features,),
    initialised U(-1/√in, 1/√in).
    """

    def __init__(self, in_features, out_features, activation=None, bias=True,
                 dtype=np.float32, seed=None):
        self.in_features = _checks.size("in_features", in_features)
        self.out_features = _checks.size("out_features", out_features)
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
        self.activation = activation
        self.bias = _checks.boolean("bias", bias)
        self.dtype = _checks.float_dtype(dtype)
        rng = np.random.default_rng(_checks.seed(seed))
        bound = 1.0 / math.sqrt(self.in_features)
        self._params = {"weight": rng.uniform(-bound, bound, (out_features, in_features))
                        .astype(self.dtype)}
        if self.bias:
            self._params["bias"] = rng.uniform(-bound, bound, out_features).astype(self.dtype)
        self._grads = {k: np.zeros_like(v) for k, v in self._params.items()}

    def __repr__(self):
        return (f"Dense({self.in_features}, {self.out_features}, activation={self.activation!r}, "
                f"bias={self.bias}, dtype={self.dtype.__name__})")

    def _config(self):
        return dict(in_features=self.in_features, out_features=self.out_features,
                    activation=self.activation, bias=self.bias, dtype=self.dtype)

    @classmethod
    def _weight_shapes(cls, config):
        fan_in = _checks.size("in_features", config.get("in_features"))
        fan_out = _checks.size("out_features", config.get("out_features"))
        dtype = _checks.float_dtype(config.get("dtype", np.float32))
        shapes = {"weight": ((fan_out, fan_in), dtype)}
        if _checks.boolean("bias", config.get("bias", True)):
            shapes["bias"] = ((fan_out,), dtype)
        return shapes

    def _check_input(self, x):
        arr = _checks.float_array("x", x, self.dtype)
        if arr.ndim < 1 or arr.shape[-1] != self.in_features:
            raise ValueError(f"x must have in_features={self.in_features} on its last axis, "
                             f"got shape {arr.shape}")
        return arr

    def _apply(self, x):
        a = x @ self._params["weight"].T
        if self.bias:
            a += self._params["bias"]
        return _activate(self.activation, a)

    def __call__(self, x):
        return self._apply(self._check_input(x))

    def forward(self, x):
        """``y, ctx``; backward(ctx, dy) returns dx and adds into grads."""
        self._check_trainable("forward (training)")
        x = self._check_input(x)
        y = self._apply(x)
        return y, Context(self, (x, y))

    def backward(self, ctx, dy):
        check_context(ctx, self)
        x, y = ctx.trace
        dy = _checks.state_array("dy", dy, y.shape, self.dtype)
        ctx.used = True
        da = _activation_grad(self.activation, y, dy).reshape(-1, self.out_features)
        # dW = daᵀ x over every leading index at once; db = Σ da; dx = da W
        self._grads["weight"] += da.T @ x.reshape(-1, self.in_features)
        if self.bias:
            self._grads["bias"] += da.sum(axis=0)
        ctx.trace = None
        return (da @ self._params["weight"]).reshape(x.shape)


@_registry.saved
class Embedding(Parameterized):
    """ids (any integer shape) -> vectors (..., embedding_dim): row ``id`` of weight.

    Equals one_hot(ids) @ weight without building the one-hot rows. Weight as
    PyTorch's nn.Embedding: (num_embeddings, embedding_dim), initialised N(0, 1).
    """

    def __init__(self, num_embeddings, embedding_dim, dtype=np.float32, seed=None):
        self.num_embeddings = _checks.size("num_embeddings", num_embeddings)
        self.embedding_dim = _checks.size("embedding_dim", embedding_dim)
        self.dtype = _checks.float_dtype(dtype)
        rng = np.random.default_rng(_checks.seed(seed))
        self._params = {"weight": rng.standard_normal((num_embeddings, embedding_dim))
                        .astype(self.dtype)}
        self._grads = {"weight": np.zeros_like(self._params["weight"])}

    def __repr__(self):
        return (f"Embedding({self.num_embeddings}, {self.embedding_dim}, "
                f"dtype={self.dtype.__name__})")

    def _config(self):
        return dict(num_embeddings=self.num_embeddings, embedding_dim=self.embedding_dim,
                    dtype=self.dtype)

    @classmethod
    def _weight_shapes(cls, config):
        return {"weight": ((_checks.size("num_embeddings", config.get("num_embeddings")),
                            _checks.size("embedding_dim", config.get("embedding_dim"))),
                           _checks.float_dtype(config.get("dtype", np.float32)))}

    def _check_ids(self, ids):
        return _checks.token_ids("ids", ids, self.num_embeddings)

    def __call__(self, ids):
        return self._params["weight"][self._check_ids(ids)]

    def forward(self, ids):
        self._check_trainable("forward (training)")
        ids = self._check_ids(ids)
        return self._params["weight"][ids], Context(self, ids)

    def backward(self, ctx, dy):
        """Adds dL/dweight (rows of repeated ids add up); ids have no gradient: returns None."""
        check_context(ctx, self)
        ids = ctx.trace
        dy = _checks.state_array("dy", dy, ids.shape + (self.embedding_dim,), self.dtype)
        ctx.used = True
        np.add.at(self._grads["weight"], ids.ravel(), dy.reshape(-1, self.embedding_dim))
        ctx.trace = None
        return None
