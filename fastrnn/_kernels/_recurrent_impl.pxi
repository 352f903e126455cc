# The recurrent kernels, included by _recurrent.pyx (baseline x86-64) and
# _recurrent_avx2.pyx (x86-64-v3); fastrnn._kernels picks one when it loads.
#
# One call runs one layer in one or two directions over a whole batch, the GIL
# released. Its sizes and pointers are worked out once, before the threads
# start, in one LayerCall (_layout.pxd). Two ways to share the call among the
# OpenMP threads:
#  - batch split (_batch_split.pxi: forward_layer, backward_layer): tasks of
#    (direction, block of batch rows), each independent, no barrier;
#  - unit split (_unit_split.pxi: forward_layer_units, backward_layer_units),
#    for one direction and a small batch: each thread owns the hidden units
#    [u0, u1) of every gate and the threads meet at a barrier per step.
# The weight and input gradients are one product each over all steps
# (_weight_grads.pxi: layer_grads); the streaming step of a cell or a
# one-step layer call runs on the calling thread (_stream.pxi: CellKernel).
# What a cell computes is in _cells.pxd, the only file that names cells; the
# products are in _products.pxd, on weights packed in panels (_panels.pxd,
# float32, where the CPU has AVX2/FMA) or on scipy's BLAS (single-threaded
# inside fastrnn's threads).
#
# Rows are sorted by length (longest first) by the caller, so the rows still
# active at step s are a prefix of the batch and the cost follows sum(lengths).
# The reverse direction reads row b's step s at time lengths[b] - 1 - s.
# Training storage is "packed": per direction, block after block, and within a
# block step after step, the active rows of that step (sum(lengths) rows).
#
# Weights use PyTorch's layout: gates stacked along rows, RNN [h], GRU [r; z; n],
# LSTM [i; f; g; o]. Nothing here validates: fastrnn._engine and the modules
# check every shape and layout first (fastrnn._checks).

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.string cimport memcpy, memset
from cpython.buffer cimport (PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_STRIDES, PyBUF_WRITABLE,
                             PyBuffer_Release)
from cpython.exc cimport PyErr_Clear

import threading

import numpy as np

from fastrnn._threads import get_num_threads

from fastrnn._blas cimport gemm
from fastrnn._openmp cimport (BARRIER_SLOTS, fastrnn_barrier, fastrnn_spin_barrier, now_ns,
                              omp_get_num_threads, omp_get_thread_num, spin_init, spin_wait,
                              spin_wait_timed, team_count, team_report, team_reset,
                              team_size, FASTRNN_TRACE, TRACE_POINTS, TRACE_THREADS,
                              trace_clear, trace_clock, trace_count, trace_mark,
                              trace_stamps)
from libc.math cimport INFINITY
from fastrnn._kernels._activations cimport sigmoid, tanh_
from fastrnn._kernels._cells cimport (GRU_RESET_BEFORE, LSTM, RNN_TANH, Plain, Product, Variant,
                                     _gate_pass,
                                     backward_phases, backward_product,
                                     backward_written, cell_backward, cell_forward,
                                     combine_biases, forward_phases, forward_product,
                                     gate_blocks, gates, grad_blocks, has_cell_state,
                                     lstm_rows_scalar, make_variant, plain_variant,
                                     recurrent_grad_block, shared_grad_rows,
                                     reset_input, uses_reset_rows)
from fastrnn._kernels._layout cimport (BackSpace, Dims, Ends, Keep, LayerCall, Panels,
                                      Prepacked, Rows, Source, TaskSpace, UnitBackSpace, UnitShared, UnitSpace,
                                      Weights, back_space, grad_panels, make_dims,
                                      panel_gate_blocks, recurrent_panels, task_space,
                                      unit_back_space, unit_shared, unit_space)
from fastrnn._kernels._panels cimport (PANEL, cache_l2, cache_l3, pack_panel_range,
                                      pack_panels, pack_rows, panel_gemm_rows, panel_gemm_tn,
                                      panel_gemm_tn_pair,
                                      panel_size, panels_on, dot_on, dot_work, rows_dot,
                                      rows_dot16, aligned_empty)
