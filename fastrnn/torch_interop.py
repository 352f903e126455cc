"""PyTorch modules in and out: ``fastrnn.from_torch(module)``, ``fastrnn.to_torch(module)``.

PyTorch is needed only by these two functions (it is not imported otherwise).
What converts (weights copied; the source is never modified):

=========================================  =====================================
PyTorch                                    fastrnn
=========================================  =====================================
nn.RNN / nn.GRU / nn.LSTM                  RNN / GRU / LSTM (every option PyTorch
                                           has; proj_size runs on the general path)
nn.RNNCell / nn.GRUCell / nn.LSTMCell      RNNCell / GRUCell / LSTMCell
nn.Linear (+ a following Tanh/ReLU/        Dense (activation folded in)
Sigmoid/Softmax(dim=-1) in an nn.Sequential)
nn.Embedding (no max_norm)                 Embedding
nn.Sequential                              Sequential (Dropout and Identity
                                           dropped: they do nothing at inference)
nn.ModuleList / nn.ModuleDict              list / dict of the converted modules
any other nn.Module whose parameters all   dict {child name: converted child}
live in convertible children               (its forward() is Python code: the
                                           children are what converts)
=========================================  =====================================

``to_torch`` goes back for RNN/GRU/LSTM (GRU only with reset_after=True:
PyTorch has no reset-before GRU), Bidirectional of a one-direction layer
(PyTorch's bidirectional=True), the cells, Dense (nn.Linear, in an
nn.Sequential with its activation when it has one) and Embedding.
Anything else is refused with a TypeError/ValueError naming it.
"""
import sys

import numpy as np

from fastrnn.cells import GRUCell, LSTMCell, RNNCell
from fastrnn.composition import Bidirectional
from fastrnn.layers import GRU, LSTM, RNN
from fastrnn.linear import Dense, Embedding
from fastrnn.sequential import Sequential

_ACTIVATIONS = {"Tanh": "tanh", "ReLU": "relu", "Sigmoid": "sigmoid",   # torch.nn class names
                "Softmax": "softmax"}
_PASSIVE = ("Dropout", "Identity")          # nothing at inference


def _is(module, names):
    """Whether ``module`` is exactly one of the torch.nn classes ``names``."""
    nn = sys.modules["torch"].nn
    return any(type(module) is getattr(nn, name) for name in names)


def _torch():
    try:
        import torch
    except ImportError as exc:             # pragma: no cover - torch is installed in CI
        raise ImportError("fastrnn.from_torch / to_torch need PyTorch "
                          "(pip install torch)") from exc
    return torch


def _target_dtype(module, dtype, name):
    """The numpy dtype of the converted module: ``dtype`` when given, else the
    module's own parameters' (float32 or float64)."""
    torch = sys.modules["torch"]
    if dtype is not None:
        dt = np.dtype(dtype)
        if dt not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dt}")
        return dt.type
    kinds = {p.dtype for p in module.parameters()}
    if kinds <= {torch.float32}:
        return np.float32
    if kinds == {torch.float64}:
        return np.float64
    raise ValueError(f"{name} has parameters of dtype {sorted(map(str, kinds))}; fastrnn "
                     f"computes in float32 or float64: pass dtype=numpy.float32 (or "
                     f"numpy.float64) to convert them")


def _arrays(module):
    """{name: numpy copy} of a torch module's parameters (float64 first, so any
    torch float dtype converts exactly; the module's own tensors are untouched)."""
    torch = sys.modules["torch"]
    tensors = module.state_dict()
    meta = [k for k, v in tensors.items() if v.is_meta]
    if meta:
        raise ValueError(f"{type(module).__name__}: {meta[0]!r} is on the meta device (it has "
                         f"no values); materialise the module first (module.to_empty(...) "
                         f"and load its weights)")
    return {k: v.detach().to("cpu", torch.float64).numpy().copy() for k, v in tensors.items()}


def from_torch(module, *, dtype=None):
    """The fastrnn equivalent of a PyTorch module (see the module docstring).

    dtype: float32 or float64; None takes the module's own (a float16 or
    bfloat16 module needs it). Outputs equal PyTorch's for the same input
    (float32 within rounding). Unsupported modules: TypeError naming the type
    (and its place inside a container); unsupported options: ValueError.
    """
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    return _convert(module, dtype, type(module).__name__)


