# cython: language_level=3
"""What a kernel call works on, as structs, and every workspace's layout.

The structs carry one layer's sizes (Dims), the sorted batch (Rows), one
direction's weights (Weights), what the input projection reads (Source),
the states and outputs in the caller's row order (Ends) and the training
storage (Keep). Arrays are ``void*`` (structs cannot be fused): a kernel
casts them to its ``floating``.

Each workspace has ONE function that both slices it and returns its size:
called with a NULL ``out`` it only counts, so the size a caller allocates and
the offsets a kernel uses cannot drift apart. Sizes are in elements.
"""
from cython cimport floating

from fastrnn._kernels._cells cimport (Variant, gate_blocks, gates, grad_blocks,
                                     uses_reset_rows)
from fastrnn._kernels._panels cimport panel_size


ctypedef struct Dims:
    int kind
    Py_ssize_t n_in          # input size (vocabulary size for token ids); not I: complex.h
    Py_ssize_t H             # hidden units
    Py_ssize_t G             # gate rows of W_ih, W_hh: gates * H
    Py_ssize_t ldg           # columns of a stored activation row: gate_blocks * H
    Py_ssize_t ldd           # columns of a gate-gradient row: grad_blocks * H


cdef inline Dims make_dims(int kind, Py_ssize_t I, Py_ssize_t H) noexcept nogil:
    cdef Dims d
    d.kind = kind
    d.n_in = I
    d.H = H
    d.G = gates(kind) * H
    d.ldg = gate_blocks(kind) * H
    d.ldd = grad_blocks(kind) * H
    return d


ctypedef struct Rows:
    # the batch sorted by length, longest first (fastrnn._engine.BatchPlan)
    const Py_ssize_t* lengths     # (B,) sorted
    const Py_ssize_t* perm        # (B,) sorted row -> caller row
    const Py_ssize_t* n_active    # (T,) rows with length > s: a prefix
    Py_ssize_t B                  # rows of the batch
    Py_ssize_t T                  # steps of the call (outputs past a length are zeroed to T)


ctypedef struct Weights:
    # one direction
    const void* w_ih              # (G, I)
    const void* w_hh              # (G, H)
    const void* b_x               # (G,) b_ih + b_hh (see _cells.combine_biases)
    const void* b_hn              # (H,) the reset-after GRU's b_hn, else zeros
    const float* wp               # W_hh (W_hhᵀ in backward) in panels, or NULL: BLAS
    const float* wp_n             # the reset-before GRU's n rows in panels
    const float* wp_ih            # W_ih in panels, or NULL
    # a quantized module's 16-bit W_ih, W_hh (fastrnn.quantize), read by the
    # one-row step's row dot products; NULL, 0 otherwise
    const unsigned short* q_ih
    const unsigned short* q_hh
    int q16                       # 1: IEEE half, 2: bfloat16


ctypedef struct Prepacked:
    # W_ih and W_hh of one direction packed once per module (an inference-only,
    # quantized module: fastrnn._engine.prepacked), each gate block in whole
    # panels (_panels.pack_weight_panels) of its own weight type: gate q's
    # unit u at panel q * Hp / PANEL + u // PANEL. A unit-split thread's share
    # then starts at a whole panel (its units are split at multiples of PANEL).
    const void* ih                # NULL: none (token input, or the call packs its own)
    const void* hh                # NULL: none
    const float* ih_scale         # int8: per gate block, Hp scales (else NULL)
    const float* hh_scale
    const int* ih_sums            # int8 dot products: per gate block, Hp column sums
    const int* hh_sums
    int ih_wt                     # the panels' weight types (_panels.WEIGHT_TYPES)
    int hh_wt
    Py_ssize_t Hp                 # H rounded up to whole panels


ctypedef struct Source:
    # floats: x (T, B, I) with element strides (s0, s1, s2);
    # token ids: ids (T, B) with strides (i0, i1), and x is W_ihᵀ (V, G) with
    # strides (s1, s2) (a transposed copy, or a view of W_ih itself)
    const void* x
    Py_ssize_t s0, s1, s2
    const Py_ssize_t* ids
    Py_ssize_t i0, i1


ctypedef struct Ends:
    # (B, H) in the caller's row order; y: this direction's first column,
    # element strides (y0, y1) over (T, B), unit stride over H
    const void* h0
    const void* c0                # (the LSTM's; NULL otherwise)
    void* h_n
    void* c_n
    void* y
    Py_ssize_t y0, y1


ctypedef struct Keep:
    # training storage of one block, packed rows (NULL pointers in inference)
    void* x                       # (N, I) inputs (not for token ids)
    void* gates                   # (N, ldg) activations
    void* h                       # (N, H) h_{t-1}
    void* c                       # (N, H) c_{t-1} (the LSTM)
    Py_ssize_t* ids               # (N,) tokens (token input)
    void* w_ih                    # (G, I), (G, H): the weights this forward ran with,
    void* w_hh                    # copied for backward (the unit split; else NULL)


