"""The general recurrent path: the cell variants the imports need, in numpy.

RNN/GRU/LSTM layers with any of: ONNX's activation functions (``activations``,
``activation_alpha``, ``activation_beta``), cell clipping (``clip``: every
gate pre-activation clipped to [-clip, clip] before its activation), and for
the LSTM peepholes (ONNX's P), coupled input and forget gates
(``input_forget``: f = 1 - i) and PyTorch's projection (``proj_size``:
h_t = W_hr (o ⊙ h(c_t)), the state h and the output have proj_size units).
Forward and BPTT, float32 and float64, variable lengths, both directions, a
step at a time in numpy (BLAS for the products). Layers run here only with
activation functions other than their defaults: clip, peepholes and coupled
gates are in the kernels, proj_size on them (fastrnn._projection). Slower,
and exact in the same sense; it is also the reference the kernels' variants
are tested against (itself tested against ONNX Runtime, PyTorch and finite
differences).

Equations, LSTM rows [i; f; g; o] (PyTorch's order), activations (f, g, h):
    a = x W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh
    i = f(clip(a_i + p_i ⊙ c_{t-1})),  F = 1 - i  or  f(clip(a_f + p_f ⊙ c_{t-1}))
    c_t = F ⊙ c_{t-1} + i ⊙ g(clip(a_g)),  o = f(clip(a_o + p_o ⊙ c_t))
    h_t = o ⊙ h(c_t)   (then W_hr h_t with proj_size)
GRU rows [r; z; n], activations (f, g): r = f(clip(a_r)), z = f(clip(a_z)),
n = g(clip(x W_inᵀ + b_in + r ⊙ (h W_hnᵀ + b_hn))) (reset after) or
g(clip(x W_inᵀ + b_in + (r ⊙ h) W_hnᵀ + b_hn)) (reset before),
h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}. RNN: h_t = f(clip(a)).
"""
import numpy as np

from fastrnn._engine import dropout_mask


# -- activation functions (ONNX's list), with their derivatives ---------------------------
# name: (needs alpha, needs beta, default alpha, default beta); the defaults
# where ONNX Runtime consumes activation_alpha/beta: in order, only by the
# functions that take them, else its default
_PARAMS = {"relu": (False, False, 0.0, 0.0), "tanh": (False, False, 0.0, 0.0),
           "sigmoid": (False, False, 0.0, 0.0), "affine": (True, True, 0.0, 0.0),
           "leakyrelu": (True, False, 0.01, 0.0), "thresholdedrelu": (True, False, 0.0, 0.0),
           "scaledtanh": (True, True, 0.0, 0.0), "hardsigmoid": (True, True, 0.2, 0.5),
           "elu": (True, False, 1.0, 0.0), "softsign": (False, False, 0.0, 0.0),
           "softplus": (False, False, 0.0, 0.0)}
ACTIVATIONS = tuple(_PARAMS)


def takes(name):
    """(whether ``name`` takes alpha, whether it takes beta)."""
    return _PARAMS[name][:2]


def _sigmoid(x):
    return 0.5 * (1 + np.tanh(0.5 * x))


