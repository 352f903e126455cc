"""ONNX in and out (optional extra ``fastrnn[onnx]``: the onnx package).

    fastrnn.onnx.export(module, "model.onnx")     # ONNX Runtime runs it with fastrnn's outputs

The recurrent layers become ONNX's RNN/GRU/LSTM operators (gate orders
converted, both GRU forms through linear_before_reset); see ``export``.
"""
from fastrnn.onnx._export import export

__all__ = ["export"]
