"""Gate block orders: fastrnn/PyTorch rows vs the ONNX operators' rows.

fastrnn keeps PyTorch's gate rows (RNN [h], GRU [r; z; n], LSTM [i; f; g; o]);
ONNX's RNN/GRU/LSTM operators take W/R/B in the orders [h], [z; r; h] and
[i; o; f; c]. ONNX_BLOCKS[op][k] is the fastrnn block that ONNX block k holds.
"""
import numpy as np

ONNX_BLOCKS = {"RNN": (0,), "GRU": (1, 0, 2), "LSTM": (0, 3, 1, 2)}


def to_onnx(op, w):
    """fastrnn gate rows (G, ...) -> the ONNX operator's order."""
    blocks = np.split(np.asarray(w), len(ONNX_BLOCKS[op]), axis=0)
    return np.concatenate([blocks[k] for k in ONNX_BLOCKS[op]], axis=0)


def from_onnx(op, w):
    """The ONNX operator's gate rows (G, ...) -> fastrnn's order."""
    order = ONNX_BLOCKS[op]
    blocks = np.split(np.asarray(w), len(order), axis=0)
    ours = [None] * len(order)
    for onnx_k, ours_k in enumerate(order):
        ours[ours_k] = blocks[onnx_k]
    return np.concatenate(ours, axis=0)