class Activation:
    """One activation function with its alpha and beta: y = act(x), act.grad(x)."""

    __slots__ = ("name", "alpha", "beta")

    def __init__(self, name, alpha=0.0, beta=0.0):
        self.name, self.alpha, self.beta = name, float(alpha), float(beta)

    def __eq__(self, other):
        return (isinstance(other, Activation)
                and (self.name, self.alpha, self.beta) == (other.name, other.alpha, other.beta))

    def __repr__(self):
        return f"Activation({self.name!r}, {self.alpha}, {self.beta})"

    def __call__(self, x):
        n, a, b = self.name, x.dtype.type(self.alpha), x.dtype.type(self.beta)
        if n == "tanh":
            return np.tanh(x)
        if n == "sigmoid":
            return _sigmoid(x)
        if n == "relu":
            return np.maximum(x, 0)
        if n == "affine":
            return a * x + b
        if n == "leakyrelu":
            return np.where(x >= 0, x, a * x)
        if n == "thresholdedrelu":
            return np.where(x > a, x, 0).astype(x.dtype)
        if n == "scaledtanh":
            return a * np.tanh(b * x)
        if n == "hardsigmoid":
            return np.clip(a * x + b, 0, 1)
        if n == "elu":
            return np.where(x >= 0, x, a * np.expm1(np.minimum(x, 0)))
        if n == "softsign":
            return x / (1 + np.abs(x))
        return np.logaddexp(x.dtype.type(0), x)            # softplus

    def grad(self, x):
        """d act / dx at x."""
        n, a, b = self.name, x.dtype.type(self.alpha), x.dtype.type(self.beta)
        one = x.dtype.type(1)
        if n == "tanh":
            t = np.tanh(x)
            return one - t * t
        if n == "sigmoid":
            s = _sigmoid(x)
            return s * (one - s)
        if n == "relu":
            return (x > 0).astype(x.dtype)
        if n == "affine":
            return np.full_like(x, a)
        if n == "leakyrelu":
            return np.where(x >= 0, one, a)
        if n == "thresholdedrelu":
            return (x > a).astype(x.dtype)
        if n == "scaledtanh":
            t = np.tanh(b * x)
            return a * b * (one - t * t)
        if n == "hardsigmoid":
            v = a * x + b
            return np.where((v > 0) & (v < 1), a, 0).astype(x.dtype)
        if n == "elu":
            return np.where(x >= 0, one, a * np.exp(np.minimum(x, 0)))
        if n == "softsign":
            d = one + np.abs(x)
            return one / (d * d)
        return _sigmoid(x)                                  # softplus


def resolve_activations(count, directions, names, alphas, betas):
    """The activations of each direction: a tuple per direction of ``count``
    Activation objects, from ONNX-style lists (``names`` of length count or
    count * directions; alphas/betas consumed in order by the functions that
    take them, as ONNX Runtime does)."""
    names = [str(n).lower() for n in names]
    if len(names) == count:
        names = names * directions
    if len(names) != count * directions:
        raise ValueError(f"activations must list {count} functions (or {count} per direction, "
                         f"{count * directions}), got {len(names)}")
    alphas, betas = list(alphas or []), list(betas or [])
    out = []
    for name in names:
        if name not in _PARAMS:
            raise ValueError(f"activations: unknown function {name!r} (one of "
                             f"{', '.join(ACTIVATIONS)})")
        needs_a, needs_b, default_a, default_b = _PARAMS[name]
        a = (alphas.pop(0) if alphas else default_a) if needs_a else 0.0
        b = (betas.pop(0) if betas else default_b) if needs_b else 0.0
        out.append(Activation(name, a, b))
    return tuple(tuple(out[d * count:(d + 1) * count]) for d in range(directions))


# -- one layer and direction ------------------------------------------------------------------
class _Params:
    """The arrays of one layer and direction (views of the layer's blocks) and their grads."""

    def __init__(self, layer, k, d):
        self.w_ih, self.w_hh = layer._w_ih[k][d], layer._w_hh[k][d]
        self.gw_ih, self.gw_hh = layer._gw_ih[k][d], layer._gw_hh[k][d]
        zeros = np.zeros(self.w_ih.shape[0], layer.dtype)
        self.b_ih = layer._b_ih[k][d] if layer.bias else zeros
        self.b_hh = layer._b_hh[k][d] if layer.bias else zeros
        self.gb_ih = layer._gb_ih[k][d] if layer.bias else None
        self.gb_hh = layer._gb_hh[k][d] if layer.bias else None
        self.w_hr = layer._w_hr[k][d] if layer._w_hr else None
        self.gw_hr = layer._gw_hr[k][d] if layer._w_hr else None
        self.peep = layer._peep[k][d] if layer._peep else None
        self.gpeep = layer._gpeep[k][d] if layer._peep else None


def _clip(a, clip):
    return a if clip is None else np.clip(a, -clip, clip)


def _clip_mask(a, clip):
    """1 where clip lets the gradient through (inside [-clip, clip]), else 0."""
    return None if clip is None else (np.abs(a) <= clip).astype(a.dtype)


def _masked(grad, mask):
    return grad if mask is None else grad * mask


