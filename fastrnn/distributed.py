"""Batch inference on a Dask cluster (the optional extra ``fastrnn[dask]``).

    import fastrnn.distributed
    labels = fastrnn.distributed.predict(model, sequences, client=client, batch_size=256)

``predict`` runs a fastrnn model over data too large for one process's time
budget on Dask's distributed scheduler (a ``distributed.Client``: a
LocalCluster, or any ``tcp://`` scheduler), or on Dask's local scheduler
without a client. The model travels once per worker: its model file's bytes
are registered as a worker plugin (each worker gets them once, and a worker
that is restarted, e.g. after it was killed, gets them again), and each
worker process loads the model once and keeps it; tasks carry only the
model's fingerprint. Each task runs fastrnn on one thread (a worker runs as
many tasks at once as it has threads; ``threads`` changes that). Results come
back in the input's order.

Data:
- a ready-made model (SequenceClassifier, SequenceTagger, Seq2Seq,
  LanguageModel): a list or a dask.bag of sequences (whatever the model's
  own ``predict`` takes); the result of ``predict`` per sequence (for
  LanguageModel: ``predict(prefix)``, the most likely next symbol);
- a module (a layer, Stacked, Bidirectional, Sequential ...): a list of
  unbatched sequences ((T_i, input_size) arrays, lengths may differ) -> the
  list of their outputs (T_i, ...); or a dask.array chunked over the batch
  axis (axis 1, or 0 for batch_first layers) -> the output array, chunked
  alike.
A bad sequence raises the error a local call raises, naming its index in
the data (``data[i]``).
"""
import hashlib
import os
import tempfile
import threading

import numpy as np

try:
    import dask
    import dask.array as da
    import dask.bag as db
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError as exc:                  # pragma: no cover - the extra is missing
    raise ImportError("fastrnn.distributed needs Dask: pip install 'fastrnn[dask]' "
                      "(dask[array,bag,distributed])") from exc

import fastrnn
from fastrnn import _checks

__all__ = ["DataParallel", "predict"]

# per process: fingerprint -> model file bytes (installed by the plugin, or by
# predict itself for the local scheduler), and -> the model loaded from them
_PAYLOADS = {}
_MODELS = {}
_LOCK = threading.Lock()
_REGISTERED = set()        # (client id, fingerprint) already registered with a client


class _ModelPlugin(WorkerPlugin):
    """Puts one model's file bytes into each worker process (once per worker,
    and again on a worker that restarts)."""

    def __init__(self, token, payload):
        self.token = token
        self.payload = payload

    def setup(self, worker):
        _PAYLOADS[self.token] = self.payload


