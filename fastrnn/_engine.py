"""Running one recurrent layer: the forward pass (inference and training),
BPTT, the weight gradients and the one-step streaming path.

fastrnn.layers holds a layer's configuration, parameter blocks and state;
this module decides how a call runs (the batch plan, which thread split, the
chunk size, whether to stream one step on the calling thread) and hands the
arrays to the kernels (fastrnn._kernels). Cells run here too, as one-layer,
one-direction layers of a single step.

    y, state, trace = forward(layer, x, state, lengths, reverse, training)
    dx, dstate0 = backward(layer, trace, dy, dstate)
    h, c = cell_step(layer, x, state)       # one step of a one-layer layer

x is time-major (T, B, I) of the layer's dtype (or (T, B) token ids), states
are tuples of (L*D, B, H) arrays; every argument was checked by the caller.
"""
import functools
import math
import os

import numpy as np

from fastrnn import _cpu
from fastrnn._buffers import BufferPool
from fastrnn._checks import MAX_ROWS
from fastrnn._kernels import recurrent as _k
from fastrnn._kernels._panels import aligned_empty
from fastrnn._kernels._cells import carries_cell_state, gate_stride, grad_stride
from fastrnn._threads import get_num_threads, serial_blas

# bound on the packed input/gate block of one task, in elements (x the itemsize)
_STEP_CHUNK_ELEMENTS = 1 << 18
# fewest steps for which packing W_hh into panels pays for itself (unit split)
_PACK_MIN_STEPS = 4


def _cache_bounds(caches):
    """The two thread-split thresholds the CPU plan's caches set (bytes).

    cell: weights of a one-step call above which it runs as a one-step
    layer call (the unit split's team and plan: its units split across the
    threads, each streaming its share, where the cores' bandwidths from
    memory add up): the L3. Below it the step kernel runs the step itself
    (CellKernel: one float32 row splits its units across the threads in one
    parallel region from 192 KiB to half the L3; otherwise on the calling
    thread). The layer call costs ~15 us more than the kernel's own split
    (``python -m bench.cell_split``), which is why it waits for the L3.

    layer: one direction's W_hh above which a batch of up to 8 rows per
    thread also splits its units: the L2. Batch-split, every thread streams
    all of W_hh every step, from L3 once it exceeds L2; unit-split, its
    share. Unit / batch split time at B=16 (``python -m bench.thread_split``,
    T=100): on the Zen 3 machine (512 KiB L2), two runs, LSTM H=1024 0.73,
    0.82; H=512 0.82, 0.96; H=256 0.89, 0.99; GRU H=256 0.87, 0.97; H=128
    (W_hh 256 KiB, in L2) 1.00, 1.04; on the Zen 5 machine (1 MiB L2), one
    run, LSTM H=1024 0.92, H=512 0.91, H=256 (W_hh 1 MiB, all of L2) 0.92,
    GRU H=256 (768 KiB) 0.97, LSTM H=128 1.06. Half of L2 as the bound was
    tried on Zen 5 and not kept: it gained those 0.92 and 0.97 at inference,
    but a GRU H=256 training step at B=8 (unit-split backward: two meetings
    per step) took 1.13 of the batch split's time (bench.ab, 9 rounds; 1.19
    against the tree before). None: the L2 is unknown, the batch decides
    alone.
    """
    l3 = caches.l3 or 32 << 20
    return l3, caches.l2


_CELL_SPLIT_BYTES, _UNIT_SPLIT_BYTES = _cache_bounds(_cpu.plan().caches)
# one direction's W_hh up to which even a batch of one row does not split
# its units: half a core's L1d (the step's other operands need the rest), from
# where one thread multiplies it about as fast as two threads that meet at
# every step (see _split_units)
_UNIT_MIN_BYTES = (_cpu.plan().caches.l1d or 0) // 2

# token input reads W_ih's columns straight from W_ih (strided) unless the call
# has at least vocabulary size / _TOKENS_PER_COPY tokens: then from a transposed copy
_TOKENS_PER_COPY = 8
# per direction, 1 where it runs from each sequence's end, by (reversed call,
# directions); read-only, made once (a slice per call was ~0.3 us of it)
_FLAGS = {}
for _reverse in (False, True):
    for _dirs in (1, 2):
        _FLAGS[_reverse, _dirs] = np.array([1, 0] if _reverse else [0, 1],
                                           dtype=np.intc)[:_dirs]
        _FLAGS[_reverse, _dirs].flags.writeable = False


@functools.lru_cache(maxsize=8)
def _no_state(directions, dtype):
    """A (D, 0, 0) array for the kernels' cell-state slots of a cell without
    one: nothing is read or written through it, so one serves every call."""
    return np.empty((directions, 0, 0), dtype)


class BatchPlan:
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
    plan = BatchPlan(None, steps, batch, directions, threads)
    for arr in (plan.perm, plan.lengths, plan.n_active, plan.bounds, plan.block_offsets):
        arr.flags.writeable = False
    return plan


def _plan(lengths, steps, batch, directions, single_block=False):
    """The plan of a call: one block of all rows for the unit split, else one
    per thread (and direction)."""
    threads = 1 if single_block else get_num_threads()
    if lengths is None:
        return _full_length_plan(steps, batch, directions, threads)
    return BatchPlan(lengths, steps, batch, directions, threads)


class LayerTrace:
    """What one layer's training forward keeps for its backward."""

    __slots__ = ("w_ih", "w_hh", "peep", "x", "ids", "gates", "h_prev", "c_prev", "mask",
                 "__weakref__")

    def __init__(self, w_ih, w_hh, peep, x, ids, gates, h_prev, c_prev, mask):
        self.w_ih, self.w_hh, self.peep, self.x, self.ids = w_ih, w_hh, peep, x, ids
        self.gates, self.h_prev, self.c_prev, self.mask = gates, h_prev, c_prev, mask


