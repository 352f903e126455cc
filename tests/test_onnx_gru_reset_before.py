"""The reset-before GRU has no torch.nn twin; ONNX's GRU with linear_before_reset=0
is an independent implementation of it (float32: ONNX Runtime has no float64 GRU;
skipped without onnx and onnxruntime)."""
import numpy as np
import pytest

import fastrnn
from conftest import assert_close

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402


def _onnx_gru(sd, I, H, linear_before_reset):
    """A one-node ONNX GRU graph with fastrnn's weights (ONNX gate order [z; r; h])."""
    def reorder(w):                       # PyTorch [r; z; n] -> ONNX [z; r; h]
        r, z, n = np.split(w, 3, axis=0)
        return np.concatenate([z, r, n], axis=0)
    W = reorder(sd["weight_ih_l0"])[None]
    R = reorder(sd["weight_hh_l0"])[None]
    B = np.concatenate([reorder(sd["bias_ih_l0"]), reorder(sd["bias_hh_l0"])])[None]
    inits = [helper.make_tensor(n, TensorProto.FLOAT, a.shape, a.ravel())
             for n, a in (("W", W), ("R", R), ("B", B))]
    node = helper.make_node("GRU", ["X", "W", "R", "B", "seq_lens", "h0"], ["Y", "Y_h"],
                            hidden_size=H, linear_before_reset=linear_before_reset)
    graph = helper.make_graph(
        [node], "gru",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", I]),
         helper.make_tensor_value_info("seq_lens", TensorProto.INT32, ["B"]),
         helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, "B", H])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", 1, "B", H]),
         helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, "B", H])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("reset_after", [False, True])
def test_gru_matches_onnxruntime(reset_after):
    rng = np.random.default_rng(0)
    I, H, T, B = 5, 7, 9, 4
    ours = fastrnn.GRU(I, H, reset_after=reset_after, dtype=np.float32, seed=1)
    sess = _onnx_gru(ours.state_dict(), I, H, int(reset_after))
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    h0 = rng.standard_normal((1, B, H)).astype(np.float32)
    lengths = np.array([9, 3, 6, 1])
    y, h_n = ours(x, h0, lengths=lengths)
    y_o, h_o = sess.run(None, {"X": x, "seq_lens": lengths.astype(np.int32), "h0": h0})
    assert_close(y, y_o[:, 0], np.float32, "y")
    assert_close(h_n, h_o, np.float32, "h_n")
