"""Diagnostics: how far back a loss's gradient reaches (vanishing gradients).

In a vanilla RNN, dL/dh_t is multiplied by W_hhᵀ diag(f') at every step back,
so its norm shrinks (or grows) geometrically with the distance from the loss;
the gated cells' additive memory path lets it travel much further
(docs/EQUATIONS.md, "Vanishing and exploding gradients").
"""
import numpy as np

from fastrnn import _checks


def hidden_gradient_norms(layer, x, dy, hx=None):
    """‖dL/dh_t‖ for every step t of a unidirectional RNN/GRU/LSTM layer.

    L = sum(dy * y) (dy: the gradient of a loss with respect to the output y,
    e.g. nonzero only at the last step); h_t is the top layer's state after
    step t (for an LSTM, h and not c), so y_t = h_t, and the norm is the
    Frobenius norm over batch and units. Returns a float64 array (T,).

    dL/dh_t is dy_t plus the gradient of the rest of the sequence with respect
    to its initial state, read from backward on the suffix x[t+1:] started
    from the state after step t: T backward passes, O(T²) steps,
    meant for diagnostics on sequences of a few hundred steps. Inter-layer
    dropout applies as in training; ``layer.grads`` is left as it was.
    """
    from fastrnn.layers import LSTM, _RecurrentLayer

    if not isinstance(layer, _RecurrentLayer):
        raise TypeError(f"layer must be a fastrnn RNN, GRU or LSTM, got {type(layer).__name__}")
    if layer.bidirectional:
        raise ValueError("layer must be unidirectional (a reverse direction has no single "
                         "'state after step t')")
    x3, batched = layer._check_input(x)       # floats, or token ids
    steps = x3.shape[0]
    x_user = np.asarray(x)
    if x_user.dtype.kind not in "iu":
        x_user = x_user.astype(layer.dtype)
    time_axis = 1 if (batched and layer.batch_first) else 0
    y, _ = layer(x_user, hx)
    dy = _checks.state_array("dy", dy, y.shape, layer.dtype)
    lstm = isinstance(layer, LSTM)             # its state is (h, c); h is reported
    norms = np.empty(steps)
    norms[steps - 1] = np.linalg.norm(np.take(dy, steps - 1, axis=time_axis).astype(np.float64))
    saved = {k: g.copy() for k, g in layer.grads.items()}
    state = hx
    for t in range(steps - 1):
        _, state = layer(np.take(x_user, [t], axis=time_axis), state)   # the state after t
        tail = np.arange(t + 1, steps)
        _, _, ctx = layer.forward(np.take(x_user, tail, axis=time_axis), state)
        _, dstate = layer.backward(ctx, np.take(dy, tail, axis=time_axis))
        dh = (dstate[0] if lstm else dstate)[-1]       # the top layer's state
        norms[t] = np.linalg.norm(dh.astype(np.float64) + np.take(dy, t, axis=time_axis))
    for k, g in layer.grads.items():           # leave the caller's gradients as they were
        g[...] = saved[k]
    return norms