def thread_splits_text():
    """The thread splits the CPU plan's caches set, as one line of text
    (show_config, ``python -m fastrnn info``)."""
    def size(n):
        return "?" if n is None else f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"
    lo, hi = _k.split_step_bounds()
    return (f"fewer than 4 rows per thread split the hidden units across the threads "
            f"once one direction's W_hh exceeds {size(_UNIT_MIN_BYTES or 0)} "
            f"(up to 8 once it exceeds {size(_UNIT_SPLIT_BYTES)}); a "
            f"one-row float32 step splits them from {size(lo)} to {size(hi)} of weights and "
            f"runs as a one-step layer call beyond {size(_CELL_SPLIT_BYTES)}")


def blas_in_kernel_threads(module, steps):
    """Whether a call of ``steps`` steps runs BLAS inside fastrnn's threads
    (the caller then holds scipy's BLAS to one thread around it): float32
    calls of _PACK_MIN_STEPS steps or more multiply on packed panels only."""
    return not (module.dtype == np.float32 and steps >= _PACK_MIN_STEPS
                and _k.panel_kernel() != "blas")


def cell_variant(module, peep):
    """The kernels' ``variant`` argument of a layer: None for the default cell,
    else (clip (0: none), input_forget, peep (D, 3H) or None)."""
    if not module._kernel_variant:
        return None
    return (module.clip or 0.0, bool(getattr(module, "input_forget", False)), peep)