ctypedef struct LayerCall:
    # One kernel call, every size and pointer worked out once before the
    # threads start (they only read it: structs a thread fills for itself
    # live in the functions it calls, so nothing here needs privatising).
    # Per direction d < 2: its input, weights, ends and storage.
    Dims dims
    Rows rows
    Source src[2]                 # (token input: x is direction d's W_ihᵀ)
    Weights w[2]                  # (the panels are added per task or thread)
    Ends ends[2]                  # forward: h0, c0 in; h_n, c_n, y out. backward: dh_n,
                                  # dc_n in (h0, c0); dh0, dc0 out (h_n, c_n); dy in (y)
    Keep keep[2]                  # the storage's first row (each block adds its offset)
    void* dg[2]                   # backward: the gate gradients' first row
    int reverse[2]                # 1: the direction runs from each sequence's end
    Variant var[2]                # the cell's variant (clip, coupling, peepholes) per direction
    # the batch split's row blocks (one task per block and direction)
    const Py_ssize_t* bounds      # (n_blocks + 1,) sorted rows of each block
    const Py_ssize_t* block_offsets   # (n_blocks,) first packed row of each block
    Py_ssize_t n_blocks
    Py_ssize_t rows_max           # rows of the largest block (or B in the unit split)
    Py_ssize_t step_chunk         # steps per projection chunk
    Py_ssize_t cap                # packed rows of one chunk's workspace (0 in training)
    Py_ssize_t N                  # unit-split backward: packed rows
    # per task (batch split) or thread (unit split): its workspace and panels
    void* work
    Py_ssize_t work_per
    float* panels                 # W_hh (and in the unit split W_ih) packed, or NULL: BLAS
    Py_ssize_t panels_per
    const float* shares           # unit split: every thread's panels packed once per module
    int shares_team               # (for a team of this size; another size packs its own)
    float* panels_ih              # the batch split's W_ih, packed per direction
    Py_ssize_t panels_ih_per
    bint pack_in_task             # each task packs its direction's panels itself
    Prepacked pre[2]              # per direction: weights packed once per module, or NULLs
    unsigned char* qwork          # dot products: per thread (task), its rows prepared
    Py_ssize_t qwork_per          # (bytes; rows x 4 ceil(K / 4), then a float per row)
    void* shared                  # unit split: the team's exchange (unit_shared)


# ---------------------------------------------------------------------------
# workspaces: one function each slices it (out not NULL) and sizes it
# ---------------------------------------------------------------------------

ctypedef struct TaskSpace:
    # a forward task: the chunk's packed inputs and gates (inference only;
    # training uses its Keep), then the step's separate product and states
    void* xp                      # (cap, I)
    void* gx                      # (cap, ldg)
    void* gh                      # (rows, 3H)
    void* h                       # (rows, H)
    void* c                       # (rows, H)
    void* rh                      # (rows, H)


cdef inline Py_ssize_t task_space(floating* base, const Dims* d, Py_ssize_t rows,
                                  Py_ssize_t cap, TaskSpace* out) noexcept nogil:
    cdef Py_ssize_t xp = 0
    cdef Py_ssize_t gx = xp + cap * d.n_in
    cdef Py_ssize_t gh = gx + cap * d.ldg
    cdef Py_ssize_t h = gh + rows * 3 * d.H
    cdef Py_ssize_t c = h + rows * d.H
    cdef Py_ssize_t rh = c + rows * d.H
    cdef Py_ssize_t end = rh + rows * d.H
    if out != NULL:
        out.xp = base + xp
        out.gx = base + gx
        out.gh = base + gh
        out.h = base + h
        out.c = base + c
        out.rh = base + rh
    return end


ctypedef struct BackSpace:
    # a backward task: dL/dh, dL/dc and dL/d(r ⊙ h) of its rows
    void* dh                      # (rows, H)
    void* dc                      # (rows, H)
    void* drh                     # (rows, H)


cdef inline Py_ssize_t back_space(floating* base, const Dims* d, Py_ssize_t rows,
                                  BackSpace* out) noexcept nogil:
    if out != NULL:
        out.dh = base
        out.dc = base + rows * d.H
        out.drh = base + 2 * rows * d.H
    return 3 * rows * d.H


ctypedef struct UnitSpace:
    # one thread of the unit-split forward, sized for a team of one (any
    # share of the units fits): packed inputs and gates of a chunk, the
    # separate product, states, and the biases of its units
    void* xp                      # (cap, I)
    void* gx                      # (cap, 4H)
    void* gh                      # (B, 3H)
    void* h                       # (B, H)
    void* c                       # (B, H)
    void* rh                      # (B, H)
    void* bx                      # (4H,)
    void* bhn                     # (H,)


