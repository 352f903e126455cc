"""Losses: each returns (loss, gradient of the loss with respect to its input).

Per-step losses take time-major arrays (T, B, ...) (``batch_first=True`` for
(B, T, ...)) and an optional ``lengths`` (B,): steps t >= lengths[b] do not
count and get zero gradient. The loss is the mean over the counted items, as
PyTorch's default reduction.
"""
import numpy as np

from fastrnn import _checks


def _step_mask(lengths, steps, batch, batch_first):
    """(T, B) or (B, T) float mask of the counted steps, or None for all."""
    if lengths is None:
        return None
    lengths = _checks.lengths(lengths, batch, steps, True)
    mask = np.arange(steps)[:, None] < lengths[None, :]
    return mask.T if batch_first else mask


def softmax_cross_entropy(logits, targets, *, lengths=None, batch_first=False):
    """Mean of -log softmax(logits)[target] and its gradient with respect to logits.

    Per sequence: logits (B, C), targets (B,). Per step: logits (T, B, C)
    ((B, T, C) with batch_first), targets (T, B) ((B, T)), optional lengths
    (B,). targets are integer class ids in [0, C). Returns (loss, dlogits);
    dlogits has logits' shape and dtype (float64 for non-float input).
    """
    x = np.asarray(logits)
    if x.dtype.kind != "f":
        raise TypeError(f"logits must hold floating-point numbers, got dtype {x.dtype}")
    if x.ndim not in (2, 3):
        raise ValueError(f"logits must be (B, C) or (T, B, C), got shape {x.shape}")
    t = _checks.token_ids("targets", targets, x.shape[-1])
    if t.shape != x.shape[:-1]:
        raise ValueError(f"targets must have shape {x.shape[:-1]} (logits without the class "
                         f"axis), got {t.shape}")
    if lengths is not None and x.ndim == 2:
        raise ValueError("lengths is only for per-step logits (T, B, C)")
    if x.ndim == 3:
        steps, batch = (x.shape[1], x.shape[0]) if batch_first else x.shape[:2]
        mask = _step_mask(lengths, steps, batch, batch_first)
    else:
        mask = None
    shifted = x - x.max(axis=-1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    log_p = shifted - log_z
    nll = -np.take_along_axis(log_p, t[..., None], axis=-1)[..., 0]
    count = nll.size if mask is None else int(mask.sum())
    # masked steps are selected out, not multiplied by 0: whatever they hold
    # (padding, NaN, inf) must not reach the loss or the gradient
    if mask is not None:
        nll = np.where(mask, nll, 0)
    loss = float(nll.sum() / count)
    grad = np.exp(log_p)
    np.put_along_axis(grad, t[..., None],
                      np.take_along_axis(grad, t[..., None], axis=-1) - 1, axis=-1)
    grad /= count
    if mask is not None:
        grad = np.where(mask[..., None], grad, 0)
    return loss, grad.astype(x.dtype, copy=False)


def mse(prediction, target, *, lengths=None, batch_first=False):
    """Mean squared error and its gradient with respect to prediction.

    prediction and target have the same shape; with ``lengths`` they are
    per-step (T, B, ...) ((B, T, ...) with batch_first) and only valid steps count.
    """
    p = np.asarray(prediction)
    if p.dtype.kind != "f":
        raise TypeError(f"prediction must hold floating-point numbers, got dtype {p.dtype}")
    y = _checks.float_array("target", target, p.dtype)
    if y.shape != p.shape:
        raise ValueError(f"target must have prediction's shape {p.shape}, got {y.shape}")
    diff = p - y
    if lengths is None:
        count = diff.size
    else:
        if p.ndim < 2:
            raise ValueError("lengths needs per-step predictions (T, B, ...)")
        steps, batch = (p.shape[1], p.shape[0]) if batch_first else p.shape[:2]
        mask = _step_mask(lengths, steps, batch, batch_first)
        mask = mask.reshape(mask.shape + (1,) * (p.ndim - 2))
        diff = np.where(mask, diff, 0)        # selected out, so NaN padding cannot leak
        count = int(mask.sum()) * int(np.prod(p.shape[2:], dtype=np.int64))
    loss = float(np.sum(diff * diff) / count)
    return loss, (2.0 / count) * diff