def _lstm_step(layer, p, acts, xg, h, c):
    """One LSTM step for all rows: (h_t, c_t, cache)."""
    H, clip = layer.hidden_size, layer.clip
    f_act, g_act, h_act = acts
    a = xg + h @ p.w_hh.T
    a_i, a_f, a_g, a_o = (a[:, q * H:(q + 1) * H] for q in range(4))
    if p.peep is not None:
        a_i = a_i + p.peep[:H] * c
        a_f = a_f + p.peep[H:2 * H] * c
    i = f_act(_clip(a_i, clip))
    g = g_act(_clip(a_g, clip))
    fg = 1 - i if layer.input_forget else f_act(_clip(a_f, clip))
    c_new = fg * c + i * g
    if p.peep is not None:
        a_o = a_o + p.peep[2 * H:] * c_new
    o = f_act(_clip(a_o, clip))
    hc = h_act(c_new)
    m = o * hc
    h_new = m @ p.w_hr.T if p.w_hr is not None else m
    return h_new, c_new, (a_i, a_f, a_g, a_o, i, fg, g, o, c, c_new, hc, m)


def _lstm_back(layer, p, acts, cache, h_prev, dh, dc):
    """dA (B, 4H) and the state gradients (dh_{t-1} without the W_hh path, dc_{t-1})."""
    H, clip = layer.hidden_size, layer.clip
    f_act, g_act, h_act = acts
    a_i, a_f, a_g, a_o, i, fg, g, o, c_prev, c, hc, m = cache
    if p.w_hr is not None:
        p.gw_hr += dh.T @ m
        dm = dh @ p.w_hr
    else:
        dm = dh
    da_o = _masked(dm * hc * f_act.grad(_clip(a_o, clip)), _clip_mask(a_o, clip))
    dc = dc + dm * o * h_act.grad(c)
    if p.peep is not None:
        dc = dc + da_o * p.peep[2 * H:]
    di = dc * g
    dg = dc * i
    dfg = dc * c_prev
    dc_prev = dc * fg
    if layer.input_forget:
        di = di - dfg
        da_f = np.zeros_like(dfg)
    else:
        da_f = _masked(dfg * f_act.grad(_clip(a_f, clip)), _clip_mask(a_f, clip))
    da_i = _masked(di * f_act.grad(_clip(a_i, clip)), _clip_mask(a_i, clip))
    da_g = _masked(dg * g_act.grad(_clip(a_g, clip)), _clip_mask(a_g, clip))
    if p.peep is not None:
        dc_prev = dc_prev + da_i * p.peep[:H] + da_f * p.peep[H:2 * H]
        p.gpeep[:H] += np.sum(da_i * c_prev, axis=0)
        p.gpeep[H:2 * H] += np.sum(da_f * c_prev, axis=0)
        p.gpeep[2 * H:] += np.sum(da_o * c, axis=0)
    dA = np.concatenate([da_i, da_f, da_g, da_o], axis=1)
    p.gw_hh += dA.T @ h_prev
    return dA, dA, dA @ p.w_hh, dc_prev


def _gru_step(layer, p, acts, xg, h, c):
    H, clip = layer.hidden_size, layer.clip
    f_act, g_act = acts
    if layer.reset_after:
        gh = h @ p.w_hh.T + p.b_hh
        r = f_act(_clip(xg[:, :H] + gh[:, :H], clip))
        z = f_act(_clip(xg[:, H:2 * H] + gh[:, H:2 * H], clip))
        a_n = xg[:, 2 * H:] + r * gh[:, 2 * H:]
        extra = gh[:, 2 * H:]
    else:
        gh = h @ p.w_hh[:2 * H].T + p.b_hh[:2 * H]
        r = f_act(_clip(xg[:, :H] + gh[:, :H], clip))
        z = f_act(_clip(xg[:, H:2 * H] + gh[:, H:], clip))
        extra = r * h
        a_n = xg[:, 2 * H:] + extra @ p.w_hh[2 * H:].T + p.b_hh[2 * H:]
    n = g_act(_clip(a_n, clip))
    h_new = (1 - z) * n + z * h
    a_r = xg[:, :H] + gh[:, :H]
    a_z = xg[:, H:2 * H] + gh[:, H:2 * H]
    return h_new, None, (a_r, a_z, a_n, r, z, n, extra)