from fastrnn._kernels._products cimport copy_strided, gates_wt, step_w, unit_wt
# the choice of panel variant is one state, held by _panels (re-exported for callers)
from fastrnn._kernels._panels import (BF16_DOT, INT8_DOT, WEIGHT_TYPES,  # noqa
                                      _WEIGHT_DTYPES, bf16_dot_products, half_lanes,
                                      int8_dot_products, set_half_lanes,
                                      pack_weight_panels, panel_product_bd,
                                      pack_weight_quads, panel_product_q8, panel_product_w,
                                      panel_weights)
from fastrnn._kernels._panels import (cpu_has_avx2_fma, panel_kernel, panel_kernels,  # noqa
                                      panel_product, panel_product_rows, panel_product_tn,
                                      row_dot_product,
                                      row_dot_product16,
                                      set_panel_kernel)


# ---------------------------------------------------------------------------
# the sorted batch
# ---------------------------------------------------------------------------

cdef inline Py_ssize_t _active(const Py_ssize_t* n_active, Py_ssize_t s,
                               Py_ssize_t r0, Py_ssize_t nr) noexcept nogil:
    """Rows of the block [r0, r0 + nr) still running at step s (a prefix)."""
    cdef Py_ssize_t n = n_active[s] - r0
    if n < 0:
        return 0
    return n if n < nr else nr


cdef inline Py_ssize_t _time(bint reverse, const Py_ssize_t* lengths, Py_ssize_t row,
                             Py_ssize_t s) noexcept nogil:
    """The time index of step s of sorted row ``row``."""
    return lengths[row] - 1 - s if reverse else s


# ---------------------------------------------------------------------------
# scratch memory, the call struct, packing and biases
# ---------------------------------------------------------------------------

# Scratch memory kept per Python thread between calls: a fresh large array on
# every call comes back from the OS as zeroed pages (page faults are a
# measurable part of a small bidirectional call). Only workspace that dies
# with the call and whose size is bounded (chunked steps, one step's rows,
# packed weights) lives here; nothing a caller keeps does. Each slot's
# array is kept with the address of its data, which the kernels' entries
# take as it is (_scratch_data): a typed view of it made per call cost
# 0.15-0.2 us, and a call of a small layer makes up to five.
_scratch_store = threading.local()


cdef extern from "Python.h":
    # (cpython.buffer's declaration raises the refusal; here it is a result)
    int _get_buffer "PyObject_GetBuffer" (object, Py_buffer*, int)


cdef class _ScratchSlot:
    """A scratch array (1-D, contiguous) and its data's address."""
    cdef object arr
    cdef void* data
    cdef Py_ssize_t size


cdef _ScratchSlot _scratch_slot(object key, Py_ssize_t n, object arr):
    """key's slot of this thread, holding arr (its address read once)."""
    cdef _ScratchSlot slot = _ScratchSlot.__new__(_ScratchSlot)
    cdef Py_buffer view
    if _get_buffer(arr, &view, PyBUF_C_CONTIGUOUS) != 0:
        PyErr_Clear()
        raise ValueError(f"scratch {key!r}: a contiguous array, got {type(arr).__name__}")
    slot.arr, slot.data, slot.size = arr, view.buf, arr.shape[0]
    PyBuffer_Release(&view)
    _scratch_slots()[key] = slot
    return slot


cdef dict _scratch_slots():
    """This Python thread's scratch slots, (name, dtype) -> _ScratchSlot."""
    slots = getattr(_scratch_store, "slots", None)
    if slots is None:
        slots = _scratch_store.slots = {}
    return slots


cdef _ScratchSlot _scratch_of(object name, Py_ssize_t n, object dtype):
    """Slot (name, dtype) of this thread, at least n elements (a new array
    when not: _panels.aligned_empty, at a cache line)."""
    key = (name, dtype)
    cdef _ScratchSlot slot = _scratch_slots().get(key)
    if slot is None or slot.size < n:
        slot = _scratch_slot(key, n, aligned_empty(max(n, 1), dtype))
    return slot


