"""fastrnn: fast CPU recurrent neural networks (RNN, GRU, LSTM) on numpy arrays.

Names and semantics follow PyTorch's torch.nn.RNN/GRU/LSTM and their cells;
weights move both ways through state_dict()/load_state_dict(). Training:
``forward``/``backward`` (BPTT) on every module, ``fastrnn.optim``,
``fastrnn.losses``, ``Dense`` and ``Embedding``. Ready-made models with ``fit``:
``fastrnn.models``; sequence data helpers: ``fastrnn.data``.
"""
from fastrnn._version import __version__  # noqa: F401  (fastrnn.__version__)
from fastrnn._threads import get_num_threads, set_num_threads
from fastrnn._config import show_config
from fastrnn import data, diagnostics, losses, optim
from fastrnn.cells import GRUCell, LSTMCell, RNNCell
from fastrnn.composition import Bidirectional, Stacked
from fastrnn.layers import GRU, LSTM, RNN
from fastrnn.linear import Dense, Embedding
from fastrnn.sequential import FinalState, Sequential
from fastrnn.torch_interop import from_torch, to_torch
from fastrnn.keras_interop import from_keras
from fastrnn.quantization import quantize
from fastrnn.optim import clip_grad_norm
from fastrnn.training import truncated_bptt
from fastrnn.io import load
from fastrnn import models
from fastrnn import _cpu

_cpu.plan()           # the CPU plan is made when fastrnn loads: a bad FASTRNN_CACHE refuses it


__all__ = ["RNN", "GRU", "LSTM", "RNNCell", "GRUCell", "LSTMCell", "Stacked",
           "Bidirectional", "Sequential", "FinalState", "Dense", "Embedding", "from_torch",
           "to_torch", "from_keras", "quantize",
           "data", "models", "diagnostics", "optim", "losses",
           "clip_grad_norm", "truncated_bptt", "load", "set_num_threads", "get_num_threads",
           "show_config"]
