"""Truncated backpropagation through time over a long sequence.

A state returned by ``forward`` is a plain array: passing it as ``hx`` to the
next call carries the state across calls with nothing to detach, so stateful
training (the state kept from one batch to the next) is simply
``y, state, ctx = layer.forward(x_next, state)``. ``truncated_bptt`` does this
window by window and backpropagates each window alone (k steps).
"""
from fastrnn import _checks


def truncated_bptt(module, x, k, loss_grad, hx=None, *, on_window=None):
    """Run ``module`` over x in windows of k steps, backpropagating each window alone.

    x: the module's input (T, B, F), or (B, T, F) when the module is batch_first;
    k: steps per window; loss_grad(y_window, steps) -> (loss, dy_window) gives the
    loss of one window and its gradient with respect to the window's output
    (``steps`` is the window's slice of time); hx: initial state.
    For each window: forward from the carried state, loss_grad, backward
    (adding into module.grads; no gradient flows into earlier windows), then
    on_window(steps, loss) (e.g. an optimizer step and zero_grad).
    Returns (list of window losses, final state).
    """
    k = _checks.positive_int("k", k)
    if not callable(loss_grad):
        raise TypeError(f"loss_grad must be callable, got {type(loss_grad).__name__}")
    arr = _checks.float_array("x", x, module.dtype)
    if arr.ndim != 3:
        raise ValueError(f"x must be a batched 3-D sequence, got shape {arr.shape}")
    time_axis = 1 if module.batch_first else 0
    steps = arr.shape[time_axis]
    losses, state = [], hx
    for start in range(0, steps, k):
        window = slice(start, min(start + k, steps))
        xw = arr[:, window] if time_axis == 1 else arr[window]
        y, state, ctx = module.forward(xw, state)
        loss, dy = loss_grad(y, window)
        module.backward(ctx, dy)
        losses.append(float(loss))
        if on_window is not None:
            on_window(window, loss)
    return losses, state
