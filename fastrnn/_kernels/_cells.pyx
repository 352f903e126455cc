# cython: language_level=3
"""The cell forms as Python sees them (built once): the kind enum CellKind
(declared in _cells.pxd, so the kernels and Python share one definition) and
the widths of the rows the kernels store for training."""


def gate_stride(int kind, Py_ssize_t hidden_size):
    """Columns of one stored activation row (G, or 4H for the reset-after GRU)."""
    return gate_blocks(kind) * hidden_size


def grad_stride(int kind, Py_ssize_t hidden_size):
    """Columns of one gate-gradient row: G, or 6H for the reset-after GRU
    ([dGx (3H) | dGh (3H)]: its input and recurrent n gradients differ)."""
    return grad_blocks(kind) * hidden_size


def carries_cell_state(int kind):
    """Whether the cell's state is the pair (h, c) (the LSTM), not h alone."""
    return has_cell_state(kind)