def _model_bytes(model):
    """The model file of ``model`` (fastrnn.save's format) as bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.npz")
        model.save(path)
        with open(path, "rb") as f:
            return f.read()


def _worker_model(token, threads, role="predict"):
    """The model of fingerprint ``token`` in this process, loaded once per
    role (prediction's copy never changes; training's takes each step's
    weights)."""
    key = token if role == "predict" else (role, token)
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            payload = _PAYLOADS.get(token)
            if payload is None:
                raise RuntimeError(f"fastrnn.distributed: model {token[:12]} was not "
                                   f"delivered to this worker")
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "model.npz")
                with open(path, "wb") as f:
                    f.write(payload)
                model = _MODELS[key] = fastrnn.load(path)
    fastrnn.set_num_threads(threads)
    return model


class BadSequence(ValueError):
    """A sequence of a partition failed: (partition, index in it, the local
    error's type name, its message); predict turns it into the local error
    naming the sequence's index in the data."""


def _is_ready_made(model):
    from fastrnn.models._base import Model
    return isinstance(model, Model)


def _run_sequences(model, seqs):
    """The per-sequence results of a ready-made model or a module."""
    from fastrnn.models import LanguageModel
    if isinstance(model, LanguageModel):
        return [model.predict(s) for s in seqs]
    if _is_ready_made(model):
        out = model.predict(seqs)
        # (a classifier's labels as Python ints: numpy scalars pickle one by one,
        # which took longer than the predictions)
        return out.tolist() if isinstance(out, np.ndarray) else list(out)
    return [np.asarray(model(np.asarray(s))[0] if _returns_state(model) else model(s))
            for s in seqs]


def _returns_state(model):
    from fastrnn._module import SequenceModule
    return isinstance(model, SequenceModule)


def _locate(model, seqs, exc):
    """The index in seqs of the first sequence that fails alone, and its error."""
    for i, s in enumerate(seqs):
        try:
            _run_sequences(model, [s])
        except (ValueError, TypeError) as inner:
            return i, inner
    return 0, exc


def _predict_partition(part, number, token, threads):
    """Partition ``number``'s results; a bad sequence raises BadSequence."""
    model = _worker_model(token, threads)
    seqs = list(part)
    if not seqs:
        return []
    try:
        return _run_sequences(model, seqs)
    except (ValueError, TypeError) as exc:
        i, inner = _locate(model, seqs, exc)
        raise BadSequence(number, i, type(inner).__name__, str(inner)) from None


def _renamed(message, index):
    """A local error's message about one sequence (named "X[0]" by the model's
    checks, or not named) naming it data[index] instead."""
    if message.startswith("X[0]"):
        return f"data[{index}]" + message[len("X[0]"):]
    return f"data[{index}]: {message}"


def _predict_block(block, token, threads, axis, block_info=None):
    model = _worker_model(token, threads)
    try:
        y = model(block)
    except (ValueError, TypeError) as exc:
        start = block_info[0]["array-location"][axis][0] if block_info else 0
        raise type(exc)(f"data[{start}:{start + block.shape[axis]}] (a block of the "
                        f"array): {exc}") from None
    return y[0] if isinstance(y, tuple) else y


def _deliver(model, client):
    """The model's fingerprint, its bytes registered with the client's
    workers (or this process, without a client)."""
    payload = _model_bytes(model)
    token = hashlib.sha256(payload).hexdigest()
    if client is None:
        _PAYLOADS[token] = payload          # (the local scheduler's threads read it here)
    elif (client.id, token) not in _REGISTERED:
        # (the scheduler keeps the plugin: workers that join or restart get it too)
        client.register_plugin(_ModelPlugin(token, payload), name=f"fastrnn-model-{token}")
        _REGISTERED.add((client.id, token))
    return token


def _check_client(client):
    from distributed import Client
    if not isinstance(client, Client):
        raise TypeError(f"client must be a distributed.Client or None, got "
                        f"{type(client).__name__}")
    return client


def _default_client(client):
    if client is not None:
        return _check_client(client)
    try:
        from distributed import get_client
        return get_client()
    except (ImportError, ValueError):
        return None                          # no client: Dask's local scheduler


def predict(model, data, client=None, batch_size=256, *, compute=True, progress=False,
            threads=1):
    """Run ``model`` over ``data`` on Dask; results in the input's order.

    model: a fastrnn module or ready-made model (anything fastrnn.save takes).
    data: a list of sequences or a dask.bag of them (one task per batch_size
    sequences of a list, per partition of a bag), or for modules a
    dask.array chunked over the batch (one task per chunk).
    client: a distributed.Client; None uses the current one if there is one,
    else Dask's local scheduler. compute: False returns the lazy collection
    (a dask.bag or dask.array); True (default) the results (a list, or a
    numpy array). progress: show Dask's progress bar while computing.
    threads: fastrnn's threads per task.
    """
    if not hasattr(model, "_named_parameters"):
        raise TypeError(f"model must be a fastrnn module or model, got {type(model).__name__}")
    batch_size = _checks.positive_int("batch_size", batch_size)
    threads = _checks.positive_int("threads", threads)
    client = _default_client(client)
    token = _deliver(model, client)
    if isinstance(data, da.Array):
        if _is_ready_made(model):
            raise TypeError("data: a dask.array is for modules (layers); a ready-made model "
                            "takes a list or a dask.bag of sequences")
        result = _predict_array(model, data, token, threads)
        return _finish(result, client, compute, progress, None)
    if isinstance(data, db.Bag):
        bag = data
    elif isinstance(data, (list, tuple)):
        if not data:
            raise ValueError("data must hold at least one sequence")
        if compute and client is not None:
            return _predict_list(data, client, token, threads, batch_size, progress)
        bag = db.from_sequence(list(data), partition_size=batch_size)
    else:
        raise TypeError(f"data must be a list, a dask.bag or a dask.array, got "
                        f"{type(data).__name__}")
    parts = bag.to_delayed()
    results = [dask.delayed(_predict_partition, pure=True)(part, number, token, threads)
               for number, part in enumerate(parts)]
    out = db.from_delayed(results)
    return _finish(out, client, compute, progress, parts)


class DataParallel:
    """A ready-made model's ``_train_batch`` on a client's workers
    (synchronous data parallelism; ``fit(..., client=client)``): each batch's
    rows are cut into one contiguous shard per worker; each worker takes the
    step's weights (scattered once per worker), computes its shard's mean
    loss and gradient, and returns them times its count of items (the loss's
    normaliser: sequences, or steps); here they are summed and divided by the
    batch's count, which is the batch's own mean gradient, into the model's
    grads (the optimizer steps here). The architecture travels once per
    worker (as predict's model); dropout masks, if any, are drawn on the
    workers."""

    def __init__(self, model, client):
        self.model = model
        self.client = _check_client(client)
        self.token = _deliver(model, client)
        self.workers = max(1, len(client.scheduler_info()["workers"]))

    def __call__(self, batch):
        rows = len(batch[0])
        k = min(self.workers, rows)
        bounds = np.linspace(0, rows, k + 1).astype(np.intp)
        # (a list of one: scatter sends a dict's values one by one)
        [weights] = self.client.scatter([self.model.state_dict()], broadcast=True)
        futures = [self.client.submit(_shard_gradient, self.token, weights,
                                      tuple(part[lo:hi] for part in batch), pure=False)
                   for lo, hi in zip(bounds[:-1], bounds[1:])]
        results = self.client.gather(futures)
        count = sum(r[2] for r in results)
        for name, grad in self.model.grads.items():
            total = results[0][3][name].copy()
            for r in results[1:]:
                total += r[3][name]
            grad[...] = total / count
        loss = sum(r[0] * r[2] for r in results) / count
        return loss, sum(r[1] for r in results), count


_TRAIN_LOCK = threading.Lock()


def _shard_gradient(token, weights, shard):
    """(mean loss, correct, count, {name: gradient x count}) of one shard."""
    with _TRAIN_LOCK:                     # (one training copy per process)
        model = _worker_model(token, 1, role="train")
        model.load_state_dict(weights)
        model.zero_grad()
        loss, correct, count = model._train_batch(shard)
        grads = {name: g * count for name, g in model.grads.items()}
    return loss, correct, count, grads


def _predict_list(data, client, token, threads, batch_size, progress):
    """A list on a client: one task per batch_size sequences, submitted as
    such (a bag's graph and its final concatenation on a worker cost more
    than the predictions: 2.6x the time of one process at 200,000 strings
    against 1.x, bench.distributed)."""
    chunks = [list(data[i:i + batch_size]) for i in range(0, len(data), batch_size)]
    futures = client.map(_predict_partition, chunks, list(range(len(chunks))), token=token,
                         threads=threads, pure=False)
    if progress:
        from distributed import progress as show
        show(futures)
    try:
        parts = client.gather(futures)
    except BadSequence as exc:
        number, i, kind, message = exc.args
        error = TypeError if kind == "TypeError" else ValueError
        raise error(_renamed(message, number * batch_size + i)) from None
    return [r for part in parts for r in part]


def _predict_array(model, data, token, threads):
    axis = 0 if getattr(model, "batch_first", False) else 1
    if data.ndim != 3:
        raise ValueError(f"data must be a 3-D dask.array (steps, batch, features) or "
                         f"(batch, steps, features) for batch_first, got {data.ndim}-D")
    # one chunk along the other axes: each block is a whole batch of sequences
    data = data.rechunk({a: -1 for a in range(3) if a != axis})
    width = model.output_size if hasattr(model, "output_size") else None
    if width is None:
        raise TypeError("data: a dask.array takes a sequence module (RNN/GRU/LSTM, Stacked, "
                        "Bidirectional)")
    chunks = tuple(c if a != 2 else (width,) for a, c in enumerate(data.chunks))
    return data.map_blocks(_predict_block, token, threads, axis, chunks=chunks,
                           dtype=model.dtype, meta=np.empty((0, 0, 0), model.dtype))


def _finish(collection, client, compute, progress, parts):
    if not compute:
        return collection
    try:
        if client is None:
            # (threads: the model is in this process's memory, and the kernels
            # release the GIL)
            if progress:
                from dask.diagnostics import ProgressBar
                with ProgressBar():
                    return _computed(dask.compute(collection, scheduler="threads")[0])
            return _computed(dask.compute(collection, scheduler="threads")[0])
        future = client.compute(collection)
        if progress:
            from distributed import progress as show
            show(future)
        return _computed(future.result())
    except BadSequence as exc:
        raise _located(exc, parts, client) from None


def _computed(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def _located(exc, parts, client):
    """The local error of a BadSequence, naming the sequence's index in the data."""
    number, i, kind, message = exc.args
    lengths = [dask.delayed(len)(p) for p in parts[:number]]
    if not lengths:
        before = 0
    elif client is not None:
        before = sum(client.compute(lengths, sync=True))
    else:
        before = sum(dask.compute(*lengths, scheduler="threads"))
    error = TypeError if kind == "TypeError" else ValueError
    return error(_renamed(message, before + i))