cdef inline Py_ssize_t unit_space(floating* base, const Dims* d, Py_ssize_t B,
                                  Py_ssize_t cap, UnitSpace* out) noexcept nogil:
    cdef Py_ssize_t H = d.H
    cdef Py_ssize_t gx = cap * d.n_in
    cdef Py_ssize_t gh = gx + cap * 4 * H
    cdef Py_ssize_t h = gh + B * 3 * H
    cdef Py_ssize_t c = h + B * H
    cdef Py_ssize_t rh = c + B * H
    cdef Py_ssize_t bx = rh + B * H
    cdef Py_ssize_t bhn = bx + 4 * H
    cdef Py_ssize_t end = bhn + H
    if out != NULL:
        out.xp = base
        out.gx = base + gx
        out.gh = base + gh
        out.h = base + h
        out.c = base + c
        out.rh = base + rh
        out.bx = base + bx
        out.bhn = base + bhn
    return end


ctypedef struct UnitShared:
    # the unit split's exchange, shared by the team: each thread writes its
    # units' columns, and after the step's barrier everyone reads all of them
    void* h_prev                  # (B, H) h_{t-1}
    void* h_next                  # (B, H) h_t
    void* rh                      # (B, H) r ⊙ h_{t-1}, for a product that reads it


cdef inline Py_ssize_t unit_shared(floating* base, const Dims* d, Py_ssize_t B,
                                   UnitShared* out) noexcept nogil:
    if out != NULL:
        out.h_prev = base
        out.h_next = base + B * d.H
        out.rh = base + 2 * B * d.H
    return 3 * B * d.H


ctypedef struct UnitBackSpace:
    # one thread of the unit-split BPTT, for U units: its dL/dh, dL/dc, a
    # contiguous copy of its units' activations, h_{t-1}, c_{t-1}, its gate
    # gradients and dL/d(r ⊙ h)
    void* dh                      # (B, U)
    void* dc                      # (B, U)
    void* a                       # (B, gate_blocks * U)
    void* hp                      # (B, U)
    void* cp                      # (B, U)
    void* dg                      # (B, grad_blocks * U)
    void* drh                     # (B, U)


cdef inline Py_ssize_t unit_back_space(floating* base, const Dims* d, Py_ssize_t B,
                                       Py_ssize_t U, UnitBackSpace* out) noexcept nogil:
    """Sized with U = H, it holds any thread's share."""
    cdef Py_ssize_t dc = B * U
    cdef Py_ssize_t a = dc + B * U
    cdef Py_ssize_t hp = a + B * gate_blocks(d.kind) * U
    cdef Py_ssize_t cp = hp + B * U
    cdef Py_ssize_t dg = cp + B * U
    cdef Py_ssize_t drh = dg + B * grad_blocks(d.kind) * U
    cdef Py_ssize_t end = drh + B * U
    if out != NULL:
        out.dh = base
        out.dc = base + dc
        out.a = base + a
        out.hp = base + hp
        out.cp = base + cp
        out.dg = base + dg
        out.drh = base + drh
    return end


cdef inline Py_ssize_t panel_gate_blocks(int kind) noexcept nogil:
    """Gate blocks of W_hh in the first packed part: all of them, or the
    reset-before GRU's r and z (its n rows are packed apart)."""
    return 2 if uses_reset_rows(kind) else gates(kind)


ctypedef struct Panels:
    # W_hh packed for the step products: the first part and, for the
    # reset-before GRU, its n rows; and W_ih (unit split)
    float* wp
    float* wp_n
    float* wp_ih


cdef inline Py_ssize_t recurrent_panels(const Dims* d, Py_ssize_t U, bint transposed,
                                        bint with_ih, float* base, Panels* out) noexcept nogil:
    """W_hh's rows of U units per gate block in panels: forward (transposed
    False) the rows themselves (H columns each), backward their transpose (U
    rows of blocks * H); U = H for the whole matrix. with_ih adds W_ih's
    rows of those units (the unit split packs both). Sized with U = H, it
    holds any thread's share."""
    cdef Py_ssize_t blocks = panel_gate_blocks(d.kind)
    cdef Py_ssize_t first, second
    if transposed:
        first = panel_size(U, blocks * d.H)
        second = panel_size(U, d.H) if uses_reset_rows(d.kind) else 0
    else:
        first = panel_size(blocks * U, d.H)
        second = panel_size(U, d.H) if uses_reset_rows(d.kind) else 0
    cdef Py_ssize_t ih = panel_size(gates(d.kind) * U, d.n_in) if with_ih else 0
    if out != NULL:
        out.wp = base
        out.wp_n = base + first if second else NULL
        out.wp_ih = base + first + second if with_ih else NULL
    return first + second + ih


cdef inline Py_ssize_t grad_panels(const Dims* d, Py_ssize_t N, bint tokens, float* base,
                                   Panels* out) noexcept nogil:
    """One direction's operands of the weight gradients in panels over the N
    packed rows: X (none for token ids) in wp_ih, H_prev in wp and, for the
    reset-before GRU, r ⊙ H_prev in wp_n."""
    cdef Py_ssize_t px = 0 if tokens else panel_size(d.n_in, N)
    cdef Py_ssize_t ph = panel_size(d.H, N)
    cdef Py_ssize_t pr = ph if uses_reset_rows(d.kind) else 0
    if out != NULL:
        out.wp_ih = base
        out.wp = base + px
        out.wp_n = base + px + ph if pr else NULL
    return px + ph + pr
