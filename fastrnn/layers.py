"""RNN, GRU and LSTM sequence layers (PyTorch's torch.nn.RNN/GRU/LSTM on numpy).

Weights are kept per layer as (D, G, in) / (D, G, H) blocks, D directions and
G = gates * hidden_size rows in PyTorch's gate order (RNN [h], GRU [r; z; n],
LSTM [i; f; g; o]); the state_dict entries are views of these blocks, so the
kernels read them without repacking and optimizers update them in place.
"""
import functools
import math

import numpy as np

from fastrnn import _checks
from fastrnn._buffers import BufferPool
from fastrnn._kernels import recurrent as _k
from fastrnn._module import SequenceModule
from fastrnn._threads import get_num_threads

# cell kinds, as in fastrnn/_kernels/_recurrent_impl.pxi
_RNN_TANH, _RNN_RELU, _LSTM, _GRU_RESET_AFTER, _GRU_RESET_BEFORE = range(5)

# bound on the packed input/gate block of one task, in elements (x the itemsize)
_STEP_CHUNK_ELEMENTS = 1 << 18
# fewest steps for which packing W_hh into panels pays for itself (unit split)
_PACK_MIN_STEPS = 4
# weights (bytes) above which a cell step splits its units across threads
_CELL_SPLIT_BYTES = 1 << 20
# token input reads W_ih's columns straight from W_ih (strided) unless the call
# has at least vocabulary size / _TOKENS_PER_COPY tokens: then from a transposed copy
_TOKENS_PER_COPY = 8
# per direction, 1 where it runs from each sequence's end: forward call, reversed call
_FLAGS = {False: np.array([0, 1], dtype=np.intc), True: np.array([1, 0], dtype=np.intc)}
for _flags in _FLAGS.values():
    _flags.flags.writeable = False


