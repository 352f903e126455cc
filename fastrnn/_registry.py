"""The module types a model file may name, and their descriptions.

Every class a file can hold registers itself with ``@saved`` and provides
  _config()                -> the keyword arguments that rebuild it (JSON-able
                              once describe() has turned dtypes into names;
                              composites give their parts' descriptions),
  _from_config(config)     -> a new instance with fresh weights (default
                              ``cls(**config)``),
  _weight_shapes(config)   -> {state_dict key: (shape, dtype)} of the instance
                              ``config`` describes, computed without building
                              it (fastrnn.io compares a file with it first).
This module imports no other part of fastrnn, so the modules, fastrnn.io and
the models all import it without a cycle.
"""
import numpy as np

TYPES = {}
# what a description may declare beyond the per-size bound of fastrnn._checks.size
MAX_LAYERS = 4096        # num_layers of one recurrent layer, entries of a Stacked


def saved(cls):
    """Class decorator: ``cls`` may be written to and read from model files."""
    TYPES[cls.__name__] = cls
    return cls


def describe(module):
    """{"type": the class name, **its configuration}: JSON-able, no weights."""
    cls = type(module)
    if TYPES.get(cls.__name__) is not cls:
        raise TypeError(f"module must be a fastrnn module, got {cls.__name__}")
    config = {key: (np.dtype(value).name if isinstance(value, type) else value)
              for key, value in module._config().items()}
    return {"type": cls.__name__, **config}


def _split(description):
    """(class, configuration) of a description; ValueError for anything else."""
    if not isinstance(description, dict) or not isinstance(description.get("type"), str):
        raise ValueError(f"a module description must be a JSON object with a 'type', "
                         f"got {description!r:.80}")
    cls = TYPES.get(description["type"])
    if cls is None:
        raise ValueError(f"unknown module type {description['type']!r}")
    return cls, {k: v for k, v in description.items() if k != "type"}


def build(description):
    """A new module (fresh weights) from a description made by ``describe``."""
    cls, config = _split(description)
    return cls._from_config(config)


def weight_shapes(description):
    """{state_dict key: (shape, dtype)} of the module ``description`` declares,
    every size checked, nothing allocated."""
    cls, config = _split(description)
    return cls._weight_shapes(config)


def listed_weight_shapes(config, key, owner):
    """The weight shapes of a composite whose description lists its parts
    under ``key`` (Stacked's layers, Sequential's modules), each prefixed with
    its index; ValueError for a list that is missing, empty or too long."""
    parts = config.get(key)
    if not isinstance(parts, list) or not 1 <= len(parts) <= MAX_LAYERS:
        raise ValueError(f"a {owner} description needs a list of 1 to {MAX_LAYERS} {key!r}")
    return prefixed({str(i): weight_shapes(d) for i, d in enumerate(parts)})


def prefixed(parts):
    """{part: {key: v}} -> {"part.key": v}: the weight names of a composite."""
    return {f"{part}.{key}": v for part, arrays in parts.items() for key, v in arrays.items()}