def _scratch(name, Py_ssize_t n, dtype):
    """A 1-D array of at least n elements of dtype, reused by this thread,
    starting at a cache line (_panels.aligned_empty)."""
    return _scratch_of(name, n, dtype).arr


cdef void* _scratch_data(object name, Py_ssize_t n, object dtype) except NULL:
    """The data of _scratch(name, n, dtype)."""
    return _scratch_of(name, n, dtype).data


def scratch_arrays():
    """This thread's scratch arrays, {(name, dtype): array} (a new dict)."""
    return {key: (<_ScratchSlot> slot).arr for key, slot in _scratch_slots().items()}


def set_scratch_arrays(arrays):
    """Put arrays ({(name, dtype): 1-D contiguous array of that dtype}) in
    this thread's scratch slots (bench.call_cost places them on purpose)."""
    for key, arr in arrays.items():
        if not (isinstance(arr, np.ndarray) and arr.ndim == 1 and arr.dtype == key[1]):
            raise ValueError(f"scratch {key!r}: a 1-D array of {key[1]}, got {arr!r:.60}")
        _scratch_slot(key, arr.shape[0], arr)


def clear_scratch():
    """Drop this thread's scratch arrays (the next calls make new ones)."""
    _scratch_slots().clear()


cdef float* _data(float[::1] arr):
    """The first element of a float32 scratch array (kept alive by _scratch)."""
    return &arr[0]


cdef void _call_rows(LayerCall* call, int kind, Py_ssize_t I, Py_ssize_t H,
                     const Py_ssize_t[::1] lengths, const Py_ssize_t[::1] perm,
                     const Py_ssize_t[::1] n_active, Py_ssize_t T):
    """The call's sizes and sorted batch; no blocks, panels or storage yet."""
    memset(call, 0, sizeof(LayerCall))
    call.dims = make_dims(kind, I, H)
    call.var[0] = call.var[1] = plain_variant()
    call.rows.lengths = &lengths[0]
    call.rows.perm = &perm[0]
    call.rows.n_active = &n_active[0]
    call.rows.B = lengths.shape[0]
    call.rows.T = T
    call.rows_max = lengths.shape[0]
    call.n_blocks = 1


cdef void _call_blocks(LayerCall* call, const Py_ssize_t[::1] bounds,
                       const Py_ssize_t[::1] block_offsets):
    """The batch split's row blocks (block_offsets None in inference)."""
    cdef Py_ssize_t k
    call.bounds = &bounds[0]
    call.block_offsets = &block_offsets[0] if block_offsets is not None else NULL
    call.n_blocks = bounds.shape[0] - 1
    call.rows_max = 0
    for k in range(call.n_blocks):
        if bounds[k + 1] - bounds[k] > call.rows_max:
            call.rows_max = bounds[k + 1] - bounds[k]


cdef Source _call_source(const void* x, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t s2,
                         const Py_ssize_t* ids, Py_ssize_t i0, Py_ssize_t i1) noexcept:
    cdef Source src
    src.x = x
    src.s0, src.s1, src.s2 = s0, s1, s2
    src.ids = ids
    src.i0, src.i1 = i0, i1
    return src


cdef Weights _call_weights(const void* w_ih, const void* w_hh, const void* b_x,
                           const void* b_hn) noexcept:
    cdef Weights w
    w.w_ih, w.w_hh, w.b_x, w.b_hn = w_ih, w_hh, b_x, b_hn
    w.wp = w.wp_n = w.wp_ih = NULL
    w.q_ih = w.q_hh = NULL
    w.q16 = 0
    return w


cdef Ends _call_ends(const void* h0, const void* c0, void* h_n, void* c_n, void* y,
                     Py_ssize_t y0, Py_ssize_t y1) noexcept:
    cdef Ends e
    e.h0, e.c0, e.h_n, e.c_n, e.y = h0, c0, h_n, c_n, y
    e.y0, e.y1 = y0, y1
    return e


cdef Keep _no_keep() noexcept:
    cdef Keep k
    k.x = k.gates = k.h = k.c = NULL
    k.ids = NULL
    k.w_ih = k.w_hh = NULL
    return k