def _gru_back(layer, p, acts, cache, h_prev, dh, dc):
    """dGx (input side), dGh (recurrent side) and dh_{t-1} (all paths)."""
    H, clip = layer.hidden_size, layer.clip
    f_act, g_act = acts
    a_r, a_z, a_n, r, z, n, extra = cache
    dn = dh * (1 - z)
    dz = dh * (h_prev - n)
    dh_prev = dh * z
    da_n = _masked(dn * g_act.grad(_clip(a_n, clip)), _clip_mask(a_n, clip))
    da_z = _masked(dz * f_act.grad(_clip(a_z, clip)), _clip_mask(a_z, clip))
    if layer.reset_after:
        dr = da_n * extra
        da_r = _masked(dr * f_act.grad(_clip(a_r, clip)), _clip_mask(a_r, clip))
        dgx = np.concatenate([da_r, da_z, da_n], axis=1)
        dgh = np.concatenate([da_r, da_z, da_n * r], axis=1)
        p.gw_hh += dgh.T @ h_prev
        dh_prev = dh_prev + dgh @ p.w_hh
        return dgx, dgh, dh_prev, None
    drh = da_n @ p.w_hh[2 * H:]
    p.gw_hh[2 * H:] += da_n.T @ extra
    dr = drh * h_prev
    dh_prev = dh_prev + drh * r
    da_r = _masked(dr * f_act.grad(_clip(a_r, clip)), _clip_mask(a_r, clip))
    drz = np.concatenate([da_r, da_z], axis=1)
    p.gw_hh[:2 * H] += drz.T @ h_prev
    dh_prev = dh_prev + drz @ p.w_hh[:2 * H]
    dgx = np.concatenate([da_r, da_z, da_n], axis=1)
    return dgx, dgx, dh_prev, None


def _rnn_step(layer, p, acts, xg, h, c):
    a = xg + h @ p.w_hh.T
    return acts[0](_clip(a, layer.clip)), None, (a,)


def _rnn_back(layer, p, acts, cache, h_prev, dh, dc):
    (a,) = cache
    da = _masked(dh * acts[0].grad(_clip(a, layer.clip)), _clip_mask(a, layer.clip))
    p.gw_hh += da.T @ h_prev
    return da, da, da @ p.w_hh, None


_STEPS = {"RNN": (_rnn_step, _rnn_back), "GRU": (_gru_step, _gru_back),
          "LSTM": (_lstm_step, _lstm_back)}


def _input_gates(layer, p, x, tokens):
    """x W_ihᵀ + b_ih (+ b_hh where it is added directly) for every step: (T, B, G)."""
    xg = p.w_ih.T[x] if tokens else x @ p.w_ih.T
    b = p.b_ih + p.b_hh
    if type(layer).__name__ == "GRU":
        b = p.b_ih.copy()           # the GRU adds b_hh with the recurrent product
    return xg + b


def _run_direction(layer, p, acts, x, tokens, h0, c0, lengths, reverse, keep):
    """One layer and direction over the time-major x: (y (T, B, Hout), h_n, c_n, trace)."""
    step, _ = _STEPS[type(layer).__name__]
    T, B = x.shape[:2]
    xg = _input_gates(layer, p, x, tokens)
    Hout = h0.shape[1]
    y = np.zeros((T, B, Hout), layer.dtype)
    h, c = h0, c0
    caches = [None] * T
    order = range(T - 1, -1, -1) if reverse else range(T)
    for t in order:
        valid = None if lengths is None else (t < lengths)[:, None]
        h_new, c_new, cache = step(layer, p, acts, xg[t], h, c)
        if keep:
            caches[t] = (cache, h, valid)
        if valid is None:
            h, c = h_new, c_new
            y[t] = h
        else:
            h = np.where(valid, h_new, h)
            if c is not None:
                c = np.where(valid, c_new, c)
            y[t] = np.where(valid, h_new, 0)
    return y, h, c, caches


