"""ONNX in and out (optional extra ``fastrnn[onnx]``: the onnx package).

    fastrnn.onnx.export(module, "model.onnx")     # ONNX Runtime runs it with fastrnn's outputs
    model = fastrnn.onnx.load("model.onnx")       # runs the graph with fastrnn: model(x)

The recurrent layers become ONNX's RNN/GRU/LSTM operators and back (gate
orders converted; both GRU forms through linear_before_reset); ``load`` also
runs the nodes exporters put around them (see ``SUPPORTED_OPS``).
"""
from fastrnn.onnx._export import export
from fastrnn.onnx._load import SUPPORTED_OPS, OnnxModel, load

__all__ = ["export", "load", "OnnxModel", "SUPPORTED_OPS"]