ctypedef struct BoundArrays:
    # a bound call's six arrays (UnitCall.run, TaskCall.run), each checked
    const void* x
    const void* h0
    const void* c0
    void* y
    void* h_n
    void* c_n
    Py_ssize_t xt, xb, yt, yb     # element strides of x and y per step and per row


cdef int _bound_arrays(str who, x, h0, c0, y, h_n, c_n, Py_ssize_t* shape_x,
                       int h_ndim, Py_ssize_t* shape_h, Py_ssize_t* shape_y,
                       bint batch_first, BoundArrays* out) except -1:
    """The data of a bound call's x, h0, c0 (in) and y, h_n, c_n (out, writable)
    when each is a C-contiguous native float32 array of exactly its shape
    (x and y (T, B, ·), or (B, T, ·) with batch_first; the states of h_ndim
    axes), and the strides of x and y per step and per row; else a
    ValueError naming ``who`` and the shapes, before anything is written."""
    out.x = _c_array(x, 3, shape_x, False, False)
    out.h0 = _c_array(h0, h_ndim, shape_h, False, False)
    out.c0 = _c_array(c0, h_ndim, shape_h, False, False)
    out.y = <void*> _c_array(y, 3, shape_y, False, True)
    out.h_n = <void*> _c_array(h_n, h_ndim, shape_h, False, True)
    out.c_n = <void*> _c_array(c_n, h_ndim, shape_h, False, True)
    if (out.x == NULL or out.h0 == NULL or out.c0 == NULL or out.y == NULL
            or out.h_n == NULL or out.c_n == NULL):
        state = tuple(shape_h[i] for i in range(h_ndim))
        raise ValueError(f"{who}: x, h0, c0, y, h_n, c_n must be C-contiguous float32 "
                         f"arrays of shapes {tuple(shape_x[i] for i in range(3))}, {state} x 2, "
                         f"{tuple(shape_y[i] for i in range(3))}, {state} x 2, the last "
                         f"three writable")
    # (T, B, width): a step is B rows on, a row width on; (B, T, width): the reverse
    out.xt = shape_x[2] if batch_first else shape_x[1] * shape_x[2]
    out.xb = shape_x[1] * shape_x[2] if batch_first else shape_x[2]
    out.yt = shape_y[2] if batch_first else shape_y[1] * shape_y[2]
    out.yb = shape_y[1] * shape_y[2] if batch_first else shape_y[2]
    return 0


cdef inline bint _ih_as_it_goes(Py_ssize_t rows, Py_ssize_t k) noexcept nogil:
    """Whether a projection that reads W_ih once packs its ``rows`` rows of k
    (a thread's or a direction's share) group by group as the product
    reaches them (panel_gemm_rows) rather than all first: when their panels
    exceed a quarter of L2. (A share L2 holds anyway packs 1.03-1.04x faster
    whole, its rows' reads streaming in one loop: bench.limits, "input
    projections".)"""
    return panel_size(rows, k) * <Py_ssize_t> sizeof(float) > cache_l2() // 4