def forward(module, x, state, lengths, reverse, training):
    """Every layer of ``module`` over x (T, B, I) floats or (T, B) token ids.

    state: a tuple of (L*D, B, H) arrays or None (zeros); reverse: run each
    direction the other way (a Bidirectional's reverse copy). Returns (y (T,
    B, D*H), the final state tuple, the training trace or None).
    """
    steps, batch = x.shape[:2]
    D, H, L = module.num_directions, module.hidden_size, module.num_layers
    threads = get_num_threads()
    if steps == 1 and not training and streams(module, batch, threads):
        y, state = stream_step(module, x, state)
        return y, state, None
    # small batches split the hidden units across threads; the packed
    # training storage is then one block of all rows
    # (every layer's W_hh block has the same shape, (D, G, H))
    units = _split_units(batch, D, threads, module._w_hh[0].nbytes // D)
    plan = _plan(lengths, steps, batch, D, single_block=units)
    # y at a cache line where several threads write it (a call on one
    # thread saves the ~1 us that costs)
    new_output = _output if units or _task_threads(plan, D, threads) > 1 else np.empty
    flags = direction_flags(module, reverse)
    with_c = carries_cell_state(module._kind)
    h_n = np.empty((L * D, batch, H), module.dtype)
    c_n = np.empty((L * D, batch, H), module.dtype) if with_c else None
    unused = _no_state(D, module.dtype)
    traces = []
    inp = x
    tokens = x.dtype.kind in "iu"           # (T, B) token ids for the first layer
    for layer in range(L):
        ids = inp if tokens and layer == 0 else None
        rows = slice(layer * D, (layer + 1) * D)
        if state is None:
            h0 = np.zeros((D, batch, H), module.dtype)
            c0 = h0
        else:
            h0 = state[0][rows]
            c0 = state[1][rows] if with_c else unused
        mask = None
        if training and layer > 0 and module.dropout > 0:
            mask = dropout_mask(module._dropout_rng, inp.shape, module.dropout, module.dtype)
            inp = inp * mask
        y = new_output((steps, batch, D * H), module.dtype)   # the kernels zero the padding
        keep = None              # training: (inputs, activations, h_{t-1}, c_{t-1}, tokens)
        if training:
            N, I = plan.total, module._w_ih[layer].shape[2]
            # every array this layer's backward reads, in one pooled buffer
            pool = buffers(module)
            buf, (keep_x, gates, h_prev, c_prev, w_ih, w_hh) = pool.take_parts(
                ((D, N, I) if ids is None else None, (D, N, gate_stride(module._kind, H)),
                 (D, N, H), (D, N, H) if with_c else None, module._w_ih[layer].shape,
                 module._w_hh[layer].shape), module.dtype)
            keep = (keep_x, gates, h_prev, c_prev if with_c else unused,
                    np.empty((D, N), np.intp) if ids is not None else None)
            # the weights this forward runs with: backward uses them even if
            # an optimizer or the caller changes the layer's in between (the
            # unit split's threads copy their rows as they pack them)
            if not units:
                np.copyto(w_ih, module._w_ih[layer])
                np.copyto(w_hh, module._w_hh[layer])
            trace = LayerTrace(w_ih=w_ih, w_hh=w_hh,
                                peep=module._peep[layer].copy() if module._peep else None,
                                x=keep_x, ids=keep[4], gates=gates, h_prev=h_prev,
                                c_prev=c_prev, mask=mask)
            pool.give_back_when_gone(trace, buf)
            traces.append(trace)
        if ids is not None:
            # token k's projection is column k of W_ih: the kernels copy rows of
            # W_ihᵀ, from a transposed copy when many tokens amortise it, else
            # straight from W_ih (a strided read per token; no copy of V x G
            # per call, which would dominate a generation step)
            inp = module._w_ih[layer].transpose(0, 2, 1)
            if steps * batch * _TOKENS_PER_COPY >= inp.shape[1]:
                inp = np.ascontiguousarray(inp)
        if units:
            weights, rows_plan, step_chunk, options = _unit_call_args(
                module, layer, plan, flags, steps, batch, threads, training)
            _k.forward_layer_units(
                module._kind, inp, weights, rows_plan,
                (h0[0], c0[0], y, h_n[rows][0], c_n[rows][0] if with_c else unused[0]),
                step_chunk, threads, steps >= _PACK_MIN_STEPS,
                keep=None if keep is None else tuple(None if a is None else a[0]
                                                     for a in keep),
                ids=ids, weights_into=None if keep is None else (w_ih[0], w_hh[0]),
                **options)
        else:
            weights, tasks_plan, _, step_chunk, task_threads, variant, pre, panels = \
                _task_call_args(module, layer, plan, flags, steps, threads, training)
            _k.forward_layer(
                module._kind, inp, weights, tasks_plan,
                (h0, c0, y, h_n[rows], c_n[rows] if with_c else unused), step_chunk,
                task_threads, keep=keep, ids=ids, variant=variant, prepacked=pre, panels=panels)
        inp = y
    state = (h_n, c_n) if with_c else (h_n,)
    return inp, state, ((plan, flags, traces, units) if training else None)


def _step_chunk(module, layer, steps, rows_per_task):
    """Steps per chunk of a layer's call whose tasks (or team) take
    ``rows_per_task`` rows: their packed inputs and gates about
    _STEP_CHUNK_ELEMENTS."""
    width = max(module._gates * module.hidden_size, module._w_ih[layer].shape[2])
    return max(1, min(steps, _STEP_CHUNK_ELEMENTS // (rows_per_task * width)))


def _unit_call_args(module, layer, plan, flags, steps, batch, threads, training):
    """(weights, plan, step_chunk, options) of a unit-split forward call of
    layer ``layer`` (direction 0, reverse when flags[0]) with the batch plan
    ``plan``: the arguments of forward_layer_units (options: variant,
    prepacked, shares) and of a UnitCall that do not depend on the call's
    arrays."""
    b_ih, b_hh = module._biases(layer)
    pre = (prepacked(module, layer)
           if not training and _reduced_pays(module, layer, batch, threads) else None)
    variant = cell_variant(module, module._peep[layer] if module._peep else None)
    return ((module._w_ih[layer][0], module._w_hh[layer][0], b_ih, b_hh),
            (bool(flags[0]), plan.lengths, plan.perm, plan.n_active),
            _step_chunk(module, layer, steps, batch),
            {"variant": _first_direction(variant), "prepacked": pre,
             "shares": None if training or pre is not None
             else unit_shares(module, layer, threads)})


def bound_call(module, x, hx=None):
    """``module(x, hx)`` without lengths, through UnitCalls or TaskCalls
    bound once per (T, B, layout, thread count, kernel build): (y, state as
    the caller sees it), or None, and the general path runs the call (and
    names what is wrong). For float32 x (T, B, I), or (B, T, I) batch_first,
    C-contiguous; hx None or exactly the layer's state arrays ((L*D, B, H)
    float32 C-contiguous; a tuple of two for the LSTM); float32 products on
    panels (T >= _PACK_MIN_STEPS), the layers' units split across the
    threads (UnitCall: small batches, one direction) or their blocks of rows
    and directions run as tasks (TaskCall); a one-step call (T = 1) goes to
    bound_step. The general path checks and converts every argument and
    works out the call's plan at each call (`python -m bench.call_cost`
    times both)."""
    if x.ndim in (2, 3) and x.shape[1 if module.batch_first else 0] == 1:
        return bound_step(module, x, hx)
    flags = x.flags
    if (x.dtype != module.dtype or x.ndim != 3 or not flags.c_contiguous
            or not flags.aligned):
        return None
    threads = get_num_threads()
    first = module.batch_first
    key = (x.shape, first, threads, module.clip, getattr(module, "input_forget", False))
    entry = _bound_entry(module, key,
                         lambda: _bind_layers(module, x.shape, first, threads) or False)
    if entry is False:
        return None
    calls, zeros, units = entry
    steps, batch = x.shape[1::-1] if first else x.shape[:2]
    D, H = module.num_directions, module.hidden_size
    with_c = carries_cell_state(module._kind)
    states = _bound_states(module, hx, len(calls) * D, batch)
    if states is None:
        return None
    h0, c0 = states
    h_n = np.empty((len(calls) * D, batch, H), module.dtype)
    c_n = np.empty((len(calls) * D, batch, H), module.dtype) if with_c else h_n
    inp = x
    for layer, call in enumerate(calls):
        # (B, H) states per layer for a UnitCall, (D, B, H) for a TaskCall
        rows = layer if units else slice(layer * D, (layer + 1) * D)
        y = _output((batch, steps, D * H) if first else (steps, batch, D * H), module.dtype)
        if h0 is None:
            call.run(inp, zeros, zeros, y, h_n[rows], c_n[rows])
        else:
            call.run(inp, h0[rows], c0[rows], y, h_n[rows], c_n[rows])
        inp = y
    return inp, ((h_n, c_n) if with_c else h_n)


def _bound_entry(module, key, bind):
    """The entry of ``module``'s bound calls for input signature ``key``:
    bind()'s result, made once per kernel build (a module keeps at most
    _BOUND_SIGNATURES: past that it forgets them all)."""
    bound = module.__dict__.get("_bound")
    if bound is None or bound[0] is not _k:
        bound = module._bound = (_k, {})
    entry = bound[1].get(key)
    if entry is None:
        if len(bound[1]) >= _BOUND_SIGNATURES:
            bound[1].clear()
        entry = bound[1][key] = bind()
    return entry


def _bound_states(module, hx, rows, batch):
    """(h0, c0) of a bound call's hx: (None, None) for None; hx's arrays
    when they are exactly the module's state arrays ((rows, batch, H) of its
    dtype, C-contiguous, aligned; a tuple of two for the LSTM; c0 is h0 for
    a cell without c); else None (the general path converts or refuses it)."""
    if hx is None:
        return None, None
    if carries_cell_state(module._kind):
        if type(hx) is not tuple or len(hx) != 2:
            return None
        h0, c0 = hx
    else:
        h0 = c0 = hx
    H = module.hidden_size
    if not (_state_array(h0, rows, batch, H, module.dtype)
            and _state_array(c0, rows, batch, H, module.dtype)):
        return None
    return h0, c0


def _state_array(arr, layers, batch, hidden, dtype):
    """Whether ``arr`` is a state the bound call reads as it is: an ndarray
    (not a subclass) (layers, batch, hidden) of dtype, C-contiguous, aligned."""
    return (type(arr) is np.ndarray and arr.dtype == dtype
            and arr.shape == (layers, batch, hidden) and arr.flags.c_contiguous
            and arr.flags.aligned)


# input signatures a module keeps bound calls for (more: it forgets them all)
_BOUND_SIGNATURES = 8


def _bind_layers(module, shape, batch_first, threads):
    """(one bound call per layer, the zero state its calls read (read-only:
    (B, H) for a UnitCall, (D, B, H) for a TaskCall), whether the layers
    split their units) for bound_call of an input of ``shape``
    ((B, T, I) with batch_first), or None when its call is not all float32
    inference on panels: UnitCalls where the layers split their units
    across the threads (small batches, one direction), else TaskCalls
    (blocks of rows and directions)."""
    steps, batch, n_in = (shape[1], shape[0], shape[2]) if batch_first else shape
    D = module.num_directions
    if (module._path().__name__ != __name__ or module.dtype != np.float32
            or n_in != module.input_size or steps < 1 or batch < 1
            or blas_in_kernel_threads(module, steps) or steps * batch > MAX_ROWS):
        return None
    units = _split_units(batch, D, threads, module._w_hh[0].nbytes // D)
    plan = _plan(None, steps, batch, D, single_block=units)
    flags = direction_flags(module, False)
    calls = []
    for layer in range(module.num_layers):
        if units:
            weights, rows_plan, step_chunk, options = _unit_call_args(
                module, layer, plan, flags, steps, batch, threads, False)
            calls.append(_k.UnitCall(module._kind, weights, rows_plan, steps, step_chunk,
                                     threads, True, batch_first=batch_first, **options))
        else:
            calls.append(_k.TaskCall(module._kind, *_task_call_args(
                module, layer, plan, flags, steps, threads), batch_first=batch_first))
    zeros = np.zeros((batch, module.hidden_size) if units else (D, batch, module.hidden_size),
                     module.dtype)
    zeros.flags.writeable = False
    return calls, zeros, units


def _task_call_args(module, layer, plan, flags, steps, threads, training=False):
    """(weights, plan, steps, step_chunk, threads, variant, prepacked, panels)
    of a call of layer ``layer`` on the batch split (the batch plan's blocks
    of rows, every direction; the packed storage's block offsets in
    training): the arguments of forward_layer, and of a TaskCall (float32
    inference), that do not depend on the call's arrays."""
    D = module.num_directions
    variant = cell_variant(module, module._peep[layer] if module._peep else None)
    pre = None
    if not training and _reduced_pays(module, layer, plan.rows_max, threads):
        pre = tuple(prepacked(module, layer, d) for d in range(D))
        pre = None if None in pre else pre
    panels = None if training or pre is not None else batch_panels(module, layer)
    return ((module._w_ih[layer], module._w_hh[layer]) + tuple(module._biases(layer)),
            (flags, plan.lengths, plan.perm, plan.n_active, plan.bounds,
             plan.block_offsets if training else None),
            steps, _step_chunk(module, layer, steps, plan.rows_max),
            _task_threads(plan, D, threads), variant, pre, panels)


def _output(shape, dtype):
    """np.empty(shape, dtype) starting at a cache line, for a layer's output
    y: the unit split's threads each write their units' columns of every
    step's rows, and with y at a line (and rows of whole lines) no line is
    written by two threads (`python -m bench.call_cost`, LSTM H=64 B=1
    T=100, AMD EPYC Zen 4: with y 16, 32 or 48 bytes past a line a call
    took 1.15, 1.02, 1.03 times as long, one run)."""
    return aligned_empty(math.prod(shape), dtype).reshape(shape)


def _task_threads(plan, directions, threads):
    """Threads for a batch-split call: at most one per task (direction and
    block of rows); a team larger than that only starts threads that wait."""
    return min(threads, directions * (len(plan.bounds) - 1))


def _first_direction(variant):
    """A variant for the unit split (one direction): peepholes (1, 3H)."""
    if variant is None or variant[2] is None:
        return variant
    return variant[:2] + (variant[2][:1],)


def streams(module, batch, threads):
    """Whether a one-step call runs on the calling thread, as a cell does:
    when the team would split the hidden units (few rows) or there is one
    thread, and no layer's weights exceed what one core streams well. (A
    variant cell -- clip, peepholes, coupled gates -- runs as a layer call.)"""
    if module._kernel_variant:
        return False
    if not (threads == 1 or _split_units(batch, module.num_directions, threads)):
        return False
    return _streams_well(module)


def _streams_well(module):
    """Whether every layer's weights of one direction are few enough for one
    core to stream them every step (at most _CELL_SPLIT_BYTES, the L3); else
    a step splits its units across the threads, each streaming its share."""
    largest = module.__dict__.get("_direction_bytes")
    if largest is None:
        # a layer's blocks are (D, G, ·): one direction's bytes; worked out once
        # (a cell asks at every step; the weights' shapes never change)
        largest = module._direction_bytes = max(
            (w_ih.nbytes + w_hh.nbytes) // len(w_ih)
            for w_ih, w_hh in zip(module._w_ih, module._w_hh))
    return largest <= _CELL_SPLIT_BYTES


def step_kernels(module):
    """One bound step kernel per (layer, direction), made once per kernel build."""
    kernels = module.__dict__.get("_kernels")
    if kernels is None or kernels[0] is not _k:
        bound = []
        fmt, reduced = getattr(module, "_quantized", (None, {}))
        for layer in range(module.num_layers):
            b_ih, b_hh = module._biases(layer)
            row = []
            for d in range(module.num_directions):
                codes = None
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                if fmt in ("float16", "bfloat16") and module.dtype == np.float32:
                    # a quantized layer's one-row steps read its 16-bit weights
                    codes = (fmt, reduced["weight_ih" + sfx][0].view(np.uint16),
                             reduced["weight_hh" + sfx][0].view(np.uint16))
                row.append(_k.CellKernel(module._kind, module._w_ih[layer][d],
                                         module._w_hh[layer][d], b_ih[d], b_hh[d], codes))
            bound.append(tuple(row))
        kernels = module._kernels = (_k, tuple(bound))
    return kernels[1]


def _reduced_pays(module, layer, batch, threads):
    """Whether a layer call of a quantized module reads its reduced weights
    (prepacked), ``batch`` rows a thread's product at most (the unit split's
    batch, the batch split's largest block). On dot products (int8 with
    AVX-512 VNNI or AVX2's vpmaddubsw, bfloat16 with AVX512-BF16: 4x, 2x and
    2x the multiply-adds of an FMA per instruction) always, on either split:
    fewer bytes and fewer instructions (bench.quantize_speed, Zen 4, int8 /
    bfloat16 against float32: LSTM H=64 B=1 0.67-0.75, H=256 B=4 0.46 /
    0.49, H=1024 B=16 0.29 / 0.52, H=256 B=64 0.33 / 0.55), and every row's
    outputs are the same whatever the batch (each row's activations are
    rounded alone). Widened formats cost an
    instruction per weight per row: only for at most _REDUCED_ROWS rows, where
    a step streams the weights once, and when a thread's share of one
    direction's float32 W_ih and W_hh exceeds half its L2, where the bytes
    bound the step (LSTM H=64 B=1 1.21x float32's time, LSTM H=1024 B=16
    1.00-1.04x)."""
    fmt = module._inference_only
    if fmt is None or fmt == "float32":
        return False
    if ((fmt == "int8" and _k.int8_dot_products())
            or (fmt == "bfloat16" and _k.bf16_dot_products())):
        return True
    if batch > _REDUCED_ROWS:
        return False
    share = (module._w_ih[layer][0].nbytes + module._w_hh[layer][0].nbytes) / max(threads, 1)
    return _UNIT_SPLIT_BYTES is None or share > _UNIT_SPLIT_BYTES / 2


# rows up to which the reduced weights' products pay (see _reduced_pays)
_REDUCED_ROWS = 2


@functools.lru_cache(maxsize=None)
def half_lanes(variant):
    """The conversions that widen half weights in one- and two-row products
    under panel variant ``variant``: under avx512, 8 or 16 lanes, whichever
    this CPU runs faster (measured once: a one-row product of 256 x 1024 half
    weights, L2-resident, three alternations of each; Zen 4, whose 512-bit
    conversions run as two halves, took 0.49-0.58 of float32's time with 8
    lanes against 0.71-0.80 with 16), or FASTRNN_HALF_LANES; 8 elsewhere.
    Sets the kernels' choice and returns it."""
    if variant != "avx512":
        return 8
    forced = os.environ.get("FASTRNN_HALF_LANES", "").strip()
    if forced:
        if forced not in ("8", "16"):
            raise ValueError(f"FASTRNN_HALF_LANES must be 8 or 16, got {forced!r}")
        lanes = int(forced)
    else:
        rng = np.random.default_rng(0)
        panels, _ = _k.pack_weight_panels(
            rng.standard_normal((1024, 256)).astype(np.float16))
        a = rng.standard_normal((1, 256)).astype(np.float32)
        c = np.empty((1, 1024), np.float32)
        best = {}
        for _ in range(3):
            for n in (8, 16):
                # (the lanes given per call: the choice in force is not changed meanwhile)
                seconds = _k.panel_product_w(a, panels, _k.WEIGHT_TYPES["float16"], None, c,
                                             False, 30, half_lanes=n)
                best[n] = min(best.get(n, seconds), seconds)
        lanes = min(best, key=best.get)
    _k.set_half_lanes(lanes)
    return lanes


def prepacked(module, layer, direction=0):
    """The kernels' ``prepacked`` argument for direction ``direction`` of layer
    ``layer`` of a quantized float32 module, or None for any other module or
    when the float32 products run on BLAS (FASTRNN_PANEL=blas). W_hh's
    reduced weights, each gate block packed once into panels of their own
    weight type: the step's one-row products stream half or a quarter of
    float32's bytes. W_ih's widened float32 weights packed likewise: the
    input projection, many rows at once, is bound by FMAs, which widening
    would only add to. int8 and bfloat16 weights run on dot products where
    the CPU has them, W_ih's too (AVX-512 VNNI: 64 multiply-adds an
    instruction; AVX2: 32 in two, vpmaddubsw and vpmaddwd, the same bits;
    the rows of h_{t-1} and of the inputs quantized to 255 levels per row on
    the fly; AVX512-BF16: 32, those rows rounded to bfloat16), else they are
    widened like float16. Cached on the module per
    weight type (_cached)."""
    fmt, reduced = getattr(module, "_quantized", (None, {}))
    if fmt is None or module.dtype != np.float32 or _k.panel_kernel() == "blas":
        return None
    if fmt == "float16":
        half_lanes(_k.panel_kernel())
    # the dot products of the format, where the CPU has them
    dot = (_k.INT8_DOT if fmt == "int8" and _k.int8_dot_products() else
           _k.BF16_DOT if fmt == "bfloat16" and _k.bf16_dot_products() else None)
    G = module._gates
    suffix = f"_l{layer}" + ("_reverse" if direction else "")

    def reduced_panels(name, wt):
        codes, scale = reduced[name + suffix]
        codes = codes.view(np.uint16) if fmt == "bfloat16" else codes
        return _gate_panels(wt, codes, scale, G)

    def pack():
        if dot is not None:
            ih = reduced_panels("weight_ih", dot)
        else:
            ih = _gate_panels(_k.WEIGHT_TYPES["float32"], module._w_ih[layer][direction], None,
                              G)
        return ih, reduced_panels("weight_hh", _k.WEIGHT_TYPES[fmt] if dot is None else dot)
    return _cached(module, (layer, direction, dot), pack)


def unit_shares(module, layer, threads):
    """The kernels' ``shares`` argument for a unit-split call of layer
    ``layer`` (direction 0) of a module quantized to float32 on ``threads``
    threads, or None for any other module or when the products run on BLAS.
    Every thread's rows of W_ih and W_hh in the panels the threads of a
    team of that size would pack at each call (the same products, the same
    bits), packed once per module and team size: an ONNX Runtime session
    packs its weights once too."""
    if not _packs_float32(module):
        return None
    team = min(threads, _k.TEAM_MAX)
    return _cached(module, ("shares", layer, team), lambda: (team, _k.unit_shares(
        module._kind, module._w_ih[layer][0], module._w_hh[layer][0], team)))


def batch_panels(module, layer):
    """The kernels' ``panels`` argument for a batch-split call of layer
    ``layer`` of a module quantized to float32, or None (as unit_shares):
    every direction's W_hh and W_ih in the panels the call would pack (the
    same products, the same bits), packed once."""
    if not _packs_float32(module):
        return None
    return _cached(module, ("batch", layer), lambda: _k.batch_panels(
        module._kind, module._w_ih[layer], module._w_hh[layer]))


def _packs_float32(module):
    """Whether ``module`` is a float32 module quantized to float32 and the
    products run on panels (not BLAS): its weights are then packed once."""
    return (module._inference_only == "float32" and module.dtype == np.float32
            and _k.panel_kernel() != "blas")


def _cached(module, key, pack):
    """pack()'s result, cached on a quantized module under ``key`` (its
    weights never change: training, loading and writes to its parameters
    are refused; copies drop the cache and pack again)."""
    cache = module.__dict__.setdefault("_prepacked", {})
    if key not in cache:
        cache[key] = pack()
    return cache[key]


def _gate_panels(wt, w, scale, gates):
    """(wt, W (gates * H, K) with each gate block in whole panels (int8 dot
    products: quads), its scales padded alike or None, its column sums (int8
    dot products) or None), read-only."""
    H = w.shape[0] // gates
    blocks = []
    for q in range(gates):
        rows = slice(q * H, (q + 1) * H)
        if wt == _k.INT8_DOT:
            blocks.append(_k.pack_weight_quads(w[rows], scale[rows]))
        else:
            blocks.append(_k.pack_weight_panels(w[rows], None if scale is None else scale[rows])
                          + (None,))
    out = []
    for i in (0, 1, 2):             # (at cache lines: the products' vector loads)
        parts = None if blocks[0][i] is None else [b[i].reshape(-1) for b in blocks]
        out.append(None if parts is None else np.concatenate(
            parts, out=aligned_empty(sum(p.size for p in parts), parts[0].dtype)))
    for arr in out:
        if arr is not None:
            arr.flags.writeable = False
    return (wt, *out)


def buffers(module):
    """This layer's pool of training work arrays (see fastrnn._buffers):
    room for two training calls' (six arrays per layer, two more in backward)."""
    pool = module.__dict__.get("_pool")
    if pool is None:
        pool = module._pool = BufferPool(keep=2 * (6 * module.num_layers + 2))
    return pool


def stream_step(module, x, state):
    """One step (T = 1) of every layer and direction on the calling thread.
    x: (1, B, I) floats or (1, B) token ids; returns (y (1, B, D*H), state).
    A single step of the reverse direction is the same step."""
    batch = x.shape[1]
    D, H, L = module.num_directions, module.hidden_size, module.num_layers
    with_c = carries_cell_state(module._kind)
    h_n = np.empty((L * D, batch, H), module.dtype)
    c_n = np.empty((L * D, batch, H), module.dtype) if with_c else h_n
    y = np.empty((batch, D * H), module.dtype)
    inp = _readable(x[0], contiguous=False)
    ids = np.ascontiguousarray(inp, dtype=np.intp) if inp.dtype.kind in "iu" else None
    h0 = c0 = None
    if state is not None:
        h0 = _readable(state[0])
        c0 = _readable(state[1]) if with_c else h0
    # (one float32 row may split its units across the threads: CellKernel)
    if not _k.stream_layers(step_kernels(module), None if ids is not None else inp, ids,
                            h0, c0, h_n, c_n, y, get_num_threads()):
        raise RuntimeError("stream_step: the checked arrays were refused by the kernels")
    return y[None], ((h_n, c_n) if with_c else (h_n,))


def _readable(arr, contiguous=True):
    """arr as the one-step kernels read it (stream_layers): aligned to its
    items and, if asked, C-contiguous; a copy when it is not (the general
    path's checks leave an unaligned array as it is)."""
    if arr.flags.aligned and (arr.flags.c_contiguous or not contiguous):
        return arr
    return np.array(arr, order="C")


def bound_step(module, x, hx=None):
    """``module(x, hx)`` for one step (T = 1) without lengths, on the
    streaming path (stream_step's, as a cell's step) with what it needs
    worked out once per (input shape, team size, kernel build): (y, state
    as the caller sees it), or None, and the general path runs the call
    (and names what is wrong). For x (1, B, I) floats of the module's dtype
    ((B, 1, I) batch_first) or (1, B) intp token ids ((B, 1)), C-contiguous;
    hx None or exactly the module's state arrays ((L*D, B, H) of its dtype,
    C-contiguous; a tuple of two for the LSTM). A streaming loop (a
    generation, a model fed one step at a time) calls this at every step:
    the general path's checks, conversions and plan cost several times
    the step of a small layer (`python -m bench.call_cost`)."""
    tokens = x.dtype == np.intp
    if (x.ndim != (2 if tokens else 3) or not x.flags.c_contiguous
            or not (module._takes_tokens if tokens else x.dtype == module.dtype)):
        return None
    first = module.batch_first
    batch = x.shape[0] if first else x.shape[1]
    threads = get_num_threads()
    key = ("step", x.shape, tokens, first, threads, module.clip,
           getattr(module, "input_forget", False))
    if not _bound_entry(module, key, lambda: (module._path().__name__ == __name__ and batch >= 1
                                              and streams(module, batch, threads))):
        return None
    rows = module.num_layers * module.num_directions
    H = module.hidden_size
    with_c = carries_cell_state(module._kind)
    states = _bound_states(module, hx, rows, batch)
    if states is None:
        return None
    h0, c0 = states
    h_n = np.empty((rows, batch, H), module.dtype)
    c_n = np.empty((rows, batch, H), module.dtype) if with_c else h_n
    out = module.num_directions * H
    y = np.empty((batch, 1, out) if first else (1, batch, out), module.dtype)
    inp = x[:, 0] if first else x[0]
    if not _k.stream_layers(step_kernels(module), None if tokens else inp,
                            inp if tokens else None, h0, c0, h_n, c_n, y, threads):
        return None              # (a token id out of range: the general path says so)
    return y, ((h_n, c_n) if with_c else h_n)


def direction_flags(module, reverse):
    """Per direction, 1 where it walks from each sequence's end (read-only)."""
    return _FLAGS[bool(reverse), module.num_directions]


def backward(module, trace, dy, dstate):
    """dy: (T, B, D*H) (unit last stride); dstate: like state, entries may be None."""
    plan, flags, traces, units = trace
    D, H, L = module.num_directions, module.hidden_size, module.num_layers
    with_c = carries_cell_state(module._kind)
    lead = (L * D, plan.batch, H)
    dstate = (None, None) if dstate is None else tuple(dstate) + (None,)
    dh_n = dstate[0] if dstate[0] is not None else np.zeros(lead, module.dtype)
    dc_n = dstate[1] if dstate[1] is not None or not with_c else np.zeros(lead, module.dtype)
    dh0 = np.empty(lead, module.dtype)
    dc0 = np.empty(lead, module.dtype) if with_c else None
    unused = np.empty((D, 0, 0), module.dtype)
    threads = get_num_threads()
    for layer in range(L - 1, -1, -1):
        tr = traces[layer]
        rows = slice(layer * D, (layer + 1) * D)
        # the gate gradients and the weight gradients' workspace: one pooled buffer
        buf, (dgates, work) = buffers(module).take_parts(
            ((D, plan.total, grad_stride(module._kind, H)), _grads_work_shape(module, tr, plan)),
            module.dtype)
        c_prev = tr.c_prev if with_c else unused
        dc_rows, dc0_rows = (dc_n[rows], dc0[rows]) if with_c else (unused, unused)
        variant = cell_variant(module, tr.peep)
        if units:
            _k.backward_layer_units(
                module._kind, tr.w_hh[0],
                (bool(flags[0]), plan.lengths, plan.perm, plan.n_active),
                (tr.gates[0], tr.h_prev[0], c_prev[0]), dy,
                (dh_n[rows][0], dc_rows[0], dh0[rows][0], dc0_rows[0]), dgates[0], threads,
                variant=_first_direction(variant))
        else:
            _k.backward_layer(
                module._kind, tr.w_hh,
                (flags, plan.lengths, plan.perm, plan.n_active, plan.bounds,
                 plan.block_offsets),
                (tr.gates, tr.h_prev, c_prev), dy, (dh_n[rows], dc_rows, dh0[rows], dc0_rows),
                dgates, _task_threads(plan, D, threads), variant=variant)
        if tr.peep is not None:
            peephole_grads(module._gpeep[layer], dgates, tr.gates, tr.c_prev, H)
        dy = weight_and_input_grads(module, layer, tr, dgates, work, plan, flags)
        buffers(module).give_back(buf)
        if tr.mask is not None:
            dy *= tr.mask
    return dy, ((dh0, dc0) if with_c else (dh0,))


def peephole_grads(gpeep, dgates, gates, c_prev, H):
    """Add the peepholes' gradients over every stored step (packed rows) into
    gpeep (D, 3H): dp_i = Σ dG_i ⊙ c_{t-1}, dp_f = Σ dG_f ⊙ c_{t-1},
    dp_o = Σ dG_o ⊙ c_t, c_t = f ⊙ c_{t-1} + i ⊙ g from the stored gates."""
    i, f, g = gates[..., :H], gates[..., H:2 * H], gates[..., 2 * H:3 * H]
    c_t = f * c_prev + i * g
    gpeep[:, :H] += np.einsum("dnh,dnh->dh", dgates[..., :H], c_prev)
    gpeep[:, H:2 * H] += np.einsum("dnh,dnh->dh", dgates[..., H:2 * H], c_prev)
    gpeep[:, 2 * H:] += np.einsum("dnh,dnh->dh", dgates[..., 3 * H:4 * H], c_t)


def _grads_work_shape(module, tr, plan):
    """The shape of weight_and_input_grads' workspace for a layer's trace:
    float32, room for the operands of the weight gradients packed in panels
    (None: none)."""
    if module.dtype != np.float32:
        return None
    size = _k.tn_workspace(module._kind, module.num_directions, plan.total, tr.w_ih.shape[2],
                           module.hidden_size, tr.ids is not None)
    return (size,) if size else None


def weight_and_input_grads(module, layer, tr, dgates, work, plan, flags):
    """Add one layer's weight gradients into grads; return dL/d(its input).

    Each is one matrix product over every step (packed rows):
    dW_ih += dGxᵀ X, dW_hh += dGhᵀ H_prev, db_ih += Σ dGx, db_hh += Σ dGh,
    dX = dGx W_ih. work: an array of _grads_work_shape or None.
    """
    D, in_size = module.num_directions, tr.w_ih.shape[2]
    tokens = tr.ids is not None
    dx = np.empty((0 if tokens else plan.steps * plan.batch, in_size), module.dtype)
    no_bias = np.empty((D, 0), module.dtype)
    _k.layer_grads(module._kind, dgates,
                   (np.empty((D, 0, in_size), module.dtype) if tokens else tr.x, tr.gates,
                    tr.h_prev, tr.w_ih),
                   (module._gw_ih[layer], module._gw_hh[layer],
                    module._gb_ih[layer] if module.bias else no_bias,
                    module._gb_hh[layer] if module.bias else no_bias),
                   np.empty((D, 0), np.intp) if tokens else plan.packed_inverse(flags),
                   dx, get_num_threads(), keep_ids=tr.ids, tn_work=work)
    if tokens:
        return None                        # token ids have no gradient
    return dx.reshape(plan.steps, plan.batch, in_size)


def _split_units(batch, directions, threads, w_hh_bytes=None):
    """Whether to split hidden units (not the batch) across threads.

    With one direction and a batch too small to give every thread a few rows,
    splitting the batch leaves threads idle (and each would stream all of W_hh
    every step); splitting the units gives each thread its share of the
    weights, at the cost of a barrier per step. The same holds for up to 8
    rows per thread when one direction's W_hh (w_hh_bytes) exceeds
    _UNIT_SPLIT_BYTES, the L2 of one core: each step is then bound by
    streaming the weights, and each thread streams only its share. A W_hh of
    at most _UNIT_MIN_BYTES (half a core's L1d) never splits: one thread
    reads all of it from its L1 about as fast as two threads and their
    meeting at every step (`python -m bench.thread_split` prints both;
    README), and a training step is faster; most of the L1d is too much
    (RNN H=88, 30 KiB: one thread 1.17x the unit split's time on Zen 4).
    w_hh_bytes None: the caller's size does not matter.
    """
    if threads < 2 or directions != 1:
        return False
    if w_hh_bytes is not None and _UNIT_MIN_BYTES and w_hh_bytes <= _UNIT_MIN_BYTES:
        return False
    if batch < 4 * threads:
        return True
    return (_UNIT_SPLIT_BYTES is not None and w_hh_bytes is not None
            and w_hh_bytes > _UNIT_SPLIT_BYTES and batch <= 8 * threads)


def dropout_mask(rng, shape, p, dtype):
    """Inverted dropout: 0 with probability p, else 1 / (1 - p)."""
    keep = rng.random(shape) >= p
    return keep.astype(dtype) / dtype(1.0 - p)


# -- cells: one step of a one-layer, one-direction layer -------------------------------
def cell_stream_kernel(module):
    """The bound step kernel of a cell's layer when its steps take the
    streaming path whatever the batch (weights of at most _CELL_SPLIT_BYTES),
    else None. Its ``call`` runs a cell call in the common case."""
    return step_kernels(module)[0][0] if _streams_well(module) else None


def cell_step(module, x, state):
    """One step of ``module`` (one layer, one direction) for x (1, B, I): the
    streaming path on this thread, or, for weights above _CELL_SPLIT_BYTES
    and a batch the unit split takes, every thread streaming its share.
    state: a tuple of (B, H) arrays (h; h and c for the LSTM). Returns the new
    state as such a tuple."""
    batch = x.shape[1]
    if not _streams_well(module) and _split_units(batch, 1, get_num_threads()):
        # large weights: every thread streams its share (see _split_units)
        with serial_blas():
            _, out, _ = forward(module, x, tuple(s[None] for s in state), None, False, False)
        return tuple(s[0] for s in out)
    h = np.empty((batch, module.hidden_size), module.dtype)
    c = np.empty_like(h) if len(state) == 2 else h
    # the streaming path: one step on this thread, no batch plan or thread team
    if not _k.stream_layers(step_kernels(module), _readable(x[0], contiguous=False), None,
                            _readable(state[0]), _readable(state[-1]), h, c, None,
                            get_num_threads()):
        raise RuntimeError("cell_step: the checked arrays were refused by the kernels")
    return (h, c) if len(state) == 2 else (h,)
