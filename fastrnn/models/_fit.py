"""The training loop every model's ``fit`` runs: mini-batches, an optimizer,
gradient clipping, validation, early stopping and a progress display.

A model gives the loop
  _train_batch(batch) -> (mean loss, correct, count): forward, loss and
      backward of one mini-batch, adding into the model's grads;
  _score_batch(batch) -> (mean loss, correct, count) without training;
  and the loop is handed its data as lists of batches (a callable making the
  training batches of one epoch from a numpy Generator, and the validation
  batches).
"""
import math
import sys
import time
import warnings

import numpy as np

from fastrnn import _checks, optim

OPTIMIZERS = {"adam": optim.Adam, "adamw": optim.AdamW, "sgd": optim.SGD}


def make_optimizer(model, optimizer, lr):
    """An optimizer over the model's parameters: a name ("adam", "adamw", "sgd")
    with learning rate lr, or an already built fastrnn.optim optimizer."""
    if isinstance(optimizer, optim.Optimizer):
        return optimizer
    name = _checks.choice("optimizer", optimizer, tuple(OPTIMIZERS))
    return OPTIMIZERS[name](model, lr=lr)


def check_fit_options(epochs, batch_size, lr, clip_norm, patience, verbose):
    """The common fit arguments, checked before any work is done."""
    epochs = _checks.positive_int("epochs", epochs)
    batch_size = _checks.positive_int("batch_size", batch_size)
    lr = _checks.real("lr", lr, inclusive=False)
    clip_norm = _checks.real("clip_norm", clip_norm, inclusive=False, allow_none=True)
    if patience is not None:
        patience = _checks.positive_int("patience", patience)
    if not isinstance(verbose, (bool, int, np.bool_)):
        raise TypeError(f"verbose must be True or False, got {verbose!r}")
    return epochs, batch_size, lr, clip_norm, patience, bool(verbose)


def fit_pairs(model, X, y, *, epochs, batch_size, lr, validation_data, verbose, optimizer,
              clip_norm, patience, shuffle, seed, client=None):
    """``fit`` of the models trained on (X, y) pairs (classifier, tagger, seq2seq).

    The model gives _dataset(X, y, names) -> checked data (a pair) and
    _batches(*data, batch_size, rng=None) -> a list of batches.
    """
    epochs, batch_size, lr, clip_norm, patience, verbose = check_fit_options(
        epochs, batch_size, lr, clip_norm, patience, verbose)
    data = model._dataset(X, y)
    validation = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data must be a pair (X_val, y_val)")
        checked = model._dataset(*validation_data,
                                 names=("validation_data[0]", "validation_data[1]"))
        validation = model._batches(*checked, batch_size)
    shuffle = _checks.boolean("shuffle", shuffle)
    return run(model, lambda rng: model._batches(*data, batch_size, rng if shuffle else None),
               validation, epochs=epochs, lr=lr, optimizer=optimizer, clip_norm=clip_norm,
               patience=patience, seed=seed, verbose=verbose, client=client)


def score(model, batches):
    """(mean loss, accuracy) over batches, each weighted by its count of items."""
    total = correct = count = 0.0
    for batch in batches:
        loss, c, n = model._score_batch(batch)
        total += loss * n
        correct += c
        count += n
    return total / count, correct / count


def run(model, train_batches, validation_batches, *, epochs, lr, optimizer, clip_norm,
        patience, seed, verbose, stream=None, client=None):
    """Train ``model``; returns the history {"loss", "accuracy"[, "val_loss",
    "val_accuracy"]: one entry per epoch}.

    train_batches(rng) -> the epoch's list of batches (rng: a numpy Generator
    for shuffling); validation_batches: a list of batches or None.
    patience: stop when the validation loss has not improved for that many
    epochs; with patience the model ends with the weights of its best
    validation epoch, stopped early or not. A loss that is not finite stops
    training with a RuntimeWarning (that epoch's entries are nan).
    client: a distributed.Client: each batch's gradient on shards across its
    workers (fastrnn.distributed.DataParallel), the update here.
    """
    model._check_trainable("fit")
    train_batch = model._train_batch
    if client is not None:
        from fastrnn.distributed import DataParallel
        train_batch = DataParallel(model, client)
    if patience is not None and validation_batches is None:
        raise ValueError("patience (early stopping) needs validation_data")
    opt = make_optimizer(model, optimizer, lr)
    rng = np.random.default_rng(_checks.seed(seed))
    history = {"loss": [], "accuracy": []}
    if validation_batches is not None:
        history.update(val_loss=[], val_accuracy=[])
    best_loss, best_weights, waited = math.inf, None, 0
    for epoch in range(epochs):
        batches = train_batches(rng)
        progress = Progress(epoch, epochs, len(batches), verbose, stream)
        total = correct = count = 0.0
        for batch in batches:
            model.zero_grad()
            loss, c, n = train_batch(batch)
            if not math.isfinite(loss):
                progress.close({})
                model.zero_grad()
                warnings.warn(f"training stopped at epoch {epoch + 1}: the loss is {loss} "
                              f"(try a smaller lr or clip_norm)", RuntimeWarning, stacklevel=3)
                for values in history.values():
                    values.append(math.nan)
                return history
            if clip_norm is not None:
                optim.clip_grad_norm(model, clip_norm)
            opt.step()
            total += loss * n
            correct += c
            count += n
            progress.update(total / count)
        history["loss"].append(total / count)
        history["accuracy"].append(correct / count)
        if validation_batches is not None:
            val_loss, val_accuracy = score(model, validation_batches)
            history["val_loss"].append(val_loss)
            history["val_accuracy"].append(val_accuracy)
        progress.close({key: values[-1] for key, values in history.items()})
        model.zero_grad()
        if patience is None:
            continue
        if val_loss < best_loss:
            best_loss, waited = val_loss, 0
            best_weights = model.state_dict()
        else:
            waited += 1
            if waited >= patience:
                if verbose:
                    print(f"early stopping: validation loss has not improved for {patience} "
                          f"epochs; restoring the weights of epoch "
                          f"{int(np.argmin(history['val_loss'])) + 1}",
                          file=stream or sys.stdout, flush=True)
                break
    if best_weights is not None:
        model.load_state_dict(best_weights)
    return history


class Progress:
    """One epoch's progress: a tqdm bar when tqdm is installed, else one plain
    line per epoch; nothing when verbose is False."""

    def __init__(self, epoch, epochs, total, verbose, stream=None):
        self.label = f"epoch {epoch + 1}/{epochs}"
        self.stream = stream
        self.start = time.perf_counter()
        self.bar = None
        self.verbose = verbose
        if verbose:
            tqdm = _tqdm()
            if tqdm is not None:
                self.bar = tqdm(total=total, desc=self.label, unit="batch", leave=True,
                                file=stream, dynamic_ncols=True)

    def update(self, loss):
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def close(self, metrics):
        if not self.verbose:
            return
        summary = " - ".join(f"{key} {value:.4f}" for key, value in metrics.items())
        if self.bar is not None:
            self.bar.set_postfix_str(summary, refresh=False)
            self.bar.close()
            return
        seconds = time.perf_counter() - self.start
        print(f"{self.label} - {seconds:.1f} s - {summary}", file=self.stream or sys.stdout,
              flush=True)


def _tqdm():
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm
