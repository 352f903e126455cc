"""PyTorch's projection LSTM (``proj_size``) on the kernels.

With a projection, h_t = W_hr m_t (m_t = o_t ⊙ tanh(c_t), W_hr (P, H)) and
the next step's gates read h_t W_hhᵀ = m_t (W_hh W_hr)ᵀ: the recurrence is
an ordinary LSTM's on m with the recurrent weights W_eff = W_hh W_hr
(4H x H). Each (layer, direction) therefore runs as a plain one-direction
kernel LSTM (its "shadow"), whose input is x_t with the initial state h_0
appended at the direction's first step (columns whose input weights are W_hh:
the first step's gates get h_0 W_hhᵀ, and the shadow starts from m = 0); the
outputs y_t = m_t W_hrᵀ and h_n = m_n W_hrᵀ are one product each over all
steps. Backward maps the shadow's gradients back: dW_hh = dW_eff W_hrᵀ (+
the first steps' input-weight gradient of the h_0 columns), dW_hr = W_hhᵀ
dW_eff + Σ_t dy_tᵀ m_t, dh_0 from those columns' input gradient. The same
values as the two products per step, in another association of the sums
(float32: within rounding; the tests compare PyTorch and finite differences).
The recurrence costs 4H x H per step instead of 4H x P + P x H.
"""
import threading

import numpy as np

from fastrnn._engine import dropout_mask
from fastrnn._threads import single_threaded_blas


def _shadow(layer, k, d):
    """This thread's shadow LSTM of (layer k, direction d), weights made current.

    One per thread: concurrent callers each fill and run their own."""
    shadows = layer.__dict__.setdefault("_shadows", {})
    key = (threading.get_ident(), k, d)
    shadow = shadows.get(key)
    in_size = layer._w_ih[k].shape[2]
    if shadow is None:
        from fastrnn.layers import LSTM
        shadow = shadows[key] = LSTM(
            in_size + layer.proj_size, layer.hidden_size, bias=layer.bias, dtype=layer.dtype,
            clip=layer.clip, peepholes=layer.peepholes, input_forget=layer.input_forget)
    w_hh, w_hr = layer._w_hh[k][d], layer._w_hr[k][d]
    shadow._w_ih[0][0, :, :in_size] = layer._w_ih[k][d]
    shadow._w_ih[0][0, :, in_size:] = w_hh
    made_from = shadow.__dict__.get("_made_from")
    if (made_from is None or not np.array_equal(made_from[0], w_hh)
            or not np.array_equal(made_from[1], w_hr)):
        # W_eff = W_hh W_hr, made again only when they changed (4H P H
        # multiply-adds: at batch 1 they cost as much as the call)
        np.matmul(w_hh, w_hr, out=shadow._w_hh[0][0])
        shadow._made_from = (w_hh.copy(), w_hr.copy())
    if layer.bias:
        shadow._b_ih[0][0] = layer._b_ih[k][d]
        shadow._b_hh[0][0] = layer._b_hh[k][d]
    if layer.peepholes:
        shadow._peep[0][0] = layer._peep[k][d]
    return shadow


def _first_steps(T, B, lengths, backwards):
    """Each row's first step in time: 0, or its last valid step when the
    direction runs backwards."""
    if not backwards:
        return np.zeros(B, np.intp)
    return (np.full(B, T - 1, np.intp) if lengths is None
            else np.asarray(lengths, np.intp) - 1)


def forward(layer, x, state, lengths, reverse, training):
    """The layer over time-major x (T, B, I) floats or (T, B) ids: (y, state, trace).

    The products around the kernels run on one BLAS thread: a BLAS pool's
    threads spin after each product, on the cores the kernels' team then
    waits for (a multi-threaded W_hr product between the calls measured the
    shadow calls 2x slower)."""
    with single_threaded_blas():
        return _forward(layer, x, state, lengths, reverse, training)


