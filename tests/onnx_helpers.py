"""What the ONNX tests share: an ONNX Runtime session and the 1e-5 comparison."""
import numpy as np

TOL = 1e-5          # float32 agreement with ONNX Runtime, relative to the output's scale


def session(model_or_path):
    """A one-thread CPU session of an onnx ModelProto or a file."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    src = (model_or_path.SerializeToString() if hasattr(model_or_path, "SerializeToString")
           else str(model_or_path))
    return ort.InferenceSession(src, options, providers=["CPUExecutionProvider"])


def close(actual, expected, what):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    err = float(np.abs(actual - expected).max(initial=0))
    assert err <= TOL * max(1.0, float(np.abs(expected).max(initial=0))), (what, err)