def _convert(module, dtype, where):
    nn = sys.modules["torch"].nn
    kind = type(module)
    if kind in (nn.RNN, nn.GRU, nn.LSTM):
        return _layer(module, dtype, where)
    if kind in (nn.RNNCell, nn.GRUCell, nn.LSTMCell):
        return _cell(module, dtype, where)
    if kind is nn.Linear:
        return _dense(module, None, dtype, where)
    if kind is nn.Embedding:
        return _embedding(module, dtype, where)
    if kind is nn.Sequential:
        return _sequential(module, dtype, where)
    if kind is nn.ModuleList:
        return [_convert(m, dtype, f"{where}[{i}]") for i, m in enumerate(module)]
    if kind is nn.ModuleDict:
        return {k: _convert(m, dtype, f"{where}[{k!r}]") for k, m in module.items()}
    children = dict(module.named_children())
    own = [name for name, _ in module.named_parameters(recurse=False)]
    if children and not own and kind.__module__.split(".")[0] != "torch":
        return {name: _convert(m, dtype, f"{where}.{name}") for name, m in children.items()}
    raise TypeError(f"{where}: cannot convert {kind.__module__}.{kind.__name__}; fastrnn "
                    f"converts nn.RNN/GRU/LSTM, their cells, nn.Linear, nn.Embedding, "
                    f"nn.Sequential, nn.ModuleList, nn.ModuleDict and modules made of these")


def _layer(module, dtype, where):
    nn = sys.modules["torch"].nn
    options = dict(num_layers=module.num_layers, bias=module.bias,
                   batch_first=module.batch_first, dropout=module.dropout,
                   bidirectional=module.bidirectional,
                   dtype=_target_dtype(module, dtype, where))
    if isinstance(module, nn.LSTM):
        layer = LSTM(module.input_size, module.hidden_size, proj_size=module.proj_size,
                     **options)
    elif isinstance(module, nn.GRU):
        layer = GRU(module.input_size, module.hidden_size, **options)
    else:
        layer = RNN(module.input_size, module.hidden_size, nonlinearity=module.nonlinearity,
                    **options)
    layer.load_state_dict(_arrays(module))
    return layer


def _cell(module, dtype, where):
    nn = sys.modules["torch"].nn
    options = dict(bias=module.bias, dtype=_target_dtype(module, dtype, where))
    if isinstance(module, nn.LSTMCell):
        cell = LSTMCell(module.input_size, module.hidden_size, **options)
    elif isinstance(module, nn.GRUCell):
        cell = GRUCell(module.input_size, module.hidden_size, **options)
    else:
        cell = RNNCell(module.input_size, module.hidden_size,
                       nonlinearity=module.nonlinearity, **options)
    cell.load_state_dict(_arrays(module))
    return cell


def _dense(module, activation, dtype, where):
    dense = Dense(module.in_features, module.out_features, activation=activation,
                  bias=module.bias is not None, dtype=_target_dtype(module, dtype, where))
    dense.load_state_dict(_arrays(module))
    return dense


def _embedding(module, dtype, where):
    if module.max_norm is not None:
        raise ValueError(f"{where}: Embedding with max_norm={module.max_norm} is not "
                         f"supported (it renormalizes rows at every lookup)")
    emb = Embedding(module.num_embeddings, module.embedding_dim,
                    dtype=_target_dtype(module, dtype, where))
    emb.load_state_dict(_arrays(module))
    return emb


def _sequential(module, dtype, where):
    """nn.Sequential -> Sequential; an activation right after a Linear becomes
    the Dense's activation. The state_dict keys of the result are renumbered
    (positions of the kept modules)."""
    nn = sys.modules["torch"].nn
    items = list(module.named_children())
    out, i = [], 0
    while i < len(items):
        name, m = items[i]
        here = f"{where}[{name}]"
        if _is(m, _PASSIVE):
            i += 1
            continue
        if type(m) is nn.Linear:
            act = None
            if i + 1 < len(items) and _is(items[i + 1][1], _ACTIVATIONS):
                act = _ACTIVATIONS[type(items[i + 1][1]).__name__]
                if act == "softmax" and items[i + 1][1].dim != -1:
                    raise ValueError(f"{where}[{items[i + 1][0]}]: Softmax over dim "
                                     f"{items[i + 1][1].dim}; fastrnn's Dense takes it over "
                                     f"the last axis (dim=-1)")
                i += 1
            out.append(_dense(m, act, dtype, here))
        elif _is(m, _ACTIVATIONS):
            raise TypeError(f"{here}: a {type(m).__name__} that does not follow a Linear is "
                            f"not supported (fastrnn folds activations into Dense)")
        else:
            converted = _convert(m, dtype, here)
            if isinstance(converted, (list, dict)):
                raise TypeError(f"{here}: a container inside an nn.Sequential is not supported")
            if isinstance(converted, (RNNCell, GRUCell, LSTMCell)):
                raise TypeError(f"{here}: a cell inside an nn.Sequential is not supported")
            out.append(converted)
        i += 1
    if not out:
        raise ValueError(f"{where}: the nn.Sequential holds nothing to convert")
    return Sequential(out)