class _BatchPlan:
    """Row order and work split shared by every layer of one call.

    Rows are sorted by length, longest first (stable), so the rows running at
    step s are a prefix; ``n_active[s]`` counts them. ``bounds`` splits the
    sorted rows into blocks of about equal total length, one task per block
    and direction. In training the kernels keep ``total = sum(lengths)``
    packed rows per direction, block after block from ``block_offsets``.
    """

    def __init__(self, lengths, steps, batch, directions, threads):
        self.steps, self.batch = steps, batch
        if lengths is None:
            self.perm = np.arange(batch, dtype=np.intp)
            self.lengths = np.full(batch, steps, dtype=np.intp)
            self.n_active = np.full(steps, batch, dtype=np.intp)
        else:
            self.perm = np.argsort(-lengths, kind="stable").astype(np.intp)
            self.lengths = np.ascontiguousarray(lengths[self.perm])
            ascending = self.lengths[::-1]
            self.n_active = (batch - np.searchsorted(ascending, np.arange(steps),
                                                     side="right")).astype(np.intp)
        blocks = max(1, min(batch, -(-threads // directions)))
        total = np.cumsum(self.lengths)
        cuts = np.searchsorted(total, total[-1] * np.arange(1, blocks) / blocks) + 1
        self.bounds = np.unique(np.concatenate(([0], cuts, [batch]))).astype(np.intp)
        self.rows_max = int(np.diff(self.bounds).max())
        self.total = int(total[-1])
        self.block_offsets = np.concatenate(([0], total[self.bounds[1:-1] - 1])).astype(np.intp)
        self._inverse = {}

    def packed_inverse(self, flags):
        """(D, T*B): for direction d (reverse when flags[d]) and flat step
        t * B + b, the packed row that holds it, or -1 past the sequence's end."""
        key = tuple(int(f) for f in flags)
        if key not in self._inverse:
            inverse = np.full((len(key), self.steps * self.batch), -1, dtype=np.intp)
            for d, reverse in enumerate(key):
                parts = []
                for r0, r1 in zip(self.bounds[:-1], self.bounds[1:]):
                    lens = self.lengths[r0:r1]
                    s, j = np.nonzero(np.arange(lens[0])[:, None] < lens[None, :])
                    t = lens[j] - 1 - s if reverse else s
                    parts.append(t * self.batch + self.perm[r0 + j])
                inverse[d, np.concatenate(parts)] = np.arange(self.total)
            self._inverse[key] = inverse
        return self._inverse[key]


@functools.lru_cache(maxsize=16)
def _full_length_plan(steps, batch, directions, threads):
    """The plan of a batch without lengths (cached: it depends only on its sizes)."""
    plan = _BatchPlan(None, steps, batch, directions, threads)
    for arr in (plan.perm, plan.lengths, plan.n_active, plan.bounds, plan.block_offsets):
        arr.flags.writeable = False
    return plan


def _plan(lengths, steps, batch, directions, single_block=False):
    """The plan of a call: one block of all rows for the unit split, else one
    per thread (and direction)."""
    threads = 1 if single_block else get_num_threads()
    if lengths is None:
        return _full_length_plan(steps, batch, directions, threads)
    return _BatchPlan(lengths, steps, batch, directions, threads)


class _LayerTrace:
    """What one layer's training forward keeps for its backward."""

    __slots__ = ("w_ih", "w_hh", "x", "ids", "gates", "h_prev", "c_prev", "mask", "__weakref__")

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)


class _RecurrentLayer(SequenceModule):
    _takes_tokens = True
    _gates = 1

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32, seed=None):
        self.input_size = _checks.size("input_size", input_size)
        # the widest row the kernels index: 6H (the reset-after GRU's gate gradients)
        self.hidden_size = _checks.size("hidden_size", hidden_size, rows=6)
        self.num_layers = _checks.positive_int("num_layers", num_layers)
        self.bias = _checks.boolean("bias", bias)
        self.batch_first = _checks.boolean("batch_first", batch_first)
        self.dropout = _checks.probability("dropout", dropout)
        self.bidirectional = _checks.boolean("bidirectional", bidirectional)
        self.dtype = _checks.float_dtype(dtype)
        self._seed = _checks.seed(seed)
        D, G, H = self.num_directions, self._gates * self.hidden_size, self.hidden_size
        self._w_ih, self._w_hh, self._b_ih, self._b_hh = [], [], [], []
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else D * H
            self._w_ih.append(np.zeros((D, G, in_size), self.dtype))
            self._w_hh.append(np.zeros((D, G, H), self.dtype))
            if self.bias:
                self._b_ih.append(np.zeros((D, G), self.dtype))
                self._b_hh.append(np.zeros((D, G), self.dtype))
        self._gw_ih = [np.zeros_like(w) for w in self._w_ih]
        self._gw_hh = [np.zeros_like(w) for w in self._w_hh]
        self._gb_ih = [np.zeros_like(b) for b in self._b_ih]
        self._gb_hh = [np.zeros_like(b) for b in self._b_hh]
        self._no_bias = np.zeros((D, G), self.dtype)
        self._no_bias.flags.writeable = False
        self._bind_views()
        self.reset_parameters(self._seed)
        self._dropout_rng = (self._seed if isinstance(self._seed, np.random.Generator)
                             else np.random.default_rng(None if self._seed is None
                                                        else [self._seed, 1]))

    # -- configuration -----------------------------------------------------
    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def output_size(self):
        return self.num_directions * self.hidden_size

    def _config(self):
        return dict(input_size=self.input_size, hidden_size=self.hidden_size,
                    num_layers=self.num_layers, bias=self.bias, batch_first=self.batch_first,
                    dropout=self.dropout, bidirectional=self.bidirectional,
                    dtype=self.dtype)

    def _fresh_copy(self, seed):
        """A new layer of the same configuration with its own weights."""
        return type(self)(**self._config(), seed=seed)

    def __repr__(self):
        args = ", ".join(f"{k}={v.__name__ if isinstance(v, type) else v!r}"
                         for k, v in self._config().items())
        return f"{type(self).__name__}({args})"

    # -- parameters --------------------------------------------------------
    def _bind_views(self):
        """The state_dict and grads entries: views of the per-layer blocks the
        kernels read (made again for a copy: numpy copies a view as an
        independent array, which the kernels would never see)."""
        self._params = self._block_views(self._w_ih, self._w_hh, self._b_ih, self._b_hh)
        self._grads = self._block_views(self._gw_ih, self._gw_hh, self._gb_ih, self._gb_hh)

    def _block_views(self, w_ih, w_hh, b_ih, b_hh):
        """{state_dict name: view of one direction of the per-layer blocks}."""
        views = {}
        for layer in range(self.num_layers):
            for d in range(self.num_directions):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                views["weight_ih" + sfx] = w_ih[layer][d]
                views["weight_hh" + sfx] = w_hh[layer][d]
                if self.bias:
                    views["bias_ih" + sfx] = b_ih[layer][d]
                    views["bias_hh" + sfx] = b_hh[layer][d]
        return views

    def reset_parameters(self, seed=None):
        """PyTorch's initialisation: every weight and bias ~ U(-1/√H, 1/√H)."""
        rng = np.random.default_rng(_checks.seed(seed))
        bound = 1.0 / math.sqrt(self.hidden_size)
        for arr in self._params.values():
            arr[...] = rng.uniform(-bound, bound, arr.shape)

    def _biases(self, layer):
        """(b_ih, b_hh) of a layer, (D, G) each; zeros for a layer without bias."""
        if self.bias:
            return self._b_ih[layer], self._b_hh[layer]
        return self._no_bias, self._no_bias

    # -- state -------------------------------------------------------------
    def _state_shape(self, batch, batched):
        lead = self.num_layers * self.num_directions
        return (lead, batch, self.hidden_size) if batched else (lead, self.hidden_size)

    def _check_state(self, hx, batch, batched, what="hx"):
        """hx (or a gradient of h_n, ``what`` = "dh_n") as a tuple of (L*D, B, H)
        arrays, one per state (h; h and c for the LSTM); gradient entries may be None."""
        if hx is None:
            return None
        shape = self._state_shape(batch, batched)
        if self._kind == _LSTM:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                pair = "(h0, c0)" if what == "hx" else "(dh_n, dc_n)"
                raise TypeError(f"{what} must be a pair {pair} for an LSTM, "
                                f"got {type(hx).__name__}")
            names = ("h0", "c0") if what == "hx" else ("dh_n", "dc_n")
            values = hx
        else:
            names, values = (what,), (hx,)
        parts = []
        for name, value in zip(names, values):
            if value is None and what != "hx":
                parts.append(None)
                continue
            arr = _checks.state_array(name, value, shape, self.dtype)
            parts.append(arr if batched else arr[:, None, :])
        return tuple(parts)

    def _format_state(self, state, batched):
        if not batched:
            state = tuple(s[:, 0] for s in state)
        return state if self._kind == _LSTM else state[0]

    # -- forward -----------------------------------------------------------
    def _blas_in_kernel_threads(self, steps):
        # float32 calls of _PACK_MIN_STEPS steps or more multiply on packed
        # panels only (saves the two BLAS thread-count changes, ~3 us a call)
        return not (self.dtype == np.float32 and steps >= _PACK_MIN_STEPS
                    and _k.panel_kernel() != "blas")

    def _run(self, x, state, lengths, reverse):
        """x: (T, B, I) of self.dtype; state: tuple of (L*D, B, H) or None."""
        y, state, _ = self._forward_layers(x, state, lengths, reverse, training=False)
        return y, state

    def _train_forward(self, x, state, lengths, reverse):
        return self._forward_layers(x, state, lengths, reverse, training=True)

    def _forward_layers(self, x, state, lengths, reverse, training):
        steps, batch = x.shape[:2]
        D, H, L = self.num_directions, self.hidden_size, self.num_layers
        G = self._gates * H
        threads = get_num_threads()
        if steps == 1 and not training and self._streams(batch, threads):
            y, state = self._stream_step(x, state)
            return y, state, None
        # small batches split the hidden units across threads; the packed
        # training storage is then one block of all rows
        units = _split_units(batch, D, threads)
        plan = _plan(lengths, steps, batch, D, single_block=units)
        flags = self._direction_flags(reverse)
        is_lstm = self._kind == _LSTM
        h_n = np.empty((L * D, batch, H), self.dtype)
        c_n = np.empty((L * D, batch, H), self.dtype) if is_lstm else None
        unused = np.empty((D, 0, 0), self.dtype)
        traces = []
        inp = x
        tokens = x.dtype.kind in "iu"           # (T, B) token ids for the first layer
        for layer in range(L):
            ids = inp if tokens and layer == 0 else None
            rows = slice(layer * D, (layer + 1) * D)
            if state is None:
                h0 = np.zeros((D, batch, H), self.dtype)
                c0 = h0
            else:
                h0 = state[0][rows]
                c0 = state[1][rows] if is_lstm else unused
            mask = None
            if training and layer > 0 and self.dropout > 0:
                mask = _dropout_mask(self._dropout_rng, inp.shape, self.dropout, self.dtype)
                inp = inp * mask
            y = np.empty((steps, batch, D * H), self.dtype)   # the kernels zero the padding
            b_ih, b_hh = self._biases(layer)
            keep = {}
            if training:
                N, I = plan.total, self._w_ih[layer].shape[2]
                pool = self._buffers()
                keep = dict(keep_gates=pool.take((D, N, _k.gate_stride(self._kind, H)),
                                                 self.dtype),
                            keep_h=pool.take((D, N, H), self.dtype),
                            keep_c=pool.take((D, N, H), self.dtype) if is_lstm else unused)
                if ids is None:
                    keep["keep_x"] = pool.take((D, N, I), self.dtype)
                else:
                    keep["keep_ids"] = np.empty((D, N), np.intp)
                # the weights this forward runs with: backward uses them even if
                # an optimizer or the caller changes the layer's in between
                trace = _LayerTrace(w_ih=pool.copy(self._w_ih[layer]),
                                    w_hh=pool.copy(self._w_hh[layer]),
                                    x=keep.get("keep_x"), ids=keep.get("keep_ids"),
                                    gates=keep["keep_gates"], h_prev=keep["keep_h"],
                                    c_prev=keep["keep_c"] if is_lstm else None, mask=mask)
                pool.give_back_when_gone(trace, *(a for a in (
                    trace.w_ih, trace.w_hh, trace.x, trace.gates, trace.h_prev, trace.c_prev)
                    if a is not None))
                traces.append(trace)
            if ids is not None:
                # token k's projection is column k of W_ih: the kernels copy rows of
                # W_ihᵀ, from a transposed copy when many tokens amortise it, else
                # straight from W_ih (a strided read per token; no copy of V x G
                # per call, which would dominate a generation step)
                keep["ids"] = ids
                inp = self._w_ih[layer].transpose(0, 2, 1)
                if steps * batch * _TOKENS_PER_COPY >= inp.shape[1]:
                    inp = np.ascontiguousarray(inp)
            rows_per_task = batch if units else plan.rows_max
            step_chunk = max(1, min(steps, _STEP_CHUNK_ELEMENTS
                                    // (rows_per_task * max(G, self._w_ih[layer].shape[2]))))
            if units:
                _k.forward_layer_units(
                    self._kind, inp, self._w_ih[layer][0], self._w_hh[layer][0], b_ih, b_hh,
                    bool(flags[0]), plan.lengths, plan.perm, plan.n_active, h0[0],
                    c0[0], y, h_n[rows][0], c_n[rows][0] if is_lstm else unused[0],
                    step_chunk, threads, steps >= _PACK_MIN_STEPS,
                    **{k: (v if k == "ids" else v[0]) for k, v in keep.items()})
            else:
                _k.forward_layer(
                    self._kind, inp, self._w_ih[layer], self._w_hh[layer], b_ih, b_hh, flags,
                    plan.lengths, plan.perm, plan.n_active, plan.bounds, h0, c0, y, h_n[rows],
                    c_n[rows] if is_lstm else unused, step_chunk, threads,
                    block_offsets=plan.block_offsets if training else None, **keep)
            inp = y
        state = (h_n, c_n) if is_lstm else (h_n,)
        return inp, state, ((plan, flags, traces, units) if training else None)

    # -- one step on the calling thread (streaming use) --------------------
    def _streams(self, batch, threads):
        """Whether a one-step call runs on the calling thread, as a cell does:
        when the team would split the hidden units (few rows) or there is one
        thread, and no layer's weights exceed what one core streams well."""
        if not (threads == 1 or _split_units(batch, self.num_directions, threads)):
            return False
        return all(w_ih[0].nbytes + w_hh[0].nbytes <= _CELL_SPLIT_BYTES
                   for w_ih, w_hh in zip(self._w_ih, self._w_hh))

    def _step_kernels(self):
        """One bound step kernel per (layer, direction), made once per kernel build."""
        kernels = self.__dict__.get("_kernels")
        if kernels is None or kernels[0] is not _k:
            bound = []
            for layer in range(self.num_layers):
                b_ih, b_hh = self._biases(layer)
                bound.append([_k.CellKernel(self._kind, self._w_ih[layer][d],
                                            self._w_hh[layer][d], b_ih[d], b_hh[d])
                              for d in range(self.num_directions)])
            kernels = self._kernels = (_k, bound)
        return kernels[1]

    def _buffers(self):
        """This layer's pool of training work arrays (see fastrnn._buffers):
        room for two training calls' (six arrays per layer, two more in backward)."""
        pool = self.__dict__.get("_pool")
        if pool is None:
            pool = self._pool = BufferPool(keep=2 * (6 * self.num_layers + 2))
        return pool

    def __getstate__(self):
        # the bound kernels point into this layer's arrays, the pool holds
        # scratch and the state_dict entries are views of the blocks: a copy
        # (deepcopy, pickle) makes its own from its own blocks
        state = dict(self.__dict__)
        for key in ("_kernels", "_pool", "_params", "_grads"):
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._no_bias.flags.writeable = False
        self._bind_views()

    def _stream_step(self, x, state):
        """One step (T = 1) of every layer and direction on the calling thread.
        x: (1, B, I) floats or (1, B) token ids; returns (y (1, B, D*H), state).
        A single step of the reverse direction is the same step."""
        batch = x.shape[1]
        D, H, L = self.num_directions, self.hidden_size, self.num_layers
        is_lstm = self._kind == _LSTM
        h_n = np.empty((L * D, batch, H), self.dtype)
        c_n = np.empty((L * D, batch, H), self.dtype) if is_lstm else h_n
        zeros = np.zeros((batch, H), self.dtype) if state is None else None
        ones, rows = _single_step_rows(batch)
        kernels = self._step_kernels()
        inp = x[0]
        ids = np.ascontiguousarray(inp, dtype=np.intp) if inp.dtype.kind in "iu" else None
        for layer in range(L):
            y = np.empty((batch, D * H), self.dtype)
            for d in range(D):
                row = layer * D + d
                h0 = zeros if state is None else state[0][row]
                c0 = (zeros if state is None else state[1][row]) if is_lstm else h0
                kernels[layer][d].step(inp, h0, c0, h_n[row], c_n[row], ones, rows,
                                       ids if layer == 0 else None)
                y[:, d * H:(d + 1) * H] = h_n[row]
            inp = y
        return y[None], ((h_n, c_n) if is_lstm else (h_n,))

    def _direction_flags(self, reverse):
        """Per direction, 1 where it walks from each sequence's end (read-only)."""
        return _FLAGS[reverse][:self.num_directions]

    # -- backward ----------------------------------------------------------
    def _train_backward(self, trace, dy, dstate):
        """dy: (T, B, D*H) (unit last stride); dstate: like state, entries may be None."""
        plan, flags, traces, units = trace
        D, H, L = self.num_directions, self.hidden_size, self.num_layers
        is_lstm = self._kind == _LSTM
        lead = (L * D, plan.batch, H)
        dstate = (None, None) if dstate is None else tuple(dstate) + (None,)
        dh_n = dstate[0] if dstate[0] is not None else np.zeros(lead, self.dtype)
        dc_n = dstate[1] if dstate[1] is not None or not is_lstm else np.zeros(lead, self.dtype)
        dh0 = np.empty(lead, self.dtype)
        dc0 = np.empty(lead, self.dtype) if is_lstm else None
        unused = np.empty((D, 0, 0), self.dtype)
        threads = get_num_threads()
        for layer in range(L - 1, -1, -1):
            tr = traces[layer]
            rows = slice(layer * D, (layer + 1) * D)
            dgates = self._buffers().take((D, plan.total, _k.grad_stride(self._kind, H)),
                                          self.dtype)
            c_prev = tr.c_prev if is_lstm else unused
            dc_rows, dc0_rows = (dc_n[rows], dc0[rows]) if is_lstm else (unused, unused)
            if units:
                _k.backward_layer_units(
                    self._kind, tr.w_hh[0], bool(flags[0]), plan.lengths, plan.perm,
                    plan.n_active, tr.gates[0], tr.h_prev[0], c_prev[0], dy, dh_n[rows][0],
                    dc_rows[0], dgates[0], dh0[rows][0], dc0_rows[0], threads)
            else:
                _k.backward_layer(
                    self._kind, tr.w_hh, flags, plan.lengths, plan.perm, plan.n_active,
                    plan.bounds, plan.block_offsets, tr.gates, tr.h_prev, c_prev, dy,
                    dh_n[rows], dc_rows, dgates, dh0[rows], dc0_rows, threads)
            dy = self._weight_and_input_grads(layer, tr, dgates, plan, flags)
            self._buffers().give_back(dgates)
            if tr.mask is not None:
                dy *= tr.mask
        return dy, ((dh0, dc0) if is_lstm else (dh0,))

    def _weight_and_input_grads(self, layer, tr, dgates, plan, flags):
        """Add one layer's weight gradients into grads; return dL/d(its input).

        Each is one matrix product over every step (packed rows):
        dW_ih += dGxᵀ X, dW_hh += dGhᵀ H_prev, db_ih += Σ dGx, db_hh += Σ dGh,
        dX = dGx W_ih.
        """
        D, in_size = self.num_directions, tr.w_ih.shape[2]
        tokens = tr.ids is not None
        dx = np.empty((0 if tokens else plan.steps * plan.batch, in_size), self.dtype)
        no_bias = np.empty((D, 0), self.dtype)
        # float32: room for the operands of the weight gradients packed in panels
        size = (_k.tn_workspace(self._kind, D, plan.total, in_size, self.hidden_size, tokens)
                if self.dtype == np.float32 else 0)
        work = self._buffers().take((size,), np.float32) if size else None
        _k.layer_grads(self._kind, dgates, np.empty((D, 0, in_size), self.dtype)
                       if tokens else tr.x, tr.gates, tr.h_prev, tr.w_ih,
                       self._gw_ih[layer], self._gw_hh[layer],
                       self._gb_ih[layer] if self.bias else no_bias,
                       self._gb_hh[layer] if self.bias else no_bias,
                       np.empty((D, 0), np.intp) if tokens else plan.packed_inverse(flags),
                       dx, get_num_threads(), keep_ids=tr.ids, tn_work=work)
        if work is not None:
            self._buffers().give_back(work)
        if tokens:
            return None                        # token ids have no gradient
        return dx.reshape(plan.steps, plan.batch, in_size)


@functools.lru_cache(maxsize=64)
def _single_step_rows(batch):
    """(lengths of 1, identity permutation) for a one-step batch of ``batch`` rows."""
    ones = np.ones(batch, np.intp)
    rows = np.arange(batch, dtype=np.intp)
    ones.flags.writeable = rows.flags.writeable = False
    return ones, rows


def _split_units(batch, directions, threads):
    """Whether to split hidden units (not the batch) across threads.

    With one direction and a batch too small to give every thread a few rows,
    splitting the batch leaves threads idle (and each would stream all of W_hh
    every step); splitting the units gives each thread its share of the
    weights, at the cost of a barrier per step.
    """
    return threads > 1 and directions == 1 and batch < 4 * threads


def _dropout_mask(rng, shape, p, dtype):
    """Inverted dropout: 0 with probability p, else 1 / (1 - p)."""
    keep = rng.random(shape) >= p
    return keep.astype(dtype) / dtype(1.0 - p)


class RNN(_RecurrentLayer):
    """Elman RNN: h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), f = tanh or relu.

    ``y, h_n = rnn(x, hx=None, *, lengths=None)``; x (T, B, input_size)
    ((B, T, input_size) with batch_first; (T, input_size) unbatched), hx and
    h_n (num_layers * D, B, hidden_size), y (T, B, D * hidden_size).
    """

    _gates = 1

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, dtype=np.float32,
                 seed=None):
        self.nonlinearity = _checks.choice("nonlinearity", nonlinearity, ("tanh", "relu"))
        self._kind = _RNN_TANH if nonlinearity == "tanh" else _RNN_RELU
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed)

    def _config(self):
        return dict(super()._config(), nonlinearity=self.nonlinearity)


class GRU(_RecurrentLayer):
    """Gated recurrent unit; PyTorch's gate rows [r; z; n].

    r = σ(W_ir x + b_ir + W_hr h + b_hr), z = σ(W_iz x + b_iz + W_hz h + b_hz),
    reset_after=True (PyTorch, cuDNN): n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn));
    reset_after=False (Cho et al.):    n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn);
    h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}. Shapes as RNN.
    """

    _gates = 3

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32, seed=None,
                 reset_after=True):
        self.reset_after = _checks.boolean("reset_after", reset_after)
        self._kind = _GRU_RESET_AFTER if reset_after else _GRU_RESET_BEFORE
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed)

    def _config(self):
        return dict(super()._config(), reset_after=self.reset_after)


class LSTM(_RecurrentLayer):
    """Long short-term memory; PyTorch's gate rows [i; f; g; o].

    c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g), h_t = σ(o) ⊙ tanh(c_t).
    ``y, (h_n, c_n) = lstm(x, (h0, c0), *, lengths=None)``; states
    (num_layers * D, B, hidden_size); otherwise as RNN.
    """

    _gates = 4
    _kind = _LSTM