def _forward(layer, x, state, lengths, reverse, training):
    L, D = layer.num_layers, layer.num_directions
    T, B = x.shape[:2]
    H, P, dtype = layer.hidden_size, layer.proj_size, layer.dtype
    rows_b = np.arange(B)
    h_n = np.empty((L * D, B, P), dtype)
    c_n = np.empty((L * D, B, H), dtype)
    traces = []
    inp = x
    tokens = x.dtype.kind in "iu"
    for k in range(L):
        if k == 0 and tokens:                      # token ids: their one-hot rows
            inp = np.eye(layer.input_size, dtype=dtype)[inp]
        mask = None
        if training and k > 0 and layer.dropout > 0:
            mask = dropout_mask(layer._dropout_rng, inp.shape, layer.dropout, dtype)
            inp = inp * mask
        in_size = inp.shape[2]
        outs, layer_trace = [], []
        for d in range(D):
            row = k * D + d
            backwards = reverse != (d == 1)
            first = _first_steps(T, B, lengths, backwards)
            x_aug = np.zeros((T, B, in_size + P), dtype)
            x_aug[..., :in_size] = inp
            if state is not None:
                x_aug[first, rows_b, in_size:] = state[0][row]
            c0 = (np.zeros((1, B, H), dtype) if state is None
                  else np.ascontiguousarray(state[1][row][None]))
            shadow = _shadow(layer, k, d)
            start = (np.zeros((1, B, H), dtype), c0)
            if training:
                m, (m_n, c_last), tr = shadow._train_forward(x_aug, start, lengths, backwards)
                layer_trace.append((shadow, tr, m, m_n[0], first, layer._w_hh[k][d].copy(),
                                    layer._w_hr[k][d].copy()))
            else:
                m, (m_n, c_last) = shadow._run(x_aug, start, lengths, backwards)
            w_hr = layer._w_hr[k][d]
            outs.append(m @ w_hr.T)                  # y_t = m_t W_hrᵀ (0 past a length)
            h_n[row] = m_n[0] @ w_hr.T
            c_n[row] = c_last[0]
        traces.append((in_size, mask, layer_trace))
        inp = outs[0] if D == 1 else np.concatenate(outs, axis=2)
    return inp, (h_n, c_n), ((traces, tokens) if training else None)


def backward(layer, trace, dy, dstate):
    """BPTT: (dx or None for ids, (dh0, dc0)); adds into the layer's grads."""
    with single_threaded_blas():
        return _backward(layer, trace, dy, dstate)


def _backward(layer, trace, dy, dstate):
    traces, tokens = trace
    L, D = layer.num_layers, layer.num_directions
    T, B = dy.shape[:2]
    H, P, dtype = layer.hidden_size, layer.proj_size, layer.dtype
    rows_b = np.arange(B)
    dstate = (None, None) if dstate is None else tuple(dstate) + (None,)
    dh_n = dstate[0] if dstate[0] is not None else np.zeros((L * D, B, P), dtype)
    dc_n = dstate[1] if dstate[1] is not None else np.zeros((L * D, B, H), dtype)
    dh0 = np.empty((L * D, B, P), dtype)
    dc0 = np.empty((L * D, B, H), dtype)
    for k in range(L - 1, -1, -1):
        in_size, mask, layer_trace = traces[k]
        dx = None
        for d in range(D):
            row = k * D + d
            shadow, tr, m, m_n, first, w_hh, w_hr = layer_trace[d]
            dy_d = dy[..., d * P:(d + 1) * P]
            # y = m W_hrᵀ and h_n = m_n W_hrᵀ: their gradients reach m and W_hr
            dm = np.ascontiguousarray(dy_d @ w_hr)
            layer._gw_hr[k][d] += (np.tensordot(dy_d, m, axes=([0, 1], [0, 1]))
                                   + dh_n[row].T @ m_n)
            shadow.zero_grad()
            dx_aug, (_, dc_first) = shadow._train_backward(
                tr, dm, ((dh_n[row] @ w_hr)[None], np.ascontiguousarray(dc_n[row][None])))
            g = shadow.grads
            g_eff = g["weight_hh_l0"]
            layer._gw_ih[k][d] += g["weight_ih_l0"][:, :in_size]
            layer._gw_hh[k][d] += g["weight_ih_l0"][:, in_size:] + g_eff @ w_hr.T
            layer._gw_hr[k][d] += w_hh.T @ g_eff
            if layer.bias:
                layer._gb_ih[k][d] += g["bias_ih_l0"]
                layer._gb_hh[k][d] += g["bias_hh_l0"]
            if layer.peepholes:
                layer._gpeep[k][d] += g["peephole_l0"]
            dh0[row] = dx_aug[first, rows_b, in_size:]
            dc0[row] = dc_first[0]
            part = dx_aug[..., :in_size]
            dx = part if dx is None else dx + part
        if mask is not None:
            dx = dx * mask
        dy = dx
    return (None if tokens else dy), (dh0, dc0)