# -- fastrnn -> PyTorch ---------------------------------------------------------------
def to_torch(module):
    """A PyTorch module holding a copy of a fastrnn module's weights.

    RNN/GRU/LSTM layers (GRU with reset_after=True), Bidirectional of a
    one-direction layer with merge="concat", the cells, Dense (nn.Linear,
    followed by its activation in an nn.Sequential) and Embedding. The result
    has the source's dtype and gives its outputs.
    """
    torch = _torch()
    nn = torch.nn
    if isinstance(module, Bidirectional):
        inner = module.layer
        if (module.merge != "concat" or not isinstance(inner, (RNN, GRU, LSTM))
                or inner.num_layers != 1):
            raise ValueError("to_torch converts a Bidirectional only around a one-layer "
                             "RNN/GRU/LSTM with merge='concat' (PyTorch's bidirectional=True)")
        out = _torch_layer(inner, bidirectional=True)
    elif isinstance(module, (RNN, GRU, LSTM)):
        out = _torch_layer(module, module.bidirectional)
    elif isinstance(module, (RNNCell, GRUCell, LSTMCell)):
        if isinstance(module, GRUCell) and not module._layer.reset_after:
            raise ValueError("PyTorch's GRUCell is the reset-after form; a GRUCell with "
                             "reset_after=False has no PyTorch equivalent")
        cls = {RNNCell: nn.RNNCell, GRUCell: nn.GRUCell, LSTMCell: nn.LSTMCell}[type(module)]
        extra = {"nonlinearity": module._layer.nonlinearity} if isinstance(module, RNNCell) \
            else {}
        out = cls(module.input_size, module.hidden_size, bias=module.bias, **extra)
    elif isinstance(module, Dense):
        out = nn.Linear(module.in_features, module.out_features, bias=module.bias)
    elif isinstance(module, Embedding):
        out = nn.Embedding(module.num_embeddings, module.embedding_dim)
    else:
        raise TypeError(f"module must be a fastrnn RNN/GRU/LSTM layer, Bidirectional, cell, "
                        f"Dense or Embedding, got {type(module).__name__}")
    out = out.to(torch.float32 if module.dtype is np.float32 else torch.float64)
    out.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in module.state_dict().items()})
    if isinstance(module, Dense) and module.activation is not None:
        act = {v: k for k, v in _ACTIVATIONS.items()}[module.activation]
        out = nn.Sequential(out, nn.Softmax(dim=-1) if act == "Softmax" else getattr(nn, act)())
    return out


def _torch_layer(layer, bidirectional):
    nn = sys.modules["torch"].nn
    if isinstance(layer, GRU) and not layer.reset_after:
        raise ValueError("PyTorch's GRU is the reset-after form; a GRU with reset_after=False "
                         "has no PyTorch equivalent")
    options = dict(num_layers=layer.num_layers, bias=layer.bias, batch_first=layer.batch_first,
                   dropout=layer.dropout, bidirectional=bidirectional)
    if (layer.clip is not None or layer._general and not layer.proj_size
            or getattr(layer, "peepholes", False) or getattr(layer, "input_forget", False)):
        raise ValueError("PyTorch's layers have no clip, activations, peepholes or "
                         "input_forget; only proj_size of the variants converts")
    if isinstance(layer, RNN):
        options["nonlinearity"] = layer.nonlinearity
    if isinstance(layer, LSTM):
        options["proj_size"] = layer.proj_size
    cls = {RNN: nn.RNN, GRU: nn.GRU, LSTM: nn.LSTM}[type(layer)]
    return cls(layer.input_size, layer.hidden_size, **options)