def _back_direction(layer, p, acts, trace, x, tokens, dy, dh, dc, reverse):
    """BPTT of one layer and direction: dx (T, B, I) or None; dh0, dc0."""
    _, back = _STEPS[type(layer).__name__]
    caches = trace
    T = len(caches)
    dgx_all = np.zeros((T, dy.shape[1], p.w_ih.shape[0]), layer.dtype)
    order = range(T) if reverse else range(T - 1, -1, -1)
    for t in order:
        cache, h_prev, valid = caches[t]
        dh_t, dc_t = dh + dy[t], dc
        if valid is not None:
            # a row past its length carried its state unchanged and output 0:
            # its gradient passes by, and nothing of it reaches the weights
            v = valid.astype(layer.dtype)
            dh_t = dh_t * v
            dc_t = None if dc is None else dc * v
        dgx, dgh, dh_prev, dc_prev = back(layer, p, acts, cache, h_prev, dh_t, dc_t)
        if valid is not None:
            dh_prev = np.where(valid, dh_prev, dh)
            if dc is not None:
                dc_prev = np.where(valid, dc_prev, dc)
        dh, dc = dh_prev, dc_prev
        dgx_all[t] = dgx
        if p.gb_hh is not None:
            p.gb_hh += dgh.sum(axis=0)
    if p.gb_ih is not None:
        p.gb_ih += dgx_all.sum(axis=(0, 1))
    flat = dgx_all.reshape(-1, dgx_all.shape[2])
    if tokens:
        np.add.at(p.gw_ih.T, x.reshape(-1), flat)
        return None, dh, dc
    p.gw_ih += flat.T @ x.reshape(-1, x.shape[2])
    return (flat @ p.w_ih).reshape(x.shape[0], x.shape[1], -1), dh, dc


def forward(layer, x, state, lengths, reverse, training):
    """The layer over time-major x (T, B, I) floats or (T, B) ids: (y, state, trace)."""
    L, D = layer.num_layers, layer.num_directions
    T, B = x.shape[:2]
    tokens = x.dtype.kind in "iu"
    Hh, H = layer._state_size, layer.hidden_size
    lstm = type(layer).__name__ == "LSTM"
    if state is None:
        h_all = np.zeros((L * D, B, Hh), layer.dtype)
        c_all = np.zeros((L * D, B, H), layer.dtype) if lstm else None
    else:
        h_all = state[0]
        c_all = state[1] if lstm else None
    h_n = np.empty((L * D, B, Hh), layer.dtype)
    c_n = np.empty((L * D, B, H), layer.dtype) if lstm else None
    traces = []
    inp = x
    for k in range(L):
        mask = None
        if training and k > 0 and layer.dropout > 0:
            mask = dropout_mask(layer._dropout_rng, inp.shape, layer.dropout, layer.dtype)
            inp = inp * mask
        outs, layer_trace = [], []
        for d in range(D):
            p = _Params(layer, k, d)
            row = k * D + d
            y, h, c, caches = _run_direction(
                layer, p, layer._acts[d], inp, tokens and k == 0, h_all[row],
                None if c_all is None else c_all[row], lengths, reverse != (d == 1), training)
            h_n[row] = h
            if c_n is not None:
                c_n[row] = c
            outs.append(y)
            layer_trace.append(caches)
        traces.append((inp, mask, layer_trace))
        inp = outs[0] if D == 1 else np.concatenate(outs, axis=2)
    return inp, ((h_n, c_n) if lstm else (h_n,)), (traces, reverse)


def backward(layer, trace, dy, dstate):
    """BPTT: (dx or None, dstate0) for the loss sum(dy * y) + sum(dstate * state)."""
    traces, reverse = trace
    L, D = layer.num_layers, layer.num_directions
    lstm = type(layer).__name__ == "LSTM"
    B = dy.shape[1]
    Hh, H = layer._state_size, layer.hidden_size
    dstate = dstate or (None, None)
    dh_n = dstate[0] if dstate[0] is not None else np.zeros((L * D, B, Hh), layer.dtype)
    dc_n = None
    if lstm:
        dc_n = dstate[1] if len(dstate) > 1 and dstate[1] is not None else \
            np.zeros((L * D, B, H), layer.dtype)
    dh0 = np.empty((L * D, B, Hh), layer.dtype)
    dc0 = np.empty((L * D, B, H), layer.dtype) if lstm else None
    for k in range(L - 1, -1, -1):
        inp, mask, layer_trace = traces[k]
        tokens = inp.dtype.kind in "iu"
        dx = None
        for d in range(D):
            p = _Params(layer, k, d)
            row = k * D + d
            dy_d = dy[..., d * Hh:(d + 1) * Hh]
            dxd, dh, dc = _back_direction(
                layer, p, layer._acts[d], layer_trace[d], inp, tokens, dy_d, dh_n[row],
                None if dc_n is None else dc_n[row], reverse != (d == 1))
            dh0[row] = dh
            if dc0 is not None:
                dc0[row] = dc
            if dxd is not None:
                dx = dxd if dx is None else dx + dxd
        if dx is not None and mask is not None:
            dx = dx * mask
        dy = dx
    return dy, ((dh0, dc0) if lstm else (dh0,))