cdef void _pack_split(const float* src, Py_ssize_t n, Py_ssize_t k, Py_ssize_t sn,
                      Py_ssize_t sk, float* dst, Py_ssize_t part,
                      Py_ssize_t parts) noexcept nogil:
    """Pack part ``part`` of ``parts`` of the panels of one matrix (see pack_panels)."""
    cdef Py_ssize_t panels = (n + PANEL - 1) // PANEL
    pack_panel_range(src, n, k, sn, sk, dst, panels * part // parts,
                     panels * (part + 1) // parts)


cdef void _pack_recurrent_part(const Dims* d, const float* w, bint for_backward,
                               const Panels* out, Py_ssize_t part,
                               Py_ssize_t parts) noexcept nogil:
    """Part ``part`` of ``parts`` of one direction's W_hh (G x H) packed into
    out (recurrent_panels' layout): the rows of its first gate blocks, and
    the rest apart (the reset-before GRU's n rows); their transposes for
    backward."""
    cdef Py_ssize_t H = d.H
    cdef Py_ssize_t first = panel_gate_blocks(d.kind) * H
    if for_backward:       # W_hh[:first]ᵀ (H x first), the rest's transpose
        _pack_split(w, H, first, 1, H, out.wp, part, parts)
        if out.wp_n != NULL:
            _pack_split(w + first * H, H, d.G - first, 1, H, out.wp_n, part, parts)
    else:
        _pack_split(w, first, H, H, 1, out.wp, part, parts)
        if out.wp_n != NULL:
            _pack_split(w + first * H, d.G - first, H, H, 1, out.wp_n, part, parts)


cdef float* _pack_recurrent(const Dims* d, const float* w_hh, Py_ssize_t D,
                            bint for_backward, int num_threads, bint pack=True,
                            float* dst=NULL) except NULL:
    """W_hh of D directions ((D, G, H) C-contiguous from w_hh) packed in
    panels for step_wt (forward) or its transpose for step_w (backward),
    recurrent_panels(d, H, for_backward) floats per direction, into dst or
    else this thread's "panels" scratch (returned), the panels shared out
    among the threads (or only the room for them, pack=False: each task
    then packs its own direction)."""
    cdef Py_ssize_t task
    cdef Py_ssize_t S = num_threads if num_threads > 0 else 1
    cdef Py_ssize_t size = recurrent_panels(d, d.H, for_backward, False, NULL, NULL)
    if dst == NULL:
        dst = <float*> _scratch_data("panels", D * size, np.float32)
    if pack:
        with nogil:
            for task in prange(D * S, num_threads=num_threads, schedule="static"):
                _pack_direction_part(d, w_hh + (task // S) * d.G * d.H, for_backward,
                                     dst + (task // S) * size, task % S, S)
    return dst


cdef void _pack_direction_part(const Dims* d, const float* w, bint for_backward, float* base,
                               Py_ssize_t part, Py_ssize_t parts) noexcept nogil:
    cdef Panels panels
    recurrent_panels(d, d.H, for_backward, False, base, &panels)
    _pack_recurrent_part(d, w, for_backward, &panels, part, parts)


cdef float* _pack_rows(const float* w, Py_ssize_t D, Py_ssize_t R, Py_ssize_t K,
                       int num_threads, bint pack=True, float* dst=NULL) except NULL:
    """Each direction's W ((D, R, K) C-contiguous from w) packed in panels,
    panel_size(R, K) floats per direction, into dst or else this thread's
    "panels_ih" scratch (returned), shared out among the threads (or only
    the room for them, pack=False)."""
    cdef Py_ssize_t task
    cdef Py_ssize_t S = num_threads if num_threads > 0 else 1
    cdef Py_ssize_t size = panel_size(R, K)
    if dst == NULL:
        dst = <float*> _scratch_data("panels_ih", D * size, np.float32)
    if pack:
        with nogil:
            for task in prange(D * S, num_threads=num_threads, schedule="static"):
                _pack_split(w + (task // S) * R * K, R, K, K, 1, dst + (task // S) * size,
                            task % S, S)
    return dst


cdef int _bias_scratch(LayerCall* call, const floating* b_ih, const floating* b_hh,
                       Py_ssize_t D) except -1:
    """Each direction's kernel biases, b_x (G) and b_hn (H): the bias added to
    the input projection and the one r multiplies (combine_biases) of b_ih,
    b_hh (D, G) C-contiguous (as every caller's typed [:, ::1] view requires),
    written to this thread's scratch and pointed to
    by call.w[d] (the call's other weights are set before). One flat scratch
    array, no views of it: the call's fixed cost."""
    cdef Py_ssize_t G = call.dims.G, H = call.dims.H, d
    cdef floating* buf = <floating*> _scratch_data(
        "bias", D * (G + H), np.float32 if floating is float else np.float64)
    for d in range(D):
        combine_biases(call.dims.kind, G, H, b_ih + d * G, b_hh + d * G, buf + d * (G + H),
                       buf + d * (G + H) + G)
        call.w[d].b_x = buf + d * (G + H)
        call.w[d].b_hn = buf + d * (G + H) + G
    return 0


cdef inline bint _is(const Py_ssize_t* shape, Py_ssize_t a, Py_ssize_t b,
                     Py_ssize_t c=-1) noexcept:
    """Whether an array's shape (its memoryview's) starts (a, b[, c]); -1
    matches any size."""
    return ((a < 0 or shape[0] == a) and (b < 0 or shape[1] == b)
            and (c < 0 or shape[2] == c))


cdef inline bint _is_d(const Py_ssize_t* shape, bint units, Py_ssize_t D, Py_ssize_t a,
                       Py_ssize_t b) noexcept:
    """_is(shape, a, b) for a unit-split call's array (one direction, no
    direction axis), else _is(shape, D, a, b)."""
    return _is(shape, a, b) if units else _is(shape, D, a, b)


def _keep_shapes(keep):
    """The shapes of a forward call's kept arrays (None for those not given),
    or None without them: _check_forward's keep."""
    return None if keep is None else tuple(None if a is None else memoryview(a).shape
                                           for a in keep)


cdef int _check_weights(const LayerCall* call, Py_ssize_t D, const Py_ssize_t* w_ih,
                        const Py_ssize_t* w_hh, const Py_ssize_t* b_ih,
                        const Py_ssize_t* b_hh, bint units) except -1:
    """That a forward call's W_ih (D, G, I), W_hh (D, G, H) and biases (D, G)
    (a unit-split call's: (G, I), (G, H), (1, G)) have the call's sizes."""
    cdef Py_ssize_t G = call.dims.G, I = call.dims.n_in, H = call.dims.H
    d_ = () if units else (D,)
    bad = None
    if not _is_d(w_ih, units, D, G, I):
        bad = ("weights[0] (W_ih)", d_ + (G, I))
    elif not _is_d(w_hh, units, D, G, H):
        bad = ("weights[1] (W_hh)", d_ + (G, H))
    elif not _is(b_ih, 1 if units else D, G) or not _is(b_hh, 1 if units else D, G):
        bad = ("weights[2], weights[3] (b_ih, b_hh)", (1 if units else D, G))
    if bad is not None:
        raise ValueError(f"{bad[0]} must have shape {bad[1]} for this call's sizes "
                         f"(I={I}, H={H}, G={G})")
    return 0


cdef int _call_variants(LayerCall* call, variant, const floating[:, ::1] peep,
                        Py_ssize_t D) except -1:
    """Each of the call's D directions' cell variant from ``variant`` =
    (clip, coupled, peep) or None (the default cell); peep: (D, 3H)
    peepholes [p_i; p_f; p_o] or None (passed apart, typed: it selects the
    precision), its shape checked (the gate passes read it unchecked)."""
    cdef Py_ssize_t dd
    if variant is None:
        return 0
    if peep is not None and not _is(&peep.shape[0], D, 3 * call.dims.H):
        raise ValueError(f"variant[2] (peepholes) must have shape ({D}, {3 * call.dims.H}), "
                         f"got ({peep.shape[0]}, {peep.shape[1]})")
    cdef floating clip = variant[0]
    cdef bint coupled = variant[1]
    for dd in range(D):
        call.var[dd] = make_variant(call.dims.kind, clip, coupled,
                                    &peep[dd, 0] if peep is not None else <const floating*> NULL,
                                    call.dims.H)
    return 0


cdef int _check_rows(const Py_ssize_t[::1] lengths, const Py_ssize_t[::1] perm,
                     const Py_ssize_t[::1] n_active, Py_ssize_t steps) except -1:
    """That a plan's rows index only the call's steps and rows (a BatchPlan's
    always do; UnitCall takes its steps apart from its plan): B = len(lengths)
    rows, perm a place among them for each, lengths non-increasing within
    [0, steps], n_active of at least every step, each a prefix of rows still
    running at it."""
    cdef Py_ssize_t B = lengths.shape[0], j, s, n
    cdef bint good = B >= 1 and steps >= 1 and perm.shape[0] == B and n_active.shape[0] >= steps
    for j in range(B if good else 0):
        if (not 0 <= perm[j] < B or not 0 <= lengths[j] <= steps
                or (j > 0 and lengths[j] > lengths[j - 1])):
            good = False
            break
    for s in range(steps if good else 0):
        n = n_active[s]
        if not 0 <= n <= B or (n > 0 and lengths[n - 1] <= s):
            good = False
            break
    if not good:
        raise ValueError(f"plan: (reverse, lengths, perm, n_active) of B >= 1 rows sorted "
                         f"longest first, each length at most the call's {steps} steps, "
                         f"perm in [0, B), n_active[s] <= rows running at step s")
    return 0


cdef int _check_blocks(const Py_ssize_t[::1] bounds, const Py_ssize_t[::1] block_offsets,
                       const Py_ssize_t[::1] lengths, bint training) except -1:
    """That the batch split's row blocks cut the sorted rows (bounds: 0 <
    ... < B, one more than the blocks) and, in training, block_offsets
    gives each block's first packed row (the lengths of the rows before
    it)."""
    cdef Py_ssize_t K = bounds.shape[0] - 1, B = lengths.shape[0], k, j, n = 0
    cdef bint good = K >= 1 and bounds[0] == 0 and bounds[K] == B
    for k in range(K if good else 0):
        if bounds[k + 1] <= bounds[k]:
            good = False
            break
    if good and training:
        good = block_offsets is not None and block_offsets.shape[0] == K
        for k in range(K if good else 0):
            if block_offsets[k] != n:
                good = False
                break
            for j in range(bounds[k], bounds[k + 1]):
                n += lengths[j]
    if not good:
        raise ValueError("plan: bounds (K + 1,) must rise from 0 to the batch's rows, and in "
                         "training block_offsets (K,) give each block's first packed row")
    return 0


cdef int _check_directions(str what, Py_ssize_t D, Py_ssize_t flags) except -1:
    """That a batch-split call (``what``) has one or two directions and
    plan[0] (reverse) one flag for each."""
    if not 1 <= D <= 2 or flags != D:
        raise ValueError(f"{what}: one or two directions, and plan[0] (reverse) one "
                         f"flag per direction; got {D} and {flags}")
    return 0


cdef int _check_forward(const LayerCall* call, Py_ssize_t D, const Py_ssize_t* x,
                        const Py_ssize_t[:, :] id_v, const Py_ssize_t* h0,
                        const Py_ssize_t* c0, const Py_ssize_t* y, const Py_ssize_t* h_n,
                        const Py_ssize_t* c_n, keep, bint units) except -1:
    """That the input and every end and kept array of a forward call
    (forward_layer: D directions; forward_layer_units with units: one, its
    arrays without the direction axis) has the shape its sizes and sorted
    rows give (their memoryviews' shapes; keep: _keep_shapes'), and every
    token id indexes a row of W_ihᵀ: the kernels index them unchecked (the
    weights: _check_weights; the peepholes: _call_variants). A ValueError
    naming the first that does not."""
    cdef Py_ssize_t T = call.rows.T, B = call.rows.B, I = call.dims.n_in, H = call.dims.H
    cdef Py_ssize_t G = call.dims.G, t, b, j, N = 0
    cdef bint tokens = id_v is not None, with_c = has_cell_state(call.dims.kind)
    cdef Py_ssize_t o = 0 if units else 1        # keep's first axis after the direction's
    d_ = () if units else (D,)
    bad = None
    if tokens and not (id_v.shape[0] == T and id_v.shape[1] == B):
        bad = ("ids", (T, B))
    elif tokens and not _is(x, 1 if units else D, -1, G):
        bad = ("x (W_ih transposed, for token ids)", (1 if units else D, "V", G))
    elif not tokens and not _is(x, T, B, I):
        bad = ("x", (T, B, I))
    elif not _is_d(h0, units, D, B, H):
        bad = ("ends[0] (h0)", d_ + (B, H))
    elif with_c and not _is_d(c0, units, D, B, H):
        bad = ("ends[1] (c0)", d_ + (B, H))
    elif not _is(y, T, B, H if units else D * H):
        bad = ("ends[2] (y)", (T, B, H if units else D * H))
    elif not _is_d(h_n, units, D, B, H):
        bad = ("ends[3] (h_n)", d_ + (B, H))
    elif with_c and not _is_d(c_n, units, D, B, H):
        bad = ("ends[4] (c_n)", d_ + (B, H))
    if bad is None and keep is not None:
        for j in range(B):
            N += call.rows.lengths[j]
        for name, shape, want, used in (
                ("keep[0] (inputs)", keep[0], (N, I), not tokens),
                ("keep[1] (gate activations)", keep[1], (N, call.dims.ldg), True),
                ("keep[2] (h_{t-1})", keep[2], (N, H), True),
                ("keep[3] (c_{t-1})", keep[3], (N, H), with_c),
                ("keep[4] (token ids)", keep[4], (N,), tokens)):
            if used and (shape is None or tuple(shape[o:o + len(want)]) != want
                         or (not units and shape[0] != D)):
                bad = (name, d_ + want)
                break
    if bad is not None:
        raise ValueError(f"{bad[0]} must have shape {bad[1]} for this call's sizes "
                         f"(T={T}, B={B}, I={I}, H={H}, G={G}"
                         + ("" if units else f", D={D}") + ")")
    if tokens:
        for t in range(T):
            for b in range(B):
                if not 0 <= id_v[t, b] < x[1]:
                    raise ValueError(f"ids: token ids must be in [0, {x[1]}), got "
                                     f"{id_v[t, b]} at ({t}, {b})")
    return 0


cdef int _check_backward(const LayerCall* call, Py_ssize_t D, const Py_ssize_t* w_hh,
                         const Py_ssize_t* dy, const Py_ssize_t* gates,
                         const Py_ssize_t* h_prev, const Py_ssize_t* c_prev,
                         const Py_ssize_t* dh_n, const Py_ssize_t* dc_n,
                         const Py_ssize_t* dh0, const Py_ssize_t* dc0,
                         const Py_ssize_t* dgates, bint units) except -1:
    """_check_forward for a backward call (backward_layer: D directions;
    backward_layer_units with units: one, its arrays without the direction
    axis): W_hh, dy, what forward kept (N = the lengths' sum rows), the ends'
    gradients and dgates against the call's sizes (the peepholes:
    _call_variants)."""
    cdef Py_ssize_t T = call.rows.T, B = call.rows.B, H = call.dims.H, G = call.dims.G
    cdef Py_ssize_t N = 0, j
    cdef bint with_c = has_cell_state(call.dims.kind)
    for j in range(B):
        N += call.rows.lengths[j]
    d_ = () if units else (D,)
    bad = None
    if not _is_d(w_hh, units, D, G, H):
        bad = ("w_hh", d_ + (G, H))
    elif not _is(dy, T, B, H if units else D * H):
        bad = ("dy", (T, B, H if units else D * H))
    elif not _is_d(gates, units, D, N, call.dims.ldg):
        bad = ("stored[0] (gate activations)", d_ + (N, call.dims.ldg))
    elif not _is_d(h_prev, units, D, N, H):
        bad = ("stored[1] (h_{t-1})", d_ + (N, H))
    elif with_c and not _is_d(c_prev, units, D, N, H):
        bad = ("stored[2] (c_{t-1})", d_ + (N, H))
    elif not _is_d(dgates, units, D, N, call.dims.ldd):
        bad = ("dgates", d_ + (N, call.dims.ldd))
    elif not _is_d(dh_n, units, D, B, H):
        bad = ("ends[0] (dh_n)", d_ + (B, H))
    elif with_c and not _is_d(dc_n, units, D, B, H):
        bad = ("ends[1] (dc_n)", d_ + (B, H))
    elif not _is_d(dh0, units, D, B, H):
        bad = ("ends[2] (dh0)", d_ + (B, H))
    elif with_c and not _is_d(dc0, units, D, B, H):
        bad = ("ends[3] (dc0)", d_ + (B, H))
    if bad is not None:
        raise ValueError(f"{bad[0]} must have shape {bad[1]} for this call's sizes "
                         f"(T={T}, B={B}, H={H}, G={G}, N={N}"
                         + ("" if units else f", D={D}") + ")")
    return 0


include "_batch_split.pxi"
include "_unit_split.pxi"
include "_weight_grads.pxi"
include "_stream.pxi"
include "_probes.pxi"
