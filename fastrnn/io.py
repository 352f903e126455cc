"""Model files: one .npz holding the weights and a JSON description of the module.

    layer.save("model.npz")            # any fastrnn module or fastrnn.models model
    same = fastrnn.load("model.npz")   # the same kind of module, same outputs

The file is a numpy .npz archive: one array per state_dict entry, plus
``__fastrnn__``, a string array holding JSON {"format", "version", "module"};
a model's description includes its vocabulary (its symbols and unknown token).
Loading never unpickles (allow_pickle=False), rebuilds the module from the
description and checks every key and shape before any weight is used; a file
that is truncated, corrupt, or does not match its description is a ValueError
naming the file.
"""
import json
import os

import numpy as np

FORMAT = "fastrnn-module"
VERSION = 1
HEADER = "__fastrnn__"
MODELS = ("SequenceClassifier", "SequenceTagger", "Seq2Seq", "LanguageModel")


def describe(module):
    """A JSON-able description of ``module``'s architecture (not its weights)."""
    from fastrnn.cells import GRUCell, LSTMCell, RNNCell, _Cell
    from fastrnn.composition import Bidirectional, Stacked
    from fastrnn.layers import _RecurrentLayer
    from fastrnn.linear import Dense, Embedding
    from fastrnn.models._base import Model

    if isinstance(module, _RecurrentLayer):
        config = module._config()
        config["dtype"] = np.dtype(config["dtype"]).name
        return {"type": type(module).__name__, **config}
    if isinstance(module, _Cell):
        config = dict(input_size=module.input_size, hidden_size=module.hidden_size,
                      bias=module.bias, dtype=np.dtype(module.dtype).name)
        if isinstance(module, RNNCell):
            config["nonlinearity"] = module._layer.nonlinearity
        elif isinstance(module, GRUCell):
            config["reset_after"] = module._layer.reset_after
        else:
            assert isinstance(module, LSTMCell)
        return {"type": type(module).__name__, **config}
    if isinstance(module, Stacked):
        return {"type": "Stacked", "layers": [describe(m) for m in module.layers],
                "dropout": module.dropout}
    if isinstance(module, Bidirectional):
        return {"type": "Bidirectional", "layer": describe(module.layer), "merge": module.merge}
    if isinstance(module, Dense):
        return {"type": "Dense", "in_features": module.in_features,
                "out_features": module.out_features, "activation": module.activation,
                "bias": module.bias, "dtype": np.dtype(module.dtype).name}
    if isinstance(module, Model):
        return {"type": type(module).__name__, **module._config()}
    if isinstance(module, Embedding):
        return {"type": "Embedding", "num_embeddings": module.num_embeddings,
                "embedding_dim": module.embedding_dim, "dtype": np.dtype(module.dtype).name}
    raise TypeError(f"module must be a fastrnn module, got {type(module).__name__}")


def build(description):
    """A new module (fresh weights) from a description made by ``describe``."""
    import fastrnn

    if not isinstance(description, dict) or not isinstance(description.get("type"), str):
        raise ValueError(f"a module description must be a JSON object with a 'type', "
                         f"got {description!r:.80}")
    kind = description["type"]
    args = {k: v for k, v in description.items() if k != "type"}
    if kind == "Stacked":
        layers = args.pop("layers", None)
        if not isinstance(layers, list):
            raise ValueError("a Stacked description needs a list of 'layers'")
        return fastrnn.Stacked([build(d) for d in layers], **args)
    if kind == "Bidirectional":
        return fastrnn.Bidirectional(build(args.pop("layer", None)), **args)
    if kind in MODELS:
        return getattr(fastrnn.models, kind)._from_config(args)
    simple = {"RNN", "GRU", "LSTM", "RNNCell", "GRUCell", "LSTMCell", "Dense", "Embedding"}
    if kind not in simple:
        raise ValueError(f"unknown module type {kind!r}")
    return getattr(fastrnn, kind)(**args)


def save(module, path):
    """Write ``module`` (weights and architecture) to ``path`` as one .npz file."""
    _check_path(path)
    header = json.dumps({"format": FORMAT, "version": VERSION, "module": describe(module)})
    arrays = module.state_dict()
    with open(path, "wb") as f:
        np.savez(f, **{HEADER: np.array(header)}, **arrays)
    return path


def load(path):
    """The module saved in ``path`` (same kind, same weights, same outputs).

    FileNotFoundError when there is no such file; ValueError when the file is
    not a fastrnn model file, is truncated or corrupt, or its weights do not
    match its architecture.
    """
    name = os.fspath(_check_path(path))
    with open(path, "rb") as f:                # FileNotFoundError as open() gives it
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        raise ValueError(f"{name}: not a fastrnn model file (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except FileNotFoundError:
        raise
    except Exception as exc:  # zip, npy-format and pickle refusals all mean "unreadable"
        raise ValueError(f"{name}: not a readable fastrnn model file "
                         f"({type(exc).__name__}: {exc})") from None
    header = arrays.pop(HEADER, None)
    if header is None or header.shape != () or header.dtype.kind != "U":
        raise ValueError(f"{name}: not a fastrnn model file (no {HEADER} header)")
    try:
        meta = json.loads(str(header))
    except ValueError as exc:
        raise ValueError(f"{name}: its {HEADER} header is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{name}: not a fastrnn model file (format {meta!r:.60})")
    if meta.get("version") != VERSION:
        raise ValueError(f"{name}: file version {meta.get('version')!r}, this fastrnn reads "
                         f"version {VERSION}")
    try:
        module = build(meta.get("module"))
        module.load_state_dict(arrays)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: {exc}") from None
    return module


def _check_path(path):
    """Paths are strings or os.PathLike (anything open() takes)."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"path must be a file path, got {type(path).__name__}")
    return path
