"""Optimizers and gradient clipping, with PyTorch's update rules.

An optimizer is given what to update: a module (anything with
``named_parameters()`` and ``grads``, e.g. a layer, Stacked, Dense), or a list
of modules and (parameter, gradient) array pairs. ``step()`` updates the
parameter arrays in place from the gradients; ``zero_grad()`` clears them.
"""
import math

import numpy as np

from fastrnn import _checks


def param_grad_pairs(targets):
    """[(parameter, gradient), ...] from a module, a pair, or a list of either."""
    if hasattr(targets, "named_parameters") and hasattr(targets, "grads"):
        grads = targets.grads
        return [(p, grads[name]) for name, p in targets.named_parameters()]
    if isinstance(targets, tuple) and len(targets) == 2 and all(
            isinstance(a, np.ndarray) for a in targets):
        p, g = targets
        if p.shape != g.shape:
            raise ValueError(f"a (parameter, gradient) pair must have equal shapes, "
                             f"got {p.shape} and {g.shape}")
        return [(p, g)]
    if isinstance(targets, (list, tuple)):
        pairs = [pair for item in targets for pair in param_grad_pairs(item)]
        seen = set()
        for p, _ in pairs:
            if id(p) in seen:
                raise ValueError("a parameter appears twice in the optimizer's targets")
            seen.add(id(p))
        return pairs
    raise TypeError("params must be a module (with named_parameters() and grads), a "
                    f"(parameter, gradient) pair or a list of these, got {type(targets).__name__}")


class Optimizer:
    """Base of the optimizers: ``pairs`` of (parameter, gradient) arrays from ``params``.

    A copy (deepcopy, pickle) finds its pairs again from its copy of the
    modules it was given, so a model and its optimizer copied together stay
    connected (numpy copies the arrays' views as independent arrays).
    """

    def __init__(self, params, lr):
        self._targets = params
        self.pairs = param_grad_pairs(params)
        if not self.pairs:
            raise ValueError("params holds no parameters")
        for p, _ in self.pairs:
            if not p.flags.writeable:
                raise ValueError("every parameter must be a writeable array")
        self.lr = _checks.real("lr", lr)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("pairs")
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.pairs = param_grad_pairs(self._targets)

    def zero_grad(self):
        for _, g in self.pairs:
            g[...] = 0

    def step(self):
        raise NotImplementedError


class SGD(Optimizer):
    """p -= lr * g, with weight decay (g += wd p), momentum and Nesterov as torch.optim.SGD.

    buf = momentum * buf + (1 - dampening) * g (buf = g at the first step);
    g = g + momentum * buf with nesterov, else g = buf.
    """

    def __init__(self, params, lr=1e-2, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        super().__init__(params, lr)
        self.momentum = _checks.real("momentum", momentum)
        self.dampening = _checks.real("dampening", dampening)
        self.weight_decay = _checks.real("weight_decay", weight_decay)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ValueError("nesterov needs momentum > 0 and dampening = 0")
        self._buffers = [None] * len(self.pairs)

    def step(self):
        for k, (p, g) in enumerate(self.pairs):
            d = g + self.weight_decay * p if self.weight_decay else g.copy()
            if self.momentum:
                buf = self._buffers[k]
                if buf is None:
                    buf = self._buffers[k] = d.copy()
                else:
                    buf *= self.momentum
                    buf += (1 - self.dampening) * d
                d = d + self.momentum * buf if self.nesterov else buf
            p -= self.lr * d


class Adam(Optimizer):
    """Adam (Kingma & Ba) as torch.optim.Adam; weight_decay adds wd * p to the gradient.

    m = β1 m + (1-β1) g, v = β2 v + (1-β2) g²,
    p -= lr / (1-β1ᵗ) * m / (√v / √(1-β2ᵗ) + eps).
    """

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2 or not all(
                isinstance(b, (int, float, np.integer, np.floating)) and not isinstance(b, bool)
                for b in betas):
            raise TypeError(f"betas must be a pair of numbers (beta1, beta2), got {betas!r}")
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        self.betas = (float(b1), float(b2))
        self.eps = _checks.real("eps", eps)
        self.weight_decay = _checks.real("weight_decay", weight_decay)
        self.t = 0
        self._m = [np.zeros_like(p) for p, _ in self.pairs]
        self._v = [np.zeros_like(p) for p, _ in self.pairs]

    def step(self):
        self.t += 1
        b1, b2 = self.betas
        step_size = self.lr / (1 - b1 ** self.t)
        root_bc2 = math.sqrt(1 - b2 ** self.t)
        for (p, g), m, v in zip(self.pairs, self._m, self._v):
            if self.weight_decay:
                if self._decoupled:
                    p *= 1 - self.lr * self.weight_decay
                else:
                    g = g + self.weight_decay * p
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            p -= step_size * m / (np.sqrt(v) / root_bc2 + self.eps)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW:
    p *= 1 - lr * weight_decay before the Adam step."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)


def clip_grad_norm(params, max_norm):
    """Scale all gradients so that their global L2 norm is at most max_norm.

    Returns the norm before clipping (as torch.nn.utils.clip_grad_norm_:
    gradients are multiplied by max_norm / (norm + 1e-6) when that is < 1).
    """
    max_norm = _checks.real("max_norm", max_norm, inclusive=False)
    pairs = param_grad_pairs(params)
    norm = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for _, g in pairs))
    coef = max_norm / (norm + 1e-6)
    if coef < 1:
        for _, g in pairs:
            g *= coef
    return norm
